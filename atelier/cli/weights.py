"""Commande ``python -m atelier poids-mobilenet`` : ranger les poids ImageNet de MobileNetV2 dans le cache de Keras."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..model_io import file_sha256
from ..transfer import (
    WEIGHTS_FILENAME,
    WEIGHTS_URL,
    WeightsError,
    build_backbone,
    download_weights,
    imagenet_weights_status,
    install_weights,
)
from .core import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--depuis",
        type=Path,
        default=None,
        metavar="FICHIER.h5",
        help=f"fichier de poids déjà téléchargé ({WEIGHTS_FILENAME}) à ranger dans le cache de Keras ; "
        "sans cette option, la commande télécharge le fichier (Internet nécessaire)",
    )


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.depuis is not None:
        path = install_weights(args.depuis)
        action = "copié depuis " + str(args.depuis)
    else:
        cached = _usable_cached_weights()
        if cached is not None:
            path, action = cached, "déjà en cache"
        else:
            print(f"Téléchargement de {WEIGHTS_URL} …", flush=True)
            path, action = download_weights(), "téléchargé"
    print(f"Poids ImageNet de MobileNetV2 prêts ({action}) : {path}")
    print("Vérification : le fichier se charge dans le réseau de l'atelier. Le chapitre 3 fera du vrai transfert.")
    return {"path": str(path), "action": action, "sha256": file_sha256(path), "filename": WEIGHTS_FILENAME}


def _usable_cached_weights() -> Path | None:
    """The weights already in Keras's cache, if they load (a corrupt copy is downloaded again)."""
    path = imagenet_weights_status().weights_path
    if path is None:
        return None
    try:
        build_backbone(path)
    except WeightsError:
        return None
    return path


WEIGHTS = Command(
    "poids-mobilenet",
    _add_arguments,
    _run,
    "ranger les poids ImageNet de MobileNetV2 dans le cache de Keras (formateurs, avant un cours hors ligne)",
)
