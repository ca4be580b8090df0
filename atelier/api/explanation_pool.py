"""Le pool des explications : elles ne ralentissent pas ``/predict``.

Une carte Grad-CAM coûte bien plus qu'une prédiction (passe avant couche par couche et gradient, hors du
graphe compilé). Les explications tournent donc dans **leur** fil d'exécution (:data:`EXPLANATION_WORKERS`),
pas dans le pool de threads partagé par ``/predict`` : au plus une à la fois, quelques-unes en attente
(``max_waiting``), et au-delà ``503`` avec ``Retry-After`` tout de suite plutôt qu'une file qui grossit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..inference import PredictorUnavailableError, shutting_down

#: Explanations computed at the same time (one thread).
EXPLANATION_WORKERS = 1
#: Default number of explanations that may wait for the thread.
DEFAULT_MAX_WAITING = 2

T = TypeVar("T")


class ExplanationsBusyError(PredictorUnavailableError):
    """Trop d'explications en cours ou en attente : 503 avec Retry-After (message en français)."""


class ExplanationPool:
    """Au plus ``EXPLANATION_WORKERS`` explications en cours et ``max_waiting`` en attente."""

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.capacity = EXPLANATION_WORKERS + max_waiting
        self._pending = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Explications en cours ou en attente."""
        return self._pending

    def _reserve(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:  # never a new thread once the app stops: nobody would close it
                raise shutting_down()
            if self._pending >= self.capacity:
                raise ExplanationsBusyError(
                    f"Trop d'explications demandées en même temps ({self._pending} en cours ou en attente) : "
                    "réessayez dans un instant. Les prédictions (POST /predict) ne sont pas concernées."
                )
            self._pending += 1
            if self._executor is None:  # created on demand: the app may be started again (open())
                self._executor = ThreadPoolExecutor(EXPLANATION_WORKERS, thread_name_prefix="atelier-explication")
            return self._executor

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Calcule ``function(*args)`` dans le fil des explications, ou :class:`ExplanationsBusyError`."""
        executor = self._reserve()
        try:
            future = executor.submit(function, *args)
        except BaseException as exc:
            self._release()
            if isinstance(exc, RuntimeError) and self._closed:  # shut down between _reserve() and submit()
                raise shutting_down() from None
            raise
        # Released when the computation ends, not when the request does: a client that hangs up does not
        # free the thread, so it must not free the place either.
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def open(self) -> None:
        """Au démarrage de l'application : le fil sera créé à la première explication."""
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """Arrête le fil (les explications en attente sont abandonnées) ; jusqu'au prochain :meth:`open`, une
        explication demandée reçoit un 503."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
