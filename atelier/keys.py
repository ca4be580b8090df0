"""Les clés d'API et leurs rôles : qui peut prédire, qui peut gérer le serveur.

Deux rôles (comme les clés « inference » et « management » de TorchServe) :

* ``inférence`` : ``POST /predict``, ``POST /explain``, donner son avis sur une prédiction, lire et effacer **ses
  propres** lignes de l'historique (``GET /predictions``, ``DELETE /predictions/{id}``) et les informations en
  lecture (``GET /model``…) ;
* ``gestion`` : tout, en plus : ``PUT /model``, l'épinglage, l'effacement de n'importe quelle prédiction, tout
  l'historique, ``/metrics`` et toute écriture sur les modèles.

Les clés viennent de trois endroits : ``--api-key`` (``ATELIER_API_KEY``), ``--admin-key`` (``ATELIER_ADMIN_KEY``)
et un fichier de clés (``--keys-file``, ``ATELIER_KEYS_FILE``) au format JSON ::

    {"cles": [{"label": "eleve-01", "role": "inférence", "sha256": "…"}]}

Le fichier ne contient que l'**empreinte** SHA-256 de chaque clé, jamais la clé : ``python -m atelier cle``
crée une entrée et affiche la clé une seule fois. Les clés sont tirées au hasard (256 bits,
:func:`secrets.token_urlsafe`) : une empreinte rapide suffit, il n'y a pas de mot de passe faible à deviner.
Le fichier est relu dès qu'il change (date de modification ou taille) : retirer une ligne révoque la clé
sans redémarrer le serveur.

Une seule clé ``--api-key``, sans clé de gestion ni fichier : elle a tous les droits (l'ancien comportement,
celui des notebooks). Dès qu'une clé de gestion existe, ``--api-key`` n'est plus qu'une clé d'inférence.

Module sans FastAPI ni TensorFlow (le CLI ``cle`` l'importe seul).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROLE_INFERENCE = "inférence"
ROLE_MANAGEMENT = "gestion"
ROLES = (ROLE_INFERENCE, ROLE_MANAGEMENT)
#: Accepted spellings of a role (typed without the accent in a terminal).
_ROLE_ALIASES = {"inference": ROLE_INFERENCE, "inférence": ROLE_INFERENCE, "gestion": ROLE_MANAGEMENT}
#: Labels of the keys given by option or environment variable.
API_KEY_LABEL = "cle-api"
ADMIN_KEY_LABEL = "cle-gestion"
#: A label: what the history shows, so short, printable and without spaces.
_LABEL = re.compile(r"^[\w.@-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class KeysFileError(ValueError):
    """Le fichier de clés est illisible ou mal formé (message en français)."""


def key_digest(key: str | bytes) -> str:
    """L'empreinte SHA-256 (hexadécimale) d'une clé : ce que garde le fichier de clés."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()


def normalise_role(role: str) -> str:
    """``inférence`` ou ``gestion`` (``inference`` sans accent est accepté) ; ``KeysFileError`` sinon."""
    try:
        return _ROLE_ALIASES[str(role).strip().lower()]
    except KeyError:
        raise KeysFileError(f"Rôle inconnu : {role!r}. Rôles possibles : {', '.join(ROLES)}.") from None


def check_label(label: str) -> str:
    if not isinstance(label, str) or not _LABEL.match(label):
        raise KeysFileError(
            f"Étiquette de clé invalide : {label!r}. Utilisez 1 à 64 lettres, chiffres, « - », « _ », « . » "
            "ou « @ », sans espace (par exemple eleve-01)."
        )
    if label in (API_KEY_LABEL, ADMIN_KEY_LABEL):
        # The history tells keys apart by label: a keys-file key named like --api-key or --admin-key would read,
        # correct and erase their predictions.
        raise KeysFileError(
            f"Étiquette de clé réservée : {label!r} désigne la clé de --api-key ou de --admin-key. "
            "Choisissez-en une autre (par exemple eleve-01)."
        )
    return label


@dataclass(frozen=True)
class ApiKey:
    """Une clé connue du serveur : son étiquette (montrée dans l'historique), son rôle et son empreinte."""

    label: str
    role: str
    digest: str

    @property
    def manages(self) -> bool:
        return self.role == ROLE_MANAGEMENT


def read_keys_file(path: Path) -> list[ApiKey]:
    """Les clés d'un fichier de clés ; ``KeysFileError`` (en français) s'il est mal formé."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeysFileError(f"Fichier de clés illisible : {path} ({exc.strerror or exc}).") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"Fichier de clés illisible : {path} n'est pas du JSON valide ({exc}).") from None
    entries = data.get("cles") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise KeysFileError(f'Fichier de clés mal formé : {path} doit contenir {{"cles": [ … ]}}.')
    keys: list[ApiKey] = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not {"label", "role", "sha256"} <= set(entry):
            raise KeysFileError(
                f"Fichier de clés {path}, entrée {number} : « label », « role » et « sha256 » attendus."
            )
        digest = str(entry["sha256"]).lower()
        if not _SHA256.match(digest):
            raise KeysFileError(
                f"Fichier de clés {path}, entrée {number} : « sha256 » doit faire 64 chiffres hexadécimaux."
            )
        keys.append(ApiKey(check_label(entry["label"]), normalise_role(entry["role"]), digest))
    labels = [key.label for key in keys]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise KeysFileError(f"Fichier de clés {path} : étiquette en double ({', '.join(duplicated)}).")
    return keys


def write_keys_file(path: Path, keys: Iterable[ApiKey]) -> None:
    """Écrit le fichier de clés d'un coup (fichier temporaire puis renommage : jamais un demi-fichier lu)."""
    entries = [{"label": key.label, "role": key.role, "sha256": key.digest} for key in keys]
    text = json.dumps({"cles": entries}, ensure_ascii=False, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # digests only, but nobody else needs them
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def add_key(path: Path, label: str, role: str) -> str:
    """Crée une clé, range son empreinte dans *path* et renvoie la clé (à montrer une seule fois)."""
    keys = read_keys_file(path) if path.exists() else []
    label = check_label(label)
    if any(key.label == label for key in keys):
        raise KeysFileError(
            f"L'étiquette {label} existe déjà dans {path} : choisissez-en une autre, ou révoquez-la d'abord."
        )
    secret = secrets.token_urlsafe(32)
    write_keys_file(path, [*keys, ApiKey(label, normalise_role(role), key_digest(secret))])
    return secret


def revoke_key(path: Path, label: str) -> None:
    """Retire la clé *label* de *path* (le serveur l'oublie dès qu'il voit le fichier changé)."""
    keys = read_keys_file(path)
    kept = [key for key in keys if key.label != label]
    if len(kept) == len(keys):
        raise KeysFileError(f"Aucune clé « {label} » dans {path}.")
    write_keys_file(path, kept)


class KeyRing:
    """Les clés que le serveur accepte : celles des réglages et celles du fichier de clés, relu quand il change."""

    def __init__(
        self, api_key: str | None = None, admin_key: str | None = None, keys_file: str | Path | None = None
    ) -> None:
        self.keys_file = Path(keys_file) if keys_file else None
        single = api_key is not None and admin_key is None and self.keys_file is None
        fixed = []
        if api_key:
            fixed.append(ApiKey(API_KEY_LABEL, ROLE_MANAGEMENT if single else ROLE_INFERENCE, key_digest(api_key)))
        if admin_key:
            fixed.append(ApiKey(ADMIN_KEY_LABEL, ROLE_MANAGEMENT, key_digest(admin_key)))
        self._fixed = tuple(fixed)
        self._from_file: tuple[ApiKey, ...] = ()
        self._signature: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if self.keys_file is not None:
            self._from_file = tuple(read_keys_file(self.keys_file))  # a bad file fails at start-up
            self._signature = _signature(self.keys_file)

    @property
    def enabled(self) -> bool:
        """Vrai si l'API exige une clé (une clé configurée ou un fichier de clés, même vide)."""
        return bool(self._fixed) or self.keys_file is not None

    def identify(self, given: bytes) -> ApiKey | None:
        """La clé qui correspond à *given* (en-tête ``X-API-Key``), ou ``None``."""
        digest = hashlib.sha256(given).hexdigest().encode()
        found = None
        for key in (*self._fixed, *self._current_file_keys()):
            if secrets.compare_digest(digest, key.digest.encode()) and found is None:
                found = key  # no early exit: the time does not tell which entry matched
        return found

    def _current_file_keys(self) -> tuple[ApiKey, ...]:
        if self.keys_file is None:
            return ()
        signature = _signature(self.keys_file)
        if signature != self._signature:
            with self._lock:
                if signature != self._signature:
                    self._reload(signature)
        return self._from_file

    def _reload(self, signature: tuple[int, int] | None) -> None:
        assert self.keys_file is not None
        if signature is None:  # the file was removed: every key it held is revoked
            self._from_file, self._signature = (), None
            log.warning("Fichier de clés %s absent : ses clés sont révoquées.", self.keys_file)
            return
        try:
            self._from_file = tuple(read_keys_file(self.keys_file))
        except KeysFileError as exc:  # half-edited file: keep the previous keys, retry on the next change
            log.warning("%s Les clés précédentes restent valables.", exc)
        else:
            log.info("Fichier de clés %s relu : %d clé(s).", self.keys_file, len(self._from_file))
        self._signature = signature


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_mtime_ns, info.st_size


def describe(keys: Iterable[ApiKey]) -> list[dict[str, Any]]:
    """Les clés sans leur empreinte (pour ``python -m atelier cle --liste``)."""
    return [{"label": key.label, "role": key.role} for key in keys]
