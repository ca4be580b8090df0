"""L'historique des prédictions, dans une base SQLite (module ``sqlite3`` de Python).

Chaque prédiction réussie ajoute une ligne : date (UTC, ISO 8601), classe prédite, probabilités
(JSON), version du modèle, empreinte SHA-256 de l'image, nom de fichier *nettoyé* envoyé par le client,
durée en millisecondes et étiquette de la clé d'API qui a fait la requête (jamais la clé ; vide sans clé).
Les images elles-mêmes ne sont pas gardées (sauf si l'API est configurée
avec ``store_images_dir``).

La base est en mode WAL avec ``synchronous=NORMAL`` : une écriture ne force pas le disque à chaque
prédiction (seulement aux points de contrôle), les lectures ne bloquent pas les écritures, et
plusieurs processus (``--workers N``) peuvent partager le même fichier. Toutes les requêtes SQL sont
paramétrées. Une seule connexion par objet, protégée par un verrou : c'est sûr entre threads, et une
insertion dure quelques dizaines de microsecondes, bien moins qu'une prédiction.

Rétention : l'historique ne grossit pas sans fin. Par défaut, :meth:`History.prune` efface les lignes de
plus de :data:`DEFAULT_RETENTION_DAYS` jours et ne garde que les :data:`DEFAULT_MAX_ROWS` plus récentes
(``retention_days`` / ``max_rows``, ``None`` ou 0 pour ne pas limiter) ; le serveur l'appelle au démarrage
puis régulièrement, hors du chemin des requêtes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
import unicodedata
from pathlib import Path
from typing import Any

from .paths import cache_dir

log = logging.getLogger(__name__)

#: Longest file name kept in the history, in characters.
MAX_FILENAME_CHARS = 120
#: Default retention: rows older than this many days are deleted by :meth:`History.prune`.
DEFAULT_RETENTION_DAYS = 30
#: Default retention: at most this many rows are kept (the newest).
DEFAULT_MAX_ROWS = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    label TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    model_version TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    filename TEXT,
    duration_ms REAL NOT NULL,
    key_label TEXT
)
"""
#: Columns added after the first version of the table (older bases are migrated with ALTER TABLE).
_ADDED_COLUMNS = ("key_label",)


def default_db_path() -> Path:
    """Fichier de l'historique quand aucun n'est donné : ``<cache de l'atelier>/historique.sqlite3``."""
    return cache_dir() / "historique.sqlite3"


def sanitize_filename(name: str | None) -> str | None:
    """Nom de fichier du client, réduit à quelque chose d'inoffensif à afficher.

    Seul le dernier élément du chemin est gardé (``../../etc/passwd.jpg`` → ``passwd.jpg``), les
    caractères de contrôle (dont NUL) et de mise en forme invisibles sont retirés, la longueur est
    limitée à :data:`MAX_FILENAME_CHARS`. Ce nom n'est jamais utilisé comme chemin.
    """
    if not name:
        return None
    text = unicodedata.normalize("NFC", str(name))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    text = text.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".").strip()
    if not text:
        return None
    if len(text) > MAX_FILENAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            text = stem[: MAX_FILENAME_CHARS - len(ext) - 2] + "…." + ext
        else:
            text = text[: MAX_FILENAME_CHARS - 1] + "…"
    return text


class History:
    """L'historique des prédictions (thread-safe)."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        retention_days: float | None = DEFAULT_RETENTION_DAYS,
        max_rows: int | None = DEFAULT_MAX_ROWS,
    ) -> None:
        for name, value in (("retention_days", retention_days), ("max_rows", max_rows)):
            if value is not None and value < 0:
                raise ValueError(f"{name} doit être positif ou nul (reçu : {value!r}).")
        self.retention_days = retention_days or None
        self.max_rows = int(max_rows) if max_rows else None
        target = default_db_path() if path is None else path
        if str(target) != ":memory:":
            target = Path(target).expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
        self.path = target
        self._lock = threading.Lock()
        self._retention_stop = threading.Event()
        self._retention_thread: threading.Thread | None = None
        self._conn = sqlite3.connect(str(target), check_same_thread=False, timeout=10, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        if str(target) != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Adds the columns a base created by an older version lacks (several processes may race here)."""
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(predictions)")}
        for column in _ADDED_COLUMNS:
            if column in present:
                continue
            try:
                self._conn.execute(f"ALTER TABLE predictions ADD COLUMN {column} TEXT")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it first: fine
                    raise

    def add(
        self,
        *,
        label: str,
        probabilities: dict[str, float],
        model_version: str,
        image_sha256: str,
        filename: str | None,
        duration_ms: float,
        key_label: str | None = None,
    ) -> int:
        """Ajoute une prédiction et renvoie son identifiant.

        ``key_label`` : l'étiquette de la clé d'API de la requête (jamais la clé elle-même).
        """
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        row = (
            created,
            label,
            json.dumps(probabilities, ensure_ascii=False),
            model_version,
            image_sha256,
            sanitize_filename(filename),
            round(float(duration_ms), 3),
            key_label,
        )
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO predictions (created, label, probabilities, model_version, image_sha256,"
                " filename, duration_ms, key_label) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            assert cursor.lastrowid is not None  # always set after an INSERT
            return int(cursor.lastrowid)

    def prune(self, now: dt.datetime | None = None) -> int:
        """Applique la rétention (âge puis nombre de lignes) ; renvoie le nombre de lignes effacées."""
        deleted = 0
        with self._lock:
            if self.retention_days is not None:
                now = now or dt.datetime.now(dt.timezone.utc)
                cutoff = (now - dt.timedelta(days=self.retention_days)).isoformat(timespec="milliseconds")
                # Rows are appended in time order: the first recent row bounds the old ones (rowid scan, no index).
                first_kept = self._conn.execute(
                    "SELECT id FROM predictions WHERE created >= ? ORDER BY id LIMIT 1", (cutoff,)
                ).fetchone()
                if first_kept is None:
                    deleted += self._conn.execute("DELETE FROM predictions").rowcount
                else:
                    deleted += self._conn.execute("DELETE FROM predictions WHERE id < ?", (first_kept[0],)).rowcount
            if self.max_rows is not None:
                deleted += self._conn.execute(
                    "DELETE FROM predictions WHERE id <= "
                    "(SELECT id FROM predictions ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (self.max_rows,),
                ).rowcount
        return deleted

    def start_retention(self, interval_s: float) -> None:
        """Applique la rétention maintenant puis toutes les *interval_s* secondes, dans un fil à part."""
        if self._retention_thread is not None or (self.retention_days is None and self.max_rows is None):
            return
        self._retention_stop.clear()

        def loop() -> None:
            while True:
                try:
                    deleted = self.prune()
                except sqlite3.Error as exc:  # a busy or read-only base: try again next time
                    log.warning("Rétention de l'historique impossible pour l'instant : %s", exc)
                else:
                    if deleted:
                        log.info("Historique : %d prédictions anciennes effacées (rétention).", deleted)
                if self._retention_stop.wait(interval_s):
                    return

        self._retention_thread = threading.Thread(target=loop, name="atelier-retention", daemon=True)
        self._retention_thread.start()

    def stop_retention(self, timeout: float = 5.0) -> None:
        self._retention_stop.set()
        if self._retention_thread is not None:
            self._retention_thread.join(timeout)
            self._retention_thread = None

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def page(
        self, limit: int = 50, offset: int = 0, *, key_label: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """Renvoie ``(nombre total, prédictions)``, les plus récentes d'abord.

        ``key_label`` : seulement les prédictions faites avec cette clé (ce que lit une clé d'inférence).
        """
        where, params = ("WHERE key_label = ?", (key_label,)) if key_label is not None else ("", ())
        with self._lock:
            total = int(self._conn.execute(f"SELECT COUNT(*) FROM predictions {where}", params).fetchone()[0])
            rows = self._conn.execute(
                "SELECT id, created, label, probabilities, model_version, image_sha256, filename,"
                f" duration_ms, key_label FROM predictions {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, int(limit), int(offset)),
            ).fetchall()
        items = [
            {
                "id": r[0],
                "created": r[1],
                "label": r[2],
                "probabilities": json.loads(r[3]),
                "model_version": r[4],
                "image_sha256": r[5],
                "filename": r[6],
                "duration_ms": r[7],
                "key_label": r[8],
            }
            for r in rows
        ]
        return total, items

    def close(self) -> None:
        self.stop_retention()
        with self._lock:
            self._conn.close()
