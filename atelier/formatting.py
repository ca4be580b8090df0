"""Nombres écrits à la française dans les sorties des notebooks : « 97,5 % », « 0,35 ».

Une virgule décimale et une espace fine insécable avant le signe % (typographie française) ::

    >>> percent(0.975)
    '97,5\u202f%'
    >>> percent(0.5, 0)
    '50\u202f%'
    >>> decimal(0.354, 2)
    '0,35'
"""

from __future__ import annotations

import math

__all__ = ["decimal", "percent"]

NARROW_NO_BREAK_SPACE = "\u202f"


def decimal(value: float, decimals: int = 2) -> str:
    """``0.354`` → ``"0,35"`` : ``decimals`` chiffres après la virgule ; ``"—"`` pour NaN."""
    value = float(value)
    if math.isnan(value):
        return "—"
    return f"{value:.{decimals}f}".replace(".", ",")


def percent(fraction: float, decimals: int = 1) -> str:
    """``0.975`` → ``"97,5 %"`` (fraction entre 0 et 1 ; ``decimals`` chiffres après la virgule)."""
    text = decimal(100 * float(fraction), decimals)
    return text if text == "—" else text + NARROW_NO_BREAK_SPACE + "%"
