"""Des exercices qui répondent : ``verifier()``, ``indice()`` et ``solution()`` pour chaque exercice.

Dans un notebook de l'atelier ::

    from atelier.exercices import chapitre1 as ex

    ex.ex1.verifier()   # ✅ juste / ❌ faux, avec l'explication / 🟡 pas encore fait
    ex.ex1.indice()     # indice 1, puis 2, 3… à chaque appel ; ex.ex1.indice(2) : l'indice 2
    ex.ex1.solution()   # le code corrigé, lu dans solutions/

Documentation pour les auteurs (how to add an exercise)
========================================================

One module per chapter (``chapitre1.py``, ``chapitre2.py``…); each exercise is a *check function*
decorated with :func:`exercise`. The parameters of the function are the names of the notebook variables
to check: ``verifier()`` looks them up in the learner's namespace (``verifier(x)`` or ``verifier(name=x)``
also work, which is what the tests do through :meth:`Exercise.evaluate`)::

    @exercise(
        notebook="01_preparation_donnees.ipynb",   # file name in solutions/
        cells="normalisation",                      # id of the solution cell (several: a tuple)
        hints=("goal-level hint", "closer hint", "almost the code"),
        success="message shown after ✅",
    )
    def ex1(normalize):
        result = attempt(normalize, batch, what="normalize(images)")   # runs learner code safely
        expect(result.dtype == tf.float32, "float64 au lieu de float32 : …")  # one check, one message
        expect(...)

* **Checks.** ``expect(condition, message)`` is one check; the first failing check gives the ❌ line, so put
  the checks in the order a learner would fix them and give each typical mistake its own check and its own
  French message (say what is wrong *and* what to do). Check behaviour (values, dtypes, shapes, layer
  configurations, a model's output on fixed inputs, an HTTP answer, an SQL result), never source text.
  Raise :class:`Wrong` directly for a computed message, :class:`NotDone` for "not started yet".
* **Learner code** is called through :func:`attempt`: ``NotImplementedError("À compléter…")`` becomes
  🟡, any other exception a ❌ line naming the exception in French; ``known_errors`` (type, message
  fragment, explanation) or ``explain(exception)`` explain typical exceptions precisely — e.g. Keras'
  ``ValueError`` for ``RandomRotation(90)``, told apart from ``RandomContrast(20)`` with
  ``raised_in(error, "random_rotation")``, which looks at the traceback's file names. An unexpected exception in
  the check itself (an answer of the wrong kind) is also turned into a ❌ line: the learner never sees a
  traceback. A variable that is missing, ``...`` or ``None`` gives 🟡 without calling the check.
* **Solution.** Mark the answer in the solution notebook with ``### BEGIN SOLUTION`` / ``### END
  SOLUTION`` (or the ``solution`` tag) as ``tools/generate_notebooks.py`` expects, and give that cell a
  stable ``id``: ``solution()`` prints that cell of ``solutions/<notebook>`` without the markers. There is
  no second copy of the solution. ``solutions/`` is found next to the package (repository checkout), in the
  current folder or its parent (``notebooks/``), or in ``$ATELIER_SOLUTIONS``.
* **Hints** go from the goal to the method; the last one is nearly the code. Gaps in the notebook name
  the goal, not the code.
* **Notebook.** ``## Exercice N``, the statement, the gap cell, then a cell ``ex.exN.verifier()``
  (tagged ``# NBVAL_CHECK_OUTPUT`` in the solution, so nbval checks that the solution gets its ✅). Written
  answers get a ``<details>`` block with the expected reasoning.
* **Tests.** ``tests/test_exercices.py`` checks every exercise of every chapter (solution cell found,
  hints, verifier cell after the heading); add a ``CATALOGUE`` entry per typical wrong answer — at least
  two per exercise — in ``tests/test_exercices_chapitreN.py``: the answer and the fragment of its specific
  ❌ message, plus the solution (✅) and the untouched gap (🟡).
"""

from .base import (
    OK,
    TODO,
    WRONG,
    Exercise,
    NotDone,
    Result,
    Wrong,
    attempt,
    describe_exception,
    exercise,
    exercises_in,
    expect,
    raised_in,
)
from .solution_source import SolutionNotFound, solution_text

CHAPTERS = ("chapitre1", "chapitre2", "chapitre3", "chapitre4", "chapitre5", "chapitre6", "chapitre7")

__all__ = [
    "CHAPTERS",
    "OK",
    "TODO",
    "WRONG",
    "Exercise",
    "NotDone",
    "Result",
    "SolutionNotFound",
    "Wrong",
    "attempt",
    "describe_exception",
    "exercise",
    "exercises_in",
    "expect",
    "raised_in",
    "solution_text",
]
