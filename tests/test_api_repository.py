"""The API on a model repository (in process): readiness, version header, /models, pin and unpin, metrics,
retention at start-up; and what a single-file server answers to the same routes."""

from __future__ import annotations

import sqlite3

import pytest
from starlette.testclient import TestClient

from atelier.api import create_app
from atelier.model_repository import ModelRepository, default_sample_dir

from .test_metrics import samples
from .tiny_models import make_models

IMAGE = (default_sample_dir() / "mer_1.jpg").read_bytes()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("modeles"))


def predict(client: TestClient):
    return client.post("/predict", files={"file": ("mer.jpg", IMAGE, "image/jpeg")})


def poll(client: TestClient) -> bool:
    return client.app.state.atelier.follower.poller.poll_once()


def test_empty_repository_is_alive_but_not_ready_until_a_first_version(tmp_path, models):
    app = create_app(model_dir=tmp_path / "depot", db_path=":memory:", poll_seconds=60)
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok", "ready": False, "model_version": None}
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False and ready.headers["retry-after"] == "1"
        refused = predict(client)
        assert refused.status_code == 503 and "Aucun modèle en service" in refused.json()["detail"]
        assert client.get("/model").status_code == 503
        assert client.get("/models").json()["versions"] == []

        ModelRepository(tmp_path / "depot").publish(models["a"])
        assert poll(client)
        assert client.get("/health/ready").json() == {"ready": True, "model_version": "1", "detail": None}
        answer = predict(client)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        assert answer.headers["x-model-version"] == "1"
        assert client.get("/health").headers["x-model-version"] == "1"


def test_pin_unpin_and_refusals(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    repo.publish(models["b"])
    repo.publish(models["low"])
    with TestClient(create_app(model_dir=repo.root, db_path=":memory:", poll_seconds=60)) as client:
        assert predict(client).json()["model_version"] == "2"
        listing = client.get("/models").json()
        assert (
            listing["served_version"] == 2 and listing["pin"] is None and listing["policy"] == "la plus récente valide"
        )
        states = {row["version"]: row["status"] for row in listing["versions"]}
        assert states == {1: "non vérifiée", 2: "valide", 3: "invalide"}
        assert "plancher" in next(row["error"] for row in listing["versions"] if row["version"] == 3)

        pinned = client.put("/model", json={"version": 1})
        assert pinned.status_code == 200, pinned.text
        assert pinned.json() == {"status": "épinglée", "pin": 1, "previous_version": "2", "model_version": "1"}
        assert repo.pinned() == 1 and predict(client).json()["model_version"] == "1"
        assert client.get("/models").json()["pin"] == 1

        missing = client.put("/model", json={"version": 9})
        assert missing.status_code == 404 and "n'existe pas" in missing.json()["detail"]
        invalid = client.put("/model", json={"version": 3})
        assert invalid.status_code == 409 and "plancher" in invalid.json()["detail"]
        assert client.put("/model", json={"version": "deux"}).status_code == 400
        assert repo.pinned() == 1

        reload = client.put("/model", json={"reload": True})
        assert reload.status_code == 409 and "publish" in reload.json()["detail"]
        upload = client.put("/model", files={"model": ("m.keras", b"PK"), "metadata": ("m.json", b"{}")})
        assert upload.status_code == 409

        unpinned = client.delete("/model/pin")
        assert unpinned.json()["status"] == "désépinglée" and unpinned.json()["model_version"] == "2"
        assert repo.pinned() is None and client.delete("/model/pin").json()["status"] == "aucun épinglage"


def test_metrics_scrape_parses_and_counts(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    with TestClient(create_app(model_dir=repo.root, db_path=":memory:", poll_seconds=60)) as client:
        before = samples(client.get("/metrics").text)
        for _ in range(3):
            assert predict(client).status_code == 200
        client.get("/adresse-inventee")
        repo.publish(models["b"])
        assert poll(client)
        text = client.get("/metrics").text
    after = samples(text)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("atelier_requests_total", route="/predict", method="POST", status="200") == 3
    assert delta("atelier_requests_total", route="autre", method="GET", status="404") == 1
    assert delta("atelier_request_duration_seconds_count", route="/predict") == 3
    assert delta("atelier_batch_size_count") == 3
    assert delta("atelier_model_swaps_total") == 1
    assert after[("atelier_model_version", ())] == 2
    assert after[("atelier_queue_depth", ())] == 0


def test_retention_is_applied_when_the_server_starts(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    db = tmp_path / "historique.sqlite3"
    with TestClient(create_app(model_dir=repo.root, db_path=db, poll_seconds=60)) as client:
        for _ in range(6):
            assert predict(client).status_code == 200
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE predictions SET created = '2020-01-01T00:00:00.000+00:00' WHERE id <= 2")
    with TestClient(create_app(model_dir=repo.root, db_path=db, poll_seconds=60, history_max_rows=3)) as client:
        items = client.get("/predictions").json()
        assert items["total"] == 3 and [item["id"] for item in items["items"]] == [6, 5, 4]


def test_a_single_file_server_is_a_repository_of_one(saved_model):
    path, metadata = saved_model
    with TestClient(create_app(path, db_path=":memory:")) as client:
        listing = client.get("/models").json()
        assert listing["model_dir"] is None and listing["served_version"] == metadata["version"]
        assert [row["version"] for row in listing["versions"]] == [metadata["version"]]
        refused = client.put("/model", json={"version": 1})
        assert refused.status_code == 409 and "--model-dir" in refused.json()["detail"]
        assert client.delete("/model/pin").status_code == 409
        assert client.get("/health/ready").status_code == 200
        assert client.get("/health").headers["x-model-version"] == metadata["version"]
