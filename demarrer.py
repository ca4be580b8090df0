#!/usr/bin/env python3
"""Installer et ouvrir l'atelier CNN, ou lancer tous ses tests — avec Python seul (aucun autre outil).

    python demarrer.py                 # installe (la première fois), prépare les données, ouvre JupyterLab
    python demarrer.py tests           # installe (avec les outils de test) et lance toute la suite de tests
    python demarrer.py telecharger DOSSIER   # (formateur) télécharge tous les paquets pour une salle sans internet
    python demarrer.py --hors-ligne DOSSIER  # installe depuis ce dossier, sans internet

Sous Windows, remplacez « python » par « py ». Le script ne dépend que de la bibliothèque standard :
il crée l'environnement virtuel ``.venv`` à côté de lui et n'installe rien ailleurs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LAB_SETTINGS = ROOT / "config" / "jupyterlab" / "overrides.json"
SUPPORTED = ((3, 10), (3, 13))


def fail(message: str) -> None:
    print(f"\nErreur : {message}", file=sys.stderr)
    sys.exit(1)


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def check_python() -> None:
    low, high = SUPPORTED
    major, minor = sys.version_info[:2]
    if not low <= (major, minor) <= high:
        fail(
            f"Python {major}.{minor} n'est pas pris en charge : TensorFlow existe "
            f"pour Python {low[0]}.{low[1]} à {high[0]}.{high[1]}. Installez par exemple Python 3.12 "
            "(python.org) et relancez avec lui : « python3.12 demarrer.py » (Windows : « py -3.12 demarrer.py »)."
        )


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(command: list, **options) -> None:
    result = subprocess.run([str(part) for part in command], **options)
    if result.returncode != 0:
        fail(f"la commande a échoué (code {result.returncode}) : {' '.join(map(str, command))}")


def install(extras: str, wheelhouse: Path | None) -> None:
    """Create ``.venv`` if needed and install the project; skipped when nothing changed since last time."""
    python = venv_python()
    if not python.exists():
        say(f"Création de l'environnement virtuel {VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / ".atelier-installe"
    if stamp.exists() and wanted in stamp.read_text().split():
        say("Environnement déjà à jour")
        return
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    options = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    say("Installation des paquets (quelques minutes la première fois : TensorFlow pèse ~300 Mo)")
    run([python, "-m", "pip", "install", "--disable-pip-version-check", *options, "-e", target])
    # Both variants (with and without the test tools) share the stamp file.
    previous = stamp.read_text().split() if stamp.exists() else []
    stamp.write_text("\n".join([*previous, wanted]) + "\n")


def install_lab_settings(prefix: Path = VENV) -> Path:
    """Install the workshop's JupyterLab defaults (French menus, no news pop-up) into this environment only.

    JupyterLab reads ``<environment>/share/jupyter/lab/settings/overrides.json`` as the default settings of
    the JupyterLab installed there; the user's own settings and global configuration are left alone.
    """
    target = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LAB_SETTINGS, target)
    return target


def free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    return preferred


def open_workshop(args: argparse.Namespace) -> None:
    install("", args.hors_ligne)
    python = venv_python()
    say("Préparation du jeu de données par défaut (images NASA, une seule fois)")
    run([python, "-m", "atelier", "data"])
    install_lab_settings()
    port = free_port(args.port)
    say(f"Ouverture de JupyterLab sur http://127.0.0.1:{port}/lab (Ctrl+C pour arrêter)")
    command = [
        python,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={ROOT}",
        "--LabApp.default_url=/lab/tree/notebooks",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
    ]
    if args.no_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI run as root; Jupyter refuses that unless told
    try:
        sys.exit(subprocess.call([str(part) for part in command], cwd=ROOT))
    except KeyboardInterrupt:
        sys.exit(0)


def run_tests(args: argparse.Namespace, pytest_args: list[str]) -> None:
    install("dev", args.hors_ligne)
    say("Lancement de toute la suite de tests (tests/ et notebooks de solutions/)")
    sys.exit(subprocess.call([str(venv_python()), "-m", "pytest", *pytest_args], cwd=ROOT))


def download(folder: Path) -> None:
    """Fetch every package (with test tools) as wheels for this OS and Python, for an offline room."""
    folder.mkdir(parents=True, exist_ok=True)
    major, minor = sys.version_info[:2]
    say(f"Téléchargement des paquets dans {folder} (pour ce système et Python {major}.{minor})")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "-d",
            folder,
            f"{ROOT}[dev]",
            "setuptools>=68",
            "wheel",
        ]
    )
    say("Terminé. Copiez ce dossier sur les postes puis : python demarrer.py --hors-ligne " + str(folder))


def main(argv: list[str] | None = None) -> None:
    from atelier.french_argparse import FrenchArgumentParser  # stdlib only: usable before installation

    parser = FrenchArgumentParser(
        prog="python demarrer.py",
        description="Installe et ouvre l'atelier CNN (JupyterLab), ou lance ses tests.",
    )
    parser.add_argument(
        "action",
        nargs="?",
        default="atelier",
        choices=["atelier", "tests", "telecharger"],
        help="atelier (défaut) : installer et ouvrir ; tests : lancer tous les tests ; "
        "telecharger DOSSIER : préparer une salle sans internet",
    )
    parser.add_argument("dossier", nargs="?", type=Path, help="dossier des paquets pour « telecharger »")
    parser.add_argument(
        "--hors-ligne",
        type=Path,
        metavar="DOSSIER",
        default=None,
        help="installer sans internet depuis un dossier préparé par « telecharger »",
    )
    parser.add_argument("--port", type=int, default=8888, help="port de JupyterLab (défaut : 8888)")
    parser.add_argument("--no-browser", action="store_true", help="ne pas ouvrir le navigateur")
    args, rest = parser.parse_known_args(argv)
    check_python()
    if args.action == "tests":
        run_tests(args, ([str(args.dossier)] if args.dossier else []) + rest)
    if rest:
        parser.error(f"arguments non reconnus : {' '.join(rest)}")
    if args.action == "telecharger":
        if args.dossier is None:
            parser.error("indiquez le dossier où télécharger les paquets : python demarrer.py telecharger DOSSIER")
        download(args.dossier)
    else:
        open_workshop(args)


if __name__ == "__main__":
    main()
