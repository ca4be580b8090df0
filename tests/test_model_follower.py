"""A server process following the repository: first model, swaps, pin, refused versions, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from atelier import metrics
from atelier.inference import Predictor
from atelier.labels import CLASSES
from atelier.model_follower import ModelFollower
from atelier.model_repository import ModelRepository, RepositoryError

from .tiny_models import make_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("modeles"))


def follower_for(root) -> ModelFollower:
    return ModelFollower(root, lambda serving: Predictor(serving, batching=False), interval=0.05)


def predicted_version(follower: ModelFollower) -> str:
    return follower.predictor.predict_array(np.zeros((64, 64, 3), np.uint8)).model_version


def test_an_empty_repository_waits_for_its_first_version(tmp_path, models):
    follower = follower_for(tmp_path / "depot")
    follower.load_initial()
    assert not follower.ready and follower.served is None and follower.predictor is None
    ModelRepository(tmp_path / "depot").publish(models["a"])
    assert follower.poller.poll_once()
    assert follower.ready and follower.served == 1 and predicted_version(follower) == "1"


def test_swaps_pin_and_refused_versions(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    follower = follower_for(repo.root)
    follower.load_initial()
    assert follower.served == 1
    swaps = metrics.SWAPS._value.get()
    failures = metrics.FAILED_LOADS._value.get()

    repo.publish(models["b"])
    assert follower.poller.poll_once() and predicted_version(follower) == "2"
    assert metrics.SWAPS._value.get() == swaps + 1
    assert metrics.MODEL_VERSION._value.get() == 2

    follower.pin(1)  # this process switches at once
    assert follower.served == 1 and predicted_version(follower) == "1"
    status = follower.status()
    assert status["pin"] == 1 and status["served_version"] == 1 and status["policy"] == "épinglée"
    assert [row["version"] for row in status["versions"]] == [1, 2]
    assert follower.unpin() and follower.served == 2

    repo.publish(models["three"])  # other classes than the served model: never served
    repo.publish(models["low"])  # accuracy under the floor
    assert not follower.poller.poll_once() and follower.served == 2
    assert metrics.FAILED_LOADS._value.get() == failures + 2
    status = follower.status()
    assert "Version 3 ignorée" in status["last_error"] or "Version 4 ignorée" in status["last_error"]
    states = {row["version"]: row["status"] for row in status["versions"]}
    assert states == {1: "valide", 2: "valide", 3: "invalide", 4: "invalide"}
    with pytest.raises(RepositoryError, match="Version 3 invalide"):
        follower.pin(3)
    with pytest.raises(RepositoryError, match="n'existe pas"):
        follower.pin(9)
    assert repo.pinned() is None and follower.served == 2


def test_an_incompatible_swap_is_refused_by_the_predictor_rule(tmp_path, models):
    """The follower checks nothing itself: Predictor.swap refuses, and the poller records the refusal."""
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    follower = follower_for(repo.root)
    follower.load_initial()
    repo.publish(models["three"])
    # The repository is told to accept its classes: only the predictor's rule can refuse version 2.
    follower.repository.require(CLASSES[:3], 64)
    assert not follower.poller.poll_once()
    assert follower.served == 1 and predicted_version(follower) == "1"
    assert follower.poller.last_error.startswith("Version 2 refusée : ")
    assert follower.last_error.startswith("Version 2 ignorée : ")
    assert not follower.repository.is_valid(2)
