"""Banc d'essai de l'API : ``python -m atelier bench``.

Mesure, en une seule exécution et sur la boucle locale (127.0.0.1) :

1. la **borne de calcul**, dans le processus du banc : décoder l'image avec le vrai
   :func:`~atelier.preprocessing.load_image` puis passer le réseau, par lots de la taille qu'utilise le
   serveur (16), sans HTTP — ce que le processeur peut faire au mieux ;
2. la **route triviale** du même serveur (``GET /health``) — ce que HTTP + FastAPI coûtent au mieux ;
3. la **vraie API** : ``POST /predict`` de ``python -m atelier serve``, aux concurrences demandées (1, 8
   et 32 connexions par défaut), p50 et p99 ;
4. l'**API naïve** des tutoriels (:mod:`atelier.naive_app`, ``model.predict`` à chaque requête), à une
   seule concurrence ;
5. le coût d'une **explication** (``POST /explain?format=png`` : prédiction + Grad-CAM + PNG), à une
   connexion seulement puisque le serveur n'en calcule qu'une à la fois (ms par explication, comparées
   à une prédiction seule) ;
6. avec ``--peers``, un **pair** : le même modèle servi par LitServe (:mod:`atelier.bench_peers`).

Un serveur qui n'ajouterait rien au calcul ni à la route triviale servirait au plus
``1 / (1 / calcul + 1 / route triviale)`` requêtes par seconde : c'est la **borne** (``bound_rps``), et le
rapport ``/predict`` / borne dit ce que le serveur perd. Les serveurs tournent dans des processus séparés
du générateur de charge. Le générateur est ``wrk`` s'il est installé (paquet Debian/Ubuntu ``wrk``,
Homebrew ``wrk``), sinon un client HTTP/1.1 en asyncio avec connexions persistantes, dont on mesure la
charge processeur pour signaler s'il devient lui-même le facteur limitant. La charge de la machine
(``os.getloadavg``) est notée avant et après : sur une machine partagée, seuls les rapports mesurés dans
une même exécution se comparent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .formatting import decimal, percent
from .server import free_port

#: Pause after a measure for a server whose queue cannot be read (its last requests finish meanwhile).
DRAIN_PAUSE_S = 1.0
#: Concurrency used for the headline figures (``connections``, the naive API, ``predict_vs_naive``).
HEADLINE_CONNECTIONS = 8
BOUNDARY = "atelier-bench-7f3a9c"

TARGETS = {
    "health": "route triviale (GET /health)",
    "predict": "vraie API (POST /predict)",
    "naive": "API naïve (model.predict)",
    "explain": "explication (POST /explain)",
    "litserve": "LitServe (--peers)",
}


@dataclass(frozen=True)
class Objective:
    """Un objectif du bench, défini une seule fois : la valeur du résumé qu'il lit, son seuil, sa phrase."""

    value: str  # key of the summary
    at_least: bool  # True: value >= threshold; False: value <= threshold
    threshold: float
    unit: Callable[[float], str]  # French formatting of a value and of the threshold
    wording: str  # "{value}" is replaced by the formatted measure
    connections: int | None = None  # the value is a {"c": value} dict of the summary: this level

    @property
    def name(self) -> str:
        """Key of ``summary["targets"]``, for instance ``"p99_ms@8 <= 25"``."""
        where = "" if self.connections is None else f"@{self.connections}"
        return f"{self.value}{where} {'>=' if self.at_least else '<='} {self.threshold:g}"

    def measured(self, summary: dict[str, Any]) -> float | None:
        """The value this objective reads in *summary*, or ``None`` if it was not measured."""
        value = summary.get(self.value)
        if self.connections is not None:
            value = value.get(str(self.connections)) if isinstance(value, dict) else None
        return None if value is None else float(value)

    def met(self, measured: float) -> bool:
        return measured >= self.threshold if self.at_least else measured <= self.threshold

    def sentence(self, measured: float, met: bool) -> str:
        sign = "≥" if self.at_least else "≤"
        verdict = "atteint" if met else "non atteint"
        text = self.wording.format(value=self.unit(measured))
        return f"{text} (objectif {sign} {self.unit(self.threshold)} : {verdict})"


def _ms(x: float) -> str:
    return f"{decimal(x, 1)} ms"


def _times(x: float) -> str:
    return f"{decimal(x, 2)} ×"


OBJECTIVES = (
    Objective("vs_bound", True, 0.70, lambda x: percent(x, 0), "c=8 : /predict = {value} de la borne", 8),
    Objective("p99_ms", False, 25, _ms, "c=8 : p99 = {value}", 8),
    Objective("p99_ms", False, 60, _ms, "c=32 : p99 = {value}", 32),
    Objective("p50_ms", False, 3, _ms, "c=1 : p50 = {value}", 1),
    Objective("predict_vs_naive", True, 20, lambda x: f"{decimal(x, 1)} ×", "/predict = {value} l'API naïve"),
    Objective("vs_litserve", True, 1.5, _times, "c=8 : /predict = {value} LitServe", 8),
    Objective("vs_litserve", True, 1.5, _times, "c=32 : /predict = {value} LitServe", 32),
)

WRK_SCRIPT = r"""
-- Sets a multipart body read from a file (binary-safe), counts the non-2xx statuses of each thread, and prints
-- the results as one JSON line.
local body_path = os.getenv("ATELIER_BENCH_BODY")
if body_path and body_path ~= "" then
  local f = assert(io.open(body_path, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = os.getenv("ATELIER_BENCH_CONTENT_TYPE")
end

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  if status > 299 then statuses[status] = (statuses[status] or 0) + 1 end
end

function done(summary, latency, requests)
  local e = summary.errors
  local kinds = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do kinds[tostring(status)] = (kinds[tostring(status)] or 0) + n end
  end
  kinds["connect"], kinds["read"], kinds["write"], kinds["timeout"] = e.connect, e.read, e.write, e.timeout
  local parts = {}
  for kind, n in pairs(kinds) do
    if n > 0 then table.insert(parts, string.format('"%s": %d', kind, n)) end
  end
  io.write(string.format(
    'ATELIER_JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ", ")))
end
"""


class BenchError(RuntimeError):
    """Le banc d'essai n'a pas pu être mené (serveur qui ne démarre pas, générateur absent…)."""


@dataclass
class Measure:
    """Une mesure : une cible à une concurrence donnée."""

    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    generator_cpu: float | None = None  # share of one core used by the Python generator (None for wrk)
    #: The errors by kind: an HTTP status ("503": 5) or a socket error ("connect", "read", "write", "timeout").
    statuses: dict[str, int] = field(default_factory=dict)
    #: Processor time the server (all its processes) spent per answered request, in ms (None: not measurable).
    server_cpu_ms: float | None = None
    #: Requests per second of each repetition (``--repeat``), in the order they ran; the figures are medians.
    runs: list[float] = field(default_factory=list)


# --- request bodies ---------------------------------------------------------------------------------------


def sample_jpeg(size: int = 64, seed: int = 0) -> bytes:
    """Une petite image JPEG texturée (comme une tuile satellite de l'atelier)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array([40, 120, 60]) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def multipart_body(image: bytes, field: str = "file", filename: str = "tuile.jpg") -> tuple[bytes, str]:
    """Corps ``multipart/form-data`` avec un seul fichier ; renvoie (corps, type de contenu)."""
    body = (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={BOUNDARY}"


# --- servers in subprocesses ------------------------------------------------------------------------------


class ServerProcess:
    """Un serveur lancé dans un sous-processus ; attend que ``GET /health`` réponde."""

    def __init__(self, name: str, command: Sequence[str], port: int, workdir: Path, timeout: float = 120) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"{name}.log"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the server's log while it runs, closed by stop()
        # Its own process group (POSIX): stop() ends the server's children too (LitServe spawns several).
        self.process = subprocess.Popen(
            list(command), stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=os.name != "nt"
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_idle(self, timeout: float = 120) -> None:
        """Attend que le serveur ait fini les requêtes laissées par le générateur (``/health`` puis la file vide).

        Quand ``wrk`` s'arrête, il ferme ses connexions, mais les requêtes qu'elles avaient envoyées restent
        en calcul : sans cette attente, la mesure suivante commençait avec jusqu'à 32 requêtes de plus en
        cours, et le délestage (``--max-inflight 32``) en refusait quelques-unes à 32 connexions (des 503
        comptés en erreurs, mesuré). ``GET /health`` ne suffit pas : il répond pendant que les
        prédictions attendent.
        """
        self._wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while True:
            depth = self._queue_depth()
            if depth is None:  # no such gauge (a peer, the naive API): a fixed pause
                time.sleep(DRAIN_PAUSE_S)
                return
            if depth <= 0 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(0.1)  # the last answers are being written: their admission slots are released just after

    def cpu_seconds(self) -> float | None:
        """Processor time (user + system) used so far by the server and every process of its group (Linux).

        Less dependent on the machine's load than requests per second: a server slowed down by other
        programs takes longer, not more processor time, to answer a request. ``None`` without ``/proc``.
        """
        total, found = 0.0, False
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # ended meanwhile
            if int(fields[2]) == self.process.pid:  # its process group (start_new_session)
                total += (int(fields[11]) + int(fields[12])) / ticks
                found = True
        return total if found else None

    def _queue_depth(self) -> float | None:
        """``atelier_queue_depth`` of the server's ``/metrics`` (predictions in progress), ``None`` if absent."""
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
                text = response.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError):
            return None
        match = re.search(r"^atelier_queue_depth ([0-9.eE+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"Le serveur « {self.name} » s'est arrêté au démarrage :\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=10) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise BenchError(f"Le serveur « {self.name} » n'a pas répondu en {timeout:g} s :\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL if os.name != "nt" else signal.SIGTERM)
                self.process.wait(5)
        if os.name != "nt":  # children still alive in the group (the server itself has exited)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()

    def _signal(self, sig: int) -> None:
        """*sig* to the server and, on POSIX, to every process of its group (its own id)."""
        if os.name == "nt":
            self.process.terminate()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- load generators --------------------------------------------------------------------------------------


class WrkGenerator:
    """``wrk`` (C, boucle d'événements) : ne sature pas avant un serveur Python."""

    name = "wrk"

    def __init__(self, workdir: Path, body: bytes, content_type: str) -> None:
        executable = shutil.which("wrk")
        if executable is None:
            raise BenchError("wrk n'est pas installé (paquet « wrk » de Debian/Ubuntu ou de Homebrew).")
        self.executable: str = executable
        self.script = workdir / "atelier_bench.lua"
        self.script.write_text(WRK_SCRIPT, encoding="utf-8")
        self.body_path = workdir / "body.bin"
        self.body_path.write_bytes(body)
        self.content_type = content_type

    def run(self, url: str, post: bool, connections: int, duration: float) -> dict[str, Any]:
        env = dict(
            os.environ,
            ATELIER_BENCH_BODY=str(self.body_path) if post else "",
            ATELIER_BENCH_CONTENT_TYPE=self.content_type,
        )
        command = [
            self.executable,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "30s",
            "-s",
            str(self.script),
            url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration + 60)
        match = re.search(r"^ATELIER_JSON (\{.*\})$", out.stdout, re.MULTILINE)
        if out.returncode != 0 or match is None:
            raise BenchError(f"wrk a échoué (code {out.returncode}) :\n{out.stdout}\n{out.stderr}")
        raw = json.loads(match.group(1))
        return {
            "requests": raw["requests"],
            "errors": raw["errors"],
            "seconds": raw["duration_us"] / 1e6,
            "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "generator_cpu": None,
            "statuses": raw["statuses"],
        }


class PythonGenerator:
    """Client HTTP/1.1 minimal en asyncio (connexions persistantes, octets bruts) : la solution de repli.

    Il tourne dans le processus du banc d'essai ; sa part de processeur est mesurée : au-delà de ~80 %
    d'un cœur, c'est lui qui limite la mesure (les chiffres sont alors des minima).
    """

    name = "python"

    def __init__(self, workdir: Path, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type

    def _request(self, url: str, post: bool) -> tuple[str, int, bytes]:
        match = re.match(r"http://([^:/]+):(\d+)(/.*)$", url)
        assert match, url
        host, port, path = match.group(1), int(match.group(2)), match.group(3)
        if post:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {self.content_type}\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            )
            return host, port, head.encode() + self.body
        return host, port, f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    def run(self, url: str, post: bool, connections: int, duration: float) -> dict[str, Any]:
        host, port, request = self._request(url, post)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        latencies, statuses = asyncio.run(_python_load(host, port, request, connections, duration))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        latencies.sort()
        return {
            "requests": len(latencies),
            "errors": sum(statuses.values()),
            "seconds": duration,
            "p50_ms": _percentile(latencies, 50) * 1000,
            "p99_ms": _percentile(latencies, 99) * 1000,
            "generator_cpu": cpu / wall if wall else None,
            "statuses": statuses,
        }


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


async def _python_load(host: str, port: int, request: bytes, connections: int, duration: float):
    latencies: list[float] = []
    statuses: dict[str, int] = {}  # the errors by kind, as wrk's script counts them
    deadline = time.perf_counter() + duration

    def error(kind: str) -> None:
        statuses[kind] = statuses.get(kind, 0) + 1

    async def worker() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while time.perf_counter() < deadline:
            try:
                if reader is None or writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _CONTENT_LENGTH.search(head)
                if length is None:
                    raise ConnectionError("réponse sans Content-Length")
                await reader.readexactly(int(length.group(1)))
                finished = time.perf_counter()
                if finished <= deadline:  # count only responses completed inside the window
                    latencies.append(finished - started)
                    if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                        error(head[9:12].decode("latin-1"))
                if b"connection: close" in head.lower():
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                error("read" if writer is not None else "connect")
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(connections)]
    # requests still in flight at the deadline are not counted; give them a little time, then cancel
    _, pending = await asyncio.wait(tasks, timeout=duration + 30)
    for task in pending:
        task.cancel()
    return latencies, statuses


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def make_generator(kind: str, workdir: Path, body: bytes, content_type: str):
    """``kind`` : ``"auto"`` (wrk s'il est installé, sinon Python), ``"wrk"`` ou ``"python"``."""
    if kind == "wrk" or (kind == "auto" and shutil.which("wrk")):
        return WrkGenerator(workdir, body, content_type)
    if kind in ("auto", "python"):
        return PythonGenerator(workdir, body, content_type)
    raise BenchError(f"Générateur inconnu : {kind!r} (auto, wrk ou python).")


# --- the benchmark ----------------------------------------------------------------------------------------


def untrained_model(workdir: Path) -> Path:
    """Enregistre un CNN de l'atelier non entraîné (les poids n'influent pas sur la vitesse)."""
    import keras

    from .labels import CLASSES
    from .model import build_cnn
    from .model_io import save_model

    keras.utils.set_random_seed(0)
    path = workdir / "cnn_non_entraine.keras"
    save_model(build_cnn(CLASSES, 64, augment=False), path, classes=CLASSES, data_source="bench", metrics={})
    return path


def _post_once(url: str, body: bytes, content_type: str, timeout: float = 300) -> None:
    """One POST, waiting for its answer (a :class:`BenchError` if it fails)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise BenchError(f"La requête de chauffe {url} a échoué : {exc}") from None


def _measure(generator, target: str, server: ServerProcess, path: str, post: bool, c: int, duration: float) -> Measure:
    cpu_before = server.cpu_seconds()
    raw = generator.run(server.url + path, post, c, duration)
    cpu_after = server.cpu_seconds()
    seconds = raw["seconds"] or duration
    cpu_ms = None
    if cpu_before is not None and cpu_after is not None and raw["requests"]:
        cpu_ms = (cpu_after - cpu_before) * 1000 / raw["requests"]
    return Measure(
        target=target,
        connections=c,
        rps=raw["requests"] / seconds,
        p50_ms=raw["p50_ms"],
        p99_ms=raw["p99_ms"],
        requests=raw["requests"],
        errors=raw["errors"],
        generator_cpu=raw["generator_cpu"],
        statuses=dict(raw["statuses"]),
        server_cpu_ms=cpu_ms,
        runs=[raw["requests"] / seconds],
    )


def median_measure(measures: Sequence[Measure]) -> Measure:
    """One level measured several times (``--repeat``): the median of each figure, the requests and errors summed."""
    statuses: dict[str, int] = {}
    for m in measures:
        for kind, n in m.statuses.items():
            statuses[kind] = statuses.get(kind, 0) + n
    cpu = [m.generator_cpu for m in measures if m.generator_cpu is not None]
    server_cpu = [m.server_cpu_ms for m in measures if m.server_cpu_ms is not None]
    return Measure(
        target=measures[0].target,
        connections=measures[0].connections,
        rps=statistics.median(m.rps for m in measures),
        p50_ms=statistics.median(m.p50_ms for m in measures),
        p99_ms=statistics.median(m.p99_ms for m in measures),
        requests=sum(m.requests for m in measures),
        errors=sum(m.errors for m in measures),
        generator_cpu=max(cpu) if cpu else None,
        statuses=statuses,
        server_cpu_ms=round(statistics.median(server_cpu), 3) if server_cpu else None,
        runs=[round(rps, 1) for m in measures for rps in m.runs],
    )


def measure_compute(
    model_path: Path, image: bytes, batch_size: int, seconds: float, repeat: int = 1
) -> tuple[float, str]:
    """Images par seconde que le processeur décode (vrai ``load_image``) et passe au réseau, par lots, sans HTTP,
    et le moteur qui a calculé (celui de ``serve``, :func:`atelier.inference.serve_runtime`, ou TensorFlow s'il a
    fallu y revenir).

    Avec *repeat* > 1, la médiane de *repeat* fenêtres de *seconds* secondes.
    """
    import numpy as np

    from .inference import ServingModel, serve_runtime
    from .preprocessing import load_image

    # The network as the server computes it (serve's runtime: TensorFlow Lite unless $ATELIER_INFERENCE_RUNTIME).
    serving = ServingModel.load(model_path, warm_batch_sizes=(batch_size,), runtime=serve_runtime())
    size = serving.image_size

    def one_batch() -> None:
        serving.run(np.stack([load_image(image, size) for _ in range(batch_size)]).astype(np.float32))

    def window() -> float:
        done, started = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - started < seconds:
            one_batch()
            done += batch_size
        return done / (time.perf_counter() - started)

    one_batch()
    return statistics.median(window() for _ in range(max(1, repeat))), serving.runtime


def load_average() -> list[float] | None:
    """La charge de la machine (1, 5, 15 min) ; ``None`` là où elle n'existe pas (Windows)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class _Series:
    """Measures one server at several concurrency levels with one generator (warm-up first)."""

    def __init__(self, generator, duration: float, warmup: float, log, repeat: int = 1) -> None:
        self.generator = generator
        self.duration = duration
        self.warmup = warmup
        self.log = log
        self.repeat = repeat
        self.measures: list[Measure] = []

    def run(self, target: str, server: ServerProcess, path: str, post: bool, levels: Sequence[int]) -> None:
        """Each level *repeat* times, in rounds (1, 8, 32, 1, 8, 32…: a drift of the load hits every level alike)."""
        url = server.url + path
        self.generator.run(url, post, max(levels), self.warmup)  # compiled paths, thread pools, caches
        server.wait_idle()
        rounds: dict[int, list[Measure]] = {c: [] for c in levels}
        for n in range(self.repeat):
            previous_rps = 0.0
            for c in levels:
                # A slow server answers c requests only every c / rps seconds: lengthen the window so
                # that each connection completes several requests (else a short run could count none).
                seconds = self.duration
                if previous_rps > 0:
                    seconds = min(max(self.duration, 3 * c / previous_rps), 10 * self.duration)
                m = _measure(self.generator, target, server, path, post, c, seconds)
                which = f" [{n + 1}/{self.repeat}]" if self.repeat > 1 else ""
                errors = f"  erreurs {errors_text(m)}" if m.errors else ""
                cpu = "" if m.server_cpu_ms is None else f"  {m.server_cpu_ms:.2f} ms CPU/req"
                self.log(
                    f"  {TARGETS[target]:<28} c={c:<3} {m.rps:8.1f} req/s  p99 {m.p99_ms:7.1f} ms{cpu}  "
                    f"({seconds:.0f} s){which}{errors}"
                )
                rounds[c].append(m)
                server.wait_idle()  # requests still queued when the generator stopped must not overlap
                previous_rps = m.rps or previous_rps
        self.measures += [median_measure(rounds[c]) for c in levels]


def errors_text(m: Measure | dict[str, Any]) -> str:
    """``"5 (503 × 5)"``: the number of errors and their kinds (HTTP statuses, socket errors)."""
    errors, statuses = (m.errors, m.statuses) if isinstance(m, Measure) else (m["errors"], m.get("statuses", {}))
    kinds = ", ".join(f"{kind} × {n}" for kind, n in sorted(statuses.items()))
    return f"{errors} ({kinds})" if kinds else str(errors)


def _serve_command(model_path: Path, port: int, workdir: Path) -> list[str]:
    """``python -m atelier serve`` with its defaults (the figures are those a user gets)."""
    return [
        sys.executable,
        "-m",
        "atelier",
        "serve",
        "--model",
        str(model_path),
        "--port",
        str(port),
        "--db",
        str(workdir / "historique.sqlite3"),
    ]


def run_bench(
    model_path: str | Path | None = None,
    *,
    duration: float = 5.0,
    connections: Sequence[int] = (1, 8, 32),
    generator: str = "auto",
    warmup: float = 1.0,
    naive: bool = True,
    peers: bool = False,
    repeat: int = 1,
    log=print,
) -> dict[str, Any]:
    """Mène le banc d'essai complet et renvoie un résumé (voir le module) ; ``log`` reçoit la progression.

    ``repeat`` : chaque mesure est faite ce nombre de fois (par tours : 1, 8, 32, 1, 8, 32…) et le résumé en
    donne la médiane (``--repeat 3`` : la médiane de trois mesures).
    """
    from .inference import DEFAULT_MAX_BATCH_SIZE

    levels = sorted(set(int(c) for c in connections))
    if not levels or levels[0] < 1:
        raise BenchError("Les niveaux de concurrence doivent être des entiers ≥ 1, par exemple 1,8,32.")
    if duration <= 0:
        raise BenchError("La durée doit être positive (en secondes).")
    if repeat < 1:
        raise BenchError("--repeat doit être au moins 1.")
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        workdir = Path(tmp)
        model = _bench_model(model_path, workdir, log)
        image = sample_jpeg()
        body, content_type = multipart_body(image)
        gen = make_generator(generator, workdir, body, content_type)
        log(f"Générateur de charge : {gen.name} ; {duration:g} s par mesure ; concurrences {levels} ; {repeat} fois.")
        compute_rps, runtime = measure_compute(model, image, DEFAULT_MAX_BATCH_SIZE, duration, repeat)
        log(
            f"  calcul seul (load_image + réseau {runtime}, lots de {DEFAULT_MAX_BATCH_SIZE}) : "
            f"{compute_rps:8.1f} images/s"
        )
        series = _Series(gen, duration, warmup, log, repeat)
        headline = min(levels, key=lambda c: (abs(c - HEADLINE_CONNECTIONS), c))
        port = free_port()
        log("Démarrage de la vraie API (python -m atelier serve)…")
        with ServerProcess("api", _serve_command(model, port, workdir), port, workdir) as real:
            series.run("health", real, "/health", False, levels)
            series.run("predict", real, "/predict", True, levels)
            # The first explanation compiles the model's Grad-CAM (seconds): done once, outside the measure.
            _post_once(real.url + "/explain?format=png", body, content_type)
            series.run("explain", real, "/explain?format=png", True, [1])  # one at a time, by design
        if naive:
            port = free_port()
            log("Démarrage de l'API naïve (atelier.naive_app)…")
            command = [sys.executable, "-m", "atelier.naive_app", "--model", str(model), "--port", str(port)]
            with ServerProcess("naive", command, port, workdir) as naive_server:
                series.run("naive", naive_server, "/predict", True, [headline])
        if peers:
            from .bench_peers import litserve_server

            with litserve_server(model, workdir, log) as peer:
                series.run("litserve", peer, "/predict", True, levels)
    return summarize(
        series.measures,
        compute_rps=compute_rps,
        batch_size=DEFAULT_MAX_BATCH_SIZE,
        generator=gen.name,
        duration=duration,
        model=str(model),
        load=(load_before, load_average()),
        repeat=repeat,
        runtime=runtime,
    )


def _bench_model(model_path: str | Path | None, workdir: Path, log) -> Path:
    if model_path is None:
        log("Modèle : CNN de l'atelier non entraîné (la vitesse ne dépend pas des poids).")
        return untrained_model(workdir)
    path = Path(model_path)
    if not path.is_file():
        raise BenchError(f"Modèle introuvable : {path}")
    return path


def _by_level(measures: list[Measure], target: str, field: str) -> dict[str, float]:
    return {str(m.connections): round(getattr(m, field), 2) for m in measures if m.target == target}


def summarize(
    measures: list[Measure],
    *,
    compute_rps: float,
    batch_size: int,
    generator: str,
    duration: float,
    model: str,
    load: tuple[list[float] | None, list[float] | None] = (None, None),
    repeat: int = 1,
    runtime: str | None = None,
) -> dict[str, Any]:
    """Le résumé JSON : la borne, ``/predict`` par concurrence (débit, p50, p99, rapport à la borne), objectifs."""
    predict = [m for m in measures if m.target == "predict"]
    levels = sorted(m.connections for m in predict)
    headline = min(levels, key=lambda c: (abs(c - HEADLINE_CONNECTIONS), c))
    health_rps = max((m.rps for m in measures if m.target == "health"), default=0.0)
    bound = 1 / (1 / compute_rps + 1 / health_rps) if compute_rps > 0 and health_rps > 0 else 0.0
    predict_rps = _by_level(measures, "predict", "rps")
    naive_rps = next((m.rps for m in measures if m.target == "naive"), None)
    headline_rps = predict_rps[str(headline)]
    summary: dict[str, Any] = {
        "bound_rps": round(bound, 1),
        "compute_rps": round(compute_rps, 1),
        "health_rps": round(health_rps, 1),
        "batch_size": batch_size,
        "runtime": runtime,
        "predict_rps": predict_rps,
        "p50_ms": _by_level(measures, "predict", "p50_ms"),
        "p99_ms": _by_level(measures, "predict", "p99_ms"),
        "vs_bound": {c: round(rps / bound, 3) if bound else 0.0 for c, rps in predict_rps.items()},
        "server_cpu_ms": _by_level([m for m in predict if m.server_cpu_ms is not None], "predict", "server_cpu_ms"),
        "connections": headline,
        "naive_rps": None if naive_rps is None else round(naive_rps, 1),
        "predict_vs_naive": round(headline_rps / naive_rps, 1) if naive_rps else None,
    }
    explain = next((m for m in measures if m.target == "explain" and m.requests), None)  # none done: no figure
    alone = next((m for m in predict if explain and m.connections == explain.connections), None)
    summary["explain_ms"] = round(explain.p50_ms, 1) if explain else None
    summary["explain_vs_predict"] = (
        round(explain.p50_ms / alone.p50_ms, 1) if explain and alone and alone.p50_ms else None
    )
    # A peer that answered errors is not compared (its requests per second would be errors per second).
    litserve = {str(m.connections): round(m.rps, 2) for m in measures if m.target == "litserve" and not m.errors}
    if litserve:
        summary["litserve_rps"] = litserve
        summary["litserve_p99_ms"] = _by_level(measures, "litserve", "p99_ms")
        peer_cpu = [m for m in measures if m.target == "litserve" and m.server_cpu_ms is not None]
        summary["litserve_server_cpu_ms"] = _by_level(peer_cpu, "litserve", "server_cpu_ms")
        summary["vs_litserve"] = {
            c: round(predict_rps[c] / rps, 2) for c, rps in litserve.items() if rps and c in predict_rps
        }
    cpu = [m.generator_cpu for m in measures if m.generator_cpu is not None]
    summary["targets"] = {}
    for objective in OBJECTIVES:
        value = objective.measured(summary)
        if value is not None:
            summary["targets"][objective.name] = objective.met(value)
    summary.update(
        {
            "errors": sum(m.errors for m in measures),
            "error_statuses": median_measure(measures).statuses if measures else {},
            "repeat": repeat,
            "generator": generator,
            "generator_max_cpu": round(max(cpu), 2) if cpu else None,
            "duration_s": duration,
            "cpu_count": os.cpu_count(),
            "load_before": load[0],
            "load_after": load[1],
            "model": model,
            "results": [asdict(m) for m in measures],
        }
    )
    return summary


def _explain_sentence(summary: dict[str, Any]) -> list[str]:
    """The explanation cost, in French (nothing if it was not measured)."""
    if summary.get("explain_ms") is None:
        return []
    ratio = summary.get("explain_vs_predict")
    versus = f", {decimal(ratio, 1)} fois une prédiction seule (p50 à 1 connexion)" if ratio else ""
    return [f"Une explication (Grad-CAM, une à la fois) : {decimal(summary['explain_ms'], 1)} ms (p50){versus}."]


def _repeat_text(summary: dict[str, Any]) -> str:
    repeat = summary.get("repeat", 1)
    return f", médiane de {repeat} mesures" if repeat > 1 else ""


def _runtime_label(summary: dict[str, Any]) -> str:
    """« tflite » after « réseau » in the bound's line, when the summary says which runtime computed."""
    return f" {summary['runtime']}" if summary.get("runtime") else ""


def format_table(summary: dict[str, Any]) -> str:
    """Le tableau des mesures, en français, puis les objectifs et la charge de la machine."""
    rows = [("cible", "connexions", "req/s", "p50 (ms)", "p99 (ms)", "/ borne", "CPU ms/req", "requêtes", "erreurs")]
    bound = summary["bound_rps"]
    for target in TARGETS:
        for m in summary["results"]:
            if m["target"] == target:
                ratio = f"{m['rps'] / bound:.0%}" if bound and target not in ("health", "explain") else ""
                rows.append(
                    (
                        TARGETS[target],
                        str(m["connections"]),
                        f"{m['rps']:.1f}",
                        f"{m['p50_ms']:.1f}",
                        f"{m['p99_ms']:.1f}",
                        ratio,
                        "" if m.get("server_cpu_ms") is None else f"{m['server_cpu_ms']:.2f}",
                        str(m["requests"]),
                        errors_text(m),
                    )
                )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(cells)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        f"Calcul seul (load_image + réseau{_runtime_label(summary)}, lots de {summary['batch_size']}) : "
        f"{decimal(summary['compute_rps'], 0)} "
        f"images/s ; route triviale : {decimal(summary['health_rps'], 0)} req/s ; borne "
        f"1 / (1/calcul + 1/triviale) = {decimal(bound, 0)} req/s.",
    ]
    for objective in OBJECTIVES:
        value = objective.measured(summary)
        if value is not None:
            lines.append("- " + objective.sentence(value, summary["targets"][objective.name]))
    lines += _explain_sentence(summary)
    load = (
        "" if summary["load_before"] is None else f" ; charge {summary['load_before'][0]} → {summary['load_after'][0]}"
    )
    lines.append(
        f"Générateur : {summary['generator']} ; {summary['cpu_count']} cœurs ; {summary['duration_s']:g} s par "
        f"mesure{_repeat_text(summary)}{load} (sur une machine chargée, seuls les rapports d'une même exécution "
        "se comparent)."
    )
    if summary["generator_max_cpu"] is not None and summary["generator_max_cpu"] > 0.8:
        lines.append(
            f"Attention : le générateur Python a utilisé jusqu'à {summary['generator_max_cpu']:.0%} d'un cœur ; "
            "il limite peut-être la mesure (installez wrk pour des chiffres fiables)."
        )
    if summary["errors"]:
        kinds = ", ".join(f"{kind} × {n}" for kind, n in sorted(summary.get("error_statuses", {}).items()))
        lines.append(
            f"Attention : {summary['errors']} requêtes en erreur pendant les mesures"
            + (f" ({kinds} ; 503 : délestage, timeout : pas de réponse à temps)." if kinds else ".")
        )
    return "\n".join(lines)
