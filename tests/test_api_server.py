"""Against a real uvicorn server on 127.0.0.1: oversize bodies at the socket level, load, hot swap."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from atelier.api import create_app
from atelier.labels import CLASSES
from atelier.server import start_server
from tests.conftest import encode, textured_rgb

# Slow: real uvicorn servers, under load (left out by pytest -m "not slow").
pytestmark = pytest.mark.slow

CAP = 512 * 1024
JPEG = encode(textured_rgb())


def _save(directory, classes=CLASSES, size=64, seed=0):
    import keras

    from atelier.model import build_cnn
    from atelier.model_io import save_model

    keras.utils.set_random_seed(seed)
    path = directory / "cnn.keras"
    save_model(build_cnn(list(classes), size, augment=False), path, classes=list(classes), data_source="test")
    return path


@pytest.fixture(scope="module")
def models(saved_model, tmp_path_factory):
    """v1 (the configured model), v2 (compatible, other weights) and incompatible models."""
    root = tmp_path_factory.mktemp("modeles")
    source, _ = saved_model
    (root / "v1").mkdir()
    v1 = root / "v1" / "cnn.keras"
    shutil.copy(source, v1)
    shutil.copy(source.with_suffix(".json"), v1.with_suffix(".json"))
    paths = {"v1": v1}
    for name, kwargs in {
        "v2": {"seed": 1},
        "classes": {"classes": ("forêt", "mer", "désert")},
        "taille": {"size": 32},
    }.items():
        (root / name).mkdir()
        paths[name] = _save(root / name, **kwargs)
    return paths


def _version(path) -> str:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["version"]


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    db = tmp_path_factory.mktemp("hist") / "historique.sqlite3"
    app = create_app(models["v1"], db_path=db, max_upload_bytes=CAP)
    with start_server(app, port=None) as handle:
        yield handle


def _predict_ok(url: str) -> dict:
    response = httpx.post(url + "/predict", files={"file": ("ok.jpg", JPEG, "image/jpeg")}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _raw_exchange(port: int, head: bytes, body_chunks, *, pause: float = 0.0) -> bytes:
    """Send a raw HTTP request (tolerating a server that stops reading) and return the raw response."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered 413 and closed: expected
        received = b""
        try:
            while b"\r\n\r\n" not in received or not _complete(received):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _status_and_detail(raw: bytes) -> tuple[int, str]:
    """Status and French detail of the FIRST response in ``raw``.

    The connection may carry more after it: with uvicorn's h11 parser, bytes sent past a (lying)
    Content-Length are read as a next request and answered with a plain-text 400 of uvicorn's own.
    """
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            body = body[: int(line.split(b":")[1])]
    return status, json.loads(body)["detail"]


def _multipart_head(port: int, extra: bytes) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=limite\r\n" + extra + b"\r\n"
    )


def _part_start() -> bytes:
    return (
        b'--limite\r\nContent-Disposition: form-data; name="file"; filename="gros.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n\xff\xd8"
    )


def test_chunked_body_over_the_cap_is_cut_while_reading(server):
    def chunks():
        yield b"%x\r\n%s\r\n" % (len(_part_start()), _part_start())
        block = b"\0" * 65536
        for _ in range(160):  # 10 MiB offered, the cap is 512 KiB
            yield b"%x\r\n" % len(block) + block + b"\r\n"

    raw = _raw_exchange(server.port, _multipart_head(server.port, b"Transfer-Encoding: chunked\r\n"), chunks())
    status, detail = _status_and_detail(raw)
    assert status == 413 and "trop volumineux" in detail
    _predict_ok(server.url)


def test_declared_oversize_is_refused_before_reading(server):
    head = _multipart_head(server.port, b"Content-Length: 50000000\r\n")
    started = time.perf_counter()
    raw = _raw_exchange(server.port, head, [])  # no body sent at all: the answer must not wait for it
    assert time.perf_counter() - started < 5
    status, detail = _status_and_detail(raw)
    assert status == 413 and "trop volumineux" in detail
    _predict_ok(server.url)


def test_lying_content_length_reads_only_what_was_declared(server):
    """Content-Length says 2,000 bytes, a megabyte follows: HTTP framing reads only the 2,000.

    With h11 the app answers first (a cut multipart form: French JSON 4xx); with httptools the
    server's parser rejects the extra bytes as a malformed next request and answers its own plain
    400 before closing. Either way a 4xx, nothing past the declared length reaches the app, and the
    server keeps serving.
    """
    body = _part_start() + b"\0" * (2 * CAP) + b"\r\n--limite--\r\n"
    head = _multipart_head(server.port, b"Content-Length: 2000\r\n")
    raw = _raw_exchange(server.port, head, [body[i : i + 65536] for i in range(0, len(body), 65536)])
    status = int(raw.split(b" ")[1])
    assert 400 <= status < 500
    if b"application/json" in raw.partition(b"\r\n\r\n")[0]:
        assert _status_and_detail(raw)[1]
    _predict_ok(server.url)


def _load(url: str, total: int, concurrency: int):
    """*total* POST /predict spread over *concurrency* threads, each with its keep-alive connection."""
    per_thread = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
    failures: list[str] = []
    ids: list[int] = []
    lock = threading.Lock()

    def worker(n):
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(n):
                try:
                    response = client.post("/predict", files={"file": (f"{i}.jpg", JPEG, "image/jpeg")})
                    if response.status_code != 200:
                        raise AssertionError(f"{response.status_code} {response.text}")
                    with lock:
                        ids.append(response.json()["prediction_id"])
                except Exception as exc:  # collect, do not stop the other threads
                    with lock:
                        failures.append(repr(exc))

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, per_thread))
    return failures, ids


def test_2000_requests_at_concurrency_32(server):
    before = httpx.get(server.url + "/predictions", params={"limit": 1}).json()["total"]
    failures, ids = _load(server.url, 2000, 32)
    assert failures == []
    assert len(ids) == 2000 == len(set(ids))
    after = httpx.get(server.url + "/predictions", params={"limit": 1}).json()["total"]
    assert after - before == 2000


def _upload_model(url: str, path, metadata: bytes | None = None, *, name: str = "modele.keras"):
    meta = path.with_suffix(".json").read_bytes() if metadata is None else metadata
    files = {
        "model": (name, path.read_bytes(), "application/octet-stream"),
        "metadata": ("m.json", meta, "application/json"),
    }
    return httpx.put(url + "/model", files=files, timeout=120)


def test_hot_swap_under_load_fails_no_request(server, models):
    v1, v2 = _version(models["v1"]), _version(models["v2"])
    assert v1 != v2
    assert httpx.get(server.url + "/health").json()["model_version"] == v1
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker():
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", files={"file": ("x.jpg", JPEG, "image/jpeg")})
                    assert response.status_code == 200, response.text
                    with lock:
                        seen.append(response.json()["model_version"])
                except Exception as exc:
                    with lock:
                        failures.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    try:

        def wait_for(count):
            deadline = time.monotonic() + 60
            while len(seen) < count and time.monotonic() < deadline:
                time.sleep(0.02)

        wait_for(50)
        swapped = _upload_model(server.url, models["v2"], name="../../../etc/cnn.keras")
        assert swapped.status_code == 200, swapped.text
        assert swapped.json() == {**swapped.json(), "status": "remplacé", "previous_version": v1, "model_version": v2}
        wait_for(len(seen) + 50)
        back = httpx.put(server.url + "/model", json={"reload": True}, timeout=120)  # the configured file: v1
        assert back.status_code == 200 and back.json()["model_version"] == v1
        wait_for(len(seen) + 50)
        again = _upload_model(server.url, models["v2"])
        assert again.status_code == 200
        wait_for(len(seen) + 50)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert set(seen) == {v1, v2}
    assert _predict_ok(server.url)["model_version"] == v2
    assert httpx.get(server.url + "/model").json()["version"] == v2
    history = httpx.get(server.url + "/predictions", params={"limit": 1}).json()["items"][0]
    assert history["model_version"] == v2
    # Back to v1 for the other tests of this module.
    assert httpx.put(server.url + "/model", params={"reload": "true"}, timeout=120).json()["model_version"] == v1


def test_bad_model_updates_keep_the_old_model(server, models, tmp_path):
    current = httpx.get(server.url + "/health").json()["model_version"]
    v2_meta = json.loads(models["v2"].with_suffix(".json").read_text(encoding="utf-8"))
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"PK\x03\x04 ceci n'est pas un zip complet" * 10)
    not_zip = tmp_path / "texte.keras"
    not_zip.write_bytes(b"import os; os.system('rm -rf /')")
    # Metadata without a digest, so that the archive itself is what gets refused.
    no_digest_meta = json.dumps({k: v for k, v in v2_meta.items() if k != "sha256"}).encode()
    cases = [
        (_upload_model(server.url, models["classes"]), 409, "classes"),
        (_upload_model(server.url, models["taille"]), 409, "32×32"),
        (_upload_model(server.url, garbage, no_digest_meta), 422, "keras"),
        (_upload_model(server.url, not_zip, no_digest_meta), 422, "keras"),
        (_upload_model(server.url, models["v1"], models["v2"].with_suffix(".json").read_bytes()), 422, "sha256"),
        (_upload_model(server.url, models["v2"], b"{pas du json"), 422, "json"),
        (_upload_model(server.url, models["v2"], b'{"version": "x"}'), 422, "classes"),
        (httpx.put(server.url + "/model", files={"model": ("m.keras", b"x")}), 400, "metadata"),
        (httpx.put(server.url + "/model", files={"metadata": ("m.json", b"{}")}), 400, "model"),
        (httpx.put(server.url + "/model", json={"reload": "oui"}), 400, "reload"),
        (httpx.put(server.url + "/model", content=b"{", headers={"content-type": "application/json"}), 400, "json"),
        (httpx.put(server.url + "/model", content=b"x", headers={"content-type": "text/plain"}), 415, "multipart"),
        (httpx.put(server.url + "/model"), 415, "multipart"),
    ]
    for response, status, word in cases:
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert word.lower() in detail.lower(), detail
        assert httpx.get(server.url + "/health").json()["model_version"] == current
    assert _predict_ok(server.url)["model_version"] == current


@pytest.mark.parametrize(
    "options",
    [{"batching": False}, {"batching": True, "max_batch_size": 8, "batch_wait_ms": 2}],
    ids=["un-appel-par-requete", "lots-avec-attente"],
)
def test_other_inference_modes_serve_correctly_under_load(models, tmp_path, options):
    """The default (opportunistic batching) is exercised above; the other two settings here."""
    app = create_app(models["v1"], db_path=tmp_path / "h.sqlite3", **options)
    with start_server(app, port=None) as handle:
        single = _predict_ok(handle.url)
        failures, ids = _load(handle.url, 400, 32)
        assert failures == [] and len(set(ids)) == 400
        again = _predict_ok(handle.url)
        assert again["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
        swapped = _upload_model(handle.url, models["v2"])
        assert swapped.status_code == 200
        assert _predict_ok(handle.url)["model_version"] == _version(models["v2"])
