"""The exercise framework (atelier.exercices) and what every exercise of every chapter must have."""

from __future__ import annotations

import importlib
import json
import re
import time
import types

import pytest

from atelier.exercices import (
    CHAPTERS,
    OK,
    TODO,
    WRONG,
    NotDone,
    SolutionNotFound,
    Wrong,
    attempt,
    exercise,
    exercises_in,
    expect,
)
from atelier.exercices.solution_source import solution_text
from tests.test_notebook_sync import NOTEBOOKS_DIR, SOLUTIONS_DIR, gen

# --------------------------------------------------------------------------- a toy exercise


def _toy(tmp_path=None):
    @exercise(notebook="99_essai.ipynb", cells="reponse", hints=("premier", "deuxième"), success="bravo.")
    def ex7(double):
        result = attempt(double, 21, what="double(21)", known_errors=[(KeyError, "", "pas de dictionnaire ici.")])
        expect(isinstance(result, int), "il faut un entier.")
        expect(result == 42, f"double(21) vaut {result} au lieu de 42.")

    return ex7


def _gap(*_):
    raise NotImplementedError("À compléter : doublez x")


@pytest.mark.parametrize(
    ("answer", "status", "fragment"),
    [
        (lambda x: 2 * x, OK, "bravo."),
        (lambda x: x + 1, WRONG, "vaut 22 au lieu de 42"),
        (lambda x: "42", WRONG, "il faut un entier"),
        (_gap, TODO, "pas encore fait : double(21) lève encore « À compléter : doublez x »"),
        (lambda x: 1 / 0, WRONG, "double(21) a levé une erreur ZeroDivisionError (division par zéro)"),
        (lambda x: {}[x], WRONG, "pas de dictionnaire ici."),
        (lambda x: [][x], WRONG, "IndexError (indice hors limites)"),
        (42, WRONG, "n'est pas une fonction"),
        (..., TODO, "pas encore fait : « double » vaut encore Ellipsis"),
        (None, TODO, "vaut encore None"),
    ],
    ids=[
        "juste",
        "faux",
        "type",
        "lacune",
        "exception",
        "erreur-connue",
        "indexerror",
        "pas-fonction",
        "ellipsis",
        "none",
    ],
)
def test_verdicts(answer, status, fragment):
    result = _toy().evaluate({"double": answer})
    assert result.status == status and fragment in result.message, result
    assert result.line.startswith({OK: "✅", WRONG: "❌", TODO: "🟡"}[status] + " Exercice 7 : ")


def test_missing_variable_is_not_done_and_explicit_answers_win():
    toy = _toy()
    assert toy.evaluate({}).status == TODO and "« double » n'existe pas encore" in toy.evaluate({}).message
    assert toy.evaluate({"double": _gap}, lambda x: 2 * x).status == OK
    assert toy.evaluate({"double": _gap}, double=lambda x: 2 * x).status == OK


def test_an_unexpected_error_inside_the_check_is_a_wrong_answer_not_a_traceback():
    @exercise(notebook="x.ipynb", cells="c", hints=("h",), success="ok")
    def ex1(value):
        return value.shape  # AttributeError for an int

    result = ex1.evaluate({"value": 3})
    assert result.status == WRONG and "AttributeError (attribut inexistant)" in result.message


def test_a_multi_line_error_still_gives_one_line():
    def double(x):
        raise ValueError("première ligne\n\n  deuxième ligne")

    line = _toy().evaluate({"double": double}).line
    assert "\n" not in line and "première ligne deuxième ligne" in line


def test_check_can_raise_wrong_and_not_done_and_return_a_message():
    @exercise(notebook="x.ipynb", cells="c", hints=("h",), success="ok")
    def ex2(value):
        if value == 0:
            raise NotDone("mettez un nombre.")
        if value < 0:
            raise Wrong("positif, s'il vous plaît.")
        return f"{value} est positif."

    assert ex2.evaluate({"value": 0}).line == "🟡 Exercice 2 : pas encore fait : mettez un nombre."
    assert ex2.evaluate({"value": -1}).line == "❌ Exercice 2 : positif, s'il vous plaît."
    assert ex2.evaluate({"value": 3}).line == "✅ Exercice 2 : 3 est positif."


def test_verifier_reads_the_callers_variables_and_prints_one_line(capsys):
    toy = _toy()
    namespace = {"toy": toy, "double": lambda x: 2 * x}
    exec("toy.verifier()", namespace)
    assert capsys.readouterr().out == "✅ Exercice 7 : bravo.\n"
    namespace["double"] = lambda x: x
    exec("toy.verifier()", namespace)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("❌ Exercice 7 : double(21) vaut 21")


def test_hints_are_graded(capsys):
    toy = _toy()
    toy.indice()
    toy.indice()
    toy.indice()
    toy.indice(1)
    toy.indice(5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "💡 Exercice 7, indice 1 sur 2 : premier"
    assert lines[1].startswith("💡 Exercice 7, indice 2 sur 2 (c'est le dernier") and lines[1].endswith(": deuxième")
    assert lines[2] == lines[1]  # no hint past the last one
    assert lines[3] == lines[0]
    assert "les indices vont de 1 à 2" in lines[4]


# --------------------------------------------------------------------------- solution()


def _write_solution(folder, cells):
    folder.mkdir(parents=True, exist_ok=True)
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "99_essai.ipynb").write_text(json.dumps(notebook), encoding="utf-8")


def test_solution_is_read_from_the_solution_notebook_without_markers(tmp_path, monkeypatch, capsys):
    source = (
        "# NBVAL_CHECK_OUTPUT\ndef double(x):\n    ### BEGIN SOLUTION : doublez\n    return 2 * x\n"
        "    ### END SOLUTION\n"
    )
    _write_solution(tmp_path / "sol", [{"cell_type": "code", "id": "reponse", "source": source, "metadata": {}}])
    monkeypatch.setenv("ATELIER_SOLUTIONS", str(tmp_path / "sol"))
    toy = _toy()
    assert toy.solution_code() == "def double(x):\n    return 2 * x"
    toy.solution()
    out = capsys.readouterr().out
    assert out.startswith("🔑 Exercice 7, solution (solutions/99_essai.ipynb) :") and "return 2 * x" in out


def test_solution_not_found_is_a_french_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATELIER_SOLUTIONS", str(tmp_path))
    toy = _toy()
    with pytest.raises(SolutionNotFound, match=r"solutions/99_essai\.ipynb n'est pas là"):
        toy.solution_code()
    toy.solution()
    assert capsys.readouterr().out.startswith("❌ Exercice 7 : solution introuvable")
    _write_solution(tmp_path, [])
    with pytest.raises(SolutionNotFound, match="pas de cellule « reponse »"):
        toy.solution_code()


def test_solutions_are_found_from_the_notebooks_folder(monkeypatch):
    monkeypatch.delenv("ATELIER_SOLUTIONS", raising=False)
    monkeypatch.chdir(NOTEBOOKS_DIR)
    assert "def normalize" in solution_text("01_preparation_donnees.ipynb", "normalisation")


# --------------------------------------------------------------------------- every exercise of every chapter

EXERCISES = [
    (chapter, item)
    for chapter in CHAPTERS
    for item in exercises_in(importlib.import_module(f"atelier.exercices.{chapter}"))
]
EXERCISE_IDS = [f"{chapter}-{item.name}" for chapter, item in EXERCISES]


def _cells(folder, notebook):
    return json.loads((folder / notebook).read_text(encoding="utf-8"))["cells"]


def _text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_each_chapter_has_two_to_four_exercises():
    for chapter in CHAPTERS:
        numbers = [item.number for item in exercises_in(importlib.import_module(f"atelier.exercices.{chapter}"))]
        assert 2 <= len(numbers) <= 4 and numbers == list(range(1, len(numbers) + 1)), (chapter, numbers)


@pytest.mark.parametrize(("chapter", "item"), EXERCISES, ids=EXERCISE_IDS)
def test_exercise_has_hints_solution_cell_heading_and_verifier_cell(chapter, item):
    assert len(item.hints) >= 2 and item.success
    for cell_id in item.cells:
        by_id = {cell.get("id"): cell for cell in _cells(SOLUTIONS_DIR, item.notebook)}
        cell = by_id[cell_id]
        marked = re.search(gen.BEGIN_RE.pattern, _text(cell), re.MULTILINE) or "solution" in cell.get(
            "metadata", {}
        ).get("tags", [])
        assert marked, f"{item.notebook} : la cellule {cell_id} n'a pas de solution marquée"
        text = solution_text(item.notebook, cell_id)
        assert text and not re.search(r"(BEGIN|END) SOLUTION|NBVAL_", text)
    learner = _cells(NOTEBOOKS_DIR, item.notebook)
    headings = [i for i, cell in enumerate(learner) if _text(cell).startswith(f"## Exercice {item.number}")]
    assert len(headings) == 1, f"{item.notebook} : titre « ## Exercice {item.number} » attendu une fois"
    following = learner[headings[0] + 1 :]
    nxt = [i for i, cell in enumerate(following) if _text(cell).startswith("## ")]
    section = following[: nxt[0]] if nxt else following
    gap_at = [i for i, cell in enumerate(section) if gen.GAP_PREFIX in _text(cell) and cell["cell_type"] == "code"]
    calls = [i for i, cell in enumerate(section) if f"ex.{item.name}.verifier()" in _text(cell)]
    assert gap_at and calls and calls[0] > gap_at[-1], f"{item.notebook} : vérification après la lacune attendue"


def test_every_exercise_heading_has_its_exercise():
    for chapter in CHAPTERS:
        module = importlib.import_module(f"atelier.exercices.{chapter}")
        items = exercises_in(module)
        notebook = items[0].notebook
        headings = [_text(c) for c in _cells(NOTEBOOKS_DIR, notebook) if _text(c).startswith("## Exercice")]
        assert len(headings) == len(items), (notebook, headings)


def learner_namespace(item, context=None):
    """Run the learner's (untouched) gap cells of ``item`` like a notebook would, in a fresh namespace."""
    import keras
    import numpy as np
    import tensorflow as tf

    namespace = {"tf": tf, "keras": keras, "np": np, "layers": keras.layers, **(context or {})}
    by_id = {cell.get("id"): cell for cell in _cells(NOTEBOOKS_DIR, item.notebook)}
    for cell_id in item.cells:
        try:
            exec(_text(by_id[cell_id]), namespace)
        except NotImplementedError as error:
            assert str(error).startswith(gen.GAP_PREFIX)
    return namespace


@pytest.mark.parametrize(("chapter", "item"), EXERCISES, ids=EXERCISE_IDS)
def test_untouched_gap_is_not_done(chapter, item):
    # What the cells before the exercise define, as far as the gap cells use it before their gap.
    context = {"splits": types.SimpleNamespace(), "time": time, "new_model": lambda: None}
    result = item.evaluate(learner_namespace(item, context))
    assert result.status == TODO and "pas encore fait" in result.message, result
