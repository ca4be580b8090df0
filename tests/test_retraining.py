"""Retraining from feedback (atelier.retraining): the minimum of corrections, the held-out guard, the metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atelier.data import load_dataset, split_dataset
from atelier.labels import CLASSES
from atelier.model_io import metadata_path, read_metadata, save_model
from atelier.retraining import MIN_CORRECTIONS, Feedback, RetrainingError, retrain
from tests.conftest import make_dataset
from tests.tiny_models import tiny_model


def _feedback(paths_and_labels, *, predicted=None, start=1):
    """Feedback rows for (path, label) pairs; ``predicted`` is what the model answered (default: another class)."""
    items = []
    for number, (path, label) in enumerate(paths_and_labels, start=start):
        answer = predicted or CLASSES[(CLASSES.index(label) + 1) % len(CLASSES)]
        items.append(Feedback(number, path, label, answer, "parent"))
    return items


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small coloured dataset and a mean-colour model trained on its training split (right on most images)."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("reentrainement")
    data = make_dataset(root / "donnees", per_class=20)
    dataset = load_dataset(data)
    splits = split_dataset(dataset, seed=0)
    keras.utils.set_random_seed(0)
    model = tiny_model(dataset.classes)
    model.compile(keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy")
    # 100 passes over the training split as one Keras epoch: the same number of steps as epochs=100 at a quarter
    # of the processor time (Keras's per-epoch overhead dominates on 56 images).
    passes = tf.data.Dataset.from_tensor_slices((splits.train.images.astype("float32"), splits.train.labels))
    passes = passes.shuffle(len(splits.train.labels), seed=0).batch(32).repeat(100)
    model.fit(passes, verbose=0)
    parent = root / "parent.keras"
    save_model(model, parent, classes=dataset.classes, data_source=str(data), metrics={"test_accuracy": 0.9})
    return {"data": data, "splits": splits, "parent": parent, "root": root}


def test_too_few_corrections_are_refused_before_any_training(tmp_path):
    images = make_dataset(tmp_path / "d", per_class=3)
    paths = sorted(images.rglob("*.jpg"))
    corrections = _feedback([(p, "forêt") for p in paths[: MIN_CORRECTIONS - 1]])
    confirmations = _feedback([(p, "mer") for p in paths[MIN_CORRECTIONS:]], predicted="mer", start=100)
    with pytest.raises(RetrainingError, match="Trop peu de corrections pour réentraîner : 4") as caught:
        retrain(tmp_path / "absent.keras", corrections + confirmations, tmp_path / "v2.keras")
    assert caught.value.report["n_corrections"] == MIN_CORRECTIONS - 1
    assert caught.value.report["n_confirmations"] == len(confirmations)
    assert not (tmp_path / "v2.keras").exists()


def _train_images(world, per_class):
    train = world["splits"].train
    chosen = [np.flatnonzero(train.labels == k)[:per_class] for k in range(len(train.classes))]
    return [(train.paths[i], train.classes[train.labels[i]]) for i in np.concatenate(chosen)]


@pytest.mark.slow  # fine-tunes a (tiny) model
def test_honest_corrections_are_kept_with_parent_and_feedback_ids(world, tmp_path):
    feedback = _feedback(_train_images(world, 2), start=10)
    out = tmp_path / "v2.keras"
    result = retrain(world["parent"], feedback, out, data_dir=world["data"], steps=10, learning_rate=1e-3)
    report = result.report
    assert result.accepted and report["reason"] is None
    assert report["held_out"]["new_correct"] >= report["held_out"]["old_correct"] - 1  # the default guard
    # Replayed: every training image of the parent's split (14 per class) but the 2 per class that were annotated.
    assert report["replay"] == 4 * (14 - 2)
    assert report["n_corrections"] == 8 and report["corrected"]["n"] == 8
    metadata = read_metadata(out)
    parent = read_metadata(world["parent"])
    assert metadata["parent"] == {
        "version": parent["version"],
        "source_version": parent["version"],
        "sha256": parent["sha256"],
    }
    assert metadata["retraining"]["feedback_ids"] == list(range(10, 18))
    assert metadata["metrics"]["test_accuracy"] == report["held_out"]["new_accuracy"]
    assert metadata["version"] == report["version"] != parent["version"]
    assert json.loads(json.dumps(report)) == report  # the report is the command's JSON line


@pytest.mark.slow  # fine-tunes a (tiny) model
def test_guard_refuses_a_model_made_worse_by_wrong_corrections(world, tmp_path):
    """Mistaken users: every image they « correct » gets the label « mer ». The fine-tuned model then answers
    « mer » for everything and loses held-out images: it is refused, nothing is written."""
    feedback = [
        Feedback(i, path, "mer", label, "parent")
        for i, (path, label) in enumerate(_train_images(world, 3))
        if label != "mer"
    ]
    out = tmp_path / "v2.keras"
    result = retrain(world["parent"], feedback, out, data_dir=world["data"], steps=40, learning_rate=0.05)
    held_out = result.report["held_out"]
    assert held_out["new_correct"] < held_out["old_correct"] - 1, held_out
    assert not result.accepted and "moins bon sur le jeu tenu à l'écart" in result.report["reason"]
    assert not out.exists() and not metadata_path(out).exists()


@pytest.mark.slow  # fine-tunes a (tiny) model
def test_annotated_images_never_count_as_held_out(world, tmp_path):
    test = world["splits"].test
    feedback = _feedback([(test.paths[i], test.classes[test.labels[i]]) for i in range(6)])
    result = retrain(world["parent"], feedback, None, data_dir=world["data"], steps=2, learning_rate=1e-4)
    assert result.report["held_out"]["n"] == len(test) - 6
    assert result.metadata is None  # no ``out``: nothing written


# --------------------------------------------------------------------------- python -m atelier retrain


def _cli(capsys, *args):
    from atelier.cli import main

    code = main(["retrain", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_says_in_french_that_the_history_is_missing(tmp_path, capsys):
    from tests.tiny_models import save_tiny

    model = save_tiny(tmp_path / "m.keras")
    (tmp_path / "images").mkdir()
    code, out, err = _cli(
        capsys,
        "--model",
        model,
        "--db",
        tmp_path / "absente.sqlite3",
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "v2.keras",
    )
    assert code == 2 and "Historique introuvable" in err and "absente.sqlite3" in err
    assert json.loads(out.strip().splitlines()[-1])["published_version"] is None
    assert not (tmp_path / "v2.keras").exists()


def test_cli_says_in_french_that_the_images_folder_is_missing(tmp_path, capsys):
    from tests.tiny_models import save_tiny

    model = save_tiny(tmp_path / "m.keras")
    db = tmp_path / "h.sqlite3"
    db.write_bytes(b"")
    code, _, err = _cli(
        capsys, "--model", model, "--db", db, "--images", tmp_path / "rien", "--out", tmp_path / "v2.keras"
    )
    assert code == 2 and "Dossier d'images introuvable" in err and "--store-images" in err


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--out", "v2.h5"], "--out doit être un fichier .keras"),
        (["--steps", "0"], "--steps doit être au moins 1"),
        (["--tolerance", "-1"], "--tolerance doit être positive ou nulle"),
        (["--learning-rate", "2"], "--learning-rate doit être entre 0 et 1"),
    ],
)
def test_cli_rejects_bad_options_in_french(tmp_path, capsys, options, fragment):
    from tests.tiny_models import save_tiny

    model = save_tiny(tmp_path / "m.keras")
    base = {"--model": str(model), "--db": str(tmp_path / "h"), "--images": str(tmp_path), "--out": "v2.keras"}
    base.update(dict(zip(options[::2], options[1::2], strict=True)))
    code, _, err = _cli(capsys, *[item for pair in base.items() for item in pair])
    assert code == 2 and fragment in err


def _history_with_feedback(root, items, *, unstored=()):
    """A server's history and image folder: each (path, label) predicted as another class, then corrected."""
    import hashlib

    from atelier.history import History
    from atelier.image_store import store_image

    db, images = root / "historique.sqlite3", root / "images-recues"
    images.mkdir(exist_ok=True)
    history = History(db)
    ids = []
    for path, label in [*items, *unstored]:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if (path, label) not in unstored:
            store_image(images, digest, data)
        wrong = CLASSES[(CLASSES.index(label) + 1) % len(CLASSES)]
        number = history.add(
            label=wrong,
            probabilities={wrong: 1.0},
            model_version="1",
            image_sha256=digest,
            filename=path.name,
            duration_ms=1.0,
        )
        history.set_feedback(number, label)
        ids.append(number)
    history.close()
    return db, images, ids


@pytest.mark.slow  # fine-tunes a (tiny) model and publishes it
def test_cli_retrains_from_the_history_and_publishes(world, tmp_path, capsys):
    from atelier.model_repository import ModelRepository

    test = world["splits"].test
    lost = (test.paths[0], test.classes[test.labels[0]])  # corrected, but its image is no longer kept
    db, images, ids = _history_with_feedback(tmp_path, _train_images(world, 2), unstored=[lost])
    no_image = ids.pop()
    repo, out = tmp_path / "depot", tmp_path / "v2.keras"
    code, stdout, err = _cli(
        capsys,
        "--model",
        world["parent"],
        "--db",
        db,
        "--images",
        images,
        "--out",
        out,
        "--data",
        world["data"],
        "--publish",
        repo,
        "--steps",
        "10",
        "--learning-rate",
        "0.001",
        "--min-accuracy",
        "0",
    )
    assert code == 0, err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["published_version"] == 1 and report["n_corrections"] == len(ids) == 8
    assert report["feedback_ids"] == ids and report["accepted"] is True
    assert "Jeu tenu à l'écart" in stdout and "Version 1 publiée" in stdout
    published = read_metadata(ModelRepository(repo).model_file(1))
    assert published["parent"]["version"] == read_metadata(world["parent"])["version"]
    assert published["retraining"]["feedback_ids"] == ids
    assert "(1 sans image" in stdout and no_image not in published["retraining"]["feedback_ids"]


@pytest.mark.slow  # fine-tunes a (tiny) model
def test_cli_refuses_a_worse_model_writes_and_publishes_nothing(world, tmp_path, capsys):
    """The guard through the command: mistaken corrections (everything « mer ») make a worse model, which is
    neither written nor published; French message, exit code 2, JSON last line."""
    from atelier.model_repository import ModelRepository

    mistaken = [(path, "mer") for path, label in _train_images(world, 3) if label != "mer"]
    db, images, _ = _history_with_feedback(tmp_path, mistaken)
    repo, out = tmp_path / "depot", tmp_path / "v2.keras"
    options = {"--model": world["parent"], "--db": db, "--images": images, "--out": out, "--data": world["data"]}
    options.update({"--publish": repo, "--steps": 40, "--learning-rate": 0.05, "--min-accuracy": 0})
    code, stdout, err = _cli(capsys, *[item for pair in options.items() for item in pair])
    assert code == 2 and "Nouveau modèle refusé, rien n'est écrit ni publié : moins bon sur le jeu tenu" in err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["accepted"] is False and report["published_version"] is None
    assert report["held_out"]["new_correct"] < report["held_out"]["old_correct"]
    assert not out.exists() and not metadata_path(out).exists()
    assert not repo.exists() or ModelRepository(repo).versions() == []


def test_cli_refuses_too_few_corrections_with_a_json_last_line(world, tmp_path, capsys):
    db, images, _ = _history_with_feedback(tmp_path, _train_images(world, 1)[:2])
    code, stdout, err = _cli(
        capsys,
        "--model",
        world["parent"],
        "--db",
        db,
        "--images",
        images,
        "--out",
        tmp_path / "v2.keras",
        "--data",
        world["data"],
    )
    assert code == 2 and "Trop peu de corrections pour réentraîner : 2 (il en faut au moins 5)" in err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["reason"] == "trop peu de corrections" and report["published_version"] is None
    assert "2 prédictions annotées avec leur image" in stdout and not (tmp_path / "v2.keras").exists()
