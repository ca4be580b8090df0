"""Requests the HTTP parser cannot read get a French JSON 400, with both uvicorn parsers (real server, raw socket)."""

from __future__ import annotations

import json
import socket

import pytest

from atelier.api import create_app
from atelier.http_protocol import HAS_HTTPTOOLS, http_protocol
from atelier.server import start_server

# Slow: real servers on loopback (left out by pytest -m "not slow").
pytestmark = pytest.mark.slow

BROKEN_REQUESTS = {
    "ligne de requête": b"N'IMPORTE QUOI\r\n\r\n",
    "NUL dans un en-tête": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Essai: a\x00b\r\n\r\n",
    "Content-Length pas un nombre": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: douze\r\n\r\n",
    "Content-Length négatif": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "deux Content-Length": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
}


def raw_exchange(port: int, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send *request* as is and read the answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(request, saved_model):
    assert HAS_HTTPTOOLS, "httptools (dev dependency) is needed to check uvicorn's second parser"
    app = create_app(saved_model[0], db_path=":memory:")
    with start_server(app, port=None, http=request.param) as handle:
        yield handle


@pytest.mark.parametrize("case", sorted(BROKEN_REQUESTS))
def test_unreadable_request_is_a_french_json_400(server, case):
    status, headers, body = raw_exchange(server.port, BROKEN_REQUESTS[case])
    assert status == 400, (case, body)
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert int(headers["content-length"]) == len(body)
    detail = json.loads(body)["detail"]
    assert detail.startswith("Requête HTTP invalide") and "Invalid" not in detail


def test_a_good_request_still_works_on_the_same_server(server):
    status, headers, body = raw_exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert headers["x-content-type-options"] == "nosniff"


def test_protocol_choice():
    assert http_protocol("h11").__name__ == "FrenchH11Protocol"
    assert http_protocol("auto").__name__ == "FrenchHttpToolsProtocol"  # what uvicorn's "auto" would pick
    with pytest.raises(ValueError, match="inconnu"):
        http_protocol("http3")
