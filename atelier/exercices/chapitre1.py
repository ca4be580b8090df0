"""Exercices du chapitre 1 (préparer les données) : ``from atelier.exercices import chapitre1 as ex``."""

from __future__ import annotations

import numpy as np

from .base import Wrong, attempt, exercise, expect, raised_in

NOTEBOOK = "01_preparation_donnees.ipynb"


def _pixels() -> np.ndarray:
    """Un petit lot fixe de pixels uint8 qui contient 0 et 255."""
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    batch[0, 0, 0] = (0, 255, 128)
    return batch


# --------------------------------------------------------------------------- exercice 1 : normaliser


@exercise(
    notebook=NOTEBOOK,
    cells="normalisation",
    hints=(
        "Le blanc (255) doit valoir 1 et le noir (0) doit valoir 0 ; et le résultat doit être en float32, "
        "le type avec lequel Keras calcule.",
        "Deux étapes : convertir le type des pixels, puis diviser. Diviser d'abord un tableau NumPy d'entiers "
        "donne du float64.",
        "tf.cast(images, tf.float32) convertit un tableau NumPy comme un tenseur ; divisez ensuite par 255.0.",
    ),
    success="normalize renvoie du float32 entre 0 et 1, exactement pixels / 255, comme Rescaling(1/255).",
)
def ex1(normalize):
    import tensorflow as tf

    pixels = _pixels()
    result = attempt(
        normalize,
        pixels,
        what="normalize(images)",
        known_errors=[(TypeError, "unsupported operand", "normalize(images) : opération impossible sur ce type.")],
    )
    expect(result is not None, "normalize(images) ne renvoie rien : il manque « return ».")
    try:
        values = tf.convert_to_tensor(result)
    except (TypeError, ValueError):
        raise Wrong(
            f"normalize doit renvoyer un tableau ou un tenseur, pas un objet {type(result).__name__}."
        ) from None
    expect(
        tuple(values.shape) == pixels.shape,
        f"la forme change : {pixels.shape} en entrée, {tuple(values.shape)} en sortie ; normaliser ne change "
        "que les valeurs.",
    )
    if values.dtype == tf.float64:
        raise Wrong(
            "float64 au lieu de float32 : diviser des entiers NumPy par 255 donne du float64, deux fois plus "
            "lourd, alors que Keras calcule en float32 ; utilisez tf.cast(images, tf.float32) avant de diviser."
        )
    expect(
        values.dtype.is_floating,
        f"le résultat est en {values.dtype.name} (des entiers) : la division entière « // » ou une conversion "
        "en entiers arrondit tout à 0 ou 1 ; il faut des nombres à virgule (float32).",
    )
    expect(values.dtype == tf.float32, f"{values.dtype.name} au lieu de float32 : convertissez avec tf.cast.")
    array = values.numpy().astype(np.float64)
    expect(
        array.max() <= 1.0 + 1e-6,
        f"valeur maximale {array.max():.0f} au lieu de 1 : les pixels ont changé de type mais il manque la "
        "division par 255.",
    )
    if np.allclose(array, pixels / 256.0, atol=1e-6):
        raise Wrong("divisé par 256 : le blanc (255) doit valoir exactement 1, divisez par 255.")
    expect(
        np.allclose(array, pixels / 255.0, atol=1e-6),
        "les valeurs ne sont pas pixels / 255 (par exemple 0 → 0, 128 → 0,502, 255 → 1).",
    )
    tensor_result = attempt(
        normalize,
        tf.constant(pixels),
        what="normalize(tenseur TensorFlow)",
        known_errors=[
            (
                AttributeError,
                "astype",
                "normalize marche sur un tableau NumPy mais pas sur un tenseur TensorFlow (un tenseur n'a pas "
                "de .astype) : utilisez tf.cast, qui accepte les deux.",
            )
        ],
    )
    expect(
        np.allclose(np.asarray(tensor_result, dtype=np.float64), pixels / 255.0, atol=1e-6),
        "normalize donne un autre résultat sur un tenseur TensorFlow que sur un tableau NumPy.",
    )


# --------------------------------------------------------------------------- exercice 2 : corriger une augmentation

ROTATION_IN_DEGREES = (
    "RandomRotation attend une fraction de tour complet, pas des degrés : 0.25 = un quart de tour (90°), "
    "0.5 = un demi-tour ; Keras refuse tout facteur hors de [-1, 1]."
)
CONTRAST_IN_PERCENT = (
    "RandomContrast attend une fraction, pas un pourcentage : ± 20 % s'écrit 0.2 (Keras refuse un facteur "
    "hors de [0, 1])."
)


def _layer(layers, kind: str):
    found = [layer for layer in layers if type(layer).__name__ == kind]
    return found[0] if found else None


def _symmetric(factor) -> tuple[float, float]:
    if isinstance(factor, (int, float)):
        return (-float(factor), float(factor))
    low, high = factor
    return (float(low), float(high))


@exercise(
    notebook=NOTEBOOK,
    cells="mon-augmentation",
    hints=(
        "Lisez chaque réglage avec son unité : que veut dire 90 pour RandomRotation, 20 pour RandomContrast ? "
        "Et une image satellite a-t-elle un haut et un bas ?",
        "RandomRotation et RandomContrast prennent des fractions (0.25 = un quart de tour, 0.2 = 20 %) ; "
        "RandomFlip a un mode qui retourne dans les deux sens.",
        'RandomFlip("horizontal_and_vertical", seed=seed), RandomRotation(0.25, fill_mode="reflect", '
        "seed=seed + 1), RandomContrast(0.2, value_range=(0, 255), seed=seed + 2).",
    ),
    success="retournements dans les deux sens, rotation jusqu'à un quart de tour, contraste ± 20 %, reproductible.",
)
def ex2(my_augmentation_layers):
    import keras

    def explain(error):
        if isinstance(error, ValueError) and raised_in(error, "random_rotation"):
            return ROTATION_IN_DEGREES
        if isinstance(error, ValueError) and raised_in(error, "random_contrast"):
            return CONTRAST_IN_PERCENT
        return None

    built = attempt(my_augmentation_layers, seed=0, what="my_augmentation_layers(seed=0)", explain=explain)
    if isinstance(built, keras.Sequential):
        built = built.layers
    expect(
        isinstance(built, (list, tuple)) and all(isinstance(layer, keras.layers.Layer) for layer in built),
        "my_augmentation_layers doit renvoyer une liste de couches Keras.",
    )
    flip, rotation, contrast = (_layer(built, kind) for kind in ("RandomFlip", "RandomRotation", "RandomContrast"))
    expect(flip is not None, "il manque la couche RandomFlip (retournements).")
    expect(
        flip.get_config()["mode"] == "horizontal_and_vertical",
        f'RandomFlip("{flip.get_config()["mode"]}") ne retourne que dans un sens : une image satellite n\'a ni '
        'haut ni bas, retournez-la aussi dans l\'autre sens (mode "horizontal_and_vertical").',
    )
    expect(rotation is not None, "il manque la couche RandomRotation.")
    low, high = _symmetric(rotation.get_config()["factor"])
    expect(max(abs(low), abs(high)) <= 1, ROTATION_IN_DEGREES)
    expect(
        np.allclose((low, high), (-0.25, 0.25)),
        f"RandomRotation tourne de {low:+.2f} à {high:+.2f} tour : il faut jusqu'à un quart de tour dans chaque "
        "sens (facteur 0.25).",
    )
    expect(
        rotation.get_config()["fill_mode"] == "reflect",
        f'fill_mode="{rotation.get_config()["fill_mode"]}" : les coins découverts par la rotation doivent être '
        'remplis par un reflet de l\'image (fill_mode="reflect"), pas par une couleur unie.',
    )
    expect(contrast is not None, "il manque la couche RandomContrast.")
    low, high = _symmetric(contrast.get_config()["factor"])
    expect(np.isclose(max(abs(low), abs(high)), 0.2), "RandomContrast doit faire varier le contraste de ± 20 % (0.2).")
    expect(
        tuple(contrast.get_config()["value_range"]) == (0, 255),
        "RandomContrast : vos pixels vont de 0 à 255, indiquez value_range=(0, 255).",
    )
    batch = _pixels()[:2].astype("float32")
    first = keras.Sequential(attempt(my_augmentation_layers, seed=0, what="my_augmentation_layers(seed=0)"))
    second = keras.Sequential(attempt(my_augmentation_layers, seed=0, what="my_augmentation_layers(seed=0)"))
    out_first = np.asarray(first(batch, training=True))
    expect(out_first.shape == batch.shape, f"l'augmentation change la forme : {batch.shape} → {out_first.shape}.")
    expect(
        np.array_equal(np.asarray(first(batch, training=False)), batch),
        "hors entraînement (training=False), l'augmentation doit laisser l'image intacte.",
    )
    expect(
        np.allclose(out_first, np.asarray(second(batch, training=True))),
        "deux augmentations construites avec la même graine donnent des images différentes : donnez une graine "
        "à chaque couche (seed=seed, seed=seed + 1…).",
    )


# ---------------------------------------------------------------- exercice 3 : moyenne et écart type par canal

CHANNELS = ("rouge", "vert", "bleu")


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = images.astype(np.float64) / 255.0
    return pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2))


def _as_vector(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"{name} doit être un tableau de nombres, pas un objet {type(value).__name__}.") from None
    if array.shape == ():
        raise Wrong(
            f"{name} est un seul nombre : il mélange les trois canaux. Il en faut un par canal (rouge, vert, bleu) : "
            "calculez sur les axes des images, des lignes et des colonnes (axis=(0, 1, 2))."
        )
    if array.shape != (3,):
        raise Wrong(
            f"{name} a la forme {array.shape} au lieu de (3,) : un nombre par canal. Les images ont la forme "
            "(nombre, hauteur, largeur, canaux) : réduisez les axes 0, 1 et 2, gardez le dernier."
        )
    return array


@exercise(
    notebook=NOTEBOOK,
    cells="stats-canaux",
    hints=(
        "Trois nombres pour la moyenne, trois pour l'écart type : un par canal de couleur, calculés sur tous les "
        "pixels de toutes les images d'entraînement, dans l'échelle 0–1.",
        "splits.train.images a la forme (n, 64, 64, 3) : convertissez en float, divisez par 255, puis réduisez "
        "tous les axes sauf le dernier.",
        'pixels = splits.train.images.astype("float32") / 255 ; pixels.mean(axis=(0, 1, 2)) et '
        "pixels.std(axis=(0, 1, 2)).",
    ),
    success="une moyenne et un écart type par canal, calculés sur l'entraînement seulement.",
)
def ex3(channel_mean, channel_std, splits):
    mean, std = _as_vector(channel_mean, "channel_mean"), _as_vector(channel_std, "channel_std")
    ref_mean, ref_std = _channel_stats(splits.train.images)
    everything = np.concatenate([splits.train.images, splits.validation.images, splits.test.images])
    all_mean, _ = _channel_stats(everything)

    def close(a, b):  # float32 sums over millions of pixels are off by up to ~3e-4
        return np.allclose(a, b, rtol=0, atol=6e-4)

    if close(mean, ref_mean * 255) or close(std, ref_std * 255) or mean.max() > 1.5:
        raise Wrong(
            "valeurs de l'ordre de 100 : vous avez calculé sur les pixels 0–255. Le modèle voit des pixels "
            "normalisés (÷ 255) : calculez dans l'échelle 0–1."
        )
    if close(mean, all_mean) and not close(mean, ref_mean):
        raise Wrong(
            "calculé sur tout le jeu : la validation et le test ne doivent rien apprendre au modèle, pas même "
            "leur moyenne (ce serait une fuite). Utilisez splits.train.images seulement."
        )
    expect(
        close(mean, ref_mean), "channel_mean ne correspond pas à la moyenne de chaque canal des images d'entraînement."
    )
    if close(std, ref_std**2):
        raise Wrong("channel_std est la variance (le carré de l'écart type) : prenez sa racine carrée, ou .std().")
    expect(
        close(std, ref_std), "channel_std ne correspond pas à l'écart type de chaque canal des images d'entraînement."
    )


# ---------------------------------------------------------------- exercice 4 : prédire les lots de tf.data


def _shape(value, name: str) -> tuple:
    try:
        shape = tuple(None if item is None else int(item) for item in value)
    except (TypeError, ValueError):
        raise Wrong(f"{name} doit être une forme, un tuple d'entiers comme (8, 64, 64, 3).") from None
    if None in shape:
        raise Wrong(
            f"{name} contient None : c'est ainsi que Keras affiche une taille de lot qui peut varier. Ici, "
            "prédisez la vraie taille de ce lot."
        )
    return shape


@exercise(
    notebook=NOTEBOOK,
    cells="prediction-lots",
    hints=(
        "Partez des effectifs de la section 7 : combien d'images d'entraînement, de validation ? Un lot regroupe "
        "32 images (256 pour la validation) ; que devient la fin, si le compte ne tombe pas juste ?",
        "Un lot d'images a quatre dimensions : (images du lot, hauteur, largeur, canaux), canaux en dernier. Le "
        "dernier lot n'est pas complété : il garde les images qui restent.",
        "n_train_batches = nombre d'images d'entraînement / 32 arrondi au-dessus ; val_batch_shape commence par "
        "le nombre d'images restant dans le dernier lot de validation.",
    ),
    success="trois prédictions justes : vous savez ce que tf.data donnera au modèle.",
)
def ex4(n_train_batches, train_batch_shape, val_batch_shape, train_ds, val_ds):
    batches = [tuple(int(x) for x in images.shape) for images, _ in train_ds]
    train_images = sum(batch[0] for batch in batches)
    first_shape, count = batches[0], len(batches)
    last_val = [tuple(int(x) for x in images.shape) for images, _ in val_ds][-1]
    try:
        predicted = int(n_train_batches)
    except (TypeError, ValueError):
        raise Wrong("n_train_batches doit être un nombre entier de lots.") from None
    expect(predicted != train_images, f"{predicted}, c'est le nombre d'images : un lot en regroupe {first_shape[0]}.")
    if predicted == train_images // first_shape[0] and predicted != count:
        raise Wrong(
            f"{train_images} images / {first_shape[0]} ne tombe pas juste : le reste forme un dernier lot, plus "
            "petit, qui compte aussi (arrondi au-dessus)."
        )
    expect(
        predicted == count, f"{predicted} lots au lieu de {count} : {train_images} images par lots de {first_shape[0]}."
    )
    shape = _shape(train_batch_shape, "train_batch_shape")
    expect(
        len(shape) == 4,
        f"train_batch_shape a {len(shape)} dimensions : un lot d'images en a quatre, (images du lot, hauteur, "
        "largeur, canaux).",
    )
    expect(
        shape != (first_shape[0], first_shape[3], first_shape[1], first_shape[2]),
        "canaux en premier : Keras (et TensorFlow) rangent les canaux en dernier, (lot, hauteur, largeur, canaux).",
    )
    expect(shape == first_shape, f"train_batch_shape {shape} au lieu de {first_shape}.")
    shape = _shape(val_batch_shape, "val_batch_shape")
    if shape[0] != last_val[0] and shape[1:] == last_val[1:]:
        raise Wrong(
            f"le dernier lot de validation n'a pas {shape[0]} images : tf.data ne complète pas le dernier lot, il "
            f"garde les images qui restent ({last_val[0]} ici)."
        )
    expect(shape == last_val, f"val_batch_shape {shape} au lieu de {last_val}.")
