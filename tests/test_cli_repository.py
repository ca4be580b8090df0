"""``python -m atelier publish`` and ``models``: new version printed, JSON last line, states listed, French errors."""

from __future__ import annotations

import pytest

from .test_cli import assert_french_failure, last_json, run_cli
from .tiny_models import save_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("modeles")
    return save_tiny(root / "a.keras"), save_tiny(root / "faible.keras", accuracy=0.3)


def test_publish_then_list(tmp_path, tiny):
    good, weak = tiny
    depot = tmp_path / "depot"
    first = run_cli("publish", "--model", good, "--model-dir", depot)
    assert first.returncode == 0, first.stderr
    assert "Version 1 publiée" in first.stdout and last_json(first.stdout)["version"] == 1
    second = run_cli("publish", "--model", weak, "--model-dir", depot)
    assert "Version 2 publiée" in second.stdout and "ignoreront cette version" in second.stdout
    assert last_json(second.stdout)["version"] == 2 and (depot / "2" / "model.json").is_file()
    (depot / "pin").write_text("1\n", encoding="utf-8")
    listing = run_cli("models", "--model-dir", depot)
    assert listing.returncode == 0, listing.stderr
    summary = last_json(listing.stdout)
    assert summary["pin"] == 1 and summary["resolved"] == 1
    states = {row["version"]: (row["status"], row["accuracy"], row["pinned"]) for row in summary["versions"]}
    assert states == {1: ("valide", 0.9, True), 2: ("invalide", 0.3, False)}
    assert "sous le plancher de 50 %" in listing.stdout and "épinglée" in listing.stdout
    lowered = run_cli("models", "--model-dir", depot, "--min-accuracy", "0.2")
    assert [row["status"] for row in last_json(lowered.stdout)["versions"]] == ["valide", "valide"]


def test_errors_are_french(tmp_path, tiny):
    assert_french_failure(
        run_cli("publish", "--model", tmp_path / "absent.keras", "--model-dir", tmp_path), "introuvable"
    )
    assert_french_failure(run_cli("models", "--model-dir", tmp_path / "rien"), "Dépôt de modèles introuvable")
    assert_french_failure(run_cli("models", "--model-dir", tmp_path, "--min-accuracy", "2"), "entre 0 et 1")
    assert_french_failure(run_cli("publish", "--model", tiny[0]), "obligatoire")
    assert_french_failure(run_cli("serve", "--model-dir", tmp_path / "rien"), "Dépôt de modèles introuvable")
    assert_french_failure(run_cli("serve", "--model-dir", tmp_path, "--poll-seconds", "0"), "--poll-seconds")
