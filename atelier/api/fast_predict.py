"""``POST /predict`` sans le routage de FastAPI quand le formulaire a la forme habituelle (middleware ASGI pur).

Profilé sous charge (``py-spy --gil``), le fil de la boucle d'événements tient le GIL ≈ 90 % du temps
et c'est lui qui limite le débit ; sous les middlewares de l'atelier, la route ``/predict`` de FastAPI
(routage, injection des dépendances, analyse générique du formulaire avec fichier temporaire,
``UploadFile``) en prenait la plus grande part, pour un formulaire qui est presque toujours le même :
une seule partie ``file`` avec un nom de fichier. Ce middleware, placé **sous** tous les autres (clé
d'API, taille du corps, métriques, en-tête de version : ils s'appliquent toujours), reconnaît
exactement cette forme et répond par la même fonction que la route
(:func:`atelier.api.routes.predict.answer`) ; tout autre corps (plusieurs parties, champ absent,
en-têtes inhabituels, formulaire mal formé…) est rejoué tel quel vers FastAPI, qui donne ses réponses
habituelles (400, 422…). Le contrat HTTP ne change donc pas ; seul le chemin courant raccourcit.
"""

from __future__ import annotations

import logging

from python_multipart.multipart import parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .routes.predict import answer
from .state import ApiState

log = logging.getLogger(__name__)

#: Part headers the short path accepts; any other one sends the request to FastAPI's parser.
_PART_HEADERS = (b"content-disposition", b"content-type")


def _decode(raw: bytes) -> str:
    """Like Starlette's form parser (UTF-8, else Latin-1)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def form_boundary(scope: Scope) -> bytes | None:
    """The boundary of a ``multipart/form-data`` request without a charset parameter, else ``None``."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-type":
            kind, options = parse_options_header(value)
            if kind != b"multipart/form-data" or b"charset" in options:
                return None
            boundary = options.get(b"boundary")
            return boundary or None
    return None


def single_file_part(body: bytes, boundary: bytes) -> tuple[str, bytes] | None:
    """``(filename, content)`` if *body* is exactly one non-empty part ``file`` with a file name, else ``None``."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        return None
    head_end = body.find(b"\r\n\r\n", len(delimiter) + 2)
    closing = b"\r\n" + delimiter + b"--"
    tail = body.rfind(closing)
    if head_end < 0 or tail < head_end or body[tail + len(closing) :] not in (b"", b"\r\n"):
        return None
    content = body[head_end + 4 : tail]
    if not content or b"\r\n" + delimiter in content:  # empty (FastAPI says why) or a second part
        return None
    disposition = None
    for line in body[len(delimiter) + 2 : head_end].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        name = name.strip().lower()
        if not colon or name not in _PART_HEADERS or (name == b"content-disposition" and disposition is not None):
            return None
        if name == b"content-disposition":
            disposition = value.strip()
    if disposition is None:
        return None
    kind, options = parse_options_header(disposition)
    filename = options.get(b"filename")
    if kind != b"form-data" or options.get(b"name") != b"file" or not filename:
        return None
    return _decode(filename), content


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or ``None`` if the client left before sending it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already-read body once, then waits on the real one (disconnection)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class FastPredictMiddleware:
    """Answers the usual ``POST /predict`` form itself; everything else goes to *app* unchanged."""

    def __init__(self, app: ASGIApp, state: ApiState, path: str = "/predict") -> None:
        self.app = app
        self.state = state
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        boundary = form_boundary(scope)
        if boundary is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left: nobody to answer
        part = single_file_part(body, boundary)
        if part is None:
            await self.app(scope, _replay(body, receive), send)
            return
        filename, data = part
        try:
            response = await answer(self.state, data, filename)
        except Exception:  # same answer as the app's handler of unexpected errors
            log.exception("Erreur interne sur POST %s", self.path)
            response = error_response(500, "Erreur interne du serveur.")
        await response(scope, receive, send)
