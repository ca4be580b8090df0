"""Lint and types, in the test command (so in CI): ``ruff check``, ``ruff format --check``, ``mypy atelier``.

The tools are those of the virtual environment (``dev`` extra, versions pinned in pyproject.toml), run as
subprocesses; a failure shows their own output. Part of the fast subset (``pytest -m "not slow"``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "--no-cache", "."],
        ["ruff", "format", "--check", "--no-cache", "."],
        ["mypy"],  # files and options: [tool.mypy] in pyproject.toml
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(command):
    result = subprocess.run(
        [sys.executable, "-m", *command], capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=600
    )
    assert result.returncode == 0, f"{' '.join(command)} a échoué :\n{result.stdout}\n{result.stderr}"
