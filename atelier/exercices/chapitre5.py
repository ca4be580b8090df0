"""Exercices du chapitre 5 (la page web et l'historique SQLite) : ``from atelier.exercices import chapitre5 as ex``.

Les requêtes SQL sont jugées sur leur résultat, exécuté sur la base de l'apprenant
(:mod:`atelier.exercices.sql`) ; la fonction de recherche, sur des noms de fichiers piégés.
"""

from __future__ import annotations

from .base import Wrong, attempt, exercise, expect
from .sql import run_query, same_rows_in_any_order

NOTEBOOK = "05_client_web.ipynb"

# --------------------------------------------------------------------------- exercice 1 : repérer le XSS

DANGEROUS = {"B", "D"}
WHY_XSS = {
    "A": "A est sûre : textContent insère le nom comme du texte, jamais comme du HTML.",
    "C": "C n'insère aucune donnée venue de l'utilisateur : innerHTML avec une chaîne fixe, écrite par le "
    "développeur, n'exécute que ce qu'il a écrit (textContent resterait préférable).",
    "E": "E est sûre : document.title est du texte ; le navigateur n'y interprète pas de balises.",
    "F": "F est sûre : createTextNode crée un nœud de texte, comme textContent.",
    "B": "B est dangereuse : innerHTML interprète le nom comme du HTML, et <img src=x onerror=…> s'exécute.",
    "D": "D est dangereuse : insertAdjacentHTML interprète aussi son texte comme du HTML, comme innerHTML.",
}


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-1-code",
    hints=(
        "Deux questions pour chaque ligne : la donnée vient-elle de l'utilisateur ? Et la fonction qui l'insère "
        "l'interprète-t-elle comme du HTML ou comme du texte ?",
        "textContent, createTextNode et document.title traitent leur contenu comme du texte ; innerHTML et "
        "insertAdjacentHTML comme du HTML.",
        "Dangereuses : les lignes qui font passer item.filename par innerHTML ou insertAdjacentHTML.",
    ),
    success="B et D : innerHTML et insertAdjacentHTML interprètent le nom de fichier comme du HTML. Les autres "
    "insèrent du texte, ou un HTML fixe écrit par le développeur.",
)
def ex1(dangerous):
    if isinstance(dangerous, str):
        raise Wrong(
            f'dangerous vaut la chaîne {dangerous!r} : écrivez un ensemble de lettres, par exemple {{"A", "F"}}.'
        )
    expect(
        isinstance(dangerous, (set, frozenset, list, tuple)),
        f'dangerous doit être un ensemble de lettres, comme {{"A", "F"}}, pas un {type(dangerous).__name__}.',
    )
    letters = {str(letter).strip().upper() for letter in dangerous}
    unknown = sorted(letters - set(WHY_XSS))
    expect(not unknown, f"lettres inconnues {unknown} : les lignes vont de A à F.")
    false_alarms = sorted(letters - DANGEROUS)
    if false_alarms:
        raise Wrong(" ".join(WHY_XSS[letter] for letter in false_alarms))
    missed = sorted(DANGEROUS - letters)
    if missed:
        raise Wrong(f"il en manque : {' '.join(WHY_XSS[letter] for letter in missed)}")


# --------------------------------------------------------------------------- exercice 2 : compter par classe

REFERENCE_COUNTS = "SELECT label, COUNT(*) FROM predictions GROUP BY label"


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-2-code",
    hints=(
        "Il faut une ligne par classe : regroupez les lignes de predictions selon la colonne label, puis comptez "
        "les lignes de chaque groupe.",
        "SELECT label, COUNT(*) … GROUP BY label donne une ligne par classe ; ORDER BY trie, DESC dans l'ordre "
        "décroissant. On peut trier sur un alias : COUNT(*) AS n … ORDER BY n.",
        '"SELECT label, COUNT(*) AS n FROM predictions GROUP BY label ORDER BY n DESC"',
    ),
    success="une ligne (classe, nombre) par classe, la plus fréquente d'abord : le même décompte que l'API.",
)
def ex2(counts_query, connection):
    rows = run_query(connection, counts_query, what="counts_query")
    expected = run_query(connection, REFERENCE_COUNTS, what="la requête de référence")
    expect(rows, "votre requête ne renvoie aucune ligne : l'historique en contient pourtant (section 3).")
    widths = {len(row) for row in rows}
    expect(
        widths == {2},
        f"chaque ligne a {sorted(widths)} colonne(s) au lieu de 2 : sélectionnez la classe puis le nombre, "
        "SELECT label, COUNT(*) ….",
    )
    labels = {label for label, _ in expected}
    if not {row[0] for row in rows} <= labels and not {row[1] for row in rows} <= labels:
        raise Wrong(
            f"la première colonne contient {sorted({str(row[0]) for row in rows})[:4]}… au lieu des classes : "
            "regroupez par label (la classe prédite), pas par une autre colonne."
        )
    if len(rows) == 1 and len(expected) > 1:
        raise Wrong(
            f"une seule ligne, {rows[0]!r} : sans GROUP BY, COUNT(*) compte toute la table d'un coup ; "
            "regroupez par classe avec GROUP BY label."
        )
    if same_rows_in_any_order([(count, label) for label, count in rows], expected):
        raise Wrong("les colonnes sont inversées : la classe d'abord, puis le nombre (SELECT label, COUNT(*) …).")
    expect(
        same_rows_in_any_order(rows, expected),
        f"les nombres ne correspondent pas à l'historique : attendu {sorted(expected)}, obtenu {sorted(rows)}. "
        "Comptez toutes les lignes de chaque classe, COUNT(*), sans filtre WHERE.",
    )
    counts = [count for _, count in rows]
    if counts == sorted(counts) and counts != sorted(counts, reverse=True):
        raise Wrong("ordre croissant : la plus fréquente doit venir en premier ; ajoutez DESC après ORDER BY ….")
    expect(
        counts == sorted(counts, reverse=True),
        f"les lignes ne sont pas triées par nombre décroissant ({counts}) : sans ORDER BY, SQLite les renvoie "
        "dans l'ordre qui l'arrange. Ajoutez ORDER BY le nombre, DESC.",
    )


# --------------------------------------------------------------------------- exercice 3 : la requête paramétrée

REFERENCE_BY_NAME = "SELECT id FROM predictions WHERE filename = ?"
TRAPS = ("x' OR '1'='1", "l'étang.jpg", "'; DROP TABLE predictions; --")


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-3-code",
    hints=(
        "Le problème : le nom est collé dans le texte de la requête, donc une apostrophe en change le sens. "
        "Il faut transmettre la valeur à part, comme une donnée.",
        "Dans la requête, un ? marque la place de la valeur ; la valeur va dans le deuxième argument de "
        "connection.execute, un tuple.",
        'connection.execute("SELECT id FROM predictions WHERE filename = ?", (name,)), puis une liste des '
        "numéros : [row[0] for row in …].",
    ),
    success="requête paramétrée : les noms piégés (apostrophe, x' OR '1'='1) restent des noms, jamais du SQL.",
)
def ex3(find_by_filename, connection):
    import sqlite3

    bindings = (
        sqlite3.ProgrammingError,
        "binding",
        "les paramètres vont dans un tuple : (name,), avec la virgule. Une chaîne seule est vue comme une suite "
        "de caractères, un paramètre par lettre.",
    )
    syntax = (
        sqlite3.OperationalError,
        "",
        "un nom avec une apostrophe casse encore la requête (erreur de syntaxe SQL) : la valeur est toujours "
        "collée dans le texte. Écrivez ? dans la requête et passez (name,) à part.",
    )
    for name in ("mer_2.jpg", "<img src=x onerror=alert(1)>.jpg"):
        expected = [row[0] for row in run_query(connection, REFERENCE_BY_NAME, (name,))]
        result = attempt(find_by_filename, name, what=f"find_by_filename({name!r})", known_errors=[bindings, syntax])
        expect(result is not None, "find_by_filename ne renvoie rien : il manque « return ».")
        if isinstance(result, sqlite3.Cursor):
            raise Wrong(
                "find_by_filename renvoie le curseur de SQLite : renvoyez la liste des numéros, [row[0] for row in …]."
            )
        result = list(result)
        if result and isinstance(result[0], tuple):
            raise Wrong(
                f"find_by_filename renvoie des lignes {result[:2]!r}… : gardez seulement le numéro de chaque "
                "ligne, row[0]."
            )
        expect(
            sorted(result) == sorted(expected),
            f"find_by_filename({name!r}) renvoie {len(result)} numéro(s) au lieu de {len(expected)} "
            f"(attendu : {expected[:5]}).",
        )
    (total,) = run_query(connection, "SELECT COUNT(*) FROM predictions")[0]
    for name in TRAPS:
        result = list(
            attempt(find_by_filename, name, what=f"find_by_filename({name!r})", known_errors=[bindings, syntax])
        )
        if result and len(result) == total:
            raise Wrong(
                f"find_by_filename({name!r}) renvoie toute la table ({total} lignes) : injection SQL, le nom est "
                "encore collé dans la requête. Écrivez ? dans la requête et passez (name,) à part."
            )
        expect(not result, f"find_by_filename({name!r}) devrait ne rien trouver, il renvoie {result[:5]}.")
