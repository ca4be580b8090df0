"""Commande ``python -m atelier bench`` : mesurer la vitesse de l'API (borne, route triviale, ``/predict``, pairs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .core import CliError, Command


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
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="mesurer chaque niveau N fois et donner la médiane (défaut : 1 ; --repeat 3 pour des chiffres à publier)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="secondes de chauffe par cible (défaut : 1)")
    parser.add_argument(
        "--no-naive", dest="naive", action="store_false", help="ne pas mesurer l'API naïve (plus rapide)"
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="mesurer aussi LitServe sur le même modèle, dans un environnement à part créé dans le cache "
        "(téléchargé depuis PyPI la première fois)",
    )


def _bench_run(args: argparse.Namespace) -> dict[str, Any]:
    from ..bench import BenchError, format_table, run_bench

    if args.model is not None and not Path(args.model).is_file():
        raise CliError(f"Modèle introuvable : {args.model}")
    try:
        summary = run_bench(
            args.model,
            duration=args.duration,
            connections=args.connections,
            generator=args.generator,
            warmup=args.warmup,
            naive=args.naive,
            peers=args.peers,
            repeat=args.repeat,
            log=lambda text: print(text, file=sys.stderr, flush=True),
        )
    except BenchError as exc:
        raise CliError(str(exc)) from None
    print(format_table(summary), flush=True)
    return summary


BENCH = Command(
    "bench", _bench_args, _bench_run, "mesurer la vitesse de l'API : borne de calcul, route triviale, /predict, pairs"
)
