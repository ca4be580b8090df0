"""Shared pytest fixtures: a small saved model and image bytes in every colour mode."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier.labels import CLASSES


def load_tool(name: str):
    """The script ``tools/<name>.py`` as a module (registered in ``sys.modules``: dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    """Bytes of ``image`` saved in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def repeated_scans_jpeg(side: int, scans: int) -> bytes:
    """A progressive JPEG of a flat ``side`` × ``side`` image whose smallest scan (an empty refinement pass) is
    repeated until the file has ``scans`` scans: a few KiB, but each scan is a pass over every block (the
    « progressive JPEG » denial of service). Pillow writes libjpeg's usual ten scans."""
    data = encode(Image.new("RGB", (side, side), (120, 120, 120)), progressive=True)
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    bodies = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data) - 2], strict=True)]
    if scans < len(bodies):
        raise ValueError(f"At least {len(bodies)} scans.")
    return data[: starts[0]] + b"".join(bodies) + min(bodies[1:], key=len) * (scans - len(bodies)) + b"\xff\xd9"


def sequential_repeated_scans_jpeg(side: int, scans: int) -> bytes:
    """A sequential (baseline) JPEG of a flat image whose only scans are ``scans`` empty passes over one colour
    component: Pillow does not call it progressive, yet libjpeg makes one pass over the blocks per scan."""
    data = encode(Image.new("RGB", (side, side), (120, 120, 120)))
    empty_scan = bytes.fromhex("ffda 0008 01 01 00 00 3f 00")  # component 1, tables 0/0, Ss=0, Se=63, Ah=Al=0
    return data[: data.index(b"\xff\xda")] + empty_scan * scans + b"\xff\xd9"


def mpo(first: bytes, second: Image.Image) -> bytes:
    """An MPO (several JPEG frames, as some cameras write) whose first frame is the JPEG ``first``."""
    frame, image = io.BytesIO(), Image.open(io.BytesIO(first))
    image.save(frame, "MPO", save_all=True, append_images=[second], progressive=bool(image.info.get("progressive")))
    data = frame.getvalue()
    # Replace the first frame's scans by those of ``first``, then fix the second frame's offset in the MP index.
    start, end = data.index(b"\xff\xda"), data.index(b"\xff\xd9") + 2
    body = data[:start] + first[first.index(b"\xff\xda") :] + data[end:]
    entries = Image.open(io.BytesIO(data))._getmp()[0xB002]  # type: ignore[attr-defined]
    old = entries[1]["DataOffset"]
    for order in ("big", "little"):
        if old.to_bytes(4, order) in body[:start]:
            new = old + len(body) - len(data)
            return body.replace(old.to_bytes(4, order), new.to_bytes(4, order), 1)
    raise AssertionError("MP index not found")


def textured_rgb(size: int = 64, seed: int = 0, colour=(40, 120, 60)) -> Image.Image:
    """A noisy RGB image (not uniform, so that JPEG and resizing do real work)."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """An untrained workshop CNN saved with its metadata: ``(path, metadata)``.

    Untrained weights are enough for the API, CLI and server plumbing; tests that need a model that
    has learnt something train one themselves.
    """
    import keras

    from atelier.model import build_cnn
    from atelier.model_io import save_model

    keras.utils.set_random_seed(0)
    model = build_cnn(CLASSES, 64, augment=False)
    path = tmp_path_factory.mktemp("modele") / "cnn.keras"
    metadata = save_model(model, path, classes=CLASSES, data_source="test", metrics={})
    return path, metadata


@pytest.fixture
def jpeg_bytes() -> bytes:
    """A 64×64 RGB JPEG."""
    return encode(textured_rgb())


#: Typical colours of the four classes, for small synthetic test datasets.
CLASS_COLOURS = {"forêt": (40, 110, 50), "mer": (20, 50, 120), "désert": (205, 170, 110), "nuageux": (235, 235, 240)}


def make_dataset(root, per_class: int = 10, folders=None, size: int = 64):
    """Write a small folder-per-class dataset of textured JPEGs (``folders`` maps folder name → class colour)."""
    folders = folders or CLASS_COLOURS
    for k, (folder, colour) in enumerate(folders.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / folder / f"{i:03d}.jpg").write_bytes(encode(textured_rgb(size, seed=1000 * k + i, colour=colour)))
    return root


@pytest.fixture
def small_dataset(tmp_path):
    """40 images, 10 per class, with the workshop's French folder names."""
    return make_dataset(tmp_path / "donnees")
