"""History: retention (old rows and rows beyond the cap deleted), write-behind (ids at once, no row lost)."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import time

import pytest

from atelier import history as history_module
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
    history.flush()  # the rows are written behind: make them reachable by a direct UPDATE
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


# --- write-behind: ids at once, rows written by a background thread, nothing lost on a clean stop -------------


def stored_ids(path) -> list[int]:
    """The ids really in the file, read by another connection (like another program would)."""
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("SELECT id FROM predictions ORDER BY id")]
    finally:
        connection.close()


def test_rows_are_written_behind_and_none_is_lost_on_close(tmp_path, monkeypatch):
    monkeypatch.setattr(history_module, "FLUSH_INTERVAL_S", 60.0)  # the writer would wait a minute
    path = tmp_path / "h.sqlite3"
    history = History(path)
    ids = add(history, 25)
    assert ids == list(range(1, 26))  # one process: consecutive ids, returned before any write
    assert stored_ids(path) == []  # nothing written yet: the request path did not touch the base
    history.close()  # a clean stop writes everything
    assert stored_ids(path) == ids


def test_the_background_writer_writes_within_its_interval(tmp_path):
    path = tmp_path / "h.sqlite3"
    history = History(path)
    ids = add(history, 10)
    deadline = time.monotonic() + 10
    while stored_ids(path) != ids and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored_ids(path) == ids
    history.close()


def test_an_id_not_yet_written_can_be_read_and_updated_at_once(tmp_path, monkeypatch):
    """What feedback or deletion on a fresh prediction_id relies on: every use of the lock writes first."""
    monkeypatch.setattr(history_module, "FLUSH_INTERVAL_S", 60.0)
    history = History(tmp_path / "h.sqlite3")
    (fresh,) = add(history, 1)
    with history._lock:
        changed = history._conn.execute("UPDATE predictions SET label = 'forêt' WHERE id = ?", (fresh,)).rowcount
    assert changed == 1
    assert history.page(1)[1][0]["label"] == "forêt" and history.count() == 1
    history.close()


def test_histories_sharing_a_file_never_share_an_id(tmp_path, monkeypatch):
    """Several processes (--workers) on one file: blocks of ids reserved atomically in the base."""
    monkeypatch.setattr(history_module, "ID_BLOCK", 4)
    path = tmp_path / "h.sqlite3"
    first, second = History(path), History(path)
    ids = []
    for _ in range(5):  # interleaved, several blocks each
        ids += add(first, 3) + add(second, 3)
    assert len(set(ids)) == len(ids) == 30
    first.close()
    second.close()
    assert stored_ids(path) == sorted(ids)
    again = History(path)  # the unused end of the last block was given back: no gap after a restart
    assert add(again, 1) == [max(ids) + 1]
    again.close()


def test_the_sha256_is_computed_by_the_writer(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    history.add(label="mer", probabilities={"mer": 1.0}, model_version="1", image=b"abc", filename=None, duration_ms=1)
    assert history.page(1)[1][0]["image_sha256"] == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(ValueError, match="image_sha256"):
        history.add(label="mer", probabilities={}, model_version="1", filename=None, duration_ms=1)
    history.close()
