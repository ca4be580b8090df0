"""A model always travels with its metadata; mismatches and bad files give French errors."""

from __future__ import annotations

import json

import keras
import pytest

from atelier.labels import CLASSES
from atelier.model import build_cnn
from atelier.model_io import ModelFileError, load_model, metadata_path, read_metadata, save_model


def test_round_trip(saved_model):
    path, metadata = saved_model
    info = load_model(path)
    assert info.classes == list(CLASSES) and info.image_size == 64
    assert info.version == metadata["version"] and info.version.startswith("cnn-")
    on_disk = json.loads(metadata_path(path).read_text(encoding="utf-8"))
    assert on_disk["classes"] == ["forêt", "mer", "désert", "nuageux"]
    assert "forêt" in metadata_path(path).read_text(encoding="utf-8"), "accents stay readable in the JSON"


def test_version_changes_with_the_weights(tmp_path):
    first = save_model(build_cnn(CLASSES, augment=False), tmp_path / "a.keras", classes=CLASSES)
    second = save_model(build_cnn(CLASSES, augment=False, seed=1), tmp_path / "a.keras", classes=CLASSES)
    assert first["version"] != second["version"]


def test_missing_model_and_metadata(tmp_path, saved_model):
    with pytest.raises(ModelFileError, match="introuvable"):
        load_model(tmp_path / "absent.keras")
    orphan = tmp_path / "orphelin.keras"
    orphan.write_bytes(saved_model[0].read_bytes())
    with pytest.raises(ModelFileError, match="Métadonnées introuvables"):
        load_model(orphan)


def test_not_a_keras_file(tmp_path):
    fake = tmp_path / "faux.keras"
    fake.write_text("ceci n'est pas un modèle")
    metadata_path(fake).write_text(json.dumps({"classes": list(CLASSES), "image_size": 64, "version": "x"}))
    with pytest.raises(ModelFileError, match="pas un modèle Keras"):
        load_model(fake)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"classes": ["forêt", "mer"]}, "2 classes"),
        ({"image_size": 32}, "32×32×3"),
        ({"classes": ["forêt"]}, "au moins deux"),
        ({"image_size": "64"}, "image_size"),
        ({"version": ""}, "version"),
    ],
)
def test_metadata_must_match_the_network(tmp_path, saved_model, change, message):
    path = tmp_path / "modele.keras"
    path.write_bytes(saved_model[0].read_bytes())
    metadata = dict(saved_model[1], **change)
    metadata_path(path).write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_unreadable_metadata(tmp_path, saved_model):
    path = tmp_path / "modele.keras"
    path.write_bytes(saved_model[0].read_bytes())
    metadata_path(path).write_text("{pas du json")
    with pytest.raises(ModelFileError, match="illisibles"):
        read_metadata(path)


def test_wrong_extension(tmp_path):
    with pytest.raises(ModelFileError, match=r"\.keras"):
        save_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), tmp_path / "m.h5", classes=["a", "b"])
