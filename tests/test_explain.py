"""atelier.explain : Grad-CAM, occlusion, figures et seuil « je ne sais pas », vérifiés sur des problèmes dont
on connaît la réponse (un carré lumineux, un modèle qui ne regarde qu'un quart de l'image)."""

from __future__ import annotations

import numpy as np
import pytest

from atelier import explain
from atelier.labels import CLASSES


def _keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras


# ----------------------------------------------------------------------------- the workshop CNN


@pytest.fixture(scope="module")
def workshop_cnn():
    keras = _keras()
    from atelier.model import build_cnn

    del keras
    return build_cnn(CLASSES, 64, augment=True, seed=0)


def test_last_conv_layer_is_found_without_its_name(workshop_cnn):
    from keras import layers

    conv = explain.find_last_conv_layer(workshop_cnn)
    convs = [layer for layer in workshop_cnn.layers if isinstance(layer, layers.Conv2D)]
    assert conv is convs[-1]


def test_grad_cam_on_the_workshop_cnn_has_the_image_shape_and_range(workshop_cnn):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    cams = explain.grad_cam(workshop_cnn, images)
    assert cams.shape == (3, 64, 64) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0
    one = explain.grad_cam(workshop_cnn, images[0], class_index=2)
    assert one.shape == (64, 64)
    per_image = explain.grad_cam(workshop_cnn, images, class_index=np.array([0, 1, 3]))
    assert per_image.shape == (3, 64, 64)


def test_occlusion_and_figure_on_the_workshop_cnn(workshop_cnn):
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    occlusion = explain.occlusion_map(workshop_cnn, image, patch=16, stride=8)
    assert occlusion.shape == (64, 64) and np.isfinite(occlusion).all()
    cam = explain.grad_cam(workshop_cnn, image)
    figure = explain.plot_heatmaps([image, image], [cam, cam], ["vrai : forêt", "vrai : mer"])
    labels = [ax.get_ylabel() for ax in figure.axes]
    assert "Importance pour la classe prédite\n(0 = aucune, 1 = maximale)" in labels
    assert figure.get_suptitle() == "Grad-CAM : où le modèle a regardé"


def test_nested_sequential_base_is_walked_into():
    """The chapter-3 transfer model nests its EuroSAT base (a Sequential): Grad-CAM uses the end of its last
    block (relu3, after conv3 and norm3), as for the workshop CNN, and gives the same maps as a flat copy."""
    _keras()
    from atelier.backbone import build_transfer_model

    model = build_transfer_model(CLASSES, augment=True)
    conv = explain.find_last_conv_layer(model)
    assert conv.name == "conv3"
    assert explain._end_of_block(model, conv).name == "relu3"
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3))
    cams = explain.grad_cam(model, images)
    assert cams.shape == (2, 64, 64) and np.isfinite(cams).all() and cams.max() == pytest.approx(1.0)
    relu3 = model.get_layer("base_eurosat").get_layer("relu3")
    np.testing.assert_allclose(cams, explain.grad_cam(model, images, layer=relu3), atol=1e-6)
    norm3 = model.get_layer("base_eurosat").get_layer("norm3")
    assert not np.allclose(cams, explain.grad_cam(model, images, layer=norm3), atol=1e-3)


def test_nested_functional_feature_model_is_used_when_there_is_no_conv_to_walk_to():
    """A nested non-sequential base (MobileNetV2 has branches) stays one block: its 2-D output is explained."""
    keras = _keras()
    from keras import layers

    inner = keras.Input((16, 16, 3))
    base = keras.Model(inner, layers.Conv2D(4, 3, padding="same", activation="relu")(inner), name="base")
    inputs = keras.Input((16, 16, 3))
    x = layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(x))
    assert explain.find_last_conv_layer(model) is base
    cams = explain.grad_cam(model, np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)))
    assert cams.shape == (2, 16, 16)


def test_models_without_convolution_or_with_branches_get_a_french_error():
    keras = _keras()
    from keras import layers

    dense_only = keras.Sequential([keras.Input((8, 8, 3)), layers.Flatten(), layers.Dense(2, activation="softmax")])
    with pytest.raises(explain.ExplainError, match="convolution"):
        explain.grad_cam(dense_only, np.zeros((8, 8, 3)))
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(3, 3, padding="same")(inputs)
    merged = layers.Add()([inputs, a])
    branched = keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(merged)))
    with pytest.raises(explain.ExplainError, match="chaîne"):
        explain.grad_cam(branched, np.zeros((8, 8, 3)))


# ----------------------------------------------------------------------------- a problem with a known answer


SIZE, SQUARE = 32, 6


def _square_images(n, seed):
    """Dark noisy images; label 1 images contain a bright 6×6 square at a random position."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(20, 70, (n, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    corners = rng.integers(0, SIZE - SQUARE + 1, (n, 2))
    for image, label, (top, left) in zip(images, labels, corners, strict=True):
        if label:
            image[top : top + SQUARE, left : left + SQUARE] = rng.uniform(200, 250, 3)
    return images, labels, corners


@pytest.fixture(scope="module")
def square_detector():
    """A tiny CNN trained in a few seconds to say whether a bright square is present."""
    keras = _keras()
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            layers.Rescaling(1 / 255),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    images, labels, _ = _square_images(600, seed=0)
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    test, test_labels, corners = _square_images(200, seed=1)
    accuracy = float((model.predict(test, verbose=0).argmax(1) == test_labels).mean())
    assert accuracy > 0.95, f"the synthetic detector did not learn ({accuracy:.2f})"
    keep = test_labels == 1
    return model, test[keep][:20], corners[keep][:20]


def _inside(heatmap, corner, margin=2):
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    top, left = corner
    return top - margin <= row < top + SQUARE + margin and left - margin <= col < left + SQUARE + margin


def test_grad_cam_peaks_on_the_bright_square(square_detector):
    model, images, corners = square_detector
    cams = explain.grad_cam(model, images, class_index=1)
    hits = [_inside(cam, corner) for cam, corner in zip(cams, corners, strict=True)]
    assert np.mean(hits) >= 0.9, hits
    # Mean heat inside the square is far above the mean heat elsewhere.
    top, left = corners[0]
    mask = np.zeros((SIZE, SIZE), bool)
    mask[top : top + SQUARE, left : left + SQUARE] = True
    assert cams[0][mask].mean() > 3 * cams[0][~mask].mean()


def test_occlusion_peaks_on_the_bright_square(square_detector):
    model, images, corners = square_detector
    hits = [
        _inside(explain.occlusion_map(model, image, class_index=1, patch=6, stride=2), corner)
        for image, corner in zip(images[:8], corners[:8], strict=True)
    ]
    assert np.mean(hits) >= 0.85, hits


def test_occlusion_is_exact_on_a_model_that_only_reads_the_top_left_quadrant():
    keras = _keras()
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Cropping2D(((0, 8), (0, 8))),  # keeps rows 0–7 and columns 0–7
            layers.GlobalAveragePooling2D(),
            layers.Dense(2, activation="softmax"),
        ]
    )
    model.layers[-1].set_weights([np.array([[0.0, 0.02]] * 3, np.float32), np.array([0.0, -6.0], np.float32)])
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    image[:8, :8] = 200.0
    occlusion = explain.occlusion_map(model, image, class_index=1, patch=4, stride=4, fill="gris")
    assert occlusion.shape == (16, 16)
    assert (occlusion[:8, :8] > 1e-4).all()
    np.testing.assert_allclose(occlusion[8:, :], 0.0, atol=1e-7)
    np.testing.assert_allclose(occlusion[:, 8:], 0.0, atol=1e-7)


def test_occlusion_rejects_bad_arguments():
    with pytest.raises(explain.ExplainError):
        explain.occlusion_map(None, np.zeros((8, 8, 3)), patch=20)
    with pytest.raises(explain.ExplainError, match="fill"):
        explain.occlusion_map(None, np.zeros((8, 8, 3)), patch=4, fill="rose")


# ----------------------------------------------------------------------------- figures


def test_overlay_heatmap():
    image = np.full((4, 4, 3), 100, np.uint8)
    heat = np.zeros((4, 4))
    assert np.array_equal(explain.overlay_heatmap(image, heat, alpha=0.0), image)
    full = explain.overlay_heatmap(image, np.ones((4, 4)), alpha=1.0, cmap="jet")
    assert full.dtype == np.uint8 and full.shape == (4, 4, 3)
    assert full[0, 0, 0] > full[0, 0, 2]  # jet(1) is dark red
    with pytest.raises(explain.ExplainError):
        explain.overlay_heatmap(image, np.zeros((3, 3)))


def test_plot_heatmaps_for_an_occlusion_map_uses_the_given_scale_and_labels():
    images = [np.zeros((8, 8, 3), np.uint8)] * 3
    maps = [np.linspace(-0.2, 0.2, 64).reshape(8, 8)] * 3
    figure = explain.plot_heatmaps(
        images,
        maps,
        ["a", "b", "c"],
        title="Occultation",
        cmap="RdBu_r",
        vmin=-0.2,
        vmax=0.2,
        colorbar_label="Baisse de la probabilité",
        columns=2,
    )
    colorbar_axes = [ax for ax in figure.axes if ax.get_ylabel() == "Baisse de la probabilité"]
    assert len(colorbar_axes) == 1
    assert colorbar_axes[0].get_ylim() == pytest.approx((-0.2, 0.2))
    with pytest.raises(explain.ExplainError):
        explain.plot_heatmaps(images, maps[:2])


# ----------------------------------------------------------------------------- « je ne sais pas »


PROBABILITIES = np.array(
    [
        [0.9, 0.1],  # sure, right
        [0.8, 0.2],  # sure, wrong
        [0.6, 0.4],  # unsure, right
        [0.45, 0.55],  # unsure, wrong
    ]
)
LABELS = np.array([0, 1, 0, 0])


def test_coverage_accuracy():
    table = explain.coverage_accuracy(PROBABILITIES, LABELS, [0.0, 0.7, 0.85, 0.95])
    np.testing.assert_allclose(table["coverage"], [1.0, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(table["accuracy"][:3], [0.5, 0.5, 1.0])
    assert np.isnan(table["accuracy"][3])
    assert table["answered"].tolist() == [4, 2, 1, 0]


def test_choose_threshold_is_the_smallest_that_reaches_the_target():
    assert explain.choose_threshold(PROBABILITIES, LABELS, 1.0, thresholds=[0.5, 0.7, 0.85, 0.95]) == 0.85
    assert explain.choose_threshold(PROBABILITIES, LABELS, 0.5, thresholds=[0.5, 0.7]) == 0.5
    # unreachable: the largest threshold tried
    assert explain.choose_threshold(PROBABILITIES, np.array([1, 0, 1, 0]), 0.99, thresholds=[0.5, 0.95]) == 0.95


def test_predict_or_abstain():
    assert explain.predict_or_abstain(PROBABILITIES, ["forêt", "mer"], 0.7) == [
        "forêt",
        "forêt",
        "je ne sais pas",
        "je ne sais pas",
    ]
    assert explain.predict_or_abstain([0.2, 0.8], ["forêt", "mer"], 0.5) == ["mer"]


def test_compiled_grad_cam_gives_the_step_by_step_maps(workshop_cnn):
    """The compiled Grad-CAM (API, bench) computes exactly what grad_cam computes, for any class asked."""
    images = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    function = explain.compiled_grad_cam(workshop_cnn, 64)
    for index in (0, 2):
        expected = explain.grad_cam(workshop_cnn, images, class_index=index)
        np.testing.assert_allclose(function(images, index), expected, atol=1e-4)
    assert function(images[0], 1).shape == (64, 64)
    keras = _keras()
    from keras import layers

    dense_only = keras.Sequential([keras.Input((8, 8, 3)), layers.Flatten(), layers.Dense(2, activation="softmax")])
    with pytest.raises(explain.ExplainError, match="convolution"):
        explain.compiled_grad_cam(dense_only, 8)
