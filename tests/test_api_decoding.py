"""Where ``POST /predict`` decodes an upload: small ones in the batcher's thread, the others in a decoding thread.

Both paths must give the answer of the workshop's preprocessing (``load_image``) and the same errors.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atelier.api import create_app
from atelier.api.state import BATCHER_DECODE_BYTES, BATCHER_DECODE_PIXELS, ApiState
from atelier.preprocessing import load_image
from tests.conftest import encode, textured_rgb


@pytest.fixture(scope="module")
def client(saved_model):
    with TestClient(create_app(saved_model[0], db_path=":memory:")) as http:
        yield http


def _uploads() -> dict[str, tuple[bytes, str]]:
    """Name → (bytes, thread expected to decode them)."""
    tile = encode(textured_rgb(64))  # the workshop's usual tile
    wide = encode(Image.new("RGB", (400, 300), (30, 90, 160)), "PNG")  # few bytes, too many pixels
    heavy = encode(textured_rgb(256, seed=1), "PNG")  # few pixels, too many bytes
    assert len(tile) <= BATCHER_DECODE_BYTES and BATCHER_DECODE_PIXELS >= 64 * 64
    assert len(wide) <= BATCHER_DECODE_BYTES and BATCHER_DECODE_PIXELS < 400 * 300
    assert len(heavy) > BATCHER_DECODE_BYTES and BATCHER_DECODE_PIXELS >= 256 * 256
    return {
        "tuile": (tile, "atelier-batcher"),
        "large": (wide, "atelier-decodage"),
        "lourde": (heavy, "atelier-decodage"),
    }


def test_each_upload_is_decoded_where_expected_and_answers_as_load_image(client, monkeypatch):
    threads: list[str] = []
    original = ApiState._decode

    def spy(self, data, size):
        threads.append(threading.current_thread().name)
        return original(self, data, size)

    monkeypatch.setattr(ApiState, "_decode", spy)
    predictor = client.app.state.atelier.predictor
    for name, (data, thread) in _uploads().items():
        threads.clear()
        response = client.post("/predict", files={"file": (f"{name}.img", data)})
        assert response.status_code == 200, response.text
        assert len(threads) == 1 and threads[0].startswith(thread), (name, threads)
        expected = predictor.predict_array(load_image(data, predictor.current.image_size))
        got = response.json()["probabilities"]
        np.testing.assert_allclose([got[c] for c in expected.as_dict()], list(expected.as_dict().values()), atol=1e-5)


@pytest.mark.parametrize("name", ["tuile", "large"])
def test_a_damaged_upload_gets_the_same_french_error_on_both_paths(client, name):
    data, _ = _uploads()[name]
    response = client.post("/predict", files={"file": ("image", data[: len(data) // 2])})
    assert response.status_code == 422, response.text
    assert "illisible" in response.json()["detail"]


def test_a_small_file_announcing_too_many_pixels_is_refused_before_decoding(client):
    bomb = encode(Image.new("L", (5000, 5000)), "PNG")  # ≈ 25 KB, 25 Mpx
    assert len(bomb) <= BATCHER_DECODE_BYTES
    response = client.post("/predict", files={"file": ("bombe.png", bomb)})
    assert response.status_code == 413, response.text
    assert "trop grande" in response.json()["detail"]
