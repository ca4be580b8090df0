"""Commandes ``python -m atelier publish`` et ``models`` : publier un modèle dans un dépôt versionné, le lister."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .core import CliError, Command


def _min_accuracy_default() -> float:
    from ..model_repository import DEFAULT_MIN_ACCURACY

    raw = os.environ.get("ATELIER_MIN_ACCURACY", "").strip()
    try:
        return float(raw) if raw else DEFAULT_MIN_ACCURACY
    except ValueError:
        raise CliError(f"La variable ATELIER_MIN_ACCURACY doit être un nombre entre 0 et 1 (reçu : {raw!r}).") from None


def add_model_dir_argument(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--model-dir`` (défaut : ``$ATELIER_MODEL_DIR``), partagé par ``publish``, ``models`` et ``serve``."""
    default = os.environ.get("ATELIER_MODEL_DIR") or None
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=default,
        required=required and default is None,
        help="dépôt de modèles : un dossier par version, DOSSIER/1/, DOSSIER/2/… (défaut : $ATELIER_MODEL_DIR)",
    )


def add_min_accuracy_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=None,
        help="précision enregistrée minimale pour servir une version, entre 0 et 1 "
        "(défaut : $ATELIER_MIN_ACCURACY ou 0.5 ; 0 pour ne pas l'exiger)",
    )


def min_accuracy(args: argparse.Namespace) -> float:
    value = _min_accuracy_default() if args.min_accuracy is None else args.min_accuracy
    if not 0 <= value <= 1:
        raise CliError(f"--min-accuracy doit être entre 0 et 1 (reçu : {value}).")
    return value


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}".replace(".", ",") + " %"


# --- publish -----------------------------------------------------------------------------------------------


def _publish_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="modèle .keras à publier, avec son .json à côté")
    add_model_dir_argument(parser, required=True)
    add_min_accuracy_argument(parser)


def _publish_run(args: argparse.Namespace) -> dict[str, Any]:
    from ..model_repository import ModelRepository

    floor = min_accuracy(args)
    repository = ModelRepository(args.model_dir, min_accuracy=floor)
    version = repository.publish(args.model)
    metadata = next(row for row in repository.describe() if row["version"] == version)
    accuracy = metadata["accuracy"]
    print(
        f"Version {version} publiée dans {repository.root} (modèle {metadata['source_version']}, "
        f"précision enregistrée : {_percent(accuracy)}). Les serveurs qui suivent ce dossier la serviront "
        "à leur prochaine lecture si elle passe leurs vérifications (et si aucune version n'est épinglée).",
        flush=True,
    )
    if floor > 0 and (accuracy is None or accuracy < floor):
        print(
            f"Attention : précision enregistrée {_percent(accuracy)}, plancher {_percent(floor)} : "
            "les serveurs ignoreront cette version.",
            flush=True,
        )
    return {
        "version": version,
        "model_dir": str(repository.root),
        "source_version": metadata["source_version"],
        "accuracy": accuracy,
    }


# --- models ------------------------------------------------------------------------------------------------


def _models_args(parser: argparse.ArgumentParser) -> None:
    add_model_dir_argument(parser, required=True)
    add_min_accuracy_argument(parser)


def _models_run(args: argparse.Namespace) -> dict[str, Any]:
    from ..model_repository import ModelRepository

    repository = ModelRepository(args.model_dir, min_accuracy=min_accuracy(args))
    if not repository.root.is_dir():
        raise CliError(f"Dépôt de modèles introuvable : {repository.root}.")
    for version in repository.versions():
        repository.is_valid(version)  # loads and checks each version once, as a server would
    resolved = repository.resolve()
    rows = repository.describe()
    pin = repository.pinned()
    print(f"{'version':>7}  {'état':<12} {'précision':>9}  {'publiée le':<26} modèle d'origine")
    for row in rows:
        mark = "*" if row["pinned"] else " "
        print(
            f"{row['version']:>6}{mark}  {row['status']:<12} {_percent(row.get('accuracy')):>9}  "
            f"{row.get('published') or '—':<26} {row.get('source_version') or '—'}"
        )
        if row["error"]:
            print(f"{'':>9}↳ {row['error']}")
    policy = f"épinglée (fichier {repository.root / 'pin'})" if pin is not None else "la plus récente valide"
    served = "aucune" if resolved is None else str(resolved)
    print(f"Version servie : {served} — règle : {policy}.{' (* = épinglée)' if pin is not None else ''}", flush=True)
    return {"model_dir": str(repository.root), "pin": pin, "resolved": resolved, "versions": rows}


PUBLISH = Command("publish", _publish_args, _publish_run, "publier un modèle dans un dépôt de modèles versionné")
MODELS = Command("models", _models_args, _models_run, "lister les versions d'un dépôt de modèles et leur état")
