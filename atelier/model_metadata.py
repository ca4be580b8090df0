"""Le schéma des métadonnées d'un modèle (``cnn.json``) : types, nombres finis, profondeur et longueurs bornées.

Les métadonnées viennent d'un fichier ou d'un envoi (``PUT /model``) : elles sont vérifiées avant tout
chargement du réseau, donc avant tout remplacement du modèle en service.

* :func:`parse_metadata_json` lit le JSON (taille bornée ; un JSON trop imbriqué donne une erreur en
  français au lieu d'un ``RecursionError``) ;
* :func:`check_metadata` vérifie l'arbre entier (profondeur, nombre d'éléments, longueur des textes,
  nombres finis : pas de ``NaN`` ni d'``Infinity``, que le module ``json`` accepte) puis les champs connus
  avec le schéma Pydantic :class:`ModelMetadata` (la version et les classes sont des textes imprimables :
  pas de caractère de contrôle ni d'inversion de sens d'écriture comme U+202E).

Les erreurs sont des ``ValueError`` au message français (``atelier.model_io`` en fait des
``ModelFileError``).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

#: Largest metadata file, in bytes (a workshop model's: ≈ 1–5 kB with its golden labels).
MAX_METADATA_BYTES = 1024 * 1024
#: Deepest nesting of objects and lists (a workshop model's: 4, the repository's golden labels).
MAX_DEPTH = 8
#: Most items in one object or list.
MAX_ITEMS = 1000
#: Longest text value or key, in characters.
MAX_TEXT = 4000
#: Longest version label or class name, in characters.
MAX_LABEL = 100


def _printable(value: str) -> str:
    # str.isprintable refuses control characters and invisible formatting ones (Unicode Cc, Cf: U+202E…).
    if not value or not value.isprintable() or value.strip() != value:
        raise ValueError(
            "un texte non vide fait de caractères imprimables est attendu (pas de caractère de contrôle ni "
            "d'inversion du sens d'écriture, pas d'espace au début ni à la fin)"
        )
    return value


Label = Annotated[str, Field(max_length=MAX_LABEL), AfterValidator(_printable)]


def _distinct(classes: list[str]) -> list[str]:
    if len(set(classes)) != len(classes):
        raise ValueError("les noms des classes doivent être distincts")
    return classes


class ModelMetadata(BaseModel):
    """Les champs connus des métadonnées ; les autres (``repository``, ``transfer``…) sont gardés tels quels."""

    model_config = ConfigDict(extra="allow", strict=True)

    version: Label = Field(description="L'étiquette de version donnée à l'enregistrement (pas une identité).")
    classes: Annotated[list[Label], Field(min_length=2, max_length=MAX_ITEMS), AfterValidator(_distinct)]
    image_size: int = Field(ge=8, le=1024)
    format: Label | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    created: str | None = Field(default=None, max_length=64)
    keras_version: Label | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


_MESSAGES = {
    "missing": "champ manquant",
    "string_type": "un texte est attendu",
    "int_type": "un entier est attendu",
    "list_type": "une liste est attendue",
    "dict_type": "un objet JSON est attendu",
    "too_short": "trop peu d'éléments",
    "too_long": "trop long",
    "string_too_long": "texte trop long",
    "greater_than_equal": "trop petit",
    "less_than_equal": "trop grand",
    "string_pattern_mismatch": "format inattendu (64 chiffres hexadécimaux)",
}

_EXPECTED = {
    "version": "une étiquette non vide (texte imprimable, 100 caractères au plus)",
    "classes": "une liste d'au moins deux noms distincts",
    "image_size": "un entier entre 8 et 1024",
}


def parse_metadata_json(data: bytes | str, *, source: str) -> Any:
    """Le JSON *data* lu, ou ``ValueError`` en français (illisible, trop gros, trop imbriqué)."""
    if len(data) > MAX_METADATA_BYTES:
        raise ValueError(f"{source} : métadonnées trop volumineuses (au plus {MAX_METADATA_BYTES // 1024} kio).")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(
            f"{source} : JSON trop imbriqué (au plus {MAX_DEPTH} niveaux d'objets ou de listes)."
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source} : métadonnées illisibles, du JSON est attendu ({exc}).") from None


def _check_tree(value: Any, source: str) -> None:
    """Walk the JSON tree without recursion: depth, sizes, finite numbers, text keys."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        at = f" (dans « {where} »)" if where else ""
        if isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"{source} : nombre non fini ({node}){at} ; seuls des nombres finis sont acceptés.")
        if isinstance(node, str) and len(node) > MAX_TEXT:
            raise ValueError(f"{source} : texte de plus de {MAX_TEXT} caractères{at}.")
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise ValueError(f"{source} : JSON trop imbriqué (au plus {MAX_DEPTH} niveaux){at}.")
            if len(node) > MAX_ITEMS:
                raise ValueError(f"{source} : plus de {MAX_ITEMS} éléments{at}.")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str) and len(key) > MAX_TEXT:
                    raise ValueError(f"{source} : nom de champ de plus de {MAX_TEXT} caractères{at}.")
                stack.append((child, depth + 1, f"{where}.{key}" if where else str(key)))
        elif not (node is None or isinstance(node, (bool, int, float, str))):
            raise ValueError(f"{source} : valeur de type inattendu ({type(node).__name__}){at}.")


def check_metadata(metadata: Any, *, source: str = "métadonnées") -> dict[str, Any]:
    """Vérifie *metadata* (arbre puis schéma) et le renvoie tel quel ; ``ValueError`` en français sinon."""
    if not isinstance(metadata, dict):
        raise ValueError(f"{source} : un objet JSON est attendu.")
    _check_tree(metadata, source)
    try:
        ModelMetadata.model_validate(metadata)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            reason = _MESSAGES.get(error["type"]) or str(error.get("ctx", {}).get("error", "valeur invalide"))
            expected = _EXPECTED.get(field)
            problems.append(f"« {field} » : {reason}" + (f" ({expected} est attendu)" if expected else ""))
        raise ValueError(f"{source} : " + " ; ".join(dict.fromkeys(problems)) + ".") from None
    return metadata
