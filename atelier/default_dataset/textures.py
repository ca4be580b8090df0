"""Réalisme des tuiles Blue Marble : texture de canopée, surface de l'eau, voile atmosphérique et capteur.

À 7 km par pixel, les forêts de la mosaïque sont d'un vert sombre uniforme et les océans bleu marine, alors
que les images réelles à 10 m (Sentinel-2) ou plus fines (photos aériennes) sont plus voilées, plus bleutées
et texturées : une forêt sombre et un lac sombre peuvent y avoir la même couleur moyenne. Ces fonctions
ajoutent ce qui manque, pour que le modèle apprenne la texture et pas seulement la couleur.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .noise import blur, fractal_noise, stripes, unit, value_noise


def forest_texture(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Canopy at 10 m: tree-crown speckle, stands of different shade, slight hue variation between stands."""
    size = image.shape[0]
    image = image * rng.uniform(0.8, 1.7)  # darker conifers … brighter broadleaf canopies
    image = image * (1.0 + rng.uniform(-0.12, 0.12, size=3))
    if rng.random() < 0.15:
        # Blue-green canopies, as dark forests often look in true-colour satellite products (top-of-atmosphere
        # blue is brighter than green over forest): the mean colour then overlaps with dark water.
        green = image[..., 1].copy()
        image[..., 2] = green * rng.uniform(0.8, 1.3)
        image[..., 0] = green * rng.uniform(0.55, 0.9)
    speckle = unit(blur(rng.normal(size=(size, size)), passes=1))  # tree crowns, 1–2 px
    crowns = unit(value_noise(rng, (size, size), rng.uniform(1.5, 3.5)))  # clumps of crowns
    stands = unit(fractal_noise(rng, (size, size), rng.uniform(8.0, 32.0), octaves=3))  # stands, clearings
    weights = rng.dirichlet([1.5, 2.5, 2.0])
    texture = weights[0] * speckle + weights[1] * crowns + weights[2] * stands
    texture = unit(texture)
    shade = np.clip(1.0 + rng.uniform(0.15, 0.35) * texture, 0.3, 2.0)
    # Multiplicative (bright crowns, shaded gaps) plus a small additive part so that dark canopies stay grainy.
    image = image * shade[:, :, None] + rng.uniform(0.008, 0.02) * texture[:, :, None]
    hue = unit(fractal_noise(rng, (size, size), rng.uniform(6.0, 24.0), octaves=2))
    image[..., 1] *= 1.0 + rng.uniform(0.0, 0.08) * hue  # yellower / greener patches
    return image


_LAKE_COLOURS = np.array(
    [
        [0.07, 0.14, 0.17],  # dark teal
        [0.08, 0.13, 0.10],  # green, eutrophic lake
        [0.10, 0.26, 0.32],  # turquoise shallow water
        [0.13, 0.18, 0.26],  # grey-blue water under haze
        [0.17, 0.17, 0.13],  # turbid, sediment-laden water
        [0.04, 0.10, 0.22],  # open ocean blue
    ]
)


def water_surface(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
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
    image = image * (1.0 + rng.uniform(0.0, 0.15) * unit(fractal_noise(rng, (size, size), 48.0, octaves=2)))[..., None]
    if rng.random() < 0.6:  # swell: low-amplitude, directional, smooth
        swell = stripes(rng, size, rng.uniform(3.0, 9.0), rng.uniform(0.2, 1.0), sharpness=1.0)
        image = image + rng.uniform(0.002, 0.012) * (swell - 0.5)[..., None]
    if rng.random() < 0.25:  # sun glint: a broad bright sheen, brighter on wave facets
        sheen = fractal_noise(rng, (size, size), rng.uniform(32.0, 80.0), octaves=2)
        strength = rng.uniform(0.03, 0.15)
        sparkle = rng.random((size, size))
        facets = blur(sparkle * sparkle * sparkle * sparkle, passes=1)
        glint = strength * sheen * (0.8 + 0.4 * facets)
        image = image + glint[..., None] * np.array([0.95, 1.0, 1.0])
    return image


def atmosphere_and_camera(
    rng: np.random.Generator, image: np.ndarray, haze: float = 1.0, noise: float = 1.0
) -> np.ndarray:
    """Applied to every made-up image: uneven bluish haze, colour balance, contrast, blur, sensor noise.

    ``haze`` scales the bluish haze, path radiance and blue cast (1 for dark targets; less for bright
    ground and clouds, whose colour haze barely changes). ``noise`` scales the sensor noise (less for
    scenes usually seen downsampled from finer pixels, which averages the noise away).
    """
    size = image.shape[0]
    # Haze (atmospheric path radiance): blend toward a bluish grey, unevenly across the image.
    # Path radiance first: an additive bluish offset that brightens dark targets (forest, water) most, so
    # that dark forest and dark water can end up with close mean colours, as in Sentinel-2 true colour.
    if rng.random() < 0.6:
        image = image + haze * rng.uniform(0.0, 0.12) * np.array([0.45, 0.65, 1.0])
    strength = haze * 0.35 * rng.random() ** 1.3
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
    if cast < 0.5 * haze:
        t = rng.uniform(0.0, 1.0)
        gains = gains * np.array([1.0 - 0.12 * t, 1.0 - 0.02 * t, 1.0 + 0.12 * t])
        offset = np.array([0.0, 0.015, 0.06]) * t
    elif cast < 0.5 * haze + 0.15:
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
        image = image + rng.uniform(0.3, 1.0) * (blur(image) - image)
    image = image + noise * rng.uniform(0.001, 0.006) * rng.normal(size=image.shape)  # sensor noise
    return np.clip(image, 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] → ``uint8`` pixels."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def jpeg_generation(image: np.ndarray, quality: int) -> np.ndarray:
    """One JPEG encode/decode round trip at ``quality`` (images re-encoded along the way look like this)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image), "RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as reencoded:
        return np.asarray(reencoded.convert("RGB"), dtype=np.float64) / 255.0
