"""Les métriques de l'API au format Prometheus (paquet ``prometheus-client``), servies par ``GET /metrics``.

Métriques (toutes préfixées ``atelier_``) :

* ``atelier_requests_total{route, method, status}`` : requêtes reçues, par route (le modèle de chemin,
  ``autre`` pour une adresse inconnue), méthode et code de réponse ;
* ``atelier_request_duration_seconds{route}`` : histogramme des durées de réponse ;
* ``atelier_batch_size`` : histogramme du nombre d'images passées ensemble au réseau ;
* ``atelier_queue_depth`` : prédictions en cours ou en attente du réseau ;
* ``atelier_model_version`` : numéro de la version servie (dépôt de modèles) ;
* ``atelier_model_swaps_total`` / ``atelier_model_load_failures_total`` : remplacements réussis du
  modèle, versions refusées (illisibles, incompatibles, contrôle témoin raté…).

Plusieurs processus (``serve --workers N``) : ``serve`` donne à tous ses processus un même dossier
``PROMETHEUS_MULTIPROC_DIR`` (mode multiprocessus de ``prometheus-client``) ; quel que soit le processus
qui répond à ``/metrics``, compteurs et histogrammes sont **la somme de tous les processus**, la
profondeur de file aussi (processus vivants), et ``atelier_model_version`` est donnée **par processus
vivant** (étiquette ``pid``) : on voit ainsi si tous les processus servent la même version. Deux répliques
(deux ``serve``) ont chacune leurs métriques : Prometheus interroge chacune.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("atelier_requests", "Requêtes reçues, par route, méthode et code.", ["route", "method", "status"])
LATENCY = Histogram(
    "atelier_request_duration_seconds",
    "Durée des réponses, en secondes.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "atelier_batch_size", "Images passées ensemble au réseau.", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
)
QUEUE_DEPTH = Gauge("atelier_queue_depth", "Prédictions en cours ou en attente du réseau.", multiprocess_mode="livesum")
MODEL_VERSION = Gauge(
    "atelier_model_version", "Numéro de la version du modèle servie (par processus).", multiprocess_mode="liveall"
)
SWAPS = Counter("atelier_model_swaps", "Remplacements réussis du modèle en service.")
FAILED_LOADS = Counter("atelier_model_load_failures", "Versions refusées (illisibles, incompatibles, témoins faux).")


def render() -> tuple[bytes, str]:
    """Le texte de ``/metrics`` et son type : tous les processus en mode multiprocessus, sinon celui-ci."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        _forget_dead_processes(os.environ[MULTIPROC_ENV])
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _forget_dead_processes(directory: str) -> None:
    """Retire les jauges des processus disparus sans avoir pu s'arrêter proprement (tués, redémarrés)."""
    from prometheus_client import multiprocess

    pids = set()
    for name in os.listdir(directory):
        stem, _, suffix = name.removesuffix(".db").rpartition("_")
        if stem.startswith("gauge_live") and suffix.isdigit():
            pids.add(int(suffix))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:  # alive, under another user
            pass


def mark_process_dead() -> None:
    """À l'arrêt d'un processus (mode multiprocessus) : retire ses jauges « vivantes » des scrapes suivants."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


def set_model_version(version: str) -> None:
    """Publie le numéro de la version servie (une version qui n'est pas un nombre donne -1)."""
    MODEL_VERSION.set(int(version) if str(version).isdigit() else -1)


class MetricsMiddleware:
    """Compte chaque requête HTTP (route, méthode, code) et mesure sa durée ; middleware ASGI pur.

    *routes* : les chemins connus (modèles de chemin FastAPI) ; toute autre adresse est comptée sous
    ``autre`` (des adresses inventées ne multiplient pas les séries). *prefixes* : préfixes de montages
    (``/static``) comptés sous leur préfixe.
    """

    def __init__(self, app: ASGIApp, routes: Iterable[str], prefixes: Iterable[str] = ()) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.prefixes = tuple(prefixes)
        # Labelled children, looked up once (``labels()`` costs several µs on the request path).
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._latencies: dict[str, Any] = {}

    def _route(self, path: str) -> str:
        if path in self.routes:
            return path
        return next((prefix for prefix in self.prefixes if path.startswith(prefix + "/")), "autre")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route(scope.get("path", ""))
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            key = (route, scope.get("method", ""), status)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters.setdefault(key, REQUESTS.labels(key[0], key[1], str(status)))
            counter.inc()
            latency = self._latencies.get(route)
            if latency is None:
                latency = self._latencies.setdefault(route, LATENCY.labels(route))
            latency.observe(elapsed)
