"""Un ``argparse.ArgumentParser`` qui parle français (aide, erreurs). Bibliothèque standard seulement :
``demarrer.py`` l'utilise avant même que l'atelier soit installé."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USAGE = 2

# argparse's own words (usage, options, errors) are English; these are the ones learners meet.
_FRENCH = {
    "usage: ": "utilisation : ",
    "positional arguments": "arguments",
    "options": "options",
    "show this help message and exit": "afficher cette aide et quitter",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "unrecognized arguments: %s": "arguments non reconnus : %s",
    "invalid %(type)s value: %(value)r": "valeur invalide (%(type)s attendu) : %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)": "choix invalide : %(value)r (possibles : %(choices)s)",
    "argument %(argument_name)s: %(message)s": "argument %(argument_name)s : %(message)s",
    "expected one argument": "une valeur est attendue",
}


def _translate(text: str) -> str:
    return _FRENCH.get(text, text)


class FrenchArgumentParser(argparse.ArgumentParser):
    """Analyseur d'arguments aux messages en français ; une erreur affiche l'usage et sort avec le code 2."""

    def __init__(self, *args, **kwargs):
        # argparse looks its messages up through this module-level gettext alias.
        argparse._ = _translate  # type: ignore[attr-defined]
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"Erreur : {message}\n(« {self.prog} --help » décrit les commandes.)\n")
