"""``python -m atelier serve``: the real app in a subprocess, called over HTTP like curl would."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from atelier.server import free_port

from .conftest import encode, textured_rgb

# Slow: `python -m atelier serve` in subprocesses (left out by pytest -m "not slow").
pytestmark = pytest.mark.slow


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atelier", *args], capture_output=True, text=True, timeout=timeout)


def wait_health(url: str, process: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            response = requests.get(url + "/health", timeout=2)
            if response.status_code == 200:
                return response.json()
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise AssertionError("le serveur n'a pas répondu")


def stop(process: subprocess.Popen) -> str:
    """Ctrl+C (SIGINT) as a user would; returns the whole output."""
    process.send_signal(signal.SIGINT if os.name != "nt" else signal.CTRL_C_EVENT)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"le serveur ne s'est pas arrêté :\n{out}") from None
    return out


def start_serve(model, port: int, *extra: str) -> subprocess.Popen:
    """``python -m atelier serve --model MODEL --port PORT …extra`` in a subprocess (stdout + stderr piped)."""
    command = [sys.executable, "-m", "atelier", "serve", "--model", str(model), "--port", str(port), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def served(saved_model, tmp_path):
    """``python -m atelier serve`` on a free port, with an API key and a temporary history."""
    path, metadata = saved_model
    port = free_port()
    process = start_serve(
        path,
        port,
        "--api-key",
        "secret-de-test",
        "--db",
        str(tmp_path / "historique.sqlite3"),
        "--store-images",
        str(tmp_path / "images"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_health(url, process)
        yield url, process, metadata, health
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serve_health_predict_and_stop(served, tmp_path):
    url, process, metadata, health = served
    assert health == {"status": "ok", "model_version": metadata["version"]} or (
        health["status"] == "ok" and health["model_version"] == metadata["version"]
    )
    image = encode(textured_rgb())
    # like: curl -F file=@tuile.jpg -H "X-API-Key: …" http://127.0.0.1:PORT/predict
    response = requests.post(
        url + "/predict",
        files={"file": ("tuile.jpg", image, "image/jpeg")},
        headers={"X-API-Key": "secret-de-test"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] in metadata["classes"]
    assert set(body["probabilities"]) == set(metadata["classes"])
    assert body["model_version"] == metadata["version"]
    # the key given on the command line is enforced
    refused = requests.post(url + "/predict", files={"file": ("tuile.jpg", image, "image/jpeg")}, timeout=30)
    assert refused.status_code == 401 and refused.json()["detail"]
    # the history went to --db, the image to --store-images, so the prediction can be explained later
    assert (tmp_path / "historique.sqlite3").exists()
    assert [p.suffix for p in (tmp_path / "images").iterdir()] == [".jpg"]
    explained = requests.get(
        f"{url}/predictions/{body['prediction_id']}/explanation",
        params={"format": "png"},
        headers={"X-API-Key": "secret-de-test"},
        timeout=60,
    )
    assert explained.status_code == 200 and explained.content.startswith(b"\x89PNG")
    assert explained.headers["X-Model-Version"] == metadata["version"]
    out = stop(process)
    assert process.returncode == 0, out
    assert f"API de l'atelier en marche sur {url}" in out
    assert json.loads(out.strip().splitlines()[-1])["status"] == "arrêté"
    assert "Traceback" not in out


def test_serve_port_taken_is_a_french_error(saved_model):
    path, _ = saved_model
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        started = time.monotonic()
        result = run_cli("serve", "--model", str(path), "--port", str(port))
    assert result.returncode != 0
    assert f"Le port {port} est déjà utilisé" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert time.monotonic() - started < 30  # reported before TensorFlow is even imported


def test_serve_missing_model_is_a_french_error(tmp_path):
    result = run_cli("serve", "--model", str(tmp_path / "absent.keras"), "--port", str(free_port()))
    assert result.returncode != 0
    assert "Modèle introuvable" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_without_model_is_a_french_error(monkeypatch):
    monkeypatch.delenv("ATELIER_MODEL", raising=False)
    result = run_cli("serve")
    assert result.returncode != 0
    assert "Indiquez le modèle" in result.stderr and "Traceback" not in result.stderr


def test_serve_unreadable_model_is_a_french_error(tmp_path):
    bad = tmp_path / "faux.keras"
    bad.write_bytes(b"ceci n'est pas un modele")
    result = run_cli("serve", "--model", str(bad), "--port", str(free_port()))
    assert result.returncode != 0
    assert result.stderr.startswith("Erreur") and "Traceback" not in result.stderr


def _post_many(url: str, total: int, threads: int) -> list[int]:
    """*total* POST /predict over *threads* keep-alive connections; the prediction_ids answered."""
    image = encode(textured_rgb(seed=1))

    def worker(n: int) -> list[int]:
        with requests.Session() as session:
            ids = []
            for i in range(n):
                response = session.post(url + "/predict", files={"file": (f"{i}.jpg", image, "image/jpeg")}, timeout=60)
                assert response.status_code == 200, response.text
                ids.append(response.json()["prediction_id"])
            return ids

    with ThreadPoolExecutor(threads) as pool:
        return [i for ids in pool.map(worker, [total // threads] * threads) for i in ids]


def _stored_ids(db) -> list[int]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM predictions ORDER BY id")]


def test_every_answered_prediction_is_in_the_history_after_a_clean_stop(saved_model, tmp_path):
    """Write-behind history: N answers → N rows once the server stopped (Ctrl+C), with the ids answered."""
    path, _ = saved_model
    port, db = free_port(), tmp_path / "h.sqlite3"
    process = start_serve(path, port, "--db", str(db))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, process)
        ids = _post_many(url, 120, 4)
        # an id is usable at once, written or not: the history route sees it
        assert requests.get(url + "/predictions", params={"limit": 1}, timeout=30).json()["items"][0]["id"] in ids
        ids += _post_many(url, 40, 4)  # the last ones are surely still in memory when Ctrl+C comes
    finally:
        out = stop(process)
    assert process.returncode == 0 and "Traceback" not in out, out
    assert _stored_ids(db) == sorted(ids) == list(range(1, 161))


def test_serve_with_two_workers(saved_model, tmp_path):
    """--workers 2: the factory import string + environment variables, each worker loads the model.

    Both workers share one history file: the ids they answer never collide and none is lost at the stop.
    The workers also get the guarded HTTP protocol by name, with the limits of the options
    (atelier.api.protocol): a request whose headers never end is cut after --header-timeout.
    """
    path, metadata = saved_model
    port, db = free_port(), tmp_path / "h.sqlite3"
    options = ["--workers", "2", "--db", str(db), "--no-access-log", "--header-timeout", "1"]
    process = start_serve(path, port, *options)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_health(url, process, timeout=180)["model_version"] == metadata["version"]
        ids = _post_many(url, 64, 8)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")  # the blank line never comes
            started = time.monotonic()
            answer = slow.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert time.monotonic() - started < 5
    finally:
        out = stop(process)
    assert "Traceback" not in out, out
    assert len(set(ids)) == len(ids) == 64, "two workers never hand out the same prediction_id"
    assert _stored_ids(db) == sorted(ids), "every answered prediction is in the history after the stop"
