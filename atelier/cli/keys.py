"""Commande ``python -m atelier cle`` : créer, révoquer ou lister les clés d'API d'un fichier de clés.

La clé créée est affichée **une seule fois** : le fichier n'en garde que l'empreinte SHA-256
(:mod:`atelier.keys`). Un serveur lancé avec ``--keys-file`` relit le fichier dès qu'il change.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..keys import ROLE_INFERENCE, ROLES, add_key, describe, read_keys_file, revoke_key
from .core import CliError, Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys-file",
        type=Path,
        default=os.environ.get("ATELIER_KEYS_FILE") or None,
        help="le fichier de clés JSON (défaut : $ATELIER_KEYS_FILE) ; créé s'il n'existe pas",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--label", help="créer une clé avec cette étiquette (par exemple eleve-01)")
    action.add_argument("--revoquer", metavar="ETIQUETTE", help="révoquer la clé qui porte cette étiquette")
    action.add_argument("--liste", action="store_true", help="lister les étiquettes et les rôles")
    parser.add_argument(
        "--role",
        default=ROLE_INFERENCE,
        help=f"rôle de la clé créée : {' ou '.join(ROLES)} (défaut : {ROLE_INFERENCE} ; « inference » accepté)",
    )


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.keys_file is None:
        raise CliError("Indiquez le fichier de clés : --keys-file cles.json (ou la variable ATELIER_KEYS_FILE).")
    path = Path(args.keys_file).expanduser()
    if args.liste:
        return {"keys_file": str(path), "cles": describe(read_keys_file(path)) if path.exists() else []}
    if args.revoquer:
        revoke_key(path, args.revoquer)
        print(f"Clé « {args.revoquer} » révoquée : le serveur la refuse dès qu'il voit le fichier changé.", flush=True)
        return {"keys_file": str(path), "revoquee": args.revoquer}
    secret = add_key(path, args.label, args.role)
    role = next(key.role for key in read_keys_file(path) if key.label == args.label)
    print(
        f"Clé « {args.label} » ({role}) créée. Notez-la maintenant : elle ne sera plus jamais affichée "
        f"(le fichier n'en garde que l'empreinte). En-tête à envoyer : X-API-Key: {secret}",
        flush=True,
    )
    return {"keys_file": str(path), "label": args.label, "role": role, "cle": secret}


KEYS = Command("cle", _add_arguments, _run, "créer, révoquer ou lister les clés d'API d'un fichier de clés")
