"""Chapter 3 helpers: MobileNetV2 weights found in the Keras cache without any network access, the
clearly labelled fallback when they are missing, the model itself, and ``python -m atelier poids-mobilenet``.

The "ImageNet" weights used here are a small file we make ourselves: the same MobileNetV2 variant with
random weights, saved in Keras' legacy HDF5 format under the exact name Keras looks for.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from atelier import transfer
from atelier.labels import CLASSES
from atelier.model_io import file_sha256

ROOT = Path(__file__).resolve().parent.parent


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """``(path, weights)``: a MobileNetV2 α=0.35 96×96 no-top weights file in the format of Keras' files."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(7)
    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    path = tmp_path_factory.mktemp("poids") / transfer.WEIGHTS_FILENAME
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, base)
    return path, [np.array(w) for w in base.get_weights()]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download (Keras' get_file, urllib, a socket connection) fails the test."""
    import keras
    from keras.src.utils import file_utils

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"accès réseau interdit pendant les tests : {args[:1]}")

    monkeypatch.setattr(keras.utils, "get_file", forbidden)
    monkeypatch.setattr(file_utils, "get_file", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(urllib.request, "urlretrieve", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    return calls


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras home (``KERAS_HOME``)."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def cached(keras_home, fake_weights):
    """The fake weights copied into the Keras cache under their exact file name."""
    path, weights = fake_weights
    target = keras_home / "models" / transfer.WEIGHTS_FILENAME
    target.parent.mkdir()
    target.write_bytes(path.read_bytes())
    return target, weights


def images(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3)).astype("float32")


# --- where the weights are ------------------------------------------------------------------------------


def test_cache_path_is_the_one_keras_uses(keras_home):
    assert transfer.WEIGHTS_FILENAME == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert transfer.weights_cache_path() == keras_home / "models" / transfer.WEIGHTS_FILENAME
    assert transfer.WEIGHTS_URL.endswith("/mobilenet_v2/" + transfer.WEIGHTS_FILENAME)


def test_default_cache_is_home_dot_keras(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert transfer.weights_cache_path() == tmp_path / ".keras" / "models" / transfer.WEIGHTS_FILENAME


def test_cached_weights_are_loaded_without_network(cached, no_network):
    target, saved = cached
    status = transfer.imagenet_weights_status()
    assert status.available and status.mode == "imagenet" and status.weights_path == target
    assert "CHEMIN SUIVI : apprentissage par transfert" in status.message
    model = transfer.build_transfer_model(CLASSES, status.weights_path)
    base = transfer.backbone_of(model)
    loaded = base.get_weights()
    assert len(loaded) == len(saved) and all(np.array_equal(a, b) for a, b in zip(loaded, saved, strict=True))
    assert not base.trainable and model.name == "mobilenet_transfert"
    assert transfer.count_parameters(model) == {"total": 415_332, "entrainables": 5_124, "geles": 410_208}
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, len(CLASSES))
    probabilities = np.asarray(model(images(), training=False))
    assert probabilities.shape == (4, len(CLASSES)) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert no_network == []


def test_missing_weights_give_the_fallback_in_french(keras_home, no_network):
    status = transfer.imagenet_weights_status()
    assert not status.available and status.mode == "secours" and status.weights_path is None
    message = str(status)
    for fragment in (
        "ne sont pas dans le cache de Keras",
        "SOLUTION DE SECOURS",
        "depuis zéro",
        "python -m atelier poids-mobilenet",
        "--depuis",
        transfer.WEIGHTS_FILENAME,
        str(keras_home / "models"),
        "KERAS_HOME",
    ):
        assert fragment in message, fragment
    model = transfer.build_transfer_model(CLASSES, status.weights_path)
    base = transfer.backbone_of(model)
    assert base.trainable and model.name == "mobilenet_secours"
    assert transfer.count_parameters(model)["entrainables"] > 400_000
    momenta = {layer.momentum for layer in base.layers if hasattr(layer, "moving_mean")}
    assert momenta == {0.9}
    assert no_network == [] and not (keras_home / "models" / transfer.WEIGHTS_FILENAME).exists()


def test_corrupt_cached_file_is_not_used(keras_home):
    target = keras_home / "models" / transfer.WEIGHTS_FILENAME
    target.parent.mkdir()
    target.write_text("<html>Erreur 404</html>")
    status = transfer.imagenet_weights_status()
    assert not status.available and "corrompu" in status.message and "SOLUTION DE SECOURS" in status.message


def test_wrong_weights_file_gives_a_french_error(tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from atelier.model import build_cnn

    other = tmp_path / "autre.h5"
    with h5py.File(other, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, build_cnn(CLASSES, augment=False))
    with pytest.raises(transfer.WeightsError, match="ne contient pas les poids de MobileNetV2"):
        transfer.build_backbone(other)
    text = tmp_path / "poids.h5"
    text.write_text("pas des poids")
    with pytest.raises(transfer.WeightsError, match="n'est pas un fichier de poids Keras"):
        transfer.build_backbone(text)


# --- the model ----------------------------------------------------------------------------------------


def test_preprocessing_is_mobilenet_preprocess_input():
    import keras

    batch = images(3)
    batch[0, :2, :2] = 0.0
    batch[1, :2, :2] = 255.0
    ours = np.asarray(transfer.preprocessing_layers()(batch))
    expected = np.asarray(keras.applications.mobilenet_v2.preprocess_input(keras.ops.image.resize(batch, (96, 96))))
    assert ours.shape == (3, 96, 96, 3)
    assert np.allclose(ours, expected, atol=1e-5)
    assert ours.min() >= -1.0 - 1e-6 and ours.max() <= 1.0 + 1e-6


@pytest.mark.slow  # trains a network: not in the fast subset
def test_unfreeze_top_trains_only_the_top_layers_and_keeps_batchnorm_frozen(cached):
    import keras

    keras.utils.set_random_seed(0)
    model = transfer.build_transfer_model(CLASSES, cached[0], augment=False)
    model = transfer.unfreeze_top(model, n_layers=20, learning_rate=1e-5)
    base = transfer.backbone_of(model)
    trainable = [layer.name for layer in base.layers if layer.trainable]
    assert trainable and all(base.layers.index(base.get_layer(n)) >= len(base.layers) - 20 for n in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in base.layers if layer.trainable)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-5)

    top_bn = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)][-1]
    first_conv = base.get_layer("Conv1")
    top_conv = base.get_layer("Conv_1")
    before = [np.array(w) for w in (top_bn.moving_mean, first_conv.kernel, top_conv.kernel)]
    model.fit(images(8), np.arange(8) % len(CLASSES), epochs=1, batch_size=8, verbose=0)
    after = [np.array(w) for w in (top_bn.moving_mean, first_conv.kernel, top_conv.kernel)]
    assert np.array_equal(before[0], after[0]), "les statistiques d'une BatchNormalization gelée ne bougent pas"
    assert np.array_equal(before[1], after[1]), "les premières couches restent gelées"
    assert not np.array_equal(before[2], after[2]), "la dernière convolution est affinée"


def test_transfer_model_saves_and_reloads_like_the_cnn(cached, tmp_path):
    from atelier.model_io import load_model, save_model

    model = transfer.build_transfer_model(CLASSES, cached[0])
    path = tmp_path / "transfert.keras"
    save_model(model, path, classes=CLASSES, data_source="test", extra={"imagenet_weights": True})
    info = load_model(path)  # safe_mode: only standard layers, no Lambda
    assert info.image_size == 64 and info.classes == list(CLASSES) and info.metadata["imagenet_weights"] is True
    batch = images(2)
    assert np.allclose(
        np.asarray(info.model(batch, training=False)), np.asarray(model(batch, training=False)), atol=1e-5
    )


# --- python -m atelier poids-mobilenet ------------------------------------------------------------------


def run_cli(*args, keras_home):
    environment = dict(os.environ, KERAS_HOME=str(keras_home))
    return subprocess.run(
        [sys.executable, "-m", "atelier", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=environment,
        timeout=600,
    )


def assert_french_failure(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "Erreur :" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.slow
def test_cli_installs_a_downloaded_file_under_the_keras_name(fake_weights, tmp_path):
    source, _ = fake_weights
    renamed = tmp_path / "telecharge.h5"  # the instructor's copy may have any name
    renamed.write_bytes(source.read_bytes())
    home = tmp_path / "kh"
    result = run_cli("poids-mobilenet", "--depuis", renamed, keras_home=home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    target = home / "models" / transfer.WEIGHTS_FILENAME
    assert report["path"] == str(target) and target.read_bytes() == source.read_bytes()
    assert report["sha256"] == file_sha256(source) and "prêts" in result.stdout

    # Keras itself now finds the file: weights="imagenet" works with the network forbidden.
    check = (
        "import urllib.request, keras\n"
        "def forbidden(*a, **k): raise SystemExit('réseau appelé')\n"
        "urllib.request.urlretrieve = urllib.request.urlopen = forbidden\n"
        "keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights='imagenet')\n"
        "print('ok')\n"
    )
    keras_run = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=dict(os.environ, KERAS_HOME=str(home)),
        timeout=600,
    )
    assert keras_run.returncode == 0 and keras_run.stdout.strip().endswith("ok"), keras_run.stderr[-2000:]


@pytest.mark.slow
def test_cli_errors_are_french_without_traceback(tmp_path):
    home = tmp_path / "kh"
    assert_french_failure(
        run_cli("poids-mobilenet", "--depuis", tmp_path / "absent.h5", keras_home=home), "introuvable"
    )
    wrong = tmp_path / "mobilenet.h5"
    wrong.write_text("ceci n'est pas un fichier de poids")
    assert_french_failure(
        run_cli("poids-mobilenet", "--depuis", wrong, keras_home=home),
        "n'est pas un fichier de poids Keras",
        transfer.WEIGHTS_FILENAME,
    )
    assert not (home / "models" / transfer.WEIGHTS_FILENAME).exists(), "un mauvais fichier n'entre pas dans le cache"


def test_cli_wrong_network_file_is_refused(fake_weights, tmp_path, keras_home, capsys):
    """In-process: an HDF5 file of another network is refused before anything is copied."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from atelier.cli import main
    from atelier.model import build_cnn

    other = tmp_path / "cnn.h5"
    with h5py.File(other, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, build_cnn(CLASSES, augment=False))
    assert main(["poids-mobilenet", "--depuis", str(other)]) != 0
    assert "ne contient pas les poids de MobileNetV2" in capsys.readouterr().err
    assert not (keras_home / "models" / transfer.WEIGHTS_FILENAME).exists()


def test_cli_without_file_downloads_once_or_explains(fake_weights, keras_home, monkeypatch, capsys):
    from atelier.cli import main

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["poids-mobilenet"]) != 0
    err = capsys.readouterr().err
    assert "Téléchargement impossible" in err and "--depuis" in err
    assert not (keras_home / "models" / transfer.WEIGHTS_FILENAME).exists()

    requested = []

    def fake_download(url, timeout=None):
        requested.append((url, timeout))
        return io.BytesIO(fake_weights[0].read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_download)
    assert main(["poids-mobilenet"]) == 0
    assert requested == [(transfer.WEIGHTS_URL, transfer.DOWNLOAD_TIMEOUT)]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["action"] == "téléchargé"

    assert main(["poids-mobilenet"]) == 0, "already cached: no second download"
    assert len(requested) == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["action"] == "déjà en cache"
