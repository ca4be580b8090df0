"""The versioned model repository: atomic publishing, pinning, validation of every version, polling."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from atelier.labels import CLASSES
from atelier.model_io import ModelFileError, file_sha256, metadata_path
from atelier.model_repository import (
    MODEL_FILE,
    PIN_FILE,
    ModelRepository,
    RepositoryError,
    RepositoryPoller,
    default_sample_dir,
)

from .tiny_models import make_models, replace_model_file

SAMPLES = default_sample_dir()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("modeles"))


def test_publish_copies_the_model_with_its_golden_labels(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    assert repo.versions() == [] and repo.resolve() is None
    assert repo.publish(models["a"]) == 1
    assert repo.publish(models["b"]) == 2
    assert repo.versions() == [1, 2]
    assert not [p for p in repo.root.iterdir() if p.name.startswith(".")], "no temporary folder left"
    meta = json.loads((repo.root / "2" / "model.json").read_text(encoding="utf-8"))
    assert meta["version"] == "2" and meta["repository"]["version"] == 2
    assert meta["source_version"].startswith("b-")
    assert meta["sha256"] == file_sha256(repo.root / "2" / MODEL_FILE) == file_sha256(models["b"])
    golden = meta["repository"]["golden"]
    assert sorted(golden) == sorted(p.name for p in SAMPLES.glob("*.jpg"))
    assert {g["label"] for g in golden.values()} <= set(CLASSES)
    first = json.loads((repo.root / "1" / "model.json").read_text(encoding="utf-8"))["repository"]["golden"]
    assert any(first[name]["label"] != golden[name]["label"] for name in golden), "b rotates a's classes"
    assert repo.resolve() == 2


def test_publish_refuses_an_unreadable_model(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    with pytest.raises(ModelFileError, match="introuvable"):
        repo.publish(tmp_path / "absent.keras")
    with pytest.raises(ModelFileError, match="probabilités"):
        repo.publish(models["nan"])
    assert repo.versions() == []
    assert not repo.root.exists() or not list(repo.root.iterdir()), "a failed publication leaves nothing behind"


def test_concurrent_publishers_never_share_a_number(tmp_path, models):
    from atelier.inference import ServingModel

    loaded = ServingModel.load(models["a"])
    repo = ModelRepository(tmp_path / "depot", loader=lambda path: loaded)
    numbers, errors = [], []
    barrier = threading.Barrier(8)

    def publish():
        barrier.wait()
        try:
            numbers.append(repo.publish(models["a"]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(numbers) == list(range(1, 9)) == repo.versions()
    for n in numbers:
        assert json.loads((repo.root / str(n) / "model.json").read_text(encoding="utf-8"))["version"] == str(n)
    assert not [p for p in repo.root.iterdir() if p.name.startswith(".")]


def test_pin_and_unpin(tmp_path, models, caplog):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    repo.publish(models["b"])
    assert repo.pinned() is None
    repo.pin(1)
    assert (repo.root / PIN_FILE).read_text(encoding="utf-8") == "1\n"
    assert repo.pinned() == 1 and repo.resolve() == 1
    assert [row["pinned"] for row in repo.describe()] == [True, False]
    with pytest.raises(RepositoryError, match="La version 7 n'existe pas"):
        repo.pin(7)
    assert repo.unpin() is True and repo.unpin() is False
    assert repo.resolve() == 2
    (repo.root / PIN_FILE).write_text("n'importe quoi", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="atelier.model_repository"):
        assert repo.resolve() == 2
    assert "épinglage" in caplog.text and "invalide" in caplog.text
    (repo.root / PIN_FILE).write_text("9\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="atelier.model_repository"):
        assert repo.resolve() == 2
    assert "La version épinglée 9 n'existe pas" in caplog.text


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("low", "précision enregistrée (test_accuracy) de 30 %, sous le plancher de 50 %"),
        ("none", "aucune précision enregistrée"),
        ("three", "classes"),
        ("golden", "ne redonne pas ses étiquettes témoins"),
        ("nan", "probabilités"),
        ("corrupt", "empreinte"),
        ("garbage", "pas un modèle Keras"),
    ],
)
def test_an_invalid_version_is_skipped_logged_and_remembered(tmp_path, models, caplog, kind, message):
    repo = ModelRepository(tmp_path / "depot", classes=CLASSES, image_size=64)
    repo.publish(models["a"])
    if kind in ("low", "none", "three"):
        repo.publish(models[kind])
    else:
        repo.publish(models["a"])
        if kind == "golden":
            replace_model_file(repo, 2, models["b"])
        elif kind == "nan":
            replace_model_file(repo, 2, models["nan"])
        elif kind == "corrupt":
            repo.model_file(2).write_bytes(b"PK\x03\x04 abime")
        else:
            repo.model_file(2).write_bytes(b"PK\x03\x04 abime")
            replace_model_file(repo, 2, repo.model_file(2))
    with caplog.at_level(logging.WARNING, logger="atelier.model_repository"):
        assert repo.resolve() == 1
    assert "Version 2 ignorée" in caplog.text and message in caplog.text
    assert message in repo.error(2)
    rows = {row["version"]: row for row in repo.describe()}
    assert rows[1]["status"] == "valide" and rows[1]["error"] is None
    assert rows[2]["status"] == "invalide" and message in rows[2]["error"]
    with pytest.raises(RepositoryError, match="Version 2 invalide"):
        repo.check(2)


def test_floor_zero_accepts_a_model_without_recorded_accuracy(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot", min_accuracy=0)
    repo.publish(models["none"])
    assert repo.resolve() == 1


def test_a_folder_not_published_by_publish_is_invalid(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    (repo.root / "1").mkdir(parents=True)
    (repo.root / "1" / MODEL_FILE).write_bytes(models["a"].read_bytes())
    metadata_path(repo.model_file(1)).write_bytes(metadata_path(models["a"]).read_bytes())
    (repo.root / "pas-une-version").mkdir()
    assert repo.versions() == [1]
    assert repo.resolve() is None
    assert "étiquettes témoins" in repo.error(1)


def test_each_version_is_loaded_once(tmp_path, models):
    from atelier.inference import ServingModel

    calls = []

    def loader(path):
        calls.append(path)
        return ServingModel.load(path)

    repo = ModelRepository(tmp_path / "depot", loader=loader)
    repo.publish(models["a"])
    repo.publish(models["low"])
    calls.clear()
    for _ in range(3):
        assert repo.resolve() == 1
    # 2 fails on its metadata (accuracy floor) before any loading; 1 is loaded once
    assert [p.parent.name for p in calls] == ["1"]
    assert repo.check(1).version == "1" and len(calls) == 1, "the model loaded by the check is handed over"
    repo.release()
    repo.check(1)
    assert len(calls) == 2


def test_require_keeps_compatible_verdicts(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["three"])
    repo.publish(models["a"])
    assert repo.resolve() == 2 and repo.is_valid(1)
    repo.require(CLASSES, 64)
    assert repo.error(1) is not None and "classes" in repo.error(1)
    assert repo.is_valid(2) and repo.resolve() == 2


def test_poller_follows_publications_and_the_pin(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    swaps = []

    def on_change(version, serving):
        swaps.append((version, serving.version))

    poller = RepositoryPoller(repo, on_change, interval=0.05)
    assert poller.poll_once() and poller.served == 1
    assert not poller.poll_once(), "nothing new"
    repo.publish(models["b"])
    assert poller.poll_once() and poller.served == 2
    repo.pin(1)
    assert poller.poll_once() and poller.served == 1
    repo.unpin()
    repo.publish(models["low"])  # invalid: ignored, 2 stays the newest valid
    assert poller.poll_once() and poller.served == 2
    assert not poller.poll_once()
    assert swaps == [(1, "1"), (2, "2"), (1, "1"), (2, "2")]


def test_a_version_refused_by_the_server_is_not_retried(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    calls = []

    def on_change(version, serving):
        calls.append(version)
        raise ModelFileError("classes différentes du modèle en service")

    poller = RepositoryPoller(repo, on_change, interval=0.05, served=None)
    assert not poller.poll_once() and not poller.poll_once()
    assert calls == [1] and "refusée" in poller.last_error
    assert "classes différentes" in repo.error(1)


def test_poller_thread_swaps_in_the_background(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    changed = threading.Event()
    poller = RepositoryPoller(repo, lambda version, serving: changed.set(), interval=0.05, served=1).start()
    try:
        assert not changed.wait(0.3)
        repo.publish(models["b"])
        assert changed.wait(20)
        deadline = time.monotonic() + 5
        while poller.served != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert poller.served == 2
    finally:
        poller.stop()
    assert not [t for t in threading.enumerate() if t.name == "atelier-depot-modeles"]
