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


# --- feedback, erasure, stored images -------------------------------------------------------------------
def add_image(history: History, directory, content: bytes, label: str = "mer") -> tuple[int, str]:
    """One prediction whose image is stored in *directory* (as the API does)."""
    import hashlib

    from atelier.image_store import store_image

    digest = hashlib.sha256(content).hexdigest()
    prediction_id = history.add(
        label=label,
        probabilities={label: 1.0},
        model_version="1",
        image_sha256=digest,
        filename="x.png",
        duration_ms=1.0,
    )
    store_image(directory, digest, b"\x89PNG" + content)
    return prediction_id, digest


def test_feedback_is_stored_filtered_and_listed():
    history = History(":memory:")
    first, second, third = add(history, 3)  # all predicted "mer"
    row = history.set_feedback(first, "forêt", comment="  c'était des arbres\x00 ", by="classe-b")
    assert (row["feedback_label"], row["feedback_comment"], row["feedback_by"]) == (
        "forêt",
        "c'était des arbres",
        "classe-b",
    )
    assert row["feedback_at"] and history.get(first) == row
    history.set_feedback(second, "mer")
    assert [i["id"] for i in history.page(feedback="wrong")[1]] == [first]
    assert [i["id"] for i in history.page(feedback="right")[1]] == [second]
    assert history.page(feedback="none") == (1, [history.get(third)])
    assert history.page()[0] == 3
    assert [(r["id"], r["label"], r["feedback_label"]) for r in history.feedback_rows()] == [
        (first, "mer", "forêt"),
        (second, "mer", "mer"),
    ]
    assert set(history.feedback_rows()[0]) == {
        "id",
        "image_sha256",
        "label",
        "feedback_label",
        "model_version",
        "created",
    }
    # A new feedback replaces the old one.
    history.set_feedback(first, "mer")
    assert history.page(feedback="wrong")[0] == 0


def test_feedback_errors_are_french():
    from atelier.history import MAX_COMMENT_CHARS, FeedbackError, UnknownPredictionError

    history = History(":memory:")
    (prediction_id,) = add(history, 1)
    with pytest.raises(FeedbackError, match="Classes acceptées : forêt, mer, désert, nuageux"):
        history.set_feedback(prediction_id, "foret")
    with pytest.raises(FeedbackError, match="Commentaire trop long"):
        history.set_feedback(prediction_id, "mer", comment="x" * (MAX_COMMENT_CHARS + 1))
    with pytest.raises(UnknownPredictionError, match="Aucune prédiction numéro 99"):
        history.set_feedback(99, "mer")
    with pytest.raises(ValueError, match="Filtre de retour inconnu"):
        history.page(feedback="faux")
    assert history.get(prediction_id)["feedback_label"] is None and history.get(99) is None


def test_an_old_base_gains_the_feedback_columns(tmp_path):
    import sqlite3

    path = tmp_path / "ancienne.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL, label TEXT NOT NULL,"
        " probabilities TEXT NOT NULL, model_version TEXT NOT NULL, image_sha256 TEXT NOT NULL, filename TEXT,"
        " duration_ms REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO predictions (created, label, probabilities, model_version, image_sha256, filename, duration_ms)"
        " VALUES ('2026-01-01T00:00:00.000+00:00', 'mer', '{\"mer\": 1.0}', '1', ?, NULL, 1.0)",
        ("0" * 64,),
    )
    conn.commit()
    conn.close()
    history = History(path, retention_days=None)
    assert history.get(1)["feedback_label"] is None
    assert history.set_feedback(1, "désert")["feedback_label"] == "désert"
    History(path, retention_days=None).close()  # a second opening finds the columns already there


def test_delete_removes_the_row_and_its_image_unless_shared(tmp_path):
    from atelier.image_store import find_image

    images = tmp_path / "images"
    history = History(tmp_path / "h.sqlite3", images_dir=images)
    alone, alone_digest = add_image(history, images, b"une")
    twice_a, shared = add_image(history, images, b"deux")
    twice_b, _ = add_image(history, images, b"deux")
    assert history.delete(alone) is True and history.get(alone) is None
    assert find_image(images, alone_digest) is None
    assert history.delete(alone) is False
    assert history.delete(twice_a) and find_image(images, shared) is not None  # still used by twice_b
    assert history.delete(twice_b) and find_image(images, shared) is None
    assert list(images.iterdir()) == []


def test_stored_images_follow_the_retention(tmp_path):
    from atelier.image_store import find_image

    images = tmp_path / "images"
    history = History(tmp_path / "h.sqlite3", retention_days=7, max_rows=2, images_dir=images)
    old, old_digest = add_image(history, images, b"vieille")
    shared_old, shared = add_image(history, images, b"partagee")
    age_rows(history, [old, shared_old], 8)
    _recent, recent_digest = add_image(history, images, b"recente")
    again, _ = add_image(history, images, b"partagee")  # the same image, sent again: kept with its row
    newest, newest_digest = add_image(history, images, b"nouvelle")
    assert history.prune() == 3  # two by age, then one beyond max_rows
    assert [i["id"] for i in history.page()[1]] == [newest, again]
    assert find_image(images, old_digest) is None and find_image(images, recent_digest) is None
    assert find_image(images, shared) is not None and find_image(images, newest_digest) is not None
    # Without images_dir the history never touches the folder.
    other = History(":memory:", retention_days=None, max_rows=1)
    add_image(other, images, b"a")
    add_image(other, images, b"b")
    assert other.prune() == 1 and len(list(images.iterdir())) == 4


def test_image_store_names_and_finds_images_by_content(tmp_path):
    from atelier.image_store import delete_image, find_image, store_image

    digest = "a" * 64
    path = store_image(tmp_path, digest, b"\xff\xd8\xff rest")
    assert path.name == f"{digest}.jpg" and find_image(tmp_path, digest) == path
    assert store_image(tmp_path, digest, b"\xff\xd8 other") == path and path.read_bytes() == b"\xff\xd8\xff rest"
    assert delete_image(tmp_path, digest) and not path.exists() and not delete_image(tmp_path, digest)
    assert find_image(None, digest) is None and find_image(tmp_path / "absent", digest) is None
    with pytest.raises(ValueError, match="Empreinte SHA-256 invalide"):
        find_image(tmp_path, "../../etc/passwd")
    assert [p.name for p in tmp_path.iterdir()] == []
