"""TensorFlow Lite as the inference runtime (atelier.lite_runtime, ServingModel.compile): the same probabilities
as TensorFlow for every batch size, one interpreter at a time, and TensorFlow kept whenever Lite cannot be trusted."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from atelier import lite_runtime
from atelier.api import create_app
from atelier.api.settings import ApiSettings
from atelier.inference import DEFAULT_MAX_BATCH_SIZE, LITE_TOLERANCE, ServingModel
from atelier.labels import CLASSES
from tests.conftest import encode, textured_rgb


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 64, 64, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def both(saved_model):
    """The same saved CNN served by TensorFlow and by TensorFlow Lite."""
    path, _ = saved_model
    return ServingModel.load(path, runtime="tensorflow"), ServingModel.load(path, runtime="tflite")


def test_lite_gives_tensorflows_probabilities_for_every_batch_size(both):
    reference, lite = both
    assert (reference.runtime, lite.runtime) == ("tensorflow", "tflite")
    for n in (1, 3, 16, 17):
        images = _images(n, seed=n)
        np.testing.assert_allclose(lite.run(images), reference.run(images), atol=LITE_TOLERANCE)


def test_the_chapter_3_transfer_model_runs_on_lite_too():
    from atelier.backbone import build_transfer_model

    model = build_transfer_model(CLASSES, augment=True)  # the augmentation layers are inactive at inference
    runner = lite_runtime.LiteRunner(model, DEFAULT_MAX_BATCH_SIZE)
    images = _images(4)
    np.testing.assert_allclose(runner(images), np.asarray(model(images, training=False)), atol=LITE_TOLERANCE)


def test_one_interpreter_at_a_time_from_many_threads(both):
    reference, lite = both
    batches = {n: _images(n, seed=10 + n) for n in (1, 2, 5, 8)}
    expected = {n: reference.run(images) for n, images in batches.items()}
    failures: list[str] = []

    def worker(n: int) -> None:
        for _ in range(20):
            if not np.allclose(lite.run(batches[n]), expected[n], atol=LITE_TOLERANCE):
                failures.append(f"lot de {n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in batches for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_tensorflow_serves_when_the_conversion_fails(saved_model, monkeypatch, caplog):
    def refuse(model):
        raise lite_runtime.LiteError("conversion en TensorFlow Lite impossible (ConverterError)")

    monkeypatch.setattr(lite_runtime, "convert", refuse)
    with caplog.at_level(logging.WARNING, logger="atelier.inference"):
        serving = ServingModel.load(saved_model[0], runtime="tflite")
    assert serving.runtime == "tensorflow" and serving.run(_images(2)).shape == (2, len(CLASSES))
    assert "conversion en TensorFlow Lite impossible" in caplog.text and "TensorFlow le sert" in caplog.text


def test_tensorflow_serves_when_lite_disagrees(saved_model, monkeypatch, caplog):
    real_call = lite_runtime.LiteRunner.__call__
    monkeypatch.setattr(lite_runtime.LiteRunner, "__call__", lambda self, images: real_call(self, images) + 0.01)
    with caplog.at_level(logging.WARNING, logger="atelier.inference"):
        serving = ServingModel.load(saved_model[0], runtime="tflite")
    assert serving.runtime == "tensorflow"
    assert "s'écarte de TensorFlow" in caplog.text


def test_unknown_runtime_is_refused_in_french(saved_model, monkeypatch):
    with pytest.raises(ValueError, match="Moteur d'inférence inconnu : onnx"):
        ServingModel.load(saved_model[0], runtime="onnx")
    monkeypatch.setenv("ATELIER_INFERENCE_RUNTIME", "onnx")
    with pytest.raises(ValueError, match="ATELIER_INFERENCE_RUNTIME est invalide : tensorflow ou tflite"):
        ApiSettings.from_env()


def test_the_api_serves_and_swaps_with_lite(saved_model, tmp_path):
    """create_app(inference_runtime="tflite"): predictions, and a replacement model loaded with Lite too."""
    path, _ = saved_model
    app = create_app(path, db_path=":memory:", inference_runtime="tflite")
    with TestClient(app) as client:
        predictor = app.state.atelier.predictor
        assert predictor.current.runtime == "tflite"
        response = client.post("/predict", files={"file": ("a.png", encode(textured_rgb(), "PNG"))})
        assert response.status_code == 200 and response.json()["label"] in CLASSES
        _, new = predictor.replace(path)
        assert new.runtime == "tflite" and predictor.current is new


def test_a_lite_failure_while_serving_falls_back_to_tensorflow(saved_model, caplog):
    """The day tf.lite.Interpreter is gone (or an interpreter cannot be allocated): TensorFlow answers, same numbers."""
    serving = ServingModel.load(saved_model[0], runtime="tflite")
    expected = ServingModel.load(saved_model[0]).run(_images(2))

    def broken(images):
        raise lite_runtime.LiteError("TensorFlow Lite n'a pas pu calculer ce lot (AttributeError : plus de tf.lite)")

    serving._lite = broken
    with caplog.at_level(logging.WARNING, logger="atelier.inference"):
        np.testing.assert_allclose(serving.run(_images(2)), expected, atol=1e-6)
    assert serving.runtime == "tensorflow" and "TensorFlow le sert désormais" in caplog.text


def test_a_model_keeps_at_most_one_interpreter_per_batch_size_up_to_16(both):
    """A batch larger than the server's (the swap check's real images, an evaluation) goes through in slices."""
    reference, lite = both
    images = _images(40, seed=3)
    np.testing.assert_allclose(lite.run(images), reference.run(images), atol=LITE_TOLERANCE)
    assert max(shape[0] for shape in lite._lite._interpreters) <= DEFAULT_MAX_BATCH_SIZE
