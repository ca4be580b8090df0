"""Inspecter une archive ``.keras`` (un fichier zip) **avant** de la donner à Keras : contre les bombes zip.

Un fichier ``.keras`` est un zip de quelques entrées (``metadata.json``, ``config.json``,
``model.weights.h5``, parfois ``assets/…``). Keras lit ``config.json`` en entier en mémoire et ne refuse
qu'une entrée de plus de 4 Gio : un fichier de 1 Mo dont le ``config.json`` se décompresse en 1 Gio
coûterait plus de 2 Go de mémoire au serveur. :func:`check_keras_archive` lit seulement le répertoire du
zip (tailles annoncées, sans rien décompresser) et refuse, avec un message en français :

* trop d'entrées, une taille décompressée totale trop grande, un taux de compression suspect
  (:class:`ModelArchiveTooLargeError`, 413 pour l'API) ;
* un zip illisible, un nom d'entrée dangereux (:class:`~atelier.model_io.ModelFileError`, 422).

Les tailles annoncées font foi : le module ``zipfile`` de Python, que Keras utilise, ne décompresse
jamais plus que la taille annoncée d'une entrée (au-delà, l'empreinte CRC ne correspond plus et la
lecture échoue).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .model_io import ModelFileError

_MIB = 1024 * 1024

#: Most entries in a .keras archive (a workshop model has 3; a few more for assets).
MAX_ENTRIES = 64
#: Largest ``config.json`` / ``metadata.json`` (the architecture, as JSON: a few kB to a few hundred kB).
MAX_CONFIG_BYTES = 16 * _MIB
#: Largest total once decompressed (the weights of the workshop's backbones are ≈ 10–30 MB).
MAX_TOTAL_BYTES = 1024 * _MIB
#: Highest compression ratio accepted for an entry larger than :data:`RATIO_FLOOR_BYTES` (real weights and
#: JSON compress less than 20:1; a bomb, 1000:1).
MAX_RATIO = 100
#: Entries smaller than this are not checked for their ratio (a short JSON full of spaces compresses well).
RATIO_FLOOR_BYTES = _MIB

_CONFIG_NAMES = ("config.json", "metadata.json")


class ModelArchiveTooLargeError(ModelFileError):
    """L'archive ``.keras`` se décompresserait en trop de données (bombe zip) : 413 pour l'API."""


def _mib(size: int) -> str:
    return f"{size / _MIB:.1f}".replace(".", ",") + " Mio"


def check_keras_archive(path: str | Path) -> None:
    """Vérifie le répertoire du zip *path* ; lève :class:`ModelArchiveTooLargeError` ou ``ModelFileError``."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"{path.name} n'est pas un modèle Keras (.keras) valide : {exc}") from None
    if len(entries) > MAX_ENTRIES:
        raise ModelArchiveTooLargeError(
            f"{path.name} contient {len(entries)} fichiers : une archive .keras en a quelques-uns "
            f"(au plus {MAX_ENTRIES} acceptés)."
        )
    total = 0
    for entry in entries:
        name = entry.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or "\x00" in name:
            raise ModelFileError(f"{path.name} contient un nom de fichier dangereux ({name[:80]!r}).")
        size = entry.file_size
        total += size
        if name in _CONFIG_NAMES and size > MAX_CONFIG_BYTES:
            raise ModelArchiveTooLargeError(
                f"{path.name} : {name} se décompresse en {_mib(size)} (au plus {_mib(MAX_CONFIG_BYTES)} "
                "acceptés) ; ce n'est pas un modèle de l'atelier (bombe zip ?)."
            )
        if size > RATIO_FLOOR_BYTES and size > MAX_RATIO * max(entry.compress_size, 1):
            raise ModelArchiveTooLargeError(
                f"{path.name} : {name} est compressé plus de {MAX_RATIO} fois ({_mib(entry.compress_size)} → "
                f"{_mib(size)}) ; une archive .keras normale ne l'est pas (bombe zip ?)."
            )
    if total > MAX_TOTAL_BYTES:
        raise ModelArchiveTooLargeError(
            f"{path.name} se décompresse en {_mib(total)} (au plus {_mib(MAX_TOTAL_BYTES)} acceptés)."
        )
