"""Pré-entraîne le réseau de base EuroSAT du chapitre 3 et l'enregistre avec sa fiche JSON.

    python tools/pretrain_backbone.py                 # quelques minutes sur 2 cœurs ; écrit atelier/backbones/eurosat.*
    python tools/pretrain_backbone.py --out /tmp/essai --epochs 2 --per-class 50

Données : les tuiles Sentinel-2 EuroSAT livrées dans ``atelier/eurosat/`` (10 classes, licence MIT), chargées
par ``atelier.preprocessing.load_image`` comme toutes les images de l'atelier, sauf les tuiles ``Forest`` et
``SeaLake`` réservées à l'atelier (``atelier.eurosat_tiles.workshop_tiles``). Découpage stratifié et fixe
(graine 0) : 70 % entraînement, 10 % validation, 20 % test. L'exactitude affichée à la fin est mesurée sur le
test, jamais vu pendant l'entraînement. Déterministe : même graine, mêmes tirages.

Réservé aux auteurs : le fichier produit est livré avec l'atelier, les apprenants n'ont rien à lancer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from atelier import backbone  # noqa: E402
from atelier.data import ImageDataset, Splits, concatenate, split_dataset, to_tf_dataset  # noqa: E402
from atelier.default_dataset.clouds import CLOUD_COVER_MIN, add_clouds  # noqa: E402
from atelier.eurosat_tiles import EUROSAT_DIR, load_eurosat, workshop_tiles  # noqa: E402
from atelier.evaluation import evaluate_dataset  # noqa: E402
from atelier.model import compile_model  # noqa: E402
from atelier.model_io import file_sha256  # noqa: E402
from atelier.training import set_seed  # noqa: E402

#: Découpage du pré-entraînement (proportions de validation et de test, par classe).
VALIDATION, TEST = 0.10, 0.20

#: Époques, époques de montée du pas (*warm-up*) et dropout du pré-entraînement. Mesuré : 30 époques avec un
#: dropout de 0,3 sous-apprenaient (exactitude d'entraînement 0,90, 89,4 % sur le test) ; le réseau est petit
#: et les tuiles peu nombreuses, il lui faut plus de pas et moins de régularisation.
EPOCHS, WARMUP_EPOCHS, DROPOUT = 50, 3, 0.1


#: Nom de la 11ᵉ classe, ajoutée aux dix d'EuroSAT : des tuiles recouvertes de nuages.
CLOUD_CLASS = "Cloudy"


def cloudy_copies(tiles: ImageDataset, count: int, seed: int) -> ImageDataset:
    """``count`` tuiles de ``tiles`` tirées au hasard, recouvertes de nuages procéduraux
    (:func:`atelier.default_dataset.clouds.add_clouds`, au moins 60 % de couverture), classe :data:`CLOUD_CLASS`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(tiles), size=count, replace=False)
    images = np.stack(
        [np.round(255 * add_clouds(rng, tiles.images[i] / 255.0, CLOUD_COVER_MIN)[0]).astype(np.uint8) for i in chosen]
    )
    return ImageDataset(
        images=images,
        labels=np.full(count, len(tiles.classes), dtype=tiles.labels.dtype),
        classes=[*tiles.classes, CLOUD_CLASS],
        paths=[tiles.paths[i].with_name(f"nuages-{tiles.paths[i].name}") for i in chosen],
        source=tiles.source,
    )


def with_cloud_class(splits: Splits, seed: int) -> Splits:
    """Ajoute à chaque partie du découpage une classe « nuageux » fabriquée **à partir des tuiles de cette
    partie** (aucune tuile de test ne sert à l'entraînement), autant d'images qu'une classe moyenne.

    EuroSAT n'a aucun nuage : sans cette classe, le réseau de base n'a jamais appris à les reconnaître, et la
    classe « nuageux » de l'atelier était celle que le transfert reconnaissait le moins bien sur de vraies images."""
    parts = {}
    for offset, name in enumerate(("train", "validation", "test")):
        tiles = getattr(splits, name)
        clouds = cloudy_copies(tiles, len(tiles) // len(tiles.classes), seed + 1000 * (offset + 1))
        parts[name] = concatenate([tiles, clouds], clouds.classes, tiles.source)
    return Splits(**parts)


def sensor_shift(image, seed: int):
    """Une autre prise de vue de la même tuile (flottants 0–255) : luminosité, contraste, saturation et teinte
    un peu différents, et parfois une résolution plus faible (réduite puis agrandie). Les photos des
    apprenants ne viennent pas toutes de Sentinel-2 : un réseau de base qui ne compte pas sur les couleurs
    exactes d'un capteur devrait mieux se transférer."""
    import tensorflow as tf

    x = image / 255.0
    x = tf.image.random_brightness(x, 0.1, seed=seed + 2)
    x = tf.image.random_contrast(x, 0.75, 1.25, seed=seed + 3)
    x = tf.image.random_saturation(tf.clip_by_value(x, 0.0, 1.0), 0.6, 1.4, seed=seed + 4)
    x = tf.image.random_hue(x, 0.04, seed=seed + 5)
    size = tf.shape(image)[0]
    low = tf.random.uniform([], 24, 65, dtype=tf.int32, seed=seed + 6)
    blurred = tf.image.resize(tf.image.resize(x, [low, low], antialias=True), [size, size])
    keep = tf.random.uniform([], seed=seed + 7) < 0.6
    x = tf.where(keep, x, blurred)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def augmented(tiles, batch_size: int, seed: int, shift: bool = False):
    """Lots d'entraînement mélangés, chaque tuile retournée et tournée d'un quart de tour au hasard : une vue
    de satellite n'a ni haut ni bas, ces huit versions d'une tuile sont toutes aussi vraies. ``shift`` : en
    plus, :func:`sensor_shift`."""
    import tensorflow as tf

    def flip_and_turn(image, label):
        image = tf.image.random_flip_left_right(image, seed=seed)
        turns = tf.random.uniform([], 0, 4, dtype=tf.int32, seed=seed + 1)
        image = tf.cast(tf.image.rot90(image, turns), tf.float32)
        return (sensor_shift(image, seed) if shift else image), label

    ds = tf.data.Dataset.from_tensor_slices((tiles.images, tiles.labels))
    ds = ds.shuffle(len(tiles), seed=seed, reshuffle_each_iteration=True).map(flip_and_turn)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def conditions() -> str:
    """Dans quelles conditions la durée a été mesurée : une machine partagée allonge la durée écoulée, pas le
    temps de processeur (``training_cpu_seconds``)."""
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    state = "machine partagée (durée écoulée allongée)" if load > cpus else "machine au repos"
    return f"{state} : charge moyenne {load:.1f} pour {cpus} cœurs à la fin de l'entraînement"


def save_weights_only_model(model, path: Path) -> None:
    """Enregistre le réseau au format ``.keras`` **sans l'état de l'optimiseur** (les moments d'Adam triplent
    la taille du fichier et ne servent pas au transfert) : on le recharge non compilé, puis on l'enregistre."""
    import tempfile

    import keras

    with tempfile.TemporaryDirectory() as tmp:
        compiled = Path(tmp) / path.name
        model.save(compiled)
        keras.saving.load_model(compiled, compile=False, safe_mode=True).save(path)


def pretrain(
    out_dir: str | Path = backbone.BACKBONES_DIR,
    *,
    tiles_dir: str | Path = EUROSAT_DIR,
    epochs: int = EPOCHS,
    seed: int = 0,
    filters: tuple[int, ...] = backbone.FILTERS,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    dropout: float = DROPOUT,
    per_class: int | None = None,
    clouds: bool = False,
    shift: bool = False,
    verbose: int | str = 1,
    command: str = "python tools/pretrain_backbone.py",
) -> dict[str, Any]:
    """Entraîne le réseau de base et sa tête à 10 classes sur les tuiles EuroSAT, l'enregistre dans
    ``out_dir`` (``eurosat.keras`` et sa fiche ``eurosat.json``) et renvoie la fiche.

    ``clouds`` : ajoute la classe :data:`CLOUD_CLASS` (:func:`with_cloud_class`). Essayé pour la classe
    « nuageux », la plus faible du transfert sur de vraies photos : 93,2 % sur les tuiles de test (nuages
    compris), mais le transfert n'y gagne rien (``tools/measure_transfer_reel.py``, quatre tirages : 96,6 %
    contre 97,0 % avec le réseau livré, « nuageux » 91 % dans les deux cas). Le réseau livré n'en a pas.

    ``shift`` : :func:`sensor_shift` sur chaque lot. Essayé pour que la base dépende moins des couleurs exactes
    de Sentinel-2 : 90,9 % sur les tuiles de test, et le transfert n'y gagne rien non plus (huit exécutions :
    95,1 ± 2,3 % contre 95,4 ± 2,0 % avec le réseau livré). Le réseau livré n'en a pas."""
    set_seed(seed)
    reserved = workshop_tiles(tiles_dir)
    tiles = load_eurosat(tiles_dir, per_class=per_class, exclude=reserved)
    splits = split_dataset(tiles, validation=VALIDATION, test=TEST, seed=seed)
    if clouds:
        splits = with_cloud_class(splits, seed)
    classes = splits.train.classes
    # No augmentation layers in the network: its colours matter for land cover, and its flips and quarter
    # turns (below, in the input pipeline) are cheap and exact, unlike arbitrary rotations.
    model = backbone.build_classifier(classes, backbone.build_base(filters), augment=False, dropout=dropout, seed=seed)
    steps_per_epoch = -(-len(splits.train) // batch_size)
    warmup_epochs = min(WARMUP_EPOCHS, epochs // 4)
    compile_model(
        model, learning_rate, total_steps=steps_per_epoch * epochs, warmup_steps=steps_per_epoch * warmup_epochs
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    history = model.fit(
        augmented(splits.train, batch_size, seed, shift),
        validation_data=to_tf_dataset(splits.validation, batch_size=256),
        epochs=epochs,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles
    )
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    report = evaluate_dataset(model, splits.test)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = backbone.model_file(out_dir)
    save_weights_only_model(model, path)
    card = {
        "name": backbone.NAME,
        "file": path.name,
        "sha256": file_sha256(path),
        "architecture": (
            f"CNN de l'atelier élargi : {len(filters)} blocs convolution 3×3 → normalisation par lot → ReLU → "
            f"max-pooling ({'→'.join(map(str, filters))} filtres), moyenne globale, dropout, "
            f"Dense softmax à {len(classes)} sorties ; entrée 64×64×3, valeurs 0–255"
        ),
        "filters": list(filters),
        "augmentation": "retournement et quart de tour au hasard (huit orientations d'une tuile)",
        "image_size": int(model.input_shape[1]),
        "parameters": int(model.count_params()),
        "base_parameters": int(backbone.base_of(model).count_params()),
        "classes": list(classes),
        "data": (
            "EuroSAT RGB (Helber et al., IEEE JSTARS 2019) : tuiles Sentinel-2 64×64 livrées dans atelier/eurosat/ "
            "(contient des données Copernicus Sentinel modifiées), sauf les tuiles Forest et SeaLake réservées "
            "à l'atelier (atelier.eurosat_tiles.workshop_tiles)"
        ),
        "n_tiles": len(tiles),
        "excluded_tiles": len(reserved),
        "licence": "MIT (EuroSAT, © 2023 Patrick Helber ; voir atelier/eurosat/LICENSE-EuroSAT.txt)",
        "heldout_accuracy": report["accuracy"],
        "heldout_per_class": report["per_class"],
        "split": {
            "method": "atelier.data.split_dataset, stratifié par classe",
            "seed": seed,
            "validation": VALIDATION,
            "test": TEST,
            "n_train": len(splits.train),
            "n_validation": len(splits.validation),
            "n_test": len(splits.test),
        },
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "learning_rate_schedule": f"montée linéaire sur {warmup_epochs} époques, puis décroissance en cosinus",
        "dropout": dropout,
        "cloud_class": clouds,
        "sensor_shift": shift,
        "final_train_accuracy": round(float(history.history["accuracy"][-1]), 4),
        "final_validation_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
        "training_seconds": round(seconds, 1),
        "training_cpu_seconds": round(cpu_seconds, 1),
        "load_average": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "training_conditions": conditions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "keras_version": __import__("keras").__version__,
    }
    backbone.card_file(out_dir).write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pré-entraîne le réseau de base EuroSAT du chapitre 3.")
    parser.add_argument("--out", type=Path, default=backbone.BACKBONES_DIR, help="dossier de sortie")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"nombre d'époques (défaut : {EPOCHS})")
    parser.add_argument("--seed", type=int, default=0, help="graine (défaut : 0)")
    parser.add_argument(
        "--filters", default=",".join(map(str, backbone.FILTERS)), help="filtres des blocs, par ex. 32,64,128,256"
    )
    parser.add_argument("--per-class", type=int, default=None, help="tuiles par classe (défaut : toutes)")
    parser.add_argument(
        "--nuages",
        action="store_true",
        help="ajouter une 11ᵉ classe de tuiles recouvertes de nuages procéduraux (essai mesuré : pas de gain)",
    )
    parser.add_argument(
        "--capteurs",
        action="store_true",
        help="varier luminosité, contraste, saturation, teinte et résolution (essai mesuré : pas de gain)",
    )
    args = parser.parse_args(argv)
    filters = tuple(int(f) for f in args.filters.split(","))
    command = "python tools/pretrain_backbone.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:]))
    card = pretrain(
        args.out,
        epochs=args.epochs,
        seed=args.seed,
        filters=filters,
        per_class=args.per_class,
        clouds=args.nuages,
        shift=args.capteurs,
        command=command.strip(),
    )
    print(
        f"Exactitude sur les {card['split']['n_test']} tuiles EuroSAT de test : {card['heldout_accuracy']:.1%}".replace(
            ".", ","
        ).replace("%", " %")
    )
    print(
        f"Durée de l'entraînement : {card['training_seconds']:.0f} s ({card['training_cpu_seconds']:.0f} s de "
        f"processeur, charge {card['load_average']}) ; fichier : {backbone.model_file(args.out)}"
    )
    keys = ("heldout_accuracy", "sha256", "training_seconds", "training_cpu_seconds")
    print(json.dumps({k: card[k] for k in keys}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
