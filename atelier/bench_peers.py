"""``python -m atelier bench --peers`` : le même modèle servi par LitServe, dans un environnement à part.

LitServe n'est pas une dépendance de l'atelier (ni des tests) : la première fois, ``--peers`` crée un
environnement virtuel dans le cache de l'atelier (``<cache>/bench-peers/``), y installe LitServe depuis
PyPI (:data:`LITSERVE_REQUIREMENT`), puis y ajoute, par un fichier ``.pth``, les paquets de cet
environnement-ci (TensorFlow, Pillow, NumPy, l'atelier) *après* ceux de LitServe : le pair appelle le
même modèle avec le même :func:`~atelier.preprocessing.load_image`. Le serveur du pair est
:mod:`atelier.bench_litserve` (lots de 16, attente de 1 ms, ``fast_queue``, fonction ``tf.function`` à
signature fixe chauffée pour les lots de 1 à 16).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from .bench import BenchError, ServerProcess
from .paths import cache_dir
from .server import free_port

#: What ``--peers`` installs in its own environment (a range, like the project's dependencies).
LITSERVE_REQUIREMENT = "litserve>=0.2.16,<0.3"
#: LitServe starts a separate inference process that imports TensorFlow: give it time on a busy machine.
PEER_STARTUP_TIMEOUT_S = 300


def _python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def peer_environment(log) -> Path:
    """The Python of the LitServe environment, created (once) under the atelier's cache."""
    venv = cache_dir() / "bench-peers" / f"litserve-py{sys.version_info.major}{sys.version_info.minor}"
    python = _python_of(venv)
    ready = venv / ".atelier-pret"
    if not ready.exists():
        log(f"Création de l'environnement de LitServe dans {venv} (une seule fois)…")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", LITSERVE_REQUIREMENT], check=True, capture_output=True
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace")[-2000:]
            raise BenchError(f"Installation de LitServe impossible (réseau ? PyPI ?) :\n{detail}") from None
        ready.write_text(LITSERVE_REQUIREMENT + "\n", encoding="utf-8")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # This environment's packages after LitServe's own (a .pth line is appended to sys.path).
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(Path(__file__).parents[1])}
    (Path(purelib) / "atelier-bench.pth").write_text("\n".join(sorted(ours)) + "\n", encoding="utf-8")
    return python


@contextlib.contextmanager
def litserve_server(model: Path, workdir: Path, log) -> Iterator[ServerProcess]:
    """LitServe serving *model* on a free port, stopped on exit."""
    python = peer_environment(log)
    port = free_port()
    log("Démarrage de LitServe (atelier.bench_litserve)…")
    command = [str(python), "-m", "atelier.bench_litserve", str(model), str(port)]
    with ServerProcess("litserve", command, port, workdir, timeout=PEER_STARTUP_TIMEOUT_S) as server:
        yield server
