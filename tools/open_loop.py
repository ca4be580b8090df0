"""Charge « en boucle ouverte » contre ``POST /predict`` : la capacité, puis un débit fixe au-delà.

Un client en boucle fermée (comme ``wrk`` ou ``bench``) attend chaque réponse avant d'envoyer la
suivante : quand le serveur ralentit, il ralentit avec lui et ne voit jamais la surcharge. Des
utilisateurs réels, eux, continuent d'arriver. Ce programme envoie donc les requêtes à heure fixe
(comme ``wrk2``) : la requête n° i part à ``i / débit`` secondes, sur une connexion libre ou une
nouvelle, et sa latence est comptée depuis cette heure prévue (pas d'« omission coordonnée »).

En une exécution :

1. la **capacité** : ``--connections`` clients en boucle fermée pendant ``--capacity-seconds`` ;
2. la **surcharge** : ``--factor`` × capacité requêtes par seconde pendant ``--duration`` secondes ;
3. le bilan : latences (p50, p99) des requêtes acceptées (200), part des 503 (avec ``Retry-After``),
   requêtes sans réponse, connexions ouvertes, mémoire (RSS) du serveur, et ``GET /health`` après.

Exemples ::

    # lance lui-même « python -m atelier serve » (CNN non entraîné) sur un port libre :
    python tools/open_loop.py --serve --factor 1.2 --duration 10
    # contre un serveur déjà lancé (RSS lue dans /proc si --pid est donné) :
    python tools/open_loop.py --url http://127.0.0.1:8000 --pid 12345 --rate 1000

    # clients lents (« slowloris ») : quand le serveur les coupe-t-il, /health répond-il pendant ce temps ?
    python tools/open_loop.py --serve --slow-clients 2000

Dernière ligne : le bilan en JSON. Options de ``serve`` après ``--`` (par exemple ``-- --max-inflight 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atelier.bench import ServerProcess, multipart_body, sample_jpeg, untrained_model
from atelier.server import free_port

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def predict_request(host: str, port: int) -> bytes:
    """La requête HTTP/1.1 complète (en-têtes + corps multipart d'une tuile JPEG 64×64)."""
    body, content_type = multipart_body(sample_jpeg())
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """(statut, en-têtes bruts, corps) d'une réponse à ``Content-Length``."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = _STATUS.match(head)
    length = _CONTENT_LENGTH.search(head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return (int(status.group(1)) if status else 0), head, body


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class Tally:
    """Ce qu'a vu le client : statuts, latences, erreurs, connexions."""

    statuses: collections.Counter = field(default_factory=collections.Counter)
    accepted_ms: list[float] = field(default_factory=list)
    shed_ms: list[float] = field(default_factory=list)
    shed_without_retry_after: int = 0
    shed_not_french: int = 0
    errors: int = 0
    error_kinds: collections.Counter = field(default_factory=collections.Counter)
    hung: int = 0
    open_connections: int = 0
    peak_connections: int = 0


class Client:
    """Des connexions persistantes vers le serveur : une libre est réutilisée, sinon une nouvelle est ouverte."""

    def __init__(self, host: str, port: int, request: bytes, timeout: float, max_connections: int) -> None:
        self.host, self.port, self.request = host, port, request
        self.timeout = timeout
        self.max_connections = max_connections
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.tally = Tally()

    async def one(self, scheduled: float) -> int:
        """Une requête prévue à l'instant *scheduled* (horloge ``perf_counter``) ; son statut (0 : pas de réponse).

        Comme un vrai client (urllib3), une connexion persistante que le serveur a fermée entre-temps
        (inactive depuis plus que son ``timeout_keep_alive``) n'est pas une erreur : la requête repart
        une fois sur une nouvelle connexion.
        """
        tally = self.tally
        for attempt in (1, 2):
            connection = await self._connection(fresh=attempt == 2)
            if connection is None:
                return 0
            reader, writer, reused = connection
            try:
                writer.write(self.request)
                status, head, body = await asyncio.wait_for(read_response(reader), self.timeout)
            except asyncio.TimeoutError:
                tally.hung += 1
                self._close(writer)
                return 0
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self._close(writer)
                stale = reused and (not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial)
                if stale and attempt == 1:
                    continue
                tally.errors += 1
                tally.error_kinds[f"réponse : {type(exc).__name__}"] += 1
                return 0
            break
        elapsed_ms = (time.perf_counter() - scheduled) * 1000
        self._count(status, head, body, elapsed_ms)
        if b"connection: close" in head.lower():
            self._close(writer)
        else:
            self.idle.append((reader, writer))
        return status

    async def _connection(self, fresh: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool] | None:
        """An idle connection (unless *fresh*) or a new one: ``(reader, writer, reused)``; None if none."""
        tally = self.tally
        while self.idle and not fresh:
            reader, writer = self.idle.pop()
            if not reader.at_eof():
                return reader, writer, True
            self._close(writer)  # closed by the server while idle
        if tally.open_connections >= self.max_connections:
            tally.errors += 1  # the client's own limit: counted, never waited for
            tally.error_kinds["limite du client"] += 1
            return None
        tally.open_connections += 1
        tally.peak_connections = max(tally.peak_connections, tally.open_connections)
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            tally.open_connections -= 1
            tally.errors += 1
            tally.error_kinds[f"connexion : {type(exc).__name__}"] += 1
            return None
        return reader, writer, False

    def _count(self, status: int, head: bytes, body: bytes, elapsed_ms: float) -> None:
        tally = self.tally
        tally.statuses[status] += 1
        if status == 200:
            tally.accepted_ms.append(elapsed_ms)
        elif status == 503:
            tally.shed_ms.append(elapsed_ms)
            if b"\r\nretry-after:" not in head.lower():
                tally.shed_without_retry_after += 1
            try:
                detail = json.loads(body)["detail"]
            except (ValueError, KeyError, TypeError):
                detail = ""
            if "réessayez" not in detail.lower():
                tally.shed_not_french += 1

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self.tally.open_connections -= 1
        writer.close()

    def close_all(self) -> None:
        while self.idle:
            self._close(self.idle.pop()[1])


async def closed_loop(client: Client, connections: int, seconds: float) -> float:
    """Débit (requêtes/s) de *connections* clients qui enchaînent les requêtes pendant *seconds*."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await client.one(time.perf_counter()) == 200:
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.perf_counter() - started)


async def open_loop(client: Client, rate: float, seconds: float) -> None:
    """*rate* requêtes par seconde à heure fixe pendant *seconds* ; attend la fin de chacune (ou son délai)."""
    total = int(rate * seconds)
    start = time.perf_counter()
    tasks: set[asyncio.Task] = set()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            task = asyncio.ensure_future(client.one(start + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    if tasks:
        await asyncio.wait(tasks)


class ServerWatch:
    """Échantillonne la mémoire (RSS) et les descripteurs ouverts du processus serveur (Linux, /proc)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.rss_mb: list[float] = []
        self.fds: list[int] = []

    def sample(self) -> None:
        if self.pid is None:
            return
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            self.rss_mb.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)  # type: ignore[union-attr]
            self.fds.append(len(list(Path(f"/proc/{self.pid}/fd").iterdir())))
        except (OSError, AttributeError):
            pass

    async def run(self, period: float = 0.25) -> None:
        while True:
            self.sample()
            await asyncio.sleep(period)


def health_ms(url: str) -> float | None:
    """Durée de ``GET /health`` en ms (``None`` si pas de réponse 200 en 5 s)."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            ok = response.status == 200
    except OSError:
        return None
    return (time.perf_counter() - started) * 1000 if ok else None


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def slow_client(host: str, port: int, head: bytes, trickle: bytes, period: float) -> tuple[float, bytes]:
    """Un client « slowloris » : *head*, puis un octet de *trickle* toutes les *period* secondes.

    Renvoie (secondes jusqu'à ce que le serveur ferme la connexion, ce qu'il a répondu) ; si tout
    *trickle* passe sans fermeture, la durée totale (le serveur ne l'a pas coupé).
    """
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(head)
    received = b""
    for byte in trickle:
        try:
            data = await asyncio.wait_for(reader.read(65536), period)
        except asyncio.TimeoutError:
            writer.write(bytes([byte]))
            continue
        except ConnectionError:
            break
        received += data
        if not data or reader.at_eof():
            break
    writer.close()
    return time.monotonic() - started, received


async def health_probes(host: str, port: int, stop: asyncio.Event, period: float = 0.5) -> list[tuple[int, float]]:
    """``GET /health`` sur une nouvelle connexion toutes les *period* s jusqu'à *stop* : (statut, secondes)."""
    probes = []
    while not stop.is_set():
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: sonde\r\nConnection: close\r\n\r\n")
        status, _, _ = await asyncio.wait_for(read_response(reader), 30)
        writer.close()
        probes.append((status, time.monotonic() - started))
        await asyncio.sleep(period)
    return probes


async def slow_clients(url: str, count: int, seconds: float) -> dict[str, Any]:
    """*count* clients qui envoient leurs en-têtes un octet par seconde pendant au plus *seconds* s."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stop = asyncio.Event()
    probes = asyncio.ensure_future(health_probes(host, port, stop))
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nX-Lent: ".encode()
    clients = []
    for index in range(count):
        clients.append(asyncio.ensure_future(slow_client(host, port, head, b"a" * int(seconds), 1.0)))
        if index % 100 == 99:
            await asyncio.sleep(0.01)  # like a real attack: a little spread out
    results = await asyncio.gather(*clients, return_exceptions=True)
    stop.set()
    health = await probes
    closed = sorted(r[0] for r in results if isinstance(r, tuple) and r[0] < seconds - 1)
    answers = collections.Counter(
        (r[1].split(b"\r\n", 1)[0].decode("ascii", "replace") or "(fermée sans réponse)")
        if isinstance(r, tuple)
        else type(r).__name__
        for r in results
    )
    return {
        "slow_clients": count,
        "closed": len(closed),
        "still_open": count - len(closed),
        "closed_after_s": [round(closed[0], 1), round(closed[len(closed) // 2], 1), round(closed[-1], 1)]
        if closed
        else None,
        "answers": dict(answers),
        "health": dict(collections.Counter(status for status, _ in health)),
        "health_max_ms": round(max(t for _, t in health) * 1000, 1) if health else None,
    }


async def measure(url: str, pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = predict_request(host, port)
    watch = ServerWatch(pid)
    capacity = args.rate
    if capacity is None:
        probe = Client(host, port, request, args.timeout, args.connections)
        await closed_loop(probe, args.connections, 1.0)  # warm-up
        capacity = await closed_loop(probe, args.connections, args.capacity_seconds)
        probe.close_all()
        rate = args.factor * capacity
    else:
        rate = capacity
    await asyncio.sleep(1.0)
    watch.sample()
    rss_before = watch.rss_mb[-1] if watch.rss_mb else None
    watcher = asyncio.ensure_future(watch.run())
    client = Client(host, port, request, args.timeout, args.max_connections)
    started = time.perf_counter()
    await open_loop(client, rate, args.duration)
    elapsed = time.perf_counter() - started
    watcher.cancel()
    client.close_all()
    await asyncio.sleep(2.0)
    watch.sample()
    tally = client.tally
    sent = sum(tally.statuses.values()) + tally.errors + tally.hung
    return {
        "capacity_rps": round(capacity, 1) if args.rate is None else None,
        "rate_rps": round(rate, 1),
        "sent": sent,
        "seconds": round(elapsed, 2),
        "accepted": tally.statuses[200],
        "accepted_rps": round(tally.statuses[200] / args.duration, 1),
        "accepted_p50_ms": _rounded(percentile(tally.accepted_ms, 50)),
        "accepted_p99_ms": _rounded(percentile(tally.accepted_ms, 99)),
        "shed_503": tally.statuses[503],
        "shed_percent": round(100 * tally.statuses[503] / max(1, sent), 1),
        "shed_p50_ms": _rounded(percentile(tally.shed_ms, 50)),
        "shed_p99_ms": _rounded(percentile(tally.shed_ms, 99)),
        "shed_without_retry_after": tally.shed_without_retry_after,
        "shed_not_french": tally.shed_not_french,
        "other_statuses": {str(k): v for k, v in tally.statuses.items() if k not in (200, 503)},
        "errors": tally.errors,
        "error_kinds": dict(tally.error_kinds),
        "hung": tally.hung,
        "client_peak_connections": tally.peak_connections,
        "server_peak_fds": max(watch.fds) if watch.fds else None,
        "rss_before_mb": _rounded(rss_before),
        "rss_peak_mb": _rounded(max(watch.rss_mb) if watch.rss_mb else None),
        "rss_after_mb": _rounded(watch.rss_mb[-1] if watch.rss_mb else None),
        "health_after_ms": _rounded(health_ms(url)),
    }


def report(result: dict[str, Any]) -> str:
    if "slow_clients" in result:
        low, mid, high = result["closed_after_s"] or (None, None, None)
        return (
            f"clients lents : {result['slow_clients']}, fermés par le serveur : {result['closed']} "
            f"(après {low} / {mid} / {high} s : min / médiane / max), encore ouverts : {result['still_open']}\n"
            f"réponses : {result['answers']}\nGET /health pendant ce temps : {result['health']}, "
            f"au plus {result['health_max_ms']} ms"
        )
    lines = []
    if result["capacity_rps"] is not None:
        lines.append(f"capacité (boucle fermée) : {result['capacity_rps']} req/s")
    lines += [
        f"charge : {result['rate_rps']} req/s pendant {result['seconds']} s ({result['sent']} requêtes)",
        f"acceptées (200) : {result['accepted']} ({result['accepted_rps']} req/s), "
        f"p50 {result['accepted_p50_ms']} ms, p99 {result['accepted_p99_ms']} ms",
        f"délestées (503) : {result['shed_503']} ({result['shed_percent']} %), p50 {result['shed_p50_ms']} ms, "
        f"p99 {result['shed_p99_ms']} ms ; sans Retry-After : {result['shed_without_retry_after']}, "
        f"pas en français : {result['shed_not_french']}",
        f"autres statuts : {result['other_statuses']}, erreurs : {result['errors']} {result['error_kinds']}, "
        f"sans réponse : {result['hung']}",
        f"connexions : {result['client_peak_connections']} au plus côté client, "
        f"{result['server_peak_fds']} descripteurs au plus côté serveur",
        f"RSS du serveur : {result['rss_before_mb']} Mo avant, {result['rss_peak_mb']} au plus, "
        f"{result['rss_after_mb']} après ; GET /health après : {result['health_after_ms']} ms",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="serveur déjà lancé (sinon --serve)")
    parser.add_argument("--pid", type=int, help="PID du serveur déjà lancé (pour sa RSS)")
    parser.add_argument("--serve", action="store_true", help="lancer python -m atelier serve (CNN non entraîné)")
    parser.add_argument("--model", type=Path, help="avec --serve : le modèle (défaut : CNN non entraîné)")
    parser.add_argument("--rate", type=float, help="débit fixe en req/s (sinon : --factor × capacité mesurée)")
    parser.add_argument("--factor", type=float, default=1.2, help="multiple de la capacité (défaut : 1.2)")
    parser.add_argument("--duration", type=float, default=10.0, help="secondes de surcharge (défaut : 10)")
    parser.add_argument("--capacity-seconds", type=float, default=5.0, help="secondes de mesure de la capacité")
    parser.add_argument("--connections", type=int, default=32, help="clients de la mesure de capacité (défaut 32)")
    parser.add_argument("--max-connections", type=int, default=8000, help="connexions au plus côté client")
    parser.add_argument("--timeout", type=float, default=30.0, help="secondes avant de compter « sans réponse »")
    parser.add_argument(
        "--slow-clients",
        type=int,
        metavar="N",
        help="au lieu de la charge : N clients « slowloris » (en-têtes à un octet par seconde pendant 60 s)",
    )
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    if not args.serve and not args.url:
        parser.error("donnez --url (serveur lancé) ou --serve")
    return args, extra


def run(url: str, pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    if args.slow_clients:
        return asyncio.run(slow_clients(url, args.slow_clients, 60))
    return asyncio.run(measure(url, pid, args))


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    if not args.serve:
        result = run(args.url, args.pid, args)
    else:
        with tempfile.TemporaryDirectory(prefix="atelier-open-loop-") as tmp:
            workdir = Path(tmp)
            model = args.model or untrained_model(workdir)
            port = free_port()
            command = [sys.executable, "-m", "atelier", "serve", "--model", str(model), "--port", str(port)]
            command += ["--no-access-log", "--db", str(workdir / "historique.sqlite3"), *extra]
            with ServerProcess("serve", command, port, workdir) as server:
                result = run(server.url, server.process.pid, args)
    print(report(result), flush=True)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
