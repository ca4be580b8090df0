"""Expliquer les prédictions d'un CNN : Grad-CAM, sensibilité à l'occultation, seuil « je ne sais pas ».

- :func:`grad_cam` : **où** le réseau a regardé pour choisir une classe. On prend la dernière couche de
  convolution (trouvée automatiquement, :func:`find_last_conv_layer`), on pondère chacune de ses cartes
  d'activation par le gradient du score de la classe, et on garde la partie positive (Selvaraju et al.,
  « Grad-CAM », ICCV 2017).
- :func:`occlusion_map` : une mesure sans gradient. On cache un carré de l'image, on regarde de combien la
  probabilité de la classe baisse, et on recommence en déplaçant le carré (Zeiler et Fergus, ECCV 2014).
- :func:`plot_heatmaps` : les images et leurs cartes superposées, en français, avec une barre de couleur.
- :func:`coverage_accuracy`, :func:`choose_threshold`, :func:`predict_or_abstain` : répondre « je ne sais
  pas » quand le modèle n'est pas assez sûr de lui, et mesurer ce que l'on y gagne.

Les images sont des tableaux ``uint8`` (ou float 0–255) de forme ``(h, l, 3)`` ou ``(n, h, l, 3)`` : le même
contrat d'entrée que les modèles de l'atelier (la normalisation est dans le modèle).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .plots import as_uint8

#: Texte renvoyé à la place d'une classe quand le modèle n'est pas assez sûr de lui.
UNKNOWN_LABEL = "je ne sais pas"


class ExplainError(ValueError):
    """Le modèle ne se prête pas à l'explication demandée (message en français)."""


# --------------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------------


def _is_conv(layer) -> bool:
    from keras import layers

    return isinstance(layer, (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D))


def _output_rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):
        return None


def _chain(model) -> list:
    """Les couches de ``model`` dans l'ordre du calcul, les sous-modèles **séquentiels** dépliés couche par
    couche (la base EuroSAT du chapitre 3, l'augmentation de données) ; un autre sous-modèle (MobileNetV2, avec
    ses branches) reste un seul bloc."""
    import keras

    chain = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        chain.extend(_chain(layer) if isinstance(layer, keras.Sequential) else [layer])
    return chain


def find_last_conv_layer(model):
    """Renvoie la dernière couche de convolution du modèle, sans connaître son nom.

    On parcourt les couches de la fin vers le début, sous-modèles séquentiels dépliés (la base EuroSAT du
    chapitre 3 est un ``Sequential`` dans le modèle par transfert) : la première couche ``Conv2D`` (ou
    séparable / en profondeur) rencontrée est la bonne. Si le modèle n'en a pas mais contient un autre
    sous-modèle qui produit des cartes 2-D (par exemple la base MobileNetV2 du chapitre 3), c'est ce
    sous-modèle qui est renvoyé : sa sortie est celle de sa dernière convolution.
    """
    import keras

    for layer in reversed(_chain(model)):
        if _is_conv(layer):
            return layer
        if isinstance(layer, keras.Model) and _output_rank(layer) == 4:
            return layer
    raise ExplainError(
        f"Le modèle « {model.name} » n'a pas de couche de convolution : Grad-CAM a besoin de cartes d'activation 2-D."
    )


def _end_of_block(model, conv):
    """La dernière couche du bloc de ``conv`` : après la normalisation par lot et l'activation qui la suivent.

    Dans le CNN de l'atelier, une convolution est suivie de ``BatchNormalization`` puis ``ReLU`` : Grad-CAM
    travaille sur les cartes **activées** (positives), à la sortie du bloc, juste avant le pooling.
    """
    from keras import layers

    elementwise = (layers.BatchNormalization, layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU)
    chain = _chain(model)
    if conv not in chain:
        return conv
    end = conv
    for layer in chain[chain.index(conv) + 1 :]:
        if not isinstance(layer, elementwise):
            break
        end = layer
    return end


def _as_batch(images) -> np.ndarray:
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[np.newaxis]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ExplainError(f"Images attendues de forme (h, l, 3) ou (n, h, l, 3), reçu {array.shape}.")
    return array


def _head_scores(layer, inputs, output):
    """Scores avant softmax (logits) si la dernière couche est une ``Dense`` softmax, sinon les sorties."""
    import keras

    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Dense) and getattr(activation, "__name__", "") == "softmax":
        logits = keras.ops.matmul(inputs, layer.kernel)
        if layer.use_bias:
            logits = logits + layer.bias
        return logits
    return output


def grad_cam(model, images, class_index=None, *, layer=None) -> np.ndarray:
    """Cartes Grad-CAM, entre 0 et 1, à la taille des images : ``(n, h, l)`` (ou ``(h, l)`` pour une image).

    ``class_index`` : la classe à expliquer (un entier, ou un par image) ; par défaut la classe
    **prédite**. ``layer`` : la couche dont on explique les cartes ; par défaut la sortie du bloc de
    :func:`find_last_conv_layer` (après sa normalisation et son activation, avant le pooling).

    Chaque carte est divisée par **son** maximum : 1 = la zone qui a le plus poussé vers cette classe,
    0 = aucune contribution ; la carte dit *où*, pas *combien* (comparez avec la probabilité). Une carte
    entièrement nulle signifie qu'aucune zone ne pousse vers la classe (cela arrive pour une classe très
    improbable).

    Le calcul se fait en mode inférence (augmentation et dropout inactifs) sur le score avant softmax.
    """
    import tensorflow as tf

    single = np.asarray(images).ndim == 3
    batch = _as_batch(images)
    target = layer if layer is not None else _end_of_block(model, find_last_conv_layer(model))
    with tf.GradientTape() as tape:
        try:
            features, scores, probabilities = _forward_watching(model, batch, target, tape)
        except (TypeError, ValueError) as error:
            raise ExplainError(
                "Le modèle n'est pas une simple chaîne de couches : grad_cam ne sait pas le parcourir "
                f"({type(error).__name__})."
            ) from None
        if features is None:
            raise ExplainError(f"La couche « {target.name} » n'est pas sur le chemin principal du modèle.")
        if class_index is None:
            chosen = tf.argmax(probabilities, axis=1)
        else:
            chosen = tf.broadcast_to(tf.constant(class_index, dtype=tf.int64), [batch.shape[0]])
        score = tf.gather(scores, chosen, axis=1, batch_dims=1)
    expected = np.asarray(model(batch, training=False))
    if not np.allclose(np.asarray(probabilities), expected, atol=1e-4):
        raise ExplainError("Le modèle n'est pas une simple chaîne de couches : grad_cam ne sait pas le parcourir.")
    cams = _normalised_cams(features, tape.gradient(score, features), batch.shape[1:3])
    return cams[0] if single else cams


def _normalised_cams(features, gradients, size) -> np.ndarray:
    """Les cartes ``(n, h, l)`` : cartes d'activation pondérées par le gradient moyen, partie positive, mises
    à la taille *size* des images et divisées chacune par son maximum."""
    import keras
    import tensorflow as tf

    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # importance de chaque canal
    cams = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))  # (n, h', l')
    cams = tf.image.resize(cams[..., tf.newaxis], size, method="bilinear")[..., 0]
    cams = keras.ops.convert_to_numpy(cams).astype(np.float32)
    peak = cams.reshape(len(cams), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(cams, peak, out=np.zeros_like(cams), where=peak > 1e-12)


def compiled_grad_cam(model, image_size: int):
    """:func:`grad_cam` compilé une fois pour *model* (``tf.function``) : pour expliquer beaucoup d'images.

    Renvoie une fonction ``(images, class_index) -> cartes``, le même calcul que :func:`grad_cam` (même couche,
    score avant softmax, mêmes cartes entre 0 et 1), sans repasser par Python couche par couche à chaque
    appel. Vérifiée à la construction contre :func:`grad_cam` sur une image aléatoire ``image_size`` ×
    ``image_size`` ; :class:`ExplainError` si le modèle ne s'y prête pas.
    """
    import tensorflow as tf

    target = _end_of_block(model, find_last_conv_layer(model))

    @tf.function(reduce_retracing=True)
    def features_and_gradients(batch, chosen):
        with tf.GradientTape() as tape:
            features, scores, _ = _forward_watching(model, batch, target, tape)
            score = tf.gather(scores, chosen, axis=1, batch_dims=1)
        return features, tape.gradient(score, features)

    def explain(images, class_index: int) -> np.ndarray:
        single = np.asarray(images).ndim == 3
        batch = _as_batch(images)
        chosen = tf.fill([batch.shape[0]], tf.constant(int(class_index), dtype=tf.int64))
        features, gradients = features_and_gradients(tf.constant(batch), chosen)
        cams = _normalised_cams(features, gradients, batch.shape[1:3])
        return cams[0] if single else cams

    probe = np.random.default_rng(0).uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)
    expected = grad_cam(model, probe, class_index=0, layer=target)  # ExplainError for a model it cannot walk
    if not np.allclose(explain(probe, 0), expected, atol=1e-3):
        raise ExplainError("Grad-CAM compilé ne redonne pas le calcul pas à pas pour ce modèle.")
    return explain


def _forward_watching(model, batch, target, tape):
    """Passe avant couche par couche : (cartes de ``target``, scores par classe, probabilités).

    Les cartes de ``target`` sont surveillées par ``tape``. Valable pour un modèle séquentiel ou une chaîne
    fonctionnelle linéaire, sous-modèles séquentiels compris (les modèles de l'atelier, celui du transfert
    aussi) ; :func:`grad_cam` vérifie le résultat.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(batch)
    features = scores = None
    layers_ = _chain(model)
    for index, layer in enumerate(layers_):
        previous = x
        x = layer(x, training=False)
        if layer is target:
            tape.watch(x)
            features = x
        if index == len(layers_) - 1:
            scores = _head_scores(layer, previous, x)
    return features, scores, x


# --------------------------------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------------------------------


def occlusion_map(
    model,
    image,
    class_index: int | None = None,
    *,
    patch: int = 12,
    stride: int = 4,
    fill: str | float | Sequence[float] = "mean",
    batch_size: int = 256,
) -> np.ndarray:
    """Sensibilité à l'occultation : de combien la probabilité de la classe baisse quand on cache chaque zone.

    Un carré de ``patch × patch`` pixels, rempli avec ``fill``, glisse sur l'image par pas de ``stride``.
    Pour chaque position, on mesure ``p(classe | image) − p(classe | image occultée)``, puis chaque pixel
    reçoit la moyenne des baisses des carrés qui l'ont couvert. Résultat ``(h, l)`` en float32 :

    - valeur positive : cacher ce pixel **fait baisser** la probabilité (la zone comptait pour la décision) ;
    - proche de 0 : la zone ne comptait pas ; négative : la cacher **renforce** la classe.

    ``fill`` : ``"mean"`` (couleur moyenne de l'image : on enlève la texture, pas la couleur globale),
    ``"gris"`` (128) ou une valeur / un triplet RVB. ``class_index`` : par défaut la classe prédite.
    """
    from .evaluation import predict_probabilities

    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ExplainError(f"Une image (h, l, 3) est attendue, reçu {array.shape}.")
    height, width = array.shape[:2]
    if not 1 <= patch <= min(height, width) or stride < 1:
        raise ExplainError(f"Carré d'occultation invalide : patch={patch}, stride={stride}.")
    if isinstance(fill, str):
        if fill == "mean":
            colour = array.reshape(-1, 3).mean(axis=0)
        elif fill == "gris":
            colour = np.full(3, 128.0, np.float32)
        else:
            raise ExplainError(f"fill doit être « mean », « gris » ou une couleur, pas « {fill} ».")
    else:
        colour = np.broadcast_to(np.asarray(fill, dtype=np.float32), (3,))
    tops = sorted({*range(0, height - patch + 1, stride), height - patch})
    lefts = sorted({*range(0, width - patch + 1, stride), width - patch})
    positions = [(top, left) for top in tops for left in lefts]
    occluded = np.repeat(array[np.newaxis], len(positions) + 1, axis=0)
    for k, (top, left) in enumerate(positions, start=1):
        occluded[k, top : top + patch, left : left + patch] = colour
    probabilities = predict_probabilities(model, occluded, batch_size=batch_size)
    if class_index is None:
        class_index = int(np.argmax(probabilities[0]))
    drops = probabilities[0, class_index] - probabilities[1:, class_index]
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    for drop, (top, left) in zip(drops, positions, strict=True):
        total[top : top + patch, left : left + patch] += drop
        count[top : top + patch, left : left + patch] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def overlay_heatmap(image, heatmap, *, alpha: float = 0.5, cmap: str = "jet", vmin=0.0, vmax=1.0) -> np.ndarray:
    """Superpose une carte de chaleur ``(h, l)`` à une image ``(h, l, 3)`` : renvoie une image RVB uint8.

    ``alpha`` : opacité de la carte (0 = image seule, 1 = carte seule). Les valeurs de la carte sont
    ramenées entre ``vmin`` et ``vmax`` avant de passer dans la palette ``cmap``.
    """
    from matplotlib import colormaps

    picture = as_uint8(image).astype(np.float64)
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.shape != picture.shape[:2]:
        raise ExplainError(f"La carte {heat.shape} et l'image {picture.shape[:2]} n'ont pas la même taille.")
    span = (vmax - vmin) or 1.0
    coloured = colormaps[cmap](np.clip((heat - vmin) / span, 0, 1))[..., :3] * 255.0
    return np.clip(np.rint((1 - alpha) * picture + alpha * coloured), 0, 255).astype(np.uint8)


def plot_heatmaps(
    images,
    heatmaps,
    captions: Sequence[str] | None = None,
    *,
    title: str = "Grad-CAM : où le modèle a regardé",
    colorbar_label: str = "Importance pour la classe prédite\n(0 = aucune, 1 = maximale)",
    caption_colours: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    vmin: float = 0.0,
    vmax: float = 1.0,
    columns: int = 6,
) -> Figure:
    """Chaque image (en haut) et sa carte superposée (en dessous), une barre de couleur légendée à droite.

    ``captions`` : un texte par image (par exemple « vrai : forêt / prédit : mer (87 %) ») ;
    ``caption_colours`` : leur couleur (vert pour une bonne réponse, rouge pour une erreur…).
    Pour une carte d'occultation, passez ``vmin``/``vmax`` symétriques et ``cmap="RdBu_r"``.
    Renvoie une :class:`~matplotlib.figure.Figure` construite sans ``pyplot``.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    images = [np.asarray(image) for image in images]
    heatmaps = [np.asarray(heat) for heat in heatmaps]
    if len(images) != len(heatmaps) or not images:
        raise ExplainError("Il faut autant de cartes que d'images (et au moins une).")
    n = len(images)
    columns = max(1, min(columns, n))
    block_rows = math.ceil(n / columns)
    width = max(1.9 * columns + 1.6, 5.5)  # room for the title and the colour bar, even for one image
    figure = Figure(figsize=(width, 4.1 * block_rows + 0.5), layout="constrained")
    axes = figure.subplots(2 * block_rows, columns, squeeze=False)
    for k in range(block_rows * columns):
        row, col = 2 * (k // columns), k % columns
        top, bottom = axes[row, col], axes[row + 1, col]
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if k >= n:
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        top.imshow(as_uint8(images[k]), interpolation="nearest")
        bottom.imshow(
            overlay_heatmap(images[k], heatmaps[k], alpha=alpha, cmap=cmap, vmin=vmin, vmax=vmax),
            interpolation="nearest",
        )
        if captions is not None:
            colour = caption_colours[k] if caption_colours is not None else "black"
            top.set_title(captions[k], fontsize=9, color=colour)
        if col == 0:
            top.set_ylabel("image", fontsize=10)
            bottom.set_ylabel("carte superposée", fontsize=10)
    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=colormaps[cmap])
    colorbar = figure.colorbar(mappable, ax=axes, shrink=0.8, pad=0.02)
    colorbar.set_label(colorbar_label, fontsize=10)
    figure.suptitle(title, fontsize=13)
    return figure


# --------------------------------------------------------------------------------------------------
# « Je ne sais pas »
# --------------------------------------------------------------------------------------------------


def coverage_accuracy(probabilities, labels, thresholds) -> dict[str, np.ndarray]:
    """Pour chaque seuil : la **couverture** (part des images auxquelles le modèle répond, celles dont la
    probabilité maximale atteint le seuil) et la **précision** sur ces images-là.

    Renvoie ``{"thresholds", "coverage", "accuracy", "answered"}`` (tableaux de même longueur) ; la
    précision vaut ``nan`` quand le modèle ne répond à aucune image.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    answered = confidence[np.newaxis, :] >= thresholds[:, np.newaxis]
    n_answered = answered.sum(axis=1)
    n_correct = (answered & correct[np.newaxis, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n_answered > 0, n_correct / np.maximum(n_answered, 1), np.nan)
    return {
        "thresholds": thresholds,
        "coverage": n_answered / max(len(labels), 1),
        "accuracy": accuracy,
        "answered": n_answered,
    }


def choose_threshold(probabilities, labels, target_accuracy: float, thresholds=None) -> float:
    """Le plus **petit** seuil dont la précision (sur les réponses données) atteint ``target_accuracy``.

    Le plus petit seuil qui convient est celui qui répond au plus grand nombre d'images. Si aucun seuil
    n'y parvient, renvoie le plus grand seuil essayé. À choisir sur des images de **validation**, puis à
    vérifier sur le test.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0.25, 1.0, 0.01), 2)
    table = coverage_accuracy(probabilities, labels, thresholds)
    good = np.flatnonzero(np.nan_to_num(table["accuracy"], nan=0.0) >= target_accuracy)
    return float(table["thresholds"][good[0]] if len(good) else table["thresholds"][-1])


def predict_or_abstain(probabilities, classes: Sequence[str], threshold: float) -> list[str]:
    """La classe prédite, ou ``"je ne sais pas"`` quand la probabilité maximale est sous ``threshold``.

    ``probabilities`` : une ligne ``(k,)`` ou un tableau ``(n, k)`` ; renvoie une liste de ``n`` textes.
    """
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    best = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    return [classes[i] if c >= threshold else UNKNOWN_LABEL for i, c in zip(best, confidence, strict=True)]
