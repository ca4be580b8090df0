"""The guarded HTTP protocol (atelier.connection_guard) and the /predict admission (atelier.api.admission).

The guard runs in a real uvicorn server started in this process on a tiny Starlette app (no model, no
TensorFlow), with sub-second timeouts, so that these checks stay in the fast subset (≈ 3 s).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from atelier.api.admission import AdmissionMiddleware
from atelier.api.settings import ApiSettings
from atelier.connection_guard import ConnectionLimits, connection_limits_of, guarded_protocol
from atelier.server import start_server

PARSERS = ["h11"] + (["httptools"] if importlib.util.find_spec("httptools") else [])
LIMITS = ConnectionLimits(max_connections=8, header_timeout=0.5, body_timeout=0.5, body_min_rate=10_000)


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


class _Settings:
    def connection_limits(self) -> ConnectionLimits:
        return LIMITS


def _app() -> Starlette:
    app = Starlette(routes=[Route("/", _echo, methods=["GET", "POST"]), Route("/health", _echo)])
    app.state.atelier = type("State", (), {"settings": _Settings()})()
    return app


@pytest.fixture(params=PARSERS)
def server(request, monkeypatch):
    import atelier.server

    def forced(_base, limits):  # start_server picks "auto"; force each installed parser in turn
        return guarded_protocol(request.param, limits)

    monkeypatch.setattr(atelier.server, "guarded_protocol", forced)
    with start_server(_app(), port=None) as handle:
        yield handle


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_response(sock: socket.socket) -> bytes:
    """One response of a keep-alive connection (headers, then Content-Length bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _detail(response: bytes) -> str:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])["detail"]


def test_slow_headers_get_a_french_408_after_the_timeout(server):
    sock = _connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
    started = time.monotonic()
    response = _read_all(sock)  # the server closes the connection
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 3, elapsed
    assert response.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in response.lower()
    assert "en-têtes" in _detail(response) and "0.5 s" in _detail(response)


def test_a_silent_connection_is_closed_without_an_answer(server):
    sock = _connect(server)
    started = time.monotonic()
    assert _read_all(sock) == b""
    assert 0.4 < time.monotonic() - started < 3


def test_a_slow_body_gets_a_french_408(server):
    sock = _connect(server)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100)
    response = _read_all(sock)
    assert response.startswith(b"HTTP/1.1 408 ")
    assert "corps de la requête arrive trop lentement" in _detail(response)


def test_a_body_at_a_good_rate_is_not_cut(server):
    sock = _connect(server)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16000\r\nConnection: close\r\n\r\n")
    for _ in range(8):  # 16 kB over ≈ 0.8 s: 20 kB/s, above the 10 kB/s minimum, longer than one window
        sock.sendall(b"b" * 2000)
        time.sleep(0.1)
    response = _read_all(sock)
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    assert json.loads(response.split(b"\r\n\r\n", 1)[1]) == {"received": 16000}


def test_keep_alive_requests_are_not_cut_and_a_late_next_request_is(server):
    sock = _connect(server)
    for _ in range(3):  # requests arriving in one piece: never touched by the timer
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.3)  # < keep-alive timeout; the three together last longer than the header timeout
    sock.sendall(b"GET / HTTP/1.1\r\n")  # then a next request that never ends
    response = _read_all(sock)
    assert response.startswith(b"HTTP/1.1 408 ")


def test_beyond_max_connections_a_new_connection_gets_a_french_503(server):
    held = [_connect(server) for _ in range(LIMITS.max_connections)]
    # Each held connection is answered once, so the server has surely accepted and counted it, and it now
    # waits between two requests (no header timer): on a loaded machine, a fixed pause was not enough, or
    # too long (silent connections are cut after the 0.5 s header timeout), and the ninth got a 200.
    for sock in held:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
    extra = _connect(server)
    extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    response = _read_all(extra)  # answered, then closed
    assert response.startswith(b"HTTP/1.1 503 ")
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert b"retry-after: 1" in head and b"connection: close" in head
    assert "connexions ouvertes" in _detail(response) and "réessayez" in _detail(response)
    health = _connect(server)  # a liveness check still passes beyond the cap
    health.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_response(health).startswith(b"HTTP/1.1 200 ")
    # the connections already open are still served
    held[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_response(held[0]).startswith(b"HTTP/1.1 200 ")
    for sock in held:
        sock.close()


def test_limits_come_from_the_settings():
    settings = ApiSettings(  # the model is never loaded here
        "modele.keras", max_connections=5, header_timeout=2.5, body_timeout=0, body_min_rate=100, max_inflight=3
    )
    assert settings.connection_limits() == ConnectionLimits(5, 2.5, 0, 100)
    app = type("App", (), {"state": type("S", (), {"atelier": type("A", (), {"settings": settings})()})()})()
    assert connection_limits_of(app) == ConnectionLimits(5, 2.5, 0, 100)
    assert connection_limits_of(object()) == ConnectionLimits()  # any other ASGI app: the defaults
    assert guarded_protocol("h11", LIMITS) is guarded_protocol("h11", LIMITS)
    with pytest.raises(ValueError, match="Protocole HTTP inconnu"):
        guarded_protocol("h3", LIMITS)


def test_overload_settings_from_env_and_their_checks(monkeypatch):
    monkeypatch.setenv("ATELIER_MODEL", "modele.keras")  # never loaded here
    monkeypatch.setenv("ATELIER_MAX_INFLIGHT", "7")
    monkeypatch.setenv("ATELIER_HEADER_TIMEOUT", "4")
    settings = ApiSettings.from_env()
    assert settings.max_inflight == 7 and settings.header_timeout == 4.0
    assert settings.max_connections == ConnectionLimits().max_connections
    monkeypatch.setenv("ATELIER_BODY_MIN_RATE", "0")
    with pytest.raises(ValueError, match="ATELIER_BODY_MIN_RATE"):
        ApiSettings.from_env()
    with pytest.raises(ValueError, match="max_connections doit être un entier positif ou nul"):
        ApiSettings("modele.keras", max_connections=-1)


# --- admission of /predict (ASGI, no server) -----------------------------------------------------------------


def _admission(max_inflight: int):
    """The middleware around an app that waits for ``release``, answers, then lingers until ``finish``."""
    release, answered, finish = asyncio.Event(), asyncio.Event(), asyncio.Event()
    entered = []

    async def app(scope, receive, send):
        entered.append(scope["path"])
        while (await receive())["more_body"]:
            pass
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        answered.set()
        await finish.wait()  # an application may return a little after its response is complete

    middleware = AdmissionMiddleware(app, max_inflight=max_inflight)
    return middleware, release, entered, answered, finish


async def _call(middleware, method: str = "POST", path: str = "/predict", upload=None) -> list[dict]:
    """One request through *middleware*; with *upload* (an event), the body only ends once it is set."""
    sent: list[dict] = []
    chunks = [False] if upload is None else [True, False]

    async def receive():
        more = chunks.pop(0) if chunks else False
        if not more and upload is not None:
            await upload.wait()
        return {"type": "http.request", "body": b"x", "more_body": more}

    async def send(message):
        sent.append(message)

    await middleware({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    return sent


def test_admission_refuses_beyond_max_inflight_at_once_in_french():
    async def scenario():
        middleware, release, entered, _, finish = _admission(2)
        finish.set()
        first = [asyncio.ensure_future(_call(middleware)) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await asyncio.wait_for(_call(middleware), 1)  # answered without waiting for the others
        other_route = asyncio.ensure_future(_call(middleware, "GET", "/health"))  # never limited
        await asyncio.sleep(0.01)
        release.set()
        accepted = await asyncio.gather(*first, other_route)
        again = await _call(middleware)  # the slots are free again
        return middleware, refused, accepted, again, entered

    middleware, refused, accepted, again, entered = asyncio.run(scenario())
    assert refused[0]["status"] == 503
    assert (b"retry-after", b"1") in refused[0]["headers"]
    detail = json.loads(refused[1]["body"])["detail"]
    assert "surchargé" in detail and "réessayez" in detail
    assert [messages[0]["status"] for messages in accepted] == [200, 200, 200]
    assert again[0]["status"] == 200
    assert entered.count("/predict") == 3 and middleware.inflight == 0 and middleware.refused == 1


def test_admission_releases_a_request_when_its_response_is_complete():
    """A client that waits for each answer never counts twice, even if the app returns a little later."""

    async def scenario():
        middleware, release, _, answered, finish = _admission(1)
        release.set()
        first = asyncio.ensure_future(_call(middleware))
        await answered.wait()  # first response complete, its application not yet returned
        second = asyncio.ensure_future(_call(middleware))
        await asyncio.sleep(0.01)
        finish.set()
        return await first, await second, middleware.inflight

    first, second, inflight = asyncio.run(scenario())
    assert first[0]["status"] == 200 and second[0]["status"] == 200 and inflight == 0


def test_admission_a_slow_upload_holds_no_place():
    async def scenario():
        middleware, release, _, _, finish = _admission(1)
        release.set()
        finish.set()
        upload = asyncio.Event()
        uploading = asyncio.ensure_future(_call(middleware, upload=upload))
        await asyncio.sleep(0.01)
        during = middleware.inflight
        other = await asyncio.wait_for(_call(middleware), 1)  # the place is free while the body arrives
        upload.set()
        return during, other, await uploading, middleware.inflight

    during, other, uploaded, after = asyncio.run(scenario())
    assert during == 0 and after == 0
    assert other[0]["status"] == 200 and uploaded[0]["status"] == 200


def test_admission_zero_means_no_limit():
    async def scenario():
        middleware, release, _, _, finish = _admission(0)
        finish.set()
        tasks = [asyncio.ensure_future(_call(middleware)) for _ in range(50)]
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*tasks)

    assert {messages[0]["status"] for messages in asyncio.run(scenario())} == {200}
