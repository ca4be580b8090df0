"""Chapter 2 exercises: the solution passes, each typical wrong answer gets its own French message."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from atelier.exercices import OK, TODO, WRONG
from atelier.exercices import chapitre2 as ex
from atelier.exercices.solution_source import solution_text
from atelier.labels import CLASSES
from atelier.model import augmentation_layers


def _run_solution(cell_id, namespace):
    exec(solution_text(ex.NOTEBOOK, cell_id), namespace)
    return namespace


# --------------------------------------------------------------------------- exercice 1 : convolution


def _conv_context():
    rng = np.random.default_rng(3)
    return {"gray": rng.uniform(0, 1, size=(64, 64)), "kernel": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1.0]])}


def _value(expression):
    context = _conv_context()
    gray, kernel = context["gray"], context["kernel"]
    return {"value": float(eval(expression, {"np": np, "gray": gray, "kernel": kernel})), **context}


# --------------------------------------------------------------------------- exercice 2 : architecture


def _architecture(conv_bias=False, pooling=layers.GlobalAveragePooling2D, batch_norm=True, rescale=True, momentum=0.9):
    result = [keras.Input(shape=(64, 64, 3)), augmentation_layers(seed=0)]
    if rescale:
        result.append(layers.Rescaling(1.0 / 255))
    for filters in (16, 32, 64, 128):
        result.append(layers.Conv2D(filters, 3, padding="same", use_bias=conv_bias))
        if batch_norm:
            result.append(layers.BatchNormalization(momentum=momentum))
        result += [layers.ReLU(), layers.MaxPooling2D()]
    result += [pooling(), layers.Dropout(0.3, seed=0), layers.Dense(64, activation="relu")]
    result.append(layers.Dense(len(CLASSES), activation="softmax"))
    return {"my_layers": result, "classes": list(CLASSES)}


def _swapped_relu():
    answer = _architecture()
    answer["my_layers"][4], answer["my_layers"][5] = answer["my_layers"][5], answer["my_layers"][4]
    return answer


# --------------------------------------------------------------------------- exercice 3 : gradient step

loss_fn = keras.losses.SparseCategoricalCrossentropy()


def _step(sign=1.0, steps=1, apply=True, inside=True, returns="loss"):
    def train_step(model, optimizer, images, labels):
        with tf.GradientTape() as tape:
            if inside:
                loss = loss_fn(labels, model(images, training=True))
        if not inside:
            loss = loss_fn(labels, model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        if apply:
            for _ in range(steps):
                optimizer.apply_gradients(
                    zip([None if g is None else sign * g for g in gradients], model.trainable_variables, strict=True)
                )
        return loss if returns == "loss" else None

    return {"train_step": train_step}


# --------------------------------------------------------------------------- exercice 4 : fit


@pytest.fixture(scope="module")
def tiny_fit():
    """Tiny real fits (a few seconds): with and without validation, with and without the callback."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, size=32).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

    def run(validation=True, with_callback=True, epochs=2, **stop_options):
        options = {"monitor": "val_loss", "patience": 6, "start_from_epoch": 8, "restore_best_weights": True}
        options.update(stop_options)
        stop = keras.callbacks.EarlyStopping(**options)
        model = keras.Sequential([keras.Input((8, 8, 3)), layers.GlobalAveragePooling2D(), layers.Dense(4)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        history = model.fit(
            train,
            validation_data=train if validation else None,
            epochs=epochs,
            callbacks=[stop] if with_callback else [],
            verbose=0,
        )
        return {"stop": stop, "history": history, "EPOCHS": 2}

    return run


FIT_CASES = [
    ({"validation": False}, "model.fit sans validation_data"),
    ({"monitor": "loss"}, "surveille la perte d'entraînement"),
    ({"monitor": "val_accuracy"}, "surveille « val_accuracy »"),
    ({"restore_best_weights": False}, "restore_best_weights=True manque"),
    ({"patience": 3}, "patience=3"),
    ({"with_callback": False}, "callbacks=[stop]"),
    ({"epochs": 1}, "epochs=1"),
]


@pytest.mark.parametrize(("options", "fragment"), FIT_CASES, ids=[case[1][:30] for case in FIT_CASES])
def test_fit_wrong_answers(tiny_fit, options, fragment):
    result = ex.ex4.evaluate({}, **tiny_fit(**options))
    assert result.status == WRONG and fragment in result.message, result


def test_fit_right_answer_and_history_not_a_history(tiny_fit):
    assert ex.ex4.evaluate({}, **tiny_fit()).status == OK
    answer = tiny_fit()
    answer["history"] = answer["history"].history  # the dict, not the History object
    assert "ce que renvoie model.fit" in ex.ex4.evaluate({}, **answer).message


CATALOGUE = [
    (ex.ex1, _value("(gray[19:22, 29:32] * kernel).sum()"), OK, "exactement la valeur"),
    (ex.ex1, _value("(gray[20:23, 30:33] * kernel).sum()"), WRONG, "décalé d'un pixel"),
    (ex.ex1, _value("(gray[19:22, 29:32] * kernel[::-1, ::-1]).sum()"), WRONG, "noyau retourné"),
    (ex.ex1, _value("gray[19:22, 29:32].sum()"), WRONG, "multipliez d'abord chaque pixel"),
    (ex.ex1, _value("(gray[19:21, 29:31] * kernel[:2, :2]).sum()"), WRONG, "fenêtre de 2 × 2"),
    (ex.ex1, {**_conv_context(), "value": np.zeros(3)}, WRONG, "un seul nombre"),
    (ex.ex2, _architecture(), OK, "même architecture"),
    (ex.ex2, _architecture(conv_bias=True), WRONG, "Conv2D avec biais"),
    (ex.ex2, _architecture(pooling=layers.Flatten), WRONG, "Flatten au lieu de GlobalAveragePooling2D"),
    (ex.ex2, _architecture(batch_norm=False), WRONG, "0 couche(s) BatchNormalization au lieu de 4"),
    (ex.ex2, _architecture(rescale=False), WRONG, "il manque Rescaling"),
    (ex.ex2, _architecture(momentum=0.99), WRONG, "momentum=0.9"),
    (ex.ex2, _swapped_relu(), WRONG, "couche n° 4 : ReLU au lieu de BatchNormalization"),
    (ex.ex2, {"my_layers": "Conv2D", "classes": list(CLASSES)}, WRONG, "une liste de couches"),
    (
        ex.ex2,
        {"my_layers": [keras.Input((64, 64, 3)), "Conv2D"], "classes": list(CLASSES)},
        WRONG,
        "ne peut pas empiler",
    ),
    (ex.ex3, _step(), OK, "un pas de descente de gradient exact"),
    (ex.ex3, _step(apply=False), WRONG, "les poids n'ont pas bougé"),
    (ex.ex3, _step(sign=-1.0), WRONG, "vous montez la pente"),
    (ex.ex3, _step(steps=2), WRONG, "deux pas au lieu d'un"),
    (ex.ex3, _step(inside=False), WRONG, "DANS le bloc"),
    (ex.ex3, _step(returns=None), WRONG, "doit renvoyer la perte"),
]


@pytest.mark.parametrize(
    ("item", "answers", "status", "fragment"), CATALOGUE, ids=[f"{c[0].name}-{c[3][:30]}" for c in CATALOGUE]
)
def test_catalogue(item, answers, status, fragment):
    result = item.evaluate({}, **answers)
    assert result.status == status and fragment in result.message, result
    assert "\n" not in result.line


def test_catalogue_has_two_wrong_answers_per_exercise():
    for item in (ex.ex1, ex.ex2, ex.ex3):
        assert sum(entry[0] is item and entry[2] == WRONG for entry in CATALOGUE) >= 2
    assert len(FIT_CASES) >= 2


def test_solutions_pass():
    namespace = {"np": np, "tf": tf, "keras": keras, "layers": layers, "classes": list(CLASSES)}
    namespace.update(_conv_context())
    namespace["augmentation_layers"] = augmentation_layers
    for cell_id, item in (("convolution-main", ex.ex1), ("mes-couches", ex.ex2), ("pas-gradient", ex.ex3)):
        _run_solution(cell_id, namespace)
        assert item.evaluate(namespace).status == OK, (cell_id, item.evaluate(namespace))


def test_gap_in_train_step_is_not_done():
    def train_step(model, optimizer, images, labels):
        raise NotImplementedError("À compléter : faites un pas de descente de gradient")

    assert ex.ex3.evaluate({}, train_step=train_step).status == TODO
