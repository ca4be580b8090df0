"""Fabriquer une image du jeu par défaut : la recette de chaque classe.

- ``forêt`` / ``mer`` : trois images sur quatre sont de **vraies tuiles Sentinel-2** (EuroSAT ``Forest`` /
  ``SeaLake``, 10 m par pixel), tournées ou retournées ; les deux autres sont des tuiles Blue Marble (7 km par
  pixel) rendues plus réalistes (canopée, surface de l'eau, voile, capteur) : la classe couvre les deux échelles ;
- ``désert`` : un désert procédural coloré par la mosaïque (voir :mod:`.desert`) ;
- ``nuageux`` : un sol réel (tuile EuroSAT de n'importe quelle classe, tuile Blue Marble) ou un désert,
  recouvert de nuages procéduraux (voir :mod:`.clouds`).

The result depends only on ``(label, index, seed)``: every image has its own ``numpy.random.Generator``
seeded from ``(seed, class index, image index)``, and the first *n* images of a class do not depend on how
many images are built.
"""

from __future__ import annotations

import numpy as np

from ..labels import CLASSES
from .areas import SOURCE_CLASSES, load_mosaic, sample_source_tile
from .clouds import CLOUD_COVER_MIN, add_clouds
from .desert import desert_scene
from .eurosat import GROUND_CLASSES, REAL_CLASSES, load_tile, tile_count, workshop_range
from .noise import blur
from .textures import atmosphere_and_camera, forest_texture, jpeg_generation, to_uint8, water_surface

DEFAULT_SEED = 0
#: Out of every REAL_PERIOD images of forêt and mer, the first REAL_PER_PERIOD are real EuroSAT tiles.
REAL_PERIOD, REAL_PER_PERIOD = 4, 3
#: Where the ground under the clouds comes from: a EuroSAT tile, a Blue Marble tile, or a desert scene.
CLOUD_GROUNDS: dict[str, float] = {"eurosat": 0.45, "bluemarble": 0.35, "desert": 0.2}

_TEXTURES = {"forêt": forest_texture, "mer": water_surface}


def real_tile_number(index: int) -> int | None:
    """For forêt and mer: the number of the EuroSAT tile used by image ``index``, or None (Blue Marble)."""
    period, position = divmod(index, REAL_PERIOD)
    if position >= REAL_PER_PERIOD:
        return None
    return period * REAL_PER_PERIOD + position


def _orient(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A satellite image has no up or down: one of the 8 rotations/flips."""
    image = np.rot90(image, k=int(rng.integers(4)))
    return np.ascontiguousarray(image[:, ::-1] if rng.random() < 0.5 else image)


def _gentle_variation(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """Small brightness, contrast and colour-balance changes (another date, another processing chain)."""
    gains = 1.0 + strength * rng.uniform(-0.04, 0.04, size=3)
    mean = image.mean(axis=(0, 1), keepdims=True)
    contrast = 1.0 + strength * rng.uniform(-0.12, 0.12)
    brightness = 1.0 + strength * rng.uniform(-0.1, 0.1)
    return np.clip((mean + contrast * (image - mean)) * gains * brightness, 0.0, 1.0)


def _real_tile(rng: np.random.Generator, eurosat_class: str, number: int, reuse: int = 0) -> np.ndarray:
    """A EuroSAT tile, reoriented and gently varied (more strongly when the same tile comes back)."""
    tile = load_tile(eurosat_class, number).astype(np.float64) / 255.0
    return _gentle_variation(rng, _orient(rng, tile), 1.0 + reuse)


def _labelled_real_tile(rng: np.random.Generator, label: str, ordinal: int) -> np.ndarray:
    """The ``ordinal``-th real tile of forêt or mer, taken in the half of EuroSAT reserved for the workshop."""
    reserved = workshop_range(REAL_CLASSES[label])
    reuse, position = divmod(ordinal, len(reserved))
    return _real_tile(rng, REAL_CLASSES[label], reserved[position], reuse)


def _bluemarble(rng: np.random.Generator, label: str, mosaic: np.ndarray) -> np.ndarray:
    tile = sample_source_tile(rng, label, mosaic).astype(np.float64) / 255.0
    if label == "désert":
        return desert_scene(rng, tile)[0]
    return np.clip(_TEXTURES[label](rng, tile), 0.0, 1.0)


def _cloud_ground(rng: np.random.Generator, mosaic: np.ndarray) -> np.ndarray:
    grounds = list(CLOUD_GROUNDS)
    ground = grounds[int(rng.choice(len(grounds), p=np.array(list(CLOUD_GROUNDS.values()))))]
    if ground == "eurosat":
        eurosat_class = GROUND_CLASSES[int(rng.integers(len(GROUND_CLASSES)))]
        return _real_tile(rng, eurosat_class, int(rng.integers(tile_count(eurosat_class))))
    if ground == "bluemarble":
        return _bluemarble(rng, SOURCE_CLASSES[int(rng.integers(2))], mosaic)
    return _bluemarble(rng, "désert", mosaic)


def _soften(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Half of the time, a slight blur: bright scenes are often seen downsampled from finer pixels."""
    return blur(image) if rng.random() < 0.5 else image


def make_image(label: str, index: int, seed: int = DEFAULT_SEED, mosaic: np.ndarray | None = None) -> np.ndarray:
    """Fabrique l'image numéro ``index`` de la classe ``label`` : tableau ``uint8`` (64, 64, 3).

    Le résultat ne dépend que de ``(label, index, seed)`` : deux appels donnent exactement la même image.
    """
    if label not in CLASSES:
        raise ValueError(f"Classe inconnue : {label!r} (attendu : {', '.join(CLASSES)}).")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(CLASSES.index(label), index)))
    if mosaic is None:
        mosaic = load_mosaic()
    number = real_tile_number(index) if label in REAL_CLASSES else None
    if number is not None:
        return to_uint8(_labelled_real_tile(rng, label, number))
    if label == "nuageux":
        image, _cover = add_clouds(rng, _cloud_ground(rng, mosaic), CLOUD_COVER_MIN)
        image = atmosphere_and_camera(rng, _soften(rng, image), haze=0.3, noise=0.4)
    elif label == "désert":
        image = atmosphere_and_camera(rng, _soften(rng, _bluemarble(rng, label, mosaic)), haze=0.3, noise=0.4)
    else:
        image = atmosphere_and_camera(rng, _bluemarble(rng, label, mosaic))
    if rng.random() < 0.25:  # an extra, stronger JPEG generation (as in images that were re-encoded)
        image = jpeg_generation(image, int(rng.integers(45, 86)))
    return to_uint8(image)
