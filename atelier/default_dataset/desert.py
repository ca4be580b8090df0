"""Des déserts réalistes aux échelles que les apprenants rencontrent (10 m Sentinel-2, 0,5 à 8 m en aérien).

Aucune source d'images réelles de désert n'est librement redistribuable ici : la couleur vient de la mosaïque
Blue Marble (Sahara, Arabie, Australie…), mélangée à une palette de sables et de roches, et le relief est
**procédural** (champ de hauteurs éclairé par un soleil bas) :

- ``sable`` : étendue de sable presque uniforme, grain fin, parfois de petites rides ;
- ``dunes`` : dunes linéaires ou en croissant, face au vent claire, face sous le vent ombrée ;
- ``roche`` : plateau rocheux (hamada) en gradins, vernis sombre, oueds ;
- ``reg`` : plaine de graviers mouchetée ;
- ``sel`` : lac salé (sebkha) clair mais jamais blanc pur, polygones de dessiccation, bords bruns.

Un désert clair reste **chaud** (rouge > vert > bleu) et texturé : c'est ce qui le distingue d'un nuage.
"""

from __future__ import annotations

import numpy as np

from .noise import blur, direction, fractal_noise, relief_shading, smoothstep, stripes, unit, value_noise

#: Kinds of desert scene and their probabilities.
DESERT_KINDS: dict[str, float] = {"sable": 0.3, "dunes": 0.27, "roche": 0.2, "reg": 0.17, "sel": 0.06}

# Sand and rock colours (RGB in [0, 1]) seen in true-colour imagery of hot and cold deserts.
_PALETTE = np.array(
    [
        [0.80, 0.70, 0.52],  # pale beige sand
        [0.86, 0.70, 0.45],  # golden dune sand
        [0.80, 0.58, 0.38],  # orange sand (Namib, Rub' al Khali)
        [0.68, 0.45, 0.37],  # red sand, laterite (Australia)
        [0.60, 0.42, 0.40],  # purplish red rock
        [0.58, 0.50, 0.40],  # brown gravel
        [0.64, 0.58, 0.49],  # grey-beige gravel (Gobi)
        [0.74, 0.66, 0.56],  # light tan
        [0.72, 0.67, 0.58],  # pale greyish sand sheet
        [0.50, 0.40, 0.32],  # dark brown rock, desert varnish
    ]
)


def _palette_colour(rng: np.random.Generator, ground: np.ndarray) -> np.ndarray:
    """A colour between the mosaic's own sand colour and a palette colour, slightly jittered."""
    mosaic_colour = ground.reshape(-1, 3).mean(axis=0)
    palette_colour = _PALETTE[int(rng.integers(len(_PALETTE)))]
    mix = rng.uniform(0.3, 1.0)
    colour = (1.0 - mix) * mosaic_colour + mix * palette_colour
    colour = colour * rng.uniform(0.97, 1.03, size=3) * rng.uniform(0.85, 1.12)
    # Keep it warm: red ≥ green ≥ blue, as sand and rock are.
    colour[1] = min(colour[1], colour[0] * rng.uniform(0.8, 0.99))
    colour[2] = min(colour[2], colour[1] * rng.uniform(0.7, 0.95))
    return colour


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return a * (1.0 - weight[..., None]) + b * weight[..., None]


def _colour_field(rng: np.random.Generator, ground: np.ndarray) -> np.ndarray:
    """Two colours mixed by a smooth noise, carrying the mosaic tile's own (relative) variations."""
    size = ground.shape[0]
    first, second = _palette_colour(rng, ground), _palette_colour(rng, ground)
    patches = smoothstep((fractal_noise(rng, (size, size), rng.uniform(16.0, 64.0), octaves=3) - 0.5) * 3 + 0.5)
    field = _mix(
        np.broadcast_to(first, ground.shape), np.broadcast_to(second, ground.shape), patches * rng.uniform(0, 1)
    )
    relative = ground / np.maximum(ground.mean(axis=(0, 1), keepdims=True), 1e-3)
    return field * (1.0 + rng.uniform(0.2, 0.8) * (relative - 1.0))


def _sand_sheet(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    size = colour.shape[0]
    shade = 1.0 + rng.uniform(0.005, 0.025) * unit(blur(rng.normal(size=(size, size))))
    shade += rng.uniform(0.01, 0.05) * unit(fractal_noise(rng, (size, size), rng.uniform(16.0, 64.0), octaves=3))
    if rng.random() < 0.4:  # wind ripples, barely visible
        shade += rng.uniform(0.005, 0.03) * (
            stripes(rng, size, rng.uniform(2.0, 5.0), rng.uniform(0.2, 1.0), 0.0) - 0.5
        )
    return colour * shade[..., None]


def _dunes(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    size = colour.shape[0]
    height = stripes(rng, size, rng.uniform(6.0, 28.0), rng.uniform(0.3, 2.5), sharpness=rng.random())
    if rng.random() < 0.5:  # crescent (barchan) and star dunes: break the crests with a second field
        height = height * (0.4 + 0.6 * fractal_noise(rng, (size, size), rng.uniform(10.0, 30.0), octaves=2))
    shading = relief_shading(height, rng, rng.uniform(0.12, 0.4))
    interdune = smoothstep(1.0 - height * rng.uniform(1.5, 3.0))  # flats between dunes: other colour
    flat_colour = colour * rng.uniform(0.85, 1.05, size=3)
    image = _mix(colour, flat_colour, interdune * rng.uniform(0.0, 0.8))
    if rng.random() < 0.5:
        image = image * (1.0 + rng.uniform(0.01, 0.04) * (stripes(rng, size, 2.5, 0.5, 0.0) - 0.5))[..., None]
    return image * shading[..., None]


def _rock(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    size = colour.shape[0]
    height = fractal_noise(rng, (size, size), rng.uniform(10.0, 40.0), octaves=5, persistence=0.55)
    if rng.random() < 0.6:  # terraces of a plateau
        steps = rng.uniform(3.0, 8.0)
        terraced = np.floor(height * steps) / steps
        height = terraced + 0.3 * (height - terraced)
    shading = relief_shading(height, rng, rng.uniform(0.15, 0.45))
    varnish = smoothstep((fractal_noise(rng, (size, size), rng.uniform(6.0, 20.0), octaves=3) - 0.55) * 4)
    image = colour * (1.0 - rng.uniform(0.1, 0.4) * varnish)[..., None]
    if rng.random() < 0.5:  # a dry wadi: a winding, paler channel
        river = np.abs(value_noise(rng, (size, size), rng.uniform(16.0, 40.0)) - 0.5)
        channel = smoothstep(1.0 - river / rng.uniform(0.02, 0.06))
        image = _mix(image, np.clip(colour * 1.15, 0, 1), channel * rng.uniform(0.4, 0.9))
    image = image * (1.0 + rng.uniform(0.01, 0.05) * unit(blur(rng.normal(size=(size, size)))))[..., None]
    return image * shading[..., None]


def _gravel(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    size = colour.shape[0]
    speckle = unit(blur(rng.normal(size=(size, size)), passes=int(rng.integers(0, 2))))
    shade = 1.0 + rng.uniform(0.03, 0.09) * speckle
    shade += rng.uniform(0.02, 0.08) * unit(fractal_noise(rng, (size, size), rng.uniform(8.0, 32.0), octaves=3))
    pebbles = rng.random((size, size)) < rng.uniform(0.0, 0.05)
    shade = shade * np.where(pebbles, rng.uniform(0.6, 0.85), 1.0)
    if rng.random() < 0.3:  # vehicle tracks
        tracks = np.abs(stripes(rng, size, rng.uniform(20.0, 60.0), 0.1, 0.0) - 0.5) < 0.015
        shade = shade * np.where(tracks, rng.uniform(0.85, 1.1), 1.0)
    return colour * blur(shade, passes=1)[..., None] if rng.random() < 0.5 else colour * shade[..., None]


def _salt_flat(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    size = colour.shape[0]
    crust = np.array([rng.uniform(0.72, 0.88), 0.0, 0.0])
    crust[1] = crust[0] * rng.uniform(0.93, 0.98)
    crust[2] = crust[1] * rng.uniform(0.84, 0.92)  # salt and gypsum crusts are cream, never blue-white
    cracks = np.abs(value_noise(rng, (size, size), rng.uniform(3.0, 7.0)) - 0.5)
    cracks = np.minimum(cracks, np.abs(value_noise(rng, (size, size), rng.uniform(5.0, 10.0)) - 0.5))
    network = smoothstep(1.0 - cracks / rng.uniform(0.04, 0.08))
    image = np.broadcast_to(crust, colour.shape) * (1.0 - rng.uniform(0.15, 0.3) * network)[..., None]
    # Brown, damp or sandy margin on one side of the tile (the shore of the dry lake), slightly wavy.
    dy, dx = direction(rng)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    across = yy * dy + xx * dx + 0.15 * (fractal_noise(rng, (size, size), 24.0, octaves=3) - 0.5)
    margin = smoothstep((across - rng.uniform(-0.2, 0.3)) / rng.uniform(0.1, 0.4) + 0.5)
    image = _mix(image, colour, margin * rng.uniform(0.7, 1.0))
    image = image * (1.0 + rng.uniform(0.01, 0.03) * unit(blur(rng.normal(size=(size, size)))))[..., None]
    return image


_SCENES = {"sable": _sand_sheet, "dunes": _dunes, "roche": _rock, "reg": _gravel, "sel": _salt_flat}


def desert_scene(rng: np.random.Generator, ground: np.ndarray, kind: str | None = None) -> tuple[np.ndarray, str]:
    """Fabrique un désert à partir d'une tuile Blue Marble de désert (flottants dans [0, 1], (n, n, 3)).

    ``kind`` choisit le type de scène (voir :data:`DESERT_KINDS`) ; par défaut il est tiré au hasard.
    Renvoie l'image (flottants dans [0, 1]) et le type de scène.
    """
    if kind is None:
        kinds = list(DESERT_KINDS)
        kind = kinds[int(rng.choice(len(kinds), p=np.array(list(DESERT_KINDS.values()))))]
    elif kind not in DESERT_KINDS:
        raise ValueError(f"Type de désert inconnu : {kind!r} (attendu : {', '.join(DESERT_KINDS)}).")
    colour = _colour_field(rng, ground)
    return np.clip(_SCENES[kind](rng, colour), 0.0, 1.0), kind
