"""Under hostile load, ``python -m atelier serve`` sheds, cuts slow clients and keeps answering /health.

One real server (subprocess, loopback) with small limits, so that the scenario lasts a few seconds:
a burst far over ``--max-inflight`` gets French 503s with ``Retry-After`` and the accepted requests stay
fast; slowloris connections (headers, or a body, trickling in) are closed after the timeout with a
French 408; ``GET /health`` answers all along. The load client is tools/open_loop.py's.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from atelier.server import free_port
from tests.conftest import load_tool

from .test_serve_cli import start_serve, wait_health

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HEADER_TIMEOUT = 2.0
SLOW_CLIENTS = 100
BURST = 120


def _open_loop():
    return load_tool("open_loop")


async def _scenario(port: int):
    open_loop = _open_loop()
    stop = asyncio.Event()
    probes = asyncio.ensure_future(open_loop.health_probes("127.0.0.1", port, stop, 0.2))
    slow_head = b"POST /predict HTTP/1.1\r\nHost: test\r\nX-Trickle: "
    slow_headers = [
        asyncio.ensure_future(open_loop.slow_client("127.0.0.1", port, slow_head, b"a" * 40, 0.5))
        for _ in range(SLOW_CLIENTS)
    ]
    body_head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
        b"Content-Length: 100000\r\n\r\n--xyz\r\n"
    )
    slow_body = asyncio.ensure_future(open_loop.slow_client("127.0.0.1", port, body_head, b"b" * 40, 0.5))
    await asyncio.sleep(0.5)
    client = open_loop.Client("127.0.0.1", port, open_loop.predict_request("127.0.0.1", port), 30, 1000)
    now = time.perf_counter()
    await asyncio.gather(*(client.one(now) for _ in range(BURST)))  # all at once: a burst
    client.close_all()
    headers_results = await asyncio.gather(*slow_headers)
    body_result = await slow_body
    stop.set()
    return client.tally, headers_results, body_result, await probes


def _detail(response: bytes) -> str:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])["detail"]


def test_burst_is_shed_slow_clients_are_cut_health_answers(saved_model, tmp_path):
    path, _ = saved_model
    port = free_port()
    options = ["--max-inflight", "4", "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(HEADER_TIMEOUT)]
    process = start_serve(path, port, "--no-access-log", "--db", str(tmp_path / "h.sqlite3"), *options)
    try:
        wait_health(f"http://127.0.0.1:{port}", process, timeout=300)  # serve starts in 84 s on a loaded machine
        started = time.monotonic()
        tally, slow_headers, slow_body, health = asyncio.run(_scenario(port))
        elapsed = time.monotonic() - started
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    # the burst: some accepted, the rest refused at once, in French, with Retry-After; nothing else
    assert set(tally.statuses) == {200, 503}, (tally.statuses, tally.error_kinds)
    assert tally.errors == 0 and tally.hung == 0
    assert tally.shed_not_french == 0 and tally.shed_without_retry_after == 0
    assert sorted(tally.shed_ms)[len(tally.shed_ms) // 2] < 1000  # a 503 is fast, even on a busy machine
    assert sorted(tally.accepted_ms)[len(tally.accepted_ms) // 2] < 3000
    # slowloris (headers): every connection closed after the timeout, with a French 408
    for seconds, response in slow_headers:
        assert HEADER_TIMEOUT - 0.3 < seconds < HEADER_TIMEOUT + 4, seconds
        assert response.startswith(b"HTTP/1.1 408 ") and "en-têtes" in _detail(response)
    # a body trickling in: cut after one window, 408 in French
    seconds, response = slow_body
    assert seconds < 2 * HEADER_TIMEOUT + 4, seconds
    assert response.startswith(b"HTTP/1.1 408 ") and "trop lentement" in _detail(response)
    # /health answered throughout (a probe every 0.2 s), and quickly
    assert {status for status, _ in health} == {200}, health
    assert len(health) >= elapsed / 1.5 and max(seconds for _, seconds in health) < 2, health
    assert "Traceback" not in output, output
