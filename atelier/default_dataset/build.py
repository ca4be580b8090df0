"""Construire le jeu de données par défaut dans le cache (ou dans un dossier donné) et le réutiliser.

Le dossier contient un sous-dossier par classe, ``PROVENANCE.md`` (d'où viennent les images, rempli à partir
de ``PROVENANCE.template.md``) et ``MANIFEST.json`` (paramètres, empreinte du générateur et SHA-256 de chaque
fichier), écrit en dernier : un dossier sans manifeste valide est une construction interrompue, jamais
réutilisée.

The cache key is the explicit :data:`DATASET_VERSION` (in the folder name and the manifest) plus
:func:`generator_fingerprint`, a hash over every file of this subpackage and the EuroSAT manifest: editing
any part of the generator (or the tiles it reads) rebuilds the dataset instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path
from string import Template

import numpy as np
from PIL import Image

from ..labels import CLASSES
from ..model_io import file_sha256
from ..paths import cache_dir
from .areas import BOXES, CROP_MAX, CROP_MIN, FOREIGN_MAX, IMAGE_SIZE, PURITY_MIN, SOURCE_CLASSES, load_mosaic
from .clouds import CLOUD_COVER_MIN, CLOUD_KINDS
from .desert import DESERT_KINDS
from .eurosat import REAL_CLASSES, workshop_range
from .eurosat import manifest_path as eurosat_manifest_path
from .images import DEFAULT_SEED, make_image, real_tile_number

#: Version of the dataset; bump it whenever the output changes on purpose (it names the cache folder).
DATASET_VERSION = 2
#: ASCII prefixes of the file names (ASCII file names travel better across OSes and zip tools).
FILE_PREFIXES: dict[str, str] = dict(zip(CLASSES, ("foret", "mer", "desert", "nuageux"), strict=True))
JPEG_QUALITY = 90
MANIFEST_NAME = "MANIFEST.json"
PROVENANCE_NAME = "PROVENANCE.md"
DEFAULT_PER_CLASS = 400

_PACKAGE_DIR = Path(__file__).resolve().parent
_TEMPLATE_NAME = "PROVENANCE.template.md"


# ------------------------------------------------------------------------------------------ cache, build
def _check_parameters(per_class: int, seed: int) -> None:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)):
        raise ValueError(f"Le nombre d'images par classe doit être un entier (reçu : {per_class!r}).")
    if per_class < 1:
        raise ValueError(f"Le nombre d'images par classe doit être au moins 1 (reçu : {per_class}).")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"La graine (seed) doit être un entier positif ou nul (reçu : {seed!r}).")


def default_data_dir(per_class: int = DEFAULT_PER_CLASS, seed: int = DEFAULT_SEED) -> Path:
    """Renvoie le dossier du jeu de données par défaut dans le cache, sans le construire.

    Exemple : ``~/.cache/atelier-cnn/donnees-v2-400-s0`` (version du générateur, images par classe, graine).
    Le dossier de cache est celui de :func:`atelier.paths.cache_dir` (``ATELIER_CACHE`` s'il est défini).
    """
    _check_parameters(per_class, seed)
    return cache_dir() / f"donnees-v{DATASET_VERSION}-{int(per_class)}-s{int(seed)}"


def _generator_files() -> list[tuple[str, Path]]:
    """(name, path) of every file of this subpackage (sources, template) and of the EuroSAT manifest."""
    own = sorted(
        p for p in _PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    return [(p.relative_to(_PACKAGE_DIR).as_posix(), p) for p in own] + [
        ("eurosat/manifest.csv", eurosat_manifest_path())
    ]


@lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """Short sha256 over every file of the generator (name and content, line endings normalised).

    Stored in the manifest: a cache built by another revision of the code is rebuilt, not reused, even if
    DATASET_VERSION was not bumped. A file added to or removed from the subpackage changes it too; the
    EuroSAT manifest holds the MD5 of every tile, each checked when it is read.
    """
    digest = hashlib.sha256()
    for name, path in _generator_files():
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()[:16]


def _expected_files(per_class: int) -> list[str]:
    return [f"{label}/{FILE_PREFIXES[label]}_{i:04d}.jpg" for label in CLASSES for i in range(per_class)]


def _manifest_is_valid(root: Path, per_class: int, seed: int) -> bool:
    """True if ``root`` holds a complete build with these parameters whose files all match their sha256."""
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        if (
            manifest.get("version") != DATASET_VERSION
            or manifest.get("per_class") != per_class
            or manifest.get("seed") != seed
            or manifest.get("generator") != generator_fingerprint()
        ):
            return False
        files = manifest["files"]
        if sorted(files) != sorted([*_expected_files(per_class), PROVENANCE_NAME]):
            return False
        for relative, digest in files.items():
            if file_sha256(root / relative) != digest:
                return False
        # No stray image added by hand in a class folder.
        on_disk = sum(1 for label in CLASSES for _ in (root / label).iterdir())
        return on_disk == len(CLASSES) * per_class
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _looks_like_our_dataset(root: Path) -> bool:
    """True if every entry of ``root`` is one this builder writes (so replacing it destroys nothing else)."""
    allowed = set(CLASSES) | {MANIFEST_NAME, PROVENANCE_NAME}
    try:
        names = {unicodedata.normalize("NFC", p.name) for p in root.iterdir()}
    except OSError:
        return False
    return names <= allowed


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100)} %"  # French typography: a space before %


def _kinds_text(kinds: dict[str, float]) -> str:
    return ", ".join(f"`{name}` ({_percent(p)})" for name, p in kinds.items())


def _provenance_text(per_class: int, seed: int) -> str:
    command = "python -m atelier data"
    if per_class != DEFAULT_PER_CLASS:
        command += f" --per-class {per_class}"
    seed_note = (
        ""
        if seed == DEFAULT_SEED
        else f" (graine {seed} : `build_default_dataset(per_class={per_class}, seed={seed})` en Python)"
    )
    n_real = sum(real_tile_number(i) is not None for i in range(per_class))
    boxes = [
        f"| {label} | {box.name} | {box.lon0}° → {box.lon1}° | {box.lat0}° → {box.lat1}° |"
        for label in SOURCE_CLASSES
        for box in BOXES[label]
    ]
    template = Template((_PACKAGE_DIR / _TEMPLATE_NAME).read_text(encoding="utf-8"))
    return template.substitute(
        command=command,
        seed_note=seed_note,
        per_class=per_class,
        seed=seed,
        version=DATASET_VERSION,
        fingerprint=generator_fingerprint(),
        total=len(CLASSES) * per_class,
        image_size=IMAGE_SIZE,
        jpeg_quality=JPEG_QUALITY,
        class_list=", ".join(f"`{c}`" for c in CLASSES),
        manifest_name=MANIFEST_NAME,
        real_forest=n_real,
        real_sea=n_real,
        forest_tiles=min(n_real, len(workshop_range(REAL_CLASSES["forêt"]))),
        sea_tiles=min(n_real, len(workshop_range(REAL_CLASSES["mer"]))),
        bm_forest=per_class - n_real,
        bm_sea=per_class - n_real,
        crop_min=CROP_MIN,
        crop_max=CROP_MAX,
        purity_min=_percent(PURITY_MIN),
        foreign_max=_percent(FOREIGN_MAX),
        boxes_table="\n".join(boxes),
        desert_kinds=_kinds_text(DESERT_KINDS),
        cloud_kinds=_kinds_text(CLOUD_KINDS),
        cloud_cover_min=_percent(CLOUD_COVER_MIN),
    )


def _write_dataset(root: Path, per_class: int, seed: int) -> None:
    mosaic = load_mosaic()
    files: dict[str, str] = {}
    for label in CLASSES:
        folder = root / label
        folder.mkdir()
        for index in range(per_class):
            relative = f"{label}/{FILE_PREFIXES[label]}_{index:04d}.jpg"
            buffer = io.BytesIO()
            Image.fromarray(make_image(label, index, seed, mosaic), "RGB").save(
                buffer, format="JPEG", quality=JPEG_QUALITY
            )
            data = buffer.getvalue()
            (root / relative).write_bytes(data)
            files[relative] = hashlib.sha256(data).hexdigest()
    provenance = _provenance_text(per_class, seed).encode("utf-8")
    (root / PROVENANCE_NAME).write_bytes(provenance)
    files[PROVENANCE_NAME] = hashlib.sha256(provenance).hexdigest()
    manifest = {
        "version": DATASET_VERSION,
        "per_class": per_class,
        "seed": seed,
        "classes": list(CLASSES),
        "generator": generator_fingerprint(),
        "image_size": IMAGE_SIZE,
        "files": dict(sorted(files.items())),
    }
    # Written last: a folder without a valid manifest is an incomplete build and is never reused.
    text = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    (root / MANIFEST_NAME).write_bytes(text.encode("utf-8"))


def build_default_dataset(
    out_dir: str | os.PathLike | None = None, per_class: int = DEFAULT_PER_CLASS, seed: int = DEFAULT_SEED
) -> Path:
    """Construit le jeu de données par défaut (ou réutilise celui du cache) et renvoie son dossier racine.

    - ``out_dir`` : dossier du jeu de données (il contiendra ``forêt/``, ``mer/``, ``désert/``,
      ``nuageux/``) ; par défaut :func:`default_data_dir` (dossier de cache de l'utilisateur).
    - ``per_class`` : nombre d'images par classe (au moins 1 ; 400 par défaut).
    - ``seed`` : graine ; mêmes paramètres → mêmes fichiers, octet pour octet.

    Si le dossier contient déjà une construction complète et intacte avec les mêmes paramètres, il est
    renvoyé tout de suite. Sinon le jeu de données est écrit dans un dossier temporaire, puis renommé
    d'un coup : une construction interrompue n'est jamais réutilisée.
    """
    _check_parameters(per_class, seed)
    per_class, seed = int(per_class), int(seed)
    root = Path(out_dir).expanduser() if out_dir is not None else default_data_dir(per_class, seed)
    root = root.absolute()
    if root.exists():
        if _manifest_is_valid(root, per_class, seed):
            return root
        if not root.is_dir():
            raise FileExistsError(f"{root} existe déjà et n'est pas un dossier : choisissez un autre chemin.")
        if any(root.iterdir()) and not _looks_like_our_dataset(root):
            raise FileExistsError(
                f"Le dossier {root} n'est pas vide et ne contient pas un jeu de données de l'atelier : "
                "il ne sera pas écrasé. Choisissez un dossier vide ou inexistant."
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{root.name}.en-cours-", dir=root.parent))
    try:
        temporary.chmod(0o755)  # mkdtemp makes it private (0o700); the dataset itself is not secret
        _write_dataset(temporary, per_class, seed)
        if root.exists():  # an incomplete or outdated build of ours: move it aside, then delete it
            stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.ancien-", dir=root.parent))
            os.replace(root, stale / "ancien")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(temporary, root)
        except OSError:
            # Another process finished the same build first: keep its (identical) result.
            if _manifest_is_valid(root, per_class, seed):
                return root
            raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return root
