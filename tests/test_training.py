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
