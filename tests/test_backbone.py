"""The EuroSAT backbone shipped with the package: its card, offline loading, shapes, freezing and fine-tuning,
the shipped EuroSAT tiles it was pretrained on, and the pretraining script's core function on a tiny subset."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from atelier import backbone
from atelier.data import DatasetError, split_dataset
from atelier.eurosat_tiles import EUROSAT_CLASSES, EUROSAT_DIR, load_eurosat, read_manifest, workshop_tiles
from atelier.labels import CLASSES
from atelier.model_io import file_sha256
from tests.conftest import load_tool

ROOT = Path(__file__).resolve().parent.parent


def _pretrain_module():
    return load_tool("pretrain_backbone")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Loading the backbone never touches the network: any connection attempt fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"accès réseau interdit : {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)


@pytest.fixture(scope="module")
def pretrained():
    return backbone.load_pretrained()


@pytest.fixture
def shipped_copy(tmp_path):
    """A copy of the shipped model and card, to damage."""
    for path in (backbone.model_file(), backbone.card_file()):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


# --- the shipped file and its card ----------------------------------------------------------------


def test_card_is_consistent_with_the_file():
    card = backbone.read_card()
    path = backbone.model_file()
    assert card["sha256"] == file_sha256(path)
    assert card["classes"] == list(EUROSAT_CLASSES)
    assert card["filters"] == list(backbone.FILTERS)
    assert card["image_size"] == 64
    assert card["seed"] == 0 and card["split"]["seed"] == 0
    assert card["licence"].startswith("MIT")
    assert card["command"].startswith("python tools/pretrain_backbone.py")
    # Issue target: 90 % on held-out EuroSAT tiles; the shipped network reaches 93.9 % (50 epochs, 1,030 s of
    # processor on 2 cores). This guard catches a broken or badly retrained network; the exact figure is checked
    # below, and the pretraining stays within 15 minutes of 2 cores (1,700 s of processor).
    assert 0.90 <= card["heldout_accuracy"] <= 1.0
    assert 0 < card["training_cpu_seconds"] <= 1700
    assert card["split"]["n_test"] >= 500
    assert path.stat().st_size <= 5 * 1024 * 1024
    assert "date" in card and card["date"][:4].isdigit()


def test_shipped_backbone_is_package_data():
    package_data = next(
        line
        for line in (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines()
        if line.startswith("atelier = [")
    )
    assert '"backbones/*.keras"' in package_data and '"backbones/*.json"' in package_data


def test_held_out_accuracy_of_the_card_is_reproduced(pretrained):
    """The card's accuracy is what the shipped network really does on the held-out EuroSAT split."""
    from atelier.evaluation import evaluate_dataset

    model, card = pretrained
    tiles = load_eurosat(exclude=workshop_tiles())
    test = split_dataset(tiles, validation=card["split"]["validation"], test=card["split"]["test"], seed=card["seed"])
    assert len(test.test) == card["split"]["n_test"]
    report = evaluate_dataset(model, test.test)
    assert report["accuracy"] == pytest.approx(card["heldout_accuracy"], abs=0.002)


def test_loads_offline_with_the_right_shapes(pretrained):
    model, _ = pretrained
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 10)
    base = model.get_layer(backbone.BASE_NAME)
    assert base.output_shape == (None, backbone.FILTERS[-1])
    probabilities = np.asarray(model(np.zeros((2, 64, 64, 3), np.float32)))
    assert probabilities.shape == (2, 10)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_base_is_frozen_by_default_and_can_be_trainable():
    frozen = backbone.load_base()
    assert frozen.trainable is False and frozen.trainable_weights == []
    assert backbone.load_base(trainable=True).trainable_weights


def test_cut_base_is_the_pretrained_network_up_to_its_third_block(pretrained):
    """The transfer base keeps blocks 1-3 with their EuroSAT weights and averages relu3: same features as the
    pretrained network's own relu3 output, averaged."""
    import keras

    model, _ = pretrained
    full = model.get_layer(backbone.BASE_NAME)
    cut = backbone.load_base()
    names = [layer.name for layer in cut.layers]
    assert names == ["normalisation", "conv1", "norm1", "relu1", "pool1", "conv2", "norm2", "relu2", "pool2",
                     "conv3", "norm3", "relu3", "moyenne_globale"]  # fmt: skip
    assert cut.output_shape == (None, backbone.FILTERS[backbone.BLOCKS - 1])
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3)).astype("float32")
    relu3 = keras.Model(full.inputs, full.get_layer("relu3").output)
    expected = np.asarray(relu3(images)).mean(axis=(1, 2))
    assert np.allclose(np.asarray(cut(images)), expected, atol=1e-5)
    assert backbone.load_base(blocks=len(backbone.FILTERS)).output_shape == (None, backbone.FILTERS[-1])
    for blocks in (0, len(backbone.FILTERS) + 1):
        with pytest.raises(ValueError, match="entre 1 et 4"):
            backbone.load_base(blocks=blocks)


def test_modified_file_is_refused_in_french(shipped_copy):
    path = backbone.model_file(shipped_copy)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(backbone.BackboneError, match="ne correspond pas à sa fiche"):
        backbone.load_pretrained(shipped_copy)


def test_missing_file_and_missing_card_are_explained(shipped_copy):
    backbone.model_file(shipped_copy).unlink()
    with pytest.raises(backbone.BackboneError, match="Réseau de base introuvable"):
        backbone.load_pretrained(shipped_copy)
    backbone.card_file(shipped_copy).unlink()
    with pytest.raises(backbone.BackboneError, match="Fiche du réseau de base introuvable"):
        backbone.load_pretrained(shipped_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda card: card.pop("sha256"), "il manque sha256"),
        (lambda card: card.update(file="autre.keras"), "décrit le fichier autre.keras"),
        (lambda card: card.update(classes=["a", "b"]), "10 sorties mais sa fiche nomme 2 classes"),
    ],
)
def test_inconsistent_card_is_refused(shipped_copy, change, message):
    path = backbone.card_file(shipped_copy)
    card = json.loads(path.read_text(encoding="utf-8"))
    change(card)
    path.write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(backbone.BackboneError, match=message):
        backbone.load_pretrained(shipped_copy)


def test_unreadable_card_is_refused(shipped_copy):
    backbone.card_file(shipped_copy).write_text("{pas du JSON", encoding="utf-8")
    with pytest.raises(backbone.BackboneError, match="illisible"):
        backbone.read_card(shipped_copy)


# --- transfer: frozen base, new head, fine-tuning --------------------------------------------------


def test_transfer_model_has_a_frozen_base_and_a_new_head():
    model = backbone.build_transfer_model(CLASSES)
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, len(CLASSES))
    assert backbone.trainable_layers(model) == []
    head = backbone.FILTERS[backbone.BLOCKS - 1] * len(CLASSES) + len(CLASSES)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == head


def test_transfer_base_keeps_the_pretrained_weights():
    model, _ = backbone.load_pretrained()
    expected = model.get_layer(backbone.BASE_NAME).get_layer("conv1").get_weights()[0]
    transfer_model = backbone.build_transfer_model(CLASSES)
    got = backbone.base_of(transfer_model).get_layer("conv1").get_weights()[0]
    assert np.array_equal(got, expected)


def test_unfreeze_top_unfreezes_only_the_last_convolutions():
    model = backbone.build_transfer_model(CLASSES)
    backbone.unfreeze_top(model, n_blocks=1, learning_rate=1e-4)
    assert backbone.trainable_layers(model) == ["conv3"]
    backbone.unfreeze_top(model, n_blocks=2, learning_rate=1e-4)
    assert backbone.trainable_layers(model) == ["conv2", "conv3"]
    backbone.unfreeze_top(model)  # the chapter's fine-tuning: every block of the base
    assert backbone.trainable_layers(model) == ["conv1", "conv2", "conv3"]
    assert not any(layer.trainable for layer in backbone.base_of(model).layers if "norm" in layer.name)
    with pytest.raises(ValueError, match="entre 0 et 3"):
        backbone.unfreeze_top(model, n_blocks=4)


def test_fine_tuning_changes_only_the_unfrozen_block():
    import keras

    keras.utils.set_random_seed(0)
    model = backbone.unfreeze_top(backbone.build_transfer_model(CLASSES, augment=False), n_blocks=1)
    base = backbone.base_of(model)
    before = {name: base.get_layer(name).get_weights()[0].copy() for name in ("conv2", "conv3", "norm3")}
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3)).astype("float32")
    model.fit(images, np.arange(16) % 4, epochs=1, batch_size=8, verbose=0)
    assert np.array_equal(base.get_layer("conv2").get_weights()[0], before["conv2"])
    assert np.array_equal(base.get_layer("norm3").get_weights()[0], before["norm3"])
    assert not np.array_equal(base.get_layer("conv3").get_weights()[0], before["conv3"])


# --- the shipped tiles ------------------------------------------------------------------------------


def test_manifest_lists_500_tiles_per_class():
    rows = read_manifest()
    assert len(rows) == 5000
    assert {label: sum(1 for r in rows if r[0] == label) for label in EUROSAT_CLASSES} == dict.fromkeys(
        EUROSAT_CLASSES, 500
    )


def test_workshop_tiles_are_half_of_forest_and_sealake_and_never_pretrained():
    reserved = workshop_tiles()
    assert len(reserved) == 500
    assert {name.split("_")[0] for name in reserved} == {"Forest", "SeaLake"}
    tiles = load_eurosat(classes=("Forest", "SeaLake"), exclude=reserved)
    assert len(tiles) == 500 and not {p.name for p in tiles.paths} & set(reserved)


def test_load_eurosat_checks_the_manifest(tmp_path):
    for label, name, _ in read_manifest()[:3]:
        (tmp_path / label).mkdir(exist_ok=True)
        shutil.copy(EUROSAT_DIR / label / name, tmp_path / label / name)
    lines = (EUROSAT_DIR / "manifest.csv").read_text(encoding="utf-8").splitlines()[:4]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tiles = load_eurosat(tmp_path, classes=("Forest",))
    assert tiles.images.shape == (3, 64, 64, 3) and tiles.images.dtype == np.uint8
    first = tmp_path / lines[1].split(",")[0] / lines[1].split(",")[1]
    first.write_bytes(first.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="somme MD5"):
        load_eurosat(tmp_path, classes=("Forest",))
    with pytest.raises(DatasetError, match="Aucune tuile EuroSAT pour la ou les classes : River"):
        load_eurosat(tmp_path, classes=("Forest", "River"))


# --- the pretraining script --------------------------------------------------------------------------


def test_pretraining_core_function_runs_on_a_tiny_subset(tmp_path):
    tool = _pretrain_module()
    card = tool.pretrain(tmp_path, epochs=1, per_class=6, filters=(4, 8), batch_size=16, verbose=0, command="test")
    assert card["n_tiles"] == 60 and card["split"]["n_test"] == 10
    assert card["sha256"] == file_sha256(backbone.model_file(tmp_path))
    assert card == backbone.read_card(tmp_path)
    model, loaded_card = backbone.load_pretrained(tmp_path)
    assert loaded_card["filters"] == [4, 8] and model.output_shape == (None, 10)
    assert 0 <= card["heldout_accuracy"] <= 1
    assert card["dropout"] == tool.DROPOUT and card["epochs"] == 1 and card["cloud_class"] is False
    assert card["training_cpu_seconds"] > 0 and card["load_average"] >= 0 and card["cpu_count"] >= 1
    assert card["training_conditions"].startswith(("machine partagée", "machine au repos"))


def test_the_cloud_class_is_made_from_each_split_own_tiles(tmp_path):
    """``--nuages`` (an experiment, off for the shipped network): an 11th class whose images are tiles of the
    same split under procedural clouds, as many as an average class, so no test tile is ever trained on."""
    tool = _pretrain_module()
    tiles = load_eurosat(per_class=6)
    splits = tool.with_cloud_class(tool.split_dataset(tiles, validation=0.2, test=0.2, seed=0), seed=0)
    for name in ("train", "validation", "test"):
        part = getattr(splits, name)
        clouds = part.labels == len(EUROSAT_CLASSES)
        assert part.classes == [*EUROSAT_CLASSES, tool.CLOUD_CLASS]
        assert clouds.sum() == (len(part) - clouds.sum()) // len(EUROSAT_CLASSES) > 0
        own = {p.name for p, cloud in zip(part.paths, clouds, strict=True) if not cloud}
        made = [p.name.removeprefix("nuages-") for p, cloud in zip(part.paths, clouds, strict=True) if cloud]
        assert set(made) <= own, name
        # Clouds really cover the copies: brighter on average than the tiles they were made from.
        grey = part.images.mean(axis=3)
        assert grey[clouds].mean() > grey[~clouds].mean()
    card = tool.pretrain(
        tmp_path, epochs=1, per_class=6, filters=(4, 8), batch_size=16, verbose=0, command="test", clouds=True
    )
    assert card["cloud_class"] is True and card["classes"][-1] == tool.CLOUD_CLASS
    assert backbone.load_pretrained(tmp_path)[0].output_shape == (None, 11)


def test_sensor_shift_keeps_a_tile_a_plausible_image(tmp_path):
    """``--capteurs`` (an experiment, off for the shipped network): same shape, values 0–255, a changed image."""
    import tensorflow as tf

    tool = _pretrain_module()
    tile = tf.constant(load_eurosat(per_class=1).images[0], tf.float32)
    shifted = [tool.sensor_shift(tile, seed).numpy() for seed in range(4)]
    for image in shifted:
        assert image.shape == tuple(tile.shape) and image.min() >= 0 and image.max() <= 255
        assert np.abs(image - tile.numpy()).mean() > 1  # really another view
    card = tool.pretrain(
        tmp_path, epochs=1, per_class=6, filters=(4, 8), batch_size=16, verbose=0, command="test", shift=True
    )
    assert card["sensor_shift"] is True and card["cloud_class"] is False
