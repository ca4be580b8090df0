"""Chapter 7 exercises: error rate per model version from the history, which retrainings to publish, erasure."""

from __future__ import annotations

import collections

import pytest

from atelier.exercices import OK, TODO, WRONG
from atelier.exercices import chapitre7 as ex
from atelier.exercices.solution_source import solution_text


def _solution(item, **context):
    namespace = {"collections": collections, **context}
    for cell_id in item.cells:
        exec(solution_text(item.notebook, cell_id), namespace)
    return namespace


# --------------------------------------------------------------------------- exercice 1 : taux d'erreur par version


def _rates(*, denominator="annotated", none_is_wrong=False, scale=1.0, right=False, keep_empty=False):
    def error_rates(rows):
        wrong, annotated, seen = collections.Counter(), collections.Counter(), collections.Counter()
        for row in rows:
            version = row["model_version"]
            seen[version] += 1
            if row["feedback_label"] is None and not none_is_wrong:
                continue
            annotated[version] += 1
            wrong[version] += row["feedback_label"] != row["label"]
        keys = seen if keep_empty else annotated
        rates = {}
        for version in keys:
            total = seen[version] if denominator == "all" else annotated[version]
            rate = wrong[version] / total if total else 0.0
            rates[version] = scale * ((1 - rate) if right else rate)
        return rates

    return error_rates


def _single_number(rows):
    annotated = [row for row in rows if row["feedback_label"] is not None]
    return sum(row["feedback_label"] != row["label"] for row in annotated) / len(annotated)


EX1_WRONG = [
    (_rates(denominator="all"), "toutes les prédictions de la version"),
    (_rates(none_is_wrong=True, denominator="all"), "comptent ici comme des erreurs"),
    (_rates(scale=100), "des pourcentages"),
    (_rates(right=True), "réponses **justes**"),
    (_rates(keep_empty=True), "aucune de ses réponses n'est annotée"),
    (_single_number, "un seul nombre"),
    (lambda rows: {"1": 0.5, "2": 0.25}, "version 1 : 0.5 au lieu de 0.333"),
    (lambda rows: None, "il manque « return »"),
    (lambda rows: {"1": 2 / 6}, "il manque les versions ['2']"),
]


def test_ex1_solution_passes():
    assert ex.ex1.evaluate(_solution(ex.ex1)).status == OK


@pytest.mark.parametrize(("function", "fragment"), EX1_WRONG, ids=[f for _, f in EX1_WRONG])
def test_ex1_wrong_answers(function, fragment):
    result = ex.ex1.evaluate({"error_rates": function})
    assert result.status == WRONG and fragment in result.message, result


def test_ex1_gap_is_not_done():
    def error_rates(rows):
        raise NotImplementedError("À compléter : le taux d'erreur de chaque version")

    assert ex.ex1.evaluate({"error_rates": error_rates}).status == TODO


# --------------------------------------------------------------------------- exercice 2 : publier ou non

RIGHT = {"A": True, "B": False, "C": True, "D": False, "E": False}

EX2_WRONG = [
    ({**RIGHT, "B": True}, "B ne se publie pas : 3 images"),
    ({**RIGHT, "C": False}, "C se publie : une image perdue"),
    ({**RIGHT, "D": True}, "sous le minimum de 5"),
    ({**RIGHT, "E": True}, "sans mesure sur le jeu tenu à l'écart"),
    ({**RIGHT, "A": False, "E": True}, "(et 1 autre(s) à revoir)"),
    ({**RIGHT, "A": "oui"}, "sans guillemets"),
    ({"A": True, "B": False}, "il manque les candidats"),
    (["A", "C"], "doit être un dictionnaire"),
]


def test_ex2_solution_passes():
    assert ex.ex2.evaluate(_solution(ex.ex2)).status == OK


def test_ex2_lowercase_keys_are_accepted():
    assert ex.ex2.evaluate({"publish": {key.lower(): value for key, value in RIGHT.items()}}).status == OK


@pytest.mark.parametrize(("publish", "fragment"), EX2_WRONG, ids=[f for _, f in EX2_WRONG])
def test_ex2_wrong_answers(publish, fragment):
    result = ex.ex2.evaluate({"publish": publish})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 3 : après un effacement

FORECAST = {"explication": 404, "image_gardee": False, "prochain_reentrainement": False, "oubliee_par_v2": False}

EX3_WRONG = [
    ({**FORECAST, "explication": 409}, "son image n'est plus gardée"),
    ({**FORECAST, "explication": 200}, "rien à expliquer"),
    ({**FORECAST, "explication": 500}, "erreur du client"),
    ({**FORECAST, "explication": "404"}, "code d'état entier"),
    ({**FORECAST, "image_gardee": True}, "efface la ligne **et** son image"),
    ({**FORECAST, "prochain_reentrainement": True}, "ne servira plus"),
    ({**FORECAST, "oubliee_par_v2": True}, "v2 n'a rien oublié"),
    ({**FORECAST, "oubliee_par_v2": "non"}, "sans guillemets"),
    ({"explication": 404}, "il manque les clés"),
]


def test_ex3_solution_passes():
    assert ex.ex3.evaluate(_solution(ex.ex3)).status == OK


@pytest.mark.parametrize(("forecast", "fragment"), EX3_WRONG, ids=[f for _, f in EX3_WRONG])
def test_ex3_wrong_answers(forecast, fragment):
    result = ex.ex3.evaluate({"forecast": forecast})
    assert result.status == WRONG and fragment in result.message, result
