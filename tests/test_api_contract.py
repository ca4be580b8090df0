"""The HTTP contract of the API (TestClient): shapes, history, errors in French, /docs, API key, CORS."""

from __future__ import annotations

import json
import math
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atelier.api import ApiSettings, create_app, create_app_from_env
from atelier.history import History, sanitize_filename
from tests.conftest import encode, textured_rgb

KEY = "cle-secrete-de-test-0123456789"


@pytest.fixture(scope="module")
def app(saved_model, tmp_path_factory):
    path, _ = saved_model
    return create_app(path, db_path=tmp_path_factory.mktemp("hist") / "h.sqlite3")


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def keyed_client(saved_model, tmp_path_factory):
    path, _ = saved_model
    keyed = create_app(path, api_key=KEY, db_path=":memory:", cors_origins=("https://exemple.fr",))
    with TestClient(keyed) as test_client:
        yield test_client


def _post(client, data: bytes, name: str = "image.jpg", **kwargs):
    return client.post("/predict", files={"file": (name, data, "image/jpeg")}, **kwargs)


def _is_french_error(response) -> bool:
    body = response.json()
    return set(body) == {"detail"} and isinstance(body["detail"], str) and len(body["detail"]) > 10


def test_predict_contract(client, saved_model):
    _, metadata = saved_model
    response = _post(client, encode(textured_rgb()))
    assert response.status_code == 200
    body = response.json()
    assert {"label", "probabilities", "model_version", "prediction_id"} <= set(body)
    assert list(body["probabilities"]) == metadata["classes"]  # labels and order come from the metadata
    assert body["label"] in metadata["classes"]
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert all(isinstance(p, float) and 0 <= p <= 1 for p in body["probabilities"].values())
    assert math.isclose(sum(body["probabilities"].values()), 1.0, abs_tol=1e-4)
    assert body["model_version"] == metadata["version"]
    assert isinstance(body["prediction_id"], int) and body["prediction_id"] >= 1
    assert body["confidence"] == body["probabilities"][body["label"]]
    assert body["duration_ms"] > 0


def test_same_image_same_answer_and_increasing_ids(client):
    data = encode(textured_rgb(seed=3))
    first, second = _post(client, data).json(), _post(client, data).json()
    assert first["probabilities"] == pytest.approx(second["probabilities"], abs=1e-6)
    assert second["prediction_id"] == first["prediction_id"] + 1


def test_health_and_model(client, saved_model):
    _, metadata = saved_model
    assert client.get("/health").json() == {"status": "ok", "ready": True, "model_version": metadata["version"]}
    model = client.get("/model").json()
    assert model["version"] == metadata["version"]
    assert model["classes"] == metadata["classes"]
    assert model["image_size"] == 64


def test_history_newest_first_with_pagination(client):
    ids = [_post(client, encode(textured_rgb(seed=s)), name=f"img{s}.png").json()["prediction_id"] for s in range(5)]
    page = client.get("/predictions", params={"limit": 2}).json()
    assert page["total"] >= 5 and page["limit"] == 2 and page["offset"] == 0
    assert [item["id"] for item in page["items"]] == ids[::-1][:2]
    second = client.get("/predictions", params={"limit": 2, "offset": 2}).json()
    assert [item["id"] for item in second["items"]] == ids[::-1][2:4]
    item = page["items"][0]
    assert item["filename"] == "img4.png"
    assert len(item["image_sha256"]) == 64 and item["created"].endswith("+00:00")
    assert set(item["probabilities"]) == set(client.get("/model").json()["classes"])
    assert item["duration_ms"] > 0
    beyond = client.get("/predictions", params={"offset": 10**6}).json()
    assert beyond["items"] == [] and beyond["total"] == page["total"]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"limit": "dix"}, {"offset": -1}, {"offset": "x"}, {"limit": 1.5}],
)
def test_history_bad_parameters_are_french_422(client, params):
    response = client.get("/predictions", params=params)
    assert response.status_code == 422
    assert _is_french_error(response)
    assert "invalide" in response.json()["detail"]


def test_unknown_route_and_method_in_french(client):
    missing = client.get("/nexiste-pas")
    assert missing.status_code == 404 and "introuvable" in missing.json()["detail"]
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and "non autorisée" in wrong.json()["detail"]
    static = client.get("/static/absent.js")
    assert static.status_code == 404 and _is_french_error(static)


def test_placeholder_page_in_french(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'lang="fr"' in response.text and "chapitre 5" in response.text


def _referenced_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
@pytest.mark.parametrize("which", ["client", "keyed_client"])
def test_docs_pages_work_offline(page, which, request):
    """Swagger UI and ReDoc come from the server itself, never from a CDN (offline classrooms)."""
    http = request.getfixturevalue(which)
    response = http.get(page)
    assert response.status_code == 200
    urls = [u for pair in _referenced_urls(response.text) for u in pair if u]
    assert urls, "the page references its scripts"
    for url in urls:
        assert not url.startswith(("http://", "https://", "//")), f"external resource in {page}: {url}"
        asset = http.get(url)
        assert asset.status_code == 200, url
    assert any(u.endswith((".js",)) for u in urls)


def test_docs_and_openapi_in_french(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    predict = schema["paths"]["/predict"]["post"]
    assert predict["summary"] == "Classer une image satellite"
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"200", "400", "413", "415", "422"} <= set(predict["responses"])
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            assert operation["summary"] and operation["description"]
            for response in operation["responses"].values():
                assert response["description"] not in ("Successful Response", "Validation Error")
    put = schema["paths"]["/model"]["put"]
    assert {"multipart/form-data", "application/json"} <= set(put["requestBody"]["content"])
    assert "HTTPValidationError" not in json.dumps(schema)
    assert set(schema["paths"]) == {
        "/health",
        "/health/ready",
        "/predict",
        "/predictions",
        "/predictions/{prediction_id}",
        "/explain",
        "/predictions/{prediction_id}/explanation",
        "/predictions/{prediction_id}/feedback",
        "/model",
        "/models",
        "/model/pin",
        "/metrics",
    }


def test_openapi_references_resolve(client):
    """Every $ref of openapi.json points to an existing schema (what a client generator needs)."""
    schema = client.get("/openapi.json").json()
    text = json.dumps(schema)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert refs
    for ref in refs:
        node = schema
        for key in ref.removeprefix("#/").split("/"):
            node = node[key]
        assert isinstance(node, dict)


def test_api_key_protects_all_but_public_routes(keyed_client):
    data = encode(textured_rgb())
    for method, url, kwargs in (
        ("post", "/predict", {"files": {"file": ("a.jpg", data)}}),
        ("get", "/predictions", {}),
        ("get", "/model", {}),
        ("put", "/model", {"params": {"reload": "true"}}),
        ("get", "/nexiste-pas", {}),
    ):
        missing = getattr(keyed_client, method)(url, **kwargs)
        assert missing.status_code == 401, url
        assert "manquante" in missing.json()["detail"]
        wrong = getattr(keyed_client, method)(url, headers={"X-API-Key": "mauvaise"}, **kwargs)
        assert wrong.status_code == 401 and "invalide" in wrong.json()["detail"]
    for url in ("/health", "/docs", "/openapi.json", "/"):
        assert keyed_client.get(url).status_code == 200, url
    ok = keyed_client.post("/predict", files={"file": ("a.jpg", data)}, headers={"X-API-Key": KEY})
    assert ok.status_code == 200
    assert keyed_client.get("/predictions", headers={"X-API-Key": KEY}).json()["total"] == 1
    schema = keyed_client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["CleAPI"]["name"] == "X-API-Key"


def test_cors_preflight_allows_the_key_header(keyed_client):
    response = keyed_client.options(
        "/predict",
        headers={
            "Origin": "https://exemple.fr",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://exemple.fr"
    assert "x-api-key" in response.headers["access-control-allow-headers"].lower()
    # A 401 still carries the CORS header, so that a JavaScript client can read the French message.
    denied = keyed_client.get("/model", headers={"Origin": "https://exemple.fr"})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://exemple.fr"
    other = keyed_client.options(
        "/predict", headers={"Origin": "https://pirate.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_images_stored_only_when_configured(saved_model, tmp_path):
    path, _ = saved_model
    store = tmp_path / "images"
    data = encode(textured_rgb(), "PNG")
    with TestClient(create_app(path, db_path=":memory:", store_images_dir=store)) as stored:
        body = _post(stored, data, name="../../secret.png").json()
        item = stored.get("/predictions").json()["items"][0]
    files = list(store.iterdir())
    assert [f.name for f in files] == [f"{item['image_sha256']}.png"]
    assert files[0].read_bytes() == data and body["prediction_id"] == item["id"]
    assert not (tmp_path / "secret.png").exists()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\moi\\photo.png", "photo.png"),
        ("ima\x00ge\x1b[31m.jpg", "image[31m.jpg"),
        ("..", None),
        ("", None),
        (None, None),
        ("a" * 5000 + ".jpg", "a" * 115 + "….jpg"),
        ("\u202eexe.jpg", "exe.jpg"),
    ],
)
def test_sanitize_filename(raw, expected):
    assert sanitize_filename(raw) == expected


def test_history_is_thread_safe(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    history = History(tmp_path / "h.sqlite3")

    def add(i):
        return history.add(
            label="mer",
            probabilities={"mer": 1.0},
            model_version="v",
            image_sha256="0" * 64,
            filename=f"{i}.png",
            duration_ms=1.0,
        )

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(add, range(400)))
    assert sorted(ids) == list(range(1, 401))
    assert history.count() == 400
    mode = history._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    history.close()


def test_settings_from_env(monkeypatch, saved_model, tmp_path):
    path, metadata = saved_model
    monkeypatch.setenv("ATELIER_MODEL", str(path))
    monkeypatch.setenv("ATELIER_API_KEY", KEY)
    monkeypatch.setenv("ATELIER_DB", str(tmp_path / "env.sqlite3"))
    monkeypatch.setenv("ATELIER_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("ATELIER_CORS_ORIGINS", "https://a.fr, https://b.fr")
    monkeypatch.setenv("ATELIER_BATCHING", "0")
    options = ApiSettings.from_env()
    assert options.max_upload_bytes == 2 * 1024 * 1024
    assert options.cors_origins == ("https://a.fr", "https://b.fr")
    assert options.batching is False
    with TestClient(create_app_from_env()) as env_client:
        assert env_client.get("/model").status_code == 401
        response = _post(env_client, encode(textured_rgb()), headers={"X-API-Key": KEY})
        assert response.json()["model_version"] == metadata["version"]
    assert (tmp_path / "env.sqlite3").exists()
    monkeypatch.setenv("ATELIER_MAX_UPLOAD_MB", "beaucoup")
    with pytest.raises(ValueError, match="ATELIER_MAX_UPLOAD_MB"):
        ApiSettings.from_env()


def test_api_key_must_be_sendable_in_a_header(saved_model):
    path, _ = saved_model
    with pytest.raises(ValueError, match="clé d'API"):
        create_app(path, api_key="clé-accentuée", db_path=":memory:")


def test_missing_model_fails_fast_in_french(tmp_path):
    from atelier.model_io import ModelFileError

    with pytest.raises(ModelFileError, match="introuvable"):
        create_app(tmp_path / "absent.keras", db_path=":memory:")


def test_rgb_image_modes(client):
    """Sanity: PIL modes the hostile-input tests rely on are really produced by the encoder."""
    assert Image.open(__import__("io").BytesIO(encode(textured_rgb().convert("CMYK"), "JPEG"))).mode == "CMYK"


def test_uncertainty_is_off_by_default(client):
    body = client.post("/predict", files={"file": ("a.jpg", encode(textured_rgb()))}).json()
    assert "uncertain" not in body and "message" not in body


@pytest.mark.parametrize("threshold,uncertain", [(0.99, True), (0.01, False)])
def test_optional_je_ne_sais_pas(saved_model, threshold, uncertain):
    """With a threshold, /predict says when the model is not sure (the untrained model is near 25 %)."""
    app = create_app(saved_model[0], db_path=":memory:", uncertainty_threshold=threshold)
    with TestClient(app) as http:
        body = http.post("/predict", files={"file": ("a.jpg", encode(textured_rgb()))}).json()
    assert body["uncertain"] is uncertain
    assert body["label"] in body["probabilities"], "the most likely class is still given"
    if uncertain:
        assert body["message"].startswith("Je ne sais pas") and "99 %" in body["message"]
    else:
        assert "message" not in body


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2])
def test_uncertainty_threshold_must_be_a_probability(saved_model, bad):
    with pytest.raises(ValueError, match="entre 0 et 1"):
        create_app(saved_model[0], db_path=":memory:", uncertainty_threshold=bad)


def test_uncertainty_threshold_from_env(monkeypatch, saved_model):
    monkeypatch.setenv("ATELIER_MODEL", str(saved_model[0]))
    assert ApiSettings.from_env().uncertainty_threshold is None
    monkeypatch.setenv("ATELIER_UNCERTAINTY_THRESHOLD", "0.7")
    assert ApiSettings.from_env().uncertainty_threshold == 0.7


# --- every response has the shape /docs describes (schemas forbid extra fields) ---------------------------
def test_every_route_answers_with_its_documented_model(saved_model):
    """Real answers validated against the Pydantic models of /docs: a field added, renamed or dropped fails."""
    from atelier.api.schemas import ErrorOut, HealthOut, HistoryOut, ModelOut, ModelSwapOut, PredictionOut

    app = create_app(saved_model[0], db_path=":memory:", uncertainty_threshold=0.5)
    with TestClient(app) as http:
        predicted = _post(http, encode(textured_rgb()))
        assert predicted.status_code == 200
        PredictionOut.model_validate(predicted.json())
        HealthOut.model_validate(http.get("/health").json())
        ModelOut.model_validate(http.get("/model").json())
        HistoryOut.model_validate(http.get("/predictions").json())
        swapped = http.put("/model", params={"reload": "true"})
        assert swapped.status_code == 200
        ModelSwapOut.model_validate(swapped.json())
        for error in (_post(http, b""), http.get("/predictions", params={"limit": 0}), http.get("/absent")):
            ErrorOut.model_validate(error.json())
        operations = http.get("/openapi.json").json()["paths"]
    documented = {
        ("/predict", "post"): "PredictionOut",
        ("/health", "get"): "HealthOut",
        ("/model", "get"): "ModelOut",
        ("/model", "put"): "ModelSwapOut",
        ("/predictions", "get"): "HistoryOut",
    }
    for (path, method), name in documented.items():
        content = operations[path][method]["responses"]["200"]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{name}"}, (path, method)


def test_schemas_refuse_a_drifted_answer():
    """The check above can fail: an unknown or missing field is refused."""
    from pydantic import ValidationError

    from atelier.api.schemas import HealthOut

    with pytest.raises(ValidationError):
        HealthOut.model_validate({"status": "ok", "model_version": "v1", "extra": 1})
    with pytest.raises(ValidationError):
        HealthOut.model_validate({"status": "ok"})


def test_settings_objects_and_unknown_names(saved_model):
    settings = ApiSettings(saved_model[0], db_path=":memory:", api_key=KEY)
    with TestClient(create_app(settings, api_key=None)) as http:  # keywords override a settings object
        assert http.get("/model").status_code == 200
    with pytest.raises(TypeError, match="Réglage inconnu : max_upload"):
        create_app(saved_model[0], max_upload=3)
    with pytest.raises(ValueError, match="max_batch_size doit être un entier positif"):
        ApiSettings(saved_model[0], max_batch_size=0)
    with pytest.raises(ValueError, match="clé d'API") as info:
        ApiSettings(saved_model[0], api_key=" secret ")
    assert "secret" not in str(info.value), "a key is never repeated in an error"


def test_settings_from_env_errors_name_the_variable(monkeypatch, saved_model):
    monkeypatch.setenv("ATELIER_MODEL", str(saved_model[0]))
    for name, raw in (("ATELIER_MAX_BATCH", "0"), ("ATELIER_UNCERTAINTY_THRESHOLD", "1.5"), ("ATELIER_MAX_QUEUE", "x")):
        monkeypatch.setenv(name, raw)
        with pytest.raises(ValueError, match=name):
            ApiSettings.from_env()
        monkeypatch.delenv(name)
    assert ApiSettings.from_env().model_path == saved_model[0]


def test_predict_answers_503_in_french_when_the_predictor_cannot_take_the_image(saved_model, monkeypatch):
    """Stopping or overloaded predictor (atelier.inference.PredictorUnavailableError): 503 + Retry-After, no 500."""
    from atelier.inference import PredictorUnavailableError

    app = create_app(saved_model[0], db_path=":memory:")
    with TestClient(app) as http:

        class FullBatcher:  # what the batcher does when its queue is full or it is stopping
            def submit_to(self, image, target):
                raise PredictorUnavailableError("Le service est surchargé : réessayez dans un instant.")

        monkeypatch.setattr(app.state.atelier.predictor, "_get_batcher", FullBatcher)
        response = _post(http, encode(textured_rgb()))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert _is_french_error(response) and "réessayez" in response.json()["detail"]
