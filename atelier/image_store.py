"""Les images reçues par l'API, gardées sur disque quand le serveur est lancé avec ``--store-images DOSSIER``.

Chaque image est rangée sous ``<sha256>.<ext>`` : nommée par son contenu (jamais par le nom de fichier du
client), l'extension d'après ses premiers octets. Une image envoyée deux fois n'est gardée qu'une fois.

* :func:`store_image` : range une image (écriture atomique : fichier temporaire puis renommage) ;
* :func:`find_image` : le fichier d'une empreinte, ou ``None`` ;
* :func:`delete_image` : l'efface (droit à l'effacement, rétention de l'historique).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_IMAGE_SUFFIXES = (
    (b"\xff\xd8", ".jpg"),
    (b"\x89PNG", ".png"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)
#: Every extension a stored image may have.
SUFFIXES = (".jpg", ".png", ".bmp", ".tif", ".webp", ".img")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _checked(digest: str) -> str:
    """*digest* if it is a SHA-256 in lower-case hex (it becomes a file name: nothing else is accepted)."""
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ValueError(f"Empreinte SHA-256 invalide (64 caractères hexadécimaux attendus) : {digest!r}.")
    return digest


def image_suffix(data: bytes) -> str:
    """L'extension d'une image d'après ses premiers octets (``.img`` si le format n'est pas reconnu)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _IMAGE_SUFFIXES if data.startswith(magic)), ".img")


def store_image(directory: Path, digest: str, data: bytes) -> Path:
    """Copie une image reçue sous ``<sha256>.<ext>`` et renvoie son chemin (rien à faire si elle y est déjà)."""
    target = Path(directory) / f"{_checked(digest)}{image_suffix(data)}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".recu-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def find_image(directory: Path | None, digest: str) -> Path | None:
    """Le fichier rangé pour l'empreinte *digest*, ou ``None`` (pas de dossier, ou image absente)."""
    if directory is None:
        return None
    digest = _checked(digest)
    for suffix in SUFFIXES:
        candidate = Path(directory) / f"{digest}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def delete_image(directory: Path | None, digest: str) -> bool:
    """Efface l'image de l'empreinte *digest* ; ``True`` si un fichier a été effacé."""
    deleted = False
    while (path := find_image(directory, digest)) is not None:  # one file per suffix at most
        path.unlink(missing_ok=True)
        deleted = True
    return deleted
