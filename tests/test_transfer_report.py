"""tools/transfer_report.py on tiny synthetic folders: French report, confusion matrix, JSON last line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atelier.labels import CLASSES
from atelier.model import build_cnn, compile_model
from atelier.model_io import save_model
from tests.conftest import load_tool, make_dataset

ROOT = Path(__file__).resolve().parent.parent
KAGGLE_COLOURS = {
    "green_area": (40, 110, 60),
    "water": (20, 40, 120),
    "desert": (200, 170, 110),
    "cloudy": (225, 225, 228),
}


@pytest.fixture(scope="module")
def tool():
    return load_tool("transfer_report")


@pytest.fixture
def untrained_model(tmp_path) -> Path:
    path = tmp_path / "modele.keras"
    save_model(compile_model(build_cnn(CLASSES, seed=0)), path, classes=list(CLASSES))
    return path


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_report_per_folder_with_french_labels_and_confusion(tool, untrained_model, tmp_path, capsys):
    real = make_dataset(tmp_path / "reel", per_class=3, folders=KAGGLE_COLOURS)
    eurosat = make_dataset(
        tmp_path / "eurosat", per_class=2, folders={"Forest": (40, 90, 60), "SeaLake": (20, 40, 110)}
    )
    assert tool.main([str(real), str(eurosat), "--model", str(untrained_model)]) == 0
    out = capsys.readouterr().out
    assert "Précision globale" in out and "Matrice de confusion" in out
    for name in CLASSES:
        assert name in out
    result = _last_json(out)
    first, second = result["folders"][str(real)]["model"], result["folders"][str(eurosat)]["model"]
    assert first["n"] == 12 and np.asarray(first["confusion"]).sum(axis=1).tolist() == [3, 3, 3, 3]
    assert second["n"] == 4 and set(second["per_class"]) == {"forêt", "mer"}
    assert first["classes"] == list(CLASSES)
    assert 0.0 <= first["accuracy"] <= 1.0


@pytest.mark.slow  # trains two small models
def test_small_set_mode_predicts_every_image_once_with_throwaway_models(tool, untrained_model, tmp_path, capsys):
    real = make_dataset(tmp_path / "reel", per_class=6, folders=KAGGLE_COLOURS)
    assert tool.main([str(real), "--model", str(untrained_model), "--small-set", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    small = _last_json(out)["folders"][str(real)]["small_set"]
    assert small["n"] == 24 and sum(fold["n_test"] for fold in small["folds"]) == 24
    assert all(fold["n_train"] < 12 for fold in small["folds"])  # each model learns from one half only
    assert "entraîné sur une moitié" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["modele.json", "modele.keras", "reel"]  # nothing saved


def test_bad_input_is_a_french_error(tool, tmp_path, capsys):
    assert tool.main([str(tmp_path / "absent"), "--model", str(tmp_path / "absent.keras")]) != 0
    assert "Erreur" in capsys.readouterr().err
    assert tool.main([str(tmp_path), "--epochs", "0"]) != 0
    assert "au moins 1" in capsys.readouterr().err
