"""Vérifier une API par son comportement : démarrer l'application de l'apprenant, lui envoyer des requêtes.

Pour les auteurs d'exercices (chapitre 4) ::

    with running(hello_app, what="hello_app") as server:
        response = send(server, "GET", "/bonjour", params={"nom": "Ada"})
        expect(response.status_code == 200, "…")
        body = json_of(response, "GET /bonjour?nom=Ada")

Toute erreur (ce n'est pas une application, le serveur ne démarre pas, pas de réponse, pas de JSON) devient
:class:`~atelier.exercices.base.Wrong` avec un message en français : jamais de trace pour l'apprenant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .base import Wrong

TIMEOUT_SECONDS = 15


@contextlib.contextmanager
def running(app: Any, what: str = "votre application") -> Iterator[Any]:
    """Démarre ``app`` (FastAPI ou toute application ASGI) sur un port libre, le temps du bloc ``with``.

    Le journal du serveur est coupé (``log_level="critical"``) : une erreur 500 de l'application de
    l'apprenant n'affiche pas de trace en anglais dans le notebook ; le code d'état suffit à l'expliquer.
    """
    from atelier.server import ServerStartError, start_server

    if not callable(app):
        raise Wrong(
            f"{what} n'est pas une application web (c'est un objet {type(app).__name__}) : créez-la avec "
            "FastAPI(), puis déclarez ses endpoints avec ses décorateurs."
        )
    try:
        server = start_server(app, port=None, log_level="critical", timeout=TIMEOUT_SECONDS)
    except ServerStartError as error:
        raise Wrong(f"{what} ne démarre pas : {error}") from None
    try:
        yield server
    finally:
        server.stop()


def send(server: Any, method: str, path: str, *, what: str | None = None, **options: Any):
    """Envoie une requête HTTP au serveur (un objet avec ``.url``, ou une adresse) et renvoie la réponse."""
    import requests

    base = getattr(server, "url", server)
    if not isinstance(base, str):
        raise Wrong(f"« {server!r} » n'est pas un serveur en marche : il faut l'objet renvoyé par start_server.")
    what = what or f"{method} {path}"
    options.setdefault("timeout", TIMEOUT_SECONDS)
    try:
        return requests.request(method, base.rstrip("/") + path, **options)
    except requests.Timeout:
        raise Wrong(f"{what} : pas de réponse en {TIMEOUT_SECONDS} secondes.") from None
    except requests.ConnectionError:
        raise Wrong(
            f"{what} : impossible de joindre le serveur {base}. Est-il arrêté ? Réexécutez sa cellule de démarrage."
        ) from None


def json_of(response: Any, what: str) -> Any:
    """Le corps JSON d'une réponse, ou une explication en français si ce n'est pas du JSON."""
    try:
        return response.json()
    except ValueError:
        start = " ".join(response.text.split())[:80]
        kind = response.headers.get("content-type", "sans type")
        raise Wrong(
            f"{what} ne renvoie pas du JSON (type « {kind} », début du corps : « {start} ») : un endpoint "
            "FastAPI renvoie un dict, que FastAPI transforme en JSON."
        ) from None
