"""History retention: old rows and rows beyond the cap are deleted, the newest are kept."""

from __future__ import annotations

import datetime as dt

import pytest

from atelier.history import DEFAULT_MAX_ROWS, DEFAULT_RETENTION_DAYS, History


def add(history: History, n: int) -> list[int]:
    return [
        history.add(
            label="mer",
            probabilities={"mer": 1.0},
            model_version="1",
            image_sha256="0" * 64,
            filename=f"{i}.jpg",
            duration_ms=1.0,
        )
        for i in range(n)
    ]


def age_rows(history: History, ids: list[int], days: float) -> None:
    created = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).isoformat(timespec="milliseconds")
    history._conn.executemany("UPDATE predictions SET created = ? WHERE id = ?", [(created, i) for i in ids])


def test_defaults_are_the_documented_ones():
    history = History(":memory:")
    assert (history.retention_days, history.max_rows) == (DEFAULT_RETENTION_DAYS, DEFAULT_MAX_ROWS) == (30, 100_000)


def test_rows_older_than_the_retention_are_deleted(tmp_path):
    history = History(tmp_path / "h.sqlite3", retention_days=7, max_rows=None)
    old = add(history, 5)
    recent = add(history, 3)
    age_rows(history, old, 8)
    age_rows(history, recent[:1], 6)
    assert history.prune() == 5
    assert [item["id"] for item in history.page(50)[1]] == recent[::-1]
    assert history.prune() == 0
    age_rows(history, recent, 10)
    assert history.prune() == 3 and history.count() == 0


def test_only_the_newest_rows_are_kept(tmp_path):
    history = History(tmp_path / "h.sqlite3", retention_days=None, max_rows=4)
    ids = add(history, 10)
    assert history.prune() == 6
    assert [item["id"] for item in history.page(50)[1]] == ids[-4:][::-1]
    assert history.prune() == 0


def test_zero_means_unlimited_and_negative_is_refused():
    history = History(":memory:", retention_days=0, max_rows=0)
    add(history, 3)
    age_rows(history, [1, 2, 3], 10_000)
    assert history.prune() == 0 and history.count() == 3
    with pytest.raises(ValueError, match="max_rows"):
        History(":memory:", max_rows=-1)
