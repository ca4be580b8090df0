"""Chapter 5 exercises: the SQL query is judged by its result on a real history database."""

from __future__ import annotations

import sqlite3

import pytest

from atelier.exercices import OK, WRONG
from atelier.exercices import chapitre5 as ex
from atelier.exercices.solution_source import solution_text
from atelier.history import History

ROWS = (
    [("mer", "mer_1.jpg")] * 4
    + [("forêt", "foret_1.jpg")] * 3
    + [("désert", "mer_2.jpg")] * 2
    + [("nuageux", "<img src=x onerror=alert(1)>.jpg")]
)


@pytest.fixture(scope="module")
def connection(tmp_path_factory):
    path = tmp_path_factory.mktemp("historique") / "historique.sqlite3"
    history = History(path)
    for label, filename in ROWS:
        history.add(
            label=label,
            probabilities={label: 0.9},
            model_version="cnn-test",
            image_sha256="0" * 64,
            filename=filename,
            duration_ms=1.0,
        )
    history.close()
    connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    yield connection
    connection.close()


def _solution(item, **context):
    namespace = dict(context)
    for cell_id in item.cells:
        exec(solution_text(item.notebook, cell_id), namespace)
    return namespace


# --------------------------------------------------------------------------- exercice 1 : XSS

EX1_WRONG = [
    ({"B"}, "il en manque : D est dangereuse"),
    ({"B", "C", "D"}, "C n'insère aucune donnée venue de l'utilisateur"),
    ({"A", "B", "D"}, "A est sûre : textContent"),
    ({"B", "D", "E"}, "document.title est du texte"),
    ("BD", "écrivez un ensemble de lettres"),
    ({"B", "D", "G"}, "lettres inconnues"),
]


def test_ex1_solution_passes():
    assert ex.ex1.evaluate(_solution(ex.ex1)).status == OK


@pytest.mark.parametrize(("answer", "fragment"), EX1_WRONG, ids=[f for _, f in EX1_WRONG])
def test_ex1_wrong_answers(answer, fragment):
    result = ex.ex1.evaluate({"dangerous": answer})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 2 : compter par classe

EX2_WRONG = [
    ("SELECT label, COUNT(*) FROM predictions", "sans GROUP BY"),
    ("SELECT label, COUNT(*) AS n FROM predictions GROUP BY label ORDER BY n", "ordre croissant"),
    ("SELECT COUNT(*), label FROM predictions GROUP BY label ORDER BY 1 DESC", "les colonnes sont inversées"),
    ("SELECT model_version, COUNT(*) FROM predictions GROUP BY model_version", "au lieu des classes"),
    ("SELECT label, COUNT(*) AS n FROM predictions WHERE id > 2 GROUP BY label ORDER BY n DESC", "sans filtre WHERE"),
    ("SELECT label, COUNT(*) AS n FROM predictions GROUP BY label ORDER BY label", "pas triées par nombre décroissant"),
    ("SELECT label COUNT(*) FROM predictions GROUP BY label", "SQLite refuse counts_query"),
    ("SELECT label FROM predictions GROUP BY label", "colonne(s) au lieu de 2"),
    (42, "doit être une chaîne"),
]


def test_ex2_solution_passes(connection):
    assert ex.ex2.evaluate(_solution(ex.ex2, connection=connection)).status == OK


@pytest.mark.parametrize(("query", "fragment"), EX2_WRONG, ids=[f for _, f in EX2_WRONG])
def test_ex2_wrong_answers(connection, query, fragment):
    result = ex.ex2.evaluate({"counts_query": query, "connection": connection})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 3 : requête paramétrée


def _finder(connection, kind):
    def find_by_filename(name):
        if kind == "f-string":
            rows = connection.execute(f"SELECT id FROM predictions WHERE filename = '{name}'")
        elif kind == "not-a-tuple":
            rows = connection.execute("SELECT id FROM predictions WHERE filename = ?", name)
        elif kind == "cursor":
            return connection.execute("SELECT id FROM predictions WHERE filename = ?", (name,))
        elif kind == "rows":
            return connection.execute("SELECT id FROM predictions WHERE filename = ?", (name,)).fetchall()
        elif kind == "like":
            rows = connection.execute("SELECT id FROM predictions WHERE filename LIKE ?", ("%" + name[:3] + "%",))
        return [row[0] for row in rows]

    return find_by_filename


EX3_WRONG = [
    ("f-string", "injection SQL"),
    ("not-a-tuple", "les paramètres vont dans un tuple"),
    ("cursor", "renvoie le curseur"),
    ("rows", "gardez seulement le numéro"),
    ("like", "numéro(s) au lieu de"),
]


def test_ex3_solution_passes(connection):
    assert ex.ex3.evaluate(_solution(ex.ex3, connection=connection)).status == OK


@pytest.mark.parametrize(("kind", "fragment"), EX3_WRONG, ids=[k for k, _ in EX3_WRONG])
def test_ex3_wrong_answers(connection, kind, fragment):
    result = ex.ex3.evaluate({"find_by_filename": _finder(connection, kind), "connection": connection})
    assert result.status == WRONG and fragment in result.message, result


def test_ex3_apostrophe_breaking_the_query_is_explained(connection):
    def only_quotes_fixed(name):  # the injection is blocked by luck, but the apostrophe still breaks it
        if "OR" in name:
            return []
        return [row[0] for row in connection.execute(f"SELECT id FROM predictions WHERE filename = '{name}'")]

    result = ex.ex3.evaluate({"find_by_filename": only_quotes_fixed, "connection": connection})
    assert result.status == WRONG and "un nom avec une apostrophe casse encore la requête" in result.message, result
