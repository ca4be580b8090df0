"""The predictor: compiled call, micro-batching of concurrent requests, hot swap."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from atelier.inference import Predictor, ServingModel
from atelier.model_io import ModelFileError


@pytest.fixture(scope="module")
def serving(saved_model):
    path, _ = saved_model
    return ServingModel.load(path, warm_batch_sizes=tuple(range(1, 9)))


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_compiled_call_matches_the_keras_model(serving):
    images = np.stack(_images(3)).astype(np.float32)
    expected = serving.info.model(images, training=False).numpy()
    np.testing.assert_allclose(serving.run(images), expected, rtol=1e-5, atol=1e-6)
    assert serving.run(images[:1]).shape == (1, 4)


def test_micro_batching_groups_concurrent_requests_and_keeps_answers(serving):
    sizes: list[int] = []
    original = serving.run
    gate = threading.Event()

    class Spy:
        """Same model, but records batch sizes and holds the first call so that requests pile up."""

        info = serving.info
        version = serving.version
        classes = serving.classes
        image_size = serving.image_size

        @staticmethod
        def run(images):
            sizes.append(len(images))
            gate.wait(5)
            return original(images)

    predictor = Predictor(Spy(), batching=True, max_batch_size=8, batch_wait_ms=0)  # type: ignore[arg-type]
    images = _images(24)
    try:
        with ThreadPoolExecutor(24) as pool:
            futures = [pool.submit(predictor.predict_array, image) for image in images]
            threading.Timer(0.3, gate.set).start()
            results = [f.result(30) for f in futures]
    finally:
        predictor.close()
    assert sum(sizes) == 24 and max(sizes) > 1 and max(sizes) <= 8
    alone = serving.run(np.stack(images).astype(np.float32))
    for result, row in zip(results, alone):
        np.testing.assert_allclose(result.probabilities, row, rtol=1e-4, atol=1e-6)
        assert result.model_version == serving.version


def test_swap_refuses_incompatible_model_and_keeps_serving(serving, tmp_path):
    predictor = Predictor(serving, batching=False)
    with pytest.raises(ModelFileError):
        predictor.load_compatible(tmp_path / "absent.keras")
    assert predictor.current is serving
    same = predictor.load_compatible(serving.info.path)
    old = predictor.swap(same)
    assert old is serving and predictor.current is same
    assert predictor.predict_array(_images(1)[0]).model_version == serving.version
