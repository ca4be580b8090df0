"""Garde des connexions HTTP : plafond de connexions ouvertes, délais de lecture d'une requête.

uvicorn ferme une connexion restée muette *entre* deux requêtes (``timeout_keep_alive``, 5 s), mais
n'a aucun délai pour *lire* une requête : un client qui envoie ses en-têtes (ou son corps) un octet
de temps en temps (« slowloris ») garde sa connexion pour toujours, et 2 000 clients de ce genre
épuisent les descripteurs de fichiers du serveur. Et ``limit_concurrency`` d'uvicorn répond en anglais,
en texte brut.

Le mécanisme choisi : une sous-classe du protocole HTTP d'uvicorn (h11 ou httptools, celui que ``serve``
utilise), fabriquée par :func:`guarded_protocol` et donnée à uvicorn par ``Config(http=…)``. Elle
ajoute, par connexion, un seul minuteur, armé seulement quand la connexion attend quelque chose du
client (rien sur le chemin d'une requête normale, arrivée d'un bloc) :

* **en-têtes** : la ligne de requête et les en-têtes doivent arriver en ``header_timeout`` secondes
  (depuis l'ouverture de la connexion, ou depuis le premier octet d'une requête suivante) ;
* **corps** : tant que le corps n'est pas complet, chaque fenêtre de ``body_timeout`` secondes doit
  apporter au moins ``body_min_rate`` octets par seconde en moyenne (une fenêtre où le serveur lui-même
  ne lisait pas — application occupée — ne compte pas) ;
* un client trop lent reçoit ``408`` (JSON ``{"detail": "…"}`` en français, ``Connection: close``) si
  une réponse peut encore être envoyée, puis la connexion est fermée ; une connexion ouverte qui n'a
  encore rien envoyé est simplement fermée ;
* **plafond** : au-delà de ``max_connections`` connexions ouvertes, chaque requête d'une nouvelle
  connexion reçoit ``503`` (JSON en français, ``Retry-After``, ``Connection: close``) sans passer par
  l'application (sauf ``GET /health``) : les connexions déjà ouvertes continuent d'être servies.

Pourquoi pas un autre serveur ASGI : uvicorn est celui du projet (``serve``, ``start_server`` dans un
notebook, sur la boucle asyncio ordinaire) ; un délai au niveau ASGI ne voit pas les en-têtes (l'appli
n'est appelée qu'une fois ceux-ci reçus) ; le protocole d'uvicorn est le seul endroit qui voit les deux.

Ce module n'importe ni FastAPI ni TensorFlow, comme :mod:`atelier.server`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from .security import send_json_error

#: Defaults of the limits (also those of :class:`atelier.api.settings.ApiSettings`).
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_BODY_MIN_RATE = 4096  # bytes/s: 32 kbit/s, slower than any mobile link a learner may use
#: Seconds a refused client is told to wait (``Retry-After`` of every 503 of the overload control).
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ConnectionLimits:
    """Les limites d'une connexion ; ``max_connections=0`` : pas de plafond, délai ``0`` : pas de délai."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    body_min_rate: int = DEFAULT_BODY_MIN_RATE


def json_response(status: int, reason: str, detail: str, extra_headers: str = "") -> bytes:
    """Une réponse HTTP/1.1 complète ``{"detail": …}`` qui ferme la connexion (écrite telle quelle)."""
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n{extra_headers}\r\n"
    )
    return head.encode("ascii") + body


def _overloaded_detail(limit: int) -> str:
    return (
        f"Le serveur a déjà {limit} connexions ouvertes : réessayez dans un instant "
        "(et réutilisez une connexion persistante plutôt que d'en ouvrir une par requête)."
    )


#: Paths still served on a connection beyond the cap: a liveness check must not fail during an attack.
PASS_THROUGH_PATHS = frozenset({"/health"})


def over_capacity_app(limit: int, app: Any) -> Any:
    """L'application ASGI des connexions en trop : 503 en français, ``Retry-After``, ``Connection: close``.

    ``GET /health`` passe quand même jusqu'à *app* (il ne coûte presque rien et dit que le serveur vit).
    """
    headers = [(b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")]

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path") in PASS_THROUGH_PATHS and scope.get("method") == "GET":
            await app(scope, receive, send)
            return
        await send_json_error(send, 503, _overloaded_detail(limit), headers)

    return refuse


class _Guard:
    """Mixin for uvicorn's ``H11Protocol`` and ``HttpToolsProtocol`` (both keep ``self.cycle``, ``self.flow``).

    Phases, seen after each ``data_received``: a new ``cycle`` means the headers of a request are
    complete; a cycle whose ``more_body`` is true is reading its body; no cycle, or a finished one,
    means the connection waits for the headers of the next request.
    """

    limits: ConnectionLimits = ConnectionLimits()
    app: Any  # uvicorn's protocols read the application from self.app for each request
    # set by connection_made (declared here for the type checker)
    _guard_timer: asyncio.TimerHandle | None
    _guard_cycle: Any
    _guard_bytes: int
    _guard_received: bool

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._guard_timer = None
        self._guard_cycle = None
        self._guard_bytes = 0
        self._guard_received = False
        limit = self.limits.max_connections
        if limit and len(self.connections) > limit:  # type: ignore[attr-defined]
            self.app = over_capacity_app(limit, self.app)  # read by uvicorn for each request of this connection
        self._arm(self.limits.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        self._guard_received = True
        super().data_received(data)  # type: ignore[misc]
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is not self._guard_cycle:  # the headers of a new request are complete
            self._guard_cycle = cycle
            self._disarm()
            if cycle.more_body and self.limits.body_timeout:
                self._guard_bytes = 0
                self._arm(self.limits.body_timeout, self._check_body)
        elif cycle is None or cycle.response_complete:  # waiting for the headers of the next request
            if self._guard_timer is None:
                self._arm(self.limits.header_timeout, self._headers_late)
        elif cycle.more_body:
            self._guard_bytes += len(data)
        else:
            self._disarm()  # the body is complete

    # --- the timer ---------------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        if delay:
            self._guard_timer = self.loop.call_later(delay, callback)  # type: ignore[attr-defined]

    def _disarm(self) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None

    def _headers_late(self) -> None:
        self._guard_timer = None
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is not self._guard_cycle or not (cycle is None or cycle.response_complete):
            return  # a request arrived meanwhile (defensive: its arrival disarms the timer)
        if not self._guard_received:
            self._close(None)  # opened, then silent: nothing to answer
            return
        seconds = f"{self.limits.header_timeout:g}"
        self._close(f"Délai dépassé : les en-têtes de la requête ne sont pas arrivés en {seconds} s.")

    def _check_body(self) -> None:
        self._guard_timer = None
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is not self._guard_cycle or not cycle.more_body or cycle.response_complete:
            return  # body complete, or the response already sent
        limits = self.limits
        if self.flow.read_paused or self._guard_bytes >= limits.body_min_rate * limits.body_timeout:  # type: ignore[attr-defined]
            self._guard_bytes = 0  # the server was not reading, or the client keeps pace: next window
            self._arm(limits.body_timeout, self._check_body)
            return
        cycle.keep_alive = False
        self._close(
            None
            if cycle.response_started
            else (
                f"Délai dépassé : le corps de la requête arrive trop lentement (moins de "
                f"{limits.body_min_rate} octets par seconde pendant {limits.body_timeout:g} s)."
            )
        )

    def _close(self, detail: str | None) -> None:
        transport = self.transport  # type: ignore[attr-defined]
        if transport.is_closing():
            return
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's own answer (if any) is dropped
        if detail is not None:
            transport.write(json_response(408, "Request Timeout", detail))
        transport.close()


_CLASSES: dict[tuple[type, ConnectionLimits], type] = {}


def guarded_protocol(base: type | str = "h11", limits: ConnectionLimits | None = None) -> type:
    """La classe de protocole uvicorn *base* (``"auto"``, ``"h11"``, ``"httptools"`` ou une classe), gardée.

    À passer à ``uvicorn.Config(http=…)``. Une même combinaison renvoie la même classe.
    """
    base_class = _protocol_class(base) if isinstance(base, str) else base
    limits = limits or ConnectionLimits()
    key = (base_class, limits)
    if key not in _CLASSES:
        name = f"Guarded{base_class.__name__}"
        _CLASSES[key] = type(name, (_Guard, base_class), {"limits": limits, "__module__": __name__})
    return _CLASSES[key]


def connection_limits_of(app: Any) -> ConnectionLimits:
    """Les limites des réglages d'une application de :func:`atelier.api.create_app` (sinon celles par défaut)."""
    settings = getattr(getattr(getattr(app, "state", None), "atelier", None), "settings", None)
    limits = getattr(settings, "connection_limits", None)
    return limits() if callable(limits) else ConnectionLimits()


def _protocol_class(name: str) -> type:
    if name == "auto":  # as uvicorn's http="auto": httptools when it is installed
        try:
            import httptools  # noqa: F401
        except ImportError:
            name = "h11"
        else:
            name = "httptools"
    if name == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    if name == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    raise ValueError(f"Protocole HTTP inconnu : {name!r} (auto, h11 ou httptools).")
