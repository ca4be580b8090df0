"""environment.yml (conda) mirrors pyproject.toml: same pip requirements, nothing more, nothing less.

Both files are read with real parsers: ``tomllib`` (``tomli`` on Python 3.10) and PyYAML, both in the
``dev`` extra.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement  # a dependency of pytest itself
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"


def _key(requirement: str) -> tuple:
    parsed = Requirement(requirement)
    return (
        canonicalize_name(parsed.name),
        tuple(sorted(str(spec) for spec in parsed.specifier)),
        tuple(sorted(parsed.extras)),
        str(parsed.marker) if parsed.marker else "",
    )


def _project() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]


def _environment() -> dict[str, Any]:
    return yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))


def _pip_lines(environment: dict[str, Any]) -> list[str]:
    blocks = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(blocks) == 1, "environment.yml doit avoir exactement une section « - pip: »"
    return blocks[0]


def test_conda_part():
    environment = _environment()
    assert environment["name"] == "atelier-cnn"
    assert environment["channels"] == ["conda-forge"]
    conda = [item for item in environment["dependencies"] if isinstance(item, str)]
    python_spec = _project()["requires-python"].replace(" ", "")
    assert sorted(conda) == sorted([f"python{python_spec}", "pip"]), (
        f"dépendances conda attendues : python{python_spec} et pip (le reste passe par pip), trouvé : {conda}"
    )


def test_pip_part_mirrors_pyproject():
    project = _project()
    expected = project["dependencies"] + project["optional-dependencies"]["dev"]
    actual = _pip_lines(_environment())
    assert not any(line.startswith("-") for line in actual), "pas d'option pip (-e ., -r …) dans environment.yml"
    missing = Counter(map(_key, expected)) - Counter(map(_key, actual))
    extra = Counter(map(_key, actual)) - Counter(map(_key, expected))
    by_key = {_key(line): line for line in expected + actual}
    assert not missing and not extra, (
        "environment.yml diverge de pyproject.toml.\n"
        f"  manquant dans environment.yml : {[by_key[key] for key in missing]}\n"
        f"  en trop ou différent : {[by_key[key] for key in extra]}"
    )


def test_every_packaged_file_exists():
    """Each package-data pattern of pyproject.toml matches at least one file (no ghost « py.typed »)."""
    patterns = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["atelier"]
    missing = [pattern for pattern in patterns if not any((ROOT / "atelier").glob(pattern))]
    assert not missing, f"motifs de package-data sans aucun fichier : {missing}"
