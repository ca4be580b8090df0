"""Où l'atelier range ses fichiers : le cache des données générées et les modèles entraînés."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    """Dossier de travail de l'atelier (données générées, modèles).

    ``ATELIER_CACHE`` s'il est défini ; sinon le dossier de cache de l'utilisateur :
    ``%LOCALAPPDATA%\\atelier-cnn`` sous Windows, ``~/Library/Caches/atelier-cnn`` sous macOS,
    ``$XDG_CACHE_HOME/atelier-cnn`` ou ``~/.cache/atelier-cnn`` ailleurs.
    """
    explicit = os.environ.get("ATELIER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "atelier-cnn"


def models_dir() -> Path:
    """Dossier où les notebooks enregistrent leurs modèles (``<cache>/modeles``)."""
    return cache_dir() / "modeles"


def model_path(name: str = "cnn") -> Path:
    """Chemin du fichier ``.keras`` d'un modèle de l'atelier, par exemple ``model_path("cnn")``."""
    return models_dir() / f"{name}.keras"
