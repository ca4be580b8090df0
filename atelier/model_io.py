"""Enregistrer et recharger un modèle avec ses métadonnées (classes, taille d'image, version…).

Un modèle ``cnn.keras`` a toujours son fichier ``cnn.json`` à côté : l'API y lit les noms des classes
dans l'ordre des sorties du réseau et la taille des images attendues.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_FORMAT = "atelier-cnn/1"


class ModelFileError(ValueError):
    """Un fichier de modèle ou de métadonnées est absent, illisible ou incohérent (message en français)."""


@dataclass(frozen=True)
class ModelInfo:
    """Un modèle chargé et ses métadonnées."""

    model: Any  # keras.Model
    metadata: dict[str, Any]
    path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def image_size(self) -> int:
        return int(self.metadata["image_size"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])


def metadata_path(model_path: str | Path) -> Path:
    """Chemin du fichier de métadonnées d'un modèle : ``cnn.keras`` → ``cnn.json``."""
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    """Empreinte SHA-256 d'un fichier, en hexadécimal."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def save_model(
    model,
    path: str | Path,
    *,
    classes,
    data_source: str = "",
    metrics: dict[str, Any] | None = None,
    version: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Enregistre ``model`` au format ``.keras`` et écrit ses métadonnées JSON à côté.

    La version par défaut est ``<nom>-<8 premiers caractères du SHA-256 du fichier>`` : deux modèles
    différents n'ont jamais la même version. Renvoie les métadonnées écrites.
    """
    import keras

    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"Le fichier du modèle doit se terminer par .keras (reçu : {path.name}).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    image_size = int(model.input_shape[1])
    sha = file_sha256(path)
    metadata = {
        "format": METADATA_FORMAT,
        "version": version or f"{path.stem}-{sha[:8]}",
        "classes": list(classes),
        "image_size": image_size,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data_source": str(data_source),
        "metrics": metrics or {},
        "sha256": sha,
        "keras_version": keras.__version__,
        **(extra or {}),
    }
    atomic_write_text(metadata_path(path), json.dumps(metadata, ensure_ascii=False, indent=2) + "\n")
    return metadata


def read_metadata(model_path: str | Path) -> dict[str, Any]:
    """Lit et vérifie les métadonnées d'un modèle (sans charger le réseau)."""
    meta_file = metadata_path(model_path)
    if not meta_file.is_file():
        raise ModelFileError(
            f"Métadonnées introuvables : {meta_file}. Un modèle de l'atelier est accompagné d'un fichier "
            f"JSON du même nom ; enregistrez-le avec atelier.model_io.save_model."
        )
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"Métadonnées illisibles dans {meta_file.name} : {exc}") from None
    return validate_metadata(metadata, source=meta_file.name)


def validate_metadata(metadata: Any, *, source: str = "métadonnées") -> dict[str, Any]:
    """Vérifie qu'un dictionnaire de métadonnées contient des classes, une taille d'image et une version."""
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{source} : un objet JSON est attendu.")
    classes = metadata.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelFileError(f"{source} : « classes » doit être une liste d'au moins deux noms distincts.")
    size = metadata.get("image_size")
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise ModelFileError(f"{source} : « image_size » doit être un entier entre 8 et 1024.")
    if not isinstance(metadata.get("version"), str) or not metadata["version"]:
        raise ModelFileError(f"{source} : « version » doit être une chaîne non vide.")
    return metadata


def load_model(path: str | Path) -> ModelInfo:
    """Charge un modèle ``.keras`` et ses métadonnées, et vérifie qu'ils vont ensemble.

    Lève :class:`ModelFileError` avec un message en français si le fichier manque, n'est pas un modèle
    Keras, ou si ses sorties ou sa taille d'entrée ne correspondent pas aux métadonnées. Le chargement
    se fait en ``safe_mode`` : un fichier ne peut pas exécuter de code arbitraire.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"Modèle introuvable : {path}. Entraînez-en un (chapitre 2 ou « python -m atelier train »)."
        )
    metadata = read_metadata(path)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path.name} n'est pas un modèle Keras (.keras) valide.")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, KeyError, OSError, TypeError… for bad files
        raise ModelFileError(f"{path.name} n'est pas un modèle Keras lisible : {exc}") from None
    check_compatible(model, metadata, source=path.name)
    return ModelInfo(model=model, metadata=metadata, path=path)


def check_compatible(model, metadata: dict[str, Any], *, source: str = "modèle") -> None:
    """Vérifie que les sorties et l'entrée du réseau correspondent aux métadonnées."""
    input_shape = tuple(model.input_shape)
    output_shape = tuple(model.output_shape)
    size = metadata["image_size"]
    if len(input_shape) != 4 or input_shape[1:] != (size, size, 3):
        raise ModelFileError(
            f"{source} : le réseau attend des entrées {input_shape[1:]}, les métadonnées annoncent "
            f"des images {size}×{size}×3."
        )
    if len(output_shape) != 2 or output_shape[1] != len(metadata["classes"]):
        raise ModelFileError(
            f"{source} : le réseau a {output_shape[-1]} sorties mais les métadonnées nomment "
            f"{len(metadata['classes'])} classes."
        )
