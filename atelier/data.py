"""Charger un jeu d'images rangé en un dossier par classe, sans doublons, et le découper proprement.

Toutes les images passent par :func:`atelier.preprocessing.load_image` (décodage Pillow, RVB,
redimensionnement) : exactement le traitement que l'API appliquera plus tard.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .labels import CLASSES, accepted_names, canonical_label, is_workshop_class, order_labels
from .preprocessing import IMAGE_SIZE, ImageError, load_image

#: Environment variable naming a folder-per-class dataset to use instead of the default one.
DATA_ENV = "ATELIER_DATA"

#: Where a learner drops the real class dataset inside the repository.
PROJECT_DATA_DIR = Path(__file__).resolve().parent.parent / "images" / "satellite"


class DatasetError(ValueError):
    """Le jeu de données est inutilisable ; le message, en français, dit quoi faire."""


class DatasetWarning(UserWarning):
    """Des fichiers ont été ignorés (illisibles, doublons)."""


@dataclass
class ImageDataset:
    """Des images ``uint8`` (n, h, l, 3), leurs étiquettes (indices dans ``classes``) et leur origine."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    paths: list[Path]
    source: str = ""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Nombre d'images par classe."""
        found = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, found, strict=True)}

    def subset(self, indices) -> ImageDataset:
        """Le sous-ensemble des images aux positions ``indices`` (mêmes classes)."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageDataset(
            images=self.images[indices],
            labels=self.labels[indices],
            classes=list(self.classes),
            paths=[self.paths[i] for i in indices],
            source=self.source,
        )


def concatenate(parts: list[ImageDataset], classes: list[str], source: str) -> ImageDataset:
    """Les images de ``parts`` mises bout à bout, dans l'ordre (leurs étiquettes désignent déjà ``classes``)."""
    return ImageDataset(
        images=np.concatenate([p.images for p in parts]),
        labels=np.concatenate([p.labels for p in parts]).astype(np.int32),
        classes=list(classes),
        paths=[path for p in parts for path in p.paths],
        source=source,
    )


@dataclass
class Splits:
    """Les trois parties disjointes d'un jeu de données."""

    train: ImageDataset
    validation: ImageDataset
    test: ImageDataset


def resolve_data_dir(path: str | Path | None = None) -> Path:
    """Choisit le dossier de données : ``path`` s'il est donné, sinon ``$ATELIER_DATA``, sinon
    ``images/satellite/`` s'il contient des images, sinon le jeu par défaut (construit au besoin)."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    if PROJECT_DATA_DIR.is_dir() and any(p.is_dir() for p in PROJECT_DATA_DIR.iterdir()):
        return PROJECT_DATA_DIR
    from .default_dataset import build_default_dataset

    return build_default_dataset()


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


def scan_folders(root: str | Path) -> dict[str, list[Path]]:
    """Liste les fichiers de chaque classe d'un dossier « un sous-dossier par classe ».

    Les noms de dossiers sont convertis en classes de l'atelier (``water`` → ``mer``…). Deux dossiers
    qui désignent la même classe (``foret`` et ``forêt``) sont réunis. Les fichiers cachés sont ignorés.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"Dossier de données introuvable : {root}")
    if not root.is_dir():
        raise DatasetError(f"{root} n'est pas un dossier : il faut un dossier avec un sous-dossier par classe.")
    by_label: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        label = canonical_label(unicodedata.normalize("NFC", folder.name))
        files = sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p))
        by_label.setdefault(label, []).extend(files)
    if not by_label:
        raise DatasetError(
            f"Aucun sous-dossier de classe dans {root}. Rangez les images en un dossier par classe, "
            "par exemple forêt/, mer/, désert/, nuageux/ (ou green_area/, water/, desert/, cloudy/)."
        )
    return {label: by_label[label] for label in order_labels(by_label)}


def _read(path: Path, size: int) -> tuple[str, np.ndarray | None, str]:
    """Decode one file; the duplicate key is the hash of the decoded pixels, so byte-identical files and
    files that differ only in encoding (a PNG and its 16-bit or BMP twin) count as the same image."""
    try:
        image = load_image(path.read_bytes(), size)
        return hashlib.sha256(image.tobytes()).hexdigest(), image, ""
    except ImageError as exc:
        return "", None, str(exc)
    except OSError as exc:
        return "", None, f"lecture impossible ({exc.strerror or exc})"


def _list_for_warning(paths, root: Path, limit: int = 10) -> str:
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths]
    more = f" … et {len(names) - limit} autre(s)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_dataset(
    path: str | Path | None = None,
    *,
    image_size: int = IMAGE_SIZE,
    classes: list[str] | None = None,
) -> ImageDataset:
    """Charge un jeu d'images « un dossier par classe » en mémoire.

    - chaque image est décodée comme Pillow le fait (CMJN, gris, palette, 16 bits… → RVB) puis
      redimensionnée en ``image_size × image_size`` ;
    - les fichiers illisibles sont ignorés, avec un avertissement qui les liste ;
    - les doublons exacts (mêmes pixels une fois décodés, donc aussi les fichiers identiques octet pour
      octet) sont retirés : une seule copie est gardée ; une image présente dans deux classes
      différentes est retirée partout, son étiquette étant ambiguë ;
    - ``classes`` impose la liste (et l'ordre) des classes, par exemple celles d'un modèle.

    Lève :class:`DatasetError` (message en français) si le dossier manque, si un dossier n'est pas une
    classe connue (de l'atelier, ou du modèle si ``classes`` est donné ; le message liste les noms
    acceptés), si une classe est vide ou s'il y a moins de deux classes.
    """
    root = resolve_data_dir(path)
    found = scan_folders(root)
    class_names = _class_names(root, found, classes)
    jobs = [(label, p) for label in found for p in found[label]]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(lambda job: _read(job[1], image_size), jobs))
    kept = _keep_unique_images(jobs, results)
    _warn_ignored(root, kept)
    dataset = ImageDataset(
        images=np.stack(kept.images) if kept.images else np.zeros((0, image_size, image_size, 3), np.uint8),
        labels=np.asarray([class_names.index(label) for label in kept.labels], dtype=np.int32),
        classes=class_names,
        paths=kept.paths,
        source=str(root),
        skipped=kept.skipped,
        duplicates=kept.duplicates,
    )
    empty = [name for name, n in dataset.counts().items() if n == 0 and name in found]
    if empty:
        raise DatasetError(f"Classe(s) sans aucune image lisible dans {root} : {', '.join(empty)}.")
    return dataset


def _class_names(root: Path, found: dict[str, list[Path]], classes: list[str] | None) -> list[str]:
    """The dataset's classes: ``classes`` (a model's) if given, else the folders found; a DatasetError
    names the folders that are not one of these classes, or says that one class is not enough."""
    if classes is not None:
        unknown = [label for label in found if label not in classes]
        if unknown:
            raise DatasetError(
                f"Classes inconnues du modèle dans {root} : {', '.join(unknown)}. "
                f"Le modèle connaît : {', '.join(classes)}."
                + (f" Noms de dossiers acceptés : {accepted_names()}." if set(classes) <= set(CLASSES) else "")
            )
        return list(classes)
    unknown = [label for label in found if not is_workshop_class(label)]
    if unknown:
        raise DatasetError(
            f"Dossier(s) de classe inconnu(s) dans {root} : {', '.join(unknown)}. L'atelier reconnaît quatre "
            f"classes ; noms de dossiers acceptés : {accepted_names()}. Retirez ou renommez les autres dossiers."
        )
    class_names = list(found)
    if len(class_names) < 2:
        raise DatasetError(
            f"Une seule classe trouvée dans {root} ({class_names[0]}) : il en faut au moins deux pour "
            "apprendre à les distinguer."
        )
    return class_names


@dataclass
class _KeptImages:
    """What :func:`_keep_unique_images` keeps (images, their labels and paths) and what it leaves out."""

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    ambiguous: set[str] = field(default_factory=set)


def _keep_unique_images(jobs: list[tuple[str, Path]], results: list[tuple[str, np.ndarray | None, str]]) -> _KeptImages:
    """One copy of each decoded image; unreadable files are skipped, and an image found under two
    different labels is removed everywhere (its label is ambiguous)."""
    kept = _KeptImages()
    first_label_of: dict[str, str] = {}
    for (label, file_path), (digest, _, error) in zip(jobs, results, strict=True):
        if error:
            kept.skipped.append((file_path, error))
        elif digest in first_label_of and first_label_of[digest] != label:
            kept.ambiguous.add(digest)
        else:
            first_label_of.setdefault(digest, label)
    seen: set[str] = set()
    for (label, file_path), (digest, array, error) in zip(jobs, results, strict=True):
        if error:
            continue
        if digest in kept.ambiguous or digest in seen:
            kept.duplicates.append(file_path)
            continue
        seen.add(digest)
        assert array is not None  # decoded without error
        kept.images.append(array)
        kept.labels.append(label)
        kept.paths.append(file_path)
    return kept


def _warn_ignored(root: Path, kept: _KeptImages) -> None:
    """A DatasetWarning listing the unreadable files, another listing the duplicates removed (both point
    at the caller of :func:`load_dataset`)."""
    if kept.skipped:
        warnings.warn(
            f"{len(kept.skipped)} fichier(s) illisible(s) ignoré(s) dans {root} : "
            + _list_for_warning([p for p, _ in kept.skipped], root),
            DatasetWarning,
            stacklevel=3,
        )
    if kept.duplicates:
        warnings.warn(
            f"{len(kept.duplicates)} doublon(s) exact(s) retiré(s) dans {root}"
            + (
                f" (dont {len(kept.ambiguous)} image(s) présentes dans deux classes, retirées partout)"
                if kept.ambiguous
                else ""
            )
            + " : "
            + _list_for_warning(kept.duplicates, root),
            DatasetWarning,
            stacklevel=3,
        )


def split_dataset(
    dataset: ImageDataset,
    *,
    validation: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> Splits:
    """Découpe le jeu en entraînement / validation / test, classe par classe (découpage stratifié).

    Le découpage est déterministe : il ne dépend que du contenu des images et de ``seed``, pas de
    l'ordre des fichiers. Comme les doublons ont été retirés au chargement, aucune image ne se trouve
    dans deux parties à la fois.
    """
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise ValueError("Les proportions de validation et de test doivent être entre 0 et 1, et leur somme < 1.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for class_index in range(len(dataset.classes)):
        members = np.flatnonzero(dataset.labels == class_index)
        if len(members) == 0:
            continue
        # Order by content first so that the split does not depend on file names or listing order
        # (pixel contents are unique: duplicates were removed when loading).
        keys = [hashlib.sha256(dataset.images[i].tobytes()).hexdigest() for i in members]
        members = members[np.argsort(keys, kind="stable")]
        members = members[rng.permutation(len(members))]
        n_test = round(len(members) * test)
        n_val = round(len(members) * validation)
        if len(members) >= 3:
            n_test, n_val = max(n_test, 1 if test else 0), max(n_val, 1 if validation else 0)
        parts["test"].extend(members[:n_test])
        parts["validation"].extend(members[n_test : n_test + n_val])
        parts["train"].extend(members[n_test + n_val :])
    return Splits(**{name: dataset.subset(sorted(idx)) for name, idx in parts.items()})


def to_tf_dataset(
    dataset: ImageDataset,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    steps: int | None = None,
):
    """Un pipeline ``tf.data`` : (mélange) → lots → cache → préchargement.

    Les images restent en 0–255 (``float32``) : la normalisation est une couche du modèle. Avec ``steps``,
    une époque compte exactement ``steps`` lots : les images sont répétées (mélangées à nouveau à chaque
    passage) s'il en faut plus, ou une partie seulement est vue s'il en faut moins ; c'est ce que fait
    :func:`atelier.training.training_plan` pour adapter l'entraînement à la taille du jeu.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((dataset.images, dataset.labels))
    if shuffle:
        ds = ds.shuffle(len(dataset), seed=seed, reshuffle_each_iteration=True)
    if steps is not None:
        ds = ds.repeat()
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if steps is not None:
        ds = ds.take(steps)
    if not shuffle:
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)
