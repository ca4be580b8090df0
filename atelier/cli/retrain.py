"""Commande ``python -m atelier retrain`` : affiner un modèle sur les corrections de l'historique, le publier."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .core import CliError, Command
from .repository import add_min_accuracy_argument, min_accuracy


def _retrain_args(parser: argparse.ArgumentParser) -> None:
    from ..retraining import HELD_OUT_TOLERANCE, LEARNING_RATE, MIN_CORRECTIONS, STEPS

    parser.add_argument("--model", type=Path, required=True, help="modèle .keras à affiner (avec son .json à côté)")
    parser.add_argument("--db", type=Path, required=True, help="historique SQLite du serveur (option --db de serve)")
    parser.add_argument(
        "--images", type=Path, required=True, help="dossier des images gardées par le serveur (--store-images)"
    )
    parser.add_argument("--out", type=Path, required=True, help="fichier du nouveau modèle, par exemple v2.keras")
    parser.add_argument(
        "--publish",
        type=Path,
        default=None,
        metavar="DEPOT",
        help="publier aussi le nouveau modèle dans ce dépôt de modèles (les serveurs --model-dir le suivent)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="jeu d'origine : échantillon de rappel et jeu tenu à l'écart (défaut : celui de train)",
    )
    parser.add_argument(
        "--min-corrections",
        type=int,
        default=MIN_CORRECTIONS,
        help=f"corrections nécessaires pour réentraîner (défaut : {MIN_CORRECTIONS})",
    )
    parser.add_argument(
        "--tolerance",
        type=int,
        default=HELD_OUT_TOLERANCE,
        help="images bien classées du jeu tenu à l'écart que le nouveau modèle peut perdre "
        f"(défaut : {HELD_OUT_TOLERANCE})",
    )
    parser.add_argument("--steps", type=int, default=STEPS, help=f"pas d'affinage (défaut : {STEPS})")
    parser.add_argument(
        "--learning-rate", type=float, default=LEARNING_RATE, help=f"pas d'Adam (défaut : {LEARNING_RATE:g})"
    )
    parser.add_argument("--seed", type=int, default=0, help="graine (défaut : 0)")
    add_min_accuracy_argument(parser)


def _check(args: argparse.Namespace) -> None:
    if args.out.suffix != ".keras":
        raise CliError(f"--out doit être un fichier .keras (reçu : {args.out}).")
    if not args.model.is_file():
        raise CliError(f"Modèle introuvable : {args.model}.")
    if args.steps < 1:
        raise CliError(f"--steps doit être au moins 1 (reçu : {args.steps}).")
    if args.min_corrections < 1:
        raise CliError(f"--min-corrections doit être au moins 1 (reçu : {args.min_corrections}).")
    if args.tolerance < 0:
        raise CliError(f"--tolerance doit être positive ou nulle (reçu : {args.tolerance}).")
    if not 0 < args.learning_rate < 1:
        raise CliError(f"--learning-rate doit être entre 0 et 1 (reçu : {args.learning_rate}).")


def _percent(value: float | None) -> str:
    from ..formatting import percent

    return "—" if value is None else percent(value)


def _print_summary(report: dict[str, Any]) -> None:
    held_out, corrected = report["held_out"], report["corrected"]
    print(
        f"Jeu tenu à l'écart ({held_out['n']} images) : {_percent(held_out['old_accuracy'])} → "
        f"{_percent(held_out['new_accuracy'])} ({held_out['fixed']} réparées, {held_out['broken']} cassées)",
        flush=True,
    )
    print(
        f"Cas corrigés ({corrected['n']} images) : {_percent(corrected['old_accuracy'])} → "
        f"{_percent(corrected['new_accuracy'])} ; affinage : {report['steps']} pas en {report['training_seconds']} s",
        flush=True,
    )


def _retrain_run(args: argparse.Namespace) -> dict[str, Any]:
    from ..model_io import read_metadata
    from ..retraining import RetrainingError, collect_feedback, retrain

    _check(args)
    floor = min_accuracy(args)  # checked before the (long) retraining
    try:
        found = collect_feedback(args.db, args.images, read_metadata(args.model)["classes"])
        print(
            f"{len(found.items)} prédictions annotées avec leur image ({len(found.missing_images)} sans image, "
            f"{len(found.unknown_labels)} de classe inconnue, {len(found.superseded)} remplacées par une annotation "
            "plus récente).",
            flush=True,
        )
        result = retrain(
            args.model,
            found.items,
            args.out,
            data_dir=args.data,
            min_corrections=args.min_corrections,
            tolerance=args.tolerance,
            steps=args.steps,
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
    except RetrainingError as error:
        raise CliError(str(error), result={**error.report, "published_version": None}) from None
    report = {**result.report, "published_version": None}
    _print_summary(report)
    if not result.accepted:
        raise CliError(f"Nouveau modèle refusé, rien n'est écrit ni publié : {report['reason']}.", result=report)
    print(f"Nouveau modèle écrit : {args.out} (version {report['version']}, parent {report['parent_version']}).")
    if args.publish is not None:
        from ..model_repository import ModelRepository

        report["published_version"] = ModelRepository(args.publish, min_accuracy=floor).publish(args.out)
        print(
            f"Version {report['published_version']} publiée dans {args.publish} : les serveurs qui suivent ce "
            "dépôt la serviront à leur prochaine lecture.",
            flush=True,
        )
    return report


RETRAIN = Command(
    "retrain",
    _retrain_args,
    _retrain_run,
    "affiner un modèle sur les corrections de l'historique (images gardées par le serveur), et le publier",
)
