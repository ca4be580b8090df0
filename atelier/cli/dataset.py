"""Commande ``python -m atelier data`` : construire le jeu de données par défaut."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .core import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="dossier de sortie (défaut : le cache de l'atelier)")
    parser.add_argument("--per-class", type=int, default=400, help="nombre d'images par classe (défaut : 400)")
    parser.add_argument("--seed", type=int, default=0, help="graine du tirage (défaut : 0)")


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from ..default_dataset import build_default_dataset

    path = build_default_dataset(out_dir=args.out, per_class=args.per_class, seed=args.seed)
    print(path)
    return {"path": str(path), "per_class": args.per_class, "seed": args.seed}


DATA = Command(
    "data",
    _add_arguments,
    _run,
    "construire le jeu de données par défaut (tuiles Sentinel-2, images NASA, déserts et nuages)",
)
