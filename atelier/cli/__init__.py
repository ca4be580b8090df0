"""Ligne de commande de l'atelier : ``python -m atelier <commande>``.

Chaque commande écrit sur sa dernière ligne de sortie un objet JSON (facile à lire par un script) ;
une erreur donne un message en français et un code de sortie non nul, sans trace Python.

Une commande = un module de ce paquet qui définit une :class:`~atelier.cli.core.Command` ; la liste
:data:`COMMANDS` (dans :mod:`atelier.cli.main`) les importe explicitement, dans l'ordre de l'aide.
"""

from .core import CliError, Command
from .main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "CliError", "Command", "build_parser", "main"]
