"""pytest hooks: a separate cache for tests, and nbval settings (``pytest --nbval-lax solutions/``).

* stderr is not compared: TensorFlow/Keras write warnings and log lines with timestamps to
  stderr, which would make ``# NBVAL_CHECK_OUTPUT`` cells flaky. Errors still fail the cell.
* every notebook cell is marked ``slow`` (a notebook builds data, trains, serves): the contributors'
  fast subset ``pytest -m "not slow"`` leaves them out.
* nbval never collects ``notebooks/`` (learner notebooks stop at their first gap on purpose;
  ``tests/test_notebook_sync.py`` checks that) nor ``tests/fixtures/`` (generator fixtures),
  so that ``pytest --nbval-lax`` without a path, or with ``.``, does not run them. A notebook
  given explicitly on the command line is still collected.
"""

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent

# Tests and the notebooks nbval runs build the default dataset and save models: keep them in a cache of
# their own (git-ignored), so that running the tests never overwrites a learner's trained models.
os.environ.setdefault("ATELIER_CACHE", str(_ROOT / ".atelier-tests"))
_NOT_FOR_NBVAL = (_ROOT / "notebooks", _ROOT / "tests" / "fixtures")


def _nbval_enabled(config):
    return bool(config.getoption("nbval", False) or config.getoption("nbval_lax", False))


def pytest_collectstart(collector):
    skip_compare = getattr(collector, "skip_compare", None)
    if isinstance(skip_compare, tuple) and "stderr" not in skip_compare:
        collector.skip_compare = (*skip_compare, "stderr")


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix != ".ipynb" or not _nbval_enabled(config):
        return None  # let pytest decide (returning False would override its default ignores)
    path = Path(collection_path).resolve()
    if any(path.is_relative_to(folder) for folder in _NOT_FOR_NBVAL):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
