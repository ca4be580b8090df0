"""Les tuiles EuroSAT livrées avec l'atelier (``atelier/eurosat/``) : les lister d'après leur manifeste et
les charger par :func:`atelier.preprocessing.load_image`, le prétraitement unique de l'atelier.

5 000 tuiles Sentinel-2 réelles (64 × 64, RVB, licence MIT), 500 par classe d'occupation du sol ; voir
``atelier/eurosat/PROVENANCE.md``. Elles servent à pré-entraîner le réseau de base du chapitre 3
(``tools/pretrain_backbone.py``).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import DatasetError, ImageDataset
from .preprocessing import IMAGE_SIZE, ImageError, load_image

#: Dossier des tuiles dans le paquet.
EUROSAT_DIR = Path(__file__).resolve().parent / "eurosat"

#: Les 10 classes d'EuroSAT, dans l'ordre alphabétique (celui des sorties du réseau pré-entraîné et des sols
#: sous les nuages du jeu par défaut).
EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)


class EuroSatError(DatasetError):
    """Une tuile EuroSAT livrée avec l'atelier manque ou est abîmée (message en français)."""


#: Noms français des classes, pour les figures des notebooks.
FRENCH_NAMES: dict[str, str] = {
    "AnnualCrop": "cultures annuelles",
    "Forest": "forêt",
    "HerbaceousVegetation": "végétation herbacée",
    "Highway": "route",
    "Industrial": "zone industrielle",
    "Pasture": "pâturage",
    "PermanentCrop": "cultures permanentes",
    "Residential": "zone résidentielle",
    "River": "rivière",
    "SeaLake": "mer ou lac",
}


def read_manifest(root: str | Path = EUROSAT_DIR) -> list[tuple[str, str, str]]:
    """Les lignes ``(classe, fichier, md5)`` de ``manifest.csv``, dans l'ordre du fichier."""
    manifest = Path(root) / "manifest.csv"
    if not manifest.is_file():
        raise DatasetError(f"Manifeste des tuiles EuroSAT introuvable : {manifest}")
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = [(row["class"], row["file"], row["md5"]) for row in csv.DictReader(handle)]
    if not rows:
        raise DatasetError(f"Le manifeste {manifest} ne liste aucune tuile.")
    return rows


def reserved_range(count: int) -> range:
    """Les numéros (ordre du manifeste) des tuiles réservées à l'atelier parmi ``count`` : la seconde moitié.

    La seule définition de cette règle : le réseau de base du chapitre 3 est pré-entraîné sans ces tuiles, le
    jeu par défaut ne prend que là ses tuiles ``Forest`` et ``SeaLake`` étiquetées.
    """
    return range(count // 2, count)


def read_tile_bytes(path: Path, md5: str) -> bytes:
    """Les octets d'une tuile, vérifiés par leur somme MD5 du manifeste ; :class:`EuroSatError` sinon."""
    try:
        content = path.read_bytes()
    except OSError:
        raise EuroSatError(f"Tuile EuroSAT introuvable : {path}. Réinstallez l'atelier (python demarrer.py).") from None
    if hashlib.md5(content, usedforsecurity=False).hexdigest() != md5:
        raise EuroSatError(f"Tuile EuroSAT modifiée ou abîmée (somme MD5 différente du manifeste) : {path}.")
    return content


def load_eurosat(
    root: str | Path = EUROSAT_DIR,
    *,
    classes: Sequence[str] = EUROSAT_CLASSES,
    per_class: int | None = None,
    exclude: Sequence[str] = (),
    only: Sequence[str] | None = None,
    image_size: int = IMAGE_SIZE,
) -> ImageDataset:
    """Charge les tuiles listées dans le manifeste de ``root`` (par défaut celles du paquet).

    Chaque fichier est vérifié (somme MD5 du manifeste) puis décodé par
    :func:`~atelier.preprocessing.load_image`. ``per_class`` garde les premières tuiles de chaque classe
    (dans l'ordre du manifeste) ; ``exclude`` retire des fichiers par leur nom (``"Forest_10.jpg"``), ``only``
    ne garde que ceux-là. Les
    étiquettes sont les indices dans ``classes``. Lève :class:`~atelier.data.DatasetError` (en français) si
    une tuile manque, est abîmée ou si une classe n'a aucune tuile.
    """
    root = Path(root)
    excluded = set(exclude)
    kept = None if only is None else set(only)
    chosen: dict[str, list[tuple[str, str]]] = {name: [] for name in classes}
    for label, name, md5 in read_manifest(root):
        wanted = name not in excluded and (kept is None or name in kept)
        if label in chosen and wanted and (per_class is None or len(chosen[label]) < per_class):
            chosen[label].append((name, md5))
    empty = [label for label, files in chosen.items() if not files]
    if empty:
        raise DatasetError(f"Aucune tuile EuroSAT pour la ou les classes : {', '.join(empty)} (dans {root}).")
    images, labels, paths = [], [], []
    for index, label in enumerate(classes):
        for name, md5 in chosen[label]:
            path = root / label / name
            content = read_tile_bytes(path, md5)
            try:
                images.append(load_image(content, image_size))
            except ImageError as error:
                raise DatasetError(f"Tuile EuroSAT illisible ({path}) : {error}") from None
            labels.append(index)
            paths.append(path)
    return ImageDataset(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int32),
        classes=list(classes),
        paths=paths,
        source=str(root),
    )


#: Classes EuroSAT qui sont aussi des classes de l'atelier (jeu par défaut, chapitre 3).
WORKSHOP_CLASSES: dict[str, str] = {"Forest": "forêt", "SeaLake": "mer"}


def workshop_tiles(root: str | Path = EUROSAT_DIR) -> list[str]:
    """Les tuiles ``Forest`` et ``SeaLake`` réservées à l'atelier : la seconde moitié de chacune de ces deux
    classes, dans l'ordre du manifeste (250 + 250 fichiers).

    Le pré-entraînement du réseau de base ne les voit **jamais** : le chapitre 3 peut donc mesurer le transfert
    sur ces tuiles réelles sans que le réseau de base les ait apprises avec leur étiquette.
    """
    by_class: dict[str, list[str]] = {}
    for label, name, _ in read_manifest(root):
        if label in WORKSHOP_CLASSES:
            by_class.setdefault(label, []).append(name)
    return [names[number] for names in by_class.values() for number in reserved_range(len(names))]


def load_workshop_tiles(classes: Sequence[str]) -> ImageDataset:
    """Les tuiles réservées à l'atelier (:func:`workshop_tiles`) étiquetées avec les classes de l'atelier :
    ``Forest`` → ``forêt``, ``SeaLake`` → ``mer`` (indices dans ``classes``). 250 tuiles réelles par classe."""
    tiles = load_eurosat(classes=tuple(WORKSHOP_CLASSES), only=workshop_tiles())
    names = [WORKSHOP_CLASSES[label] for label in tiles.classes]
    missing = [name for name in names if name not in classes]
    if missing:
        raise DatasetError(f"Classe(s) absente(s) de la liste donnée : {', '.join(missing)}.")
    tiles.labels = np.asarray([list(classes).index(names[i]) for i in tiles.labels], dtype=np.int32)
    tiles.classes = list(classes)
    return tiles
