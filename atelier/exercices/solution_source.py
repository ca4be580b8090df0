"""Lire la solution d'un exercice dans le notebook corrigé (``solutions/``), la seule source du code."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

MARKER_RE = re.compile(r"^[ \t]*###[ \t]*(BEGIN|END)[ \t]+SOLUTION\b")
NBVAL_COMMENT_RE = re.compile(r"^[ \t]*#[ \t]*(NBVAL_[A-Z_]+|PYTEST_VALIDATE_IGNORE_OUTPUT)[ \t]*$")


class SolutionNotFound(LookupError):
    """Le notebook corrigé ou la cellule de la solution est introuvable."""


def solutions_dirs() -> list[Path]:
    """Où chercher ``solutions/`` : ``$ATELIER_SOLUTIONS``, le dépôt du paquet, le dossier courant et son parent."""
    candidates = []
    explicit = os.environ.get("ATELIER_SOLUTIONS")
    if explicit:
        candidates.append(Path(explicit).expanduser())
    repository = Path(__file__).resolve().parents[2]
    cwd = Path.cwd()
    candidates += [repository / "solutions", cwd / "solutions", cwd.parent / "solutions"]
    return list(dict.fromkeys(candidates))


def find_solution_notebook(notebook: str) -> Path:
    """Le chemin de ``solutions/<notebook>``, ou ``SolutionNotFound`` avec un message en français."""
    for folder in solutions_dirs():
        path = folder / notebook
        if path.is_file():
            return path
    raise SolutionNotFound(
        f"solution introuvable : le fichier solutions/{notebook} n'est pas là (cherché dans "
        f"{', '.join(str(folder) for folder in solutions_dirs())}). Ouvrez l'atelier depuis son dossier, "
        "ou indiquez le dossier des solutions dans la variable d'environnement ATELIER_SOLUTIONS."
    )


@lru_cache(maxsize=32)
def _cells(path: Path, mtime: float) -> dict[str, dict]:
    with open(path, encoding="utf-8") as handle:
        notebook = json.load(handle)
    return {cell.get("id"): cell for cell in notebook.get("cells", [])}


def solution_cell(notebook: str, cell_id: str) -> dict:
    """La cellule d'id ``cell_id`` du notebook corrigé ``solutions/<notebook>``."""
    path = find_solution_notebook(notebook)
    cell = _cells(path, path.stat().st_mtime).get(cell_id)
    if cell is None:
        raise SolutionNotFound(f"solution introuvable : pas de cellule « {cell_id} » dans solutions/{notebook}.")
    return cell


def solution_text(notebook: str, cell_id: str) -> str:
    """Le texte de la cellule de solution, sans les marqueurs ``### BEGIN/END SOLUTION`` ni ceux de nbval."""
    cell = solution_cell(notebook, cell_id)
    source = cell.get("source", "")
    text = "".join(source) if isinstance(source, list) else source
    if cell.get("cell_type") != "code":
        return text.strip()
    lines = [line for line in text.split("\n") if not MARKER_RE.match(line) and not NBVAL_COMMENT_RE.match(line)]
    return "\n".join(lines).strip("\n")
