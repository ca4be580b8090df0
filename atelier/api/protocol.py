"""Le protocole HTTP gardé des processus de ``python -m atelier serve --workers N``.

Chaque processus de travail d'uvicorn reçoit sa configuration par copie (``pickle``) : la classe de
protocole doit donc s'y désigner par son nom, ``"atelier.api.protocol:AutoProtocol"``. Ses limites
(:class:`atelier.connection_guard.ConnectionLimits`) sont lues dans les variables ``ATELIER_*`` que
``serve`` a exportées, par :meth:`ApiSettings.from_env` : les mêmes réglages que l'application.
"""

from __future__ import annotations

from typing import Any

from ..connection_guard import guarded_protocol
from .settings import ApiSettings

#: ``uvicorn.Config(http=…)`` for the worker processes: name → HTTP parser.
PARSERS = {"AutoProtocol": "auto", "H11Protocol": "h11", "HttpToolsProtocol": "httptools"}


def __getattr__(name: str) -> Any:  # PEP 562: the class is made when uvicorn imports it, in the worker
    if name not in PARSERS:
        raise AttributeError(name)
    return guarded_protocol(PARSERS[name], ApiSettings.from_env().connection_limits())
