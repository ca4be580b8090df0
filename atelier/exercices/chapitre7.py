"""Exercices du chapitre 7 (boucle de rétroaction) : ``from atelier.exercices import chapitre7 as ex``."""

from __future__ import annotations

import math
import numbers

from .base import Wrong, attempt, exercise, expect

NOTEBOOK = "07_boucle_retroaction.ipynb"


# --------------------------------------------------------------------------- exercice 1 : taux d'erreur par version


def _rows() -> list[dict]:
    """History rows of three versions: 1 (10 rows, 6 annotated, 2 wrong), 2 (8, 4, 1 wrong), 3 (3, none annotated)."""
    plan: dict[str, list[str | None]] = {
        "1": ["forêt"] * 4 + ["mer"] * 2 + [None] * 4,  # user's label; the model answered « forêt » for all
        "2": ["forêt"] * 3 + ["nuageux"] + [None] * 4,
        "3": [None] * 3,
    }
    rows, number = [], 1
    for version, feedback in plan.items():
        for label in feedback:
            rows.append({"id": number, "label": "forêt", "model_version": version, "feedback_label": label})
            number += 1
    return rows[::-1]  # the most recent first, as GET /predictions gives them


EXPECTED_RATES = {"1": 2 / 6, "2": 1 / 4}


def _close(value, target) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isclose(value, target, abs_tol=1e-6)


def _same(rates: dict, reference: dict) -> bool:
    return set(rates) >= set(reference) and all(_close(rates[key], reference[key]) for key in reference)


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-1-code",
    hints=(
        "Seules les prédictions annotées disent si le modèle avait raison : une ligne sans « feedback_label » "
        "(None) ne compte ni comme juste ni comme fausse.",
        "Pour chaque version, comptez les lignes annotées et, parmi elles, celles où feedback_label diffère de "
        "label ; le taux est le second nombre divisé par le premier.",
        "Deux dictionnaires de compteurs (collections.Counter) indexés par row['model_version'], remplis pour les "
        "lignes dont row['feedback_label'] is not None ; puis {v: wrong[v] / annotated[v] for v in annotated}.",
    ),
    success="une version, un taux : la part d'erreurs parmi les réponses annotées, sans compter celles que "
    "personne n'a vérifiées.",
)
def ex1(error_rates):
    rows = _rows()
    rates = attempt(error_rates, [dict(row) for row in rows], what="error_rates(lignes)")
    expect(rates is not None, "error_rates ne renvoie rien : il manque « return ».")
    if isinstance(rates, numbers.Real):
        raise Wrong(
            f"error_rates renvoie un seul nombre ({rates:.3g}) : il faut un taux par version du modèle, dans un "
            'dictionnaire {"1": …, "2": …}.'
        )
    expect(isinstance(rates, dict), f"error_rates doit renvoyer un dictionnaire, pas un {type(rates).__name__}.")
    rates = {str(key): value for key, value in rates.items()}
    missing = sorted(set(EXPECTED_RATES) - set(rates))
    expect(not missing, f"il manque les versions {missing} : une clé par valeur de row['model_version'].")
    if _same(rates, {key: 100 * value for key, value in EXPECTED_RATES.items()}):
        raise Wrong("ce sont des pourcentages : un taux s'écrit entre 0 et 1 (0.25, pas 25).")
    if _same(rates, {"1": 2 / 10, "2": 1 / 8}):
        raise Wrong(
            "vous divisez par toutes les prédictions de la version, y compris celles que personne n'a vérifiées : "
            "divisez par le nombre de réponses annotées."
        )
    if _same(rates, {"1": 6 / 10, "2": 5 / 8}):
        raise Wrong(
            "les réponses sans annotation comptent ici comme des erreurs (None est différent de label) : ne "
            "comptez que les lignes dont feedback_label n'est pas None."
        )
    if _same(rates, {key: 1 - value for key, value in EXPECTED_RATES.items()}):
        raise Wrong(
            "c'est la part des réponses **justes** : le taux d'erreur compte celles que l'utilisateur a corrigées."
        )
    if "3" in rates:
        raise Wrong(
            f"la version 3 reçoit le taux {rates['3']!r}, alors qu'aucune de ses réponses n'est annotée : son taux "
            "d'erreur est inconnu (ni 0, ni 1). Ne gardez que les versions qui ont au moins une annotation."
        )
    for key, target in EXPECTED_RATES.items():
        if not _close(rates[key], target):
            raise Wrong(
                f"version {key} : {rates[key]!r} au lieu de {target:.3f} (6 réponses annotées, dont 2 corrigées, "
                "pour la version 1)."
                if key == "1"
                else f"version {key} : {rates[key]!r} au lieu de {target:.3f}."
            )


# --------------------------------------------------------------------------- exercice 2 : publier ou non

#: Five retrainings of one model (held-out set of 240 images, the parent gets 226 right; 12 corrected images).
CANDIDATES = {
    "A": "jeu tenu à l'écart 226 → 228 bonnes réponses ; cas corrigés 0 → 11 sur 12 ; 12 corrections",
    "B": "jeu tenu à l'écart 226 → 223 ; cas corrigés 0 → 12 sur 12 ; 12 corrections",
    "C": "jeu tenu à l'écart 226 → 225 ; cas corrigés 0 → 9 sur 12 ; 12 corrections",
    "D": "jeu tenu à l'écart 226 → 227 ; cas corrigés 0 → 3 sur 3 ; 3 corrections",
    "E": "jeu tenu à l'écart non mesuré ; cas corrigés 0 → 12 sur 12 ; 12 corrections",
}
DECISIONS = {"A": True, "B": False, "C": True, "D": False, "E": False}
WHY_DECISION = {
    "A": "A se publie : meilleur sur le jeu tenu à l'écart et sur les cas corrigés.",
    "B": "B ne se publie pas : 3 images du jeu tenu à l'écart perdues, plus que la tolérance d'une image ; il a "
    "oublié quelque chose en apprenant les corrections.",
    "C": "C se publie : une image perdue, c'est la tolérance (un cas limite qui bascule) ; et 9 cas corrigés sur 12 "
    "sont maintenant justes.",
    "D": "D ne se publie pas : 3 corrections, c'est sous le minimum de 5 ; 3 sur 3 ne prouve rien (avec si peu "
    "d'images, l'affinage les apprend par cœur).",
    "E": "E ne se publie pas : sans mesure sur le jeu tenu à l'écart, rien ne dit qu'il n'a pas cassé le reste ; "
    "12 sur 12 sur les images apprises est attendu de toute façon.",
}


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-2-code",
    hints=(
        "Deux règles de la section précédente : au moins 5 corrections, et pas plus d'une image perdue sur le jeu "
        "tenu à l'écart.",
        "Les cas corrigés ont servi à l'affinage : bien les classer ensuite ne suffit pas à dire que le modèle est "
        "meilleur. Seul le jeu tenu à l'écart le dit.",
        "Deux candidats se publient : celui qui gagne partout, et celui qui perd exactement une image.",
    ),
    success="deux candidats publiés (A, C), trois refusés (B, D, E) : c'est la règle du garde-fou de "
    "« python -m atelier retrain ».",
)
def ex2(publish):
    expect(
        isinstance(publish, dict),
        f'publish doit être un dictionnaire {{"A": True, …}}, pas un {type(publish).__name__}.',
    )
    keys = {str(key).strip().upper(): value for key, value in publish.items()}
    missing = sorted(set(DECISIONS) - set(keys))
    expect(not missing, f"il manque les candidats {missing} : une réponse (True ou False) pour chacun de A à E.")
    extra = sorted(set(keys) - set(DECISIONS))
    expect(not extra, f"candidats inconnus {extra} : ils vont de « A » à « E ».")
    for key in sorted(DECISIONS):
        value = keys[key]
        if isinstance(value, str):
            raise Wrong(f"pour {key}, {value!r} est une chaîne : écrivez True ou False, sans guillemets.")
        expect(isinstance(value, bool), f"pour {key}, écrivez True ou False (pas {value!r}).")
    errors = [key for key in sorted(DECISIONS) if keys[key] != DECISIONS[key]]
    if errors:
        more = f" (et {len(errors) - 1} autre(s) à revoir)" if len(errors) > 1 else ""
        raise Wrong(WHY_DECISION[errors[0]] + more)


# --------------------------------------------------------------------------- exercice 3 : après un effacement

FORECAST = {"explication": 404, "image_gardee": False, "prochain_reentrainement": False, "oubliee_par_v2": False}
WHY_FORECAST = {
    "image_gardee": "l'image n'est plus gardée : DELETE /predictions/{id} efface la ligne **et** son image (sauf si "
    "une autre prédiction a exactement la même image).",
    "prochain_reentrainement": "le réentraînement lit les retours de l'historique : la ligne effacée, avec son "
    "retour, n'y est plus ; elle ne servira plus.",
    "oubliee_par_v2": "v2 n'a rien oublié : ses poids ont été calculés avec cette image, et effacer la donnée ne "
    "touche pas un modèle déjà entraîné. Il faudrait réentraîner depuis le parent sans elle.",
}


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-3-code",
    hints=(
        "Deux choses différentes : la donnée (la ligne de l'historique, son retour, son image) et ce qu'un "
        "modèle a appris d'elle (ses poids).",
        "L'effacement retire la ligne : une route sur /predictions/{id} ne trouve plus ce numéro. Le "
        "réentraînement lit l'historique. Un modèle publié, lui, est un fichier déjà écrit.",
        "Un 404 ; l'image n'est plus gardée, le prochain réentraînement ne la verra pas, mais v2 ne l'a pas oubliée.",
    ),
    success="l'effacement retire la ligne, son retour et son image, mais pas ce que v2 en a appris : la cellule "
    "suivante le vérifie sur le serveur.",
)
def ex3(forecast):
    expect(
        isinstance(forecast, dict),
        f'forecast doit être un dictionnaire {{"explication": …, …}}, pas un {type(forecast).__name__}.',
    )
    keys = {str(key).strip().lower(): value for key, value in forecast.items()}
    missing = [key for key in FORECAST if key not in keys]
    expect(not missing, f"il manque les clés {missing} : une réponse pour chacune de {list(FORECAST)}.")
    code = keys["explication"]
    if isinstance(code, str):
        raise Wrong(f"« explication » vaut la chaîne {code!r} : écrivez un code d'état entier, par exemple 200.")
    expect(
        isinstance(code, numbers.Integral) and not isinstance(code, bool),
        f"« explication » doit être un code d'état entier, pas {code!r}.",
    )
    if code == 200:
        raise Wrong(
            "200 : la prédiction n'existe plus, il n'y a rien à expliquer ; le serveur répond par un code d'erreur."
        )
    if code == 409:
        raise Wrong(
            "409, c'est quand la prédiction existe encore mais que son image n'est plus gardée ; ici la ligne "
            "elle-même est effacée : aucune prédiction n'a ce numéro."
        )
    if code == 500:
        raise Wrong("500 serait une erreur du serveur : un numéro inconnu est une erreur du client, un 4xx précis.")
    expect(code == 404, f"{code} : quel code dit « aucune ressource à cette adresse » ?")
    for key in ("image_gardee", "prochain_reentrainement", "oubliee_par_v2"):
        value = keys[key]
        if isinstance(value, str):
            raise Wrong(f"pour {key}, {value!r} est une chaîne : écrivez True ou False, sans guillemets.")
        expect(isinstance(value, bool), f"pour {key}, écrivez True ou False (pas {value!r}).")
        if value != FORECAST[key]:
            raise Wrong(WHY_FORECAST[key])
