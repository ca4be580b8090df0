"""Exercices du chapitre 3 (apprentissage par transfert) : ``from atelier.exercices import chapitre3 as ex``."""

from __future__ import annotations

import math
from numbers import Real

from .base import Wrong, exercise, expect

NOTEBOOK = "03_transfert.ipynb"


def _names(value, what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set)):
        raise Wrong(f'« {what} » doit être une liste de noms de couches, par exemple ["conv1", "conv2"] (ou []).')
    if not all(isinstance(name, str) for name in value):
        raise Wrong(f'« {what} » doit contenir des noms de couches (des chaînes), par exemple "conv3".')
    return sorted(value)


def _truth() -> tuple[list[str], list[str], int, list[str]]:
    """What really learns in the chapter's model: after freezing, after unfreezing the base's blocks for
    fine-tuning (section 6); the head's size."""
    from .. import backbone
    from ..labels import CLASSES

    model = backbone.build_transfer_model(CLASSES, augment=False)
    frozen = backbone.trainable_layers(model)
    head = sum(math.prod(w.shape) for w in model.trainable_weights)
    layers = [layer.name for layer in backbone.base_of(model).layers]
    backbone.unfreeze_top(model, n_blocks=backbone.FINE_BLOCKS)
    return frozen, backbone.trainable_layers(model), head, layers


# --------------------------------------------------------------------------- exercice 1 : qui apprend ?


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-1-reponse",
    hints=(
        "Geler la base, c'est « trainable = False » pour toute la base : aucune de ses couches n'apprend plus. "
        "Seule la nouvelle tête Dense s'entraîne.",
        "Une couche n'apprend que si elle a des poids : ReLU, MaxPooling et la moyenne globale n'en ont pas. "
        "unfreeze_top(n_blocks=3) dégèle la convolution de chacun des trois blocs, mais laisse la normalisation "
        "gelée.",
        "La tête reçoit 128 caractéristiques (les filtres du bloc 3) et a 4 sorties : 128 × 4 poids, plus un biais "
        "par sortie.",
    ),
    success="avant l'affinage, seule la tête apprend (516 paramètres) ; ensuite, les convolutions conv1, conv2 et "
    "conv3 s'y ajoutent, les normalisations restant gelées.",
)
def ex1(trainable_after_freeze, trainable_after_fine_tuning, n_trainable_head):
    frozen, fine, head, layers = _truth()
    after_freeze = _names(trainable_after_freeze, "trainable_after_freeze")
    after_fine = _names(trainable_after_fine_tuning, "trainable_after_fine_tuning")
    unknown = [name for name in after_freeze + after_fine if name not in layers]
    expect(
        not unknown,
        f"couche(s) inconnue(s) dans la base : {', '.join(unknown)} ; ses couches sont {', '.join(layers)}.",
    )
    expect(
        after_freeze == frozen,
        "après le gel, aucune couche de la base n'apprend : « base.trainable = False » gèle toutes ses couches, "
        "la liste est vide ([]).",
    )
    without_weights = [name for name in after_fine if name.startswith(("relu", "pool", "normalisation", "moyenne"))]
    expect(
        not without_weights,
        f"{', '.join(without_weights)} n'a pas de poids : une couche sans poids n'apprend rien, gelée ou non.",
    )
    expect(
        not any(name.startswith("norm") for name in after_fine),
        "les couches BatchNormalization restent gelées pendant l'affinage : elles gardent les statistiques "
        "apprises sur EuroSAT au lieu de les réestimer sur nos petits lots.",
    )
    expect(
        after_fine == fine,
        f"unfreeze_top(model, n_blocks=3) dégèle la convolution de chacun des trois blocs : {after_fine} au lieu "
        f"de {fine}.",
    )
    expect(
        isinstance(n_trainable_head, Real) and not isinstance(n_trainable_head, bool), "n_trainable_head : un nombre."
    )
    if n_trainable_head == head - 4:
        raise Wrong(f"{head - 4} poids… et les biais ? La couche Dense a un biais par sortie.")
    if n_trainable_head > 10 * head:  # counted the frozen base too
        raise Wrong(
            f"{n_trainable_head:,d}".replace(",", " ") + " paramètres : c'est compter la base, qui est gelée ; "
            "seule la tête s'entraîne."
        )
    expect(
        n_trainable_head == head, f"{n_trainable_head} paramètres entraînables ? Comptez les poids et biais de la tête."
    )


# --------------------------------------------------------------------------- exercice 2 : le pas de l'affinage

#: The learner's choices for the reason of a small fine-tuning learning rate.
REASONS = {
    "a": "pour que l'entraînement aille plus vite",
    "b": "pour ajuster la base sans détruire ce qu'elle a appris, maintenant que la tête est entraînée",
    "c": "parce qu'un pas faible empêche tout sur-apprentissage",
    "d": "parce que la base a plus de couches que la tête",
}


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-2-reponse",
    hints=(
        "La tête a appris avec un pas de 0,003. Si la base apprenait avec le même pas, que deviendraient des "
        "poids appris sur 3 500 tuiles EuroSAT, bousculés par un millier d'images ?",
        "Il faut un pas nettement plus petit que celui de la tête (10 à 100 fois), mais pas si petit qu'en six "
        "époques rien ne bouge.",
        "Par exemple 3e-4, soit dix fois moins que la tête ; la raison est la b.",
    ),
    success="un pas dix à cent fois plus faible que celui de la tête ajuste la base sans effacer ce qu'elle sait.",
)
def ex2(fine_learning_rate, raison):
    expect(
        isinstance(fine_learning_rate, Real) and not isinstance(fine_learning_rate, bool),
        "fine_learning_rate doit être un nombre, par exemple 0.01 ou 1e-2.",
    )
    expect(fine_learning_rate > 0, "un pas d'apprentissage est strictement positif.")
    if fine_learning_rate >= 3e-3:
        raise Wrong(
            f"un pas de {fine_learning_rate:g} est au moins celui de la tête (0,003) : de si grands pas modifieraient "
            "fortement les poids appris sur EuroSAT et effaceraient ce que l'on veut réutiliser."
        )
    if fine_learning_rate > 3e-4:
        raise Wrong(
            f"{fine_learning_rate:g}, c'est moins de dix fois plus petit que le pas de la tête : encore trop fort."
        )
    if fine_learning_rate < 1e-6:
        raise Wrong(
            f"{fine_learning_rate:g} est si petit qu'en six époques les poids ne bougeraient presque pas : "
            "l'affinage ne servirait à rien."
        )
    expect(
        isinstance(raison, str) and raison.strip().lower() in REASONS,
        'raison : une des lettres "a", "b", "c" ou "d".',
    )
    letter = raison.strip().lower()
    expect(letter != "a", "un pas plus petit ne rend pas l'entraînement plus rapide : chaque époque coûte pareil.")
    expect(
        letter != "c",
        "un pas faible n'empêche pas le sur-apprentissage (c'est le rôle de la validation, de l'augmentation, "
        "du dropout) ; il protège ce que la base a déjà appris.",
    )
    expect(letter != "d", "le nombre de couches n'y est pour rien : c'est ce que la base a déjà appris qu'on protège.")


# --------------------------------------------------------------------------- exercice 3 : lire et décider

METHODS = ("CNN", "transfert EuroSAT")


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-3-reponse",
    hints=(
        'Tout est dans le dictionnaire table : table[méthode][colonne], par exemple table["CNN"]["20/classe"].',
        "Le gain du transfert, c'est son exactitude moins celle du CNN, sur la même colonne, en fraction (0,25 "
        "veut dire 25 points).",
        'gain_20 = table["transfert EuroSAT"]["20/classe"] - table["CNN"]["20/classe"], puis choisissez la '
        "méthode la plus exacte.",
    ),
    success="vous lisez le tableau et choisissez la méthode d'après la mesure, pas d'après une intuition.",
)
def ex3(table, gain_20, choix_20):
    expect(isinstance(gain_20, Real) and not isinstance(gain_20, bool), "gain_20 doit être un nombre.")
    cnn, transfer = (table[name]["20/classe"] for name in METHODS)
    gain = transfer - cnn
    if abs(gain_20 + gain) < 1e-9 and abs(gain) > 1e-9:
        raise Wrong("le signe est inversé : le gain du transfert, c'est transfert − CNN, pas CNN − transfert.")
    if abs(gain_20 - 100 * gain) < 1e-6 and abs(gain) > 1e-9:
        raise Wrong("gain_20 en points de pourcentage : gardez une fraction, comme dans table (0,25 et non 25).")
    if abs(gain_20 - (table["transfert EuroSAT"]["100/classe"] - table["CNN"]["100/classe"])) < 1e-9:
        raise Wrong("c'est l'écart avec 100 images par classe ; il faut la colonne « 20/classe ».")
    expect(
        abs(gain_20 - gain) < 1e-9, f"gain_20 vaut {gain_20:g} ; d'après table, le gain du transfert est {gain:.4f}."
    )
    expect(choix_20 in METHODS, f'choix_20 : "{METHODS[0]}" ou "{METHODS[1]}" (les noms des lignes de table).')
    best = max(METHODS, key=lambda name: table[name]["20/classe"])
    expect(choix_20 == best, f"d'après vos mesures, avec 20 images par classe, la méthode la plus exacte est {best}.")
