"""Délestage de ``POST /predict`` : au-delà de la capacité, un 503 tout de suite plutôt qu'une file qui s'allonge.

Sans limite, une charge supérieure à ce que la machine calcule s'accumule devant le pool de threads et
le regroupement : tout le monde finit par recevoir sa réponse, mais de plus en plus tard (mesuré avant
ce module : 900 req/s pour une capacité de ≈ 830, latence médiane 0,8 → 8 s en 10 s).

:class:`AdmissionMiddleware` compte les requêtes ``/predict`` en cours (de leur entrée dans l'API à la
fin de leur réponse). Au-delà de ``max_inflight``, une nouvelle requête reçoit aussitôt ``503`` avec un
``detail`` en français et ``Retry-After``, sans que son corps soit lu ni son image décodée : le
délestage coûte une fraction d'une vraie requête, et celles qui sont acceptées attendent au plus
``max_inflight`` / débit.

Pourquoi 32 par défaut : deux lots de 16 (``max_batch_size``), l'un calculé par le réseau pendant que
l'autre est décodé, suffisent à garder le modèle occupé ; au-delà, les requêtes en plus ne font
qu'attendre, et leurs threads de décodage se disputent le GIL avec la boucle d'événements (une mesure
sur 2 cœurs chargés, à 1,2 × la capacité : avec 64, la moitié des requêtes délestées et les acceptées à
280 ms de médiane ; avec 32, 11 % délestées et 39 ms). Une borne sur le nombre plutôt qu'un budget de temps
d'attente : un client qui attend chaque réponse avant d'envoyer la suivante (``bench`` à 32
connexions) n'est jamais délesté, même sur une machine lente ou chargée, alors qu'un budget en
millisecondes le serait dès que la machine ralentit. Une requête cesse de compter dès que sa réponse
est envoyée, et ne compte pas tant que son corps arrive (un envoi lent ne bloque pas une place). La
file du regroupement (``max_queued``) reste une seconde barrière.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..connection_guard import RETRY_AFTER_S
from ..security import send_json_error

#: Requests to /predict in progress beyond which a new one is refused at once (0: no limit).
DEFAULT_MAX_INFLIGHT = 32


class AdmissionMiddleware:
    """Répond 503 (``Retry-After``) à une requête des routes *routes* quand ``max_inflight`` sont déjà en cours."""

    def __init__(
        self, app: ASGIApp, *, max_inflight: int, routes: Iterable[tuple[str, str]] = (("POST", "/predict"),)
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.routes = frozenset(routes)
        #: Requests of *routes* in progress (one event loop: no lock needed).
        self.inflight = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.max_inflight or scope["type"] != "http" or (scope["method"], scope["path"]) not in self.routes:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            self.refused += 1
            await send_json_error(
                send,
                503,
                f"Le service est surchargé ({self.max_inflight} prédictions sont déjà en cours) : "
                f"réessayez dans {RETRY_AFTER_S} s.",
                [(b"retry-after", str(RETRY_AFTER_S).encode())],
            )
            return
        self.inflight += 1
        slot = _Slot(self)
        try:
            await self.app(scope, slot.wrap_receive(receive), slot.wrap_send(send))
        finally:
            slot.release()


class _Slot:
    """The place of one request among the ``inflight`` of an :class:`AdmissionMiddleware`.

    Held from the admission to the end of the response, except while the body is still arriving: a
    client that uploads slowly (the guard of :mod:`atelier.connection_guard` cuts it if too slow) does
    not keep a place that a request ready to be computed could use. Released as soon as the response is
    complete, not when the application returns: a client that waits for each answer before sending its
    next request never counts twice.
    """

    __slots__ = ("_done", "_held", "_middleware")

    def __init__(self, middleware: AdmissionMiddleware) -> None:
        self._middleware = middleware
        self._held = True
        self._done = False

    def release(self) -> None:
        if self._held:
            self._held = False
            self._middleware.inflight -= 1

    def wrap_receive(self, receive: Receive) -> Receive:
        async def receive_body() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not self._done:
                if message.get("more_body", False):
                    self.release()  # still uploading
                elif not self._held:
                    self._held = True  # the body is complete: ready to be computed
                    self._middleware.inflight += 1
            return message

        return receive_body

    def wrap_send(self, send: Send) -> Send:
        async def send_and_release(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._done = True
                self.release()

        return send_and_release
