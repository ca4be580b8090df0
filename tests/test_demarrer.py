"""The README's first command, ``python demarrer.py``: it sets up, builds the data and really opens JupyterLab.

The second command (``python demarrer.py tests``) is what CI runs, so it is exercised on every CI run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "demarrer.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_script(*args, timeout=60):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=timeout,
    )


def test_help_and_usage_errors_are_french():
    help_text = run_script("--help")
    assert help_text.returncode == 0 and "Installe et ouvre l'atelier" in help_text.stdout
    assert "afficher cette aide" in help_text.stdout
    missing = run_script("telecharger")
    assert missing.returncode == 2 and "indiquez le dossier" in missing.stderr and "Traceback" not in missing.stderr
    wrong = run_script("ouvrir")
    assert wrong.returncode == 2 and "choix invalide" in wrong.stderr


def test_unsupported_python_gets_a_clear_message():
    code = (
        "import sys, runpy; sys.version_info = (3, 14, 0, 'final', 0); sys.argv = ['demarrer.py'];"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", cwd=ROOT)
    assert result.returncode == 1
    assert "Python 3.14 n'est pas pris en charge" in result.stderr and "3.12" in result.stderr


@pytest.mark.skipif(not (ROOT / ".venv").is_dir(), reason="needs the project's .venv, made by `python demarrer.py`")
def test_first_command_opens_jupyterlab_on_the_notebooks(tmp_path):
    """Runs the real command against the project's .venv (already installed: nothing is reinstalled if the
    stamp matches; otherwise pip only checks what is there) and waits until JupyterLab serves the notebooks."""
    port = free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--no-browser", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        listing = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                # The Jupyter server's contents API lists notebooks/ without a token only if auth is off; with the
                # default token it answers 403 — either way, the server is up. Then fetch the lab page itself.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5) as response:
                    listing = response.status
                    break
            except urllib.error.HTTPError as error:
                listing = error.code
                break
            except OSError:
                time.sleep(1)
        assert process.poll() is None, "demarrer.py stopped before JupyterLab answered"
        assert listing in (200, 302, 403), listing
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
    assert "Préparation du jeu de données par défaut" in output
    assert f"http://127.0.0.1:{port}/lab" in output
    assert "Traceback" not in output.split("Ouverture de JupyterLab")[0]
