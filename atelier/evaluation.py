"""Mesurer un modèle sur des images étiquetées : exactitude globale, rappel de chaque classe, matrice de confusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .data import ImageDataset, load_dataset
from .model_io import load_model
from .preprocessing import to_model_input


def predict_probabilities(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilités du modèle pour des images ``uint8`` (n, h, l, 3), calculées par lots."""
    outputs = [
        np.asarray(model(to_model_input(images[start : start + batch_size]), training=False))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]), np.float32)


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Matrice de confusion : ligne = vraie classe, colonne = classe prédite."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(predicted)), 1)
    return matrix


def evaluate_dataset(model, dataset: ImageDataset) -> dict[str, Any]:
    """Évalue ``model`` sur ``dataset`` (dont les classes sont dans l'ordre des sorties du modèle).

    Renvoie ``accuracy`` (exactitude : part des images bien classées), ``per_class`` (**rappel** de chaque
    classe présente : part de ses images reconnues, ligne de la matrice divisée par sa somme),
    ``confusion`` et ``n``.
    """
    probabilities = predict_probabilities(model, dataset.images)
    predicted = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    matrix = confusion_matrix(dataset.labels, predicted, len(dataset.classes))
    per_class = {
        name: round(float(matrix[i, i] / matrix[i].sum()), 4)
        for i, name in enumerate(dataset.classes)
        if matrix[i].sum()
    }
    n = len(dataset)
    return {
        "accuracy": round(float(np.trace(matrix) / n), 4) if n else 0.0,
        "per_class": per_class,
        "confusion": matrix.tolist(),
        "classes": list(dataset.classes),
        "n": n,
    }


def evaluate(model_path: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """Charge un modèle enregistré et l'évalue sur un dossier « un sous-dossier par classe ».

    Les noms de dossiers sont convertis (``water`` → ``mer``…) ; toute classe inconnue du modèle
    donne une erreur claire.
    """
    info = load_model(model_path)
    dataset = load_dataset(data_dir, image_size=info.image_size, classes=info.classes)
    return evaluate_dataset(info.model, dataset)
