"""Explanations, feedback and erasure through the API (TestClient): shapes, French 4xx, /docs statuses."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atelier.api import create_app
from atelier.api.schemas import DeletedOut, ExplanationOut, FeedbackOut, HistoryOut
from atelier.image_store import find_image
from atelier.labels import CLASSES
from tests.conftest import encode, textured_rgb


@pytest.fixture(scope="module")
def stored(saved_model, tmp_path_factory):
    """A client whose server keeps the images, and the images folder."""
    path, _ = saved_model
    images = tmp_path_factory.mktemp("images")
    app = create_app(path, db_path=tmp_path_factory.mktemp("hist") / "h.sqlite3", store_images_dir=images)
    with TestClient(app) as client:
        yield client, images


@pytest.fixture(scope="module")
def plain(saved_model):
    """A client whose server keeps no image."""
    path, _ = saved_model
    with TestClient(create_app(path, db_path=":memory:")) as client:
        yield client


def _predict(client, seed: int = 0) -> dict:
    response = client.post("/predict", files={"file": ("tuile.png", encode(textured_rgb(seed=seed), "PNG"))})
    assert response.status_code == 200
    body = response.json()
    # The page offers the feedback buttons only when the answer says the image is kept.
    assert body["image_stored"] is (client.app.state.atelier.settings.store_images_dir is not None)
    return body


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _french(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    for word in words:
        assert word in body["detail"], body["detail"]
    return body["detail"]


def test_explain_json_matches_predict(stored):
    client, _ = stored
    data = encode(textured_rgb(seed=5), "PNG")
    predicted = client.post("/predict", files={"file": ("a.png", data)}).json()
    response = client.post("/explain", files={"file": ("a.png", data)})
    assert response.status_code == 200
    body = ExplanationOut.model_validate(response.json())  # extra="forbid": the shape /docs describes
    assert body.label == predicted["label"] and body.model_version == predicted["model_version"]
    assert body.probabilities == pytest.approx(predicted["probabilities"], abs=1e-5)
    assert response.headers["X-Model-Version"] == body.model_version
    assert body.prediction_id is None and body.recorded_model_version is None
    overlay, raw = _png(base64.b64decode(body.heatmap.overlay_png)), _png(base64.b64decode(body.heatmap.map_png))
    assert overlay.size == (256, 256) and overlay.mode == "RGB"
    assert raw.size == (64, 64) and raw.mode == "L" and body.heatmap.size == [64, 64]
    heat = np.array(body.heatmap.map)
    assert heat.shape == (64, 64) and heat.min() >= 0 and heat.max() <= 1
    assert np.abs(np.asarray(raw, dtype=float) / 255 - heat).max() < 0.01  # the PNG is the same map
    # /explain adds nothing to the history.
    assert client.get("/predictions").json()["items"][0]["id"] == predicted["prediction_id"]


def test_explain_png_and_bad_inputs(stored):
    client, _ = stored
    response = client.post("/explain", params={"format": "png"}, files={"file": ("a.jpg", encode(textured_rgb()))})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert _png(response.content).size == (256, 256) and response.headers["X-Model-Version"]
    _french(client.post("/explain", files={"file": ("a.jpg", b"")}), 400)
    _french(client.post("/explain", files={"file": ("a.txt", b"pas une image du tout")}), 415)
    _french(client.post("/explain"), 422, "file")
    bad_format = client.post("/explain", params={"format": "gif"}, files={"file": ("a.jpg", encode(textured_rgb()))})
    _french(bad_format, 422, "json, png ou carte")


def test_explanation_of_a_stored_prediction(stored):
    client, images = stored
    predicted = _predict(client, seed=7)
    pid = predicted["prediction_id"]
    response = client.get(f"/predictions/{pid}/explanation")
    assert response.status_code == 200
    body = ExplanationOut.model_validate(response.json())
    assert body.prediction_id == pid and body.recorded_model_version == predicted["model_version"]
    assert body.label == predicted["label"]
    png = client.get(f"/predictions/{pid}/explanation", params={"format": "png"})
    assert png.headers["content-type"] == "image/png" and png.content == base64.b64decode(body.heatmap.overlay_png)
    raw = client.get(f"/predictions/{pid}/explanation", params={"format": "carte"})
    assert raw.headers["content-type"] == "image/png" and raw.content == base64.b64decode(body.heatmap.map_png)
    assert raw.headers["X-Model-Version"] == body.model_version
    _french(client.get("/predictions/999999/explanation"), 404, "999999")
    _french(client.get("/predictions/abc/explanation"), 422, "prediction_id")
    # The image erased from the folder (retention): a clear 409, not a 500.
    item = client.get("/predictions").json()["items"][0]
    find_image(images, item["image_sha256"]).unlink()
    _french(client.get(f"/predictions/{pid}/explanation"), 409, f"prédiction {pid} n'est pas gardée", "POST /explain")


def test_explanation_needs_stored_images(plain):
    pid = _predict(plain)["prediction_id"]
    _french(plain.get(f"/predictions/{pid}/explanation"), 409, "--store-images DOSSIER", "POST /explain")


def test_feedback_right_and_wrong_and_filters(stored):
    client, _ = stored
    first, second, third = (_predict(client, seed=s) for s in (11, 12, 13))
    right = client.post(f"/predictions/{first['prediction_id']}/feedback", json={"label": first["label"]})
    assert right.status_code == 200
    body = FeedbackOut.model_validate(right.json())
    assert body.feedback_label == first["label"] and body.feedback_at and body.feedback_by is None
    assert body.id == first["prediction_id"] and body.feedback_comment is None
    other = next(c for c in CLASSES if c != second["label"])
    wrong = client.post(
        f"/predictions/{second['prediction_id']}/feedback", json={"label": other, "comment": "Vu sur place."}
    )
    assert wrong.json()["feedback_comment"] == "Vu sur place."
    ids = {
        name: [i["id"] for i in client.get("/predictions", params={"feedback": name}).json()["items"]]
        for name in ("wrong", "right", "none")
    }
    assert second["prediction_id"] in ids["wrong"] and first["prediction_id"] not in ids["wrong"]
    assert first["prediction_id"] in ids["right"] and second["prediction_id"] not in ids["right"]
    assert third["prediction_id"] in ids["none"] and first["prediction_id"] not in ids["none"]
    HistoryOut.model_validate(client.get("/predictions", params={"feedback": "wrong"}).json())
    _french(client.get("/predictions", params={"feedback": "faux"}), 422, "wrong, right ou none")


def test_feedback_errors_are_french(stored, plain):
    client, _ = stored
    pid = _predict(client)["prediction_id"]
    _french(client.post(f"/predictions/{pid}/feedback", json={"label": "forest"}), 422, "forêt, mer, désert, nuageux")
    _french(client.post("/predictions/999999/feedback", json={"label": "mer"}), 404, "999999")
    _french(client.post(f"/predictions/{pid}/feedback", json={"label": "mer", "comment": "x" * 501}), 422, "500")
    _french(client.post(f"/predictions/{pid}/feedback", json={}), 422, "label")
    _french(
        client.post(f"/predictions/{pid}/feedback", content=b"{", headers={"Content-Type": "application/json"}), 422
    )
    _french(client.post("/predictions/0/feedback", json={"label": "mer"}), 422, "prediction_id")


def test_feedback_without_a_stored_image_is_a_french_409(stored, plain):
    """A correction whose image is not kept could never serve a retraining: refused, nothing stored."""
    plain_id = _predict(plain)["prediction_id"]
    for label in ("mer", "forest"):  # even a bad label: the server says first that no feedback is possible
        _french(
            plain.post(f"/predictions/{plain_id}/feedback", json={"label": label}),
            409,
            "ne garde pas les images",
            "--store-images DOSSIER",
            "POST /predict",
        )
    assert plain.get("/predictions", params={"feedback": "none"}).json()["items"][0]["id"] == plain_id
    assert plain.get("/predictions", params={"feedback": "wrong"}).json()["total"] == 0
    _french(plain.post("/predictions/999999/feedback", json={"label": "mer"}), 404, "999999")
    # The image erased from the folder (or received before --store-images): the same 409, naming the prediction.
    client, images = stored
    pid = _predict(client, seed=14)["prediction_id"]
    row = next(i for i in client.get("/predictions").json()["items"] if i["id"] == pid)
    find_image(images, row["image_sha256"]).unlink()
    _french(
        client.post(f"/predictions/{pid}/feedback", json={"label": "mer"}), 409, f"prédiction {pid}", "POST /predict"
    )
    assert next(i for i in client.get("/predictions").json()["items"] if i["id"] == pid)["feedback_label"] is None


def test_feedback_records_the_key_label(saved_model, tmp_path):
    """The key name put in request.state by the API-key layer ends up in feedback_by."""
    path, _ = saved_model
    app = create_app(path, db_path=":memory:", store_images_dir=tmp_path)

    @app.middleware("http")
    async def name_the_key(request, call_next):
        request.state.key_label = "classe-b"
        return await call_next(request)

    with TestClient(app) as client:
        pid = _predict(client)["prediction_id"]
        assert client.post(f"/predictions/{pid}/feedback", json={"label": "mer"}).json()["feedback_by"] == "classe-b"


def test_delete_erases_the_row_and_its_image(stored):
    client, images = stored
    pid = _predict(client, seed=21)["prediction_id"]
    digest = client.get("/predictions").json()["items"][0]["image_sha256"]
    assert find_image(images, digest) is not None
    response = client.delete(f"/predictions/{pid}")
    assert response.status_code == 200
    assert DeletedOut.model_validate(response.json()) == DeletedOut(
        status="effacée", prediction_id=pid, image_deleted=True
    )
    assert find_image(images, digest) is None
    assert pid not in [i["id"] for i in client.get("/predictions", params={"limit": 500}).json()["items"]]
    _french(client.delete(f"/predictions/{pid}"), 404, str(pid))
    _french(client.post(f"/predictions/{pid}/feedback", json={"label": "mer"}), 404)
    _french(client.delete("/predictions/zero"), 422)


def test_openapi_documents_the_new_routes(stored):
    client, _ = stored
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/explain", "post"): {"200", "400", "401", "413", "415", "422", "501", "503"},
        ("/predictions/{prediction_id}/explanation", "get"): {"200", "401", "403", "404", "409", "422", "501", "503"},
        ("/predictions/{prediction_id}/feedback", "post"): {"200", "401", "403", "404", "409", "422"},
        ("/predictions/{prediction_id}", "delete"): {"200", "401", "403", "404", "422"},
        ("/predictions", "get"): {"200", "401", "422"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert set(operation["responses"]) == statuses, path
        assert operation["description"] and operation["summary"]
    assert "image/png" in paths["/explain"]["post"]["responses"]["200"]["content"]
    feedback_param = next(p for p in paths["/predictions"]["get"]["parameters"] if p["name"] == "feedback")
    assert "wrong" in feedback_param["description"]


def test_an_explanation_in_progress_does_not_block_predict(saved_model, monkeypatch):
    """While an explanation runs (held here by an event), /predict answers at once; a full pool gives 503."""
    from atelier.api import state as state_module

    path, _ = saved_model
    app = create_app(path, db_path=":memory:", max_explanations_waiting=0)
    release, started = threading.Event(), threading.Event()
    real = state_module.explain_image

    def slow_explain(serving, image):
        started.set()
        release.wait(30)
        return real(serving, image)

    monkeypatch.setattr(state_module, "explain_image", slow_explain)
    files = {"file": ("a.png", encode(textured_rgb(), "PNG"), "image/png")}

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            explaining = asyncio.create_task(client.post("/explain", files=files))
            assert await asyncio.to_thread(started.wait, 30)  # the explanation thread is busy
            begin = time.perf_counter()
            predicted = await asyncio.wait_for(client.post("/predict", files=files), timeout=20)
            elapsed = time.perf_counter() - begin
            assert predicted.status_code == 200 and not explaining.done()
            busy = await client.post("/explain", files=files)
            assert busy.status_code == 503 and busy.headers["Retry-After"]
            assert "explications" in busy.json()["detail"]
            release.set()
            assert (await explaining).status_code == 200
            assert elapsed < 5
            assert (await client.post("/explain", files=files)).status_code == 200  # the place is free again

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        app.state.atelier.explanations.close()


def test_the_chapter_3_transfer_model_is_explained(tmp_path):
    """The transfer model (chapter 3) nests its EuroSAT base: /explain walks into it (its last block, relu3)."""
    from atelier.backbone import build_transfer_model
    from atelier.model_io import save_model

    path = tmp_path / "transfert.keras"
    save_model(build_transfer_model(CLASSES, augment=False), path, classes=CLASSES, data_source="test", metrics={})
    with TestClient(create_app(path, db_path=":memory:")) as client:
        predicted = _predict(client)
        response = client.post("/explain", files={"file": ("tuile.png", encode(textured_rgb(seed=0), "PNG"))})
        assert response.status_code == 200, response.text
        body = ExplanationOut.model_validate(response.json())
        assert body.label == predicted["label"]
        assert body.heatmap.size == [64, 64] and _png(base64.b64decode(body.heatmap.overlay_png)).mode == "RGB"
        assert np.asarray(body.heatmap.map).max() == pytest.approx(1.0)


def test_a_model_grad_cam_cannot_walk_gets_a_french_501(tmp_path):
    """A model with a branch (a skip connection) is not a chain of layers: /explain says so, /predict works."""
    import keras
    from keras import layers

    from atelier.model_io import save_model

    inputs = keras.Input((64, 64, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    merged = layers.Add()([x, layers.Conv2D(3, 3, padding="same")(x)])
    outputs = layers.Dense(len(CLASSES), activation="softmax")(layers.GlobalAveragePooling2D()(merged))
    path = tmp_path / "branches.keras"
    save_model(keras.Model(inputs, outputs), path, classes=CLASSES, data_source="test", metrics={})
    with TestClient(create_app(path, db_path=":memory:")) as client:
        assert _predict(client)["label"] in CLASSES
        files = {"file": ("a.png", encode(textured_rgb(), "PNG"))}
        _french(client.post("/explain", files=files), 501, "Grad-CAM", "POST /predict fonctionne")
