"""Mesure : transfert depuis le réseau de base EuroSAT contre CNN entraîné depuis zéro, sur de vraies images.

    python tools/measure_transfer_reel.py [DOSSIER] [--per-class 50] [--seeds 0 1 2 3] [--folds 1] [--livres]

DOSSIER (par défaut ``../shared/data/reel-dev``) : un jeu « un dossier par classe » d'images réelles. Pour chaque
taille ``--per-class``, chaque graine (un mélange des images au hasard) et chaque pli, ``--per-class`` images par
classe servent à entraîner (dont 10 % de validation), les autres à tester ; avec 50 images sur 100, les deux plis
échangent entraînement et test. Le résumé donne, par méthode, la moyenne ± l'écart-type sur les exécutions (et par
classe), puis l'écart transfert − CNN exécution par exécution (mêmes images de test). Avec ``--livres``, les
deux modèles apprennent aussi sur les jeux livrés avec l'atelier (petits jeux du chapitre 3, jeu par défaut) et
sont testés sur toutes les images du dossier : de vraies images d'une autre source que l'entraînement. Deux
modèles **jetables** sont entraînés (rien n'est enregistré dans le projet) :

- le CNN du chapitre 2, depuis zéro, avec la recette de ``python -m atelier train`` (``training_plan``) ;
- le transfert du chapitre 3 : base EuroSAT (trois blocs) gelée + nouvelle tête apprise sur ses caractéristiques,
  puis affinage des trois blocs.

Le résumé dit aussi quelle part des images de test **les deux** modèles manquent (les mêmes images) : ce
qu'aucune des deux méthodes ne corrige, et donc ce qui borne l'écart possible entre elles sur ce jeu.

C'est une mesure, pas un test : la suite de tests ne dépend pas de ces images. La dernière ligne est un JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from atelier.data import Splits, load_dataset, split_dataset  # noqa: E402
from atelier.eurosat_tiles import read_manifest  # noqa: E402
from atelier.evaluation import evaluate_dataset, predict_probabilities  # noqa: E402
from atelier.model import build_cnn, compile_model  # noqa: E402
from atelier.training import epochs_for, fit, fit_transfer, set_seed, training_plan  # noqa: E402

#: Passages de la tête sur les caractéristiques de la base (:func:`atelier.training.fit_head`) et pas d'optimisation
#: visés pour l'affinage du transfert (le CNN suit ``training_plan``).
HEAD_EPOCHS, FINE_STEPS = 10, 300


def fixed_split(dataset, per_class: int, seed: int, fold: int = 0) -> Splits:
    """``per_class`` images par classe pour l'entraînement (10 % d'entre elles en validation), le reste en test.

    Les images de chaque classe sont mélangées une fois (``seed``) ; le pli ``fold`` prend pour l'entraînement
    le ``fold``-ième paquet de ``per_class`` images : avec 50 images sur 100, les plis 0 et 1 échangent
    entraînement et test."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for index in range(len(dataset.classes)):
        members = rng.permutation(np.flatnonzero(dataset.labels == index))
        start, stop = fold * per_class, (fold + 1) * per_class
        if stop > len(members):
            raise ValueError(f"Pli {fold} impossible : {len(members)} images seulement dans {dataset.classes[index]}.")
        learn = members[start:stop]
        n_val = max(1, round(per_class * 0.1))
        parts["validation"] += list(learn[:n_val])
        parts["train"] += list(learn[n_val:])
        parts["test"] += list(members[:start]) + list(members[stop:])
    return Splits(**{name: dataset.subset(sorted(idx)) for name, idx in parts.items()})


def from_scratch(classes, splits: Splits, seed: int):
    """Le CNN du chapitre 2 avec la recette de ``python -m atelier train`` (``training_plan``, arrêt anticipé)."""
    set_seed(seed)
    plan = training_plan(len(splits.train))
    model = compile_model(build_cnn(classes, seed=seed), total_steps=plan.total_steps)
    started = time.perf_counter()
    history = fit(model, splits.train, splits.validation, plan, seed=seed, verbose=0)
    return model, len(history.history["loss"]), time.perf_counter() - started


def measure(splits: Splits, seed: int) -> dict:
    """Les deux modèles jetables sur un découpage : exactitude, par classe, confusion et durée de chacun."""
    classes = splits.train.classes
    cnn, cnn_epochs, cnn_seconds = from_scratch(classes, splits, seed)
    n = len(splits.train)
    transfer = fit_transfer(classes, splits, head_epochs=HEAD_EPOCHS, fine_epochs=epochs_for(n, FINE_STEPS), seed=seed)
    row: dict = {"n_train": len(splits.train), "n_validation": len(splits.validation), "n_test": len(splits.test)}
    for name, model, seconds in (("cnn", cnn, cnn_seconds), ("transfert", transfer.model, transfer.seconds)):
        report = evaluate_dataset(model, splits.test)
        row[name] = {
            "accuracy": report["accuracy"],
            "per_class": report["per_class"],
            "confusion": report["confusion"],
            "seconds": round(seconds, 1),
            "missed": missed(model, splits.test),
        }
        print(
            f"{len(splits.train)} images d'entraînement — {name:9} : {report['accuracy']:.1%} sur {report['n']} "
            f"images de test ({seconds:.0f} s) ; par classe : {report['per_class']}",
            flush=True,
        )
    row["cnn"]["epochs"] = cnn_epochs
    row["missed_by_both"] = sorted(set(row["cnn"]["missed"]) & set(row["transfert"]["missed"]))
    return row


def missed(model, test) -> list[str]:
    """Les images de test (« classe/fichier ») que ``model`` classe mal."""
    predicted = predict_probabilities(model, test.images).argmax(axis=1)
    pairs = zip(test.paths, test.labels, predicted, strict=True)
    return sorted(f"{Path(path).parent.name}/{Path(path).name}" for path, truth, guess in pairs if truth != guess)


def overlap_with_shipped_tiles(folder: Path) -> int:
    """Nombre d'images du dossier identiques (MD5) à une tuile EuroSAT livrée avec l'atelier."""
    shipped = {md5 for _, _, md5 in read_manifest()}
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return sum(hashlib.md5(p.read_bytes()).hexdigest() in shipped for p in files)


def spread(values) -> dict:
    """Moyenne et écart-type (sur les exécutions) d'une liste de valeurs, arrondis."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": round(float(values.mean()), 4), "std": round(std, 4)}


def summarize(runs: list[dict], classes: list[str]) -> dict:
    """Par méthode : exactitude et exactitude par classe, moyenne ± écart-type sur les exécutions ; écart du
    transfert sur le CNN, exécution par exécution (mêmes images de test)."""
    summary: dict = {}
    for name in ("cnn", "transfert"):
        summary[name] = {
            "accuracy": spread([r[name]["accuracy"] for r in runs]),
            "per_class": {c: spread([r[name]["per_class"][c] for r in runs]) for c in classes},
        }
    gaps = [r["transfert"]["accuracy"] - r["cnn"]["accuracy"] for r in runs]
    summary["gap"] = {
        **spread(gaps),
        "wins": int(sum(g > 0 for g in gaps)),
        "ties": int(sum(g == 0 for g in gaps)),
        "runs": len(gaps),
    }
    # Errors both models make on the same test image: what neither method fixes (the set's hard or ambiguous images).
    summary["shared_errors"] = spread([len(r["missed_by_both"]) / r["n_test"] for r in runs])
    return summary


def pm(stat: dict, unit: str = "%") -> str:
    """« 93,5 ± 1,2 % » (``unit="points"`` pour un écart entre deux exactitudes)."""
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f} {unit}".replace(".", ",")


def shipped_runs(real, seeds: list[int]) -> list[tuple[str, int, Splits]]:
    """``--livres`` : apprendre sur les jeux livrés avec l'atelier (petits jeux de 20 et 100 images par classe du
    chapitre 3, jeu par défaut ; découpage de graine ``seed``), tester sur **toutes** les images de ``real``."""
    from atelier.small_sets import small_splits

    default = load_dataset()
    if real.classes != default.classes:
        raise ValueError(f"Classes {real.classes} : ce ne sont pas celles du jeu par défaut ({default.classes}).")
    runs = []
    for seed in seeds:
        splits = split_dataset(default, seed=seed)
        for name, learn in (
            ("petit jeu 20/classe", small_splits(splits, 20, seed=seed)),
            ("petit jeu 100/classe", small_splits(splits, 100, seed=seed)),
            ("jeu par défaut", splits),
        ):
            runs.append((name, seed, Splits(learn.train, learn.validation, real)))
    return runs


def report(results: list[dict], setting: str, classes: list[str]) -> dict:
    """Affiche et renvoie le résumé des exécutions d'un réglage (``setting``)."""
    stats = summarize([r for r in results if r["setting"] == setting], classes)
    print(f"== {setting}, {stats['gap']['runs']} exécutions (moyenne ± écart-type)")
    for name in ("cnn", "transfert"):
        per = ", ".join(f"{c} {pm(stats[name]['per_class'][c])}" for c in classes)
        print(f"  {name:9} : {pm(stats[name]['accuracy'])} ; par classe : {per}")
    gap = stats["gap"]
    print(
        f"  écart transfert − CNN : {pm(gap, 'points')} (le transfert gagne {gap['wins']} fois, "
        f"égalité {gap['ties']} fois, sur {gap['runs']})"
    )
    print(f"  images manquées par les deux modèles : {pm(stats['shared_errors'])} des images de test")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared" / "data" / "reel-dev")
    parser.add_argument("--per-class", type=int, nargs="*", default=[50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="un découpage au hasard par graine")
    parser.add_argument("--folds", type=int, default=1, help="plis par découpage (défaut : 1)")
    parser.add_argument(
        "--livres",
        action="store_true",
        help="apprendre aussi sur les jeux livrés (petits jeux 20 et 100/classe, jeu par défaut), "
        "tester sur tout DOSSIER",
    )
    args = parser.parse_args(argv)
    if not args.per_class and not args.livres:
        parser.error("rien à mesurer : donnez au moins une taille à --per-class, ou --livres")

    dataset = load_dataset(args.folder)
    print(f"{args.folder} : {dataset.counts()}")
    print(
        f"Images identiques à une tuile EuroSAT livrée (donc vues par le réseau de base) : "
        f"{overlap_with_shipped_tiles(args.folder)}"
    )
    results = []
    for per_class in args.per_class:
        for seed in args.seeds:
            for fold in range(args.folds):
                results.append(measure(fixed_split(dataset, per_class, seed, fold), seed))
                results[-1].update(setting=f"{per_class} images par classe", per_class=per_class, seed=seed, fold=fold)
    if args.livres:
        for name, seed, splits in shipped_runs(dataset, args.seeds):
            results.append(measure(splits, seed))
            results[-1].update(setting=f"appris sur le {name}, testé sur tout le dossier", seed=seed)
    summary: dict = {"folder": str(args.folder), "seeds": args.seeds, "folds": args.folds}
    for setting in dict.fromkeys(r["setting"] for r in results):
        summary[setting] = report(results, setting, dataset.classes)
    summary["runs"] = results
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
