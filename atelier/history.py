"""L'historique des prédictions, dans une base SQLite (module ``sqlite3`` de Python).

Chaque prédiction réussie ajoute une ligne : date (UTC, ISO 8601), classe prédite, probabilités
(JSON), version du modèle, empreinte SHA-256 de l'image, nom de fichier *nettoyé* envoyé par le client
et durée en millisecondes. Les images elles-mêmes ne sont pas gardées (sauf si l'API est configurée
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
import math
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
    duration_ms REAL NOT NULL
)
"""


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


def _finite_values(text: str) -> dict[str, float | None]:
    """Probabilities of a stored row; a non-finite value (a row written by an older version) becomes None."""
    try:
        values = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None for k, v in values.items()}


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

    def add(
        self,
        *,
        label: str,
        probabilities: dict[str, float],
        model_version: str,
        image_sha256: str,
        filename: str | None,
        duration_ms: float,
    ) -> int:
        """Ajoute une prédiction et renvoie son identifiant.

        Lève ``ValueError`` si une probabilité ou la durée n'est pas un nombre fini : l'historique n'en garde
        jamais (le JSON de l'API ne peut pas en contenir).
        """
        if not math.isfinite(duration_ms):
            raise ValueError(f"Durée non finie ({duration_ms}) : prédiction non enregistrée.")
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        try:
            encoded = json.dumps({k: float(v) for k, v in probabilities.items()}, ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise ValueError("Probabilité non finie : prédiction non enregistrée dans l'historique.") from None
        row = (
            created,
            label,
            encoded,
            model_version,
            image_sha256,
            sanitize_filename(filename),
            round(float(duration_ms), 3),
        )
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO predictions (created, label, probabilities, model_version, image_sha256,"
                " filename, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
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

    def page(self, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Renvoie ``(nombre total, prédictions)``, les plus récentes d'abord."""
        with self._lock:
            total = int(self._conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
            rows = self._conn.execute(
                "SELECT id, created, label, probabilities, model_version, image_sha256, filename,"
                " duration_ms FROM predictions ORDER BY id DESC LIMIT ? OFFSET ?",
                (int(limit), int(offset)),
            ).fetchall()
        items = [
            {
                "id": r[0],
                "created": r[1],
                "label": r[2],
                "probabilities": _finite_values(r[3]),
                "model_version": r[4],
                "image_sha256": r[5],
                "filename": r[6],
                "duration_ms": r[7] if isinstance(r[7], (int, float)) and math.isfinite(r[7]) else None,
            }
            for r in rows
        ]
        return total, items

    def close(self) -> None:
        self.stop_retention()
        with self._lock:
            self._conn.close()
