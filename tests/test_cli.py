"""``python -m atelier``: JSON on the last line, French errors, non-zero exit and no traceback on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_dataset

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env=None, timeout=600):
    environment = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "atelier", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=environment,
        timeout=timeout,
    )


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for 2 epochs on a small dataset by the CLI itself."""
    root = tmp_path_factory.mktemp("cli")
    data = make_dataset(root / "donnees", per_class=12)
    model = root / "modele.keras"
    result = run_cli("train", "--data", data, "--out", model, "--epochs", "2", "--seed", "1")
    return result, data, model


@pytest.mark.slow
def test_train_writes_model_metadata_and_json(trained):
    result, _, model = trained
    assert result.returncode == 0, result.stderr
    report = last_json(result.stdout)
    assert report["classes"] == ["forêt", "mer", "désert", "nuageux"]
    assert 0.0 <= report["test_accuracy"] <= 1.0 and report["model"] == str(model)
    assert "Epoch 1/2" in result.stdout, "Keras progress is shown"
    metadata = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    assert metadata["metrics"]["test_accuracy"] == report["test_accuracy"]
    assert metadata["image_size"] == 64 and metadata["data_source"].endswith("donnees")


@pytest.mark.slow  # trains a model (subprocess or in-process): not in the fast subset
def test_evaluate_on_kaggle_folder_names(trained, tmp_path):
    _, _, model = trained
    kaggle = make_dataset(
        tmp_path / "kaggle",
        per_class=5,
        folders={
            "green_area": (40, 110, 50),
            "water": (20, 50, 120),
            "desert": (205, 170, 110),
            "cloudy": (235, 235, 240),
        },
    )
    result = run_cli("evaluate", "--model", model, "--data", kaggle)
    assert result.returncode == 0, result.stderr
    report = last_json(result.stdout)
    assert report["n"] == 20 and set(report["per_class"]) == {"forêt", "mer", "désert", "nuageux"}
    assert len(report["confusion"]) == 4 and sum(map(sum, report["confusion"])) == 20
    assert 0 <= report["accuracy"] <= 1 and "Précision" in result.stdout


def assert_french_failure(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    # TensorFlow's C++ runtime may print start-up lines on stderr first; our message is what follows.
    ours = result.stderr[
        result.stderr.find("utilisation") if "utilisation" in result.stderr else result.stderr.find("Erreur") :
    ]
    assert ours.startswith(("Erreur", "utilisation")), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.slow
def test_evaluate_errors(trained, tmp_path):
    _, data, model = trained
    assert_french_failure(run_cli("evaluate", "--model", tmp_path / "absent.keras", "--data", data), "introuvable")
    assert_french_failure(run_cli("evaluate", "--model", model, "--data", tmp_path / "rien"), "introuvable")
    fake = tmp_path / "faux.keras"
    fake.write_text("pas un modèle")
    fake.with_suffix(".json").write_text(model.with_suffix(".json").read_text(encoding="utf-8"), encoding="utf-8")
    assert_french_failure(run_cli("evaluate", "--model", fake, "--data", data), "pas un modèle Keras")
    other = make_dataset(tmp_path / "autres", per_class=2, folders={"urbain": (90, 90, 90), "mer": (20, 50, 120)})
    assert_french_failure(run_cli("evaluate", "--model", model, "--data", other), "inconnues du modèle", "urbain")


@pytest.mark.slow  # trains a model (subprocess or in-process): not in the fast subset
def test_train_with_the_eurosat_backbone_says_which_backbone(tmp_path):
    """``train --backbone eurosat``: frozen shipped backbone + new head, then fine-tuning; the metadata name the
    backbone and its fingerprints, and the model is served like any other."""
    from atelier import backbone
    from atelier.model_io import file_sha256, load_model

    data = make_dataset(tmp_path / "donnees", per_class=12)
    model = tmp_path / "transfert.keras"
    result = run_cli("train", "--backbone", "eurosat", "--data", data, "--out", model, "--epochs", "2")
    assert result.returncode == 0, result.stderr
    report = last_json(result.stdout)
    card = backbone.read_card()
    expected = {
        "name": "eurosat",
        "weights_sha256": card["sha256"],
        "card_sha256": file_sha256(backbone.card_file()),
        "heldout_accuracy": card["heldout_accuracy"],
        "blocks": backbone.BLOCKS,
    }
    assert report["backbone"] == expected and report["epochs"] == 2
    info = load_model(model)
    assert info.metadata["backbone"] == expected and info.classes == ["forêt", "mer", "désert", "nuageux"]
    assert info.model.get_layer(backbone.BASE_NAME) is not None


@pytest.mark.slow  # trains a model (subprocess or in-process): not in the fast subset
def test_train_with_mobilenet_without_cached_weights_is_explained(tmp_path):
    data = make_dataset(tmp_path / "donnees", per_class=4)
    result = run_cli(
        "train",
        "--backbone",
        "mobilenet",
        "--data",
        data,
        "--out",
        tmp_path / "m.keras",
        "--epochs",
        "2",
        env={"KERAS_HOME": str(tmp_path / "keras_vide")},
    )
    assert_french_failure(result, "poids-mobilenet")
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.slow  # trains a model (subprocess or in-process): not in the fast subset
def test_train_and_usage_errors(tmp_path):
    assert_french_failure(run_cli("train", "--data", tmp_path / "rien", "--out", tmp_path / "m.keras"), "introuvable")
    assert_french_failure(run_cli("train", "--out", tmp_path / "m.h5"), ".keras")
    assert_french_failure(run_cli("train", "--out", tmp_path / "m.keras", "--epochs", "zéro"), "invalide")
    assert_french_failure(run_cli("train", "--out", tmp_path / "m.keras", "--backbone", "resnet"), "choix invalide")
    assert_french_failure(
        run_cli("train", "--out", tmp_path / "m.keras", "--backbone", "eurosat", "--epochs", "1"), "au moins 2"
    )
    assert_french_failure(run_cli("evaluate"), "obligatoires")
    assert_french_failure(run_cli("inconnue"), "choix invalide")


def test_help_is_french():
    result = run_cli("--help")
    assert result.returncode == 0 and "entraîner" in result.stdout and "afficher cette aide" in result.stdout
