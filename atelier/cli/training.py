"""Commandes ``python -m atelier train`` et ``evaluate`` : entraîner le CNN de l'atelier, évaluer un modèle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .core import CliError, Command


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dossier d'images, un sous-dossier par classe "
        "(défaut : $ATELIER_DATA, images/satellite/ ou le jeu par défaut)",
    )
    parser.add_argument("--out", type=Path, required=True, help="fichier du modèle à écrire, par exemple modele.keras")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="nombre d'époques, d'un passage sur le jeu (de 32 à 64 lots, 45 pour un petit jeu ; défaut : 18) ; "
        "avec --backbone, une passe "
        "sur le jeu par époque, moitié tête, moitié affinage (défaut : 12)",
    )
    parser.add_argument("--seed", type=int, default=0, help="graine (défaut : 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="taille des lots (défaut : 32)")
    parser.add_argument(
        "--backbone",
        choices=("eurosat", "mobilenet"),
        default=None,
        help="apprentissage par transfert depuis un réseau de base (chapitre 3) : « eurosat », livré avec "
        "l'atelier, ou « mobilenet », MobileNetV2 ImageNet s'il est dans le cache de Keras (python -m atelier "
        "poids-mobilenet) ; sans cette option, le CNN de l'atelier est entraîné depuis zéro",
    )


def _train_run(args: argparse.Namespace) -> dict[str, Any]:
    if args.out.suffix != ".keras":
        raise CliError(f"--out doit être un fichier .keras (reçu : {args.out}).")
    if args.epochs is not None and args.epochs < (2 if args.backbone else 1):
        raise CliError(
            "--epochs doit être au moins 2 avec --backbone (tête puis affinage)."
            if args.backbone
            else "--epochs doit être au moins 1."
        )
    from ..training import DEFAULT_EPOCHS, train

    epochs = args.epochs if args.epochs is not None else (12 if args.backbone else DEFAULT_EPOCHS)

    result = train(
        args.data,
        args.out,
        epochs=epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        verbose=2,
        backbone=args.backbone,
    )
    return {
        "backbone": result.metadata.get("backbone"),
        "test_accuracy": result.metrics["test_accuracy"],
        "classes": result.metadata["classes"],
        "model": str(result.path),
        "metadata": str(result.path.with_suffix(".json")),
        "version": result.metadata["version"],
        "epochs": result.metrics["epochs"],
        "steps_per_epoch": result.metrics["steps_per_epoch"],
        "training_seconds": result.metrics["training_seconds"],
        "per_class": result.metrics["per_class"],
    }


def _evaluate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="modèle .keras (avec son fichier .json à côté)")
    parser.add_argument("--data", type=Path, required=True, help="dossier d'images, un sous-dossier par classe")


def _evaluate_run(args: argparse.Namespace) -> dict[str, Any]:
    from ..evaluation import evaluate

    report = evaluate(args.model, args.data)
    print(f"Précision : {report['accuracy']:.1%} sur {report['n']} images")
    for name, value in report["per_class"].items():
        print(f"  {name:<10} {value:.1%}")
    return report


TRAIN = Command(
    "train",
    _train_args,
    _train_run,
    "entraîner le CNN de l'atelier (ou un modèle par transfert, --backbone) et l'enregistrer avec ses métadonnées",
)
EVALUATE = Command("evaluate", _evaluate_args, _evaluate_run, "évaluer un modèle sur un dossier d'images")
