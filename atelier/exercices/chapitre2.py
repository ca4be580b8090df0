"""Exercices du chapitre 2 (construire et entraîner un CNN) : ``from atelier.exercices import chapitre2 as ex``."""

from __future__ import annotations

import numpy as np

from .base import Wrong, attempt, describe_exception, exercise, expect, raised_in

NOTEBOOK = "02_cnn.ipynb"


# --------------------------------------------------------------------------- exercice 1 : une convolution à la main

ROW, COLUMN = 20, 30


def _keras_convolution(gray: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """La carte d'activation que calcule ``Conv2D(1, 3, padding="same", use_bias=False)`` avec ce noyau."""
    import keras

    conv = keras.layers.Conv2D(1, 3, padding="same", use_bias=False)
    conv.build((None, *gray.shape, 1))
    conv.kernel.assign(np.asarray(kernel, np.float32).reshape(3, 3, 1, 1))
    return np.asarray(conv(np.asarray(gray, np.float32)[np.newaxis, ..., np.newaxis]))[0, ..., 0]


@exercise(
    notebook=NOTEBOOK,
    cells="convolution-main",
    hints=(
        f"La valeur en ({ROW}, {COLUMN}) ne dépend que des 3 × 3 pixels autour de ce point : le pixel "
        f"({ROW}, {COLUMN}) est au centre de la fenêtre.",
        "Découpez la fenêtre de 3 × 3 pixels dans gray (lignes 19 à 21, colonnes 29 à 31 : une tranche Python "
        "s'arrête avant sa borne de fin), multipliez-la case par case par kernel, additionnez.",
        f"value = float((gray[{ROW - 1}:{ROW + 2}, {COLUMN - 1}:{COLUMN + 2}] * kernel).sum())",
    ),
    success="c'est exactement la valeur que calcule Conv2D avec ce filtre.",
)
def ex1(value, gray, kernel):
    try:
        number = float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise Wrong(f"value doit être un seul nombre, pas {np.shape(value) or type(value).__name__}.") from None
    gray = np.asarray(gray, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    expected = float(_keras_convolution(gray, kernel)[ROW, COLUMN])
    window = gray[ROW - 1 : ROW + 2, COLUMN - 1 : COLUMN + 2]

    def same(candidate):
        return np.isclose(number, candidate, rtol=1e-4, atol=1e-5)

    if same(expected):
        return None
    if same((gray[ROW : ROW + 3, COLUMN : COLUMN + 3] * kernel).sum()):
        raise Wrong(
            f"décalé d'un pixel : vous avez pris la fenêtre qui commence en ({ROW}, {COLUMN}). Avec "
            f'padding="same", le pixel ({ROW}, {COLUMN}) est le CENTRE de la fenêtre : lignes {ROW - 1} à '
            f"{ROW + 1}, colonnes {COLUMN - 1} à {COLUMN + 1}."
        )
    if same((window * kernel[::-1, ::-1]).sum()):
        raise Wrong(
            "noyau retourné : c'est la convolution des mathématiciens. Une couche Conv2D ne retourne pas le "
            "filtre : multipliez chaque pixel par le poids à la même place."
        )
    if same(window.sum()):
        raise Wrong("c'est la somme des pixels de la fenêtre : multipliez d'abord chaque pixel par son poids.")
    if same((gray[ROW - 1 : ROW + 1, COLUMN - 1 : COLUMN + 1] * kernel[:2, :2]).sum()):
        raise Wrong("fenêtre de 2 × 2 : une tranche Python s'arrête avant sa borne de fin, écrivez ROW - 1:ROW + 2.")
    raise Wrong(
        f"{number:.4f} au lieu de {expected:.4f} : somme de (fenêtre 3 × 3 centrée en ({ROW}, {COLUMN})) × noyau."
    )


# --------------------------------------------------------------------------- exercice 2 : l'architecture


def _describe(model) -> list[tuple[str, tuple, int]]:
    return [(layer.__class__.__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers]


def _types(layers) -> list[str]:
    return [type(layer).__name__ for layer in layers]


@exercise(
    notebook=NOTEBOOK,
    cells="mes-couches",
    hints=(
        "Suivez le tableau ligne par ligne : une entrée, l'augmentation, la normalisation, quatre blocs de "
        "quatre couches, puis la tête (moyenne globale, dropout, deux couches denses).",
        "Une boucle « for filters in (16, 32, 64, 128): » ajoute à chaque tour les quatre couches d'un bloc avec "
        "my_layers += [...] ; n'oubliez pas use_bias=False et momentum=0.9.",
        "Comparez votre liste au tableau ✓/✗ de la cellule suivante : la première ligne ✗ dit quelle couche diffère.",
    ),
    success="même architecture que build_cnn : mêmes couches, mêmes formes, mêmes nombres de paramètres.",
)
def ex2(my_layers, classes):
    import keras

    from ..model import build_cnn

    layers = list(my_layers) if isinstance(my_layers, (list, tuple)) else None
    expect(layers is not None, "my_layers doit être une liste de couches Keras.")
    try:
        model = keras.Sequential(layers)
    except Exception as error:  # Keras refuses the list: explain in French
        raise Wrong(f"Keras ne peut pas empiler ces couches : {describe_exception(error)}") from None
    reference = build_cnn(classes, seed=0)
    mine, expected = _types(model.layers), _types(reference.layers)
    expect("Rescaling" in mine, "il manque Rescaling(1.0 / 255) : le réseau recevrait des pixels de 0 à 255.")
    expect(
        "Flatten" not in mine,
        "Flatten au lieu de GlobalAveragePooling2D : la couche dense recevrait 4 × 4 × 128 = 2 048 valeurs "
        "(131 136 paramètres) au lieu d'une moyenne par canal (128 valeurs).",
    )
    expect(
        mine.count("BatchNormalization") == 4,
        f"{mine.count('BatchNormalization')} couche(s) BatchNormalization au lieu de 4 : une par bloc, entre la "
        "convolution et ReLU.",
    )
    expect(
        mine.count("Conv2D") == 4 and mine.count("MaxPooling2D") == 4,
        "il faut quatre blocs, chacun avec une Conv2D et un MaxPooling2D (16, 32, 64 puis 128 filtres).",
    )
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    expect(
        not any(layer.use_bias for layer in convs),
        "Conv2D avec biais : 448 paramètres au lieu de 432 pour conv1. BatchNormalization a son propre décalage "
        "appris, le biais de la convolution ne sert à rien : use_bias=False.",
    )
    expect(
        [layer.filters for layer in convs] == [16, 32, 64, 128],
        f"filtres {[layer.filters for layer in convs]} au lieu de [16, 32, 64, 128].",
    )
    norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    expect(
        all(np.isclose(layer.momentum, 0.9) for layer in norms),
        "BatchNormalization(momentum=0.9) : avec la valeur par défaut (0.99), les moyennes mémorisées suivent "
        "trop lentement et la validation saute d'une époque à l'autre.",
    )
    for position, (got, want) in enumerate(zip(mine, expected, strict=False), start=1):
        expect(
            got == want, f"couche n° {position} : {got} au lieu de {want} (ordre du tableau : conv, norm, ReLU, pool)."
        )
    expect(len(mine) == len(expected), f"{len(mine)} couches au lieu de {len(expected)}.")
    dropout = next(layer for layer in model.layers if type(layer).__name__ == "Dropout")
    expect(np.isclose(dropout.rate, 0.3), f"Dropout({dropout.rate}) au lieu de Dropout(0.3).")
    last = model.layers[-1]
    expect(
        last.units == len(classes) and last.get_config()["activation"] == "softmax",
        f'la dernière couche doit donner une probabilité par classe : Dense({len(classes)}, activation="softmax").',
    )
    for position, (layer, wanted) in enumerate(zip(_describe(model), _describe(reference), strict=True), start=1):
        expect(
            layer == wanted,
            f"couche n° {position} ({layer[0]}) : forme {layer[1]}, {layer[2]} paramètres ; "
            f"attendu {wanted[1]}, {wanted[2]}.",
        )


# --------------------------------------------------------------------------- exercice 3 : un pas de gradient à la main

NO_GRADIENT = (
    "aucun gradient : la perte doit être calculée DANS le bloc « with tf.GradientTape() as tape: » (la bande "
    "n'enregistre que les calculs faits à l'intérieur), puis tape.gradient(perte, model.trainable_variables)."
)


def _tiny_problem():
    """Un petit réseau, un optimiseur SGD et un lot fixes : le pas attendu se calcule exactement."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 1, size=(8, 4, 4, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 4, size=8).astype("int32"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(4, 4, 3)),
            keras.layers.Conv2D(2, 3, padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    return model, keras.optimizers.SGD(learning_rate=0.5), images, labels


@exercise(
    notebook=NOTEBOOK,
    cells="pas-gradient",
    hints=(
        "Trois temps : calculer la perte sur le lot en enregistrant les calculs, demander les gradients de "
        "cette perte par rapport aux poids, puis laisser l'optimiseur faire un pas.",
        "with tf.GradientTape() as tape: (prédire et calculer la perte ici) ; puis "
        "tape.gradient(loss, model.trainable_variables).",
        "optimizer.apply_gradients(zip(gradients, model.trainable_variables)) fait le pas ; renvoyez loss.",
    ),
    success="un pas de descente de gradient exact : même perte et mêmes nouveaux poids que le calcul de référence.",
)
def ex3(train_step):
    import keras
    import tensorflow as tf

    model, optimizer, images, labels = _tiny_problem()
    before = [np.array(variable) for variable in model.trainable_variables]
    loss_function = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape() as tape:
        reference_loss = loss_function(labels, model(images, training=True))
    gradients = [np.array(g) for g in tape.gradient(reference_loss, model.trainable_variables)]
    rate = float(optimizer.learning_rate)

    def explain(error):
        if isinstance(error, ValueError) and "no gradients" in str(error).lower():
            return NO_GRADIENT
        if isinstance(error, (TypeError, AttributeError)) and raised_in(error, "optimizers"):
            return NO_GRADIENT if "None" in str(error) else None
        return None

    returned = attempt(
        train_step,
        model,
        optimizer,
        images,
        labels,
        what="train_step(model, optimizer, images, labels)",
        explain=explain,
    )
    after = [np.array(variable) for variable in model.trainable_variables]
    step = [a - b for a, b in zip(after, before, strict=True)]
    expected = [-rate * g for g in gradients]

    def matches(candidate):
        return all(np.allclose(s, c, atol=1e-5) for s, c in zip(step, candidate, strict=True))

    expect(
        any(np.abs(s).max() > 0 for s in step),
        "les poids n'ont pas bougé : après tape.gradient, il faut faire le pas, "
        "optimizer.apply_gradients(zip(gradients, model.trainable_variables)).",
    )
    if matches([-e for e in expected]):
        raise Wrong(
            "les poids vont dans le sens du gradient : vous montez la pente et la perte augmente. L'optimiseur "
            "fait déjà le pas vers le bas (poids − pas × gradient) : ne changez pas le signe des gradients."
        )
    if matches([2 * e for e in expected]):
        raise Wrong("deux pas au lieu d'un : train_step doit appliquer les gradients une seule fois.")
    expect(
        matches(expected),
        "les poids ont bougé, mais pas d'un pas de gradient de cette perte : calculez la perte avec les "
        "étiquettes du lot (loss_fn(labels, model(images, training=True))) puis appliquez ses gradients.",
    )
    try:
        loss_value = float(np.asarray(returned).reshape(()))
    except (TypeError, ValueError):
        raise Wrong("train_step doit renvoyer la perte du lot (un seul nombre), calculée avant le pas.") from None
    expect(
        np.isclose(loss_value, float(reference_loss), atol=1e-5),
        f"train_step renvoie {loss_value:.4f} au lieu de la perte du lot, {float(reference_loss):.4f}.",
    )


# --------------------------------------------------------------------------- exercice 4 : entraîner avec validation

NO_VALIDATION = (
    "model.fit sans validation_data : Keras n'a mesuré que l'entraînement (pas de val_loss dans history), "
    "l'arrêt anticipé n'a rien eu à surveiller (c'est ce que disait l'avertissement anglais « Early stopping "
    "conditioned on metric `val_loss` which is not available ») et les courbes n'auront pas de validation. "
    "Relancez la cellule avec validation_data=val_ds."
)


@exercise(
    notebook=NOTEBOOK,
    cells="entrainer",
    hints=(
        "Deux objets : un rappel d'arrêt anticipé, qui regarde la perte sur des images que le modèle n'apprend "
        "pas, et l'historique que renvoie l'entraînement.",
        "keras.callbacks.EarlyStopping(monitor=..., patience=..., start_from_epoch=..., restore_best_weights=...) "
        "puis model.fit(train_ds, validation_data=..., epochs=..., callbacks=[...]).",
        "Les réglages de python -m atelier train sont ceux d'atelier.training.early_stopping() : comparez-les aux "
        "vôtres (stop.monitor, stop.patience…).",
    ),
    success="arrêt anticipé sur la perte de validation, meilleurs poids gardés, validation mesurée à chaque époque.",
)
def ex4(stop, history, EPOCHS):
    import keras

    from ..training import early_stopping

    expected = early_stopping()
    expect(isinstance(stop, keras.callbacks.EarlyStopping), "stop doit être un keras.callbacks.EarlyStopping.")
    if stop.monitor == "loss":
        raise Wrong(
            "stop surveille la perte d'entraînement : elle baisse presque toujours, même quand le modèle "
            'sur-apprend. Surveillez la perte de validation, monitor="val_loss".'
        )
    expect(
        stop.monitor == expected.monitor,
        f'stop surveille « {stop.monitor} » : surveillez la perte de validation (monitor="val_loss"), plus fine '
        "que la précision, qui avance par paliers d'une image.",
    )
    expect(
        stop.restore_best_weights,
        "restore_best_weights=True manque : sans lui, le modèle garde les poids de la dernière époque, pas ceux "
        "de la meilleure.",
    )
    expect(
        (stop.patience, stop.start_from_epoch) == (expected.patience, expected.start_from_epoch),
        f"patience={stop.patience}, start_from_epoch={stop.start_from_epoch} : l'énoncé demande "
        f"patience={expected.patience} et start_from_epoch={expected.start_from_epoch}.",
    )
    expect(
        isinstance(history, keras.callbacks.History),
        "history doit être ce que renvoie model.fit (un objet History) : history = model.fit(...).",
    )
    expect("loss" in history.history, "history est vide : model.fit n'a pas tourné.")
    expect("val_loss" in history.history, NO_VALIDATION)
    expect(
        stop.model is not None and stop.model is history.model,
        "stop n'a pas servi pendant cet entraînement : donnez-le à model.fit avec callbacks=[stop].",
    )
    expect(
        history.params.get("epochs") == EPOCHS,
        f"model.fit a tourné avec epochs={history.params.get('epochs')} : demandez EPOCHS ({EPOCHS}) époques au plus, "
        "l'arrêt anticipé s'arrêtera plus tôt s'il le faut.",
    )
