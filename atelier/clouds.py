"""Nuages procéduraux : du bruit multi-octaves (numpy) pour fabriquer la classe « nuageux ».

L'image NASA Blue Marble utilisée pour le jeu de données par défaut ne contient aucun nuage. Les images
« nuageux » sont donc des tuiles réelles (forêt, mer ou désert) recouvertes de nuages **synthétiques** :
une couche de nuages (bruit fractal), son ombre décalée au sol, et parfois un voile léger.

Everything is seeded through a ``numpy.random.Generator``: the same generator state gives the same clouds,
bit for bit. Only elementwise arithmetic, ``floor`` and ``quantile`` are used (no transcendental functions),
so results do not depend on the SIMD code paths of the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Minimum cloud cover of an image labelled « nuageux »: fraction of pixels where the cloud opacity is ≥ 0.5.
CLOUD_COVER_MIN = 0.6

# Extra pixels around the image so that the shadow (the same cloud field, shifted) has content at the edges.
_MARGIN = 10


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Renvoie un bruit de valeurs lissé (valeurs dans [0, 1]) de forme ``shape``.

    Des valeurs aléatoires sont tirées sur une grille dont le pas vaut ``cell`` pixels, puis interpolées
    (interpolation bilinéaire adoucie par une courbe *smoothstep*). Plus ``cell`` est grand, plus les
    motifs sont larges.
    """
    if cell <= 0:
        raise ValueError(f"La taille de cellule doit être positive (reçu : {cell}).")
    height, width = shape
    grid = rng.random((int(height / cell) + 3, int(width / cell) + 3))
    # A random sub-cell offset so that grid nodes do not always fall on the same pixels.
    oy, ox = rng.random(2)
    ys = np.arange(height) / cell + oy
    xs = np.arange(width) / cell + ox
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    fy = ys - y0
    fx = xs - x0
    fy = (fy * fy * (3.0 - 2.0 * fy))[:, None]
    fx = (fx * fx * (3.0 - 2.0 * fx))[None, :]
    top = grid[y0][:, x0] * (1.0 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1.0 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1.0 - fy) + bottom * fy


def fractal_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    base_cell: float,
    octaves: int = 5,
    persistence: float = 0.5,
) -> np.ndarray:
    """Renvoie un bruit fractal (somme de plusieurs octaves de :func:`value_noise`), normalisé dans [0, 1].

    La première octave a des cellules de ``base_cell`` pixels ; chaque octave suivante a des cellules deux
    fois plus petites et une amplitude multipliée par ``persistence``.
    """
    total = np.zeros(shape)
    amplitude = 1.0
    cell = float(base_cell)
    for _ in range(octaves):
        total += amplitude * value_noise(rng, shape, max(cell, 1.0))
        amplitude *= persistence
        cell /= 2.0
    low, high = total.min(), total.max()
    if high - low < 1e-12:
        return np.zeros(shape)
    return (total - low) / (high - low)


def cloud_cover(alpha: np.ndarray) -> float:
    """Renvoie la couverture nuageuse d'une carte d'opacité : la part des pixels d'opacité ≥ 0,5."""
    alpha = np.asarray(alpha)
    if alpha.size == 0:
        raise ValueError("La carte d'opacité des nuages est vide.")
    return float(np.count_nonzero(alpha >= 0.5)) / alpha.size


@dataclass(frozen=True)
class CloudLayer:
    """A cloud layer for an image of ``size × size`` pixels.

    ``alpha`` is the cloud opacity (0 = clear sky, 1 = opaque cloud), ``shadow`` the opacity of the cloud
    shadow on the ground (same clouds, shifted), ``colour`` the RGB colour of the clouds in [0, 1], and
    ``cover`` the cloud cover (:func:`cloud_cover` of ``alpha``).
    """

    alpha: np.ndarray
    shadow: np.ndarray
    colour: np.ndarray
    cover: float


def _smoothstep(z: np.ndarray) -> np.ndarray:
    z = np.clip(z, 0.0, 1.0)
    return z * z * (3.0 - 2.0 * z)


def make_cloud_layer(rng: np.random.Generator, size: int = 64, min_cover: float = CLOUD_COVER_MIN) -> CloudLayer:
    """Fabrique une couche de nuages procéduraux couvrant au moins ``min_cover`` de l'image.

    La couverture visée est tirée entre ``min_cover`` et 100 % (une couche sur cinq est entièrement
    couverte) ; l'épaisseur, la douceur des bords, le voile léger, la couleur et l'ombre portée varient
    d'une couche à l'autre.
    """
    if not 0.0 < min_cover <= 1.0:
        raise ValueError(f"La couverture minimale doit être dans ]0, 1] (reçu : {min_cover}).")
    full = size + 2 * _MARGIN
    for _ in range(20):
        base_cell = rng.uniform(16.0, 56.0)  # size of the largest cloud structures, in pixels
        density = fractal_noise(rng, (full, full), base_cell, octaves=5, persistence=rng.uniform(0.4, 0.6))
        inner = density[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN]
        target = 1.0 if rng.random() < 0.2 else rng.uniform(min_cover + 0.1, 1.0)
        target = min(target, 1.0)
        # Threshold such that a fraction `target` of the image lies above it; pixels above get alpha ≥ 0.5.
        threshold = float(np.quantile(inner, 1.0 - target)) if target < 1.0 else float(inner.min()) - 0.05
        softness = rng.uniform(0.08, 0.3)  # width of the cloud edges, in density units
        thickness = rng.uniform(0.92, 1.0)  # opacity of the thickest clouds
        alpha_full = thickness * _smoothstep(0.5 + (density - threshold) / softness)
        haze = rng.uniform(0.0, 0.3) if rng.random() < 0.5 else 0.0  # thin veil between the clouds
        alpha_full = np.maximum(alpha_full, haze)
        alpha = alpha_full[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN]
        cover = cloud_cover(alpha)
        if cover >= min_cover:
            break
    else:  # pragma: no cover - 20 failures in a row would be a bug in the parameters above
        raise RuntimeError("Impossible de fabriquer une couche nuageuse assez couvrante.")

    # Shadow: the same cloud field seen from an offset (sun not at the zenith), drawn on the ground.
    dy, dx = rng.integers(-_MARGIN + 2, _MARGIN - 1, size=2)
    shadow = alpha_full[_MARGIN + dy : _MARGIN + dy + size, _MARGIN + dx : _MARGIN + dx + size]
    shadow = shadow * rng.uniform(0.25, 0.6)

    # Cloud colour: white to light grey, with broad brighter (thicker) and greyer (thinner) areas.
    white = rng.uniform(0.82, 1.0)
    texture = fractal_noise(rng, (size, size), rng.uniform(12.0, 40.0), octaves=3, persistence=0.5)
    grey = white * (1.0 - rng.uniform(0.08, 0.3) * (1.0 - texture))
    grey = np.clip(grey, 0.0, 1.0)
    tint = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.01, 0.01, size=3)  # slightly warm or cold clouds
    colour = np.clip(grey[:, :, None] * tint[None, None, :], 0.0, 1.0)
    return CloudLayer(alpha=alpha, shadow=shadow, colour=colour, cover=cover)


def add_clouds(
    rng: np.random.Generator, ground: np.ndarray, min_cover: float = CLOUD_COVER_MIN
) -> tuple[np.ndarray, float]:
    """Recouvre une image de sol (flottants dans [0, 1], forme (n, n, 3)) de nuages procéduraux.

    L'ombre des nuages assombrit d'abord le sol, puis les nuages sont superposés. Renvoie l'image obtenue et
    sa couverture nuageuse (toujours ≥ ``min_cover``).
    """
    ground = np.asarray(ground, dtype=np.float64)
    if ground.ndim != 3 or ground.shape[0] != ground.shape[1] or ground.shape[2] != 3:
        raise ValueError(f"L'image de sol doit être carrée et RVB, de forme (n, n, 3) (reçu : {ground.shape}).")
    layer = make_cloud_layer(rng, size=ground.shape[0], min_cover=min_cover)
    # Clouds are brighter than the ground below them (even bright sand): lift too dim clouds.
    ground_bright = float(np.quantile(ground.mean(axis=2), 0.9))
    cloud_mean = float(layer.colour.mean())
    colour = layer.colour
    if cloud_mean < ground_bright + 0.12:
        colour = np.clip(colour * (ground_bright + 0.12) / max(cloud_mean, 1e-3), 0.0, 1.0)
    shaded = ground * (1.0 - layer.shadow[:, :, None])
    alpha = layer.alpha[:, :, None]
    image = shaded * (1.0 - alpha) + colour * alpha
    return np.clip(image, 0.0, 1.0), layer.cover
