"""Under hostile load, ``python -m atelier serve`` sheds, cuts slow clients and keeps answering /health.

One real server (subprocess, loopback) with small limits, so that the scenario lasts a few seconds:
a burst far over ``--max-inflight`` gets French 503s with ``Retry-After`` and the accepted requests stay
fast; slowloris connections (headers, or a body, trickling in) are closed after the timeout with a
French 408; ``GET /health`` answers all along. The load client is tools/open_loop.py's.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

from atelier.server import free_port

from .test_serve_cli import start_serve, wait_health

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HEADER_TIMEOUT = 2.0
SLOW_CLIENTS = 100
BURST = 120


def _open_loop():
    spec = importlib.util.spec_from_file_location("open_loop", ROOT / "tools" / "open_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["open_loop"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def _slowloris(port: int, head: bytes, trickle: bytes) -> tuple[float, bytes]:
    """Sends *head* then one byte of *trickle* every 0.5 s; (seconds until the server closed, what it sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)
    received = b""
    for byte in trickle:
        try:
            received += await asyncio.wait_for(reader.read(65536), 0.5)
        except asyncio.TimeoutError:
            writer.write(bytes([byte]))
            continue
        except ConnectionError:
            break
        if reader.at_eof():
            break
    writer.close()
    return time.monotonic() - started, received


async def _health_probes(port: int, stop: asyncio.Event) -> list[float]:
    """``GET /health`` on a new connection every 0.2 s until *stop*; the duration of each (s)."""
    durations = []
    while not stop.is_set():
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert response.startswith(b"HTTP/1.1 200 "), response[:200]
        durations.append(time.monotonic() - started)
        await asyncio.sleep(0.2)
    return durations


async def _scenario(port: int):
    open_loop = _open_loop()
    stop = asyncio.Event()
    probes = asyncio.ensure_future(_health_probes(port, stop))
    slow_head = b"POST /predict HTTP/1.1\r\nHost: test\r\nX-Trickle: "
    slow_headers = [asyncio.ensure_future(_slowloris(port, slow_head, b"a" * 40)) for _ in range(SLOW_CLIENTS)]
    body_head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
        b"Content-Length: 100000\r\n\r\n--xyz\r\n"
    )
    slow_body = asyncio.ensure_future(_slowloris(port, body_head, b"b" * 40))
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
        wait_health(f"http://127.0.0.1:{port}", process)
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
    assert len(health) >= elapsed / 1.5 and max(health) < 2, health
    assert "Traceback" not in output, output
