"""Every chapter (solutions/, hence notebooks/) has the workshop's structure and short markdown cells."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_notebook_sync import SOLUTIONS_DIR

MAX_MARKDOWN_CHARS = 1500
REQUIRED_OPENING = ["## Objectifs", "## Durée", "## Mise en place"]
SOLUTIONS = sorted(SOLUTIONS_DIR.glob("*.ipynb"))


def _cells(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        (cell["cell_type"], "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
        for cell in cells
    ]


def _headings(cells, level):
    prefix = "#" * level + " "
    return [
        (index, line.strip())
        for index, (kind, text) in enumerate(cells)
        if kind == "markdown"
        for line in re.sub(r"```.*?```", "", text, flags=re.DOTALL).splitlines()
        if line.startswith(prefix)
    ]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_markdown_cells_are_short(path):
    long = [
        (index, len(text))
        for index, (kind, text) in enumerate(_cells(path))
        if kind == "markdown" and len(text) > MAX_MARKDOWN_CHARS
    ]
    assert not long, f"{path.name} : cellules markdown de plus de {MAX_MARKDOWN_CHARS} caractères (n°, taille) : {long}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_one_title_then_objectives_duration_setup_and_closing_summary(path):
    cells = _cells(path)
    titles = _headings(cells, 1)
    assert len(titles) == 1 and titles[0][0] == 0, (
        f"{path.name} : un seul titre « # », dans la première cellule : {titles}"
    )
    sections = [text for _, text in _headings(cells, 2)]
    assert sections[:3] == REQUIRED_OPENING, (
        f"{path.name} : le notebook doit commencer par {REQUIRED_OPENING}, pas {sections[:3]}"
    )
    assert sections[-1] == "## À retenir", (
        f"{path.name} : la dernière section doit être « ## À retenir », pas {sections[-1]!r}"
    )


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_exercises_are_numbered_in_order(path):
    numbers = [
        int(m.group(1)) for _, text in _headings(_cells(path), 2) if (m := re.match(r"## Exercice (\d+)\b", text))
    ]
    assert numbers == list(range(1, len(numbers) + 1)), f"{path.name} : exercices numérotés {numbers}"
    assert 2 <= len(numbers) <= 4, f"{path.name} : 2 à 4 exercices par chapitre, pas {len(numbers)}"
