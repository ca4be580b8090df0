"""L'analyseur d'arguments et le point d'entrée de ``python -m atelier`` ; la liste des commandes."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..french_argparse import EXIT_USAGE as EXIT_ERROR
from ..french_argparse import FrenchArgumentParser
from .bench import BENCH
from .core import CliError, Command
from .dataset import DATA
from .repository import MODELS, PUBLISH
from .retrain import RETRAIN
from .serve import SERVE
from .training import EVALUATE, TRAIN
from .weights import WEIGHTS

#: Every subcommand, by name, in the order of ``python -m atelier --help``.
COMMANDS: dict[str, Command] = {
    command.name: command for command in (DATA, TRAIN, EVALUATE, RETRAIN, PUBLISH, MODELS, SERVE, BENCH, WEIGHTS)
}


def _print_json(result: Any) -> None:
    print(json.dumps(result, ensure_ascii=False), flush=True)


def build_parser() -> FrenchArgumentParser:
    parser = FrenchArgumentParser(
        prog="python -m atelier",
        description="Outils de l'atelier CNN : données, entraînement, évaluation, API.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMANDE", parser_class=FrenchArgumentParser)
    for command in COMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Point d'entrée du CLI ; renvoie le code de sortie."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_ERROR
    from ..data import DatasetError
    from ..model_io import ModelFileError
    from ..preprocessing import ImageError

    try:
        result = COMMANDS[args.command].run(args)
    except (CliError, DatasetError, ModelFileError, ImageError, ValueError) as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        if isinstance(exc, CliError) and exc.result is not None:
            _print_json(exc.result)  # what was measured before the refusal, still on the last line
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
