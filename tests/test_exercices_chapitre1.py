"""Chapter 1 exercises: the solution passes, each typical wrong answer gets its own French message."""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from atelier.exercices import OK, TODO, WRONG
from atelier.exercices import chapitre1 as ex
from atelier.exercices.solution_source import solution_text


def _splits():
    """Tiny splits whose validation and test parts are brighter than training (a leak shows)."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 200, size=(30, 8, 8, 3), dtype=np.uint8)
    other = rng.integers(60, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    part = types.SimpleNamespace
    return part(train=part(images=train), validation=part(images=other[:10]), test=part(images=other[10:]))


class _Part:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)


class _Splits:
    """The tiny splits with len() on each part, as ImageDataset has."""

    def __init__(self, splits):
        self.train, self.validation, self.test = (
            _Part(p.images) for p in (splits.train, splits.validation, splits.test)
        )


def _solution_namespace(item):
    namespace = {"tf": tf, "keras": keras, "np": np, "splits": _splits()}
    if item is ex.ex4:  # workshop-sized images: 40 for training (batches of 32), 10 for validation
        part = types.SimpleNamespace
        images = np.zeros((50, 64, 64, 3), np.uint8)
        namespace["splits"] = _Splits(
            part(train=part(images=images[:40]), validation=part(images=images[40:]), test=part(images=images[:0]))
        )
        namespace["train_ds"] = tf.data.Dataset.from_tensor_slices(images[:40].astype("float32")).batch(32)
        namespace["val_ds"] = tf.data.Dataset.from_tensor_slices(images[40:].astype("float32")).batch(256)
        namespace["train_ds"] = namespace["train_ds"].map(lambda x: (x, 0))
        namespace["val_ds"] = namespace["val_ds"].map(lambda x: (x, 0))
    for cell_id in item.cells:
        exec(solution_text(item.notebook, cell_id), namespace)
    return namespace


@pytest.mark.parametrize("item", [ex.ex1, ex.ex2, ex.ex3, ex.ex4], ids=["ex1", "ex2", "ex3", "ex4"])
def test_solution_passes(item):
    result = item.evaluate(_solution_namespace(item))
    assert result.status == OK, result


def _augmentation(flip="horizontal_and_vertical", rotation=0.25, contrast=0.2, fill="reflect", seeds=True):
    def my_augmentation_layers(seed=0):
        seed_of = (lambda k: {"seed": seed + k}) if seeds else (lambda k: {})
        return [
            keras.layers.RandomFlip(flip, **seed_of(0)),
            keras.layers.RandomRotation(rotation, fill_mode=fill, **seed_of(1)),
            keras.layers.RandomContrast(contrast, value_range=(0, 255), **seed_of(2)),
        ]

    return my_augmentation_layers


def _stats(transform=lambda x: x, part="train", axis=(0, 1, 2)):
    splits = _splits()
    images = splits.train.images
    if part == "all":
        images = np.concatenate([splits.train.images, splits.validation.images, splits.test.images])
    pixels = images.astype("float32") / 255.0
    return {
        "channel_mean": transform(pixels.mean(axis=axis)),
        "channel_std": transform(pixels.std(axis=axis)),
        "splits": splits,
    }


def _stats_with(**changes):
    answer = _stats()
    answer.update(changes)
    return answer


def _flows():
    """50 training images in batches of 16 (16, 16, 16, 2) and 10 validation images in one batch of 256."""
    images = np.zeros((60, 8, 8, 3), np.float32)
    labels = np.zeros(60, np.int32)
    train = tf.data.Dataset.from_tensor_slices((images[:50], labels[:50])).shuffle(50, seed=0).batch(16)
    validation = tf.data.Dataset.from_tensor_slices((images[50:], labels[50:])).batch(256)
    return {"train_ds": train, "val_ds": validation}


def _lots(**changes):
    answer = {"n_train_batches": 4, "train_batch_shape": (16, 8, 8, 3), "val_batch_shape": (10, 8, 8, 3)}
    answer.update(changes)
    return {**answer, **_flows()}


CATALOGUE = [
    # exercice 1 : normalize
    (ex.ex1, {"normalize": lambda images: images / 255}, "float64 au lieu de float32"),
    (ex.ex1, {"normalize": lambda images: tf.cast(images, tf.float32)}, "il manque la division par 255"),
    (ex.ex1, {"normalize": lambda images: tf.cast(images, tf.float32) / 256}, "divisé par 256"),
    (ex.ex1, {"normalize": lambda images: images // 255}, "la division entière « // »"),
    (ex.ex1, {"normalize": lambda images: images.astype("float32") / 255}, "pas sur un tenseur TensorFlow"),
    (ex.ex1, {"normalize": lambda images: print(images / 255)}, "il manque « return »"),
    # exercice 2 : the colleague's augmentation, one mistake at a time
    (ex.ex2, {"my_augmentation_layers": _augmentation(flip="horizontal")}, "ne retourne que dans un sens"),
    (ex.ex2, {"my_augmentation_layers": _augmentation(rotation=90)}, "RandomRotation attend une fraction de tour"),
    (ex.ex2, {"my_augmentation_layers": _augmentation(rotation=0.5)}, "jusqu'à un quart de tour"),
    (ex.ex2, {"my_augmentation_layers": _augmentation(contrast=20)}, "RandomContrast attend une fraction"),
    (ex.ex2, {"my_augmentation_layers": _augmentation(fill="constant")}, 'fill_mode="reflect"'),
    (ex.ex2, {"my_augmentation_layers": _augmentation(seeds=False)}, "donnez une graine"),
    (ex.ex2, {"my_augmentation_layers": lambda seed=0: [keras.layers.RandomFlip("vertical")]}, "vertical"),
    # exercice 3 : channel statistics
    (ex.ex3, _stats(axis=None), "est un seul nombre"),
    (ex.ex3, _stats(axis=-1), "au lieu de (3,)"),
    (ex.ex3, _stats(transform=lambda v: v * 255), "pixels 0–255"),
    (ex.ex3, _stats(part="all"), "calculé sur tout le jeu"),
    (ex.ex3, _stats_with(channel_std=_stats()["channel_std"] ** 2), "est la variance"),
    (ex.ex3, _stats_with(channel_mean=_stats()["channel_std"], channel_std=_stats()["channel_mean"]), "channel_mean"),
    # exercice 4 : predicting the batches
    (ex.ex4, _lots(n_train_batches=3), "ne tombe pas juste"),
    (ex.ex4, _lots(n_train_batches=50), "c'est le nombre d'images"),
    (ex.ex4, _lots(train_batch_shape=(8, 8, 3)), "un lot d'images en a quatre"),
    (ex.ex4, _lots(train_batch_shape=(16, 3, 8, 8)), "canaux en premier"),
    (ex.ex4, _lots(train_batch_shape=(None, 8, 8, 3)), "contient None"),
    (ex.ex4, _lots(val_batch_shape=(256, 8, 8, 3)), "tf.data ne complète pas le dernier lot"),
]


@pytest.mark.parametrize(
    ("item", "answers", "fragment"), CATALOGUE, ids=[f"{c[0].name}-{c[2][:30]}" for c in CATALOGUE]
)
def test_wrong_answer_gets_its_message(item, answers, fragment):
    result = item.evaluate({}, **answers)
    assert result.status == WRONG and fragment in result.message, result
    assert "\n" not in result.line


def test_catalogue_has_two_wrong_answers_per_exercise():
    for item in (ex.ex1, ex.ex2, ex.ex3, ex.ex4):
        assert sum(entry[0] is item for entry in CATALOGUE) >= 2


def test_rotation_in_degrees_never_shows_the_keras_error():
    result = ex.ex2.evaluate({}, my_augmentation_layers=_augmentation(rotation=90))
    assert "RandomRotation attend une fraction de tour complet" in result.message
    assert "argument should be" not in result.message


def test_gap_inside_a_function_is_not_done():
    def normalize(images):
        raise NotImplementedError("À compléter : renvoyez les pixels en float32")

    assert ex.ex1.evaluate({}, normalize=normalize).status == TODO
