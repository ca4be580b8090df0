"""The README's first command, ``python demarrer.py``: it sets up, builds the data and really opens JupyterLab.

The second command (``python demarrer.py tests``) is what CI runs, so it is exercised on every CI run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from atelier.server import free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "demarrer.py"


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
    installed = ROOT / ".venv" / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.read_bytes() == (ROOT / "config" / "jupyterlab" / "overrides.json").read_bytes()
    assert f"http://127.0.0.1:{port}/lab" in output
    assert "Traceback" not in output.split("Ouverture de JupyterLab")[0]


# --------------------------------------------------------------------------- JupyterLab in French, no news pop-up


def _demarrer_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("demarrer_module", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lab_overrides_make_french_the_default_and_turn_the_news_off():
    import json

    overrides = json.loads((ROOT / "config" / "jupyterlab" / "overrides.json").read_text(encoding="utf-8"))
    assert overrides["@jupyterlab/translation-extension:plugin"] == {"locale": "fr_FR"}
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}
    # Every overridden setting exists in the schemas of the installed JupyterLab, with an allowed value.
    schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    for plugin, values in overrides.items():
        package, name = plugin.split(":")
        schema = json.loads((schemas / package / f"{name}.json").read_text(encoding="utf-8"))
        for key, value in values.items():
            spec = schema["properties"][key]
            allowed = [choice["const"] for choice in spec.get("oneOf", [])]
            assert not allowed or value in allowed, (plugin, key, value)
    packs = Path(sys.prefix).glob("lib*/**/jupyterlab_language_pack_fr_FR/locale/fr_FR")
    assert any(packs), "le paquet de langue jupyterlab-language-pack-fr-FR n'est pas installé"


def test_install_lab_settings_writes_only_into_the_given_environment(tmp_path):
    demarrer = _demarrer_module()
    target = demarrer.install_lab_settings(tmp_path / "venv")
    assert target == tmp_path / "venv" / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert target.read_bytes() == demarrer.LAB_SETTINGS.read_bytes()
    assert demarrer.install_lab_settings(tmp_path / "venv") == target  # idempotent


def test_headless_jupyterlab_serves_french_defaults(tmp_path):
    """A real JupyterLab reading the overrides as installed by demarrer.py: its settings API says fr_FR."""
    import json

    settings = _demarrer_module().install_lab_settings(tmp_path / "venv").parent
    port, token = free_port(), "jeton-de-test"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={tmp_path}",
        f"--LabApp.app_settings_dir={settings}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/lab/api"

    def get(path):
        with urllib.request.urlopen(f"{base}/{path}?token={token}", timeout=5) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 120
        translation = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                translation = get("settings/@jupyterlab/translation-extension:plugin")
                break
            except OSError:
                time.sleep(1)
        assert translation is not None, "JupyterLab n'a pas répondu"
        assert translation["schema"]["properties"]["locale"]["default"] == "fr_FR"
        notification = get("settings/@jupyterlab/apputils-extension:notification")
        assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
        assert notification["schema"]["properties"]["checkForUpdates"]["default"] is False
        french = get("translations/fr_FR")
        assert french["data"] and "jupyterlab" in french["data"]
        assert "Fichier" in json.dumps(french["data"]["jupyterlab"], ensure_ascii=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
