"""Schemathesis ``--checks all`` against a real server: the OpenAPI describes what the server really does.

Every check (no 500, documented status codes and content types, response schemas, schema-valid requests
accepted, invalid ones rejected, ``Allow`` of the 405…) on every operation, with a fixed seed and a few examples
per operation so that the run stays short. The only setting is ``tests/schemathesis.toml`` (the content errors
of the three file uploads, which OpenAPI cannot describe: see its comments).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atelier.api import create_app
from atelier.server import start_server

# Slow: a real server and about a thousand requests (left out by pytest -m "not slow").
pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 1
MAX_EXAMPLES = 10


def test_schemathesis_all_checks_pass(saved_model, tmp_path):
    # The workshop's CNN (untrained): Grad-CAM can explain it, so POST /explain answers 200 (not 501).
    app = create_app(saved_model[0], db_path=tmp_path / "h.sqlite3")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
    ]
    with start_server(app, port=None) as server:
        result = subprocess.run(
            [*command, f"{server.url}/openapi.json"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # its cache folder (.schemathesis/) goes there, not into the repository
            env={**os.environ, "NO_COLOR": "1"},
        )
    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Operations:" in result.stdout and "failures" not in result.stdout.lower().split("summary")[-1], report
