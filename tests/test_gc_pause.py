"""atelier.gc_pause: the objects present once the model is loaded are frozen (no long collection under load)."""

from __future__ import annotations

import gc
import time

from fastapi.testclient import TestClient

from atelier import gc_pause
from atelier.api import create_app


def test_freeze_swap_and_thaw(monkeypatch):
    monkeypatch.setattr(gc_pause, "REFREEZE_DELAY_S", 0.05)
    try:
        gc_pause.freeze()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # pytest, numpy… everything present now is out of the collections' way
        gc_pause.after_swap()
        assert gc.get_freeze_count() == 0  # at once: the old model can be collected
        deadline = time.monotonic() + 10
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.get_freeze_count() > 1000  # frozen again, after the collection
    finally:
        gc_pause.thaw()
    assert gc.get_freeze_count() == 0
    gc_pause.after_swap()  # not frozen: nothing to do, nothing scheduled
    time.sleep(0.1)
    assert gc.get_freeze_count() == 0


def test_the_api_freezes_while_it_serves(saved_model):
    with TestClient(create_app(saved_model[0], db_path=":memory:")):
        assert gc.get_freeze_count() > 1000
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(saved_model[0], db_path=":memory:", gc_freeze=False)):
        assert gc.get_freeze_count() == 0
