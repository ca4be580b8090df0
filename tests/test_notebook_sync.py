"""Learner notebooks (notebooks/) are generated from the solutions (solutions/) and stay in sync.

* sync tests: regenerate in memory and compare with notebooks/ (nbdev-style "regenerate and
  fail on diff", without touching the working tree);
* unit tests of tools/generate_notebooks.py on tests/fixtures/notebooks/;
* execution tests: a learner notebook run as is fails only at its first gap, with a
  NotImplementedError("À compléter : ..."). ``assert_learner_notebook_fails_only_at_gaps`` is
  the reusable helper; it is already applied to every notebooks/*.ipynb (plus the fixture, so the
  parametrisation is never empty and nothing is skipped while notebooks/ is empty).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS_DIR = ROOT / "solutions"
NOTEBOOKS_DIR = ROOT / "notebooks"
FIXTURES_DIR = ROOT / "tests" / "fixtures" / "notebooks"
SOLUTION_FIXTURE = FIXTURES_DIR / "solution_demo.ipynb"
LEARNER_FIXTURE = FIXTURES_DIR / "learner_demo.ipynb"
SANITIZE_FILE = ROOT / "tests" / "nbval_sanitize.cfg"
KERNEL_TIMEOUT = 600


def _load_generator():
    return load_tool("generate_notebooks")


gen = _load_generator()

MARKER_RE = re.compile(r"(BEGIN|END)[ \t_-]*SOLUTION", re.IGNORECASE)


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _notebook(*cells, **metadata):
    nb = nbformat.v4.new_notebook(cells=list(cells), metadata=metadata)
    for index, cell in enumerate(nb.cells):
        cell.id = f"c{index}"
    return nb


def _code(source, **kwargs):
    return nbformat.v4.new_code_cell(source, **kwargs)


def _markdown(source, **kwargs):
    return nbformat.v4.new_markdown_cell(source, **kwargs)


def _learner_code(solution_source, **kwargs) -> str:
    return _source(gen.generate(_notebook(_code(solution_source, **kwargs)), name="essai.ipynb").cells[0])


# --------------------------------------------------------------------------- helpers for execution


def run_until_first_error(path: Path, timeout: int = KERNEL_TIMEOUT):
    """Execute a notebook with nbclient in its own folder (like Jupyter does).

    Returns ``None`` if every cell ran, else ``(cell_index, ename, evalue)`` of the first error.
    Cells tagged ``raises-exception`` may raise without stopping the run (Jupyter semantics).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(Path(path).parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as error:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
                continue
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    return index, output.ename, output.evalue
        return -1, error.ename, error.evalue
    return None


def assert_learner_notebook_fails_only_at_gaps(path: Path, timeout: int = KERNEL_TIMEOUT) -> None:
    """A learner notebook run as is must stop at a gap, with the French NotImplementedError.

    * with gaps: the first error is ``NotImplementedError("À compléter : ...")``, raised at or
      after the first cell that contains a gap (a gap inside a function raises when it is called);
    * without gaps: every cell runs.
    """
    nb = nbformat.read(path, as_version=4)
    gap_cells = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and "raise NotImplementedError(" in _source(cell)
        and gen.GAP_PREFIX in _source(cell)
    ]
    result = run_until_first_error(path, timeout=timeout)
    if not gap_cells:
        assert result is None, (
            f"{path.name} n'a pas de trou mais échoue : cellule n° {result[0] + 1} {result[1]}: {result[2]}"
        )
        return
    assert result is not None, f"{path.name} contient des trous mais s'exécute sans erreur."
    index, ename, evalue = result
    assert ename == "NotImplementedError" and gen.GAP_PREFIX in evalue, (
        f"{path.name} : la première erreur (cellule n° {index + 1}) devrait être le trou "
        f"« NotImplementedError: {gen.GAP_PREFIX} : … », pas {ename}: {evalue}"
    )
    assert index >= gap_cells[0], f"{path.name} : erreur en cellule n° {index + 1}, avant le premier trou."


# --------------------------------------------------------------------------- the repository is in sync


def test_generator_check_passes_on_repository():
    problems = gen.check(SOLUTIONS_DIR, NOTEBOOKS_DIR)
    assert not problems, "\n".join(["Notebooks désynchronisés :", *problems])


def test_learner_notebooks_are_regenerated_identically():
    expected = gen.expected_notebooks(SOLUTIONS_DIR)
    actual = {path.name: path for path in NOTEBOOKS_DIR.glob("*.ipynb")}
    assert sorted(expected) == sorted(actual), (
        f"solutions/ seulement : {sorted(set(expected) - set(actual))} ; "
        f"notebooks/ seulement : {sorted(set(actual) - set(expected))} ; "
        f"corrigez avec : {gen.FIX_COMMAND} (--prune pour supprimer les orphelins)"
    )
    stale = [name for name, text in expected.items() if actual[name].read_text(encoding="utf-8") != text]
    assert not stale, f"notebooks/ pas à jour : {stale} ; régénérez avec : {gen.FIX_COMMAND}"


@pytest.mark.parametrize("folder", [NOTEBOOKS_DIR, FIXTURES_DIR], ids=["notebooks", "fixture"])
def test_learner_notebooks_have_no_outputs_nor_markers(folder):
    paths = sorted(NOTEBOOKS_DIR.glob("*.ipynb")) if folder == NOTEBOOKS_DIR else [LEARNER_FIXTURE]
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for index, cell in enumerate(nb["cells"]):
            where = f"{path.name}, cellule n° {index + 1}"
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{where} : sorties enregistrées"
            assert not MARKER_RE.search(_source(cell)), f"{where} : marqueur de solution resté"
            assert "solution" not in cell.get("metadata", {}).get("tags", []), f"{where} : tag solution resté"


@pytest.mark.parametrize("folder", [SOLUTIONS_DIR, FIXTURES_DIR], ids=["solutions", "fixture"])
def test_solutions_have_no_stale_outputs(folder):
    paths = sorted(SOLUTIONS_DIR.glob("*.ipynb")) if folder == SOLUTIONS_DIR else [SOLUTION_FIXTURE]
    for path in paths:
        problems = gen.solution_problems(gen.read_notebook(path))
        assert not problems, f"{path.name} : {problems}"


# --------------------------------------------------------------------------- generator on fixtures


def test_fixture_regenerates_byte_for_byte():
    text = gen.render(gen.generate(gen.read_notebook(SOLUTION_FIXTURE), name="solution_demo.ipynb"))
    assert text == LEARNER_FIXTURE.read_text(encoding="utf-8")


def test_generation_is_deterministic_and_does_not_modify_the_solution():
    solution = gen.read_notebook(SOLUTION_FIXTURE)
    before = json.dumps(solution, sort_keys=True)
    first = gen.render(gen.generate(solution))
    assert gen.render(gen.generate(solution)) == first
    assert json.dumps(solution, sort_keys=True) == before
    # Same bytes whether the solution was read by nbformat or as plain JSON.
    assert gen.render(gen.generate(nbformat.read(SOLUTION_FIXTURE, as_version=4))) == first


def test_learner_json_is_readable_and_valid():
    text = LEARNER_FIXTURE.read_text(encoding="utf-8")
    assert "À compléter" in text and "\\u00c0" not in text
    assert text.endswith("}\n") and text.startswith('{\n "cells": [\n  {\n')
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata == gen.LEARNER_METADATA
    solution = gen.read_notebook(SOLUTION_FIXTURE)
    assert [cell.id for cell in nb.cells] == [cell.id for cell in solution.cells]


def test_region_becomes_gap_and_prompt_stays():
    learner = _learner_code(
        "x = 1\n### BEGIN SOLUTION : normalisez les pixels\ny = x / 255\n### END SOLUTION\nprint(y)"
    )
    assert learner == (
        "x = 1\n"
        "# À compléter : normalisez les pixels\n"
        'raise NotImplementedError("À compléter : normalisez les pixels")\n'
        "print(y)"
    )


def test_indentation_is_kept_and_default_hint_used():
    learner = _learner_code(
        "def f(x):\n    if x:\n        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION\n    return 0\n"
    )
    assert learner == (
        "def f(x):\n    if x:\n"
        f"        # À compléter : {gen.DEFAULT_HINT}\n"
        f'        raise NotImplementedError("À compléter : {gen.DEFAULT_HINT}")\n'
        "    return 0\n"
    )


def test_several_regions_and_hint_variants():
    learner = _learner_code(
        "### BEGIN SOLUTION: a\n1\n### END SOLUTION\n###BEGIN SOLUTION :   b  c  \n2\n###   END SOLUTION   "
    )
    assert learner.count("raise NotImplementedError") == 2
    assert '"À compléter : a"' in learner and '"À compléter : b c"' in learner


def test_hint_with_quotes_and_backslashes_is_valid_python():
    learner = _learner_code('### BEGIN SOLUTION : utilisez print("l\'image") et \\n\npass\n### END SOLUTION')
    with pytest.raises(NotImplementedError) as error:
        exec(learner, {})
    assert str(error.value) == 'À compléter : utilisez print("l\'image") et \\n'


def test_code_cell_tagged_solution():
    from_metadata = _learner_code("x = 1", metadata={"tags": ["solution", "autre"], "solution_hint": "créez x"})
    assert from_metadata == '# À compléter : créez x\nraise NotImplementedError("À compléter : créez x")'
    from_comment = _learner_code("# NBVAL_CHECK_OUTPUT\n\n# Créez y.\ny = 2", metadata={"tags": ["solution"]})
    assert from_comment.startswith("# À compléter : Créez y.\n")
    default = _learner_code("z = 3", metadata={"tags": ["solution"]})
    assert gen.DEFAULT_HINT in default
    nb = gen.generate(_notebook(_code("x = 1", metadata={"tags": ["solution", "autre"]})))
    assert nb.cells[0].metadata == {"tags": ["autre"]}


def test_markdown_cell_tagged_solution():
    nb = gen.generate(
        _notebook(
            _markdown("La réponse est 42.", metadata={"tags": ["solution"]}), _markdown("**Question :** pourquoi ?")
        )
    )
    assert _source(nb.cells[0]) == "*Votre réponse :* …"
    assert _source(nb.cells[1]) == "**Question :** pourquoi ?"


def test_nbval_markers_are_dropped_and_raises_becomes_standard_tag():
    nb = gen.generate(
        _notebook(
            _code("# NBVAL_IGNORE_OUTPUT\nprint(1)", metadata={"tags": ["nbval-skip", "garder"]}),
            _code("# NBVAL_RAISES_EXCEPTION\n1 / 0"),
        )
    )
    assert _source(nb.cells[0]) == "print(1)" and nb.cells[0].metadata == {"tags": ["garder"]}
    assert _source(nb.cells[1]) == "1 / 0" and nb.cells[1].metadata == {"tags": ["raises-exception"]}


def test_metadata_is_minimal_and_ids_are_stable():
    solution = _notebook(
        _code("a = 1", execution_count=3, metadata={"scrolled": True, "ExecuteTime": {"x": 1}}),
        _code("b = 2"),
        _code("c = 3"),
        kernelspec={"name": "mon-env", "display_name": "Mon env", "language": "python"},
        language_info={"name": "python", "version": "3.12.1"},
        widgets={"x": 1},
    )
    solution.cells[1].id = "c0"  # duplicate id
    del solution.cells[2]["id"]  # missing id (old nbformat minor)
    nb = gen.generate(solution)
    assert nb.metadata == gen.LEARNER_METADATA and nb.cells[0].metadata == {}
    ids = [cell.id for cell in nb.cells]
    assert ids[0] == "c0" and ids[2] == "cell-2" and len(set(ids)) == 3
    assert [cell.id for cell in gen.generate(solution).cells] == ids
    nbformat.validate(nb)


def test_magics_are_accepted():
    learner = _learner_code("%matplotlib inline\n!echo ok\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    assert learner.startswith("%matplotlib inline\n!echo ok\n# À compléter")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx\n### END SOLUTION\n### END SOLUTION", "imbriqué ligne 2"),
        ("x = 1\n### BEGIN SOLUTION\nx = 2", "ligne 2 jamais fermé"),
        ("x = 1\n### END SOLUTION", "sans « ### BEGIN SOLUTION »"),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "mal formé ligne 1"),
        ("### BEGIN SOLUTION normalisez\nx = 1\n### END SOLUTION", "mal formé ligne 1"),
        ("### begin solution\nx = 1\n### end solution", "mal formé ligne 1"),
        ("layers = [\n    ### BEGIN SOLUTION\n    1,\n    ### END SOLUTION\n]", "plus du Python valide"),
    ],
    ids=["nested", "unterminated", "orphan-end", "single-hash", "missing-colon", "lowercase", "inside-list"],
)
def test_marker_errors_name_notebook_and_cell(source, expected):
    solution = _notebook(_markdown("# Titre"), _code(source))
    with pytest.raises(gen.SolutionMarkerError) as error:
        gen.generate(solution, name="solutions/99_essai.ipynb")
    message = str(error.value)
    assert "solutions/99_essai.ipynb, cellule n° 2 (id c1)" in message and expected in message


def test_marker_in_markdown_is_an_error():
    with pytest.raises(gen.SolutionMarkerError, match="tag « solution »"):
        gen.generate(_notebook(_markdown("### BEGIN SOLUTION\nréponse\n### END SOLUTION")), name="x.ipynb")


def test_solution_problems_and_strip():
    solution = _notebook(
        _code("print(1)", execution_count=1, outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")]),
        _code(
            "# NBVAL_CHECK_OUTPUT\nprint(2)",
            execution_count=2,
            outputs=[nbformat.v4.new_output("stream", name="stdout", text="2\n")],
        ),
        _code("# NBVAL_CHECK_OUTPUT\nprint(3)"),
    )
    problems = gen.solution_problems(solution)
    assert len(problems) == 2
    assert "cellules n° 1" in problems[0] and gen.STRIP_COMMAND in problems[0]
    assert "NBVAL_CHECK_OUTPUT sans sortie de référence (n° 3)" in problems[1]
    stripped = gen.strip_solution(solution)
    assert stripped.cells[0].outputs == [] and stripped.cells[0].execution_count is None
    assert stripped.cells[1].outputs and stripped.cells[1].execution_count == 2
    assert solution.cells[0].outputs  # input untouched


def test_command_line_generate_check_prune_strip(tmp_path, capsys):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    (solutions / "01_demo.ipynb").write_text(SOLUTION_FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    dirs = ["--solutions", str(solutions), "--notebooks", str(notebooks)]

    assert gen.main(["--check", *dirs]) == 1
    assert "01_demo.ipynb manque" in capsys.readouterr().err

    assert gen.main(dirs) == 0
    assert (notebooks / "01_demo.ipynb").read_text(encoding="utf-8") == LEARNER_FIXTURE.read_text(encoding="utf-8")
    assert gen.main(["--check", *dirs]) == 0
    assert "OK" in capsys.readouterr().out

    (notebooks / "01_demo.ipynb").write_text("{}", encoding="utf-8")
    (notebooks / "02_orphelin.ipynb").write_text("{}", encoding="utf-8")
    assert gen.main(["--check", *dirs]) == 1
    err = capsys.readouterr().err
    assert "01_demo.ipynb n'est pas à jour" in err and "python tools/generate_notebooks.py" in err
    assert "02_orphelin.ipynb n'a pas de solution" in err and "--prune" in err

    assert gen.main(["--prune", *dirs]) == 0
    assert sorted(p.name for p in notebooks.iterdir()) == ["01_demo.ipynb"]

    nb = json.loads((solutions / "01_demo.ipynb").read_text(encoding="utf-8"))
    nb["cells"][1]["execution_count"] = 7
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["périmé\n"]}]
    (solutions / "01_demo.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    assert gen.main(["--check", *dirs]) == 1
    assert "sorties ou numéros d'exécution enregistrés (cellules n° 2)" in capsys.readouterr().err
    assert gen.main(["--strip-solutions", *dirs]) == 0
    assert (solutions / "01_demo.ipynb").read_text(encoding="utf-8") == SOLUTION_FIXTURE.read_text(encoding="utf-8")
    assert gen.main(["--check", *dirs]) == 0


def test_command_line_reports_marker_errors(tmp_path, capsys):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nbformat.write(_notebook(_code("### BEGIN SOLUTION\nx = 1")), solutions / "03_casse.ipynb")
    dirs = ["--solutions", str(solutions), "--notebooks", str(tmp_path / "notebooks")]
    assert gen.main(dirs) == 1
    assert "03_casse.ipynb, cellule n° 1" in capsys.readouterr().err
    assert gen.main(["--check", *dirs]) == 1
    assert "jamais fermé" in capsys.readouterr().err


def test_script_runs_from_another_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "generate_notebooks.py"), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- execution (nbclient)


def test_learner_fixture_stops_at_first_gap_with_french_message():
    index, ename, evalue = run_until_first_error(LEARNER_FIXTURE)
    nb = nbformat.read(LEARNER_FIXTURE, as_version=4)
    assert nb.cells[index].id == "normalisation"
    assert (ename, evalue) == ("NotImplementedError", "À compléter : divisez chaque valeur par 255")


def test_solution_fixture_runs_to_the_end():
    assert run_until_first_error(SOLUTION_FIXTURE) is None


def test_helper_rejects_a_confusing_error_before_the_gap(tmp_path):
    path = tmp_path / "casse.ipynb"
    nbformat.write(
        gen.generate(
            _notebook(_code("valeurs = [1, 2]\nvaleurs[5]"), _code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"))
        ),
        path,
    )
    with pytest.raises(AssertionError, match="IndexError"):
        assert_learner_notebook_fails_only_at_gaps(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", [LEARNER_FIXTURE, *sorted(NOTEBOOKS_DIR.glob("*.ipynb"))], ids=lambda path: path.name)
def test_learner_notebook_fails_only_at_gaps(path):
    assert_learner_notebook_fails_only_at_gaps(path)


# --------------------------------------------------------------------------- nbval setup


def _sanitize(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    for regex, replacement in get_sanitize_patterns(SANITIZE_FILE.read_text(encoding="utf-8")):
        text = re.sub(regex, replacement, text)
    return text


def test_sanitize_file_is_parsed_entirely():
    from nbval.plugin import get_sanitize_patterns

    text = SANITIZE_FILE.read_text(encoding="utf-8")
    patterns = get_sanitize_patterns(text)
    assert len(patterns) == len(re.findall(r"^regex: ", text, flags=re.MULTILINE)) > 0
    for regex, _ in patterns:
        re.compile(regex)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<object object at 0x7f3a2b1c0d90>", "<object object at 0xADRESSE>"),
        (
            "\x1b[1m32/32\x1b[0m \x1b[32m━━━━\x1b[0m \x1b[1m1s\x1b[0m 12ms/step - accuracy: 0.9500",
            "32/32 ━━━━ <DURÉE> <DURÉE>/step - accuracy: 0.9500",
        ),
        ("Epoch 1/5 - ETA: 3s", "Epoch 1/5 - ETA: <DURÉE>"),
        ("2025-11-27 18:57:00.123456: I tensorflow", "<HORODATAGE>: I tensorflow"),
        ("le 27/11/2025 à 18:57:03", "le <DATE> à <HEURE>"),
        ("Wall time: 1.52 s", "Wall time: <DURÉE>"),
        ("/tmp/tmpab12cd/modele.keras", "<TMP>"),
        ("/home/alice/.keras/models/poids.h5", "<HOME>/.keras/models/poids.h5"),
        ("http://127.0.0.1:8000/predict", "http://127.0.0.1:<PORT>/predict"),
        ("port 8765 déjà utilisé", "port <PORT> déjà utilisé"),
        ("id 123e4567-e89b-12d3-a456-426614174000", "id <UUID>"),
        ("Total params: 171,000 (668.00 KB) - Epoch 3/5", "Total params: 171,000 (668.00 KB) - Epoch 3/5"),
    ],
)
def test_sanitizers(raw, expected):
    assert _sanitize(raw) == expected


def _nbval(*args, cwd=ROOT):
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "--nbval-sanitize-with",
        str(SANITIZE_FILE),
        "--nbval-cell-timeout=600",
        *args,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=300)


@pytest.mark.slow
def test_nbval_runs_the_solution_fixture_and_checks_outputs(tmp_path):
    result = _nbval(str(SOLUTION_FIXTURE.relative_to(ROOT)))
    assert result.returncode == 0 and "7 passed" in result.stdout, result.stdout + result.stderr
    # A wrong reference output in a NBVAL_CHECK_OUTPUT cell must fail (the check is not a no-op).
    nb = json.loads(SOLUTION_FIXTURE.read_text(encoding="utf-8"))
    nb["cells"][6]["outputs"][0]["text"] = ["3.1415\n"]
    (tmp_path / "faux.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    result = _nbval(str(tmp_path / "faux.ipynb"))
    assert result.returncode == 1 and "1 failed" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow  # runs pytest in a subprocess: not in the fast subset
def test_nbval_does_not_collect_learner_notebooks_nor_fixtures():
    result = _nbval("--collect-only", "-q", "tests/fixtures")
    assert ".ipynb" not in result.stdout, result.stdout
