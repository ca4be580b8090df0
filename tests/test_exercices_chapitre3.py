"""Chapter 3 exercises: the solution passes, each typical wrong answer gets its own French message, an untouched
gap is "not done"."""

from __future__ import annotations

import pytest

from atelier.exercices import OK, TODO, WRONG
from atelier.exercices import chapitre3 as ex
from atelier.exercices.solution_source import solution_text

#: A table like the notebook's (accuracies on the test of each set), with transfer ahead at 20 per class.
TABLE = {
    "CNN": {"défaut": 0.97, "20/classe": 0.61, "100/classe": 0.84},
    "transfert EuroSAT": {"défaut": 0.975, "20/classe": 0.88, "100/classe": 0.93},
}


def _solution_namespace(item):
    namespace = {"table": TABLE}
    for cell_id in item.cells:
        exec(solution_text(item.notebook, cell_id).split("print(")[0], namespace)
    return namespace


@pytest.mark.parametrize("item", [ex.ex1, ex.ex2, ex.ex3], ids=["ex1", "ex2", "ex3"])
def test_solution_passes(item):
    result = item.evaluate(_solution_namespace(item))
    assert result.status == OK, result


def test_exercise_3_follows_the_measures_not_a_fixed_answer():
    """If the CNN had won, choosing it would be the right answer."""
    table = {"CNN": {"20/classe": 0.9, "100/classe": 0.95}, "transfert EuroSAT": {"20/classe": 0.8, "100/classe": 0.9}}
    assert ex.ex3.evaluate({"table": table}, gain_20=-0.1, choix_20="CNN").status == OK
    wrong = ex.ex3.evaluate({"table": table}, gain_20=-0.1, choix_20="transfert EuroSAT")
    assert wrong.status == WRONG and "la plus exacte est CNN" in wrong.message


FINE = ["conv1", "conv2", "conv3"]
RIGHT_1 = {"trainable_after_freeze": [], "trainable_after_fine_tuning": FINE, "n_trainable_head": 516}
RIGHT_2 = {"fine_learning_rate": 3e-4, "raison": "b"}
RIGHT_3 = {"table": TABLE, "gain_20": 0.88 - 0.61, "choix_20": "transfert EuroSAT"}

CATALOGUE = [
    # exercise 1: what learns after freezing, after unfreezing the base's three blocks, and the head's size
    (ex.ex1, RIGHT_1, {"trainable_after_freeze": FINE}, "aucune couche de la base"),
    (ex.ex1, RIGHT_1, {"trainable_after_fine_tuning": [*FINE, "norm3"]}, "BatchNormalization restent gelées"),
    (ex.ex1, RIGHT_1, {"trainable_after_fine_tuning": [*FINE, "relu3"]}, "n'a pas de poids"),
    (ex.ex1, RIGHT_1, {"trainable_after_fine_tuning": ["conv3"]}, "chacun des trois blocs"),
    (ex.ex1, RIGHT_1, {"trainable_after_fine_tuning": ["conv4"]}, "couche(s) inconnue(s) dans la base : conv4"),
    (ex.ex1, RIGHT_1, {"n_trainable_head": 512}, "512 poids… et les biais"),
    (ex.ex1, RIGHT_1, {"n_trainable_head": 94_436}, "94 436 paramètres : c'est compter la base, qui"),
    (ex.ex1, RIGHT_1, {"trainable_after_fine_tuning": "conv3"}, "doit être une liste"),
    (ex.ex1, RIGHT_1, {"trainable_after_fine_tuning": ["dense"]}, "couche(s) inconnue(s) dans la base : dense"),
    # exercise 2: the fine-tuning learning rate and why
    (ex.ex2, RIGHT_2, {"fine_learning_rate": 3e-3}, "au moins celui de la tête"),
    (ex.ex2, RIGHT_2, {"fine_learning_rate": 1e-3}, "moins de dix fois plus petit"),
    (ex.ex2, RIGHT_2, {"fine_learning_rate": 1e-8}, "les poids ne bougeraient presque pas"),
    (ex.ex2, RIGHT_2, {"fine_learning_rate": "3e-4"}, "doit être un nombre"),
    (ex.ex2, RIGHT_2, {"raison": "a"}, "ne rend pas l'entraînement plus rapide"),
    (ex.ex2, RIGHT_2, {"raison": "c"}, "n'empêche pas le sur-apprentissage"),
    (ex.ex2, RIGHT_2, {"raison": "e"}, "une des lettres"),
    # exercise 3: read the table and decide
    (ex.ex3, RIGHT_3, {"gain_20": 0.61 - 0.88}, "le signe est inversé"),
    (ex.ex3, RIGHT_3, {"gain_20": 100 * (0.88 - 0.61)}, "points de pourcentage"),
    (ex.ex3, RIGHT_3, {"gain_20": 0.93 - 0.84}, "100 images par classe"),
    (ex.ex3, RIGHT_3, {"choix_20": "CNN"}, "la plus exacte est transfert EuroSAT"),
    (ex.ex3, RIGHT_3, {"choix_20": "transfert"}, '"CNN" ou "transfert EuroSAT"'),
]


@pytest.mark.parametrize(
    ("item", "right", "change", "fragment"),
    CATALOGUE,
    ids=[f"{item.name}-{fragment[:24]}" for item, _, _, fragment in CATALOGUE],
)
def test_typical_wrong_answer_gets_its_message(item, right, change, fragment):
    result = item.evaluate({**right, **change})
    assert result.status == WRONG and fragment in result.message, result
    assert result.line.startswith("❌ Exercice") and "\n" not in result.line


@pytest.mark.parametrize("item", [ex.ex1, ex.ex2, ex.ex3], ids=["ex1", "ex2", "ex3"])
def test_untouched_answer_is_not_done(item):
    result = item.evaluate({"table": TABLE})
    assert result.status == TODO and "pas encore fait" in result.message, result


def test_each_exercise_has_at_least_two_catalogued_wrong_answers():
    for item in (ex.ex1, ex.ex2, ex.ex3):
        assert sum(1 for entry in CATALOGUE if entry[0] is item) >= 2
