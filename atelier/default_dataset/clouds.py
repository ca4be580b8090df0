"""Nuages procéduraux : du bruit multi-octaves (numpy) pour fabriquer la classe « nuageux ».

Ni la mosaïque Blue Marble ni les tuiles EuroSAT ne contiennent de nuages. Les images « nuageux » sont donc
des tuiles réelles (EuroSAT de toutes les classes, Blue Marble) ou des déserts recouverts de nuages
**synthétiques**, du voile léger à la couverture complète :

- ``couvert`` : couche continue (stratus), gris plus ou moins clair, sans détail au sol ;
- ``cumulus`` : champ de cumulus serrés, bosselés (côté éclairé clair, côté ombre gris) ;
- ``altocumulus`` : nappe de petits nuages réguliers (« ciel pommelé »), le sol sombre entre eux ;
- ``epars`` : cumulus épars aux bords doux, leur ombre portée sur le sol entre eux ;
- ``voile`` : voile nuageux épais mais translucide, le sol délavé en dessous ;
- ``bancs`` : bancs de nuages aux bords fractals, ombre décalée, parfois un voile entre eux.

Une couche est fabriquée à 1, 2 ou 4 fois la taille de l'image puis moyennée (comme une prise de vue à
3 m ramenée à 64 × 64) : les nuages existent à plusieurs échelles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .noise import blur, downsample, fractal_noise, relief_shading, smoothstep, value_noise

#: Minimum cloud cover of an image labelled « nuageux »: fraction of pixels where the cloud opacity is ≥ 0.5.
CLOUD_COVER_MIN = 0.6
#: Kinds of cloud layer and their probabilities.
CLOUD_KINDS: dict[str, float] = {
    "couvert": 0.28,
    "cumulus": 0.2,
    "altocumulus": 0.1,
    "epars": 0.15,
    "voile": 0.1,
    "bancs": 0.17,
}

# Extra pixels around the image (at layer resolution, per unit of scale) so that the shadow (the same cloud
# field, shifted) has content at the edges.
_MARGIN = 10


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
    shadow on the ground (same clouds, shifted), ``colour`` the RGB colour of the clouds in [0, 1], ``cover``
    the cloud cover (:func:`cloud_cover` of ``alpha``) and ``kind`` one of :data:`CLOUD_KINDS`.
    """

    alpha: np.ndarray
    shadow: np.ndarray
    colour: np.ndarray
    cover: float
    kind: str = "bancs"


def _threshold_for_cover(inner: np.ndarray, target: float) -> float:
    """Density threshold such that a fraction ``target`` of the image lies above it."""
    return float(np.quantile(inner, 1.0 - target)) if target < 1.0 else float(inner.min()) - 0.05


def _density_alpha(
    rng: np.random.Generator, full: int, margin: int, base_cell: float, cover: float, softness: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fractal density and the opacity derived from it (soft-edged clouds covering about ``cover``)."""
    density = fractal_noise(rng, (full, full), base_cell, octaves=6, persistence=rng.uniform(0.4, 0.6))
    inner = density[margin:-margin, margin:-margin]
    threshold = _threshold_for_cover(inner, cover)
    alpha = rng.uniform(0.92, 1.0) * smoothstep(0.5 + (density - threshold) / softness)
    return density, alpha


def _grey_colour(
    rng: np.random.Generator, size: int, low: float, high: float, cell: float, *, warm: bool = True
) -> np.ndarray:
    """White to grey cloud colour (at image size) with broad brighter and greyer areas and a faint tint."""
    level = rng.uniform(low, high)
    texture = fractal_noise(rng, (size, size), cell, octaves=4, persistence=0.5)
    grey = level * (1.0 - rng.uniform(0.03, 0.2) * (1.0 - texture))
    cast = rng.random()
    if warm and cast < 0.3:  # cream clouds (low sun, yellowish processing): still far less warm than sand
        tint = np.array([1.0 + rng.uniform(0.0, 0.02), 1.0, 1.0 - rng.uniform(0.02, 0.06)])
    elif cast < 0.5:  # greenish-grey clouds (the ground seen through them, processing)
        tint = np.array([1.0 - rng.uniform(0.0, 0.04), 1.0, 1.0 - rng.uniform(0.0, 0.05)])
    else:
        tint = 1.0 + rng.uniform(-0.025, 0.025, size=3)
    return np.clip(grey[:, :, None] * tint[None, None, :], 0.0, 1.0)


def _layer_at_scale(
    rng: np.random.Generator, kind: str, size: int, scale: int, min_cover: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float]:
    """One layer: opacity and shading (with margin, at ``scale`` × the image size; shading may be None),
    colour (at image size) and the strength of the cloud shadow."""
    s = float(scale)
    margin = _MARGIN * scale
    full = (size + 2 * _MARGIN) * scale
    if kind == "couvert":
        # Thick but not always opaque: the ground tints the cloud a little (greenish, brownish…).
        alpha = np.full((full, full), rng.uniform(0.82, 1.0))
        colour = _grey_colour(rng, size, 0.45, 0.95, rng.uniform(24.0, 96.0), warm=False)
        return alpha, None, colour, 0.0
    if kind == "voile":
        veil = fractal_noise(rng, (full, full), rng.uniform(16.0, 64.0) * s, octaves=4)
        alpha = rng.uniform(0.6, 0.85) + rng.uniform(0.0, 0.12) * (veil - 0.5)
        colour = _grey_colour(rng, size, 0.7, 0.97, rng.uniform(16.0, 48.0))
        return alpha, None, colour, rng.uniform(0.05, 0.2)
    if kind == "altocumulus":
        cloudlets = blur(value_noise(rng, (full, full), rng.uniform(4.0, 8.0) * s), passes=scale)
        sheet = fractal_noise(rng, (full, full), rng.uniform(16.0, 48.0) * s, octaves=3)
        weight = rng.uniform(0.5, 0.8)
        density = weight * cloudlets + (1.0 - weight) * sheet
        threshold = _threshold_for_cover(density[margin:-margin, margin:-margin], rng.uniform(0.7, 0.95))
        alpha = rng.uniform(0.85, 1.0) * smoothstep(0.5 + (density - threshold) / rng.uniform(0.1, 0.3))
        colour = _grey_colour(rng, size, 0.45, 0.95, 8.0)
        return alpha, relief_shading(density, rng, rng.uniform(0.1, 0.3)), colour, rng.uniform(0.2, 0.5)
    if kind in ("cumulus", "epars"):
        dense = kind == "cumulus"
        cell = rng.uniform(8.0, 24.0) if dense else rng.uniform(5.0, 14.0)
        cover = rng.uniform(0.8, 1.0) if dense else rng.uniform(max(min_cover + 0.05, 0.65), 0.9)
        density = fractal_noise(rng, (full, full), cell * s, octaves=4, persistence=rng.uniform(0.4, 0.55))
        threshold = _threshold_for_cover(density[margin:-margin, margin:-margin], cover)
        softness = rng.uniform(0.15, 0.4)  # wide, soft edges
        alpha = rng.uniform(0.9, 1.0) * smoothstep(0.5 + (density - threshold) / softness)
        colour = _grey_colour(rng, size, 0.45 if dense else 0.65, 1.0, cell)
        # Puffy tops: thicker cloud is brighter, and lit on the sun side (hill shading of the density).
        thickness = smoothstep((density - threshold) / max(1.0 - threshold, 1e-3))
        lumps = (1.0 - rng.uniform(0.1, 0.35) * (1.0 - thickness)) * relief_shading(
            density, rng, rng.uniform(0.05, 0.25)
        )
        return alpha, lumps, colour, rng.uniform(0.25, 0.55)
    # "bancs": fractal banks with soft edges, sometimes a thin veil between them.
    cover = 1.0 if rng.random() < 0.2 else rng.uniform(min_cover + 0.1, 1.0)
    _, alpha = _density_alpha(rng, full, margin, rng.uniform(16.0, 56.0) * s, min(cover, 1.0), rng.uniform(0.08, 0.3))
    if rng.random() < 0.5:
        alpha = np.maximum(alpha, rng.uniform(0.0, 0.3))
    colour = _grey_colour(rng, size, 0.82, 1.0, rng.uniform(12.0, 40.0))
    return alpha, None, colour, rng.uniform(0.25, 0.6)


def make_cloud_layer(
    rng: np.random.Generator, size: int = 64, min_cover: float = CLOUD_COVER_MIN, kind: str | None = None
) -> CloudLayer:
    """Fabrique une couche de nuages procéduraux couvrant au moins ``min_cover`` de l'image.

    ``kind`` choisit le type de nuages (voir :data:`CLOUD_KINDS`) ; par défaut il est tiré au hasard.
    L'épaisseur, la douceur des bords, la couleur (blanc à gris), l'échelle et l'ombre portée varient d'une
    couche à l'autre.
    """
    if not 0.0 < min_cover <= 1.0:
        raise ValueError(f"La couverture minimale doit être dans ]0, 1] (reçu : {min_cover}).")
    if kind is None:
        kinds = list(CLOUD_KINDS)
        kind = kinds[int(rng.choice(len(kinds), p=np.array(list(CLOUD_KINDS.values()))))]
    elif kind not in CLOUD_KINDS:
        raise ValueError(f"Type de nuages inconnu : {kind!r} (attendu : {', '.join(CLOUD_KINDS)}).")
    scale = int(rng.choice([1, 2, 4], p=[0.45, 0.35, 0.2]))
    margin = _MARGIN * scale
    for _ in range(20):
        alpha_full, shading, colour, shadow_strength = _layer_at_scale(rng, kind, size, scale, min_cover)
        alpha_full = np.clip(alpha_full, 0.0, 1.0)
        alpha = downsample(alpha_full[margin:-margin, margin:-margin], scale)
        cover = cloud_cover(alpha)
        if cover >= min_cover:
            break
    else:  # pragma: no cover - 20 failures in a row would be a bug in the parameters above
        raise RuntimeError("Impossible de fabriquer une couche nuageuse assez couvrante.")
    if shading is not None:
        colour = np.clip(colour * downsample(shading[margin:-margin, margin:-margin], scale)[..., None], 0.0, 1.0)
    # Shadow: the same cloud field seen from an offset (sun not at the zenith), drawn on the ground.
    dy, dx = (rng.integers(-_MARGIN + 2, _MARGIN - 1, size=2) * scale).tolist()
    shadow_full = alpha_full[margin + dy : margin + dy + size * scale, margin + dx : margin + dx + size * scale]
    shadow = downsample(shadow_full, scale) * shadow_strength
    return CloudLayer(alpha=alpha, shadow=shadow, colour=colour, cover=cover, kind=kind)


def add_clouds(
    rng: np.random.Generator, ground: np.ndarray, min_cover: float = CLOUD_COVER_MIN, kind: str | None = None
) -> tuple[np.ndarray, float]:
    """Recouvre une image de sol (flottants dans [0, 1], forme (n, n, 3)) de nuages procéduraux.

    L'ombre des nuages assombrit d'abord le sol, puis les nuages sont superposés. Renvoie l'image obtenue et
    sa couverture nuageuse (toujours ≥ ``min_cover``).
    """
    ground = np.asarray(ground, dtype=np.float64)
    if ground.ndim != 3 or ground.shape[0] != ground.shape[1] or ground.shape[2] != 3:
        raise ValueError(f"L'image de sol doit être carrée et RVB, de forme (n, n, 3) (reçu : {ground.shape}).")
    layer = make_cloud_layer(rng, size=ground.shape[0], min_cover=min_cover, kind=kind)
    colour = layer.colour
    if layer.kind != "couvert":
        # Clouds are brighter than the ground seen between them (even bright sand): lift too dim clouds.
        ground_bright = float(np.quantile(ground.mean(axis=2), 0.9))
        cloud_mean = float(colour.mean())
        if cloud_mean < ground_bright + 0.12:
            colour = np.clip(colour * (ground_bright + 0.12) / max(cloud_mean, 1e-3), 0.0, 1.0)
    shaded = ground * (1.0 - layer.shadow[:, :, None])
    alpha = layer.alpha[:, :, None]
    image = shaded * (1.0 - alpha) + colour * alpha
    return np.clip(image, 0.0, 1.0), layer.cover
