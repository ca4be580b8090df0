"""environment.yml (conda) mirrors pyproject.toml: same pip requirements, nothing more, nothing less.

Works on Python 3.10 without tomli or PyYAML: both files are read with small parsers that
understand the subset they use. When tomllib (3.11+) or PyYAML are present, the small parsers
are also checked against them, so they cannot silently drift.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from packaging.requirements import Requirement  # a dependency of pytest itself
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"


# --------------------------------------------------------------------------- minimal TOML subset


def _strip_toml_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def _toml_string(token: str) -> str:
    token = token.strip()
    if token.startswith("'"):
        return token[1:-1]  # literal string: no escapes
    return json.loads(token)  # basic string: JSON-compatible escapes


def parse_pyproject(text: str) -> dict:
    """Return {"requires-python": str, "dependencies": [...], "optional-dependencies": {extra: [...]}}."""
    result: dict = {"requires-python": None, "dependencies": [], "optional-dependencies": {}}
    table = None
    key, buffer = None, ""
    for raw_line in text.splitlines():
        line = _strip_toml_comment(raw_line).strip()
        if key is not None:  # inside a multi-line array
            buffer += " " + line
        elif not line:
            continue
        elif line.startswith("["):
            table = line.strip("[]").strip()
            continue
        else:
            name, _, value = line.partition("=")
            name, value = name.strip().strip('"'), value.strip()
            if table == "project" and name == "requires-python":
                result["requires-python"] = _toml_string(value)
                continue
            if value.startswith("[") and (
                (table == "project" and name == "dependencies") or table == "project.optional-dependencies"
            ):
                key, buffer = (table, name), value
            else:
                continue
        if key is not None and buffer.rstrip().endswith("]"):
            items = re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', buffer)
            values = [_toml_string(item) for item in items]
            if key == ("project", "dependencies"):
                result["dependencies"] = values
            else:
                result["optional-dependencies"][key[1]] = values
            key, buffer = None, ""
    return result


# --------------------------------------------------------------------------- minimal YAML subset


def _yaml_scalar(token: str) -> str:
    token = token.strip()
    if token.startswith('"'):
        return json.loads(token)
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    return re.sub(r"\s+#.*$", "", token).strip()


def parse_environment(text: str) -> dict:
    """Parse the environment.yml layout: scalars, lists, and a ``- pip:`` sub-list."""
    result: dict = {}
    current = None
    pip_indent = None
    for raw_line in text.splitlines():
        if not raw_line.strip() or raw_line.lstrip().startswith("#"):
            continue
        indent = len(raw_line) - len(raw_line.lstrip())
        line = raw_line.strip()
        if indent == 0:
            pip_indent = None
            name, _, value = line.partition(":")
            if value.strip():
                result[name] = _yaml_scalar(value)
            else:
                current = result.setdefault(name, [])
            continue
        assert line.startswith("- "), f"ligne YAML non comprise : {raw_line!r}"
        item = line[2:].strip()
        if pip_indent is not None and indent > pip_indent:
            current[-1]["pip"].append(_yaml_scalar(item))
        elif item == "pip:":
            pip_indent = indent
            current.append({"pip": []})
        else:
            pip_indent = None
            current.append(_yaml_scalar(item))
    return result


# --------------------------------------------------------------------------- helpers


def _key(requirement: str) -> tuple:
    parsed = Requirement(requirement)
    return (
        canonicalize_name(parsed.name),
        tuple(sorted(str(spec) for spec in parsed.specifier)),
        tuple(sorted(parsed.extras)),
        str(parsed.marker) if parsed.marker else "",
    )


def _pyproject() -> dict:
    return parse_pyproject(PYPROJECT.read_text(encoding="utf-8"))


def _environment() -> dict:
    return parse_environment(ENVIRONMENT.read_text(encoding="utf-8"))


def _pip_lines(environment: dict) -> list[str]:
    blocks = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(blocks) == 1, "environment.yml doit avoir exactement une section « - pip: »"
    return blocks[0]


# --------------------------------------------------------------------------- tests


def test_minimal_parsers_agree_with_real_parsers():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = None
    if tomllib is not None:
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
        assert _pyproject() == {
            "requires-python": project["requires-python"],
            "dependencies": project["dependencies"],
            "optional-dependencies": project.get("optional-dependencies", {}),
        }
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        assert _environment() == yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))
    # The minimal parsers are exercised even without tomllib/PyYAML:
    assert _pyproject()["dependencies"] and _pip_lines(_environment())


def test_conda_part():
    environment = _environment()
    assert environment["name"] == "atelier-cnn"
    assert environment["channels"] == ["conda-forge"]
    conda = [item for item in environment["dependencies"] if isinstance(item, str)]
    python_spec = _pyproject()["requires-python"].replace(" ", "")
    assert sorted(conda) == sorted([f"python{python_spec}", "pip"]), (
        f"dépendances conda attendues : python{python_spec} et pip (le reste passe par pip), trouvé : {conda}"
    )


def test_pip_part_mirrors_pyproject():
    project = _pyproject()
    expected = project["dependencies"] + [
        requirement for extra in ("dev",) for requirement in project["optional-dependencies"][extra]
    ]
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


def test_parsers_on_tricky_input():
    toml = (
        '[project]\nname = "x"\nrequires-python = ">=3.10"\ndependencies = [\n'
        '    # a comment with "quotes" and [brackets]\n'
        "    \"a>=1; sys_platform == 'linux'\",  # trailing comment\n"
        "    'b<2',\n]\n[project.optional-dependencies]\ndev = [\"c\"]\ndocs = []\n"
        '[tool.x]\ndependencies = ["not-this"]\n'
    )
    assert parse_pyproject(toml) == {
        "requires-python": ">=3.10",
        "dependencies": ["a>=1; sys_platform == 'linux'", "b<2"],
        "optional-dependencies": {"dev": ["c"], "docs": []},
    }
    yaml_text = (
        "name: env  # comment\nchannels:\n  - conda-forge\ndependencies:\n  - python>=3.10\n  - pip\n"
        "  - pip:\n      # comment\n      - \"a; x == 'y'\"\n      - 'b''s'\n      - c>=1\n  - zlib\n"
    )
    assert parse_environment(yaml_text) == {
        "name": "env",
        "channels": ["conda-forge"],
        "dependencies": ["python>=3.10", "pip", {"pip": ["a; x == 'y'", "b's", "c>=1"]}, "zlib"],
    }
