"""Exercices du chapitre 6 (explicabilité, limites, éthique) : ``from atelier.exercices import chapitre6 as ex``."""

from __future__ import annotations

import io
import numbers

import numpy as np

from .base import Wrong, attempt, exercise, expect

NOTEBOOK = "06_explicabilite_ethique.ipynb"


# --------------------------------------------------------------------------- exercice 1 : Grad-CAM de la vraie classe


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-1-code",
    hints=(
        "Mêmes images que la figure précédente (test_images[wrong]), mais une autre classe à expliquer pour "
        "chacune : celle qu'elle aurait dû recevoir.",
        "La vraie classe de chaque image de test est dans test_labels ; class_index accepte un tableau, une "
        "classe par image, dans le même ordre que les images.",
        "explain.grad_cam(model, test_images[wrong], class_index=test_labels[wrong])",
    ),
    success="une carte par erreur, entre 0 et 1, pour la vraie classe de chaque image.",
)
def ex1(true_cams, model, test_images, test_labels, predicted, wrong):
    from atelier import explain

    images = test_images[wrong]
    cams = np.asarray(true_cams, dtype=np.float64)
    expect(cams.ndim == 3, f"true_cams a la forme {cams.shape} : une carte 2D par image est attendue, (n, 64, 64).")
    if cams.shape[0] == len(test_images) and len(test_images) != len(images):
        raise Wrong(
            f"{cams.shape[0]} cartes : vous avez expliqué toutes les images de test ; seules les {len(images)} "
            "erreurs « wrong » sont demandées (test_images[wrong])."
        )
    expect(
        cams.shape == (len(images), *images.shape[1:3]),
        f"true_cams a la forme {cams.shape} au lieu de {(len(images), *images.shape[1:3])} : une carte par "
        "image de wrong.",
    )
    expect(
        np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1 + 1e-6,
        f"les valeurs vont de {cams.min():.3g} à {cams.max():.3g} : explain.grad_cam les ramène entre 0 et 1.",
    )
    if not len(images):  # a model without any test error: nothing to explain, the shape checks are enough
        return None
    true_classes = np.asarray(test_labels)[wrong]
    reference = explain.grad_cam(model, images, class_index=true_classes)
    if np.allclose(cams, reference, atol=1e-4):
        return None
    if np.allclose(cams, explain.grad_cam(model, images), atol=1e-4) or np.allclose(
        cams, explain.grad_cam(model, images, class_index=np.asarray(predicted)[wrong]), atol=1e-4
    ):
        raise Wrong(
            "ce sont les cartes de la classe **prédite** (celles de la figure précédente) : passez la vraie classe "
            "de chaque image à class_index."
        )
    for k in sorted(set(true_classes.tolist())):
        if np.allclose(cams, explain.grad_cam(model, images, class_index=int(k)), atol=1e-4):
            raise Wrong(
                f"une seule classe ({k}) pour toutes les images : chaque erreur a sa propre vraie classe ; passez "
                "un tableau à class_index, test_labels[wrong]."
            )
    raise Wrong(
        "ces cartes ne sont pas celles de la vraie classe des images wrong : vérifiez les images (test_images[wrong]) "
        "et les classes (test_labels[wrong]), dans le même ordre."
    )


# --------------------------------------------------------------------------- exercice 2 : compression JPEG


def _tiles() -> np.ndarray:
    """Three fixed textured tiles (uint8): JPEG at quality 10 changes them visibly."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(3, 32, 32, 3)).astype(np.float64)
    smooth = (base + np.roll(base, 1, axis=1) + np.roll(base, 1, axis=2)) / 3
    return smooth.astype(np.uint8)


def _jpeg_reference(images: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    decoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(decoded)


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-2-code",
    hints=(
        "Une image à la fois : Pillow sait enregistrer une image en JPEG avec une qualité choisie, et un "
        "io.BytesIO tient lieu de fichier en mémoire.",
        'Image.fromarray(np.uint8(image)) → .save(buffer, "JPEG", quality=quality) → Image.open(buffer) → '
        "np.asarray(…) ; rassemblez les images avec np.stack.",
        'Pour chaque i de x : buffer = io.BytesIO() ; Image.fromarray(np.uint8(i)).save(buffer, "JPEG", '
        'quality=quality) ; decoded.append(np.asarray(Image.open(buffer).convert("RGB"))) ; return np.stack(decoded).',
    ),
    success="chaque image est compressée en JPEG à la qualité demandée puis relue : même forme, pixels 0–255.",
)
def ex2(jpeg_low_quality):
    tiles = _tiles()
    result = attempt(jpeg_low_quality, tiles.copy(), quality=10, what="jpeg_low_quality(x, quality=10)")
    expect(result is not None, "jpeg_low_quality ne renvoie rien : il manque « return ».")
    if isinstance(result, list):
        raise Wrong("jpeg_low_quality renvoie une liste : rassemblez les images en un seul tableau avec np.stack.")
    array = np.asarray(result)
    if array.ndim == 4 and array.shape[-1] == 4:
        raise Wrong('4 canaux (RGBA) au lieu de 3 : convertissez l\'image relue en RVB, .convert("RGB").')
    expect(
        array.shape == tiles.shape, f"forme {array.shape} au lieu de {tiles.shape} : une image décodée par image reçue."
    )
    expect(
        array.min() >= 0 and array.max() <= 255 and array.max() > 1,
        f"pixels entre {array.min():g} et {array.max():g} : gardez l'échelle 0–255 (ne divisez pas par 255).",
    )
    expect(
        np.issubdtype(array.dtype, np.integer) or np.allclose(array, np.round(array)),
        f"pixels de type {array.dtype} non entiers : une image JPEG relue a des pixels entiers de 0 à 255.",
    )
    if np.array_equal(array, tiles):
        raise Wrong(
            "les images ressortent identiques : rien n'a été compressé (ou dans un format sans perte, comme PNG). "
            "Enregistrez-les en JPEG, avec quality=quality."
        )
    reference_10 = _jpeg_reference(tiles, 10)
    error = np.abs(array.astype(np.float64) - reference_10).mean()
    if error > 2:
        default = np.abs(array.astype(np.float64) - _jpeg_reference(tiles, 75)).mean()
        if default <= 2:
            raise Wrong(
                "compression à la qualité par défaut de Pillow (75) : passez quality=quality à save, sinon le "
                "paramètre ne sert à rien."
            )
        raise Wrong(
            f"les images diffèrent d'un JPEG de qualité 10 (écart moyen de {error:.1f} niveaux) : encodez chaque "
            "image en JPEG, quality=quality, puis relisez-la telle quelle."
        )
    gentle = np.asarray(attempt(jpeg_low_quality, tiles.copy(), quality=95, what="jpeg_low_quality(x, quality=95)"))
    expect(
        np.abs(gentle.astype(np.float64) - _jpeg_reference(tiles, 95)).mean() <= 2,
        "avec quality=95, le résultat est encore celui de la qualité 10 : la valeur 10 est écrite en dur ; utilisez "
        "le paramètre quality.",
    )


# --------------------------------------------------------------------------- exercice 3 : choisir un seuil

COVERAGE_SLACK = 0.05


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-3-code",
    hints=(
        "L'objectif est une part d'erreurs : la moitié de celle obtenue sans seuil (la cellule l'affiche). "
        "Cherchez dans la table le premier seuil dont les erreurs parmi les réponses passent sous l'objectif.",
        "Parmi les seuils qui tiennent l'objectif, le plus bas répond au plus d'images : la couverture descend "
        "quand le seuil monte. Inutile de monter plus haut que nécessaire.",
        "explain.choose_threshold(val_probabilities, splits.validation.labels, target_accuracy=1 - goal) calcule "
        "ce seuil ; à la lecture, une valeur proche convient.",
    ),
    success="ce seuil tient l'objectif sur la validation sans refuser plus d'images que nécessaire ; la cellule "
    "suivante le vérifie sur le test.",
)
def ex3(my_threshold, val_probabilities, splits):
    from atelier import explain
    from atelier.formatting import decimal, percent

    if isinstance(my_threshold, str):
        raise Wrong(
            f"my_threshold vaut la chaîne {my_threshold!r} : écrivez un nombre, par exemple 0.6 (point décimal)."
        )
    expect(
        isinstance(my_threshold, numbers.Real) and not isinstance(my_threshold, bool),
        f"my_threshold doit être un nombre entre 0 et 1, pas un {type(my_threshold).__name__}.",
    )
    if 1 < my_threshold <= 100:
        raise Wrong(
            f"{my_threshold:g} : un seuil est une probabilité entre 0 et 1 ; {my_threshold:g} % s'écrit "
            f"{my_threshold / 100:g}."
        )
    expect(0 <= my_threshold <= 1, f"{my_threshold:g} : un seuil est une probabilité entre 0 et 1.")
    labels = splits.validation.labels
    no_threshold = float(explain.coverage_accuracy(val_probabilities, labels, [0.0])["accuracy"][0])
    goal = (1 - no_threshold) / 2
    best = explain.choose_threshold(val_probabilities, labels, target_accuracy=1 - goal - 1e-12)
    table = explain.coverage_accuracy(val_probabilities, labels, [float(my_threshold), best])
    coverage, accuracy = float(table["coverage"][0]), float(table["accuracy"][0])
    best_coverage = float(table["coverage"][1])
    if table["answered"][0] == 0:
        raise Wrong(f"au seuil {decimal(my_threshold)}, le modèle ne répond plus à aucune image : c'est trop haut.")
    if 1 - accuracy > goal + 1e-12:
        raise Wrong(
            f"au seuil {decimal(my_threshold)}, la validation compte {percent(1 - accuracy)} d'erreurs parmi les "
            f"réponses ; l'objectif est au plus {percent(goal)} (la moitié des {percent(1 - no_threshold)} sans "
            "seuil) : montez le seuil."
        )
    if coverage < best_coverage - COVERAGE_SLACK:
        raise Wrong(
            f"l'objectif est tenu, mais le modèle ne répond qu'à {percent(coverage)} des images de validation ; "
            f"un seuil plus bas, vers {decimal(best)}, tient aussi l'objectif et répond à {percent(best_coverage)} "
            "d'entre elles. Chaque refus coûte une personne qui regarde l'image."
        )


# --------------------------------------------------------------------------- exercice 4 : la commune

VERDICTS = {"a": False, "b": True, "c": False, "d": True, "e": True, "f": False}
WHY_VERDICT = {
    "a": "a est fausse : l'exactitude ne vaut que pour le domaine de l'entraînement (mosaïque à 7 km par pixel) ; "
    "sur des photos à 20 cm, elle est inconnue (section 4).",
    "b": "b est vraie : reliée au cadastre, la parcelle désigne son propriétaire, une personne identifiable "
    "indirectement (RGPD, art. 4).",
    "c": "c est fausse : la section 6 montre que sous changement de domaine, le modèle se trompe avec assurance ; "
    "le seuil réduit les erreurs sans les écarter.",
    "d": "d est vraie : une décision fondée exclusivement sur un traitement automatisé est encadrée (RGPD, art. 22) ; "
    "un agent doit vérifier.",
    "e": "e est vraie : un softmax donne toujours l'une des classes apprises, même pour une image qui n'en est aucune.",
    "f": "f est fausse : le RGPD s'applique aux données personnelles, la maîtrise de l'IA (art. 4 de l'AI Act) aussi, "
    "et c'est l'usage qui décide du niveau de risque.",
}


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-4-code",
    hints=(
        "Pour chaque affirmation, retrouvez la section du chapitre qui en parle : changement de domaine (4), "
        "seuil (6), éthique et droit (5).",
        "Trois affirmations sont vraies, trois fausses. Méfiez-vous des mots « aussi », « seront écartées », "
        "« aucune règle ».",
        "Vraies : b (donnée personnelle), d (contrôle humain, art. 22), e (softmax). Fausses : a, c, f.",
    ),
    success="trois vraies (b, d, e), trois fausses (a, c, f) : ouvrez le raisonnement ci-dessous et comparez avec "
    "le vôtre.",
)
def ex4(verdicts):
    expect(
        isinstance(verdicts, dict),
        f'verdicts doit être un dictionnaire {{"a": True, …}}, pas un {type(verdicts).__name__}.',
    )
    keys = {str(key).strip().lower(): value for key, value in verdicts.items()}
    missing = sorted(set(VERDICTS) - set(keys))
    expect(not missing, f"il manque les affirmations {missing} : une réponse (True ou False) pour chacune de a à f.")
    extra = sorted(set(keys) - set(VERDICTS))
    expect(not extra, f"clés inconnues {extra} : les affirmations vont de « a » à « f ».")
    for key in sorted(VERDICTS):
        value = keys[key]
        if isinstance(value, str):
            raise Wrong(f"pour {key}, {value!r} est une chaîne : écrivez True ou False, sans guillemets.")
        expect(isinstance(value, (bool, np.bool_)), f"pour {key}, écrivez True ou False (pas {value!r}).")
    errors = [key for key in sorted(VERDICTS) if bool(keys[key]) != VERDICTS[key]]
    if errors:
        more = f" (et {len(errors) - 1} autre(s) à revoir)" if len(errors) > 1 else ""
        raise Wrong(WHY_VERDICT[errors[0]] + more)
