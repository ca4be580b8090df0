"""L'en-tête ``X-Model-Version`` : la version du modèle de ce processus, sur chaque réponse (middleware ASGI pur).

``POST /predict`` le pose lui-même avec la version qui a réellement répondu (un remplacement peut avoir
lieu entre le calcul et la réponse) ; les autres réponses reçoivent la version en service.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ModelVersionHeaderMiddleware:
    HEADER = "X-Model-Version"
    _NAME = HEADER.lower().encode()

    def __init__(self, app: ASGIApp, current_version: Callable[[], str | None]) -> None:
        self.app = app
        self.current_version = current_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                version = self.current_version()
                if version is not None and not any(name.lower() == self._NAME for name, _ in headers):
                    headers.append((self._NAME, version.encode("latin-1", "replace")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_version)
