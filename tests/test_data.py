"""Folder-per-class loading: label mapping, decoding, unreadable files, duplicates, leak-free split."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from atelier.data import DatasetError, DatasetWarning, load_dataset, resolve_data_dir, split_dataset, to_tf_dataset
from atelier.labels import CLASSES, canonical_label, order_labels
from tests.conftest import encode, make_dataset, textured_rgb

KAGGLE = {"green_area": (40, 120, 50), "water": (20, 40, 120), "desert": (200, 170, 110), "cloudy": (230, 230, 235)}


def write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def kaggle_like(tmp_path):
    """A small dataset with the Kaggle folder names, mixed sizes and every awkward colour mode."""
    root = tmp_path / "kaggle"
    for k, (name, colour) in enumerate(KAGGLE.items()):
        for i in range(12):
            size = 256 if i % 2 else 64
            write(root / name / f"{name}_{i}.jpg", encode(textured_rgb(size, seed=100 * k + i, colour=colour)))
        rgb = textured_rgb(64, seed=999 + k, colour=colour)
        write(root / name / "cmyk.jpg", encode(rgb.convert("CMYK"), "JPEG", quality=95))
        write(root / name / "gris.png", encode(rgb.convert("L"), "PNG"))
        write(root / name / "palette.png", encode(rgb.convert("P"), "PNG"))
        write(root / name / "rgba.png", encode(rgb.convert("RGBA"), "PNG"))
        other = textured_rgb(64, seed=555 + k, colour=colour).convert("L")
        write(root / name / "seize_bits.png", encode(Image.fromarray(np.asarray(other, np.uint16) * 257), "PNG"))
    return root


def test_label_mapping():
    assert [canonical_label(n) for n in ("cloudy", "desert", "green_area", "water")] == [
        "nuageux",
        "désert",
        "forêt",
        "mer",
    ]
    assert canonical_label("Forêt") == canonical_label("foret") == canonical_label("FORET") == "forêt"
    assert canonical_label("De\u0301sert") == "désert", "macOS decomposed accents (NFD) are recognised"
    assert canonical_label("Green-Area") == "forêt"
    assert canonical_label("urbain") == "urbain"
    assert order_labels(["urbain", "mer", "forêt", "agricole"]) == ["forêt", "mer", "agricole", "urbain"]
    # EuroSAT folder names of the two classes it shares with the workshop.
    assert canonical_label("Forest") == "forêt" and canonical_label("SeaLake") == "mer"


def test_eurosat_folders_load(tmp_path):
    root = make_dataset(tmp_path / "eurosat", per_class=3, folders={"Forest": (40, 90, 60), "SeaLake": (20, 40, 110)})
    dataset = load_dataset(root)
    assert dataset.classes == ["forêt", "mer"] and dataset.counts() == {"forêt": 3, "mer": 3}


def test_other_classes_are_a_french_error_listing_the_accepted_names(tmp_path):
    root = make_dataset(tmp_path / "eurosat", per_class=2, folders={"Forest": (40, 90, 60), "Highway": (120, 120, 120)})
    with pytest.raises(DatasetError) as error:
        load_dataset(root)
    message = str(error.value)
    assert "inconnu" in message and "Highway" in message
    for accepted in ("forêt", "green_area", "forest", "mer", "sealake", "water", "désert", "nuageux", "cloudy"):
        assert accepted in message, accepted


def test_kaggle_names_and_modes_load(kaggle_like):
    dataset = load_dataset(kaggle_like)
    assert dataset.classes == list(CLASSES)
    assert dataset.counts() == {name: 17 for name in CLASSES}
    assert dataset.images.shape == (68, 64, 64, 3) and dataset.images.dtype == np.uint8
    # The CMYK file of each class keeps its class colour instead of turning black.
    for path, image in zip(dataset.paths, dataset.images, strict=True):
        if path.name == "cmyk.jpg":
            expected = KAGGLE[path.parent.name]
            assert np.abs(image.reshape(-1, 3).mean(0) - expected).max() < 25, path
    forest = dataset.images[dataset.labels == 0].reshape(-1, 3).mean(0)
    assert forest[1] > forest[0] and forest[1] > forest[2]


def test_french_names_with_and_without_accents_are_merged(tmp_path):
    for folder, seed in (("forêt", 1), ("foret", 2), ("mer", 3)):
        for i in range(3):
            write(tmp_path / folder / f"{i}.png", encode(textured_rgb(seed=10 * seed + i), "PNG"))
    dataset = load_dataset(tmp_path)
    assert dataset.counts() == {"forêt": 6, "mer": 3}


def test_unreadable_files_are_skipped_with_a_french_warning(kaggle_like):
    write(kaggle_like / "water" / "abime.jpg", encode(textured_rgb(128), "JPEG")[:500])
    write(kaggle_like / "water" / "notes.txt", b"pas une image")
    write(kaggle_like / "water" / ".DS_Store", b"\x00\x01")
    with pytest.warns(DatasetWarning, match=r"2 fichier\(s\) illisible\(s\).*abime\.jpg.*notes\.txt"):
        dataset = load_dataset(kaggle_like)
    assert {p.name for p, _ in dataset.skipped} == {"abime.jpg", "notes.txt"}
    assert dataset.counts()["mer"] == 17


def test_exact_duplicates_are_removed(kaggle_like):
    original = (kaggle_like / "water" / "water_0.jpg").read_bytes()
    write(kaggle_like / "water" / "copie.jpg", original)
    write(kaggle_like / "water" / "sous_dossier" / "copie2.jpg", original)
    with pytest.warns(DatasetWarning, match="doublon"):
        dataset = load_dataset(kaggle_like)
    assert dataset.counts()["mer"] == 17
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in dataset.paths]
    assert len(digests) == len(set(digests))


def test_images_identical_once_decoded_are_duplicates(kaggle_like):
    grey = Image.open(kaggle_like / "water" / "gris.png")
    write(kaggle_like / "water" / "gris_16_bits.png", encode(Image.fromarray(np.asarray(grey, np.uint16) * 257), "PNG"))
    write(kaggle_like / "water" / "gris.bmp", encode(grey, "BMP"))
    with pytest.warns(DatasetWarning, match=r"2 doublon\(s\)"):
        dataset = load_dataset(kaggle_like)
    assert dataset.counts()["mer"] == 17


def test_an_image_in_two_classes_is_removed_everywhere(kaggle_like):
    write(kaggle_like / "desert" / "ambigu.jpg", (kaggle_like / "water" / "water_1.jpg").read_bytes())
    with pytest.warns(DatasetWarning, match="deux classes"):
        dataset = load_dataset(kaggle_like)
    assert dataset.counts()["mer"] == 16 and dataset.counts()["désert"] == 17


def test_split_is_stratified_deterministic_and_leak_free(kaggle_like):
    dataset = load_dataset(kaggle_like)
    splits = split_dataset(dataset, seed=3)
    parts = [splits.train, splits.validation, splits.test]
    assert sum(len(p) for p in parts) == len(dataset)
    hashes = [{hashlib.sha256(img.tobytes()).hexdigest() for img in p.images} for p in parts]
    assert not (hashes[0] & hashes[1] or hashes[0] & hashes[2] or hashes[1] & hashes[2])
    for part in (splits.validation, splits.test):
        assert all(n >= 2 for n in part.counts().values()), "every class is in every split"
    # Same split whatever the file listing order: content decides, not names.
    again = split_dataset(dataset.subset(np.arange(len(dataset))[::-1]), seed=3)
    assert sorted(map(str, again.test.paths)) == sorted(map(str, splits.test.paths))
    other = split_dataset(dataset, seed=4)
    assert sorted(map(str, other.test.paths)) != sorted(map(str, splits.test.paths))


def test_tf_dataset_batches(kaggle_like):
    dataset = load_dataset(kaggle_like)
    images, labels = next(iter(to_tf_dataset(dataset, batch_size=8, shuffle=True)))
    assert tuple(images.shape) == (8, 64, 64, 3) and images.dtype.name == "float32"
    assert float(images.numpy().max()) > 1.0, "pixels stay in 0–255: the model rescales them"
    assert tuple(labels.shape) == (8,)


@pytest.mark.parametrize(
    "layout,message",
    [
        ({}, "Aucun sous-dossier"),
        ({"mer": 3}, "Une seule classe"),
        ({"mer": 3, "désert": 0}, "sans aucune image"),
    ],
)
def test_clear_french_errors(tmp_path, layout, message):
    for folder, n in layout.items():
        (tmp_path / folder).mkdir()
        for i in range(n):
            write(tmp_path / folder / f"{i}.png", encode(textured_rgb(seed=i), "PNG"))
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="introuvable"):
        load_dataset(tmp_path / "nulle_part")
    file_path = tmp_path / "fichier.txt"
    file_path.write_text("x")
    with pytest.raises(DatasetError, match="n'est pas un dossier"):
        load_dataset(file_path)


def test_classes_imposed_by_a_model(kaggle_like, tmp_path):
    dataset = load_dataset(kaggle_like, classes=["mer", "forêt", "désert", "nuageux"])
    assert dataset.classes == ["mer", "forêt", "désert", "nuageux"]
    assert dataset.counts()["mer"] == 17
    (kaggle_like / "urbain").mkdir()
    write(kaggle_like / "urbain" / "a.png", encode(textured_rgb(), "PNG"))
    with pytest.raises(DatasetError, match=r"inconnues du modèle.*urbain"):
        load_dataset(kaggle_like, classes=list(CLASSES))


def test_data_dir_resolution(tmp_path, monkeypatch):
    assert resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
