"""Ligne de commande de l'atelier : ``python -m atelier <commande>``.

Chaque commande écrit sur sa dernière ligne de sortie un objet JSON (facile à lire par un script) ;
une erreur donne un message en français et un code de sortie non nul, sans trace Python.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .french_argparse import EXIT_USAGE as EXIT_ERROR
from .french_argparse import FrenchArgumentParser

#: Subcommand name → (adds its arguments, runs it and returns a JSON-able dict or None, French help line).
#: Other modules register their commands here (see ``atelier.server_cli``).
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any], str]] = {}


class CliError(Exception):
    """Erreur à afficher telle quelle à l'utilisateur."""


def _print_json(result: Any) -> None:
    print(json.dumps(result, ensure_ascii=False), flush=True)


# --- data -------------------------------------------------------------------------------------------


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="dossier de sortie (défaut : le cache de l'atelier)")
    parser.add_argument("--per-class", type=int, default=400, help="nombre d'images par classe (défaut : 400)")
    parser.add_argument("--seed", type=int, default=0, help="graine du tirage (défaut : 0)")


def _data_run(args: argparse.Namespace) -> dict[str, Any]:
    from .default_dataset import build_default_dataset

    path = build_default_dataset(out_dir=args.out, per_class=args.per_class, seed=args.seed)
    print(path)
    return {"path": str(path), "per_class": args.per_class, "seed": args.seed}


# --- train ------------------------------------------------------------------------------------------


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dossier d'images, un sous-dossier par classe "
        "(défaut : $ATELIER_DATA, images/satellite/ ou le jeu par défaut)",
    )
    parser.add_argument("--out", type=Path, required=True, help="fichier du modèle à écrire, par exemple modele.keras")
    parser.add_argument("--epochs", type=int, default=20, help="nombre d'époques (défaut : 20)")
    parser.add_argument("--seed", type=int, default=0, help="graine (défaut : 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="taille des lots (défaut : 32)")


def _train_run(args: argparse.Namespace) -> dict[str, Any]:
    if args.out.suffix != ".keras":
        raise CliError(f"--out doit être un fichier .keras (reçu : {args.out}).")
    if args.epochs < 1:
        raise CliError("--epochs doit être au moins 1.")
    from .training import train

    result = train(args.data, args.out, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, verbose=2)
    return {
        "test_accuracy": result.metrics["test_accuracy"],
        "classes": result.metadata["classes"],
        "model": str(result.path),
        "metadata": str(result.path.with_suffix(".json")),
        "version": result.metadata["version"],
        "epochs": result.metrics["epochs"],
        "training_seconds": result.metrics["training_seconds"],
        "per_class": result.metrics["per_class"],
    }


# --- evaluate ---------------------------------------------------------------------------------------


def _evaluate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="modèle .keras (avec son fichier .json à côté)")
    parser.add_argument("--data", type=Path, required=True, help="dossier d'images, un sous-dossier par classe")


def _evaluate_run(args: argparse.Namespace) -> dict[str, Any]:
    from .evaluation import evaluate

    report = evaluate(args.model, args.data)
    print(f"Précision : {report['accuracy']:.1%} sur {report['n']} images")
    for name, value in report["per_class"].items():
        print(f"  {name:<10} {value:.1%}")
    return report


COMMANDS.update(
    {
        "data": (_data_args, _data_run, "construire le jeu de données par défaut (images NASA + nuages)"),
        "train": (_train_args, _train_run, "entraîner le CNN de l'atelier et l'enregistrer avec ses métadonnées"),
        "evaluate": (_evaluate_args, _evaluate_run, "évaluer un modèle sur un dossier d'images"),
    }
)

from . import server_cli  # noqa: E402,F401  (registers "serve" and "bench")
from .transfer import CLI_COMMAND as _WEIGHTS_COMMAND  # noqa: E402

COMMANDS["poids-mobilenet"] = _WEIGHTS_COMMAND


def build_parser() -> argparse.ArgumentParser:
    parser = FrenchArgumentParser(
        prog="python -m atelier",
        description="Outils de l'atelier CNN : données, entraînement, évaluation, API.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMANDE", parser_class=FrenchArgumentParser)
    for name, (add_arguments, _, help_text) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Point d'entrée du CLI ; renvoie le code de sortie."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_ERROR
    from .data import DatasetError
    from .model_io import ModelFileError
    from .preprocessing import ImageError

    _, run, _ = COMMANDS[args.command]
    try:
        result = run(args)
    except (CliError, DatasetError, ModelFileError, ImageError, ValueError) as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        where = f" : {exc.filename}" if exc.filename else ""
        print(f"Erreur : fichier introuvable ou inaccessible{where} ({exc.strerror or exc}).", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrompu.", file=sys.stderr)
        return 130
    if result is not None:
        _print_json(result)
    return 0
