"""Commandes ``serve`` et ``bench`` de ``python -m atelier`` (enregistrées dans :data:`atelier.cli.COMMANDS`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .cli import COMMANDS, CliError

FACTORY = "atelier.api:create_app_from_env"


# --- serve ------------------------------------------------------------------------------------------------


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=os.environ.get("ATELIER_MODEL") or None,
        help="modèle .keras à servir, avec son .json à côté (défaut : $ATELIER_MODEL)",
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
        help="nombre de processus (défaut : 1) ; chacun charge son propre exemplaire du modèle",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="clé exigée dans l'en-tête X-API-Key (défaut : $ATELIER_API_KEY ; préférez la "
        "variable d'environnement, une option se lit dans la liste des processus)",
    )
    parser.add_argument(
        "--db",
        default=None,
        help="fichier SQLite de l'historique (défaut : $ATELIER_DB ou le cache de l'atelier ; "
        "« :memory: » pour le garder en mémoire)",
    )
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="ne pas écrire une ligne par requête"
    )


def _serve_run(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn

    from .server import ServerStartError, _bind, _url_host

    if args.model is None:
        raise CliError("Indiquez le modèle à servir : --model chemin/vers/cnn.keras (ou la variable ATELIER_MODEL).")
    model = Path(args.model).expanduser()
    if not model.is_file():
        raise CliError(
            f"Modèle introuvable : {model}. Entraînez-en un avec « python -m atelier train --out "
            f"{model} » ou indiquez le bon chemin avec --model."
        )
    if not 1 <= args.port <= 65535:
        raise CliError(f"--port doit être entre 1 et 65535 (reçu : {args.port}).")
    if args.workers < 1:
        raise CliError(f"--workers doit être au moins 1 (reçu : {args.workers}).")

    # The app always comes from the same factory and environment, so that one process and N processes
    # (which re-create it in each worker) are configured identically.
    os.environ["ATELIER_MODEL"] = str(model.resolve())
    if args.api_key:
        os.environ["ATELIER_API_KEY"] = args.api_key
    if args.db is not None:
        db = str(args.db)
        os.environ["ATELIER_DB"] = db if db == ":memory:" else str(Path(db).expanduser().resolve())
    url = f"http://{_url_host(args.host)}:{args.port}"

    try:
        sock = _bind(args.host, args.port, cli=True, listen=False)  # reported before loading TensorFlow
    except ServerStartError as exc:
        raise CliError(str(exc)) from None

    if args.workers == 1:
        from .api import create_app_from_env

        try:
            app = create_app_from_env()  # model errors (ModelFileError) are printed in French by the CLI
        except BaseException:
            sock.close()
            raise
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            loop="asyncio",
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
    else:
        from .model_io import read_metadata

        sock.close()  # each worker binds it again (uvicorn shares the socket with its workers)
        read_metadata(model)  # a bad model fails here, once, rather than in every worker
        print(
            f"API de l'atelier : {args.workers} processus sur {url} (documentation : {url}/docs). Ctrl+C pour arrêter.",
            flush=True,
        )
        try:
            uvicorn.run(
                FACTORY,
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_level="info",
                access_log=args.access_log,
                timeout_graceful_shutdown=10,
            )
        except KeyboardInterrupt:
            pass
    return {"status": "arrêté", "url": url, "workers": args.workers}


# --- bench ------------------------------------------------------------------------------------------------


def _connections(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"liste d'entiers séparés par des virgules attendue : {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"entiers ≥ 1 attendus : {text!r}")
    return values


def _bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="modèle .keras à mesurer (défaut : un CNN de l'atelier non entraîné, créé pour l'occasion)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="secondes par mesure (défaut : 5)")
    parser.add_argument(
        "--connections",
        type=_connections,
        default=[1, 8, 32],
        help="niveaux de concurrence, séparés par des virgules (défaut : 1,8,32)",
    )
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="générateur de charge : wrk s'il est installé (auto, défaut), wrk ou python",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="secondes de chauffe par cible (défaut : 1)")


def _bench_run(args: argparse.Namespace) -> dict[str, Any]:
    from .bench import BenchError, format_table, run_bench

    if args.model is not None and not Path(args.model).is_file():
        raise CliError(f"Modèle introuvable : {args.model}")
    try:
        summary = run_bench(
            args.model,
            duration=args.duration,
            connections=args.connections,
            generator=args.generator,
            warmup=args.warmup,
            log=lambda text: print(text, file=sys.stderr, flush=True),
        )
    except BenchError as exc:
        raise CliError(str(exc)) from None
    print(format_table(summary), flush=True)
    return summary


COMMANDS.update(
    {
        "serve": (_serve_args, _serve_run, "servir l'API (FastAPI + uvicorn) pour un vrai déploiement"),
        "bench": (_bench_args, _bench_run, "mesurer la vitesse de l'API : plafond, API naïve et /predict"),
    }
)
