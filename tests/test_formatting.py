import math

import pytest

from atelier.formatting import decimal, percent


@pytest.mark.parametrize(
    ("fraction", "decimals", "expected"),
    [(0.975, 1, "97,5\u202f%"), (0.5, 0, "50\u202f%"), (1.0, 1, "100,0\u202f%"), (0.00049, 1, "0,0\u202f%")],
)
def test_percent_uses_comma_and_narrow_space(fraction, decimals, expected):
    assert percent(fraction, decimals) == expected


def test_decimal_and_nan():
    assert decimal(0.354, 2) == "0,35"
    assert decimal(-1.25, 1) in {"-1,2", "-1,3"}
    assert decimal(math.nan) == "—" and percent(math.nan) == "—"
