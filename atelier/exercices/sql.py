"""Vérifier une requête SQL par son résultat (chapitre 5) : l'exécuter sans risque, comparer ses lignes.

Pour les auteurs d'exercices ::

    rows = run_query(connection, counts_query, what="counts_query")
    expect(rows == expected, "…")

La requête de l'apprenant est exécutée telle quelle sur la connexion du notebook (ouverte en lecture seule
au chapitre 5) ; une erreur SQLite devient :class:`~atelier.exercices.base.Wrong` avec son explication.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .base import Wrong


def run_query(connection: Any, query: Any, params: Sequence[Any] = (), *, what: str = "votre requête") -> list[tuple]:
    """Toutes les lignes de ``query`` (des tuples), ou :class:`Wrong` avec un message en français."""
    if not isinstance(query, str):
        raise Wrong(
            f"{what} doit être une chaîne de caractères contenant la requête SQL, pas un {type(query).__name__}."
        )
    if not query.strip():
        raise Wrong(f"{what} est vide : écrivez la requête SQL entre les guillemets.")
    try:
        return [tuple(row) for row in connection.execute(query, params).fetchall()]
    except sqlite3.ProgrammingError as error:
        if "one statement" in str(error):
            raise Wrong(f"{what} contient plusieurs instructions SQL : une seule requête SELECT suffit.") from None
        raise Wrong(f"SQLite refuse {what} : {error}.") from None
    except sqlite3.Error as error:
        raise Wrong(
            f"SQLite refuse {what} : « {error} ». Vérifiez l'orthographe des mots-clés, des colonnes "
            "(id, created, label, probabilities, model_version, image_sha256, filename, duration_ms) et "
            "de la table predictions."
        ) from None


def same_rows_in_any_order(rows: Sequence[tuple], expected: Sequence[tuple]) -> bool:
    """Vrai si ``rows`` et ``expected`` contiennent les mêmes lignes, quel que soit leur ordre."""
    return sorted(map(repr, rows)) == sorted(map(repr, expected))
