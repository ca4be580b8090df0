"""tools/measure_transfer_reel.py without the real images: its split, its per-image errors and its summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atelier.data import ImageDataset
from tests.conftest import load_tool

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["forêt", "mer", "désert", "nuageux"]


@pytest.fixture(scope="module")
def tool():
    return load_tool("measure_transfer_reel")


def _dataset(per_class: int = 20) -> ImageDataset:
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    images = np.zeros((len(labels), 8, 8, 3), np.uint8)
    images[..., 0] = labels[:, None, None] * 60  # the class is readable from the red channel
    paths = [Path(f"/x/{CLASSES[y]}/{i}.jpg") for i, y in enumerate(labels)]
    return ImageDataset(images, labels, CLASSES, paths)


def test_the_two_folds_swap_training_and_test(tool):
    dataset = _dataset()
    first, second = (tool.fixed_split(dataset, 10, seed=3, fold=fold) for fold in (0, 1))
    for splits in (first, second):
        assert splits.train.counts() == dict.fromkeys(CLASSES, 9)
        assert splits.validation.counts() == dict.fromkeys(CLASSES, 1)
        assert splits.test.counts() == dict.fromkeys(CLASSES, 10)
        learn = set(splits.train.paths) | set(splits.validation.paths)
        assert not learn & set(splits.test.paths)
    assert set(first.test.paths) == set(second.train.paths) | set(second.validation.paths)
    with pytest.raises(ValueError, match="Pli 2 impossible"):
        tool.fixed_split(dataset, 10, seed=3, fold=2)


def test_missed_names_the_misclassified_test_images(tool):
    class RedReader:  # a "model" that reads the class from the red channel, wrong for every « mer »
        def predict(self, batch, verbose=0, **_):
            guess = np.round(np.asarray(batch)[:, 0, 0, 0] / 60).astype(int)
            guess[guess == 1] = 2
            return np.eye(len(CLASSES))[guess]

        def __call__(self, batch, training=False):
            return self.predict(batch)

    test = _dataset(3)
    assert tool.missed(RedReader(), test) == ["mer/3.jpg", "mer/4.jpg", "mer/5.jpg"]


def test_summary_gives_gap_wins_ties_and_shared_errors(tool):
    def run(cnn, transfer, both):
        per_class = dict.fromkeys(CLASSES, 0.9)
        return {
            "cnn": {"accuracy": cnn, "per_class": per_class},
            "transfert": {"accuracy": transfer, "per_class": per_class},
            "missed_by_both": ["x"] * both,
            "n_test": 200,
        }

    summary = tool.summarize([run(0.90, 0.95, 4), run(0.94, 0.94, 6), run(0.96, 0.95, 8)], CLASSES)
    gap = summary["gap"]
    assert (gap["wins"], gap["ties"], gap["runs"]) == (1, 1, 3)
    assert gap["mean"] == pytest.approx((0.05 + 0 - 0.01) / 3, abs=1e-4)
    assert summary["shared_errors"]["mean"] == pytest.approx(0.03)
    assert summary["cnn"]["accuracy"]["mean"] == pytest.approx(0.9333, abs=1e-4)
    assert tool.pm(gap, "points") == "1,3 ± 3,2 points"
