"""Réentraîner un modèle à partir des corrections de ses utilisateurs (chapitre 7, ``python -m atelier retrain``).

La boucle : l'API garde les images reçues (``--store-images``), les utilisateurs disent si la réponse était
juste ou la corrigent (``POST /predictions/{id}/feedback``), puis :func:`retrain` **affine** le modèle sur ces
images étiquetées par des humains :

- chaque lot mélange les corrections (20 %), les réponses confirmées (20 %) et un **échantillon de rappel** du
  jeu d'entraînement d'origine (*replay*, 60 %) : sans lui, le réseau oublierait ce qu'il savait des classes
  absentes des corrections ;
- pas faible (:data:`LEARNING_RATE`), peu de pas (:data:`STEPS`), normalisations par lot gelées : on ajuste le
  modèle, on ne le réapprend pas ; quelques secondes sur un processeur ;
- les images passent par :func:`atelier.preprocessing.load_image`, le prétraitement de l'entraînement et de
  l'API ; le modèle garde son augmentation de données (active pendant l'affinage seulement) ;
- l'ancien et le nouveau modèle sont mesurés sur la partie **test** du jeu d'origine (jamais vue à
  l'entraînement, sans aucune image annotée) et sur les images corrigées.

Deux garde-fous :

- **trop peu de corrections** (moins de :data:`MIN_CORRECTIONS`) : refus. Avec une ou deux images, l'affinage
  apprend surtout ces images-là (et une seule correction erronée pèserait tout son poids), et la mesure « les
  cas corrigés sont maintenant justes » ne vaut rien : 1 image, c'est 0 % ou 100 % ;
- **pas pire sur le jeu tenu à l'écart** : le nouveau modèle n'est gardé que s'il ne perd pas plus de
  :data:`HELD_OUT_TOLERANCE` image bien classée sur ce jeu (une image : le plus petit écart mesurable, celui
  qu'un cas limite fait basculer d'un côté ou de l'autre ; au-delà, le modèle a oublié quelque chose).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import ImageDataset, load_dataset, split_dataset
from .evaluation import predict_probabilities
from .model_io import load_model, save_model
from .preprocessing import ImageError, load_image

#: Corrections (feedback whose label differs from the model's answer) needed to retrain; see the module.
MIN_CORRECTIONS = 5
#: Held-out images the new model may lose (correct before, wrong after) and still be kept; see the module.
HELD_OUT_TOLERANCE = 1
#: Optimisation steps of the fine-tuning (batches of :data:`BATCH_SIZE`).
STEPS = 40
BATCH_SIZE = 32
#: Adam's step for fine-tuning: thirty times smaller than training's (3e-3), so that the model is adjusted, not
#: retrained (measured on the chapter 7 loop: at 3e-4, the held-out set lost up to 4 images depending on the seed).
LEARNING_RATE = 1e-4
#: Replay sample: images of the original training split, per class.
REPLAY_PER_CLASS = 64
#: Share of each batch drawn from the corrections, the confirmations and the replay sample. The corrections are
#: what the model has to learn, so they weigh more than their number (a few among many confirmations); without
#: confirmations, their share goes to the corrections.
SHARES = {"corrections": 0.2, "confirmations": 0.2, "replay": 0.6}


class RetrainingError(ValueError):
    """Le réentraînement est impossible ou refusé ; le message, en français, dit pourquoi.

    ``report`` : ce qui a été mesuré avant le refus (pour la dernière ligne JSON de la commande).
    """

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


@dataclass(frozen=True)
class Feedback:
    """Une prédiction annotée par un utilisateur : son image, la classe donnée par le modèle et la bonne classe."""

    prediction_id: int
    path: Path
    label: str
    predicted: str
    model_version: str = ""

    @property
    def is_correction(self) -> bool:
        """Vrai si l'utilisateur a corrigé le modèle (sinon il a confirmé sa réponse)."""
        return self.label != self.predicted


@dataclass
class FeedbackSet:
    """Ce que :func:`collect_feedback` trouve : les annotations utilisables et celles laissées de côté."""

    items: list[Feedback] = field(default_factory=list)
    missing_images: list[int] = field(default_factory=list)
    unknown_labels: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)


def collect_feedback(db_path: str | Path, images_dir: str | Path, classes: Sequence[str]) -> FeedbackSet:
    """Les prédictions annotées de l'historique ``db_path`` dont l'image est gardée dans ``images_dir``.

    Une image annotée plusieurs fois ne compte qu'une fois, avec sa dernière annotation ; une annotation dont
    l'image n'est plus là (effacée, hors rétention) ou dont la classe n'est pas une classe du modèle est
    écartée (son numéro est listé). Lève :class:`RetrainingError` si l'historique ou le dossier manque.
    """
    db_path, images_dir = Path(db_path).expanduser(), Path(images_dir).expanduser()
    if not db_path.is_file():
        raise RetrainingError(
            f"Historique introuvable : {db_path}. Indiquez la base SQLite du serveur (option --db de serve)."
        )
    if not images_dir.is_dir():
        raise RetrainingError(
            f"Dossier d'images introuvable : {images_dir}. Le serveur ne garde les images que s'il est lancé "
            "avec --store-images DOSSIER ; indiquez ce dossier."
        )
    from .history import History
    from .image_store import find_image

    history = History(db_path, retention_days=None, max_rows=None)  # read only: never prune here
    try:
        rows = history.feedback_rows()
    finally:
        history.close()
    found = FeedbackSet()
    latest: dict[str, Feedback] = {}
    for row in sorted(rows, key=lambda r: int(r["id"])):
        if row["feedback_label"] not in classes:
            found.unknown_labels.append(int(row["id"]))
            continue
        path = find_image(images_dir, row["image_sha256"])
        if path is None:
            found.missing_images.append(int(row["id"]))
            continue
        previous = latest.get(row["image_sha256"])
        if previous is not None:
            found.superseded.append(previous.prediction_id)
        latest[row["image_sha256"]] = Feedback(
            int(row["id"]), Path(path), row["feedback_label"], row["label"], row.get("model_version") or ""
        )
    found.items = sorted(latest.values(), key=lambda item: item.prediction_id)
    return found


@dataclass
class RetrainingResult:
    """Ce que renvoie :func:`retrain` : le modèle affiné, le rapport (JSON) et, s'il a été écrit, ses métadonnées."""

    model: Any
    report: dict[str, Any]
    metadata: dict[str, Any] | None

    @property
    def accepted(self) -> bool:
        return bool(self.report["accepted"])


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def _without(dataset: ImageDataset, digests: set[str]) -> ImageDataset:
    """``dataset`` without the images whose pixels are in ``digests``."""
    keep = [i for i, image in enumerate(dataset.images) if _digest(image) not in digests]
    return dataset.subset(keep)


def _replay_sample(train: ImageDataset, per_class: int, seed: int) -> ImageDataset:
    """Up to ``per_class`` images of each class of ``train``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(train.labels == k))[:per_class] for k in range(len(train.classes))]
    return train.subset(np.sort(np.concatenate(chosen)))


def _correct(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Which images ``model`` classifies right (booleans)."""
    if not len(images):
        return np.zeros(0, dtype=bool)
    return predict_probabilities(model, images).argmax(axis=1) == labels


def _all_layers(model) -> list[Any]:
    """Every layer of ``model``, nested models included (a transfer model nests its backbone)."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


def _fine_tune(
    model,
    parts: list[tuple[np.ndarray, np.ndarray, float]],
    *,
    steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    verbose: int | str,
) -> float:
    """Fine-tune ``model`` in place on batches drawn from ``parts`` ``(images, labels, share)``; returns the seconds."""
    import keras
    import tensorflow as tf

    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # keep the statistics learnt on the whole training set
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    streams = [
        tf.data.Dataset.from_tensor_slices((images.astype(np.float32), labels.astype(np.int32)))
        .shuffle(len(labels), seed=seed + k, reshuffle_each_iteration=True)
        .repeat()
        for k, (images, labels, _) in enumerate(parts)
    ]
    total = sum(share for *_, share in parts)
    mixed = tf.data.Dataset.sample_from_datasets(streams, weights=[share / total for *_, share in parts], seed=seed)
    started = time.perf_counter()
    model.fit(mixed.batch(batch_size).take(steps), epochs=1, verbose=verbose, shuffle=False)
    return time.perf_counter() - started


def _accuracy(correct: np.ndarray) -> float | None:
    return round(float(correct.mean()), 4) if len(correct) else None


def retrain(
    model_path: str | Path,
    feedback: Sequence[Feedback],
    out: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    min_corrections: int = MIN_CORRECTIONS,
    tolerance: int = HELD_OUT_TOLERANCE,
    steps: int = STEPS,
    learning_rate: float = LEARNING_RATE,
    replay_per_class: int = REPLAY_PER_CLASS,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    split_seed: int = 0,
    verbose: int | str = 0,
) -> RetrainingResult:
    """Affine le modèle ``model_path`` sur les images annotées ``feedback`` (voir le module).

    ``data_dir`` : le jeu d'origine (par défaut, celui que ``train`` prend : ``$ATELIER_DATA``,
    ``images/satellite/`` ou le jeu par défaut), découpé comme à l'entraînement (``split_seed``) : sa partie
    entraînement fournit l'échantillon de rappel, sa partie test est le jeu tenu à l'écart.

    Lève :class:`RetrainingError` s'il y a moins de ``min_corrections`` corrections. Si le nouveau modèle perd
    plus de ``tolerance`` images bien classées du jeu tenu à l'écart, il est refusé : ``report["accepted"]``
    est faux, ``report["reason"]`` dit pourquoi et rien n'est écrit. Sinon, s'il est donné, ``out`` reçoit le
    nouveau modèle, avec des métadonnées qui nomment son parent et les annotations utilisées.
    """
    from .training import set_seed

    report = _count(feedback, min_corrections)
    set_seed(seed)
    info = load_model(model_path)
    images, labels, is_correction = _annotated_arrays(feedback, info.classes, info.image_size)
    splits = split_dataset(load_dataset(data_dir, image_size=info.image_size, classes=info.classes), seed=split_seed)
    annotated = {_digest(image) for image in images}
    held_out = _without(splits.test, annotated)  # an annotated image never counts as "held out"
    replay = _replay_sample(_without(splits.train, annotated), replay_per_class, seed)
    old_held_out = _correct(info.model, held_out.images, held_out.labels)
    old_corrected = _correct(info.model, images[is_correction], labels[is_correction])
    seconds = _fine_tune(
        info.model,
        _mix(images, labels, is_correction, replay),
        steps=steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
    )
    new_held_out = _correct(info.model, held_out.images, held_out.labels)
    new_corrected = _correct(info.model, images[is_correction], labels[is_correction])
    report.update(
        parent_version=info.version,
        parent_source_version=info.metadata.get("source_version", info.version),
        feedback_ids=[item.prediction_id for item in feedback],
        held_out=_compare(old_held_out, new_held_out),
        corrected={
            "n": int(is_correction.sum()),
            "old_accuracy": _accuracy(old_corrected),
            "new_accuracy": _accuracy(new_corrected),
        },
        replay=len(replay),
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        tolerance=tolerance,
        training_seconds=round(seconds, 2),
        data_source=splits.test.source,
    )
    if int(old_held_out.sum() - new_held_out.sum()) > tolerance:
        report["reason"] = (
            f"moins bon sur le jeu tenu à l'écart : {report['held_out']['new_correct']} images bien classées sur "
            f"{len(held_out)} au lieu de {report['held_out']['old_correct']} (tolérance : {tolerance})"
        )
        return RetrainingResult(info.model, report, None)
    report["accepted"] = True
    metadata = None
    if out is not None:
        metadata = _save(info, out, report)
        report["model"], report["version"] = str(out), metadata["version"]
    return RetrainingResult(info.model, report, metadata)


def _count(feedback: Sequence[Feedback], min_corrections: int) -> dict[str, Any]:
    """The start of the report (counts); a RetrainingError if there are fewer than ``min_corrections``."""
    corrections = sum(item.is_correction for item in feedback)
    report: dict[str, Any] = {
        "accepted": False,
        "reason": None,
        "n_feedback": len(feedback),
        "n_corrections": corrections,
        "n_confirmations": len(feedback) - corrections,
        "min_corrections": min_corrections,
    }
    if corrections < min_corrections:
        raise RetrainingError(
            f"Trop peu de corrections pour réentraîner : {corrections} (il en faut au moins "
            f"{min_corrections}). Avec si peu d'images, l'affinage apprendrait surtout ces images-là et la "
            "mesure des cas corrigés ne voudrait rien dire : corrigez d'autres réponses fausses, puis recommencez.",
            {**report, "reason": "trop peu de corrections"},
        )
    return report


def _annotated_arrays(feedback: Sequence[Feedback], classes: list[str], image_size: int):
    """Images (the training preprocessing), label indices and « is a correction » flags of ``feedback``."""
    try:
        images = np.stack([load_image(item.path, image_size) for item in feedback])
    except (ImageError, OSError) as error:
        raise RetrainingError(f"Image annotée illisible : {error}") from None
    labels = np.asarray([classes.index(item.label) for item in feedback], dtype=np.int32)
    return images, labels, np.asarray([item.is_correction for item in feedback])


def _mix(images, labels, is_correction, replay: ImageDataset) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The parts of each batch (see :data:`SHARES`): corrections, confirmations (if any), replay."""
    confirmed = ~is_correction
    if not confirmed.any():
        share = SHARES["corrections"] + SHARES["confirmations"]
        return [(images, labels, share), (replay.images, replay.labels, SHARES["replay"])]
    return [
        (images[is_correction], labels[is_correction], SHARES["corrections"]),
        (images[confirmed], labels[confirmed], SHARES["confirmations"]),
        (replay.images, replay.labels, SHARES["replay"]),
    ]


def _compare(old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
    """Old vs new model on the same images (booleans: right or not)."""
    return {
        "n": len(old),
        "old_accuracy": _accuracy(old),
        "new_accuracy": _accuracy(new),
        "old_correct": int(old.sum()),
        "new_correct": int(new.sum()),
        "broken": int((old & ~new).sum()),
        "fixed": int((~old & new).sum()),
    }


def _save(info, out: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """Write the fine-tuned model with metadata naming its parent and the feedback it learnt from."""
    held_out = report["held_out"]
    metrics = {
        "test_accuracy": held_out["new_accuracy"],
        "parent_test_accuracy": held_out["old_accuracy"],
        "n_test": held_out["n"],
        "corrected_accuracy": report["corrected"]["new_accuracy"],
    }
    retraining = {
        key: report[key]
        for key in (
            "feedback_ids",
            "n_corrections",
            "n_confirmations",
            "replay",
            "steps",
            "learning_rate",
            "seed",
            "tolerance",
            "held_out",
            "corrected",
            "training_seconds",
        )
    }
    extra = {
        "parent": {
            "version": info.version,
            "source_version": report["parent_source_version"],
            "sha256": info.metadata.get("sha256"),
        },
        "retraining": retraining,
    }
    if "backbone" in info.metadata:
        extra["backbone"] = info.metadata["backbone"]
    return save_model(
        info.model, out, classes=info.classes, data_source=report["data_source"], metrics=metrics, extra=extra
    )
