"""Les erreurs de protocole HTTP en JSON français, pour les deux analyseurs d'uvicorn (h11 et httptools).

Une requête que l'analyseur HTTP ne comprend pas (ligne de requête illisible, caractère NUL dans un en-tête,
``Content-Length`` qui n'est pas un nombre…) n'atteint jamais l'application : uvicorn répond lui-même
« Invalid HTTP request received. » en texte anglais. Les classes de protocole ci-dessous ne changent que cette
réponse-là (la méthode ``send_400_response`` d'uvicorn, la même dans ses deux analyseurs) : un 400
``{"detail": "…"}`` en français, avec les en-têtes de sécurité de l'API, puis la connexion est fermée.

:func:`http_protocol` choisit la classe à donner à ``uvicorn.Config(http=…)`` ; ``python -m atelier serve``
et :func:`atelier.server.start_server` l'utilisent tous les deux. Ce module n'importe ni FastAPI ni TensorFlow.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .security import SECURITY_HEADERS

#: The answer to a request the HTTP parser cannot read.
PROTOCOL_ERROR = (
    "Requête HTTP invalide : le serveur n'a pas pu lire la ligne de requête ou les en-têtes (caractère interdit, "
    "Content-Length incorrect, en-tête mal formé…). Vérifiez le client HTTP qui envoie la requête."
)
_BODY = json.dumps({"detail": PROTOCOL_ERROR}, ensure_ascii=False).encode("utf-8")
_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode("ascii")),
    (b"connection", b"close"),
    *SECURITY_HEADERS,
)
#: Whether uvicorn's faster parser can be used (the ``httptools`` package is installed).
HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None


class FrenchH11Protocol(H11Protocol):
    """Le protocole h11 d'uvicorn, dont la réponse aux requêtes illisibles est un 400 JSON en français."""

    def send_400_response(self, msg: str) -> None:
        # h11 lets the server answer after the client's protocol error, as uvicorn's own method does.
        response = h11.Response(status_code=400, headers=list(_HEADERS), reason=b"Bad Request")
        self.transport.write(self.conn.send(response) or b"")
        self.transport.write(self.conn.send(h11.Data(data=_BODY)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()


if HAS_HTTPTOOLS:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class FrenchHttpToolsProtocol(HttpToolsProtocol):
        """Le protocole httptools d'uvicorn, dont la réponse aux requêtes illisibles est un 400 JSON en français."""

        def send_400_response(self, msg: str) -> None:
            head = b"".join(name + b": " + value + b"\r\n" for name, value in _HEADERS)
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\n" + head + b"\r\n" + _BODY)
            self.transport.close()


def http_protocol(parser: str = "auto") -> type[asyncio.Protocol]:
    """La classe de protocole à passer à ``uvicorn.Config(http=…)`` : ``"h11"``, ``"httptools"`` ou ``"auto"``.

    ``"auto"`` fait comme uvicorn : httptools s'il est installé, sinon h11.
    """
    if parser not in ("auto", "h11", "httptools"):
        raise ValueError(f"Analyseur HTTP inconnu : {parser!r} (auto, h11 ou httptools).")
    if parser == "httptools" and not HAS_HTTPTOOLS:
        raise ValueError("L'analyseur httptools n'est pas installé : pip install httptools, ou choisissez h11.")
    if parser == "h11" or not HAS_HTTPTOOLS:
        return FrenchH11Protocol
    return FrenchHttpToolsProtocol
