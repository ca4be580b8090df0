"""Tests of atelier.plots: French titles and axes, number of panels, any number of classes (2–4)."""

from __future__ import annotations

import io
from typing import ClassVar

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from atelier import plots
from atelier.labels import CLASSES

ENGLISH_WORDS = ("loss", "accuracy", "epoch", "true", "predicted", "count", "train", "label", "sample")


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def _visible_axes(figure: Figure, *, with_images: bool = True):
    return [ax for ax in figure.axes if ax.get_visible() and (ax.images or not with_images)]


def _texts(figure: Figure) -> list[str]:
    """Every piece of text a reader sees: suptitle, titles, axis labels, tick labels, legends, annotations."""
    texts = [figure._suptitle.get_text()] if figure._suptitle else []
    texts += [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    for ax in figure.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        texts += [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        if legend:
            texts += [t.get_text() for t in legend.get_texts()] + [legend.get_title().get_text()]
    return [t for t in texts if t]


def _assert_french(figure: Figure) -> None:
    for text in _texts(figure):
        for word in ENGLISH_WORDS:
            assert word not in text.lower().split(), f"mot anglais « {word} » dans « {text} »"


def _renders(figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_samples_grid_has_one_row_per_class(n_classes):
    classes = list(CLASSES[:n_classes])
    labels = np.repeat(np.arange(n_classes), 7)
    figure = plots.plot_samples_per_class(_images(len(labels)), labels, classes, per_class=5)
    assert isinstance(figure, Figure)
    assert len(_visible_axes(figure)) == 5 * n_classes
    row_labels = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    assert row_labels == [f"{name}\n(7 images)" for name in classes]
    assert figure._suptitle.get_text() == "Exemples d'images par classe"
    _renders(figure)


def test_samples_grid_with_a_small_class_leaves_empty_panels():
    labels = np.array([0] * 6 + [1] * 2)
    figure = plots.plot_samples_per_class(_images(8), labels, ["forêt", "mer"], per_class=4)
    assert len(_visible_axes(figure)) == 4 + 2


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_class_balance_single_and_grouped(n_classes):
    counts = {name: 10 + i for i, name in enumerate(CLASSES[:n_classes])}
    figure = plots.plot_class_balance(counts)
    ax = figure.axes[0]
    assert len(ax.patches) == n_classes
    assert [t.get_text() for t in ax.get_xticklabels()] == list(counts)
    assert ax.get_ylabel() == "Nombre d'images" and ax.get_xlabel() == "Classe"
    assert ax.get_title() == "Répartition des images par classe"
    assert [int(p.get_height()) for p in ax.patches] == list(counts.values())
    _assert_french(figure)

    grouped = {"entraînement": counts, "validation": counts, "test": counts}
    figure = plots.plot_class_balance(grouped, title="Effectifs par partie")
    ax = figure.axes[0]
    assert len(ax.patches) == 3 * n_classes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["entraînement", "validation", "test"]
    assert ax.get_legend().get_title().get_text() == "Partie"
    _renders(figure)


def test_augmentation_grid_counts_panels_and_calls_with_training():
    calls = []

    def layer(batch, training=False):
        calls.append(training)
        return batch[:, ::-1]

    image = _images(1)[0]
    figure = plots.plot_augmentations(image, layer, n=6, columns=4)
    assert calls == [True] * 6
    visible = _visible_axes(figure)
    assert len(visible) == 7 and len(figure.axes) == 8
    assert [ax.get_title() for ax in visible] == ["Originale"] + [f"Augmentée n° {k}" for k in range(1, 7)]
    assert np.array_equal(visible[1].images[0].get_array(), image[::-1])
    _renders(figure)


def test_augmentation_accepts_a_keras_layer():
    import keras

    layer = keras.layers.RandomFlip("horizontal", seed=0)
    figure = plots.plot_augmentations(_images(1)[0].astype(np.float32), layer, n=3)
    assert len(_visible_axes(figure)) == 4


def test_training_curves_in_french_with_best_epoch():
    history = {
        "loss": [1.2, 0.8, 0.5, 0.4],
        "accuracy": [0.4, 0.7, 0.85, 0.9],
        "val_loss": [1.0, 0.6, 0.55, 0.7],
        "val_accuracy": [0.5, 0.8, 0.82, 0.8],
    }
    figure = plots.plot_training_curves(history)
    loss_ax, accuracy_ax = figure.axes
    assert loss_ax.get_xlabel() == accuracy_ax.get_xlabel() == "Époque"
    assert loss_ax.get_ylabel() == "Perte" and accuracy_ax.get_ylabel() == "Exactitude"
    assert loss_ax.get_title().startswith("Perte") and accuracy_ax.get_title().startswith("Exactitude")
    assert len(figure.legends) == 1 and loss_ax.get_legend() is None
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["entraînement", "validation", "meilleure époque (3)"]
    assert len(loss_ax.lines) == 3  # two curves + the best-epoch marker
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3, 4]
    _assert_french(figure)
    _renders(figure)


def test_training_curves_accept_a_keras_history_without_validation():
    class FakeHistory:
        history: ClassVar[dict[str, list[float]]] = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]}

    figure = plots.plot_training_curves(FakeHistory())
    assert len(figure.axes) == 2
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["entraînement"]


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_confusion_matrix_labels_counts_and_percentages(n_classes):
    classes = list(CLASSES[:n_classes])
    matrix = np.eye(n_classes, dtype=int) * 8
    matrix[0, 1] = 2
    figure = plots.plot_confusion_matrix(matrix, classes)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "Classe prédite" and ax.get_ylabel() == "Vraie classe"
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == n_classes**2
    assert cells[0] == "8\n80\u202f%" and cells[1] == "2\n20\u202f%"
    assert cells.count("0") == n_classes**2 - n_classes - 1
    assert ax.get_title() == f"Matrice de confusion\n{8 * n_classes + 2} images, exactitude " + (
        f"{100 * 8 * n_classes / (8 * n_classes + 2):.1f}".replace(".", ",") + "\u202f%"
    )
    _assert_french(figure)
    _renders(figure)


def test_confusion_matrix_with_an_empty_row_does_not_divide_by_zero():
    figure = plots.plot_confusion_matrix([[3, 0], [0, 0]], ["forêt", "mer"])
    assert [t.get_text() for t in figure.axes[0].texts] == ["3\n100\u202f%", "0", "0", "0"]


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_misclassified_gallery_shows_only_errors_most_confident_first(n_classes):
    classes = list(CLASSES[:n_classes])
    true = np.array([0, 1, 0, 1, 0])
    predicted = np.array([0, 0, 1, 1, 1])
    probabilities = np.full((5, n_classes), 0.1)
    probabilities[1, 0] = 0.6
    probabilities[2, 1] = 0.9
    probabilities[4, 1] = 0.7
    figure = plots.plot_misclassified(_images(5), true, predicted, classes, probabilities=probabilities)
    visible = _visible_axes(figure)
    assert len(visible) == 3
    titles = [ax.get_title() for ax in visible]
    assert titles[0] == f"vrai : {classes[0]}\nprédit : {classes[1]} (90\u202f%)"
    assert titles[1] == f"vrai : {classes[0]}\nprédit : {classes[1]} (70\u202f%)"
    assert titles[2] == f"vrai : {classes[1]}\nprédit : {classes[0]} (60\u202f%)"
    assert figure._suptitle.get_text() == "Images mal classées (3)"
    _renders(figure)


def test_misclassified_gallery_limits_and_handles_no_error():
    labels = np.zeros(20, dtype=int)
    figure = plots.plot_misclassified(_images(20), labels, labels + 1, ["forêt", "mer"], max_images=8, columns=4)
    assert len(_visible_axes(figure)) == 8
    assert figure._suptitle.get_text() == "Images mal classées (les 8 premières sur 20)"

    figure = plots.plot_misclassified(_images(3), [0, 1, 1], [0, 1, 1], ["forêt", "mer"])
    assert not _visible_axes(figure)
    assert "Aucune image mal classée sur 3" in figure.axes[0].texts[0].get_text()
    _renders(figure)


def test_float_images_in_0_1_are_displayed_like_uint8():
    image = _images(1)[0]
    figure = plots.plot_augmentations(image.astype(np.float32) / 255.0, lambda b: b * 255.0, n=1)
    shown = [ax.images[0].get_array() for ax in _visible_axes(figure)]
    assert np.array_equal(shown[0], image) and np.array_equal(shown[1], image)


def test_convolution_steps_show_window_kernel_products_and_their_sum():
    rng = np.random.default_rng(0)
    gray = rng.uniform(0, 1, size=(16, 16))
    kernel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1.0]])
    figure = plots.plot_convolution_steps(gray, kernel, [(5, 5), (10, 3)], feature_map=np.zeros((16, 16)))
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 2 * 4 + 2
    expected = (gray[4:7, 4:7] * kernel).sum()
    assert visible[3].get_title() == f"= produits ; somme {expected:.2f}".replace(".", ",")
    assert visible[0].get_title() == "Position (ligne 5, colonne 5)"
    assert len(visible[1].texts) == 9 and "," in visible[1].texts[0].get_text()


def test_filters_and_feature_maps_one_panel_each():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 10))
    figure = plots.plot_filters(kernel, columns=4)
    assert [ax.get_title() for ax in figure.axes if ax.get_visible()] == [f"filtre {i}" for i in range(1, 11)]
    maps = np.random.default_rng(1).uniform(size=(8, 8, 20))
    figure = plots.plot_feature_maps(np.zeros((8, 8, 3), np.uint8), maps, n=6, columns=4)
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["image", *[f"canal {i}" for i in range(1, 7)]]
    assert "6 canaux sur 20" in figure.texts[0].get_text()
