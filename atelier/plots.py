"""Les figures de l'atelier, en français : échantillons, répartition des classes, augmentation,
courbes d'apprentissage, matrice de confusion, galerie des erreurs, convolution pas à pas, filtres et
cartes d'activation.

Chaque fonction renvoie une :class:`matplotlib.figure.Figure` construite **sans** ``pyplot`` : pas
d'état global, pas de fenêtre ouverte, utilisable dans un test ou un serveur. Dans un notebook, activez
l'affichage des figures une fois (``%matplotlib inline`` dans la mise en place), puis mettez la figure en
dernière ligne de la cellule (ou appelez ``display(figure)``) pour l'afficher ;
``figure.savefig("fichier.png")`` l'enregistre.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from matplotlib.figure import Figure

from atelier.formatting import decimal, percent

#: One colour per workshop class (the same everywhere), then a fallback cycle for other classes.
CLASS_COLOURS: dict[str, str] = {
    "forêt": "#2e7d32",
    "mer": "#1565c0",
    "désert": "#d4a017",
    "nuageux": "#78909c",
}
_FALLBACK_COLOURS = ("#8e24aa", "#ef6c00", "#00897b", "#c62828", "#5d4037", "#3949ab")

#: French names of the usual Keras metrics, for axis labels and titles.
METRIC_NAMES: dict[str, str] = {"loss": "Perte (entropie croisée)", "accuracy": "Exactitude (accuracy)"}


def class_colour(name: str, index: int = 0) -> str:
    """Couleur d'une classe : fixe pour forêt, mer, désert, nuageux ; sinon tirée d'un cycle."""
    return CLASS_COLOURS.get(name, _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)])


def _percent(value: float, decimals: int = 0) -> str:
    """``0.873`` → ``« 87 % »``, ou ``« 87,3 % »`` avec une décimale (virgule et espace fine insécable)."""
    return percent(value, decimals)


def as_uint8(image) -> np.ndarray:
    """Accepte une image uint8 0–255, float 0–255 ou float 0–1 ; renvoie un uint8 affichable."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float64)
    if array.size and array.max() <= 1.0 + 1e-6:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_samples_per_class(
    images: np.ndarray,
    labels: Sequence[int],
    classes: Sequence[str],
    *,
    per_class: int = 6,
    seed: int = 0,
    title: str = "Exemples d'images par classe",
) -> Figure:
    """Grille d'exemples : une ligne par classe, ``per_class`` images tirées au hasard (graine ``seed``).

    Le nom de la classe et son effectif sont écrits à gauche de chaque ligne.
    """
    label_array = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n_rows, n_cols = len(classes), per_class
    figure = Figure(figsize=(1.5 * n_cols + 1.4, 1.5 * n_rows + 0.6), layout="constrained")
    axes = np.atleast_2d(figure.subplots(n_rows, n_cols, squeeze=False))
    for row, name in enumerate(classes):
        members = np.flatnonzero(label_array == row)
        chosen = rng.choice(members, size=min(n_cols, len(members)), replace=False)
        for col in range(n_cols):
            ax = axes[row, col]
            _hide_ticks(ax)
            if col < len(chosen):
                ax.imshow(as_uint8(images[chosen[col]]), interpolation="nearest")
        axes[row, 0].set_ylabel(
            f"{name}\n({len(members)} images)",
            rotation=0,
            ha="right",
            va="center",
            fontsize=11,
            color=class_colour(name, row),
            fontweight="bold",
        )
    figure.suptitle(title, fontsize=13)
    return figure


def plot_class_balance(
    counts: Mapping[str, int] | Mapping[str, Mapping[str, int]],
    *,
    title: str = "Répartition des images par classe",
) -> Figure:
    """Diagramme en barres du nombre d'images par classe.

    ``counts`` est soit ``{classe: effectif}`` (par exemple ``dataset.counts()``), soit
    ``{partie: {classe: effectif}}`` (par exemple entraînement / validation / test) : les barres sont
    alors groupées par classe, une couleur par partie.
    """
    figure = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = figure.subplots()
    first = next(iter(counts.values()), None)
    if isinstance(first, Mapping):
        nested = cast(Mapping[str, Mapping[str, int]], counts)
        groups = {str(k): dict(v) for k, v in nested.items()}
        classes = list(dict.fromkeys(name for part in groups.values() for name in part))
        x = np.arange(len(classes))
        width = 0.8 / max(len(groups), 1)
        palette = ("#455a64", "#f9a825", "#c62828", "#6a1b9a", "#00838f")
        for k, (part, part_counts) in enumerate(groups.items()):
            values = [part_counts.get(name, 0) for name in classes]
            bars = ax.bar(
                x + (k - (len(groups) - 1) / 2) * width, values, width, label=part, color=palette[k % len(palette)]
            )
            ax.bar_label(bars, fontsize=9, padding=2)
        ax.legend(title="Partie", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        flat = cast(Mapping[str, int], counts)
        classes = list(flat)
        values = [int(flat[name]) for name in classes]
        x = np.arange(len(classes))
        bars = ax.bar(x, values, 0.6, color=[class_colour(name, i) for i, name in enumerate(classes)])
        ax.bar_label(bars, fontsize=10, padding=2)
        total = sum(values)
        if total:
            ax.axhline(
                total / len(values), color="black", linestyle="--", linewidth=1, label="équilibre parfait\n(moyenne)"
            )
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xticks(x, classes, fontsize=11)
    ax.set_xlabel("Classe")
    ax.set_ylabel("Nombre d'images")
    ax.set_title(title)
    ax.margins(y=0.12)
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def plot_augmentations(
    image: np.ndarray,
    augmentation,
    *,
    n: int = 8,
    columns: int = 5,
    title: str = "Une même image, plusieurs augmentations",
) -> Figure:
    """L'image d'origine puis ``n`` versions transformées par ``augmentation``.

    ``augmentation`` est une couche (ou un modèle) Keras appelée avec ``training=True``, ou toute
    fonction qui prend un lot ``(1, h, l, 3)`` en float 0–255 et renvoie un lot de même forme.
    """
    batch = np.asarray(image, dtype=np.float32)[np.newaxis]
    panels = [("Originale", as_uint8(image))]
    for k in range(n):
        try:
            out = augmentation(batch, training=True)
        except TypeError:  # a plain function without a ``training`` argument
            out = augmentation(batch)
        panels.append((f"Augmentée n° {k + 1}", as_uint8(np.clip(np.asarray(out)[0], 0, 255))))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(2.0 * columns, 2.2 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (label, picture) in zip(axes, panels, strict=False):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(label, fontsize=10, fontweight="bold" if label == "Originale" else "normal")
    for ax in axes:
        _hide_ticks(ax)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(title, fontsize=13)
    return figure


def plot_training_curves(history: Any, *, title: str = "Courbes d'apprentissage") -> Figure:
    """Perte et exactitude par époque, sur l'entraînement et la validation (deux graphiques).

    ``history`` est l'objet renvoyé par ``model.fit`` ou son dictionnaire ``history.history``.
    La meilleure époque (perte de validation minimale) est marquée d'une ligne verticale.
    """
    values = getattr(history, "history", history)
    metrics = [m for m in ("loss", "accuracy") if m in values] or [m for m in values if not m.startswith("val_")][:2]
    figure = Figure(figsize=(5.2 * len(metrics), 4.0), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    best = None
    if "val_loss" in values and len(values["val_loss"]):
        best = int(np.argmin(values["val_loss"])) + 1
    for ax, metric in zip(axes, metrics, strict=False):
        train = np.asarray(values[metric], dtype=float)
        epochs = np.arange(1, len(train) + 1)
        ax.plot(epochs, train, "o-", color="#1565c0", label="entraînement", markersize=4)
        if f"val_{metric}" in values:
            ax.plot(
                epochs,
                np.asarray(values[f"val_{metric}"], dtype=float),
                "s-",
                color="#ef6c00",
                label="validation",
                markersize=4,
            )
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", label=f"meilleure époque ({best})")
        name = METRIC_NAMES.get(metric, metric)
        ax.set_title(name)
        ax.set_xlabel("Époque")
        ax.set_ylabel(name.split(" (")[0])
        if metric == "accuracy":
            ax.set_ylim(min(0.0 if train.min() < 0.5 else 0.5, ax.get_ylim()[0]), 1.01)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    # One legend for both graphs, under them: it never hides a curve.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=10)
    figure.suptitle(title, fontsize=13)
    return figure


def plot_confusion_matrix(
    matrix,
    classes: Sequence[str],
    *,
    title: str = "Matrice de confusion",
) -> Figure:
    """Matrice de confusion : ligne = vraie classe, colonne = classe prédite.

    Chaque case montre l'effectif et, en dessous, la part de la vraie classe (pourcentage de la ligne) ;
    les cases vides affichent simplement « 0 », en gris.
    La couleur suit ce pourcentage, pour que les classes peu nombreuses restent lisibles.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = 1.3 * len(classes) + 2.4
    figure = Figure(figsize=(size + 0.8, size), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            colour = "white" if share[i, j] > 0.55 else "black"
            text = f"{matrix[i, j]}\n{_percent(share[i, j])}" if matrix[i, j] else "0"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                color=colour if matrix[i, j] else "#9e9e9e",
                fontsize=11 if matrix[i, j] else 10,
            )
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes)
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("Classe prédite")
    ax.set_ylabel("Vraie classe")
    total = int(matrix.sum())
    accuracy = np.trace(matrix) / total if total else 0.0
    ax.set_title(f"{title}\n{total} images, exactitude {_percent(accuracy, 1)}")
    colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("Part de la vraie classe")
    return figure


def plot_misclassified(
    images: np.ndarray,
    true_labels: Sequence[int],
    predicted_labels: Sequence[int],
    classes: Sequence[str],
    *,
    probabilities: np.ndarray | None = None,
    max_images: int = 12,
    columns: int = 6,
    title: str = "Images mal classées",
) -> Figure:
    """Galerie des images dont la prédiction est fausse : vraie classe et classe prédite sous chacune.

    Avec ``probabilities`` (sorties du modèle), la confiance dans la classe prédite est indiquée et les
    erreurs les plus « sûres d'elles » viennent en premier. S'il n'y a aucune erreur, la figure le dit.
    """
    truth, guesses = np.asarray(true_labels), np.asarray(predicted_labels)
    wrong = np.flatnonzero(truth != guesses)
    if probabilities is not None and len(wrong):
        confidence = np.asarray(probabilities)[wrong, guesses[wrong]]
        wrong = wrong[np.argsort(-confidence, kind="stable")]
    shown = wrong[:max_images]
    if len(shown) == 0:
        figure = Figure(figsize=(6, 1.6), layout="constrained")
        ax = figure.subplots()
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"Aucune image mal classée sur {len(true_labels)} : bravo !",
            ha="center",
            va="center",
            fontsize=13,
        )
        figure.suptitle(title, fontsize=13)
        return figure
    columns = min(columns, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(2.1 * columns, 2.5 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, index in zip(axes, shown, strict=False):
        ax.imshow(as_uint8(images[index]), interpolation="nearest")
        predicted = classes[guesses[index]]
        caption = f"vrai : {classes[truth[index]]}\nprédit : {predicted}"
        if probabilities is not None:
            caption += f" ({_percent(float(probabilities[index, guesses[index]]))})"
        ax.set_title(caption, fontsize=9, color="#b71c1c")
    for ax in axes:
        _hide_ticks(ax)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    more = f" (les {len(shown)} premières sur {len(wrong)})" if len(wrong) > len(shown) else f" ({len(wrong)})"
    figure.suptitle(title + more, fontsize=13)
    return figure


def _annotate_grid(ax, values: np.ndarray, decimals: int, cmap: str = "gray", vmin=None, vmax=None) -> None:
    """Un petit tableau de nombres affiché comme une image, chaque case avec sa valeur."""
    ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    middle = (np.nanmax(values) + np.nanmin(values)) / 2 if vmin is None else (vmin + vmax) / 2
    for (row, column), value in np.ndenumerate(values):
        colour = "black" if value > middle else "white"
        ax.text(column, row, decimal(value, decimals), ha="center", va="center", fontsize=9, color=colour)
    _hide_ticks(ax)


def plot_convolution_steps(
    gray: np.ndarray,
    kernel: np.ndarray,
    positions: Sequence[tuple[int, int]],
    *,
    feature_map: np.ndarray | None = None,
    title: str = "Un filtre 3 × 3 glisse sur l'image",
) -> Figure:
    """Pas à pas, pour chaque position (ligne, colonne) : la fenêtre 3 × 3, ses pixels, le filtre, la somme.

    ``gray`` est une image en niveaux de gris (valeurs 0–1), ``kernel`` un filtre 3 × 3. Avec
    ``feature_map`` (la carte calculée par ``Conv2D``), une dernière ligne montre l'image et la carte entière.
    """
    gray = np.asarray(gray, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    rows = len(positions) + (feature_map is not None)
    figure = Figure(figsize=(11, 2.6 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, 4, squeeze=False)
    limit = float(np.abs(kernel).max()) or 1.0
    for (row, column), line in zip(positions, axes, strict=False):
        window = gray[row - 1 : row + 2, column - 1 : column + 2]
        products = window * kernel
        line[0].imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        line[0].add_patch(
            _rectangle((column - 1.5, row - 1.5), 3, 3, edgecolor="#e53935", facecolor="none", linewidth=2)
        )
        line[0].set_title(f"Position (ligne {row}, colonne {column})", fontsize=10)
        _hide_ticks(line[0])
        _annotate_grid(line[1], window, 2, vmin=0, vmax=1)
        line[1].set_title("Pixels de la fenêtre", fontsize=10)
        _annotate_grid(line[2], kernel, 0, cmap="coolwarm", vmin=-limit, vmax=limit)
        line[2].set_title("× poids du filtre", fontsize=10)
        bound = float(np.abs(products).max()) or 1.0
        _annotate_grid(line[3], products, 2, cmap="coolwarm", vmin=-bound, vmax=bound)
        line[3].set_title(f"= produits ; somme {decimal(products.sum(), 2)}", fontsize=10)
    if feature_map is not None:
        last = axes[-1]
        last[0].imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        last[0].set_title("Image entière", fontsize=10)
        # Colour scale from the inside: with padding="same" the zero padding makes the border extreme.
        inside = np.asarray(feature_map)[1:-1, 1:-1]
        bound = float(np.abs(inside).max()) if inside.size else 0.0
        bound = bound or 1.0
        last[1].imshow(np.asarray(feature_map), cmap="coolwarm", vmin=-bound, vmax=bound, interpolation="nearest")
        last[1].set_title("Carte d'activation (toutes les positions)", fontsize=10)
        for ax in last[:2]:
            _hide_ticks(ax)
        for ax in last[2:]:
            ax.set_visible(False)
    figure.suptitle(title, fontsize=13)
    return figure


def _rectangle(*args, **kwargs):
    from matplotlib.patches import Rectangle

    return Rectangle(*args, **kwargs)


def plot_filters(kernel: np.ndarray, *, columns: int = 8, title: str = "Les filtres de la première couche") -> Figure:
    """Chaque filtre ``(3, 3, 3)`` d'une couche ``Conv2D`` sur des images RVB, affiché comme une petite image.

    ``kernel`` est le tableau des poids, de forme ``(3, 3, 3, nombre de filtres)`` (``layer.kernel``). Chaque
    filtre est ramené entre 0 et 1 : une case rouge vif « aime » le rouge à cet endroit, une case sombre le fuit.
    """
    weights = np.asarray(kernel, dtype=np.float64)
    count = weights.shape[-1]
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(1.4 * columns, 1.5 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        _hide_ticks(ax)
        if index >= count:
            ax.set_visible(False)
            continue
        one = weights[..., index]
        span = one.max() - one.min()
        ax.imshow((one - one.min()) / span if span else np.zeros_like(one), interpolation="nearest")
        ax.set_title(f"filtre {index + 1}", fontsize=9)
    figure.suptitle(title, fontsize=13)
    return figure


def plot_feature_maps(
    image: np.ndarray,
    maps: np.ndarray,
    *,
    n: int = 16,
    columns: int = 8,
    title: str = "Cartes d'activation",
) -> Figure:
    """L'image puis ses ``n`` premières cartes d'activation (``maps`` de forme ``(hauteur, largeur, canaux)``)."""
    maps = np.asarray(maps, dtype=np.float64)
    count = min(n, maps.shape[-1])
    rows = math.ceil((count + 1) / columns)
    figure = Figure(figsize=(1.5 * columns, 1.6 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    axes[0].imshow(as_uint8(image), interpolation="nearest")
    axes[0].set_title("image", fontsize=9, fontweight="bold")
    for index, ax in enumerate(axes):
        _hide_ticks(ax)
        if index == 0:
            continue
        if index > count:
            ax.set_visible(False)
            continue
        ax.imshow(maps[..., index - 1], cmap="viridis", interpolation="nearest")
        ax.set_title(f"canal {index}", fontsize=9)
    figure.suptitle(f"{title} ({maps.shape[0]} × {maps.shape[1]}, {count} canaux sur {maps.shape[-1]})", fontsize=13)
    return figure


def plot_accuracy_curves(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    title: str = "Exactitude de validation",
    marks: Mapping[str, int] | None = None,
    steps_per_epoch: Mapping[str, int] | None = None,
) -> Figure:
    """Exactitude de validation de plusieurs entraînements (nom → historique Keras), sur un même graphique.

    ``marks`` : nom → nombre d'époques après lequel une seconde phase commence (l'affinage), marqué d'une
    ligne en tirets. ``steps_per_epoch`` : nom → pas d'optimisation par époque ; l'axe horizontal compte
    alors les pas, ce qui compare des entraînements sur des jeux de tailles différentes.
    """
    figure = Figure(figsize=(8.0, 4.4), layout="constrained")
    ax = figure.subplots()
    for index, (name, history) in enumerate(runs.items()):
        values = np.asarray(history["val_accuracy"], dtype=float)
        scale = (steps_per_epoch or {}).get(name, 1)
        colour = _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)]
        ax.plot(scale * np.arange(1, len(values) + 1), values, "o-", markersize=3, color=colour, label=name)
        if marks and name in marks:
            ax.axvline(
                scale * (marks[name] + 0.5), color=colour, linestyle="--", alpha=0.7, label="début de l'affinage"
            )
    ax.set_xlabel("Pas d'optimisation" if steps_per_epoch else "Époque")
    ax.set_ylabel("Exactitude de validation")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title(title, fontsize=12)
    return figure
