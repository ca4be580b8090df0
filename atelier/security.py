"""Protections de l'API, en middlewares ASGI purs (ils agissent avant FastAPI, avant tout décodage).

* :class:`ApiKeyMiddleware` : quand des clés sont configurées (:mod:`atelier.keys`), toute route sauf les
  routes publiques (``/health``, ``/docs``, ``/openapi.json``, ``/`` et les fichiers de la page) exige l'en-tête
  ``X-API-Key`` (sinon 401), et les routes de gestion la clé de gestion (sinon 403, :func:`required_role`) ;
  la comparaison des empreintes est à temps constant (:func:`secrets.compare_digest`).
* :data:`SECURITY_HEADERS` : les en-têtes de sécurité de chaque réponse (posés par
  :mod:`atelier.api.response_headers` et, pour les erreurs de protocole, par :mod:`atelier.http_protocol`).
* :class:`FrenchCORSMiddleware` : le CORS de Starlette, refus en JSON français ;
* :class:`BodySizeLimitMiddleware` : la taille du corps de la requête est plafonnée *pendant la
  lecture*, avant que le formulaire multipart ne soit analysé ou écrit sur le disque. Un
  ``Content-Length`` trop grand est refusé (413) sans lire le corps ; sans ``Content-Length``
  (envoi « chunked ») ou s'il ment, les octets sont comptés au fil de l'eau et la lecture s'arrête
  dès que le plafond est dépassé (413).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .keys import ROLE_INFERENCE, ROLE_MANAGEMENT, KeyRing

API_KEY_HEADER = "X-API-Key"


#: Headers of every answer (the API's, the page's, uvicorn's protocol errors): no MIME sniffing, never shown in
#: a frame of another site (old and new spelling), no address leaked to other sites.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


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


#: What an inference key may send besides reading (GET/HEAD): classify, explain, give its opinion.
INFERENCE_WRITES = frozenset({("POST", "/predict"), ("POST", "/explain")})
_FEEDBACK_PATH = re.compile(r"^/predictions/[^/]+/feedback$")
#: Erasing one prediction: an inference key may erase its own (right to erasure; the route refuses other keys' rows).
_PREDICTION_PATH = re.compile(r"^/predictions/[^/]+$")
#: Reads reserved to the management key (what the service does, not what a learner needs).
MANAGEMENT_READS = frozenset({("GET", "/metrics")})


def required_role(method: str, path: str) -> str:
    """Le rôle qu'exige ``method path`` : toute écriture est réservée à la gestion, sauf celles de l'inférence
    (prédire, expliquer, donner son avis, effacer **sa** prédiction)."""
    if (method, path) in MANAGEMENT_READS:
        return ROLE_MANAGEMENT
    if method in ("GET", "HEAD"):
        return ROLE_INFERENCE
    if (method, path) in INFERENCE_WRITES or (method == "POST" and _FEEDBACK_PATH.match(path)):
        return ROLE_INFERENCE
    if method == "DELETE" and _PREDICTION_PATH.match(path):
        return ROLE_INFERENCE
    return ROLE_MANAGEMENT


class ApiKeyMiddleware:
    """Exige l'en-tête ``X-API-Key`` sur les routes non publiques quand des clés sont configurées (:mod:`atelier.keys`).

    401 sans clé ou avec une clé inconnue, 403 avec une clé d'inférence sur une route de gestion. L'étiquette et
    le rôle de la clé sont rangés dans ``request.state.key_label`` / ``request.state.key_role`` (l'historique
    note l'étiquette, jamais la clé).
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing,
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
        self.keys = keys
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.keys.enabled
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
        key = self.keys.identify(given)
        if key is None:
            await send_json_error(send, 401, f"Clé d'API invalide (en-tête {API_KEY_HEADER}).")
            return
        method, path = scope.get("method", ""), scope["path"]
        if required_role(method, path) == ROLE_MANAGEMENT and not key.manages:
            await send_json_error(
                send,
                403,
                f"Accès refusé : la clé « {key.label} » est une clé d'inférence (prédire, expliquer, son propre "
                f"historique) ; {method} {path} demande la clé de gestion.",
            )
            return
        state = scope.setdefault("state", {})
        state["key_label"] = key.label
        state["key_role"] = key.role
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


_CORS_FAILURES = {
    "origin": "origine {origin} non autorisée",
    "method": "méthode {method} non autorisée",
    "headers": "en-têtes demandés non autorisés ({headers})",
    "private-network": "accès au réseau privé non autorisé",
}


class FrenchCORSMiddleware(CORSMiddleware):
    """Le CORS de Starlette, dont le refus d'une requête préliminaire est un 400 JSON en français (pas en anglais)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        english = bytes(response.body).decode("utf-8", "replace").removeprefix("Disallowed CORS ")
        values = {
            "origin": request_headers.get("origin", ""),
            "method": request_headers.get("access-control-request-method", ""),
            "headers": request_headers.get("access-control-request-headers", ""),
        }
        reasons = [_CORS_FAILURES.get(part.strip(), part.strip()).format(**values) for part in english.split(",")]
        kept = {k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")}
        return JSONResponse(
            {"detail": f"Requête préliminaire CORS refusée : {', '.join(reasons)}."},
            status_code=response.status_code,
            headers=kept,
        )
