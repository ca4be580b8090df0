"""Le CNN de l'atelier, construit couche par couche avec Keras.

Le même constructeur sert au chapitre 2 et à ``python -m atelier train``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from .preprocessing import IMAGE_SIZE


def augmentation_layers(seed: int = 0) -> keras.Sequential:
    """Couches d'augmentation de données, actives seulement pendant l'entraînement.

    Une image satellite n'a ni haut ni bas : retournements et rotations quelconques. Luminosité,
    contraste et saturation varient pour que le modèle ne se fie pas seulement aux couleurs (les
    vraies images sont plus voilées, plus bleues ou plus claires que les images d'entraînement).
    """
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(0.5, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.2, 0.2), fill_mode="reflect", seed=seed + 2),
            layers.RandomBrightness(0.25, value_range=(0, 255), seed=seed + 3),
            layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 4),
            layers.RandomSaturation((0.3, 0.7), value_range=(0, 255), seed=seed + 5),
        ],
        name="augmentation",
    )


def build_cnn(
    classes: Sequence[str],
    image_size: int = IMAGE_SIZE,
    *,
    augment: bool = True,
    seed: int = 0,
) -> keras.Model:
    """Construit le CNN de l'atelier pour les classes données (non compilé).

    Entrée : images ``image_size × image_size × 3`` aux valeurs 0–255. Trois blocs
    convolution + max-pooling divisent la taille par 8 ; ``Flatten`` aplatit le résultat, une couche
    dense le combine, et la sortie ``softmax`` donne une probabilité par classe.
    """
    model = keras.Sequential(name="cnn_atelier")
    model.add(keras.Input(shape=(image_size, image_size, 3), name="image"))
    if augment:
        model.add(augmentation_layers(seed))
    model.add(layers.Rescaling(1.0 / 255, name="normalisation"))
    for filters in (32, 64, 128):
        model.add(layers.Conv2D(filters, 3, padding="same", activation="relu"))
        model.add(layers.MaxPooling2D())
    model.add(layers.GlobalAveragePooling2D(name="moyenne_globale"))
    model.add(layers.Dropout(0.3, seed=seed))
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(len(classes), activation="softmax", name="probabilites"))
    return model


def compile_model(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Compile le modèle : Adam, entropie croisée pour des étiquettes entières, précision."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
