"""The predictor: compiled call, micro-batching of concurrent requests, hot swap."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from atelier.inference import IncompatibleModelError, Predictor, PredictorUnavailableError, ServingModel
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


def test_a_prediction_calls_the_concrete_function_not_the_tf_function(serving, monkeypatch):
    """The tf.function's own call (argument binding, trace lookup) is skipped on every prediction."""
    from tensorflow.python.eager.polymorphic_function.polymorphic_function import Function

    def traced_call(*args, **kwargs):
        raise AssertionError("ServingModel.run went through tf.function.__call__")

    monkeypatch.setattr(Function, "__call__", traced_call)
    images = np.stack(_images(5)).astype(np.float32)
    expected = serving.info.model(images, training=False).numpy()
    for n in (1, 2, 5):  # one concrete function for every batch size: no new trace either
        np.testing.assert_allclose(serving.run(images[:n]), expected[:n], rtol=1e-5, atol=1e-6)


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
    for result, row in zip(results, alone, strict=True):
        np.testing.assert_allclose(result.probabilities, row, rtol=1e-4, atol=1e-6)
        assert result.model_version == serving.version


def test_a_lone_image_is_run_at_once_by_the_thread_that_submits_it(serving):
    """No batch in the network, nothing queued, no batch window: no hand-off to the batcher's thread."""
    threads: list[str] = []

    class Spy:
        info, version, classes, image_size = serving.info, serving.version, serving.classes, serving.image_size

        @staticmethod
        def run(images):
            threads.append(threading.current_thread().name)
            return serving.run(images)

    image = _images(1)[0]
    expected = serving.run(image[np.newaxis].astype(np.float32))[0]
    for wait_ms, runner in ((0, threading.current_thread().name), (2, "atelier-batcher")):
        predictor = Predictor(Spy(), batching=True, max_batch_size=8, batch_wait_ms=wait_ms)  # type: ignore[arg-type]
        try:
            for _ in range(3):
                np.testing.assert_allclose(predictor.predict_array(image).probabilities, expected, rtol=1e-5)
        finally:
            predictor.close()
        # With a batch window, a lone image still waits for company in the batcher's thread.
        assert threads == [runner] * 3, (wait_ms, threads)
        threads.clear()


def test_replace_refuses_bad_or_incompatible_models_and_keeps_serving(serving, tmp_path):
    from atelier.model import build_cnn
    from atelier.model_io import save_model

    predictor = Predictor(serving, batching=False)
    with pytest.raises(ModelFileError):
        predictor.replace(tmp_path / "absent.keras")
    three = tmp_path / "trois.keras"
    save_model(build_cnn(["a", "b", "c"], 64, augment=False), three, classes=["a", "b", "c"], data_source="test")
    with pytest.raises(IncompatibleModelError, match="classes"):
        predictor.replace(three)
    with pytest.raises(IncompatibleModelError):  # swap() checks too: no caller can bypass the rule
        predictor.swap(ServingModel.load(three))
    assert predictor.current is serving
    old, new = predictor.replace(serving.info.path)
    assert old is serving and predictor.current is new and new is not serving
    assert predictor.predict_array(_images(1)[0]).model_version == serving.version


def test_replacements_are_serialised_by_the_predictor(serving, monkeypatch):
    """Check-then-swap runs under the predictor's own lock: two replacements never overlap."""
    inside, overlaps = [], []
    real_load = ServingModel.load

    def slow_load(path, **options):
        inside.append(path)
        if len(inside) > 1:
            overlaps.append(path)
        time.sleep(0.2)
        try:
            return real_load(path, **options)
        finally:
            inside.pop()

    monkeypatch.setattr(ServingModel, "load", staticmethod(slow_load))
    predictor = Predictor(serving, batching=False)
    with ThreadPoolExecutor(3) as pool:
        results = [f.result(60) for f in [pool.submit(predictor.replace, serving.info.path) for _ in range(3)]]
    assert not overlaps
    # Each replacement replaced the model installed by the previous one.
    chain = [old for old, _ in results] + [results[-1][1]]
    assert {id(old) for old, _ in results[1:]} == {id(new) for _, new in results[:-1]}
    assert len({id(m) for m in chain}) == 4


class _PausingQueue:
    """Wraps the batcher's queue: the first image put waits for *on_first_put* (a concurrent stop)."""

    def __init__(self, inner, on_first_put):
        self._inner = inner
        self._on_first_put = on_first_put

    def put(self, item):
        if item is not None and self._on_first_put is not None:
            hook, self._on_first_put = self._on_first_put, None
            hook()
        self._inner.put(item)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_request_submitted_while_stopping_fails_fast(serving):
    """stop() between submit's check and its enqueue must not leave the request waiting 120 s."""
    # A batch window: the image is queued for the batcher's thread (an idle batcher would run it at once).
    predictor = Predictor(serving, batching=True, max_batch_size=4, batch_wait_ms=1)
    batcher = predictor._get_batcher()
    stopper = threading.Thread(target=batcher.stop)

    def stop_now():
        stopper.start()
        stopper.join(0.5)  # with the fix, stop() waits for this submit to finish enqueueing

    batcher._queue = _PausingQueue(batcher._queue, stop_now)
    start = time.monotonic()
    future = batcher.submit(_images(1)[0])
    try:
        outcome = future.result(timeout=5)
        assert outcome.model_version == serving.version  # queued before the stop marker: served
    except PredictorUnavailableError as exc:  # or refused at once, in French
        assert "réessayez" in str(exc)
    assert time.monotonic() - start < 5
    stopper.join(5)
    with pytest.raises(PredictorUnavailableError, match="réessayez"):
        batcher.submit(_images(1)[0])
    predictor.close()


def test_batcher_queue_is_bounded(serving):
    gate, running = threading.Event(), threading.Event()

    class Blocked:
        info, version, classes, image_size = serving.info, serving.version, serving.classes, serving.image_size

        @staticmethod
        def run(images):
            running.set()
            gate.wait(10)
            return serving.run(images)

    predictor = Predictor(Blocked(), batching=True, max_batch_size=1, max_queued=2)  # type: ignore[arg-type]
    image = _images(1)[0]
    try:
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(predictor.predict_array, image)
            assert running.wait(10)  # the first image is in the network, two more may wait
            waiting = [pool.submit(predictor.predict_array, image) for _ in range(2)]
            deadline = time.monotonic() + 5
            while predictor._get_batcher().waiting < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            start = time.monotonic()
            with pytest.raises(PredictorUnavailableError, match="surchargé"):
                predictor.predict_array(image)
            assert time.monotonic() - start < 1, "refused at once, not after a wait"
            gate.set()
            assert [f.result(10).model_version for f in [first, *waiting]] == [serving.version] * 3
    finally:
        gate.set()
        predictor.close()


def test_encoded_images_are_decoded_by_the_batcher_and_their_failures_stay_theirs(serving):
    """An image queued still encoded is decoded in the batcher's thread, never in the caller's (the event
    loop), with the image size of the batch's model; a decoding error goes to its own request only, and an
    image handed to another thread (``None``) gets no answer from this batch."""
    import asyncio

    from atelier.inference import LoopTarget
    from atelier.preprocessing import CorruptImageError

    image = _images(1)[0]
    expected = serving.run(image[np.newaxis].astype(np.float32))[0]
    calls: list[tuple[str, str, int]] = []

    def good(size: int) -> np.ndarray:
        calls.append(("bonne", threading.current_thread().name, size))
        return image

    def damaged(size: int) -> np.ndarray:
        calls.append(("abîmée", threading.current_thread().name, size))
        raise CorruptImageError("Image illisible.")

    def elsewhere(size: int) -> None:
        calls.append(("ailleurs", threading.current_thread().name, size))
        return None

    async def scenario(predictor: Predictor) -> None:
        loop = asyncio.get_running_loop()
        targets = [LoopTarget(loop, loop.create_future()) for _ in range(4)]
        for decode, target in zip((good, damaged, elsewhere, good), targets, strict=True):
            predictor.submit_encoded_to_loop(decode, target)
        for target in (targets[0], targets[3]):
            result = await asyncio.wait_for(target.future, 10)
            np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-6)
        with pytest.raises(CorruptImageError):
            await asyncio.wait_for(targets[1].future, 10)
        await asyncio.sleep(0.1)
        assert not targets[2].future.done()  # its decoding thread will answer it, not this batch

    predictor = Predictor(serving, batching=True, max_batch_size=8, batch_wait_ms=0)
    try:
        asyncio.run(scenario(predictor))
    finally:
        predictor.close()
    assert sorted(name for name, _, _ in calls) == ["abîmée", "ailleurs", "bonne", "bonne"]
    assert {(thread, size) for _, thread, size in calls} == {("atelier-batcher", serving.image_size)}

    unbatched = Predictor(serving, batching=False)
    try:
        with pytest.raises(ValueError, match="regroupement"):
            unbatched.submit_encoded_to_loop(good, None)  # type: ignore[arg-type]
    finally:
        unbatched.close()
