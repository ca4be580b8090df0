"""Vérification rapide du jeu de données par défaut : les classes sont-elles apprenables, et robustes ?

Entraîne un petit CNN Keras quelques époques sur le jeu de données par défaut (80 % / 20 %), puis l'évalue
sur la partie test telle quelle et sur des copies « décalées » (voile bleuté, texture accentuée, image plus
sombre et plus terne). Compare aussi avec un classifieur qui ne voit que la couleur moyenne.

Usage : python tools/check_default_dataset.py [--per-class 400] [--epochs 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image, ImageFilter

from atelier.data import load_dataset
from atelier.default_dataset import CLASSES, build_default_dataset


def shift_haze(x, rng):
    """Extra bluish haze (path radiance), as in hazy Sentinel-2 true-colour tiles."""
    amount = rng.uniform(0.2, 0.4, size=(len(x), 1, 1, 1))
    haze = np.array([150, 165, 190], dtype=np.float64)
    return np.clip(x * (1 - amount) + haze * amount, 0, 255).astype(np.uint8)


def shift_blue(x, rng):
    """Blue colour cast and lower red."""
    gains = np.array([0.85, 0.97, 1.15])
    return np.clip(x * gains + np.array([0, 5, 20]), 0, 255).astype(np.uint8)


def shift_texture(x, rng):
    """Sharper, more textured images (finer ground sampling than the training images)."""
    out = []
    for image in x:
        pil = Image.fromarray(image).filter(ImageFilter.UnsharpMask(radius=1.5, percent=150, threshold=0))
        out.append(np.asarray(pil))
    return np.stack(out)


def shift_dark(x, rng):
    """Darker, duller images."""
    grey = x.mean(axis=3, keepdims=True)
    return np.clip(0.7 * (grey + 0.7 * (x - grey)), 0, 255).astype(np.uint8)


def shift_all(x, rng):
    return shift_texture(shift_blue(shift_haze(x, rng), rng), rng)


def mean_colour_accuracy(x_train, y_train, x_test, y_test):
    """5-nearest-neighbour classifier on the mean RGB colour: what colour alone can do."""

    def features(x):
        x = x.astype(np.float64)
        return x.mean(axis=(1, 2))

    f_train, f_test = features(x_train), features(x_test)
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    # 5-nearest neighbours
    distances = ((f_test[:, None, :] - f_train[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(distances, axis=1)[:, :5]
    votes = y_train[nearest]
    predicted = np.array([np.bincount(v, minlength=len(CLASSES)).argmax() for v in votes])
    return float((predicted == y_test).mean()), predicted


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("gap", "flatten"), default="flatten")
    parser.add_argument("--errors", help="PNG file: contact sheet of the misclassified test images")
    args = parser.parse_args()

    import keras

    root = build_default_dataset(per_class=args.per_class)
    dataset = load_dataset(root)  # the workshop's own loader and preprocessing
    x, y = dataset.images, dataset.labels
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]

    keras.utils.set_random_seed(args.seed)
    augmentation = [
        keras.layers.RandomFlip("horizontal_and_vertical"),
        keras.layers.RandomBrightness(0.15, value_range=(0, 1)),
        keras.layers.RandomContrast(0.2),
    ]
    if args.model == "gap":  # tiny: 3 conv blocks + global average pooling (~25 k parameters)
        body = [
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.GlobalAveragePooling2D(),
        ]
    else:  # a classic workshop CNN: 3 conv blocks + flatten + dense (~0.3 M parameters)
        body = [
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(64, activation="relu"),
        ]
    model = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            keras.layers.Rescaling(1 / 255),
            *augmentation,
            *body,
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=2)
    print(f"entraînement : {time.perf_counter() - start:.1f} s")

    def report(name, images):
        predicted = model.predict(images, verbose=0).argmax(1)
        accuracy = float((predicted == y_test).mean())
        confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
        for truth, guess in zip(y_test, predicted, strict=True):
            confusion[truth, guess] += 1
        print(
            f"{name:<22} exactitude {accuracy:.3f}   confusion (lignes = vérité {'/'.join(CLASSES)}) "
            f"{confusion.tolist()}"
        )

    shift_rng = np.random.default_rng(123)
    report("test", x_test)
    report("test + voile", shift_haze(x_test, shift_rng))
    report("test + bleu", shift_blue(x_test, shift_rng))
    report("test + texture", shift_texture(x_test, shift_rng))
    report("test + sombre/terne", shift_dark(x_test, shift_rng))
    report("test + tout", shift_all(x_test, shift_rng))
    if args.errors:
        predicted = model.predict(x_test, verbose=0).argmax(1)
        wrong = np.flatnonzero(predicted != y_test)
        sheet = Image.new("RGB", (max(len(wrong), 1) * 98, 120), "white")
        from PIL import ImageDraw

        draw = ImageDraw.Draw(sheet)
        for column, i in enumerate(wrong):
            sheet.paste(Image.fromarray(x_test[i]).resize((96, 96)), (column * 98, 0))
            draw.text((column * 98, 100), f"{CLASSES[y_test[i]][:3]}>{CLASSES[predicted[i]][:3]}", fill="black")
        sheet.save(args.errors)
    accuracy, _ = mean_colour_accuracy(x_train, y_train, x_test, y_test)
    print(f"{'couleur seule (5-NN)':<22} exactitude {accuracy:.3f}")
    pair = np.isin(y_train, [0, 1]), np.isin(y_test, [0, 1])
    accuracy, _ = mean_colour_accuracy(x_train[pair[0]], y_train[pair[0]], x_test[pair[1]], y_test[pair[1]])
    print(f"{'forêt/mer, couleur':<22} exactitude {accuracy:.3f}")


if __name__ == "__main__":
    main()
