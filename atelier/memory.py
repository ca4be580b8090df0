"""Rendre au système la mémoire des grandes images décodées (Linux, glibc).

Le décodage d'une grande image alloue des blocs de plusieurs Mo (Pillow, libwebp). Par défaut, glibc
relève son seuil ``mmap`` à chaque grand bloc libéré (jusqu'à 32 Mo) : les blocs suivants viennent alors
du tas, qui se fragmente et ne rend presque rien au système. 40 clients qui envoient chacun trois images
4K, décodées deux à la fois (:class:`atelier.preprocessing.DecodeBudget`), laissaient ainsi le serveur
à +0,9 Go (mesuré par ``tests/test_api_hostile_models.py``) ; limiter les arènes (``MALLOC_ARENA_MAX=2``)
n'y change rien (+1,0 Go), un seuil ``mmap`` fixe si (+0,26 Go).

* :func:`return_large_blocks_to_os` (l'API, au démarrage) : un seuil fixe de :data:`MMAP_THRESHOLD_BYTES` ;
  chaque bloc plus grand est alloué par ``mmap`` et rendu au système dès sa libération. Les lots d'images
  du réseau (moins de 4 Mio jusqu'à 8 images 64×64) ne sont pas concernés ;
* :func:`release_free_memory` (``malloc_trim``) rend les pages libres du tas ;
  :class:`atelier.preprocessing.DecodeBudget` l'appelle après chaque grande image seulement (quelques
  millisecondes, jamais pour les petites images de ``/predict``).

Sans effet hors de Linux/glibc : les allocateurs de macOS et Windows rendent déjà les grands blocs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

#: Allocations from this size up are mapped and unmapped directly (fixed: glibc no longer raises it).
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h

_LIBC: Any = None  # glibc, or False where there is none


def _glibc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            except (OSError, AttributeError):  # not glibc (musl…)
                return _LIBC
            _LIBC = libc
    return _LIBC


def return_large_blocks_to_os(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Les blocs de ``malloc`` d'au moins *threshold* octets sont rendus au système dès leur libération ;
    vrai si appliqué (glibc)."""
    libc = _glibc()
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) if libc else False


def release_free_memory() -> bool:
    """Rend au système la mémoire libre des arènes de ``malloc`` ; vrai si des pages ont été rendues."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc else False
