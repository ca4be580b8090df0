"""Les classes de l'atelier et la correspondance avec les noms de dossiers des jeux de données."""

from __future__ import annotations

import unicodedata

#: The workshop's classes, in the canonical order used by every model of the workshop.
CLASSES: tuple[str, ...] = ("forêt", "mer", "désert", "nuageux")

# Folder names seen in real datasets, folded (lower case, no accents, spaces/dashes → "_").
# The Kaggle "Satellite Image Classification" set uses cloudy / desert / green_area / water; EuroSAT uses
# Forest and SeaLake for the two of its ten classes that are workshop classes.
_ALIASES: dict[str, str] = {
    "foret": "forêt",
    "forest": "forêt",
    "green_area": "forêt",
    "mer": "mer",
    "sea": "mer",
    "sealake": "mer",
    "sea_lake": "mer",
    "ocean": "mer",
    "lac": "mer",
    "lake": "mer",
    "water": "mer",
    "eau": "mer",
    "desert": "désert",
    "nuageux": "nuageux",
    "nuage": "nuageux",
    "nuages": "nuageux",
    "cloudy": "nuageux",
    "cloud": "nuageux",
    "clouds": "nuageux",
}


def fold(name: str) -> str:
    """Return *name* in lower case, without accents, with spaces and dashes as underscores."""
    decomposed = unicodedata.normalize("NFKD", name.strip().lower())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return plain.replace(" ", "_").replace("-", "_")


def canonical_label(folder_name: str) -> str:
    """Donne le nom de classe de l'atelier pour un nom de dossier.

    Les noms connus (``cloudy``, ``desert``, ``green_area``, ``water``, ``Forest``, ``SeaLake``, ``foret``,
    ``forêt``…) deviennent ``forêt``, ``mer``, ``désert`` ou ``nuageux`` ; un nom inconnu est renvoyé tel
    quel (en Unicode NFC) : :func:`is_workshop_class` dit s'il s'agit d'une classe de l'atelier.
    """
    return _ALIASES.get(fold(folder_name), unicodedata.normalize("NFC", folder_name.strip()))


def is_workshop_class(label: str) -> bool:
    """Dit si ``label`` (un résultat de :func:`canonical_label`) est une des classes de l'atelier."""
    return label in CLASSES


def accepted_names() -> str:
    """Les noms de dossiers acceptés pour chaque classe, en français (pour les messages d'erreur)."""
    parts = []
    for name in CLASSES:
        aliases = sorted(alias for alias, target in _ALIASES.items() if target == name and alias != name)
        parts.append(f"{name} ({', '.join(aliases)})")
    return " ; ".join(parts) + " — majuscules et accents au choix"


def order_labels(labels) -> list[str]:
    """Sort labels: the workshop's classes first in canonical order, then any other label alphabetically."""
    unique = set(labels)
    known = [c for c in CLASSES if c in unique]
    return known + sorted(unique - set(CLASSES))
