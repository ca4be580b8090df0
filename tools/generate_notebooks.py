#!/usr/bin/env python
"""Generate the learner notebooks (``notebooks/``) from the solutions (``solutions/``).

``solutions/NN_name.ipynb`` is the only file authors edit. This tool writes
``notebooks/NN_name.ipynb`` where every solution is replaced by a French gap:

* in a code cell, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
  (markers included) become, at the indentation of the BEGIN line::

      # À compléter : <indice>
      raise NotImplementedError("À compléter : <indice>")

  The hint comes from the BEGIN line (``### BEGIN SOLUTION : normalisez les pixels``)
  or defaults to ``DEFAULT_HINT``. The rest of the cell (the prompt) is kept;
* a code cell tagged ``solution`` is replaced entirely by one gap (hint from the cell
  metadata key ``solution_hint``, else from its first comment line, else the default);
* a markdown cell tagged ``solution`` (an answer to a question) becomes
  ``*Votre réponse :* …``;
* nbval comment markers (``# NBVAL_CHECK_OUTPUT``…) and nbval tags are dropped, except that
  "this cell raises on purpose" becomes the standard ``raises-exception`` tag, which
  Jupyter, nbclient and nbval all honour.

The learner notebook has no outputs, no execution counts, the solution's cell ids, a
minimal fixed metadata block and is written as ``json.dumps(..., indent=1,
sort_keys=True, ensure_ascii=False)`` plus a trailing newline, so the same solution
always gives the same bytes.

Usage::

    python tools/generate_notebooks.py                    # (re)generate notebooks/
    python tools/generate_notebooks.py --check            # CI: fail if anything is out of date
    python tools/generate_notebooks.py --strip-solutions  # also clear outputs of solutions/
    python tools/generate_notebooks.py --prune            # also delete orphan learner notebooks

Only the standard library and ``nbformat`` are needed (IPython, when installed, is used to
understand ``%magic`` lines while checking that generated cells are valid Python).
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = ROOT / "solutions"
NOTEBOOKS_DIR = ROOT / "notebooks"

FIX_COMMAND = "python tools/generate_notebooks.py"
STRIP_COMMAND = "python tools/generate_notebooks.py --strip-solutions"
PRUNE_COMMAND = "python tools/generate_notebooks.py --prune"

GAP_PREFIX = "À compléter"
DEFAULT_HINT = "écrivez votre code ici"
ANSWER_PLACEHOLDER = "*Votre réponse :* …"
SOLUTION_TAG = "solution"
HINT_METADATA_KEY = "solution_hint"

LEARNER_METADATA = {
    "kernelspec": {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    },
    "language_info": {"name": "python"},
}

BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)###[ \t]*BEGIN SOLUTION(?P<rest>.*)$")
END_RE = re.compile(r"^[ \t]*###[ \t]*END SOLUTION[ \t]*$")
HINT_RE = re.compile(r"^[ \t]*:[ \t]*(?P<hint>\S.*?)[ \t]*$")
# Anything that looks like a marker; a line matching this but neither BEGIN_RE nor END_RE
# is a typo that would otherwise leak a solution to learners.
LOOSE_MARKER_RE = re.compile(r"(BEGIN|END)[ \t_-]*SOLUTION", re.IGNORECASE)

NBVAL_COMMENTS = {
    "NBVAL_CHECK_OUTPUT",
    "NBVAL_IGNORE_OUTPUT",
    "NBVAL_RAISES_EXCEPTION",
    "NBVAL_SKIP",
    "PYTEST_VALIDATE_IGNORE_OUTPUT",
}
NBVAL_TAGS = {name.lower().replace("_", "-") for name in NBVAL_COMMENTS}
RAISES_TAG = "raises-exception"
CHECK_OUTPUT_MARKERS = {"NBVAL_CHECK_OUTPUT", "nbval-check-output"}

CELL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class SolutionMarkerError(ValueError):
    """A solution notebook whose markers cannot be turned into a learner notebook."""


# --------------------------------------------------------------------------- reading / writing


def read_notebook(path: Path | str) -> nbformat.NotebookNode:
    """Read a notebook as plain JSON (no validation side effects such as random cell ids)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if data.get("nbformat") != 4:
        raise SolutionMarkerError(f"{path} : format de notebook non pris en charge (nbformat 4 attendu).")
    return nbformat.from_dict(data)


def _source_text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _split_source(text: str) -> list[str]:
    """Split a source like Jupyter does on save (one string per line, newlines kept)."""
    return text.splitlines(keepends=True)


def render(nb) -> str:
    """Serialise a notebook deterministically, exactly as Jupyter would save it."""
    data = json.loads(json.dumps(nb))  # plain dicts, detached from the input
    for cell in data.get("cells", []):
        if isinstance(cell.get("source"), str):
            cell["source"] = _split_source(cell["source"])
        for output in cell.get("outputs", []):
            if isinstance(output.get("text"), str):
                output["text"] = _split_source(output["text"])
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, separators=(",", ": ")) + "\n"


# --------------------------------------------------------------------------- generation


def _tags(cell) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def _is_nbval_comment(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("#") and stripped.lstrip("#").strip() in NBVAL_COMMENTS


def _gap_lines(indent: str, hint: str) -> list[str]:
    message = f"{GAP_PREFIX} : {' '.join(hint.split()) or DEFAULT_HINT}"
    literal = '"' + message.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return [f"{indent}# {message}", f"{indent}raise NotImplementedError({literal})"]


def _where(name: str, index: int, cell) -> str:
    cell_id = cell.get("id")
    suffix = f" (id {cell_id})" if cell_id else ""
    return f"{name}, cellule n° {index + 1}{suffix}"


def _replace_regions(text: str, where: str) -> tuple[str, int]:
    """Replace BEGIN/END SOLUTION regions of a code cell by gaps; return (text, number of gaps)."""
    lines = text.split("\n")
    result: list[str] = []
    open_at: int | None = None
    gaps = 0
    for number, line in enumerate(lines, start=1):
        begin = BEGIN_RE.match(line)
        if begin:
            if open_at is not None:
                raise SolutionMarkerError(
                    f"{where} : « ### BEGIN SOLUTION » imbriqué ligne {number} "
                    f"(la région ouverte ligne {open_at} n'est pas fermée par « ### END SOLUTION »)."
                )
            rest = begin.group("rest")
            hint = DEFAULT_HINT
            if rest.strip():
                hint_match = HINT_RE.match(rest)
                if not hint_match:
                    raise SolutionMarkerError(
                        f"{where} : marqueur mal formé ligne {number} : {line.strip()!r} "
                        "(attendu « ### BEGIN SOLUTION » ou « ### BEGIN SOLUTION : indice »)."
                    )
                hint = hint_match.group("hint")
            open_at = number
            result.extend(_gap_lines(begin.group("indent"), hint))
            gaps += 1
        elif END_RE.match(line):
            if open_at is None:
                raise SolutionMarkerError(
                    f"{where} : « ### END SOLUTION » ligne {number} sans « ### BEGIN SOLUTION » avant."
                )
            open_at = None
        elif LOOSE_MARKER_RE.search(line):
            raise SolutionMarkerError(
                f"{where} : marqueur mal formé ligne {number} : {line.strip()!r} "
                "(écrivez exactement « ### BEGIN SOLUTION » / « ### END SOLUTION »)."
            )
        elif open_at is None:
            result.append(line)
    if open_at is not None:
        raise SolutionMarkerError(
            f"{where} : « ### BEGIN SOLUTION » ligne {open_at} jamais fermé par « ### END SOLUTION »."
        )
    return "\n".join(result), gaps


def _first_comment_hint(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or _is_nbval_comment(stripped):
            continue
        if stripped.startswith("#") and not LOOSE_MARKER_RE.search(stripped):
            hint = stripped.lstrip("#").strip()
            return hint or DEFAULT_HINT
        break
    return DEFAULT_HINT


def _to_python(text: str) -> str:
    """Turn IPython syntax (magics, ``!cmd``) into plain Python so that ``ast`` can parse it."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return "\n".join(
            f"{line[: len(line) - len(line.lstrip())]}pass" if line.lstrip()[:1] in ("%", "!") else line
            for line in text.split("\n")
        )
    return TransformerManager().transform_cell(text)


def _parses(text: str) -> bool:
    try:
        compile(_to_python(text), "<cellule>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):
        return False
    return True


def _learner_cell_id(cell, index: int, used: set[str]) -> str:
    cell_id = cell.get("id")
    if not isinstance(cell_id, str) or not CELL_ID_RE.match(cell_id):
        cell_id = f"cell-{index}"
    candidate, counter = cell_id, 1
    while candidate in used:
        digest = hashlib.sha1(f"{cell_id}:{counter}".encode()).hexdigest()[:8]
        candidate, counter = f"{cell_id[:55]}-{digest}", counter + 1
    used.add(candidate)
    return candidate


def _learner_tags(cell, source_text: str) -> list[str]:
    tags = _tags(cell)
    raises = RAISES_TAG in tags or "nbval-raises-exception" in tags
    raises = raises or any(
        _is_nbval_comment(line) and "NBVAL_RAISES_EXCEPTION" in line for line in source_text.splitlines()
    )
    kept = [tag for tag in tags if tag != SOLUTION_TAG and tag not in NBVAL_TAGS and tag != RAISES_TAG]
    if raises:
        kept.append(RAISES_TAG)
    return kept


def generate(solution_nb, name: str = "notebook") -> nbformat.NotebookNode:
    """Return the learner notebook for ``solution_nb`` (which is not modified).

    ``name`` only appears in error messages (e.g. ``solutions/01_preparation_donnees.ipynb``).
    Raises ``SolutionMarkerError`` on nested, unterminated or malformed markers, or when a gap
    would turn valid Python into invalid Python (e.g. a region inside a list literal).
    """
    cells = []
    used_ids: set[str] = set()
    for index, cell in enumerate(solution_nb.get("cells", [])):
        cell_type = cell.get("cell_type")
        text = _source_text(cell)
        where = _where(name, index, cell)
        tagged = SOLUTION_TAG in _tags(cell)
        metadata = {}
        tags = _learner_tags(cell, text)
        if tags:
            metadata["tags"] = tags
        new_cell = {"cell_type": cell_type, "id": _learner_cell_id(cell, index, used_ids), "metadata": metadata}

        if cell_type == "code":
            if tagged:
                hint = cell.get("metadata", {}).get(HINT_METADATA_KEY)
                if not isinstance(hint, str) or not hint.strip():
                    hint = _first_comment_hint(text)
                new_text = "\n".join(_gap_lines("", hint.strip()))
            else:
                new_text, gaps = _replace_regions(text, where)
                new_text = "\n".join(line for line in new_text.split("\n") if not _is_nbval_comment(line))
                if gaps and _parses(text) and not _parses(new_text):
                    raise SolutionMarkerError(
                        f"{where} : une fois la solution remplacée par « raise NotImplementedError(...) », "
                        "la cellule n'est plus du Python valide. Placez les marqueurs autour d'instructions "
                        "complètes (pas à l'intérieur d'une liste, d'un appel ou d'une expression)."
                    )
            new_cell.update(execution_count=None, outputs=[], source=new_text)
        elif cell_type == "markdown":
            new_cell["source"] = ANSWER_PLACEHOLDER if tagged else text
            if not tagged and cell.get("attachments"):
                new_cell["attachments"] = copy.deepcopy(cell["attachments"])
        elif cell_type == "raw":
            new_cell["source"] = text
        else:
            raise SolutionMarkerError(f"{where} : type de cellule inconnu {cell_type!r}.")

        if cell_type != "code" and LOOSE_MARKER_RE.search(new_cell["source"]):
            raise SolutionMarkerError(
                f"{where} : les marqueurs BEGIN/END SOLUTION ne sont compris que dans les cellules de code ; "
                "pour une réponse en texte, ajoutez le tag « solution » à la cellule."
            )
        cells.append(new_cell)

    return nbformat.from_dict(
        {"cells": cells, "metadata": copy.deepcopy(LEARNER_METADATA), "nbformat": 4, "nbformat_minor": 5}
    )


# --------------------------------------------------------------------------- checks on solutions


def _is_check_output_cell(cell) -> bool:
    if any(tag in CHECK_OUTPUT_MARKERS for tag in _tags(cell)):
        return True
    return any(_is_nbval_comment(line) and "NBVAL_CHECK_OUTPUT" in line for line in _source_text(cell).splitlines())


def solution_problems(solution_nb) -> list[str]:
    """Describe (in French) what makes a solution notebook unfit for nbval in CI.

    Outputs must not be saved, except in ``# NBVAL_CHECK_OUTPUT`` cells: nbval compares a cell
    only against a stored reference, and only if that cell has an ``execution_count``.
    """
    with_outputs, unchecked = [], []
    for index, cell in enumerate(solution_nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if _is_check_output_cell(cell):
            if cell.get("execution_count") is None:
                unchecked.append(str(index + 1))
        elif cell.get("outputs") or cell.get("execution_count") is not None:
            with_outputs.append(str(index + 1))
    problems = []
    if with_outputs:
        problems.append(
            f"sorties ou numéros d'exécution enregistrés (cellules n° {', '.join(with_outputs)}) ; "
            f"corrigez avec : {STRIP_COMMAND}"
        )
    if unchecked:
        problems.append(
            f"cellules NBVAL_CHECK_OUTPUT sans sortie de référence (n° {', '.join(unchecked)}) : nbval ne les "
            "vérifierait pas ; exécutez le notebook dans Jupyter et enregistrez-le, puis lancez : "
            f"{STRIP_COMMAND}"
        )
    return problems


def strip_solution(solution_nb) -> nbformat.NotebookNode:
    """Copy of ``solution_nb`` without outputs/execution counts (NBVAL_CHECK_OUTPUT cells keep theirs)."""
    nb = copy.deepcopy(solution_nb)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and not _is_check_output_cell(cell):
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


# --------------------------------------------------------------------------- whole directories


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def solution_paths(solutions_dir: Path = SOLUTIONS_DIR) -> list[Path]:
    return sorted(Path(solutions_dir).glob("*.ipynb"))


def expected_notebooks(solutions_dir: Path = SOLUTIONS_DIR) -> dict[str, str]:
    """Map each learner notebook file name to the exact text the generator would write."""
    return {
        path.name: render(generate(read_notebook(path), name=_relative(path))) for path in solution_paths(solutions_dir)
    }


def check(solutions_dir: Path = SOLUTIONS_DIR, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[str]:
    """Return French messages for everything ``--check`` would complain about (empty when all is fine)."""
    solutions_dir, notebooks_dir = Path(solutions_dir), Path(notebooks_dir)
    problems = []
    expected = {}
    for path in solution_paths(solutions_dir):
        try:
            nb = read_notebook(path)
            expected[path.name] = render(generate(nb, name=_relative(path)))
        except (SolutionMarkerError, json.JSONDecodeError) as error:
            problems.append(f"{_relative(path)} : {error}" if isinstance(error, json.JSONDecodeError) else str(error))
            expected[path.name] = None
            continue
        for problem in solution_problems(nb):
            problems.append(f"{_relative(path)} : {problem}")
    actual = {path.name: path for path in sorted(notebooks_dir.glob("*.ipynb"))}
    for name, text in expected.items():
        target = notebooks_dir / name
        if text is None:
            continue
        if name not in actual:
            problems.append(
                f"{_relative(target)} manque (généré depuis {_relative(solutions_dir / name)}) ; "
                f"créez-le avec : {FIX_COMMAND}"
            )
        elif target.read_text(encoding="utf-8") != text:
            problems.append(
                f"{_relative(target)} n'est pas à jour par rapport à {_relative(solutions_dir / name)} ; "
                f"régénérez-le avec : {FIX_COMMAND}"
            )
    for name in actual:
        if name not in expected:
            problems.append(
                f"{_relative(notebooks_dir / name)} n'a pas de solution ({_relative(solutions_dir / name)} absent) : "
                f"les notebooks de notebooks/ se modifient dans solutions/ ; supprimez-le avec : {PRUNE_COMMAND}"
            )
    return problems


def write_all(
    solutions_dir: Path = SOLUTIONS_DIR,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    *,
    strip_solutions: bool = False,
    prune: bool = False,
    out=sys.stdout,
) -> int:
    solutions_dir, notebooks_dir = Path(solutions_dir), Path(notebooks_dir)
    status = 0
    expected_names = set()
    for path in solution_paths(solutions_dir):
        expected_names.add(path.name)
        try:
            nb = read_notebook(path)
            text = render(generate(nb, name=_relative(path)))
        except json.JSONDecodeError as error:
            print(f"ERREUR : {_relative(path)} n'est pas un JSON valide : {error}", file=sys.stderr)
            status = 1
            continue
        except SolutionMarkerError as error:
            print(f"ERREUR : {error}", file=sys.stderr)
            status = 1
            continue
        notebooks_dir.mkdir(parents=True, exist_ok=True)
        target = notebooks_dir / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8", newline="\n")
            print(f"écrit : {_relative(target)}", file=out)
        if strip_solutions:
            stripped = strip_solution(nb)
            if stripped != nb:
                path.write_text(render(stripped), encoding="utf-8", newline="\n")
                print(f"sorties effacées : {_relative(path)}", file=out)
        for problem in solution_problems(strip_solution(nb) if strip_solutions else nb):
            print(f"ATTENTION : {_relative(path)} : {problem}", file=sys.stderr)
    if notebooks_dir.is_dir():
        for orphan in sorted(notebooks_dir.glob("*.ipynb")):
            if orphan.name in expected_names:
                continue
            if prune:
                orphan.unlink()
                print(f"supprimé (pas de solution) : {_relative(orphan)}", file=out)
            else:
                print(
                    f"ATTENTION : {_relative(orphan)} n'a pas de solution ; supprimez-le avec : {PRUNE_COMMAND}",
                    file=sys.stderr,
                )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Génère notebooks/ (énoncés à trous) à partir de solutions/ (seuls fichiers à modifier)."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="ne rien écrire ; échouer si notebooks/ ou solutions/ ne sont pas à jour (CI)",
    )
    parser.add_argument(
        "--strip-solutions",
        action="store_true",
        help="effacer aussi les sorties enregistrées dans solutions/ (sauf cellules NBVAL_CHECK_OUTPUT)",
    )
    parser.add_argument(
        "--prune", action="store_true", help="supprimer les notebooks de notebooks/ qui n'ont pas de solution"
    )
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.check:
        problems = check(args.solutions, args.notebooks)
        if problems:
            print("Les notebooks ne sont pas synchronisés :", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(f"OK : {len(solution_paths(args.solutions))} solution(s), notebooks/ à jour.")
        return 0
    return write_all(args.solutions, args.notebooks, strip_solutions=args.strip_solutions, prune=args.prune)


if __name__ == "__main__":
    sys.exit(main())
