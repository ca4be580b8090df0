"""atelier.training.ensure_model : un chapitre peut s'exécuter seul, avec ou sans le modèle du chapitre 2."""

from __future__ import annotations

import pytest

from atelier import training
from atelier.model_io import ModelFileError, load_model
from atelier.paths import model_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Un cache d'atelier vide, propre à chaque test."""
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow  # trains a model (subprocess or in-process): not in the fast subset
def test_missing_cnn_is_trained_then_reused(cache, small_dataset, monkeypatch, capsys):
    path = training.ensure_model("cnn", data_dir=small_dataset, epochs=1)
    assert path == model_path("cnn") and path.is_relative_to(cache)
    info = load_model(path)
    assert info.classes == ["forêt", "mer", "désert", "nuageux"]
    assert info.metadata["metrics"]["epochs"] == 1
    assert "Entraînement rapide" in capsys.readouterr().out

    def must_not_train(*args, **kwargs):
        raise AssertionError("un modèle lisible ne doit pas être réentraîné")

    monkeypatch.setattr(training, "train", must_not_train)
    mtime = path.stat().st_mtime_ns
    assert training.ensure_model("cnn") == path
    assert path.stat().st_mtime_ns == mtime
    assert capsys.readouterr().out == ""


def test_unreadable_cnn_is_retrained(cache, monkeypatch, capsys):
    path = model_path("cnn")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"pas un modele")
    calls = []
    monkeypatch.setattr(training, "train", lambda data_dir, out, **options: calls.append((data_dir, out, options)))
    assert training.ensure_model("cnn", epochs=3, seed=7) == path
    assert calls == [(None, path, {"epochs": 3, "seed": 7, "verbose": 0})]
    out = capsys.readouterr().out
    assert "inutilisable" in out and "3 époques" in out


def test_other_models_are_never_trained(cache, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: pytest.fail("ne doit pas entraîner"))
    with pytest.raises(ModelFileError, match=r"transfert.*chapitre"):
        training.ensure_model("transfert")


def test_training_plan_adapts_to_the_size_of_the_dataset():
    small, default, large = (training.training_plan(n) for n in (280, 1120, 3940))
    assert (small.steps_per_epoch, small.total_steps) == (45, 810)  # 100 images per class: repeated
    assert (default.steps_per_epoch, default.total_steps) == (35, 630)  # one pass: under a minute on 2 cores
    assert (large.steps_per_epoch, large.total_steps) == (64, 1152)  # 5,631 images: a few minutes
    assert training.training_plan(3000, epochs=5, batch_size=64).steps_per_epoch == 47
    assert training.training_plan(31 * 32).steps_per_epoch == 45  # 31 batches: a small set, repeated
    assert training.training_plan(32 * 32).steps_per_epoch == 32  # 32 batches: one pass
    with pytest.raises(ValueError, match="au moins 1"):
        training.training_plan(100, epochs=0)
    with pytest.raises(ValueError, match="vide"):
        training.training_plan(0)


def test_an_epoch_has_exactly_the_planned_number_of_batches(small_dataset):
    from atelier.data import load_dataset, to_tf_dataset

    dataset = load_dataset(small_dataset)  # 40 images
    pipeline = to_tf_dataset(dataset, batch_size=32, shuffle=True, seed=0, steps=5)
    assert int(pipeline.cardinality()) == 5
    epochs = [[int(images.shape[0]) for images, _ in pipeline] for _ in range(2)]
    assert epochs == [[32] * 5, [32] * 5]  # the 40 images are repeated, reshuffled, in full batches


def test_learning_rate_can_warm_up_before_its_cosine_decay():
    """compile_model(warmup_steps=…) (the backbone's pretraining): a tenth of the rate, up to it, then down."""
    import keras

    from atelier.model import compile_model

    def rates(**options):
        model = compile_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), 1e-2, **options)
        values = []
        for step in (0, 5, 10, 100):
            model.optimizer.iterations.assign(step)
            values.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
        return values

    assert rates(total_steps=100, warmup_steps=10) == pytest.approx([1e-3, 5.5e-3, 1e-2, 2e-4], rel=1e-3)
    assert rates(total_steps=100) == pytest.approx([1e-2, 9.94e-3, 9.76e-3, 2e-4], rel=1e-2)  # no warm-up


def test_head_views_give_a_few_thousand_rows_between_2_and_16_versions():
    assert training.head_views(80) == 16  # 20 images per class: 1,280 rows
    assert training.head_views(400) == 11
    assert training.head_views(1120) == 4  # the default dataset's training split
    assert training.head_views(50_000) == 2


def test_fit_head_trains_only_the_head_on_features_computed_once(small_dataset, monkeypatch):
    """The frozen base is run once per image version (not once per step), its weights do not move, the head's do,
    and the history has one row per pass over the feature table, with validation."""
    import numpy as np

    from atelier import backbone
    from atelier.data import load_dataset, split_dataset

    splits = split_dataset(load_dataset(small_dataset), seed=0)
    model = backbone.build_transfer_model(splits.train.classes, seed=0)
    base, head = backbone.base_of(model), model.get_layer("probabilites")
    base_before, head_before = [w.copy() for w in base.get_weights()], [w.copy() for w in head.get_weights()]
    calls = []
    real_features = training._features
    monkeypatch.setattr(training, "_features", lambda *a, **k: calls.append(a[2]) or real_features(*a, **k))
    history, seconds = training.fit_head(model, splits, epochs=3, views=5, seed=0)
    assert calls == [5, 1]  # training images in 5 versions, validation images once
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), base_before, strict=True))
    assert not np.allclose(head.get_weights()[0], head_before[0])
    assert len(history.history["val_accuracy"]) == 3 and seconds > 0
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_fit_head_needs_a_dropout_then_a_head():
    import keras

    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="probabilites")(inputs))
    with pytest.raises(ValueError, match="base → dropout → tête"):
        training._feature_extractor(model)
