"""L'historique des prédictions, dans une base SQLite (module ``sqlite3`` de Python).

Chaque prédiction réussie ajoute une ligne : date (UTC, ISO 8601), classe prédite, probabilités
(JSON), version du modèle, empreinte SHA-256 de l'image, nom de fichier *nettoyé* envoyé par le client
et durée en millisecondes. Les images elles-mêmes ne sont pas gardées (sauf si l'API est configurée
avec ``store_images_dir``).

**Écriture différée** (*write-behind*) : :meth:`History.add` ne touche pas la base. Il attribue
l'identifiant tout de suite (pris dans un bloc d'identifiants réservé d'un coup dans la base, voir
plus bas) et range la ligne dans une file ; un fil à part écrit la file toutes les
:data:`FLUSH_INTERVAL_S` secondes, en une seule transaction (empreinte SHA-256 comprise). L'écriture et
son verrou ne sont donc plus sur le chemin d'une requête : mesuré, c'était une part de la queue de
latence (un point de contrôle WAL bloque toutes les insertions qui attendent le verrou).

* **Rien ne se perd à l'arrêt propre** : :meth:`History.flush` (appelé par l'arrêt de l'API),
  :meth:`History.close` et la sortie de Python écrivent ce qui reste. Un arrêt brutal (``kill -9``,
  coupure de courant) peut perdre les lignes des dernières :data:`FLUSH_INTERVAL_S` secondes.
* **Un identifiant renvoyé est utilisable tout de suite** : toute lecture ou modification passe par
  ``self._lock``, qui écrit d'abord les lignes en attente (lecture de l'historique, avis sur une
  prédiction, suppression…). Seul un autre programme qui lit le fichier directement peut avoir
  jusqu'à :data:`FLUSH_INTERVAL_S` secondes de retard.
* **Plusieurs processus** (``--workers N``) partagent le fichier sans collision : chacun réserve ses
  identifiants par blocs de :data:`ID_BLOCK` dans la table ``sqlite_sequence`` de SQLite (celle
  d'``AUTOINCREMENT``), dans une transaction ``BEGIN IMMEDIATE`` ; à l'arrêt, un bloc entamé rend ce
  qu'il n'a pas servi si personne n'a réservé après lui. Avec un seul processus les identifiants se
  suivent (1, 2, 3…) ; avec plusieurs, ils sont uniques et croissants dans chaque processus, et
  l'ordre de ``GET /predictions`` (par identifiant) peut mêler les processus à un bloc près.

La base est en mode WAL avec ``synchronous=NORMAL`` : une écriture ne force pas le disque à chaque
transaction (seulement aux points de contrôle), les lectures ne bloquent pas les écritures, et
plusieurs processus peuvent partager le même fichier. Toutes les requêtes SQL sont paramétrées. Une
seule connexion par objet, protégée par un verrou : c'est sûr entre threads.

Rétention : l'historique ne grossit pas sans fin. Par défaut, :meth:`History.prune` efface les lignes de
plus de :data:`DEFAULT_RETENTION_DAYS` jours et ne garde que les :data:`DEFAULT_MAX_ROWS` plus récentes
(``retention_days`` / ``max_rows``, ``None`` ou 0 pour ne pas limiter) ; le serveur l'appelle au démarrage
puis régulièrement, hors du chemin des requêtes. Avec ``images_dir`` (le dossier de ``--store-images``), les
images des lignes effacées le sont aussi (sauf si une ligne gardée a la même image) : elles suivent la rétention.

Retours des utilisateurs : :meth:`History.set_feedback` range la vraie classe d'une prédiction (« c'est juste » ou
« c'est faux : c'était … »), avec un commentaire facultatif, qui l'a donnée et quand ; :meth:`History.page` filtre
sur ces retours (``feedback="wrong" | "right" | "none"``), :meth:`History.feedback_rows` les donne tous (pour le
réentraînement) et :meth:`History.delete` efface une prédiction et son image (droit à l'effacement).
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import json
import logging
import math
import sqlite3
import threading
import unicodedata
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .image_store import delete_image
from .labels import CLASSES
from .paths import cache_dir

log = logging.getLogger(__name__)

#: Longest file name kept in the history, in characters.
MAX_FILENAME_CHARS = 120
#: Default retention: rows older than this many days are deleted by :meth:`History.prune`.
DEFAULT_RETENTION_DAYS = 30
#: Default retention: at most this many rows are kept (the newest).
DEFAULT_MAX_ROWS = 100_000
#: Longest time a prediction waits in memory before it is written to the base, in seconds.
FLUSH_INTERVAL_S = 0.05
#: Ids reserved at once by one process (see the module: unique across processes sharing a file).
ID_BLOCK = 128
#: Rows queued beyond which :meth:`History.add` writes them itself (the base has been busy for long).
MAX_PENDING = 10_000

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
    feedback_label TEXT,
    feedback_comment TEXT,
    feedback_by TEXT,
    feedback_at TEXT
)
"""
#: Columns added after the first version of the table (older bases are migrated with ALTER TABLE).
_ADDED_COLUMNS = ("feedback_label", "feedback_comment", "feedback_by", "feedback_at")
_SELECTED = (
    "id, created, label, probabilities, model_version, image_sha256, filename, duration_ms,"
    " feedback_label, feedback_comment, feedback_by, feedback_at"
)
#: Longest feedback comment, in characters.
MAX_COMMENT_CHARS = 500
#: Longest « who gave the feedback » text, in characters.
MAX_AUTHOR_CHARS = 120
#: The filters of :meth:`History.page` on feedback (fixed SQL, never built from user text).
FEEDBACK_FILTERS = {
    "wrong": "feedback_label IS NOT NULL AND feedback_label != label",
    "right": "feedback_label IS NOT NULL AND feedback_label = label",
    "none": "feedback_label IS NULL",
}


class UnknownPredictionError(LookupError):
    """Aucune prédiction n'a ce numéro dans l'historique (message en français)."""


class FeedbackError(ValueError):
    """Un retour refusé : classe inconnue ou commentaire trop long (message en français)."""


def default_db_path() -> Path:
    """Fichier de l'historique quand aucun n'est donné : ``<cache de l'atelier>/historique.sqlite3``."""
    return cache_dir() / "historique.sqlite3"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _clean_text(text: str | None, max_chars: int, what: str) -> str | None:
    """*text* without control or invisible characters (line breaks kept), stripped; ``None`` if empty."""
    if text is None:
        return None
    cleaned = unicodedata.normalize("NFC", str(text))
    cleaned = "".join(
        ch for ch in cleaned if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    ).strip()
    if len(cleaned) > max_chars:
        raise FeedbackError(f"{what} trop long : {len(cleaned)} caractères, {max_chars} au plus.")
    return cleaned or None


def _row_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": row[0],
        "created": row[1],
        "label": row[2],
        "probabilities": _finite_values(row[3]),
        "model_version": row[4],
        "image_sha256": row[5],
        "filename": row[6],
        "duration_ms": row[7] if isinstance(row[7], (int, float)) and math.isfinite(row[7]) else None,
        "feedback_label": row[8],
        "feedback_comment": row[9],
        "feedback_by": row[10],
        "feedback_at": row[11],
    }


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


class _FlushFirstLock:
    """The history's lock: entering it writes the pending rows first (every read sees every answered row).

    Every method that reads or changes the base takes ``with self._lock:``; the background writer and
    the id reservations take the plain connection lock underneath.
    """

    def __init__(self, history: History) -> None:
        self._history = history

    def __enter__(self) -> None:
        history = self._history
        history._conn_lock.acquire()
        try:
            history._write_pending()
        except sqlite3.Error as exc:  # a busy base: the rows stay queued, the read goes on
            log.warning("Écriture de l'historique différée : %s", exc)
        except BaseException:
            history._conn_lock.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self._history._conn_lock.release()


class History:
    """L'historique des prédictions (thread-safe, écriture différée : voir le module)."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        retention_days: float | None = DEFAULT_RETENTION_DAYS,
        max_rows: int | None = DEFAULT_MAX_ROWS,
        images_dir: str | Path | None = None,
    ) -> None:
        for name, value in (("retention_days", retention_days), ("max_rows", max_rows)):
            if value is not None and value < 0:
                raise ValueError(f"{name} doit être positif ou nul (reçu : {value!r}).")
        self.retention_days = retention_days or None
        self.max_rows = int(max_rows) if max_rows else None
        #: The folder of the stored images (``--store-images``): they follow the retention and the erasure.
        self.images_dir = Path(images_dir).expanduser() if images_dir else None
        target = default_db_path() if path is None else path
        if str(target) != ":memory:":
            target = Path(target).expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
        self.path = target
        self._conn_lock = threading.Lock()
        self._lock = _FlushFirstLock(self)
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._ids_lock = threading.Lock()
        self._ids: Iterator[int] = iter(())  # the reserved block not yet handed out
        self._block_end = 0  # last id of the reserved block (0: none reserved yet)
        self._last_id = 0  # last id handed out
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._writer_stop = threading.Event()
        self._wake = threading.Event()  # set when the queue stops being empty
        self._retention_stop = threading.Event()
        self._retention_thread: threading.Thread | None = None
        self._conn = sqlite3.connect(str(target), check_same_thread=False, timeout=10, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        if str(target) != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_SCHEMA)
        self._migrate()
        _OPEN.add(self)

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
        filename: str | None,
        duration_ms: float,
        image_sha256: str | None = None,
        image: bytes | None = None,
        **columns: Any,
    ) -> int:
        """Ajoute une prédiction et renvoie son identifiant, sans attendre l'écriture (voir le module).

        ``image`` : les octets de l'image, dont l'empreinte est calculée par le fil d'écriture (ou
        ``image_sha256`` si elle est déjà connue). ``columns`` : d'autres colonnes de la table. Lève
        ``ValueError`` si une probabilité ou la durée n'est pas un nombre fini : l'historique n'en garde jamais
        (le JSON de l'API ne peut pas en contenir).
        """
        if not math.isfinite(duration_ms):
            raise ValueError(f"Durée non finie ({duration_ms}) : prédiction non enregistrée.")
        try:
            encoded = json.dumps(probabilities, ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise ValueError("Probabilité non finie : prédiction non enregistrée dans l'historique.") from None
        if (image_sha256 is None) == (image is None):
            raise ValueError("Donnez soit image_sha256, soit image.")
        row: dict[str, Any] = {
            "created": _now(),
            "label": label,
            "probabilities": encoded,
            "model_version": model_version,
            "image_sha256": image_sha256 if image is None else image,
            "filename": sanitize_filename(filename),
            "duration_ms": round(float(duration_ms), 3),
            **columns,
        }
        row["id"] = prediction_id = self._next_id()
        with self._pending_lock:
            self._pending.append(row)
            backlog = len(self._pending)
        if backlog == 1:
            self._ensure_writer()
            self._wake.set()
        elif backlog >= MAX_PENDING:  # the base has been busy for long: write now rather than grow
            with self._lock:
                pass
        return prediction_id

    def flush(self) -> None:
        """Écrit tout de suite les prédictions en attente (lève ``sqlite3.Error`` si la base refuse)."""
        with self._conn_lock:
            self._write_pending()

    # -- ids, reserved in blocks in the base ---------------------------------------------------------
    def _next_id(self) -> int:
        with self._ids_lock:
            nxt = next(self._ids, None)
            if nxt is None:
                with self._conn_lock:
                    first = self._reserve(ID_BLOCK)
                self._ids = iter(range(first + 1, first + ID_BLOCK))
                self._block_end = first + ID_BLOCK - 1
                nxt = first
            self._last_id = nxt
            return nxt

    def _reserve(self, n: int) -> int:
        """Reserves *n* ids for this object alone (atomically, across processes); returns the first."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'predictions'").fetchone()
            (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM predictions").fetchone()
            top = max(int(top), int(row[0]) if row else 0)
            if row is None:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('predictions', ?)", (top + n,))
            else:
                conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'predictions'", (top + n,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return top + 1

    def _give_back_ids(self) -> None:
        """Returns the unused end of the block, if no other process reserved after it (no gap after a restart)."""
        with self._ids_lock:
            if self._block_end and self._block_end > self._last_id:
                with self._conn_lock:
                    self._conn.execute(
                        "UPDATE sqlite_sequence SET seq = ? WHERE name = 'predictions' AND seq = ?",
                        (self._last_id, self._block_end),
                    )
            self._ids = iter(())
            self._block_end = 0

    # -- the background writer -----------------------------------------------------------------------
    def _ensure_writer(self) -> None:
        with self._writer_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer_stop.clear()
                self._writer = threading.Thread(target=self._writer_loop, name="atelier-historique", daemon=True)
                self._writer.start()

    def _writer_loop(self) -> None:
        """Sleeps until a row is queued, lets others join it for FLUSH_INTERVAL_S, writes them all at once."""
        while True:
            self._wake.wait()
            stopping = self._writer_stop.wait(FLUSH_INTERVAL_S)
            self._wake.clear()  # before writing: a row queued meanwhile wakes the next round
            try:
                self.flush()
            except sqlite3.Error as exc:  # a busy or read-only base: the rows stay queued, try again
                log.warning("Écriture de l'historique différée : %s", exc)
                self._wake.set()
            if stopping:
                return

    def _write_pending(self) -> None:
        """Writes the queued rows in one transaction (the connection lock is held by the caller)."""
        with self._pending_lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for row in rows:
            digest = row["image_sha256"]
            if not isinstance(digest, str):
                row["image_sha256"] = hashlib.sha256(digest).hexdigest()
            groups.setdefault(tuple(row), []).append(tuple(row.values()))
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for names, values in groups.items():
                conn.executemany(
                    f"INSERT INTO predictions ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._pending_lock:
                self._pending[:0] = rows
            raise

    def stop_writer(self) -> None:
        """Arrête le fil d'écriture après avoir tout écrit (il repart à la prochaine prédiction)."""
        with self._writer_lock:
            self._writer_stop.set()
            self._wake.set()
            if self._writer is not None:
                self._writer.join(5.0)
                self._writer = None
        self.flush()
        self._give_back_ids()

    def prune(self, now: dt.datetime | None = None) -> int:
        """Applique la rétention (âge puis nombre de lignes) ; renvoie le nombre de lignes effacées.

        Avec ``images_dir``, les images des lignes effacées le sont aussi, sauf celles qu'une ligne gardée
        partage (la même image envoyée plus tard).
        """
        deleted = 0
        with self._lock:
            digests: set[str] = set()
            if self.retention_days is not None:
                now = now or dt.datetime.now(dt.timezone.utc)
                cutoff = (now - dt.timedelta(days=self.retention_days)).isoformat(timespec="milliseconds")
                # Rows are appended in time order: the first recent row bounds the old ones (rowid scan, no index).
                first_kept = self._conn.execute(
                    "SELECT id FROM predictions WHERE created >= ? ORDER BY id LIMIT 1", (cutoff,)
                ).fetchone()
                bound = None if first_kept is None else first_kept[0]
                deleted += self._delete_below(bound, digests)
            if self.max_rows is not None:
                newest_dropped = self._conn.execute(
                    "SELECT id FROM predictions ORDER BY id DESC LIMIT 1 OFFSET ?", (self.max_rows,)
                ).fetchone()
                if newest_dropped is not None:
                    deleted += self._delete_below(newest_dropped[0] + 1, digests)
            self._delete_orphan_images(digests)
        return deleted

    def _delete_below(self, bound: int | None, digests: set[str]) -> int:
        """Deletes the rows whose id is below *bound* (every row if ``None``); collects their image digests."""
        where, params = ("", ()) if bound is None else (" WHERE id < ?", (bound,))
        if self.images_dir is not None:
            digests.update(
                r[0] for r in self._conn.execute(f"SELECT DISTINCT image_sha256 FROM predictions{where}", params)
            )
        return int(self._conn.execute(f"DELETE FROM predictions{where}", params).rowcount)

    def _delete_orphan_images(self, digests: set[str]) -> None:
        """Deletes the stored images of *digests* that no remaining row refers to (lock held)."""
        if self.images_dir is None or not digests:
            return
        pending = sorted(digests)
        for start in range(0, len(pending), 500):
            chunk = pending[start : start + 500]
            marks = ",".join("?" * len(chunk))
            kept = {
                r[0]
                for r in self._conn.execute(
                    f"SELECT DISTINCT image_sha256 FROM predictions WHERE image_sha256 IN ({marks})", chunk
                )
            }
            for digest in chunk:
                if digest not in kept:
                    try:
                        delete_image(self.images_dir, digest)
                    except (OSError, ValueError) as exc:  # a read-only folder, a foreign digest: log, go on
                        log.warning("Image %s non effacée : %s", digest, exc)

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

    def page(self, limit: int = 50, offset: int = 0, feedback: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Renvoie ``(nombre total, prédictions)``, les plus récentes d'abord.

        ``feedback`` : seulement les prédictions jugées fausses (``"wrong"``), justes (``"right"``) ou sans
        retour (``"none"``) ; le total est celui de ce filtre.
        """
        if feedback is not None and feedback not in FEEDBACK_FILTERS:
            raise ValueError(f"Filtre de retour inconnu : {feedback!r} (possibles : {', '.join(FEEDBACK_FILTERS)}).")
        where = f" WHERE {FEEDBACK_FILTERS[feedback]}" if feedback else ""
        with self._lock:
            total = int(self._conn.execute(f"SELECT COUNT(*) FROM predictions{where}").fetchone()[0])
            rows = self._conn.execute(
                f"SELECT {_SELECTED} FROM predictions{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (int(limit), int(offset)),
            ).fetchall()
        return total, [_row_dict(r) for r in rows]

    def get(self, prediction_id: int) -> dict[str, Any] | None:
        """La prédiction numéro *prediction_id*, ou ``None``."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_SELECTED} FROM predictions WHERE id = ?", (int(prediction_id),)
            ).fetchone()
        return None if row is None else _row_dict(row)

    def set_feedback(
        self, prediction_id: int, label: str, comment: str | None = None, by: str | None = None
    ) -> dict[str, Any]:
        """Range le retour d'un utilisateur : la vraie classe de l'image (*label*), et renvoie la prédiction.

        Un nouveau retour remplace le précédent. :class:`FeedbackError` si *label* n'est pas une classe de
        l'atelier ou si le commentaire dépasse :data:`MAX_COMMENT_CHARS` caractères ;
        :class:`UnknownPredictionError` si la prédiction n'existe pas.
        """
        if label not in CLASSES:
            raise FeedbackError(f"Classe inconnue : {label!r}. Classes acceptées : {', '.join(CLASSES)}.")
        text = _clean_text(comment, MAX_COMMENT_CHARS, "Commentaire")
        author = _clean_text(by, MAX_AUTHOR_CHARS, "Auteur")
        with self._lock:
            updated = self._conn.execute(
                "UPDATE predictions SET feedback_label = ?, feedback_comment = ?, feedback_by = ?, feedback_at = ?"
                " WHERE id = ?",
                (label, text, author, _now(), int(prediction_id)),
            ).rowcount
        row = self.get(prediction_id) if updated else None
        if row is None:
            raise UnknownPredictionError(f"Aucune prédiction numéro {prediction_id} dans l'historique.")
        return row

    def delete(self, prediction_id: int) -> bool:
        """Efface une prédiction et, avec ``images_dir``, son image (si aucune autre ligne ne la partage).

        Renvoie ``False`` si la prédiction n'existait pas.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT image_sha256 FROM predictions WHERE id = ?", (int(prediction_id),)
            ).fetchone()
            if row is None:
                return False
            self._conn.execute("DELETE FROM predictions WHERE id = ?", (int(prediction_id),))
            self._delete_orphan_images({row[0]})
        return True

    def feedback_rows(self) -> list[dict[str, Any]]:
        """Toutes les prédictions qui ont un retour, les plus anciennes d'abord (pour le réentraînement).

        Chaque ligne : ``id``, ``image_sha256``, ``label`` (prédite), ``feedback_label`` (la vraie),
        ``model_version`` et ``created``.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, image_sha256, label, feedback_label, model_version, created FROM predictions"
                " WHERE feedback_label IS NOT NULL ORDER BY id"
            ).fetchall()
        keys = ("id", "image_sha256", "label", "feedback_label", "model_version", "created")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def close(self) -> None:
        """Écrit ce qui reste, arrête les fils de l'historique et ferme la base."""
        self.stop_retention()
        self.stop_writer()
        with self._conn_lock:
            self._conn.close()
        _OPEN.discard(self)


#: Histories still open: whatever they hold is written when Python exits (a notebook kernel, a script).
_OPEN: weakref.WeakSet[History] = weakref.WeakSet()


@atexit.register
def _flush_open_histories() -> None:
    for history in list(_OPEN):
        try:
            history.flush()
        except sqlite3.Error as exc:  # pragma: no cover - nothing more can be done at exit
            log.warning("Historique : %s", exc)
