"""Les images d'exemple réelles, et la vérification des sorties d'un modèle sur elles.

Avant d'être mis en service (démarrage, ``PUT /model``, version du dépôt), un modèle passe sur de vraies
images : celles de ``images/exemples/`` (ou du dossier ``$ATELIER_SAMPLES``), sinon, quand l'atelier est
installé sans son dépôt git (``pip install``), les tuiles EuroSAT embarquées dans le paquet
(``atelier/eurosat/``). Des images aléatoires ne suffisent pas : elles contiennent presque toujours un
pixel à 0 et une moyenne de 127,5, si bien qu'un modèle qui renvoie ``NaN`` sur de vraies photos passerait.
:func:`check_outputs` refuse des sorties non finies, négatives ou dont la somme ne vaut pas 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .model_io import ModelFileError

#: Image formats read in the sample folder.
SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Bundled EuroSAT tiles (package data): the real images of an installed package without its git checkout.
BUNDLED_TILES = Path(__file__).resolve().parent / "eurosat"
#: Bundled tiles taken per EuroSAT class when the sample folder is absent.
BUNDLED_PER_CLASS = 2


def default_sample_dir() -> Path:
    """Les images d'exemple de l'atelier : ``$ATELIER_SAMPLES`` ou ``images/exemples/`` du dépôt git."""
    explicit = os.environ.get("ATELIER_SAMPLES")
    if explicit:
        return Path(explicit).expanduser()
    return Path(__file__).resolve().parent.parent / "images" / "exemples"


def sample_files(directory: Path) -> list[Path]:
    """Les images de *directory* (triées par nom), sans descendre dans les sous-dossiers."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES and p.is_file())


def check_images() -> list[Path]:
    """Les vraies images de la vérification : les exemples, sinon quelques tuiles EuroSAT embarquées."""
    files = sample_files(default_sample_dir())
    if files:
        return files
    bundled = [
        path
        for folder in sorted(p for p in BUNDLED_TILES.iterdir() if p.is_dir())
        for path in sample_files(folder)[:BUNDLED_PER_CLASS]
    ]
    if not bundled:
        raise ModelFileError(
            f"Aucune image réelle pour vérifier le modèle : ni {default_sample_dir()} ni {BUNDLED_TILES} "
            "(indiquez un dossier d'images avec la variable ATELIER_SAMPLES)."
        )
    return bundled


def check_outputs(out: np.ndarray, n_images: int, n_classes: int, *, where: str) -> None:
    """Lève ``ModelFileError`` si *out* n'est pas ``(n_images, n_classes)`` de probabilités finies."""
    if out.shape != (n_images, n_classes):
        raise ModelFileError(
            f"{where}, le modèle renvoie un tableau de forme {out.shape} au lieu de ({n_images}, {n_classes})."
        )
    if not np.all(np.isfinite(out)) or np.any(out < -1e-4) or not np.allclose(out.sum(axis=1), 1, atol=1e-3):
        raise ModelFileError(
            f"{where}, le modèle ne renvoie pas des probabilités finies (valeurs non finies, négatives ou de "
            "somme différente de 1 ; sa dernière couche doit être un softmax)."
        )


def probabilities_on(serving, files: list[Path], *, where: str = "Sur les images d'exemple") -> np.ndarray:
    """Sorties de *serving* pour les images *files* (prétraitées par ``load_image``), vérifiées."""
    from .preprocessing import load_image

    batch = np.stack([load_image(f, serving.image_size) for f in files]).astype(np.float32)
    out = np.asarray(serving.run(batch))
    check_outputs(out, len(files), len(serving.classes), where=where)
    return out
