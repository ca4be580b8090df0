"""Apprentissage par transfert (chapitre 3) : MobileNetV2 pré-entraîné sur ImageNet, hors ligne.

Le réseau choisi est **MobileNetV2, largeur ``alpha=0.35``, entrée 96 × 96** : le plus petit des réseaux
de ``keras.applications`` dont Keras fournit des poids ImageNet (environ 410 000 paramètres, un fichier de
poids d'environ 2 Mo, une dizaine de millions d'opérations par image). MobileNetV3-Small ne publie ses
poids que pour du 224 × 224 et cache son prétraitement dans le modèle ; MobileNetV2 garde un
``preprocess_input`` explicite (pixels ramenés entre -1 et 1) que le chapitre explique.

Keras télécharge normalement ces poids au premier usage. Ce module ne le fait **jamais** de lui-même :
il cherche le fichier dans le cache de Keras (``$KERAS_HOME/models`` ou ``~/.keras/models``) et, s'il
manque, le notebook continue sur une solution de secours clairement annoncée (la même architecture
entraînée depuis zéro). Seule la commande des formateurs ``python -m atelier poids-mobilenet`` accède au
réseau, et seulement quand on ne lui donne pas de fichier.

Le modèle complet garde le contrat d'entrée de l'atelier (images 64 × 64 × 3, valeurs 0–255) : le
redimensionnement en 96 × 96 et la mise à l'échelle de MobileNetV2 sont des couches du modèle, comme la
normalisation du CNN du chapitre 2. L'API du chapitre 4 peut donc charger l'un ou l'autre.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preprocessing import IMAGE_SIZE

#: Largeur du réseau (fraction des filtres de MobileNetV2) et taille d'entrée du réseau pré-entraîné.
ALPHA = 0.35
BACKBONE_SIZE = 96

#: Nom exact du fichier que Keras cherche dans son cache pour cette variante (sans la tête ImageNet).
WEIGHTS_FILENAME = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(ALPHA)}_{BACKBONE_SIZE}_no_top.h5"

#: Adresse d'où Keras télécharge ce fichier.
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + WEIGHTS_FILENAME

#: Nom de la couche « base » (le MobileNetV2 sans sa tête) dans les modèles construits ici.
BACKBONE_NAME = f"mobilenetv2_{ALPHA:0.2f}_{BACKBONE_SIZE}"

#: Durée maximale d'attente du téléchargement (commande des formateurs uniquement).
DOWNLOAD_TIMEOUT = 30

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class WeightsError(ValueError):
    """Le fichier de poids est absent, illisible ou ne correspond pas au réseau (message en français)."""


# --- where Keras keeps its weights ------------------------------------------------------------------


def keras_home() -> Path:
    """Dossier de Keras : ``$KERAS_HOME`` s'il est défini, sinon ``~/.keras`` (``/tmp/.keras`` si le
    dossier personnel n'est pas accessible en écriture), comme le fait Keras lui-même."""
    explicit = os.environ.get("KERAS_HOME")
    if explicit:
        return Path(explicit).expanduser()
    home = Path(os.path.expanduser("~"))
    if not os.access(home, os.W_OK):
        home = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir())
    return home / ".keras"


def weights_cache_path() -> Path:
    """Chemin exact où Keras cherche (et range) les poids ImageNet de ce MobileNetV2."""
    return keras_home() / "models" / WEIGHTS_FILENAME


def _candidates() -> list[Path]:
    main = weights_cache_path()
    home = main.parent.parent
    if not home.exists() or os.access(home, os.W_OK):
        return [main]
    # Keras itself downloads to /tmp/.keras when its home exists but is read-only: look there too.
    tmp = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir())
    return [main, tmp / ".keras" / "models" / WEIGHTS_FILENAME]


def offline_help(target: Path | None = None) -> str:
    """Explication, en français, de la façon dont un formateur prépare les poids pour une salle hors ligne."""
    target = target or weights_cache_path()
    return (
        "Pour une salle sans Internet, le formateur prépare les poids à l'avance (fichier d'environ 2 Mo) :\n"
        "  1. sur une machine connectée : « python -m atelier poids-mobilenet » télécharge le fichier une fois\n"
        "     et vérifie qu'il se charge ; ou téléchargez-le vous-même :\n"
        f"     {WEIGHTS_URL}\n"
        "  2. sur chaque poste, copiez ce fichier (clé USB, dossier partagé) puis lancez :\n"
        f"     python -m atelier poids-mobilenet --depuis {WEIGHTS_FILENAME}\n"
        "     La commande le range sous le nom exact qu'attend Keras et vérifie qu'il se charge.\n"
        f"     (Le copier à la main convient aussi : {target})\n"
        "  La variable d'environnement KERAS_HOME déplace ce dossier (par exemple vers un disque partagé)."
    )


@dataclass(frozen=True)
class WeightsStatus:
    """Où en sont les poids ImageNet : ``available``, le fichier ``path`` et un ``message`` en français."""

    available: bool
    path: Path
    message: str

    @property
    def weights_path(self) -> Path | None:
        """Le fichier à charger, ou ``None`` s'il n'est pas utilisable (solution de secours)."""
        return self.path if self.available else None

    @property
    def mode(self) -> str:
        """``"imagenet"`` (transfert) ou ``"secours"`` (même architecture, entraînée depuis zéro)."""
        return "imagenet" if self.available else "secours"

    def __str__(self) -> str:
        return self.message


def _looks_like_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    except OSError:
        return False


def imagenet_weights_status() -> WeightsStatus:
    """Dit si les poids ImageNet de MobileNetV2 sont dans le cache de Keras, **sans rien télécharger**.

    Vérification rapide (le fichier existe, n'est pas vide et est un fichier HDF5) ; le chargement
    lui-même a lieu dans :func:`build_backbone`.
    """
    for path in _candidates():
        if path.is_file() and path.stat().st_size > 0 and _looks_like_hdf5(path):
            return WeightsStatus(
                True,
                path,
                f"Poids ImageNet trouvés dans le cache de Keras : {path}\n"
                "CHEMIN SUIVI : apprentissage par transfert (base MobileNetV2 pré-entraînée, gelée).",
            )
    path = weights_cache_path()
    if path.exists():
        problem = f"Le fichier {path} existe mais n'est pas un fichier de poids valide (vide ou corrompu)."
    else:
        problem = f"Les poids ImageNet de MobileNetV2 ne sont pas dans le cache de Keras ({path})."
    return WeightsStatus(
        False,
        path,
        f"{problem}\nL'atelier ne les télécharge pas pendant le cours (pas d'Internet garanti).\n"
        "CHEMIN SUIVI : SOLUTION DE SECOURS — même architecture MobileNetV2, poids aléatoires, entraînée\n"
        "depuis zéro pendant moins d'époques. Ce n'est PAS de l'apprentissage par transfert : n'en tirez\n"
        "aucune conclusion sur le transfert.\n\n" + offline_help(path),
    )


# --- the network --------------------------------------------------------------------------------------


def preprocessing_layers(image_size: int = IMAGE_SIZE) -> Any:
    """Le prétraitement de MobileNetV2, en couches : redimensionnement en 96 × 96, puis pixels 0–255
    ramenés entre -1 et 1 (``x / 127.5 - 1``, exactement ``keras.applications.mobilenet_v2.preprocess_input``).

    Ce sont des couches standard : le modèle enregistré se recharge en ``safe_mode`` (pas de ``Lambda``).
    """
    import keras
    from keras import layers

    steps = [keras.Input(shape=(image_size, image_size, 3))]
    if image_size != BACKBONE_SIZE:
        steps.append(layers.Resizing(BACKBONE_SIZE, BACKBONE_SIZE, interpolation="bilinear", name="redimensionnement"))
    steps.append(layers.Rescaling(1.0 / 127.5, offset=-1.0, name="echelle_mobilenet"))
    return keras.Sequential(steps, name="pretraitement_mobilenet")


def build_backbone(weights: str | Path | None = None) -> Any:
    """MobileNetV2 (``alpha=0.35``, entrée 96 × 96) sans sa tête de classification ImageNet.

    ``weights`` : fichier de poids à charger (celui du cache, voir :func:`imagenet_weights_status`) ;
    ``None`` : poids aléatoires. Aucun téléchargement n'est jamais tenté. Lève :class:`WeightsError`
    si le fichier ne se charge pas dans ce réseau.
    """
    import keras

    base = keras.applications.MobileNetV2(
        input_shape=(BACKBONE_SIZE, BACKBONE_SIZE, 3),
        alpha=ALPHA,
        include_top=False,
        weights=None,
        name=BACKBONE_NAME,
    )
    if weights is not None:
        load_backbone_weights(base, weights)
    return base


def load_backbone_weights(base, path: str | Path) -> None:
    """Charge un fichier de poids ``.h5`` dans ``base`` ; message français si c'est le mauvais fichier."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Fichier de poids introuvable : {path}")
    if not _looks_like_hdf5(path):
        raise WeightsError(
            f"{path.name} n'est pas un fichier de poids Keras (format HDF5 attendu, « .h5 »). "
            f"Le bon fichier s'appelle {WEIGHTS_FILENAME}."
        )
    with tempfile.TemporaryDirectory() as tmp:
        # Keras picks the loader from the extension: give it a ".h5" name whatever the file is called.
        readable = path
        if path.suffix.lower() not in (".h5", ".hdf5") or path.name.endswith(".weights.h5"):
            readable = Path(tmp) / WEIGHTS_FILENAME
            shutil.copyfile(path, readable)
        try:
            base.load_weights(readable)
        except Exception as exc:  # h5py/Keras raise ValueError, KeyError, OSError… for a wrong file
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise WeightsError(
                f"{path.name} ne contient pas les poids de MobileNetV2 alpha={ALPHA}, {BACKBONE_SIZE}×"
                f"{BACKBONE_SIZE}, sans tête (le fichier attendu s'appelle {WEIGHTS_FILENAME}). "
                f"Détail : {first_line}"
            ) from None


def build_transfer_model(
    classes: Sequence[str],
    weights: str | Path | None = None,
    *,
    image_size: int = IMAGE_SIZE,
    augment: bool = True,
    dropout: float = 0.2,
    seed: int = 0,
    freeze: bool | None = None,
) -> Any:
    """Le classifieur du chapitre 3 (non compilé) : images ``image_size`` × ``image_size`` × 3, 0–255.

    augmentation (celle du chapitre 2) → redimensionnement 96 × 96 → échelle -1…1 → base MobileNetV2 →
    moyenne globale → dropout → ``Dense`` softmax, une sortie par classe.

    - ``weights`` donné (poids ImageNet) : la base est **gelée**, seule la nouvelle tête s'entraîne ;
    - ``weights=None`` (**solution de secours**) : poids aléatoires, toute la base s'entraîne. Ses couches
      de normalisation suivent plus vite les statistiques des lots (``momentum`` 0,9 au lieu de 0,999),
      sinon quelques époques ne suffiraient pas à les rendre utilisables.

    ``freeze`` force le gel de la base (``True``) ou non (``False``) ; par défaut, la base est gelée si et
    seulement si des poids sont donnés.
    """
    import keras
    from keras import layers

    from .model import augmentation_layers

    base = build_backbone(weights)
    if freeze is None:
        freeze = weights is not None
    if freeze:
        base.trainable = False
    if weights is None:
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation_layers(seed)(inputs) if augment else inputs
    x = preprocessing_layers(image_size)(x)
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="moyenne_globale")(x)
    x = layers.Dropout(dropout, seed=seed)(x)
    outputs = layers.Dense(len(classes), activation="softmax", name="probabilites")(x)
    name = "mobilenet_transfert" if weights is not None else "mobilenet_secours"
    return keras.Model(inputs, outputs, name=name)


def backbone_of(model) -> Any:
    """La base MobileNetV2 à l'intérieur d'un modèle construit par :func:`build_transfer_model`."""
    return model.get_layer(BACKBONE_NAME)


def unfreeze_top(model, n_layers: int = 20, learning_rate: float = 1e-5) -> Any:
    """Affinage (*fine-tuning*) : dégèle les ``n_layers`` dernières couches de la base et recompile avec
    un pas d'apprentissage **faible**.

    Les couches ``BatchNormalization`` restent gelées : en Keras 3, une normalisation gelée travaille en
    mode inférence (elle garde les statistiques apprises sur ImageNet), et ses statistiques ne sont pas
    bousculées par nos petits lots. Le modèle doit être recompilé pour que le changement compte ;
    renvoie le modèle recompilé.
    """
    from keras import layers

    from .model import compile_model

    if n_layers < 0:
        raise ValueError("n_layers doit être positif ou nul.")
    base = backbone_of(model)
    base.trainable = True
    first = len(base.layers) - n_layers
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= first and not isinstance(layer, layers.BatchNormalization)
    return compile_model(model, learning_rate)


def count_parameters(model) -> dict[str, int]:
    """Nombre de paramètres ``total``, ``entrainables`` et ``geles`` (non entraînables) d'un modèle."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"total": trainable + frozen, "entrainables": trainable, "geles": frozen}


# --- instructors: put the weights in the cache ------------------------------------------------------


def install_weights(source: str | Path) -> Path:
    """Vérifie qu'un fichier de poids se charge dans le MobileNetV2 de l'atelier, puis le copie dans le
    cache de Keras sous le nom exact qu'il attend. Renvoie le chemin dans le cache.

    Le fichier est vérifié **avant** d'être copié : un mauvais fichier ne remplace jamais un bon.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise WeightsError(f"Fichier introuvable : {source}")
    if not source.is_file():
        raise WeightsError(f"{source} n'est pas un fichier : donnez le fichier {WEIGHTS_FILENAME}.")
    load_backbone_weights(build_backbone(None), source)
    target = weights_cache_path()
    if source.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    build_backbone(target)  # the cached copy loads too
    return target


def download_weights(timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Télécharge les poids une fois (machine connectée), les vérifie et les range dans le cache."""
    import urllib.error
    import urllib.request

    with tempfile.TemporaryDirectory() as tmp:
        downloaded = Path(tmp) / WEIGHTS_FILENAME
        try:
            with urllib.request.urlopen(WEIGHTS_URL, timeout=timeout) as response, open(downloaded, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsError(
                f"Téléchargement impossible ({reason}). Sans Internet, téléchargez le fichier sur une machine "
                "connectée, puis installez-le comme ci-dessous.\n\n" + offline_help()
            ) from None
        return install_weights(downloaded)
