"""Tiny Keras models (mean colour → softmax) for the model repository tests: fast to save, load and run."""

from __future__ import annotations

import json

import numpy as np

from atelier.labels import CLASSES
from atelier.model_io import file_sha256, metadata_path, save_model


def tiny_model(classes=CLASSES, *, shift: int = 0, size: int = 64, nan: bool = False):
    """Mean colour → softmax: a few parameters, decisive labels; *shift* rotates the classes."""
    import keras

    n = len(classes)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(n, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 30, (3, n)).astype("float32")
    kernel = np.roll(kernel, shift, axis=1)
    if nan:
        kernel[:] = np.nan
    model.layers[-1].set_weights([kernel, np.zeros(n, "float32")])
    return model


def save_tiny(path, classes=CLASSES, accuracy: float | None = 0.9, **options):
    metrics = {} if accuracy is None else {"test_accuracy": accuracy}
    save_model(tiny_model(classes, **options), path, classes=list(classes), data_source="test", metrics=metrics)
    return path


def make_models(root) -> dict:
    """Saved tiny models: a valid pair (``a``, ``b`` = ``a`` with rotated classes) and broken ones."""
    return {
        "a": save_tiny(root / "a.keras"),
        "b": save_tiny(root / "b.keras", shift=1),
        "low": save_tiny(root / "low.keras", accuracy=0.3),
        "none": save_tiny(root / "none.keras", accuracy=None),
        "three": save_tiny(root / "three.keras", classes=CLASSES[:3]),
        "nan": save_tiny(root / "nan.keras", nan=True),
    }


def replace_model_file(repo, version: int, source) -> None:
    """Put another network in a published version, keeping its metadata (golden labels) but fixing the sha."""
    target = repo.model_file(version)
    target.write_bytes(source.read_bytes())
    meta = json.loads(metadata_path(target).read_text(encoding="utf-8"))
    meta["sha256"] = file_sha256(target)
    metadata_path(target).write_text(json.dumps(meta), encoding="utf-8")


def nan_above_model(classes=CLASSES, *, threshold: float = 0.0, size: int = 64):
    """A softmax model that returns NaN when the sum of the per-channel minimum pixels exceeds *threshold*.

    Random images (uniform 0–255) always contain a 0 in every channel: they never trigger it. With
    ``threshold=0`` every real photo does (``images/exemples/`` has no black pixel); with ``threshold=700``
    only a nearly white image does. Standard layers only (the model loads in Keras safe mode): the minimum
    is ``-max(-x)``, and a ``-3e38`` weight overflows to ``-inf`` on every logit, whose softmax is NaN.
    """
    import keras

    n = len(classes)
    images = keras.Input((size, size, 3))
    mean = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
    logits = keras.layers.Dense(n, name="couleur")(mean)
    minus_min = keras.layers.GlobalMaxPooling2D()(keras.layers.Rescaling(-1.0)(images))
    excess = keras.layers.Dense(1, activation="relu", name="exces")(minus_min)  # relu(sum(min) - threshold)
    penalty = keras.layers.Dense(n, use_bias=False, name="penalite")(excess)
    outputs = keras.layers.Activation("softmax")(keras.layers.Add()([logits, penalty]))
    model = keras.Model(images, outputs)
    rng = np.random.default_rng(0)
    model.get_layer("couleur").set_weights([rng.normal(0, 30, (3, n)).astype("float32"), np.zeros(n, "float32")])
    model.get_layer("exces").set_weights([-np.ones((3, 1), "float32"), np.array([-threshold], "float32")])
    model.get_layer("penalite").set_weights([np.full((1, n), -3e38, "float32")])
    return model


def save_nan_above(path, classes=CLASSES, *, threshold: float = 0.0):
    save_model(nan_above_model(classes, threshold=threshold), path, classes=list(classes), data_source="test")
    return path
