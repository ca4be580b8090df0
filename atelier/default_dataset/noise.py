"""Bruits et filtres déterministes pour fabriquer textures et nuages (numpy seulement).

Everything is seeded through a ``numpy.random.Generator``. Only elementwise arithmetic, ``floor``, ``sqrt``
and ``quantile`` are applied to arrays (no transcendental functions such as ``exp`` or ``sin``), so results
do not depend on the SIMD code paths of the CPU: a rebuild gives the same bytes.
"""

from __future__ import annotations

import numpy as np


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


def smoothstep(z: np.ndarray) -> np.ndarray:
    """Courbe en S de 0 (z ≤ 0) à 1 (z ≥ 1), de dérivée nulle aux deux bouts."""
    z = np.clip(z, 0.0, 1.0)
    return z * z * (3.0 - 2.0 * z)


def blur(image: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable binomial blur [1, 2, 1] / 4 (σ ≈ 0.7 px per pass), edges reflected; works on 2-D or 3-D."""
    out = image
    for _ in range(passes):
        pad = [(1, 1), (1, 1)] + [(0, 0)] * (out.ndim - 2)
        p = np.pad(out, pad, mode="reflect")
        out = (p[:-2] + 2.0 * p[1:-1] + p[2:]) / 4.0
        out = (out[:, :-2] + 2.0 * out[:, 1:-1] + out[:, 2:]) / 4.0
    return out


def unit(noise: np.ndarray) -> np.ndarray:
    """Centre a noise field and scale it to unit standard deviation."""
    centred = noise - noise.mean()
    std = centred.std()
    return centred / std if std > 1e-12 else centred


def direction(rng: np.random.Generator) -> tuple[float, float]:
    """A random unit vector ``(dy, dx)``."""
    v = rng.normal(size=2)
    norm = float(np.sqrt(v @ v)) or 1.0
    return float(v[0] / norm), float(v[1] / norm)


def stripes(rng: np.random.Generator, size: int, wavelength: float, warp: float, sharpness: float) -> np.ndarray:
    """Warped, slightly asymmetric stripes in [0, 1] (dune ripples, swell), built without trigonometry."""
    dy, dx = direction(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = (xx * dx + yy * dy) / wavelength
    phase = phase + warp * fractal_noise(rng, (size, size), rng.uniform(12.0, 40.0), octaves=3)
    frac = phase - np.floor(phase)
    # Asymmetric triangle: a gentle windward slope then a steep lee face.
    crest = rng.uniform(0.55, 0.8)
    tri = np.where(frac < crest, frac / crest, (1.0 - frac) / (1.0 - crest))
    return tri * tri * (3.0 - 2.0 * tri) if sharpness > 0.5 else tri


def relief_shading(height: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Hill shading of a height field lit from a random direction: 1 + strength × (slope towards the sun)."""
    dy, dx = direction(rng)
    gy = np.zeros_like(height)
    gx = np.zeros_like(height)
    gy[1:-1] = (height[2:] - height[:-2]) / 2.0
    gx[:, 1:-1] = (height[:, 2:] - height[:, :-2]) / 2.0
    slope = gy * dy + gx * dx
    scale = float(np.abs(slope).max()) or 1.0
    return 1.0 + strength * slope / scale


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks (a sensor with coarser pixels); works on 2-D or 3-D arrays."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    trimmed = image[: h * factor, : w * factor]
    return trimmed.reshape(h, factor, w, factor, *image.shape[2:]).mean(axis=(1, 3))
