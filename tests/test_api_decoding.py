"""Where ``POST /predict`` decodes an upload: small sequential JPEGs in the batcher's thread, everything else
in a decoding thread (a batch must never wait for a long decoding).

Both paths must give the answer of the workshop's preprocessing (``load_image``) and the same errors.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atelier.api import create_app, state
from atelier.api.state import BATCHER_DECODE_BYTES, BATCHER_DECODE_PIXELS, ApiState
from atelier.preprocessing import load_image, quick_to_decode, read_header
from tests.conftest import encode, textured_rgb

BATCHER, DECODER = "atelier-batcher", "atelier-decodage"


@pytest.fixture(scope="module")
def client(saved_model):
    with TestClient(create_app(saved_model[0], db_path=":memory:")) as http:
        yield http


def _uploads() -> dict[str, tuple[bytes, str]]:
    """Name → (bytes, thread expected to decode them)."""
    uploads = {
        "tuile": (encode(textured_rgb(64)), BATCHER),  # the workshop's usual tile
        "tuile-256": (encode(textured_rgb(256, seed=2)), BATCHER),
        # A few bytes, but a sequential JPEG announcing 1024×1024: reduce-on-load still reads every pixel.
        "annoncee-grande": (encode(Image.new("RGB", (1024, 1024), (30, 90, 160))), DECODER),
        # A progressive JPEG can repeat its refinement scans thousands of times within 64 KiB.
        "progressive": (encode(textured_rgb(64, seed=3), progressive=True), DECODER),
        "png": (encode(textured_rgb(64, seed=4), "PNG"), DECODER),  # compressed chunks may hide in the header
        "lourde": (encode(textured_rgb(256, seed=1), quality=100, subsampling=0), DECODER),  # > 64 KiB
    }
    assert len(uploads["tuile-256"][0]) <= BATCHER_DECODE_BYTES < len(uploads["lourde"][0])
    assert 1024 * 1024 > BATCHER_DECODE_PIXELS >= 256 * 256
    return uploads


def test_only_small_sequential_jpegs_are_quick_to_decode():
    quick = {"tuile", "tuile-256", "lourde"}  # « lourde » is quick to decode, but too many bytes to parse here
    for name, (data, _) in _uploads().items():
        image = read_header(data, 64)
        assert quick_to_decode(image, BATCHER_DECODE_PIXELS) == (name in quick), name
        assert load_image(image, 64).shape == (64, 64, 3)  # the opened header still decodes as usual


def test_each_upload_is_decoded_where_expected_and_answers_as_load_image(client, monkeypatch):
    threads: list[str] = []
    original = ApiState._decode

    def spy(self, data, size):
        threads.append(threading.current_thread().name)
        return original(self, data, size)

    headers: list[str] = []  # threads that read a header before choosing (only the batcher does)

    def header_spy(*args, **kwargs):
        headers.append(threading.current_thread().name)
        return read_header(*args, **kwargs)

    monkeypatch.setattr(ApiState, "_decode", spy)
    monkeypatch.setattr(state, "read_header", header_spy)
    predictor = client.app.state.atelier.predictor
    for name, (data, thread) in _uploads().items():
        threads.clear(), headers.clear()
        response = client.post("/predict", files={"file": (f"{name}.img", data)})
        assert response.status_code == 200, response.text
        assert len(threads) == 1 and threads[0].startswith(thread), (name, threads)
        # Only small JPEGs reach the batcher, even to have their header read (a PNG's may hide compressed chunks).
        small_jpeg = data.startswith(b"\xff\xd8\xff") and len(data) <= BATCHER_DECODE_BYTES
        assert headers == ([BATCHER] if small_jpeg else []), (name, headers)
        expected = predictor.predict_array(load_image(data, predictor.current.image_size)).as_dict()
        got = response.json()["probabilities"]
        np.testing.assert_allclose([got[c] for c in expected], list(expected.values()), atol=1e-5)


@pytest.mark.parametrize(
    "damaged",
    [
        encode(textured_rgb(64))[:900],  # cut in the middle of its pixels
        encode(textured_rgb(64))[:200],  # cut in its header
        b"\xff\xd8\xff" + b"\x00" * 500,  # a JPEG signature, nothing else
    ],
)
def test_a_damaged_jpeg_gets_the_same_french_error_from_both_paths(client, monkeypatch, damaged):
    batcher = client.post("/predict", files={"file": ("image.jpg", damaged)})
    monkeypatch.setattr(state, "BATCHER_DECODE_BYTES", -1)  # every upload through a decoding thread
    decoder = client.post("/predict", files={"file": ("image.jpg", damaged)})
    assert batcher.status_code == decoder.status_code and batcher.status_code in (415, 422), batcher.text
    assert batcher.json() == decoder.json()
    assert "illisible" in batcher.json()["detail"] or "Format" in batcher.json()["detail"]


def test_a_stopped_app_creates_no_decoding_thread_and_answers_503_until_it_serves_again(saved_model):
    """Shutdown: an image arriving late, or handed to the decoding threads by the batcher, gets a 503 and
    recreates no thread pool (nobody would close it); the same app serving again decodes as before."""
    import asyncio

    from atelier.inference import PredictorUnavailableError

    def workers() -> set[threading.Thread]:  # other tests' apps may still have theirs
        return {t for t in threading.enumerate() if t.name.startswith((DECODER, BATCHER))} - before

    before: set[threading.Thread] = set()
    before = workers()
    app = create_app(saved_model[0], db_path=":memory:")
    progressive = encode(textured_rgb(64, seed=3), progressive=True)  # decoded in a decoding thread
    with TestClient(app) as http:
        assert http.post("/predict", files={"file": ("p.jpg", progressive)}).status_code == 200
    api = app.state.atelier
    assert api._decode_pool is None and api.predictor._batcher is None
    with pytest.raises(PredictorUnavailableError, match="s'arrête"):
        asyncio.run(api.predict_bytes(progressive, "p.jpg"))
    with pytest.raises(PredictorUnavailableError, match="s'arrête"):  # the batcher's hand-off
        api._decode_small(api.predictor, progressive, None, 64)
    assert api._decode_pool is None and api.predictor._batcher is None
    assert not workers()
    with TestClient(app) as http:
        response = http.post("/predict", files={"file": ("p.jpg", progressive)})
        assert response.status_code == 200, response.text
    assert api._decode_pool is None
    assert not workers()


def test_an_app_stopping_between_the_choice_of_a_pool_and_its_use_answers_503(client, monkeypatch):
    """The decoding threads shut down just after ``_decoder()`` returned them: a French 503, not a 500."""
    from concurrent.futures import ThreadPoolExecutor

    api = client.app.state.atelier

    def stopping_now() -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(1)
        pool.shutdown()
        api._closing = True  # what close_decoder() does, at the worst moment
        return pool

    monkeypatch.setattr(api, "_decoder", stopping_now)
    try:
        response = client.post("/predict", files={"file": ("p.jpg", encode(textured_rgb(64), progressive=True))})
    finally:
        api._closing = False
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "Le service s'arrête : réessayez dans un instant."}
    assert response.headers["retry-after"]


def test_the_explanation_pool_creates_no_thread_once_closed_and_serves_again_when_opened():
    import asyncio

    from atelier.api.explanation_pool import ExplanationPool
    from atelier.inference import PredictorUnavailableError

    pool = ExplanationPool()
    assert asyncio.run(pool.run(threading.current_thread)).name.startswith("atelier-explication")
    pool.close()
    with pytest.raises(PredictorUnavailableError, match="s'arrête"):
        asyncio.run(pool.run(threading.current_thread))
    assert pool._executor is None and pool.pending == 0
    pool.open()
    assert asyncio.run(pool.run(threading.current_thread)).name.startswith("atelier-explication")
    pool.close()
