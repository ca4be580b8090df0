"""Enregistrer et recharger un modèle avec ses métadonnées (classes, taille d'image, version…).

Un modèle ``cnn.keras`` a toujours son fichier ``cnn.json`` à côté : l'API y lit les noms des classes
dans l'ordre des sorties du réseau et la taille des images attendues.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model_metadata import check_metadata, parse_metadata_json

METADATA_FORMAT = "atelier-cnn/1"


class ModelFileError(ValueError):
    """Un fichier de modèle ou de métadonnées est absent, illisible ou incohérent (message en français)."""


@dataclass(frozen=True)
class ModelInfo:
    """Un modèle chargé, ses métadonnées et l'empreinte SHA-256 de son fichier."""

    model: Any  # keras.Model
    metadata: dict[str, Any]
    path: Path
    sha256: str = ""

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def image_size(self) -> int:
        return int(self.metadata["image_size"])

    @functools.cached_property
    def version(self) -> str:
        """La version servie, dérivée du fichier par :func:`served_version` (pas recopiée des métadonnées)."""
        return served_version(self.metadata, self.sha256, self.path)

    @property
    def public_metadata(self) -> dict[str, Any]:
        """Les métadonnées montrées par l'API : ``version`` est la version servie, ``declared_version``
        l'étiquette écrite dans le fichier de métadonnées."""
        return {**self.metadata, "version": self.version, "declared_version": str(self.metadata["version"])}


def served_version(metadata: dict[str, Any], sha256: str, path: Path) -> str:
    """La version d'un modèle en service, dérivée par le serveur de l'empreinte de son fichier.

    L'étiquette ``version`` des métadonnées n'est qu'une étiquette : n'importe qui peut l'écrire. La version
    servie (en-tête ``X-Model-Version``, historique, ``/model``) est ``<étiquette>-<8 premiers caractères du
    SHA-256 du fichier>`` ; elle vaut l'étiquette elle-même si celle-ci se termine déjà par cette empreinte
    (le défaut de :func:`save_model`) ou, pour une version N d'un dépôt de modèles (``N/model.keras``,
    numéro donné par le dépôt à la publication), si l'étiquette est ce numéro N. Un autre fichier ne peut
    donc pas reprendre la version d'un modèle en service.
    """
    label = str(metadata["version"])
    short = sha256[:8]
    if short and label.endswith(f"-{short}"):
        return label
    repository = metadata.get("repository")
    if (
        label.isdigit()
        and path.name == "model.keras"
        and path.parent.name == label
        and isinstance(repository, dict)
        and repository.get("version") == int(label)
    ):
        return label
    return f"{label}-{short}" if short else label


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
        metadata = parse_metadata_json(meta_file.read_bytes(), source=meta_file.name)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    return validate_metadata(metadata, source=meta_file.name)


def validate_metadata(metadata: Any, *, source: str = "métadonnées") -> dict[str, Any]:
    """Vérifie des métadonnées avec leur schéma (:mod:`atelier.model_metadata`) ; ``ModelFileError`` sinon.

    Classes, taille d'image et version sont exigées ; tous les nombres sont finis, la profondeur et les
    longueurs bornées, la version et les classes sont des textes imprimables.
    """
    try:
        return check_metadata(metadata, source=source)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None


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
    sha = file_sha256(path)
    if isinstance(metadata.get("sha256"), str) and metadata["sha256"].lower() != sha:
        raise ModelFileError(
            f"{path.name} ne correspond pas à l'empreinte sha256 de ses métadonnées (fichier modifié, ou "
            "mauvais couple modèle/métadonnées)."
        )
    from .keras_archive import check_keras_archive

    check_keras_archive(path)  # a zip bomb is refused before Keras reads anything
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, KeyError, OSError, TypeError… for bad files
        raise ModelFileError(f"{path.name} n'est pas un modèle Keras lisible : {exc}") from None
    check_compatible(model, metadata, source=path.name)
    return ModelInfo(model=model, metadata=metadata, path=path, sha256=sha)


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
