"""Roles of the API keys (inference / management), the keys file, security headers and French CORS refusals."""

from __future__ import annotations

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient

from atelier.api import create_app
from atelier.cli import main
from atelier.history import History
from atelier.keys import KeyRing, KeysFileError, add_key, key_digest, read_keys_file, revoke_key
from tests.conftest import encode, textured_rgb

LEARNER = "cle-eleve-0123456789"
ADMIN = "cle-prof-0123456789"


def _french(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"} and len(body["detail"]) > 10
    return body["detail"]


def _predict(http, key: str | None, name: str = "a.jpg"):
    headers = {"X-API-Key": key} if key else {}
    return http.post("/predict", files={"file": (name, encode(textured_rgb()), "image/jpeg")}, headers=headers)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    return tmp_path_factory.mktemp("cles") / "cles.json"


@pytest.fixture(scope="module")
def roles_client(saved_model, keys_file, tmp_path_factory):
    """An API with an inference key, a management key and a keys file (two learners); it keeps the images."""
    secrets = {label: add_key(keys_file, label, "inference") for label in ("eleve-01", "eleve-02")}
    app = create_app(
        saved_model[0], api_key=LEARNER, admin_key=ADMIN, keys_file=keys_file, db_path=":memory:",
        cors_origins=("https://exemple.fr",), store_images_dir=tmp_path_factory.mktemp("images-cles"),
    )  # fmt: skip
    with TestClient(app) as http:
        http.secrets = secrets  # type: ignore[attr-defined]
        yield http


def test_inference_key_predicts_but_cannot_manage(roles_client):
    assert _predict(roles_client, LEARNER).status_code == 200
    assert roles_client.get("/model", headers={"X-API-Key": LEARNER}).status_code == 200
    for method, url, kwargs in (
        ("put", "/model", {"params": {"reload": "true"}}),
        ("delete", "/model/pin", {}),
        ("post", "/models", {}),
        ("get", "/metrics", {}),
    ):
        response = getattr(roles_client, method)(url, headers={"X-API-Key": LEARNER}, **kwargs)
        detail = _french(response, 403)
        assert "clé de gestion" in detail and "cle-api" in detail and LEARNER not in detail
    assert _french(roles_client.put("/model", params={"reload": "true"}), 401).startswith("Clé d'API manquante")


def test_management_key_does_everything(roles_client):
    admin = {"X-API-Key": ADMIN}
    assert _predict(roles_client, ADMIN).status_code == 200
    assert roles_client.put("/model", params={"reload": "true"}, headers=admin).status_code == 200
    assert roles_client.get("/metrics", headers=admin).status_code == 200
    assert roles_client.get("/predictions", headers=admin).status_code == 200


def test_history_records_the_label_and_shows_a_learner_only_its_rows(roles_client):
    one, two = roles_client.secrets["eleve-01"], roles_client.secrets["eleve-02"]
    mine = [_predict(roles_client, one, f"un-{i}.jpg").json()["prediction_id"] for i in range(2)]
    theirs = _predict(roles_client, two, "deux.jpg").json()["prediction_id"]
    page = roles_client.get("/predictions", headers={"X-API-Key": one}).json()
    assert [item["id"] for item in page["items"]] == mine[::-1] and page["total"] == 2
    assert {item["key_label"] for item in page["items"]} == {"eleve-01"}
    everything = roles_client.get("/predictions", params={"limit": 500}, headers={"X-API-Key": ADMIN}).json()
    labels = {item["id"]: item["key_label"] for item in everything["items"]}
    assert labels[theirs] == "eleve-02" and labels[mine[0]] == "eleve-01"
    assert not any(secret in json.dumps(everything) for secret in (one, two, LEARNER, ADMIN))


def test_keys_file_revocation_without_restart(roles_client, keys_file):
    temporary = add_key(keys_file, "eleve-temporaire", "inférence")
    assert _predict(roles_client, temporary).status_code == 200  # a key added while the server runs
    revoke_key(keys_file, "eleve-temporaire")
    assert "invalide" in _french(_predict(roles_client, temporary), 401)
    assert _predict(roles_client, roles_client.secrets["eleve-01"]).status_code == 200  # the others still work
    text = keys_file.read_text(encoding="utf-8")
    assert roles_client.secrets["eleve-01"] not in text and key_digest(roles_client.secrets["eleve-01"]) in text


def test_half_written_keys_file_keeps_the_previous_keys(tmp_path):
    path = tmp_path / "cles.json"
    secret = add_key(path, "prof", "gestion")
    ring = KeyRing(keys_file=path)
    assert ring.identify(secret.encode()).manages
    path.write_text('{"cles": [', encoding="utf-8")
    assert ring.identify(secret.encode()) is not None, "a file being edited does not revoke everything"
    path.unlink()
    assert ring.identify(secret.encode()) is None, "no file: its keys are revoked"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pas du json", "JSON"),
        ('{"cles": [{"label": "a", "role": "inference"}]}', "sha256"),
        ('{"cles": [{"label": "a b", "role": "inference", "sha256": "' + "0" * 64 + '"}]}', "Étiquette"),
        ('{"cles": [{"label": "a", "role": "chef", "sha256": "' + "0" * 64 + '"}]}', "Rôle inconnu"),
        ('{"cles": [{"label": "a", "role": "gestion", "sha256": "zz"}]}', "hexadécimaux"),
    ],
)
def test_bad_keys_file_is_refused_in_french(tmp_path, saved_model, content, message):
    path = tmp_path / "cles.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KeysFileError, match=message):
        read_keys_file(path)
    with pytest.raises(ValueError, match=message):
        create_app(saved_model[0], keys_file=path, db_path=":memory:")


def test_cle_command_prints_the_key_once_and_stores_its_digest(tmp_path, capsys):
    path = tmp_path / "cles.json"
    assert main(["cle", "--keys-file", str(path), "--label", "prof", "--role", "gestion"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["role"] == "gestion" and "plus jamais affichée" in printed and result["cle"] in printed
    assert result["cle"] not in path.read_text(encoding="utf-8")
    assert read_keys_file(path)[0].digest == key_digest(result["cle"])
    assert main(["cle", "--keys-file", str(path), "--label", "prof"]) == 2  # duplicated label
    assert "existe déjà" in capsys.readouterr().err
    assert main(["cle", "--keys-file", str(path), "--revoquer", "prof"]) == 0
    assert read_keys_file(path) == []


def test_single_api_key_keeps_every_right(saved_model):
    """Without a management key (the notebooks' case) the one key still replaces the model, as before."""
    with TestClient(create_app(saved_model[0], api_key=LEARNER, db_path=":memory:")) as http:
        assert http.put("/model", params={"reload": "true"}, headers={"X-API-Key": LEARNER}).status_code == 200


def test_history_migrates_an_old_base(tmp_path):
    path = tmp_path / "ancien.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL, label TEXT "
            "NOT NULL, probabilities TEXT NOT NULL, model_version TEXT NOT NULL, image_sha256 TEXT NOT NULL, "
            "filename TEXT, duration_ms REAL NOT NULL)"
        )
        old.execute("INSERT INTO predictions VALUES (1, 't', 'mer', '{}', 'v', 'x', NULL, 1.0)")
    history = History(path)
    history.add(
        label="mer", probabilities={}, model_version="v", image_sha256="y", filename=None, duration_ms=1, key_label="k"
    )
    assert [item["key_label"] for item in history.page()[1]] == ["k", None]
    assert history.page(key_label="k")[0] == 1
    history.close()
    History(path).close()  # opening a migrated base again is fine


# --- headers ------------------------------------------------------------------------------------------------
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_security_headers_on_every_kind_of_answer(roles_client):
    answers = [
        roles_client.get("/health"),
        roles_client.get("/nexiste-pas", headers={"X-API-Key": ADMIN}),
        roles_client.get("/model"),  # 401
        roles_client.put("/model", params={"reload": "true"}, headers={"X-API-Key": LEARNER}),  # 403
        roles_client.post("/predict", content=b"x" * (11 * 1024 * 1024), headers={"X-API-Key": LEARNER}),  # 413
        roles_client.get("/static/app.js"),
        roles_client.get("/docs"),
        roles_client.get("/openapi.json"),
        roles_client.options(
            "/predict", headers={"Origin": "https://exemple.fr", "Access-Control-Request-Method": "POST"}
        ),
    ]
    assert [a.status_code for a in answers] == [200, 404, 401, 403, 413, 200, 200, 200, 200]
    for answer in answers:
        for name, value in SECURITY.items():
            assert answer.headers.get(name) == value, (answer.url, name)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], answer.url


def test_page_and_docs_have_a_content_security_policy_header(roles_client):
    page = roles_client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in page and "default-src 'self'" in page and "frame-ancestors 'none'" in page
    assert "unsafe-inline" not in page
    for url in ("/docs", "/redoc"):
        policy = roles_client.get(url).headers["content-security-policy"]
        assert "img-src 'self' data:" in policy and "frame-ancestors 'none'" in policy, url


def test_cors_refusal_is_french_json(roles_client):
    refused = roles_client.options(
        "/predict", headers={"Origin": "https://pirate.example", "Access-Control-Request-Method": "PATCH"}
    )
    detail = _french(refused, 400)
    assert "CORS" in detail and "origine https://pirate.example non autorisée" in detail and "PATCH" in detail
    assert "access-control-allow-origin" not in refused.headers
    assert refused.headers["x-content-type-options"] == "nosniff"


# --- what the OpenAPI promises is what the server does (the Schemathesis findings, one by one) ----------------
def test_405_lists_every_method_of_the_path(roles_client):
    response = roles_client.options("/model", headers={"X-API-Key": ADMIN})
    assert response.status_code == 405 and "OPTIONS" in response.json()["detail"]
    assert {"GET", "PUT"} <= set(response.headers["allow"].split(", "))


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"reload": "true"}, {"reload": {}}),  # the query parameter no longer hides an invalid body
        ({}, {}),
        ({}, {"reload": False}),
        ({}, {"reload": 1}),
        ({}, {"reload": True, "autre": 1}),
        ({}, [True]),
    ],
)
def test_put_model_json_body_is_exactly_what_the_schema_says(roles_client, params, body):
    response = roles_client.put("/model", params=params, json=body, headers={"X-API-Key": ADMIN})
    assert "corps" in _french(response, 400).lower()


def test_put_model_documents_its_statuses(roles_client):
    put = roles_client.get("/openapi.json").json()["paths"]["/model"]["put"]
    assert {"200", "400", "401", "403", "404", "409", "413", "415", "422"} <= set(put["responses"])
    variants = put["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [sorted(v["required"]) for v in variants] == [["reload"], ["version"]]
    assert all(v["additionalProperties"] is False for v in variants)


def test_a_learner_corrects_and_explains_only_its_own_predictions(roles_client):
    one, two = roles_client.secrets["eleve-01"], roles_client.secrets["eleve-02"]
    mine = _predict(roles_client, one).json()["prediction_id"]
    url = f"/predictions/{mine}"
    other = roles_client.post(url + "/feedback", json={"label": "mer"}, headers={"X-API-Key": two})
    assert "autre clé" in _french(other, 403)
    assert "autre clé" in _french(roles_client.get(url + "/explanation", headers={"X-API-Key": two}), 403)
    assert roles_client.get(url + "/explanation", headers={"X-API-Key": one}).json()["prediction_id"] == mine
    given = roles_client.post(url + "/feedback", json={"label": "mer"}, headers={"X-API-Key": one})
    assert given.status_code == 200 and given.json()["feedback_by"] == "eleve-01"
    assert (
        roles_client.post(url + "/feedback", json={"label": "forêt"}, headers={"X-API-Key": ADMIN}).status_code == 200
    )
    assert "autre clé" in _french(roles_client.delete(url, headers={"X-API-Key": two}), 403)
    assert roles_client.delete(url, headers={"X-API-Key": ADMIN}).status_code == 200


def test_a_learner_erases_its_own_predictions_only(roles_client):
    """Right to erasure: an inference key erases its own predictions (row and image), not another key's."""
    one, two = roles_client.secrets["eleve-01"], roles_client.secrets["eleve-02"]
    mine = _predict(roles_client, one).json()["prediction_id"]
    theirs = _predict(roles_client, two).json()["prediction_id"]
    assert "autre clé" in _french(roles_client.delete(f"/predictions/{theirs}", headers={"X-API-Key": one}), 403)
    erased = roles_client.delete(f"/predictions/{mine}", headers={"X-API-Key": one})
    assert erased.status_code == 200 and erased.json()["prediction_id"] == mine
    assert _french(roles_client.delete(f"/predictions/{mine}", headers={"X-API-Key": one}), 404)
    ids = [row["id"] for row in roles_client.get("/predictions", headers={"X-API-Key": ADMIN}).json()["items"]]
    assert mine not in ids and theirs in ids
    assert _french(roles_client.delete(f"/predictions/{theirs}"), 401)
    # The shared --api-key: « its own » rows are everybody's who holds it, so it erases nothing.
    shared = _predict(roles_client, LEARNER).json()["prediction_id"]
    assert "est partagée" in _french(roles_client.delete(f"/predictions/{shared}", headers={"X-API-Key": LEARNER}), 403)


@pytest.mark.parametrize("label", ["cle-api", "cle-gestion"])
def test_the_fixed_keys_labels_are_reserved_in_a_keys_file(tmp_path, label):
    with pytest.raises(KeysFileError, match="Étiquette de clé réservée"):
        add_key(tmp_path / "cles.json", label, "inference")
