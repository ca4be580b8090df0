"""Le réseau de base EuroSAT du chapitre 3 : son architecture, le fichier livré avec l'atelier et sa fiche,
et le classifieur par transfert construit dessus.

L'atelier pré-entraîne lui-même ce réseau (``python tools/pretrain_backbone.py``) sur les 10 classes
d'occupation du sol des tuiles Sentinel-2 EuroSAT livrées dans ``atelier/eurosat/``, et le livre dans
``atelier/backbones/`` : le chapitre 3 fait donc du vrai apprentissage par transfert **sans Internet**.

C'est le CNN du chapitre 2 en plus large : les mêmes blocs convolution → normalisation → ReLU →
max-pooling (:func:`atelier.model.conv_blocks`), avec plus de filtres. La **base** (ou *backbone*) est la
partie « extraction de caractéristiques » : de l'image 64 × 64 aux valeurs 0–255 jusqu'à la moyenne
globale, un vecteur de caractéristiques par image. Le fichier livré est le réseau pré-entraîné complet (la
base et sa tête à 10 classes EuroSAT) ; sa fiche JSON dit d'où il vient et son empreinte SHA-256, vérifiée
à chaque chargement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .model_io import file_sha256
from .preprocessing import IMAGE_SIZE

#: Dossier des réseaux de base livrés dans le paquet.
BACKBONES_DIR = Path(__file__).resolve().parent / "backbones"

#: Nom du réseau de base livré (fichiers ``eurosat.keras`` et ``eurosat.json``).
NAME = "eurosat"

#: Filtres des blocs du réseau de base : ceux du CNN du chapitre 2 (16 → 128), doublés.
FILTERS: tuple[int, ...] = (32, 64, 128, 256)

#: Blocs du réseau pré-entraîné gardés pour le transfert : les trois premiers. Le quatrième, le plus
#: spécialisé dans les 10 classes EuroSAT, est laissé de côté ; mesuré par validation croisée sur les moitiés
#: d'entraînement de vraies images (``tools/measure_transfer_reel.py``), couper après le bloc 3 transfère mieux.
BLOCKS = 3

#: Blocs dégelés pendant l'affinage du chapitre 3 : tous ceux de la base, avec un pas faible.
FINE_BLOCKS = BLOCKS

#: Pas de l'affinage : dix fois plus faible que celui de la tête (3e-3).
FINE_LEARNING_RATE = 3e-4

#: Nom de la couche « base » dans les modèles construits ici.
BASE_NAME = "base_eurosat"

#: Champs obligatoires de la fiche JSON.
CARD_FIELDS: tuple[str, ...] = (
    "name",
    "file",
    "sha256",
    "architecture",
    "filters",
    "image_size",
    "classes",
    "data",
    "licence",
    "heldout_accuracy",
    "split",
    "seed",
    "epochs",
    "date",
    "command",
)


class BackboneError(ValueError):
    """Le réseau de base livré est absent, modifié ou incohérent avec sa fiche (message en français)."""


# --- the architecture ------------------------------------------------------------------------------


def build_base(filters: Sequence[int] = FILTERS, image_size: int = IMAGE_SIZE, *, pool_last: bool = True) -> Any:
    """La base : image ``image_size`` × ``image_size`` × 3 aux valeurs 0–255 → normalisation (÷ 255) →
    un bloc convolution → normalisation par lot → ReLU → max-pooling par nombre de filtres → moyenne
    globale : un vecteur de ``filters[-1]`` caractéristiques par image.

    ``pool_last=False`` : sans le max-pooling du dernier bloc (la moyenne globale porte alors sur la carte
    entière de ce bloc) ; c'est la forme de la base coupée du transfert (:func:`load_base`)."""
    import keras
    from keras import layers

    from .model import conv_blocks

    blocks = conv_blocks(filters)
    if not pool_last:
        blocks = blocks[:-1]
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3)),
            layers.Rescaling(1.0 / 255, name="normalisation"),
            *blocks,
            layers.GlobalAveragePooling2D(name="moyenne_globale"),
        ],
        name=BASE_NAME,
    )


def build_classifier(
    classes: Sequence[str],
    base: Any = None,
    *,
    image_size: int = IMAGE_SIZE,
    augment: bool = True,
    dropout: float = 0.3,
    seed: int = 0,
    name: str = "classifieur_eurosat",
) -> Any:
    """Un classifieur (non compilé) : augmentation du chapitre 2 → ``base`` → dropout → ``Dense`` softmax.

    Sert au pré-entraînement (10 classes EuroSAT, base neuve) et au transfert (``base`` pré-entraînée,
    nouvelle tête pour les classes de l'atelier). ``base=None`` : une base neuve (poids aléatoires).
    """
    import keras
    from keras import layers

    from .model import augmentation_layers

    base = base if base is not None else build_base(image_size=image_size)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation_layers(seed)(inputs) if augment else inputs
    x = base(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    outputs = layers.Dense(len(classes), activation="softmax", name="probabilites")(x)
    return keras.Model(inputs, outputs, name=name)


# --- the shipped file and its card -----------------------------------------------------------------


def model_file(directory: str | Path = BACKBONES_DIR) -> Path:
    """Chemin du réseau pré-entraîné livré (``eurosat.keras``)."""
    return Path(directory) / f"{NAME}.keras"


def card_file(directory: str | Path = BACKBONES_DIR) -> Path:
    """Chemin de sa fiche (``eurosat.json``)."""
    return Path(directory) / f"{NAME}.json"


def read_card(directory: str | Path = BACKBONES_DIR) -> dict[str, Any]:
    """Lit et vérifie la fiche du réseau de base (sans charger le réseau)."""
    path = card_file(directory)
    if not path.is_file():
        raise BackboneError(
            f"Fiche du réseau de base introuvable : {path}. Elle est livrée avec l'atelier ; "
            "réinstallez-le, ou refaites le pré-entraînement : python tools/pretrain_backbone.py"
        )
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BackboneError(f"Fiche du réseau de base illisible ({path.name}) : {error}") from None
    if not isinstance(card, dict):
        raise BackboneError(f"Fiche du réseau de base invalide ({path.name}) : un objet JSON est attendu.")
    missing = [key for key in CARD_FIELDS if key not in card]
    if missing:
        raise BackboneError(f"Fiche du réseau de base incomplète ({path.name}) : il manque {', '.join(missing)}.")
    if card["file"] != model_file(directory).name:
        raise BackboneError(f"La fiche {path.name} décrit le fichier {card['file']}, pas {model_file(directory).name}.")
    return card


def load_pretrained(directory: str | Path = BACKBONES_DIR) -> tuple[Any, dict[str, Any]]:
    """Charge le réseau pré-entraîné complet (base + tête à 10 classes EuroSAT) et sa fiche, hors ligne.

    Vérifie l'empreinte SHA-256 du fichier (celle de la fiche), le charge en ``safe_mode`` (un fichier ne
    peut pas exécuter de code) et vérifie qu'il a une sortie par classe de la fiche. Lève
    :class:`BackboneError` avec un message en français sinon.
    """
    card = read_card(directory)
    path = model_file(directory)
    if not path.is_file():
        raise BackboneError(
            f"Réseau de base introuvable : {path}. Il est livré avec l'atelier ; réinstallez-le, ou refaites "
            "le pré-entraînement : python tools/pretrain_backbone.py"
        )
    if file_sha256(path) != card["sha256"]:
        raise BackboneError(
            f"{path.name} ne correspond pas à sa fiche (empreinte SHA-256 différente) : le fichier a été modifié "
            "ou remplacé. Réinstallez l'atelier, ou refaites le pré-entraînement : python tools/pretrain_backbone.py"
        )
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, KeyError, OSError… for a damaged file
        raise BackboneError(f"{path.name} n'est pas un modèle Keras lisible : {error}") from None
    if tuple(model.output_shape) != (None, len(card["classes"])):
        raise BackboneError(
            f"{path.name} a {model.output_shape[-1]} sorties mais sa fiche nomme {len(card['classes'])} classes."
        )
    return model, card


def describe(directory: str | Path = BACKBONES_DIR, *, blocks: int = BLOCKS) -> dict[str, Any]:
    """Ce que les métadonnées d'un modèle par transfert disent de sa base : nom, empreintes du fichier de
    poids et de la fiche, exactitude du pré-entraînement, nombre de blocs gardés."""
    card = read_card(directory)
    return {
        "name": card["name"],
        "weights_sha256": card["sha256"],
        "card_sha256": file_sha256(card_file(directory)),
        "heldout_accuracy": card["heldout_accuracy"],
        "blocks": blocks,
    }


def load_base(*, trainable: bool = False, blocks: int = BLOCKS, directory: str | Path = BACKBONES_DIR) -> Any:
    """La base pré-entraînée sur EuroSAT (sans sa tête), **gelée** par défaut (``trainable=False``).

    ``blocks`` : nombre de blocs gardés (par défaut :data:`BLOCKS`). Une base coupée s'arrête après la ReLU
    de son dernier bloc, puis fait la moyenne globale : un vecteur de ``filters[blocks - 1]``
    caractéristiques. Avec tous les blocs, c'est la base pré-entraînée telle quelle.
    """
    model, card = load_pretrained(directory)
    pretrained = model.get_layer(BASE_NAME)
    filters = list(card["filters"])
    if not 1 <= blocks <= len(filters):
        raise ValueError(f"blocks doit être entre 1 et {len(filters)} (le nombre de blocs du réseau pré-entraîné).")
    if blocks == len(filters):
        base = pretrained
    else:
        base = build_base(filters[:blocks], card["image_size"], pool_last=False)
        for layer in base.layers:
            if layer.weights:
                layer.set_weights(pretrained.get_layer(layer.name).get_weights())
    base.trainable = trainable
    return base


def build_transfer_model(
    classes: Sequence[str], *, blocks: int = BLOCKS, seed: int = 0, augment: bool = True, dropout: float = 0.3
) -> Any:
    """Le classifieur du chapitre 3 (non compilé) : les ``blocks`` premiers blocs de la base EuroSAT,
    **gelés**, et une nouvelle tête (une sortie par classe de ``classes``), après l'augmentation du
    chapitre 2. Entrée : images 64 × 64 × 3, 0–255."""
    return build_classifier(
        classes,
        load_base(trainable=False, blocks=blocks),
        augment=augment,
        dropout=dropout,
        seed=seed,
        name="transfert_eurosat",
    )


def base_of(model) -> Any:
    """La base EuroSAT à l'intérieur d'un modèle construit par :func:`build_classifier`."""
    return model.get_layer(BASE_NAME)


def unfreeze_top(
    model,
    n_blocks: int = FINE_BLOCKS,
    learning_rate: float = FINE_LEARNING_RATE,
    *,
    total_steps: int | None = None,
    warmup_steps: int = 0,
) -> Any:
    """Affinage (*fine-tuning*) : dégèle les convolutions des ``n_blocks`` derniers blocs de la base et
    recompile avec un pas d'apprentissage **faible** ; renvoie le modèle recompilé.

    Les couches ``BatchNormalization`` restent gelées : en Keras 3, une normalisation gelée travaille en
    mode inférence et garde les statistiques apprises sur EuroSAT. Recompiler est indispensable pour que
    le changement de ``trainable`` compte. ``total_steps`` et ``warmup_steps`` : le calendrier du pas
    (:func:`atelier.model.compile_model`) ; une courte montée évite de secouer la base aux premiers lots.
    """
    from keras import layers

    from .model import compile_model

    base = base_of(model)
    convolutions = [layer for layer in base.layers if isinstance(layer, layers.Conv2D)]
    if not 0 <= n_blocks <= len(convolutions):
        raise ValueError(f"n_blocks doit être entre 0 et {len(convolutions)} (le nombre de blocs de la base).")
    base.trainable = True
    keep = convolutions[len(convolutions) - n_blocks :]
    for layer in base.layers:
        layer.trainable = layer in keep
    return compile_model(model, learning_rate, total_steps=total_steps, warmup_steps=warmup_steps)


def trainable_layers(model) -> list[str]:
    """Noms des couches de la base qui ont des poids entraînables (pour voir l'effet du gel)."""
    return [layer.name for layer in base_of(model).layers if layer.trainable_weights]
