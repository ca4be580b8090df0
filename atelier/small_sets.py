"""Petits jeux d'entraînement (20 ou 100 images par classe) pour comparer transfert et CNN depuis zéro
(chapitre 3), avec le plus d'images réelles possible et un test toujours le même.

Ce qui est réel, et ce qui ne l'est pas :

- ``forêt`` et ``mer`` : des tuiles Sentinel-2 **réelles** d'EuroSAT (``Forest``, ``SeaLake``), celles réservées
  à l'atelier (:func:`atelier.eurosat_tiles.workshop_tiles`), que le réseau de base n'a jamais vues ;
- ``désert`` et ``nuageux`` : les images du jeu par défaut (aucune source réelle redistribuable n'existe
  pour ces classes ; voir le ``PROVENANCE.md`` du jeu par défaut).

Pour ``forêt`` et ``mer``, les 250 tuiles réservées sont mélangées une fois (graine fixe) puis découpées :
les 100 premières pour l'entraînement, 25 pour la validation, les 100 dernières pour le test. Pour ``désert``
et ``nuageux``, les parties du découpage du jeu par défaut (25 images de validation par classe). Les
``per_class`` images d'entraînement sont les premières de la réserve : le jeu à 20 images est inclus dans
celui à 100, et le test est le même.
"""

from __future__ import annotations

import numpy as np

from .data import DatasetError, ImageDataset, Splits, concatenate
from .eurosat_tiles import WORKSHOP_CLASSES, load_workshop_tiles

#: Images réelles de ``forêt`` et ``mer`` par partie (entraînement au plus, validation, test).
TRAIN_POOL, VALIDATION, TEST = 100, 25, 100


def _of_class(dataset: ImageDataset, index: int) -> ImageDataset:
    return dataset.subset(np.flatnonzero(dataset.labels == index))


def small_splits(default: Splits, per_class: int, *, seed: int = 0) -> Splits:
    """Un petit jeu : ``per_class`` images d'entraînement par classe (au plus 100), une validation et un test
    fixes. ``default`` : le découpage du jeu par défaut (ses classes doivent contenir ``forêt`` et ``mer``)."""
    if not 1 <= per_class <= TRAIN_POOL:
        raise DatasetError(f"per_class doit être entre 1 et {TRAIN_POOL} (reçu : {per_class}).")
    classes = list(default.train.classes)
    tiles = load_workshop_tiles(classes)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[ImageDataset]] = {"train": [], "validation": [], "test": []}
    real = {classes.index(name) for name in WORKSHOP_CLASSES.values()}
    for index in range(len(classes)):
        if index in real:
            members = _of_class(tiles, index)
            order = rng.permutation(len(members))
            parts["train"].append(members.subset(order[:per_class]))
            parts["validation"].append(members.subset(order[TRAIN_POOL : TRAIN_POOL + VALIDATION]))
            parts["test"].append(members.subset(order[-TEST:]))
        else:
            train = _of_class(default.train, index)
            if len(train) < per_class:
                raise DatasetError(f"Le jeu par défaut n'a que {len(train)} images d'entraînement de {classes[index]}.")
            parts["train"].append(train.subset(np.arange(per_class)))
            parts["validation"].append(_of_class(default.validation, index).subset(np.arange(VALIDATION)))
            parts["test"].append(_of_class(default.test, index))
    source = "petit jeu : tuiles EuroSAT réelles (forêt, mer) + jeu par défaut (désert, nuageux)"
    return Splits(**{name: concatenate(datasets, classes, source) for name, datasets in parts.items()})


def real_only(dataset: ImageDataset) -> ImageDataset:
    """Les images d'un petit jeu qui sont des tuiles EuroSAT réelles (``forêt`` et ``mer``)."""
    indices = [i for i, path in enumerate(dataset.paths) if path.name.split("_")[0] in WORKSHOP_CLASSES]
    return dataset.subset(indices)
