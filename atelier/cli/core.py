"""Ce que toutes les commandes de ``python -m atelier`` partagent : l'erreur à afficher et la forme d'une commande.

Module feuille : il n'importe aucun autre module de l'atelier, si bien que chaque module de commande peut
l'importer sans jamais dépendre de :mod:`atelier.cli` lui-même.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class CliError(Exception):
    """Erreur à afficher telle quelle à l'utilisateur.

    ``result`` : un objet JSON à écrire malgré tout sur la dernière ligne de la sortie (par exemple ce qu'une
    commande a mesuré avant de refuser) ; le code de sortie reste non nul.
    """

    def __init__(self, message: str, *, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Command:
    """Une sous-commande : son nom, ses arguments, son exécution (qui renvoie un dict JSON ou ``None``), son aide."""

    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]
    help: str
