"""Refait les 12 images d'exemple ``images/exemples/`` à partir du jeu de données par défaut.

Trois images par classe, copiées octet pour octet du jeu par défaut (``python -m atelier data``) :

- ``foret_1``, ``foret_2``, ``mer_1``, ``mer_2`` : de vraies tuiles Sentinel-2 (EuroSAT) ;
- ``foret_3``, ``mer_3`` : des tuiles Blue Marble (environ 7 km par pixel) ;
- ``desert_1`` à ``desert_3`` : des déserts procéduraux ; ``nuageux_1`` à ``nuageux_3`` : des nuages
  synthétiques sur un sol réel.

Les notebooks 4 et 5, la page web et les étiquettes témoins du dépôt de modèles utilisent ces fichiers :
gardez leurs noms. Usage : python tools/make_examples.py [--out images/exemples]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from atelier.default_dataset import FILE_PREFIXES, build_default_dataset
from atelier.default_dataset.images import real_tile_number

ROOT = Path(__file__).resolve().parent.parent
#: Index in the default dataset of each example (class → three image numbers).
EXAMPLES: dict[str, tuple[int, int, int]] = {
    "forêt": (0, 1, 3),
    "mer": (0, 1, 3),
    "désert": (0, 1, 2),
    "nuageux": (0, 1, 2),
}


def make_examples(out: Path) -> list[Path]:
    """Copie les images choisies du jeu par défaut dans ``out`` ; renvoie les fichiers écrits."""
    dataset = build_default_dataset()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for label, numbers in EXAMPLES.items():
        prefix = FILE_PREFIXES[label]
        for k, number in enumerate(numbers, start=1):
            target = out / f"{prefix}_{k}.jpg"
            shutil.copyfile(dataset / label / f"{prefix}_{number:04d}.jpg", target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Refaire les images d'exemple à partir du jeu par défaut.")
    parser.add_argument("--out", type=Path, default=ROOT / "images" / "exemples", help="dossier des exemples")
    args = parser.parse_args(argv)
    for path in make_examples(args.out):
        print(path)
    real = [n for label in ("forêt", "mer") for n in EXAMPLES[label] if real_tile_number(n) is not None]
    print(f"{len(real)} exemples sont de vraies tuiles Sentinel-2 (EuroSAT).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
