"""Chapter 6 exercises: Grad-CAM maps, JPEG round trip, a threshold read on curves, the commune's case."""

from __future__ import annotations

import io
import types

import numpy as np
import pytest
from PIL import Image

from atelier import explain
from atelier.exercices import OK, WRONG
from atelier.exercices import chapitre6 as ex
from atelier.exercices.solution_source import solution_text
from atelier.formatting import decimal, percent


def _solution(item, **context):
    namespace = {
        "np": np,
        "io": io,
        "Image": Image,
        "explain": explain,
        "decimal": decimal,
        "percent": percent,
        **context,
    }
    for cell_id in item.cells:
        exec(solution_text(item.notebook, cell_id), namespace)
    return namespace


# --------------------------------------------------------------------------- exercice 1 : Grad-CAM de la vraie classe


@pytest.fixture(scope="module")
def gradcam_context():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 16, 16, 3), dtype=np.uint8)
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    labels = predicted.copy()
    labels[[1, 4, 7]] = (predicted[[1, 4, 7]] + np.array([1, 2, 3])) % 4  # three errors, three different classes
    wrong = np.flatnonzero(labels != predicted)
    return {"model": model, "test_images": images, "test_labels": labels, "predicted": predicted, "wrong": wrong}


def test_ex1_solution_passes(gradcam_context):
    assert ex.ex1.evaluate(_solution(ex.ex1, **gradcam_context)).status == OK


EX1_WRONG = [
    (lambda c: explain.grad_cam(c["model"], c["test_images"][c["wrong"]]), "classe **prédite**"),
    (
        lambda c: explain.grad_cam(
            c["model"], c["test_images"][c["wrong"]], class_index=int(c["test_labels"][c["wrong"]][0])
        ),
        "une seule classe",
    ),
    (
        lambda c: explain.grad_cam(c["model"], c["test_images"], class_index=c["test_labels"]),
        "toutes les images de test",
    ),
    (
        lambda c: explain.grad_cam(c["model"], c["test_images"][c["wrong"]], class_index=c["test_labels"][c["wrong"]])[
            0
        ],
        "une carte 2D par image",
    ),
    (
        lambda c: (
            255 * explain.grad_cam(c["model"], c["test_images"][c["wrong"]], class_index=c["test_labels"][c["wrong"]])
        ),
        "entre 0 et 1",
    ),
    (
        lambda c: explain.grad_cam(
            c["model"], c["test_images"][c["wrong"]][::-1], class_index=c["test_labels"][c["wrong"]]
        ),
        "dans le même ordre",
    ),
]


@pytest.mark.parametrize(("make", "fragment"), EX1_WRONG, ids=[f for _, f in EX1_WRONG])
def test_ex1_wrong_answers(gradcam_context, make, fragment):
    result = ex.ex1.evaluate({**gradcam_context, "true_cams": make(gradcam_context)})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 2 : JPEG


def _jpeg(fmt="JPEG", quality=None, mode="RGB", stack=True, scale=1):
    def jpeg_low_quality(x, quality_arg=10, **kwargs):
        q = kwargs.get("quality", quality_arg) if quality is None else quality
        out = []
        for image in x:
            buffer = io.BytesIO()
            options = {"quality": q} if fmt == "JPEG" and q != "default" else {}
            Image.fromarray(np.uint8(image)).save(buffer, fmt, **options)
            out.append(np.asarray(Image.open(buffer).convert(mode)) / scale)
        return np.stack(out) if stack else out

    return lambda x, quality=10: jpeg_low_quality(x, quality=quality)


EX2_WRONG = [
    (lambda x, quality=10: x, "identiques"),
    (_jpeg(fmt="PNG"), "identiques"),
    (_jpeg(stack=False), "renvoie une liste"),
    (_jpeg(mode="RGBA"), "4 canaux"),
    (_jpeg(quality="default"), "qualité par défaut de Pillow (75)"),
    (_jpeg(quality=10), "écrite en dur"),
    (_jpeg(scale=255), "gardez l'échelle 0–255"),
    (lambda x, quality=10: x[:1], "une image décodée par image reçue"),
]


def test_ex2_solution_passes():
    assert ex.ex2.evaluate(_solution(ex.ex2)).status == OK


@pytest.mark.parametrize(("function", "fragment"), EX2_WRONG, ids=[f"{i}-{f}" for i, (_, f) in enumerate(EX2_WRONG)])
def test_ex2_wrong_answers(function, fragment):
    result = ex.ex2.evaluate({"jpeg_low_quality": function})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 3 : choisir un seuil


@pytest.fixture(scope="module")
def threshold_context():
    """200 validation images: confident answers are right, hesitant ones are wrong half of the time."""
    rng = np.random.default_rng(0)
    n = 200
    confidence = np.concatenate([rng.uniform(0.8, 1.0, 150), rng.uniform(0.3, 0.6, 50)])
    labels = rng.integers(0, 4, n)
    predicted = labels.copy()
    hesitant_wrong = np.arange(150, 200)[::2]
    predicted[hesitant_wrong] = (labels[hesitant_wrong] + 1) % 4
    probabilities = np.full((n, 4), 0.0)
    probabilities[np.arange(n), predicted] = confidence
    for k in range(4):
        probabilities[:, k] += np.where(predicted == k, 0, (1 - confidence) / 3)
    splits = types.SimpleNamespace(validation=types.SimpleNamespace(labels=labels))
    goal = (1 - (predicted == labels).mean()) / 2
    return {"val_probabilities": probabilities, "splits": splits, "goal": goal}


def test_ex3_solution_passes(threshold_context):
    namespace = _solution(ex.ex3, **threshold_context)
    assert ex.ex3.evaluate(namespace).status == OK


def test_ex3_a_value_read_on_the_curve_passes(threshold_context):
    assert ex.ex3.evaluate({**threshold_context, "my_threshold": 0.53}).status == OK


EX3_WRONG = [
    (0.3, "montez le seuil"),
    (0.95, "un seuil plus bas"),
    (60, "0.6"),
    ("0,6", "écrivez un nombre"),
    (1.0, "ne répond plus à aucune image"),
    (-0.2, "entre 0 et 1"),
]


@pytest.mark.parametrize(("threshold", "fragment"), EX3_WRONG, ids=[str(t) for t, _ in EX3_WRONG])
def test_ex3_wrong_answers(threshold_context, threshold, fragment):
    result = ex.ex3.evaluate({**threshold_context, "my_threshold": threshold})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 4 : la commune

RIGHT = {"a": False, "b": True, "c": False, "d": True, "e": True, "f": False}

EX4_WRONG = [
    ({**RIGHT, "a": True}, "a est fausse : l'exactitude ne vaut que pour le domaine"),
    ({**RIGHT, "c": True}, "c est fausse : la section 6 montre"),
    ({**RIGHT, "f": True}, "f est fausse : le RGPD s'applique"),
    ({**RIGHT, "b": False, "d": False}, "b est vraie"),
    ({**RIGHT, "b": "vrai"}, "sans guillemets"),
    ({"a": False, "b": True}, "il manque les affirmations"),
    ([False, True], "doit être un dictionnaire"),
]


def test_ex4_solution_passes():
    assert ex.ex4.evaluate(_solution(ex.ex4)).status == OK


@pytest.mark.parametrize(("verdicts", "fragment"), EX4_WRONG, ids=[f for _, f in EX4_WRONG])
def test_ex4_wrong_answers(verdicts, fragment):
    result = ex.ex4.evaluate({"verdicts": verdicts})
    assert result.status == WRONG and fragment in result.message, result
