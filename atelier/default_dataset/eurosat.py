"""Les vraies tuiles Sentinel-2 (EuroSAT) livrées avec l'atelier, dans ``atelier/eurosat/``.

5 000 tuiles RVB de 64 × 64 pixels (10 m par pixel), 500 par classe EuroSAT, licence MIT (Helber et al.,
2019 ; *contient des données Copernicus Sentinel modifiées*). Le jeu par défaut en prend :

- les tuiles ``Forest`` pour la classe ``forêt`` et ``SeaLake`` pour la classe ``mer``, dans la moitié réservée
  à l'atelier (:func:`workshop_range`) ;
- des tuiles de **toutes** les classes comme sol sous les nuages de la classe ``nuageux``.

Chaque tuile est vérifiée par sa somme MD5 (``manifest.csv``) avant d'être utilisée : une tuile abîmée donne
une erreur claire plutôt qu'un jeu de données faux.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import ImageDataset
from ..eurosat_tiles import EUROSAT_CLASSES, EUROSAT_DIR, EuroSatError, read_manifest, read_tile_bytes, reserved_range
from ..labels import CLASSES
from ..preprocessing import load_image

__all__ = ["EUROSAT_DIR", "GROUND_CLASSES", "REAL_CLASSES", "EuroSatError", "load_tile", "tile_index"]

#: EuroSAT classes used as the real tiles of a workshop class.
REAL_CLASSES: dict[str, str] = {"forêt": "Forest", "mer": "SeaLake"}
#: EuroSAT classes used as the ground under the clouds of « nuageux » (all ten).
GROUND_CLASSES: tuple[str, ...] = EUROSAT_CLASSES


def manifest_path() -> Path:
    """Chemin du manifeste des tuiles EuroSAT (classe, fichier, MD5)."""
    return EUROSAT_DIR / "manifest.csv"


@lru_cache(maxsize=1)
def tile_index() -> dict[str, tuple[tuple[str, str], ...]]:
    """EuroSAT class → ``((file name, md5), …)`` in the order of ``manifest.csv``."""
    by_class: dict[str, list[tuple[str, str]]] = {}
    for eurosat_class, name, md5 in read_manifest(EUROSAT_DIR):
        by_class.setdefault(eurosat_class, []).append((name, md5))
    missing = [name for name in GROUND_CLASSES if not by_class.get(name)]
    if missing:
        raise EuroSatError(f"Le manifeste {manifest_path()} ne liste aucune tuile pour : {', '.join(missing)}.")
    return {name: tuple(files) for name, files in by_class.items()}


def tile_count(eurosat_class: str) -> int:
    """Nombre de tuiles livrées pour une classe EuroSAT."""
    return len(tile_index()[eurosat_class])


def workshop_range(eurosat_class: str) -> range:
    """Numéros des tuiles réservées à l'atelier : la seconde moitié de la classe, dans l'ordre du manifeste.

    Le réseau de base du chapitre 3 est pré-entraîné sans elles ; le jeu par défaut ne prend ses tuiles
    ``Forest`` et ``SeaLake`` étiquetées que là (250 de chaque).
    """
    return reserved_range(tile_count(eurosat_class))


@lru_cache(maxsize=4096)
def load_tile(eurosat_class: str, number: int) -> np.ndarray:
    """La tuile numéro ``number`` (ordre du manifeste, modulo leur nombre) de la classe, ``uint8`` (64, 64, 3).

    Lève :class:`EuroSatError` (message en français) si le fichier manque ou ne correspond pas au manifeste.
    """
    files = tile_index()[eurosat_class]
    name, md5 = files[number % len(files)]
    data = read_tile_bytes(EUROSAT_DIR / eurosat_class / name, md5)
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("RGB"))
    array.setflags(write=False)
    return array


def unseen_real_tiles(classes: Sequence[str] = CLASSES, image_size: int = 64) -> ImageDataset:
    """Les vraies tuiles ``Forest`` et ``SeaLake`` que le jeu par défaut n'utilise **pas** (la première moitié).

    Renvoie un :class:`atelier.data.ImageDataset` étiqueté ``forêt`` / ``mer`` (indices dans ``classes``),
    chaque tuile passée par :func:`atelier.preprocessing.load_image` comme toute image de l'atelier : de
    vraies images Sentinel-2 pour mesurer un modèle entraîné sur le jeu par défaut (chapitre 6).
    """
    images, labels, paths = [], [], []
    for label, eurosat_class in REAL_CLASSES.items():
        for number in range(workshop_range(eurosat_class).start):
            load_tile(eurosat_class, number)  # checks the MD5 of the file
            path = EUROSAT_DIR / eurosat_class / tile_index()[eurosat_class][number][0]
            images.append(load_image(path, image_size))
            labels.append(list(classes).index(label))
            paths.append(path)
    return ImageDataset(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int32),
        classes=list(classes),
        paths=paths,
        source=str(EUROSAT_DIR),
    )
