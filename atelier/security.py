"""Protections de l'API, en middlewares ASGI purs (ils agissent avant FastAPI, avant tout décodage).

* :class:`ApiKeyMiddleware` : quand une clé est configurée, toute route sauf les routes publiques
  (``/health``, ``/docs``, ``/openapi.json``, ``/`` et les fichiers de la page) exige l'en-tête
  ``X-API-Key`` ; la comparaison est à temps constant (:func:`secrets.compare_digest`). Sinon : 401.
* :class:`BodySizeLimitMiddleware` : la taille du corps de la requête est plafonnée *pendant la
  lecture*, avant que le formulaire multipart ne soit analysé ou écrit sur le disque. Un
  ``Content-Length`` trop grand est refusé (413) sans lire le corps ; sans ``Content-Length``
  (envoi « chunked ») ou s'il ment, les octets sont comptés au fil de l'eau et la lecture s'arrête
  dès que le plafond est dépassé (413).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"


async def send_json_error(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Envoie une réponse d'erreur JSON ``{"detail": ...}`` directement sur le canal ASGI."""
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class ApiKeyMiddleware:
    """Exige l'en-tête ``X-API-Key`` sur les routes non publiques quand une clé est configurée.

    ``api_key`` peut être une chaîne ou une fonction sans argument qui renvoie la clé courante (ou
    ``None`` pour désactiver la vérification).
    """

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | Callable[[], str | None] | None,
        public_paths: Iterable[str] = (
            "/",
            "/health",
            "/health/ready",
            "/docs",
            "/docs/oauth2-redirect",
            "/redoc",
            "/openapi.json",
            "/favicon.ico",
        ),
        public_prefixes: Iterable[str] = ("/static/",),
    ) -> None:
        self.app = app
        self._api_key = api_key
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)

    def _key(self) -> str | None:
        return self._api_key() if callable(self._api_key) else self._api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self._key()
        if (
            scope["type"] != "http"
            or not key
            or scope.get("method") == "OPTIONS"  # CORS pre-flight requests never carry the key
            or scope["path"] in self.public_paths
            or scope["path"].startswith(self.public_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        given = _header(scope, API_KEY_HEADER.lower().encode())
        if given is None:
            await send_json_error(send, 401, f"Clé d'API manquante : ajoutez l'en-tête {API_KEY_HEADER} à la requête.")
            return
        if not secrets.compare_digest(given, key.encode("utf-8")):
            await send_json_error(send, 401, f"Clé d'API invalide (en-tête {API_KEY_HEADER}).")
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _mb(n: int) -> str:
    value = n / (1024 * 1024)
    text = f"{value:.1f}".rstrip("0").rstrip(".") if value >= 0.1 else f"{n / 1024:.0f} Kio"
    return text + (" Mio" if value >= 0.1 else "")


class BodySizeLimitMiddleware:
    """Refuse (413) une requête dont le corps dépasse ``max_bytes`` (ou la limite propre à sa route).

    ``limits`` associe des couples ``(méthode, chemin)`` à un plafond particulier (par exemple un
    plafond plus grand pour envoyer un modèle). Quand le plafond est dépassé en cours de lecture, la
    réponse éventuellement préparée par l'application (erreur d'analyse du formulaire) est remplacée
    par le 413.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        limits: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.limits = dict(limits or {})

    def _message(self, limit: int) -> str:
        return f"Fichier trop volumineux : le corps de la requête dépasse la limite de {_mb(limit)}."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get((scope.get("method", ""), scope["path"]), self.max_bytes)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                declared_size = int(declared)
            except ValueError:
                await send_json_error(send, 400, "En-tête Content-Length invalide.")
                return
            if declared_size > limit:
                await send_json_error(send, 413, self._message(limit), [(b"connection", b"close")])
                return

        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                return  # the app's own error for the interrupted body is replaced by the 413 below
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Once the cap is exceeded, whatever the app raised (FastAPI's form error, a parser error
            # or our own signal, possibly in an ExceptionGroup) is a consequence of the cut body.
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await send_json_error(send, 413, self._message(limit), [(b"connection", b"close")])
