"""Les en-têtes posés sur chaque réponse, en un seul middleware ASGI pur (le plus extérieur après les métriques).

* ``X-Model-Version`` : la version du modèle de ce processus. ``POST /predict`` le pose lui-même avec la version
  qui a réellement répondu (un remplacement peut avoir lieu entre le calcul et la réponse) ;
* les en-têtes de sécurité (:data:`atelier.security.SECURITY_HEADERS`) : ``nosniff``, jamais dans un cadre
  (``X-Frame-Options`` et ``frame-ancestors``), pas de ``Referer`` ;
* une ``Content-Security-Policy`` complète pour les pages HTML (``/`` et ``/docs``, ``/redoc``).

Un seul middleware plutôt qu'un par en-tête : chaque couche ASGI coûte sur chaque requête (mesuré avec
``python -m atelier bench``). Un en-tête déjà posé par la route n'est jamais remplacé.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..security import SECURITY_HEADERS

MODEL_VERSION_HEADER = "X-Model-Version"
_VERSION = MODEL_VERSION_HEADER.lower().encode()
_CSP = b"content-security-policy"


class ResponseHeadersMiddleware:
    """Ajoute ``X-Model-Version``, les en-têtes de sécurité et la CSP des pages (``policies`` : chemin → règle)."""

    def __init__(
        self, app: ASGIApp, current_version: Callable[[], str | None], policies: Mapping[str, str] | None = None
    ) -> None:
        self.app = app
        self.current_version = current_version
        self.policies = {path: policy.encode("ascii") for path, policy in (policies or {}).items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policies.get(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                version = self.current_version()
                if version is not None and _VERSION not in present:
                    headers.append((_VERSION, version.encode("latin-1", "replace")))
                if policy is not None and _CSP not in present:
                    headers.append((_CSP, policy))
                    present.add(_CSP)
                headers.extend(header for header in SECURITY_HEADERS if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
