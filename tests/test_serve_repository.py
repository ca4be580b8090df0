"""Real processes on loopback: ``serve --workers 2 --model-dir D`` under concurrent load follows the repository
(publish, pin, broken versions) with zero failed requests; the history loses no row; /metrics sums the
workers; two ``serve`` processes sharing one repository (compose replicas without Docker) converge."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from atelier.model_repository import ModelRepository, default_sample_dir

from .test_metrics import samples
from .test_serve_cli import free_port, stop
from .tiny_models import make_models, replace_model_file

POLL = 3.0  # seconds between two reads of the repository by each worker ("a few seconds"; the default is 2)
IMAGE = (default_sample_dir() / "desert_1.jpg").read_bytes()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("modeles"))


def start_serve(model_dir, port: int, *extra: str):
    import subprocess
    import sys

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atelier",
            "serve",
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
            "--poll-seconds",
            str(POLL),
            "--no-access-log",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def served_versions(url: str, process, workers: int, timeout: float = 180) -> dict[int, int]:
    """``{pid: served version}`` once *workers* distinct processes have answered ``GET /models``."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            status = requests.get(url + "/models", timeout=5).json()  # a new connection each time
            seen[status["pid"]] = status["served_version"]
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
            continue
        if len(seen) >= workers and None not in seen.values():
            return seen
        time.sleep(0.05)
    raise AssertionError(f"pas de réponse de {workers} processus prêts : {seen}")


@dataclass
class Load:
    """Concurrent ``POST /predict`` on fresh connections (so that every worker gets some)."""

    url: str
    threads: int = 4
    results: list[tuple[float, int, str | None, str | None, int | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = requests.post(self.url + "/predict", files={"file": ("t.jpg", IMAGE, "image/jpeg")}, timeout=30)
                body = r.json() if r.status_code == 200 else {}
                self.results.append(
                    (
                        time.monotonic(),
                        r.status_code,
                        body.get("model_version"),
                        r.headers.get("x-model-version"),
                        body.get("prediction_id"),
                    )
                )
            except requests.RequestException as exc:  # a failed request is a test failure, reported below
                self.errors.append(repr(exc))

    def since(self, moment: float) -> list[str | None]:
        return [version for t, _, version, _, _ in list(self.results) if t >= moment]

    def wait_all(self, version: str, since: float, timeout: float) -> float:
        """Seconds from *since* until the last response naming another version (and 2 s of only *version*)."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            recent = [(t, v) for t, _, v, _, _ in list(self.results) if t >= since]
            others = [t for t, v in recent if v != version]
            last_other = max(others, default=since)
            if recent and time.monotonic() - last_other > 2.0 and any(t > last_other for t, _ in recent):
                return last_other - since
            time.sleep(0.1)
        raise AssertionError(f"les réponses ne nomment pas toutes la version {version} après {timeout} s")


def scrape(url: str) -> dict:
    return samples(requests.get(url + "/metrics", timeout=10).text)


def test_two_workers_follow_the_repository_under_load(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    db = tmp_path / "historique.sqlite3"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_serve(repo.root, port, "--workers", "2", "--db", str(db))
    timings = {}
    try:
        assert set(served_versions(url, process, 2).values()) == {1}
        with Load(url) as load:
            time.sleep(1.0)
            repo.publish(models["b"])  # visible to the servers when it returns (atomic rename)
            start = time.monotonic()
            timings["publication"] = load.wait_all("2", start, timeout=4 * POLL + 20)
            assert set(served_versions(url, process, 2).values()) == {2}

            start = time.monotonic()
            pinned = requests.put(url + "/model", json={"version": 1}, timeout=60)
            assert pinned.status_code == 200, pinned.text
            start = time.monotonic()  # the pin file is written: the other worker follows at its next read
            timings["épinglage"] = load.wait_all("1", start, timeout=4 * POLL + 20)
            assert set(served_versions(url, process, 2).values()) == {1}

            assert requests.delete(url + "/model/pin", timeout=60).status_code == 200
            load.wait_all("2", time.monotonic(), timeout=4 * POLL + 20)

            start = time.monotonic()
            repo.publish(models["low"])  # 3: accuracy under the floor
            broken = repo.publish(models["a"])  # 4: then another network: golden labels no longer reproduced
            replace_model_file(repo, broken, models["b"])
            time.sleep(3 * POLL)
            assert set(load.since(start)) == {"2"}, "a broken version must never be served"
        listing = requests.get(url + "/models", timeout=10).json()
        states = {row["version"]: row["status"] for row in listing["versions"]}
        assert states[3] == states[4] == "invalide" and listing["served_version"] == 2

        statuses = [status for _, status, _, _, _ in load.results]
        assert not load.errors and set(statuses) == {200}, (load.errors[:3], set(statuses))
        assert {v for _, _, v, _, _ in load.results} <= {"1", "2"}, "no response from a never-valid version"
        assert all(body == header for _, _, body, header, _ in load.results), "X-Model-Version = body"
        ids = [pid for *_, pid in load.results]
        assert len(ids) == len(set(ids)) and len(ids) > 50

        # TF Serving's promise: every worker on the new version within 2 reads of the repository.
        assert timings["publication"] <= 2 * POLL and timings["épinglage"] <= 2 * POLL, timings
        metrics = scrape(url)
        counted = metrics[("atelier_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))]
        assert counted == len(ids), "both workers' counters are summed"
        versions = [v for (name, _), v in metrics.items() if name == "atelier_model_version"]
        assert versions == [2, 2], "one gauge per worker"
    finally:
        output = stop(process)
    import sqlite3

    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM predictions")}
    assert set(ids) <= stored and len(stored) == len(ids), "two workers writing the history lose no row"
    assert "Version 3 ignorée" in output and "Version 4 ignorée" in output and "étiquettes témoins" in output
    print(f"\nconvergence (s) : {timings} ; {len(ids)} requêtes, 0 échec")


def test_two_replicas_sharing_one_repository_converge(tmp_path, models):
    repo = ModelRepository(tmp_path / "depot")
    repo.publish(models["a"])
    ports = [free_port(), free_port()]
    processes = [start_serve(repo.root, port, "--db", str(tmp_path / f"h{port}.sqlite3")) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process in zip(urls, processes, strict=True):
            assert set(served_versions(url, process, 1).values()) == {1}
        start = time.monotonic()
        repo.publish(models["b"])
        pending = set(urls)
        while pending and time.monotonic() - start < 4 * POLL + 20:
            for url in list(pending):
                if requests.get(url + "/health", timeout=5).json()["model_version"] == "2":
                    pending.discard(url)
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        assert not pending, f"répliques restées sur la version 1 : {pending}"
        requests.put(urls[0] + "/model", json={"version": 1}, timeout=60).raise_for_status()
        deadline = time.monotonic() + 4 * POLL + 20
        while requests.get(urls[1] + "/health", timeout=5).json()["model_version"] != "1":
            assert time.monotonic() < deadline, "le pin posé par une réplique doit valoir pour l'autre"
            time.sleep(0.1)
    finally:
        for process in processes:
            stop(process)
    print(f"\nconvergence des deux répliques : {elapsed:.1f} s")
