"""Démarrer l'API depuis une cellule de notebook (ou un script), sans bloquer le noyau.

Exemple ::

    from atelier.api import create_app
    from atelier.server import start_server

    serveur = start_server(create_app("modeles/cnn.keras"), port=8000)
    serveur            # <Serveur en marche sur http://127.0.0.1:8000>
    # … requests.post(serveur.url + "/predict", files={"file": ...}) …
    serveur.stop()

Le serveur uvicorn tourne dans un fil d'exécution (thread) à part, avec sa propre boucle d'événements :
la boucle de Jupyter reste libre, les cellules suivantes peuvent appeler l'API. Réexécuter la cellule de
démarrage arrête d'abord l'ancien serveur du même port. Aucun ``fork`` ni signal : fonctionne de la
même façon sous Linux, macOS et Windows, de Python 3.10 à 3.13.

Les limites des connexions (délais contre les clients lents, plafond) sont celles des réglages de
l'application (:mod:`atelier.connection_guard`). Ce module n'importe ni TensorFlow ni FastAPI : seulement
uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys
import threading
import time
from typing import Any

from .connection_guard import connection_limits_of, guarded_protocol

__all__ = [
    "PortUnavailableError",
    "ServerHandle",
    "ServerStartError",
    "bind_socket",
    "free_port",
    "running_servers",
    "start_server",
    "stop_all",
    "url_host",
]

#: Servers started by this process, by port. ``globals().get`` keeps the registry across
#: ``importlib.reload`` (the ``%autoreload`` extension of Jupyter reloads modules in place).
_REGISTRY: dict[int, ServerHandle] = globals().get("_REGISTRY", {})
_REGISTRY_LOCK: threading.Lock = globals().get("_REGISTRY_LOCK") or threading.Lock()

_POLL_SECONDS = 0.01
_STOP_TIMEOUT = 5.0
_THREAD_PREFIX = "atelier-serveur"


class ServerStartError(RuntimeError):
    """Le serveur n'a pas pu démarrer (port occupé, délai dépassé, application en erreur…).

    Le message, en français, dit ce qui s'est passé et quoi faire.
    """


class PortUnavailableError(ServerStartError):
    """Le port est déjà pris (``in_use``) ou réservé à l'administrateur (``denied``).

    ``port``, ``reason`` et ``suggested_port`` permettent à un autre programme (la ligne de commande)
    de formuler son propre conseil ; le message, lui, s'adresse à qui appelle :func:`start_server`.
    """

    def __init__(self, message: str, *, port: int, reason: str, suggested_port: int) -> None:
        super().__init__(message)
        self.port = port
        self.reason = reason
        self.suggested_port = suggested_port


class ServerHandle:
    """Un serveur uvicorn en marche dans un fil d'exécution : ``.url``, ``.port``, ``.stop()``.

    S'utilise aussi comme gestionnaire de contexte : ``with start_server(app) as serveur: ...``
    arrête le serveur en sortie du bloc.
    """

    def __init__(
        self, server: Any, thread: threading.Thread, sock: socket.socket, host: str, port: int, runner: _Runner
    ) -> None:
        self._server = server
        self._thread = thread
        self._runner = runner
        self._socket = sock
        self.host = host
        self.port = port
        self.url = f"http://{url_host(host)}:{port}"
        self._stop_lock = threading.Lock()
        self._stopped = False

    @property
    def running(self) -> bool:
        """Vrai tant que le serveur répond (fil vivant et pas encore arrêté)."""
        return not self._stopped and self._thread.is_alive() and bool(self._server.started)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Arrête le serveur et libère le port (en quelques dixièmes de seconde d'habitude).

        Appeler ``stop()`` plusieurs fois ne fait rien de plus.
        """
        with self._stop_lock:
            if not self._stopped:
                self._server.should_exit = True
                self._thread.join(timeout)
                if self._thread.is_alive():  # a request that never ends: stop waiting for it
                    self._server.force_exit = True
                    self._thread.join(1.0)
                if self._thread.is_alive():  # stuck in the application's start-up or shutdown: cancel it
                    self._runner.cancel()
                    self._thread.join(timeout)
                _close_quietly(self._socket)
                self._stopped = True
        with _REGISTRY_LOCK:
            if _REGISTRY.get(self.port) is self:
                del _REGISTRY[self.port]

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "en marche" if self.running else "arrêté"
        return f"<Serveur {state} sur {self.url}>"


def start_server(
    app: Any,
    port: int | None = 8000,
    *,
    host: str = "127.0.0.1",
    timeout: float = 15,
    log_level: str = "warning",
    access_log: bool = False,
) -> ServerHandle:
    """Démarre ``app`` (une application ASGI, par exemple FastAPI) dans un fil d'exécution et rend la main.

    - ``port`` : le port d'écoute ; ``None`` en choisit un libre (voir ``serveur.port``).
    - ``host`` : ``"127.0.0.1"`` (défaut) n'accepte que cette machine ; ``"0.0.0.0"`` ouvre à tout le réseau.
    - ``timeout`` : secondes d'attente maximale du démarrage.
    - ``log_level`` / ``access_log`` : journaux d'uvicorn ; une ligne par requête seulement si ``access_log=True``.

    La fonction attend que le serveur réponde vraiment avant de rendre la main. Si un serveur de ce même
    processus (ce noyau Jupyter) écoute déjà sur ce port, il est arrêté d'abord : réexécuter la cellule
    redémarre proprement. Lève :class:`ServerStartError` (message en français) si le démarrage échoue.
    """
    import uvicorn  # imported here so that `import atelier.server` stays cheap

    if port is not None:
        port = _check_port(port)
        with _REGISTRY_LOCK:
            previous = _REGISTRY.get(port)
        if previous is not None:
            previous.stop()

    sock = bind_socket(host, port if port is not None else 0)
    actual_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=host,
        port=actual_port,
        loop="asyncio",  # uvloop (if installed) is unavailable on Windows; asyncio is enough here
        http=guarded_protocol("auto", connection_limits_of(app)),  # slow clients cut, connections capped
        lifespan="auto",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=1,  # so that stop() returns quickly even with open connections
    )
    server = uvicorn.Server(config)
    runner = _Runner(server, sock)
    thread = threading.Thread(target=runner.run, name=f"{_THREAD_PREFIX}-{actual_port}", daemon=True)
    handle = ServerHandle(server, thread, sock, host, actual_port, runner)
    thread.start()

    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            _close_quietly(sock)
            raise ServerStartError(_startup_failed_message(actual_port, runner.failure))
        if time.monotonic() > deadline:
            server.should_exit = True
            runner.cancel()  # the application is stuck in its start-up: should_exit alone is not read there
            handle.stop()
            raise ServerStartError(
                f"Le serveur du port {actual_port} n'a pas démarré en {timeout:g} s. L'application met "
                "peut-être longtemps à se préparer (chargement du modèle) : réessayez avec un délai plus "
                "long, par exemple start_server(app, timeout=60)."
            )
        time.sleep(_POLL_SECONDS)

    with _REGISTRY_LOCK:
        _REGISTRY[actual_port] = handle
    return handle


def stop_all() -> int:
    """Arrête tous les serveurs démarrés par ce processus ; renvoie combien ont été arrêtés."""
    with _REGISTRY_LOCK:
        handles = list(_REGISTRY.values())
    for handle in handles:
        handle.stop()
    return len(handles)


def running_servers() -> list[ServerHandle]:
    """Les serveurs de ce processus encore en marche."""
    with _REGISTRY_LOCK:
        return [handle for handle in _REGISTRY.values() if handle.running]


# --- helpers -------------------------------------------------------------------------------------------


class _Runner:
    """Runs ``server.serve`` on a new event loop in the server thread; can cancel it from another thread.

    Equivalent to uvicorn's ``Server.run`` with ``loop="asyncio"``, but keeps the loop and the task so that
    ``stop()`` can cancel an application stuck in its start-up (``should_exit`` is only read once serving).
    """

    def __init__(self, server: Any, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.failure: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready = threading.Event()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ready.set()
        await self.server.serve(sockets=[self.sock])

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # SystemExit from uvicorn (failed lifespan), cancellation, app errors
            self.failure.append(exc)
        finally:
            self._ready.set()

    def cancel(self) -> None:
        self._ready.wait(1.0)
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: the thread is finishing anyway
                loop.call_soon_threadsafe(task.cancel)


def _check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ServerStartError(
            f"Port invalide : {port!r}. Donnez un entier entre 1 et 65535 (par exemple 8000), "
            "ou port=None pour laisser choisir un port libre."
        )
    return port


def free_port(host: str = "127.0.0.1") -> int:
    """Un port libre sur *host* à cet instant (pour un sous-processus qui l'ouvrira lui-même)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def url_host(host: str) -> str:
    """L'hôte à mettre dans l'adresse d'un serveur qui écoute sur *host* (``0.0.0.0`` → ``127.0.0.1``)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"  # listening everywhere: this machine reaches it on loopback
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def bind_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """Un socket lié à (host, port), ou une :class:`ServerStartError` en français.

    Binding here, in the caller's thread, rather than letting uvicorn do it inside the server thread,
    gives an immediate and explicit error (uvicorn would log in English and ``sys.exit`` in the thread),
    and makes ``port=None`` race-free (the kernel picks the port and we keep the socket).
    ``listen=False`` only reserves the port: until uvicorn listens, clients are refused at once instead
    of waiting in the backlog (``serve`` binds before loading the model, which takes seconds).
    A busy or forbidden port raises :class:`PortUnavailableError`.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerStartError(
            f'Adresse d\'écoute inconnue : {host!r} ({exc}). Utilisez "127.0.0.1" (cette machine seulement) '
            'ou "0.0.0.0" (tout le réseau).'
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform == "win32":
            # On Windows SO_REUSEADDR would let two programs share a port; ask for the opposite.
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", -5), 1)
        else:
            # Lets a restarted server reuse the port at once (connections of the old one in TIME_WAIT);
            # still fails if another socket listens on it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
        sock.set_inheritable(False)
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from None
    return sock


def _bind_error(host: str, port: int, exc: OSError) -> ServerStartError:
    other = port + 1 if port < 65535 else 8001
    in_use = exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), 10048) or getattr(
        exc, "winerror", None
    ) in (10048, 10013)
    if in_use:
        return PortUnavailableError(
            f"Le port {port} est déjà utilisé par un autre programme (peut-être un autre notebook ou un "
            f"« python -m atelier serve » resté ouvert). Arrêtez ce programme, choisissez un autre port "
            f"(par exemple start_server(app, port={other})) ou laissez l'atelier "
            "en choisir un libre avec port=None.",
            port=port,
            reason="in_use",
            suggested_port=other,
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PortUnavailableError(
            f"Accès refusé au port {port} : les ports inférieurs à 1024 demandent des droits "
            "d'administrateur. Choisissez un port au-dessus de 1024, par exemple 8000, ou port=None.",
            port=port,
            reason="denied",
            suggested_port=8000,
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ServerStartError(
            f"L'adresse {host!r} n'appartient pas à cette machine. Utilisez \"127.0.0.1\" (cette machine "
            'seulement) ou "0.0.0.0" (tout le réseau).'
        )
    return ServerStartError(f"Impossible d'écouter sur {host}:{port} : {exc.strerror or exc}.")


def _startup_failed_message(port: int, failure: list[BaseException]) -> str:
    cause = ""
    if failure and not isinstance(failure[0], SystemExit):
        cause = f" Erreur : {type(failure[0]).__name__}: {failure[0]}."
    return (
        f"Le serveur du port {port} s'est arrêté pendant son démarrage.{cause} Le plus souvent, le "
        "démarrage de l'application a échoué (modèle introuvable, fichier illisible…) : lisez les "
        "messages affichés juste au-dessus, corrigez, puis réexécutez la cellule."
    )


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
