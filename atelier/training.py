"""Entraîner le CNN de l'atelier et l'enregistrer avec ses métadonnées (utilisé par le CLI et les notebooks)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Splits, load_dataset, split_dataset, to_tf_dataset
from .evaluation import evaluate_dataset
from .model import build_cnn, compile_model
from .model_io import file_sha256, save_model
from .paths import model_path
from .preprocessing import IMAGE_SIZE


def set_seed(seed: int) -> None:
    """Fixe les graines de Python, NumPy et TensorFlow : deux exécutions donnent les mêmes tirages."""
    import keras

    keras.utils.set_random_seed(seed)


def fit_phase(
    model,
    splits: Splits,
    *,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
    verbose: int | str = 0,
    stop_early: bool = True,
    initial_epoch: int = 0,
) -> tuple[Any, float]:
    """Entraîne un modèle compilé sur ``splits.train`` (mélangé, par lots), validé sur ``splits.validation`` ;
    arrêt anticipé en filet de sécurité si ``stop_early``. Renvoie l'historique Keras et la durée en secondes.

    ``initial_epoch`` continue un entraînement (par exemple l'affinage après la tête) : les époques sont
    numérotées à la suite et ``epochs`` époques de plus sont faites.
    """
    started = time.perf_counter()
    history = model.fit(
        to_tf_dataset(splits.train, batch_size=batch_size, shuffle=True, seed=seed),
        validation_data=to_tf_dataset(splits.validation, batch_size=256),
        epochs=initial_epoch + epochs,
        initial_epoch=initial_epoch,
        callbacks=[early_stopping()] if stop_early else [],
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles; Keras' own flag would only warn
    )
    return history, time.perf_counter() - started


@dataclass
class TrainingResult:
    """Ce que renvoie :func:`train` : le modèle, l'historique Keras, les métriques et les métadonnées."""

    model: Any
    history: Any
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    path: Path
    splits: Splits


def early_stopping(patience: int = 6, start_from_epoch: int = 8):
    """Arrête l'entraînement quand la perte de validation ne s'améliore plus, et garde les meilleurs poids.

    Rien n'est arrêté avant ``start_from_epoch`` époques : au début, la perte de validation varie
    beaucoup d'une époque à l'autre, ce qui n'indique pas encore que l'apprentissage est fini.
    """
    import keras

    return keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=patience,
        start_from_epoch=start_from_epoch,
        restore_best_weights=True,
        verbose=0,
    )


#: Bounds of an epoch, in batches: one pass over the training images, cut to MAX_STEPS_PER_EPOCH batches for a
#: large set (5,000 images still train in a few minutes on 2 cores), at least MIN_STEPS_PER_EPOCH. 18 epochs of
#: 35 batches (630 steps) train the default dataset in under a minute on 2 cores. A set smaller than
#: MIN_STEPS_PER_EPOCH batches is repeated to SMALL_SET_STEPS_PER_EPOCH batches per epoch (810 steps): measured on
#: 100 real images per class, 18 × 32 = 576 steps were too few (92.5 % against 93.8 % with 800).
MIN_STEPS_PER_EPOCH, MAX_STEPS_PER_EPOCH, SMALL_SET_STEPS_PER_EPOCH = 32, 64, 45
DEFAULT_EPOCHS = 18


@dataclass(frozen=True)
class TrainingPlan:
    """Combien de pas d'optimisation : ``epochs`` époques de ``steps_per_epoch`` lots (``total_steps`` en tout)."""

    epochs: int
    steps_per_epoch: int
    batch_size: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def training_plan(n_train: int, *, epochs: int = DEFAULT_EPOCHS, batch_size: int = 32) -> TrainingPlan:
    """Le plan d'entraînement de l'atelier pour ``n_train`` images d'entraînement.

    Une époque compte autant de lots qu'il en faut pour voir chaque image une fois, au plus 64 : un grand
    jeu (5 000 images) n'est parcouru qu'en partie à chaque époque et reste rapide. Un petit jeu, dont un
    passage ferait moins de 32 lots (100 images par classe), est répété jusqu'à 45 lots par époque : il lui
    faut plus de pas pour converger. Sur 18 époques : 630 pas pour le jeu par défaut (35 lots par époque),
    810 pour un petit jeu, 1 152 au plus.
    """
    if epochs < 1:
        raise ValueError(f"Le nombre d'époques doit être au moins 1 (reçu : {epochs}).")
    if n_train < 1:
        raise ValueError("Aucune image d'entraînement : le jeu de données est vide.")
    one_pass = -(-n_train // batch_size)
    steps = SMALL_SET_STEPS_PER_EPOCH if one_pass < MIN_STEPS_PER_EPOCH else min(one_pass, MAX_STEPS_PER_EPOCH)
    return TrainingPlan(epochs=epochs, steps_per_epoch=steps, batch_size=batch_size)


def fit(model, train_set, validation_set, plan: TrainingPlan, *, seed: int = 0, verbose: int | str = "auto"):
    """Entraîne ``model`` (compilé avec ``total_steps=plan.total_steps``) selon ``plan``, avec arrêt anticipé.

    Les images d'entraînement sont mélangées, par époques de ``plan.steps_per_epoch`` lots ; la
    validation sert à l'arrêt anticipé. Renvoie l'historique Keras.
    """
    return model.fit(
        to_tf_dataset(train_set, batch_size=plan.batch_size, shuffle=True, seed=seed, steps=plan.steps_per_epoch),
        validation_data=to_tf_dataset(validation_set, batch_size=256),
        epochs=plan.epochs,
        callbacks=[early_stopping()],
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles; Keras' own flag would only warn
    )


def train(
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    batch_size: int = 32,
    image_size: int = IMAGE_SIZE,
    verbose: int | str = "auto",
    backbone: str | None = None,
) -> TrainingResult:
    """Entraîne le CNN de l'atelier sur un jeu « un dossier par classe » et l'enregistre.

    Avec ``backbone`` (``"eurosat"`` ou ``"mobilenet"``, voir :func:`fit_transfer`), entraîne à la place le
    modèle par transfert du chapitre 3 : ``epochs // 2`` époques pour la tête (base gelée), le reste pour
    l'affinage ; les métadonnées disent quel réseau de base a servi (clé ``backbone``).

    Découpage stratifié 70/15/15, augmentation de données, nombre de pas adapté à la taille du jeu
    (:func:`training_plan`), taux d'apprentissage décroissant en cosinus sur tous les pas, arrêt anticipé
    sur la validation (filet de sécurité) ; la précision finale
    est mesurée sur la partie test, jamais vue pendant l'entraînement. Le modèle est
    enregistré dans ``out`` (par défaut ``atelier.paths.model_path("cnn")``) avec ses métadonnées.
    """
    set_seed(seed)
    dataset = load_dataset(data_dir, image_size=image_size)
    splits = split_dataset(dataset, seed=seed)
    extra = None
    if backbone is not None:
        head_epochs = max(1, epochs // 2)
        result = fit_transfer(
            dataset.classes,
            splits,
            backbone=backbone,
            head_epochs=head_epochs,
            fine_epochs=epochs - head_epochs,
            batch_size=batch_size,
            seed=seed,
            verbose=verbose,
        )
        model, history, seconds, extra = result.model, result.curves, result.seconds, {"backbone": result.backbone}
        steps_per_epoch = -(-len(splits.train) // batch_size)
    else:
        plan = training_plan(len(splits.train), epochs=epochs, batch_size=batch_size)
        model = compile_model(build_cnn(dataset.classes, image_size, seed=seed), total_steps=plan.total_steps)
        started = time.perf_counter()
        history = fit(model, splits.train, splits.validation, plan, seed=seed, verbose=verbose)
        seconds = time.perf_counter() - started
        steps_per_epoch = plan.steps_per_epoch
    report = evaluate_dataset(model, splits.test)
    metrics = {
        "test_accuracy": report["accuracy"],
        "per_class": report["per_class"],
        "epochs": len(getattr(history, "history", history)["loss"]),
        "steps_per_epoch": steps_per_epoch,
        "training_seconds": round(seconds, 1),
        "n_train": len(splits.train),
        "n_validation": len(splits.validation),
        "n_test": len(splits.test),
    }
    out = Path(out) if out is not None else model_path("cnn")
    metadata = save_model(model, out, classes=dataset.classes, data_source=dataset.source, metrics=metrics, extra=extra)
    return TrainingResult(model, history, metrics, metadata, out, splits)


def ensure_model(
    name: str = "cnn",
    *,
    data_dir: str | Path | None = None,
    epochs: int = 10,
    seed: int = 0,
    verbose: int | str = 0,
) -> Path:
    """Chemin de ``model_path(name)``, après avoir vérifié que le modèle s'y charge ; sinon, l'entraîne.

    Chaque chapitre peut ainsi s'exécuter seul, de haut en bas : le chapitre 4 prend le modèle enregistré
    au chapitre 2 s'il existe et se charge, sinon il entraîne rapidement le même CNN avec :func:`train`
    (``epochs`` époques au plus, sur ``data_dir`` ou le jeu habituel) et l'enregistre au même endroit.

    Seul le CNN de l'atelier (``name="cnn"``) peut être entraîné ici ; pour un autre nom (par exemple
    ``"transfert"``, enregistré par le chapitre 3), un modèle absent ou illisible lève
    :class:`~atelier.model_io.ModelFileError` avec un message en français.
    """
    from .model_io import ModelFileError, load_model

    path = model_path(name)
    try:
        load_model(path)
        return path
    except ModelFileError as error:
        if name != "cnn":
            raise ModelFileError(
                f"Le modèle « {name} » est absent ou illisible ({path}). Seul le CNN (« cnn ») peut être "
                f"entraîné automatiquement : exécutez d'abord le chapitre qui enregistre « {name} » "
                "(le chapitre 3 pour « transfert »)."
            ) from error
        print(f"Modèle « {name} » inutilisable : {error}")
    print(f"Entraînement rapide du CNN de l'atelier ({epochs} époques au plus), enregistré dans {path}…")
    train(data_dir, path, epochs=epochs, seed=seed, verbose=verbose)
    return path


#: Rows of the cached feature table the head learns from: each training image is seen in ``views`` versions (the
#: original and augmented copies), so that a small set still gives the head a few thousand examples.
HEAD_FEATURE_ROWS, MAX_HEAD_VIEWS = 4096, 16


def head_views(n_images: int) -> int:
    """Nombre de versions de chaque image (l'originale, puis des copies augmentées) dont :func:`fit_head` calcule
    les caractéristiques : environ 4 096 lignes en tout, entre 2 et 16 versions par image."""
    return max(2, min(MAX_HEAD_VIEWS, -(-HEAD_FEATURE_ROWS // max(1, n_images))))


def _feature_extractor(model) -> tuple[Any, Any, Any]:
    """``(extracteur, dropout, tête)`` d'un classifieur par transfert (augmentation → base → … → dropout →
    ``Dense`` « probabilites ») : l'extracteur va de l'image à l'entrée du dropout."""
    import keras

    head = model.get_layer("probabilites")
    dropout = model.layers[model.layers.index(head) - 1]
    if not isinstance(dropout, keras.layers.Dropout):
        raise ValueError("Le modèle n'a pas la forme base → dropout → tête attendue pour le transfert.")
    return keras.Model(model.inputs, dropout.input), dropout, head


def _features(extractor, images, views: int, batch_size: int = 256):
    """Caractéristiques de ``images`` : l'original, puis ``views - 1`` copies passées par l'augmentation."""
    import numpy as np
    import tensorflow as tf

    rows = []
    for view in range(views):
        for start in range(0, len(images), batch_size):
            batch = tf.constant(images[start : start + batch_size], dtype=tf.float32)
            rows.append(np.asarray(extractor(batch, training=view > 0)))
    return np.concatenate(rows)


def fit_head(
    model,
    splits: Splits,
    *,
    epochs: int = 10,
    views: int | None = None,
    learning_rate: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    verbose: int | str = 0,
) -> tuple[Any, float]:
    """Entraîne **la tête seule** d'un classifieur par transfert dont la base est gelée.

    Une base gelée donne toujours les mêmes caractéristiques pour une même image : on les calcule **une fois**,
    pour chaque image d'entraînement et ``views - 1`` copies augmentées (par défaut :func:`head_views`), et
    pour les images de validation, puis la tête (dropout + ``Dense``) apprend ``epochs`` passages sur ce
    tableau, pas d'apprentissage ``learning_rate`` décroissant en cosinus. Quelques secondes, au lieu de
    repasser chaque lot dans la base à chaque pas. La tête est celle du modèle (mêmes poids). Renvoie
    l'historique Keras (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``) et la durée en secondes.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from .model import compile_model

    started = time.perf_counter()
    set_seed(seed)
    extractor, dropout, head = _feature_extractor(model)
    views = views or head_views(len(splits.train))
    train_x = _features(extractor, splits.train.images, views)
    train_y = np.tile(splits.train.labels, views)
    validation = splits.validation
    validation_data = (_features(extractor, validation.images, 1), validation.labels) if len(validation) else None
    inputs = keras.Input(shape=train_x.shape[1:], name="caracteristiques")
    head_model = keras.Model(inputs, head(dropout(inputs)), name="tete")
    steps_per_epoch = -(-len(train_y) // batch_size)
    compile_model(head_model, learning_rate, total_steps=steps_per_epoch * epochs)
    table = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(len(train_y), seed=seed)
    history = head_model.fit(
        table.batch(batch_size),
        validation_data=validation_data,
        epochs=epochs,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles; Keras' own flag would only warn
    )
    return history, time.perf_counter() - started


@dataclass
class TransferResult:
    """Ce que renvoie :func:`fit_transfer` : le modèle, ses courbes (tête puis affinage, à la suite),
    le nombre d'époques de la tête seule, la durée totale en secondes et la description du réseau de base
    (nom et empreintes, pour les métadonnées du modèle)."""

    model: Any
    curves: dict[str, list[float]]
    head_epochs: int
    seconds: float
    backbone: dict[str, Any]


def epochs_for(n_images: int, steps: int, batch_size: int = 32, minimum: int = 1) -> int:
    """Nombre d'époques qui fait au moins ``steps`` pas d'optimisation sur ``n_images`` images : un petit jeu
    demande plus d'époques qu'un grand pour apprendre autant."""
    steps_per_epoch = max(1, -(-n_images // batch_size))
    return max(minimum, -(-steps // steps_per_epoch))


#: Réseaux de base utilisables par :func:`fit_transfer` et ``python -m atelier train --backbone``.
BACKBONES: tuple[str, ...] = ("eurosat", "mobilenet")


def _transfer_model(classes, backbone: str, seed: int) -> tuple[Any, dict[str, Any]]:
    """Le classifieur par transfert (base gelée, nouvelle tête) et la description de sa base pour les métadonnées."""
    from . import backbone as eurosat
    from . import transfer

    if backbone == "eurosat":
        return eurosat.build_transfer_model(classes, seed=seed), eurosat.describe()
    status = transfer.imagenet_weights_status()
    if not status.available:
        raise transfer.WeightsError(status.message)
    description = {
        "name": "mobilenetv2-imagenet",
        "architecture": transfer.BACKBONE_NAME,
        "weights_file": transfer.WEIGHTS_FILENAME,
        "weights_sha256": file_sha256(status.path),
    }
    return transfer.build_transfer_model(classes, status.weights_path, seed=seed, freeze=True), description


def fit_transfer(
    classes,
    splits: Splits,
    *,
    backbone: str = "eurosat",
    head_epochs: int = 10,
    fine_epochs: int = 6,
    head_learning_rate: float = 3e-3,
    fine_learning_rate: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    verbose: int | str = 0,
) -> TransferResult:
    """Apprentissage par transfert depuis un réseau de base pré-entraîné.

    ``backbone`` : ``"eurosat"``, le réseau livré avec l'atelier (:mod:`atelier.backbone`), ou
    ``"mobilenet"``, MobileNetV2 ImageNet s'il est dans le cache de Keras (:mod:`atelier.transfer` ; sinon
    :class:`~atelier.transfer.WeightsError`, rien n'est téléchargé).

    1. base **gelée**, nouvelle tête (une sortie par classe) entraînée seule sur les caractéristiques de la base
       calculées une fois (:func:`fit_head`) : ``head_epochs`` passages, pas ``head_learning_rate`` décroissant
       en cosinus ;
    2. **affinage** : les convolutions des trois blocs de la base EuroSAT (:data:`atelier.backbone.FINE_BLOCKS`)
       sont dégelées (les 20 dernières couches pour MobileNetV2), ``fine_epochs`` époques de plus avec un
       pas **faible** (``fine_learning_rate`` ; par défaut 3e-4 pour EuroSAT, 1e-4 pour MobileNetV2), une
       courte montée (un dixième des pas, 30 au plus) puis une décroissance en cosinus.

    ``fine_epochs=0`` : pas d'affinage. Pas d'arrêt anticipé : le nombre d'époques est fixé.
    """
    from . import backbone as eurosat
    from . import transfer

    if backbone not in BACKBONES:
        raise ValueError(f"Réseau de base inconnu : {backbone} (possibles : {', '.join(BACKBONES)}).")
    set_seed(seed)
    steps_per_epoch = -(-len(splits.train) // batch_size)
    model, description = _transfer_model(classes, backbone, seed)
    compile_model(model, head_learning_rate, total_steps=steps_per_epoch * head_epochs)
    history, seconds = fit_head(
        model,
        splits,
        epochs=head_epochs,
        learning_rate=head_learning_rate,
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
    )
    curves = {key: list(values) for key, values in history.history.items()}
    if fine_epochs:
        fine_steps = steps_per_epoch * fine_epochs
        if backbone == "eurosat":
            eurosat.unfreeze_top(
                model,
                eurosat.FINE_BLOCKS,
                fine_learning_rate or eurosat.FINE_LEARNING_RATE,
                total_steps=fine_steps,
                warmup_steps=min(30, fine_steps // 10),
            )
        else:
            transfer.unfreeze_top(model, n_layers=20, learning_rate=fine_learning_rate or 1e-4)
        fine, fine_seconds = fit_phase(
            model,
            splits,
            epochs=fine_epochs,
            batch_size=batch_size,
            seed=seed,
            verbose=verbose,
            stop_early=False,
            initial_epoch=head_epochs,
        )
        seconds += fine_seconds
        for key in curves:
            curves[key] += list(fine.history[key])
    return TransferResult(model, curves, head_epochs, seconds, description)
