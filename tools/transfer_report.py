"""Rapport de transfert : le modèle entraîné sur le jeu par défaut reconnaît-il de VRAIES images ?

Entraîne le CNN de l'atelier sur le jeu de données par défaut (comme ``python -m atelier train``), ou prend un
modèle déjà entraîné (``--model``), puis l'évalue sur chaque dossier d'images réelles donné (un sous-dossier
par classe : ``forêt/`` … ou ``green_area/``, ``water/``, ``desert/``, ``cloudy/``, ``Forest/``, ``SeaLake/``) :
précision globale, précision par classe et matrice de confusion. La dernière ligne est un objet JSON.

Avec ``--small-set``, mesure aussi ce que donne un entraînement sur un PETIT jeu d'images réelles : chaque
dossier est coupé en deux moitiés stratifiées ; un modèle jetable (jamais enregistré) est entraîné sur une
moitié et testé sur l'autre, puis l'inverse ; chaque image est ainsi prédite une fois par un modèle qui ne
l'a jamais vue.

C'est un banc d'essai, pas un test : il lit des dossiers qui ne sont pas dans le projet.

Usage : python tools/transfer_report.py DOSSIER [DOSSIER…] [--model M.keras] [--small-set] [--errors DOSSIER]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from atelier.data import DatasetError, ImageDataset, load_dataset, split_dataset
from atelier.evaluation import confusion_matrix, evaluate_dataset, predict_probabilities
from atelier.formatting import percent
from atelier.french_argparse import EXIT_USAGE, FrenchArgumentParser
from atelier.model_io import ModelFileError, load_model
from atelier.training import DEFAULT_EPOCHS


def format_report(title: str, report: dict[str, Any]) -> str:
    """Un rapport d'évaluation en texte : précision globale, par classe, matrice de confusion."""
    classes = report["classes"]
    matrix = np.asarray(report["confusion"])
    lines = [f"== {title} : {report['n']} images", f"Précision globale : {percent(report['accuracy'])}"]
    for i, name in enumerate(classes):
        if matrix[i].sum():
            lines.append(f"  {name:<10} {percent(report['per_class'][name]):>8}  ({matrix[i].sum()} images)")
    width = max(8, *(len(c) + 1 for c in classes))
    lines.append("Matrice de confusion (ligne = vraie classe, colonne = classe prédite) :")
    lines.append(" " * 12 + "".join(f"{c:>{width}}" for c in classes))
    for i, name in enumerate(classes):
        lines.append(f"  {name:<10}" + "".join(f"{v:>{width}}" for v in matrix[i]))
    return "\n".join(lines)


def misclassified_figure(model, dataset: ImageDataset, path: Path) -> None:
    """Enregistre la galerie des images mal classées (PNG)."""
    from atelier.plots import plot_misclassified

    probabilities = predict_probabilities(model, dataset.images)
    figure = plot_misclassified(
        dataset.images,
        dataset.labels,
        probabilities.argmax(axis=1),
        dataset.classes,
        probabilities=probabilities,
        max_images=48,
        columns=12,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def train_on_default(epochs: int, seed: int, out: Path) -> tuple[Any, list[str], dict[str, Any]]:
    """Entraîne le CNN sur le jeu par défaut (recette de ``python -m atelier train``).

    Renvoie le modèle, ses classes et ses métriques (dont la précision sur le test du jeu par défaut)."""
    from atelier.default_dataset import build_default_dataset
    from atelier.training import train

    started = time.perf_counter()
    data_dir = build_default_dataset()
    build_seconds = time.perf_counter() - started
    result = train(data_dir, out, epochs=epochs, seed=seed, verbose=0)
    metrics = dict(result.metrics, dataset_seconds=round(build_seconds, 1), data=str(data_dir))
    return result.model, result.metadata["classes"], metrics


def small_set_report(dataset: ImageDataset, epochs: int, seed: int) -> dict[str, Any]:
    """Deux modèles jetables, chacun entraîné sur une moitié et testé sur l'autre ; rien n'est enregistré."""
    from atelier.model import build_cnn, compile_model
    from atelier.training import fit, set_seed, training_plan

    halves = split_dataset(dataset, validation=0.0, test=0.5, seed=seed)
    true, predicted, folds = [], [], []
    for learn, held_out in ((halves.train, halves.test), (halves.test, halves.train)):
        parts = split_dataset(learn, validation=0.15, test=0.0, seed=seed)
        set_seed(seed)
        plan = training_plan(len(parts.train), epochs=epochs)
        model = compile_model(build_cnn(dataset.classes, seed=seed), total_steps=plan.total_steps)
        fit(model, parts.train, parts.validation, plan, seed=seed, verbose=0)
        report = evaluate_dataset(model, held_out)
        folds.append({"n_train": len(parts.train), "n_test": report["n"], "accuracy": report["accuracy"]})
        true.append(held_out.labels)
        predicted.append(predict_probabilities(model, held_out.images).argmax(axis=1))
    matrix = confusion_matrix(np.concatenate(true), np.concatenate(predicted), len(dataset.classes))
    per_class = {name: round(float(matrix[i, i] / matrix[i].sum()), 4) for i, name in enumerate(dataset.classes)}
    return {
        "accuracy": round(float(np.trace(matrix) / matrix.sum()), 4),
        "per_class": per_class,
        "confusion": matrix.tolist(),
        "classes": list(dataset.classes),
        "n": int(matrix.sum()),
        "folds": folds,
    }


def build_parser() -> FrenchArgumentParser:
    parser = FrenchArgumentParser(
        prog="python tools/transfer_report.py",
        description="Évaluer le modèle du jeu par défaut (ou --model) sur des dossiers d'images réelles.",
    )
    parser.add_argument(
        "folders", nargs="+", type=Path, metavar="DOSSIER", help="images réelles, un sous-dossier par classe"
    )
    parser.add_argument("--model", type=Path, default=None, help="modèle .keras déjà entraîné (sinon : entraîné ici)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"époques de chaque entraînement (défaut : {DEFAULT_EPOCHS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="graine (défaut : 0)")
    parser.add_argument(
        "--small-set", action="store_true", help="mesurer aussi un entraînement sur la moitié de chaque dossier"
    )
    parser.add_argument(
        "--errors", type=Path, default=None, help="dossier où enregistrer les images mal classées (PNG)"
    )
    parser.add_argument(
        "--keep-model", type=Path, default=None, help="fichier .keras où garder le modèle entraîné ici (sinon : effacé)"
    )
    return parser


def run(args) -> dict[str, Any]:
    result: dict[str, Any] = {"folders": {}}
    with tempfile.TemporaryDirectory(prefix="rapport-transfert-") as scratch:
        if args.model is not None:
            info = load_model(args.model)
            model, classes = info.model, info.classes
            result["model"] = str(args.model)
        else:
            print("Entraînement du CNN sur le jeu de données par défaut…", flush=True)
            out = args.keep_model if args.keep_model is not None else Path(scratch) / "defaut.keras"
            model, classes, metrics = train_on_default(args.epochs, args.seed, out)
            result["default"] = metrics
            print(
                f"Jeu par défaut : {percent(metrics['test_accuracy'])} sur son test ({metrics['n_test']} images), "
                f"{metrics['epochs']} époques de {metrics['steps_per_epoch']} lots en {metrics['training_seconds']} s "
                f"(jeu construit ou relu en {metrics['dataset_seconds']} s)."
            )
        for folder in args.folders:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicates and unreadable files are counted by load_dataset
                dataset = load_dataset(folder, classes=classes)
            report = evaluate_dataset(model, dataset)
            print(format_report(str(folder), report))
            entry: dict[str, Any] = {"model": report}
            if args.errors is not None:
                picture = args.errors / f"erreurs-{folder.name}.png"
                misclassified_figure(model, dataset, picture)
                print(f"Images mal classées : {picture}")
            if args.small_set:
                print(f"Petit jeu : deux modèles jetables entraînés chacun sur une moitié de {folder}…", flush=True)
                small = small_set_report(dataset, args.epochs, args.seed)
                print(format_report(f"{folder} — entraîné sur une moitié, testé sur l'autre", small))
                entry["small_set"] = small
            result["folders"][str(folder)] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1:
        print("Erreur : --epochs doit être au moins 1.", file=sys.stderr)
        return EXIT_USAGE
    if args.keep_model is not None and (args.model is not None or args.keep_model.suffix != ".keras"):
        print("Erreur : --keep-model attend un fichier .keras, et seulement sans --model.", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = run(args)
    except (DatasetError, ModelFileError, ValueError, OSError) as error:
        print(f"Erreur : {error}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
