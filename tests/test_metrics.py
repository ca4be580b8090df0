"""Prometheus metrics: the middleware counts by route template, the text parses, workers are summed."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from atelier import metrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(name: str, **labels) -> float:
    text = metrics.render()[0].decode()
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def make_client() -> TestClient:
    async def ok(request):
        return PlainTextResponse("ok")

    async def teapot(request):
        return PlainTextResponse("non", status_code=418)

    async def scrape(request):
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app = Starlette(routes=[Route("/ok", ok), Route("/teapot", teapot), Route("/metrics", scrape)])
    app.add_middleware(metrics.MetricsMiddleware, routes=["/ok", "/teapot", "/metrics"], prefixes=["/static"])
    return TestClient(app)


def test_requests_are_counted_by_route_method_and_status():
    client = make_client()
    before_ok = value("atelier_requests_total", route="/ok", method="GET", status="200")
    before_other = value("atelier_requests_total", route="autre", method="GET", status="404")
    before_static = value("atelier_requests_total", route="/static", method="GET", status="404")
    before_latency = value("atelier_request_duration_seconds_count", route="/ok")
    for _ in range(3):
        assert client.get("/ok").status_code == 200
    assert client.get("/teapot").status_code == 418
    for i in range(5):  # invented addresses share one series
        assert client.get(f"/invente/{i}").status_code == 404
    client.get("/static/app.js")
    assert value("atelier_requests_total", route="/ok", method="GET", status="200") == before_ok + 3
    assert value("atelier_requests_total", route="/teapot", method="GET", status="418") >= 1
    assert value("atelier_requests_total", route="autre", method="GET", status="404") == before_other + 5
    assert value("atelier_requests_total", route="/static", method="GET", status="404") == before_static + 1
    assert value("atelier_request_duration_seconds_count", route="/ok") == before_latency + 3
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    expected = {
        "atelier_requests",
        "atelier_request_duration_seconds",
        "atelier_batch_size",
        "atelier_queue_depth",
        "atelier_model_version",
        "atelier_model_swaps",
        "atelier_model_load_failures",
    }
    assert expected <= names


def test_model_version_gauge():
    metrics.set_model_version("3")
    assert value("atelier_model_version") == 3
    metrics.set_model_version("cnn-3f2a9c1d")
    assert value("atelier_model_version") == -1


WORKER = """
import sys
from atelier import metrics
metrics.REQUESTS.labels("/predict", "POST", "200").inc(int(sys.argv[1]))
metrics.BATCH_SIZE.observe(4)
metrics.set_model_version(sys.argv[2])
"""


SCRAPER = """
import os
from atelier import metrics
metrics.set_model_version("5")
print(metrics.render()[0].decode())
metrics.mark_process_dead()
assert not [f for f in os.listdir(os.environ[metrics.MULTIPROC_ENV]) if str(os.getpid()) in f and "live" in f]
"""


def test_several_processes_are_summed(tmp_path):
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    for count, version in ((3, "1"), (4, "2")):
        subprocess.run([sys.executable, "-c", WORKER, str(count), version], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", SCRAPER],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    parsed = samples(out)
    assert parsed[("atelier_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))] == 7
    assert parsed[("atelier_batch_size_count", ())] == 2
    versions = sorted(v for (name, labels), v in parsed.items() if name == "atelier_model_version")
    assert versions == [5], "one sample per live process: the two finished ones are forgotten"
