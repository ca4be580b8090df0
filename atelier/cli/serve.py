"""Commande ``python -m atelier serve`` : servir l'API pour un vrai déploiement (un ou plusieurs processus)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Literal

from .core import CliError, Command
from .repository import add_min_accuracy_argument, add_model_dir_argument, min_accuracy

#: Import string of the application factory: each of the ``--workers`` processes builds its own app.
FACTORY = "atelier.api:create_app_from_env"
#: Seconds a worker may take to answer uvicorn's health check (it loads TensorFlow and the model first).
WORKER_STARTUP_TIMEOUT_S = 120
#: The guarded HTTP protocol of the worker processes, by name (their configuration is pickled).
WORKER_PROTOCOLS = {
    "httptools": "atelier.api.protocol:HttpToolsProtocol",
    "h11": "atelier.api.protocol:H11Protocol",
}


def _serve_args(parser: argparse.ArgumentParser) -> None:
    from ..inference import RUNTIMES, serve_runtime

    parser.add_argument(
        "--model",
        type=Path,
        default=os.environ.get("ATELIER_MODEL") or None,
        help="modèle .keras à servir, avec son .json à côté (défaut : $ATELIER_MODEL) ; ou --model-dir",
    )
    add_model_dir_argument(parser, required=False)
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="avec --model-dir : secondes entre deux lectures du dépôt (défaut : $ATELIER_POLL_SECONDS ou 2)",
    )
    add_min_accuracy_argument(parser)
    parser.add_argument(
        "--history-days",
        type=float,
        default=None,
        help="effacer les prédictions de plus de N jours (défaut : $ATELIER_HISTORY_DAYS ou 30 ; 0 : jamais)",
    )
    parser.add_argument(
        "--history-max-rows",
        type=int,
        default=None,
        help="garder au plus N prédictions (défaut : $ATELIER_HISTORY_MAX_ROWS ou 100000 ; 0 : sans limite)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="adresse d'écoute : 127.0.0.1 (défaut, cette machine seulement) ou 0.0.0.0 (tout le réseau)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port d'écoute (défaut : 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="nombre de processus (défaut : 1) ; chacun charge son propre exemplaire du modèle et, avec "
        "--model-dir, suit le dépôt (tous convergent vers la même version)",
    )
    _key_args(parser)
    parser.add_argument(
        "--db",
        default=None,
        help="fichier SQLite de l'historique (défaut : $ATELIER_DB ou le cache de l'atelier ; "
        "« :memory: » pour le garder en mémoire)",
    )
    parser.add_argument(
        "--store-images",
        type=Path,
        default=None,
        metavar="DOSSIER",
        help="garder les images reçues dans DOSSIER, sous <sha256>.<ext> (défaut : $ATELIER_STORE_IMAGES ou "
        "aucune) ; elles suivent la rétention de l'historique et DELETE /predictions/{id} les efface ; "
        "nécessaire pour GET /predictions/{id}/explanation et le réentraînement",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=serve_runtime(),
        help="ce qui calcule les probabilités : tflite (défaut : TensorFlow Lite, mesuré 2 à 5 fois moins de frais "
        "par appel ; gardé seulement s'il redonne les sorties de TensorFlow) ou tensorflow "
        "($ATELIER_INFERENCE_RUNTIME)",
    )
    parser.add_argument(
        "--access-log",
        dest="access_log",
        action="store_true",
        default=False,
        help="écrire une ligne par requête dans le terminal (défaut : non ; mesuré, elle coûte ≈ 10 %% du débit)",
    )
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="pas de ligne par requête (le défaut)"
    )
    _overload_args(parser)


#: Overload options → (environment variable read by ApiSettings, type, help).
OVERLOAD_OPTIONS = {
    "max_inflight": (
        "ATELIER_MAX_INFLIGHT",
        int,
        "requêtes /predict en cours au-delà desquelles une nouvelle reçoit 503 tout de suite (défaut : 32 ; 0 : sans "
        "limite)",
    ),
    "max_connections": (
        "ATELIER_MAX_CONNECTIONS",
        int,
        "connexions ouvertes au-delà desquelles une nouvelle connexion reçoit 503 (défaut : 1000 ; 0 : sans plafond)",
    ),
    "header_timeout": (
        "ATELIER_HEADER_TIMEOUT",
        float,
        "secondes pour recevoir les en-têtes d'une requête, sinon 408 (défaut : 10 ; 0 : sans délai)",
    ),
    "body_timeout": (
        "ATELIER_BODY_TIMEOUT",
        float,
        "fenêtre en secondes où un corps incomplet doit arriver à --body-min-rate, sinon 408 (défaut : 10)",
    ),
    "body_min_rate": (
        "ATELIER_BODY_MIN_RATE",
        int,
        "débit minimal d'un corps de requête, en octets par seconde (défaut : 4096)",
    ),
}


def _overload_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("surcharge et clients lents (voir le README, « Sous la charge »)")
    for name, (_, kind, help_text) in OVERLOAD_OPTIONS.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=help_text)


def fast_protocols() -> tuple[Literal["uvloop", "asyncio"], Literal["httptools", "h11"]]:
    """The HTTP parser and event loop of ``serve``, chosen by measurement (``python -m atelier bench``).

    httptools (the C parser of Node.js) instead of h11 (pure Python), uvloop (libuv) instead of the
    asyncio loop: the event loop thread is what limits the server (profiled: ≈ 90 % of the time the
    GIL is held), and both shorten it. uvloop has no Windows build: there the asyncio loop is used.
    The notebook helper (:func:`atelier.server.start_server`) keeps the plain asyncio loop.
    """
    loop: Literal["uvloop", "asyncio"] = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    http: Literal["httptools", "h11"] = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return loop, http


def _key_args(parser: argparse.ArgumentParser) -> None:
    """The API keys and their roles (atelier.keys)."""
    parser.add_argument(
        "--api-key",
        default=None,
        help="clé exigée dans l'en-tête X-API-Key (défaut : $ATELIER_API_KEY ; préférez la "
        "variable d'environnement, une option se lit dans la liste des processus)",
    )
    parser.add_argument(
        "--admin-key",
        default=None,
        help="clé de gestion (PUT /model, épinglage, effacement, tout l'historique ; défaut : $ATELIER_ADMIN_KEY) ; "
        "avec elle, --api-key n'est plus qu'une clé d'inférence",
    )
    parser.add_argument(
        "--keys-file",
        type=Path,
        default=None,
        help="fichier de clés JSON créé par « python -m atelier cle » (défaut : $ATELIER_KEYS_FILE), relu dès "
        "qu'il change : une clé retirée est refusée sans redémarrer",
    )


def _serve_run(args: argparse.Namespace) -> dict[str, Any]:
    from ..server import url_host

    model_dir, model = _model_source(args)
    _check_options(args)
    _export_settings(args, model_dir, model)
    url = f"http://{url_host(args.host)}:{args.port}"
    sock = _reserve_port(args.host, args.port)  # reported before loading TensorFlow
    if args.workers == 1:
        _run_one_process(args, sock, url)
    else:
        sock.close()  # each worker binds it again (uvicorn shares the socket with its workers)
        _run_workers(args, model, url)
    return {"status": "arrêté", "url": url, "workers": args.workers}


def _model_source(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """``(model_dir, None)`` with ``--model-dir``, else ``(None, model)``; a CliError if it does not exist."""
    if args.model_dir is not None:
        model_dir = Path(args.model_dir).expanduser()
        if not model_dir.is_dir():
            raise CliError(
                f"Dépôt de modèles introuvable : {model_dir}. Créez le dossier puis publiez-y un modèle avec "
                f"« python -m atelier publish --model modele.keras --model-dir {model_dir} »."
            )
        return model_dir, None
    if args.model is None:
        raise CliError(
            "Indiquez le modèle à servir : --model chemin/vers/cnn.keras (ou la variable ATELIER_MODEL), "
            "ou un dépôt de modèles : --model-dir DOSSIER."
        )
    model = Path(args.model).expanduser()
    if not model.is_file():
        raise CliError(
            f"Modèle introuvable : {model}. Entraînez-en un avec « python -m atelier train --out "
            f"{model} » ou indiquez le bon chemin avec --model."
        )
    return None, model


def _check_options(args: argparse.Namespace) -> None:
    """A CliError for a number out of its range (poll period, history limits, port, workers)."""
    if args.poll_seconds is not None and args.poll_seconds <= 0:
        raise CliError(f"--poll-seconds doit être positif (reçu : {args.poll_seconds}).")
    for name in ("history_days", "history_max_rows"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise CliError(f"--{name.replace('_', '-')} doit être positif ou nul (reçu : {getattr(args, name)}).")
    for name in OVERLOAD_OPTIONS:
        value = getattr(args, name)
        if value is not None and (value < 0 or (name == "body_min_rate" and value == 0)):
            expected = "positif" if name == "body_min_rate" else "positif ou nul"
            raise CliError(f"--{name.replace('_', '-')} doit être {expected} (reçu : {value}).")
    if not 1 <= args.port <= 65535:
        raise CliError(f"--port doit être entre 1 et 65535 (reçu : {args.port}).")
    if args.workers < 1:
        raise CliError(f"--workers doit être au moins 1 (reçu : {args.workers}).")


def _export_settings(args: argparse.Namespace, model_dir: Path | None, model: Path | None) -> None:
    """Write the options into the environment read by :data:`FACTORY`.

    The app always comes from the same factory and environment, so that one process and N processes
    (which re-create it in each worker) are configured identically.
    """
    if model_dir is not None:
        os.environ["ATELIER_MODEL_DIR"] = str(model_dir.resolve())
    elif model is not None:
        os.environ.pop("ATELIER_MODEL_DIR", None)
        os.environ["ATELIER_MODEL"] = str(model.resolve())
    options = {
        "ATELIER_POLL_SECONDS": args.poll_seconds,
        "ATELIER_MIN_ACCURACY": None if args.min_accuracy is None else min_accuracy(args),
        "ATELIER_HISTORY_DAYS": args.history_days,
        "ATELIER_HISTORY_MAX_ROWS": args.history_max_rows,
        "ATELIER_INFERENCE_RUNTIME": args.runtime,
    }
    options.update({env: getattr(args, name) for name, (env, _, _) in OVERLOAD_OPTIONS.items()})
    for env, value in options.items():
        if value is not None:
            os.environ[env] = str(value)
    if args.api_key:
        os.environ["ATELIER_API_KEY"] = args.api_key
    if args.admin_key:
        os.environ["ATELIER_ADMIN_KEY"] = args.admin_key
    if args.keys_file is not None:
        os.environ["ATELIER_KEYS_FILE"] = str(Path(args.keys_file).expanduser().resolve())
    if args.store_images is not None:
        os.environ["ATELIER_STORE_IMAGES"] = str(Path(args.store_images).expanduser().resolve())
    if args.db is not None:
        db = str(args.db)
        os.environ["ATELIER_DB"] = db if db == ":memory:" else str(Path(db).expanduser().resolve())


def _run_one_process(args: argparse.Namespace, sock: socket.socket, url: str) -> None:
    """Serve in this process on the reserved ``sock`` until Ctrl+C (the socket is closed in any case)."""
    import uvicorn

    from ..api import create_app_from_env
    from ..connection_guard import connection_limits_of, guarded_protocol

    try:
        app = create_app_from_env()  # model errors (ModelFileError) are printed in French by the CLI
    except BaseException:
        sock.close()
        raise
    loop, http = fast_protocols()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop=loop,
        http=guarded_protocol(http, connection_limits_of(app)),  # slow clients cut, connections capped
        log_level="info",
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
    )
    print(f"API de l'atelier en marche sur {url} (documentation : {url}/docs). Ctrl+C pour arrêter.", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after a clean shutdown
        pass
    finally:
        sock.close()


def _run_workers(args: argparse.Namespace, model: Path | None, url: str) -> None:
    """Serve with ``--workers`` processes, each building its app from :data:`FACTORY`, until Ctrl+C."""
    import uvicorn

    from ..model_io import read_metadata

    if model is not None:
        read_metadata(model)  # a bad model fails here, once, rather than in every worker
    # One Prometheus folder for all the workers: /metrics sums them, whichever worker answers.
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="atelier-metriques-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    print(
        f"API de l'atelier : {args.workers} processus sur {url} (documentation : {url}/docs). Ctrl+C pour arrêter.",
        flush=True,
    )
    loop, http = fast_protocols()
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            FACTORY,
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            # Each worker imports TensorFlow and loads its model before answering uvicorn's health
            # checks: 5 s (uvicorn's default) is too short on a busy laptop, the worker would be killed.
            timeout_worker_healthcheck=WORKER_STARTUP_TIMEOUT_S,
            http=WORKER_PROTOCOLS[http],
            loop=loop,
            log_level="info",
            access_log=args.access_log,
            timeout_graceful_shutdown=10,
        )
    if metrics_dir is not None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _reserve_port(host: str, port: int) -> socket.socket:
    """The socket of ``serve``, or a CliError whose advice speaks of ``--port`` (not of Python code)."""
    from ..server import PortUnavailableError, ServerStartError, bind_socket

    try:
        return bind_socket(host, port, listen=False)
    except PortUnavailableError as exc:
        if exc.reason == "in_use":
            raise CliError(
                f"Le port {port} est déjà utilisé par un autre programme (peut-être un notebook ou un autre "
                f"« python -m atelier serve »). Arrêtez ce programme ou choisissez un autre port, par exemple "
                f"--port {exc.suggested_port}."
            ) from None
        raise CliError(
            f"Accès refusé au port {port} : les ports inférieurs à 1024 demandent des droits "
            f"d'administrateur. Choisissez un port au-dessus de 1024, par exemple 8000 (--port {exc.suggested_port})."
        ) from None
    except ServerStartError as exc:
        raise CliError(str(exc)) from None


SERVE = Command("serve", _serve_args, _serve_run, "servir l'API (FastAPI + uvicorn) pour un vrai déploiement")
