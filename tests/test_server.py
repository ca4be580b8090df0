"""atelier.server.start_server: in this process, then under real Jupyter kernels (nbclient).

The kernel tests execute ``tests/fixtures/kernel/server_cells.ipynb`` (start an app in a cell, call it
from the next cell, run the start cell again, stop) on this venv's Python and on the other CPython
versions found on the machine (3.10, 3.12, 3.13). For those, a small venv with only what the server needs
(fastapi, uvicorn, ipykernel, requests; no TensorFlow) is created once and cached in pytest's cache
directory; the repository is put on the kernel's PYTHONPATH. A version that is not installed is skipped.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI

from atelier.server import ServerHandle, ServerStartError, free_port, running_servers, start_server, stop_all


def make_app(name: str = "a") -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"pong": name}

    return app


def port_is_free(port: int) -> bool:
    """Can another server listen on ``port`` now?

    With SO_REUSEADDR, like uvicorn and most servers: the server side of closed connections may linger
    in TIME_WAIT, which does not prevent a new server from listening.
    """
    with socket.socket() as sock:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("atelier-serveur")]


def open_fds() -> int | None:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    stop_all()
    assert not server_threads()


def test_start_call_stop_frees_port():
    port = free_port()
    server = start_server(make_app(), port=port)
    assert isinstance(server, ServerHandle)
    assert server.url == f"http://127.0.0.1:{port}" and server.port == port
    assert repr(server) == f"<Serveur en marche sur http://127.0.0.1:{port}>"
    assert requests.get(server.url + "/ping", timeout=5).json() == {"pong": "a"}
    started = time.monotonic()
    server.stop()
    assert port_is_free(port)
    assert time.monotonic() - started < 2
    assert repr(server) == f"<Serveur arrêté sur http://127.0.0.1:{port}>"
    assert not server.running and not server_threads()
    server.stop()  # idempotent


def test_stop_with_open_keep_alive_connection_is_quick():
    server = start_server(make_app(), port=None)
    session = requests.Session()
    assert session.get(server.url + "/ping", timeout=5).status_code == 200  # connection kept open
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert port_is_free(server.port)
    session.close()


def test_port_taken_by_another_program_gives_french_error_quickly():
    with socket.socket() as other:  # another program listening on the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        threads_before = threading.active_count()
        started = time.monotonic()
        with pytest.raises(ServerStartError) as info:
            start_server(make_app(), port=port)
        assert time.monotonic() - started < 1
        message = str(info.value)
        assert f"port {port} est déjà utilisé" in message
        assert "port=None" in message and "Arrêtez" in message
        assert isinstance(info.value, RuntimeError)
        assert threading.active_count() == threads_before and not server_threads()


def test_port_none_picks_a_free_port():
    with start_server(make_app(), port=None) as server:
        assert 0 < server.port < 65536
        assert requests.get(f"{server.url}/ping", timeout=5).ok
    assert port_is_free(server.port)


def test_restart_on_same_port_stops_previous_server():
    port = free_port()
    first = start_server(make_app("premier"), port=port)
    second = start_server(make_app("second"), port=port)  # the same cell run again
    assert not first.running and second.running
    assert requests.get(second.url + "/ping", timeout=5).json() == {"pong": "second"}
    assert len(server_threads()) == 1
    assert running_servers() == [second]
    second.stop()
    assert port_is_free(port)


def test_context_manager_stops():
    with start_server(make_app(), port=None) as server:
        assert server.running
    assert not server.running and port_is_free(server.port) and not server_threads()


def test_stop_all():
    servers = [start_server(make_app(), port=None) for _ in range(3)]
    assert stop_all() == 3
    assert not any(s.running for s in servers)
    assert all(port_is_free(s.port) for s in servers)


def test_invalid_port_and_host():
    with pytest.raises(ServerStartError, match="Port invalide"):
        start_server(make_app(), port=70000)
    with pytest.raises(ServerStartError, match="Adresse d'écoute inconnue"):
        start_server(make_app(), port=None, host="nom-inexistant.invalid")


def test_failing_startup_is_reported_not_hung():
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        raise RuntimeError("modèle absent")
        yield

    app = FastAPI(lifespan=lifespan)
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="pendant son démarrage"):
        start_server(app, port=None, timeout=10)
    assert time.monotonic() - started < 5
    assert not server_threads()


def test_startup_timeout():
    import asyncio
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        await asyncio.sleep(30)
        yield

    with pytest.raises(ServerStartError, match=r"n'a pas démarré en 0\.5 s"):
        start_server(FastAPI(lifespan=lifespan), port=None, timeout=0.5)


@pytest.mark.slow  # twenty real server starts: not in the fast subset
def test_twenty_start_stop_cycles_leak_nothing():
    port = free_port()
    # one warm-up cycle so that lazily created objects (loggers, thread pools) are not counted as leaks
    start_server(make_app(), port=port).stop()
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    for i in range(20):
        server = start_server(make_app(str(i)), port=port)
        with requests.Session() as session:
            assert session.get(server.url + "/ping", timeout=5).json() == {"pong": str(i)}
        server.stop()
        assert port_is_free(port)
    # AnyIO's worker threads (which ran the sync endpoint) are told to exit when their loop closes but are
    # not joined: one may still be finishing right after stop(). A leaked thread is one that stays.
    deadline = time.monotonic() + 5
    while (extra := set(threading.enumerate()) - threads_before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not extra, f"threads still alive 5 s after the last stop(): {sorted(t.name for t in extra)}"
    if fds_before is not None:
        assert open_fds() <= fds_before + 2  # tolerance for unrelated lazily opened files


# --- under a real Jupyter kernel --------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
KERNEL_NOTEBOOK = REPO / "tests" / "fixtures" / "kernel" / "server_cells.ipynb"
KERNEL_REQUIREMENTS = ["fastapi>=0.115,<1", "uvicorn>=0.30,<1", "ipykernel>=6.29,<8", "requests>=2.31,<3"]
OTHER_PYTHONS = [v for v in ("3.10", "3.12", "3.13") if v != f"{sys.version_info[0]}.{sys.version_info[1]}"]


def find_interpreter(version: str) -> str | None:
    """Path of a working ``python<version>``: on PATH, or in pyenv's versions (its shims may refuse to run)."""
    candidates = []
    if shutil.which(f"python{version}"):
        candidates.append(shutil.which(f"python{version}"))
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")))
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys, venv; print(sys.executable); print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) == 2 and lines[1] == version:
            return lines[0]
    return None


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def kernel_venv(request, version: str) -> Path:
    """A cached venv for ``python<version>`` with only the server's dependencies; its interpreter path."""
    interpreter = find_interpreter(version)
    if interpreter is None:
        pytest.skip(f"python{version} n'est pas installé sur cette machine")
    key = hashlib.sha256(json.dumps([interpreter, KERNEL_REQUIREMENTS]).encode()).hexdigest()[:10]
    name = f"atelier-kernel-venv-py{version}-{key}"
    try:
        venv = Path(request.config.cache.mkdir(name))
    except AttributeError:  # cache provider disabled (-p no:cacheprovider): a stable temporary folder
        venv = Path(tempfile.gettempdir()) / "atelier-kernel-venvs" / name
        venv.mkdir(parents=True, exist_ok=True)
    python = venv_python(venv)
    if not (venv / ".ready").exists():
        subprocess.run([interpreter, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *KERNEL_REQUIREMENTS],
            check=True,
            timeout=900,
        )
        (venv / ".ready").write_text(interpreter + "\n")
    return python


def run_kernel_notebook(python: str, tmp_path: Path, port: int):
    """Execute the fixture notebook with a kernel running ``python``; returns the executed notebook."""
    import nbformat
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    kernels = tmp_path / "kernels"
    spec_dir = kernels / "atelier-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "atelier test",
                "language": "python",
                "env": {"PYTHONPATH": str(REPO), "ATELIER_TEST_PORT": str(port)},
            }
        )
    )
    km = KernelManager(kernel_name="atelier-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    nb = nbformat.read(KERNEL_NOTEBOOK, as_version=4)
    NotebookClient(nb, km=km, timeout=60, kernel_name="atelier-test").execute()
    return nb


def check_executed_notebook(nb, port: int, version: str) -> None:
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    url = f"http://127.0.0.1:{port}"

    def text(cell, kind):
        return "".join(
            o.get("text", "") if o["output_type"] == "stream" else o.get("data", {}).get("text/plain", "")
            for o in cell.outputs
            if (o["output_type"] == "stream") == (kind == "stream")
        )

    for cell in code:  # clean output: no log lines, no warnings, no errors
        assert not [o for o in cell.outputs if o["output_type"] == "error" or o.get("name") == "stderr"], cell.outputs
    assert text(code[0], "result") == f"<Serveur en marche sur {url}>"
    assert text(code[1], "result") == "{'message': 'bonjour'}"
    assert text(code[2], "result") == f"<Serveur en marche sur {url}>"
    major, minor = version.split(".")
    assert text(code[3], "stream") == (
        f"{{'message': 'bonjour'}}\nfils serveur : 1\npython ({major}, {minor}) tensorflow importé : False\n"
    )
    assert text(code[3], "result") == f"<Serveur arrêté sur {url}>"


@pytest.mark.slow  # a real Jupyter kernel
def test_notebook_under_real_kernel_this_python(tmp_path):
    port = free_port()
    nb = run_kernel_notebook(sys.executable, tmp_path, port)
    check_executed_notebook(nb, port, f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert port_is_free(port)


@pytest.mark.slow  # a virtual environment and a Jupyter kernel per Python version
@pytest.mark.parametrize("version", OTHER_PYTHONS)
def test_notebook_under_real_kernel_other_python(request, tmp_path, version):
    python = kernel_venv(request, version)
    port = free_port()
    nb = run_kernel_notebook(str(python), tmp_path, port)
    check_executed_notebook(nb, port, version)
    assert port_is_free(port)
