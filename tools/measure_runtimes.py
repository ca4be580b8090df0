"""Mesure : le même modèle calculé par TensorFlow (fonction compilée à signature fixe) et par TensorFlow Lite.

    python tools/measure_runtimes.py [--model cnn.keras] [--batch-sizes 1 4 8 16] [--repeat 200]

Pour chaque taille de lot, la durée médiane d'un appel de :meth:`atelier.inference.ServingModel.run` avec chacun
des deux moteurs (``runtime="tensorflow"`` et ``runtime="tflite"``), mesurées l'une après l'autre dans la même
exécution, leur rapport, et le plus grand écart entre leurs probabilités. Sans ``--model`` : un CNN de l'atelier
non entraîné (la vitesse ne dépend pas des poids). C'est une mesure, pas un test. La dernière ligne est un JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from atelier.bench import untrained_model  # noqa: E402
from atelier.inference import RUNTIMES, ServingModel  # noqa: E402


def median_ms(serving: ServingModel, images: np.ndarray, repeat: int) -> float:
    """Durée médiane, en millisecondes, d'un appel du réseau sur ``images`` (après dix appels de chauffe)."""
    for _ in range(10):
        serving.run(images)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        serving.run(images)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="modèle .keras (défaut : CNN non entraîné)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeat", type=int, default=200, help="appels mesurés par taille et par moteur")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or untrained_model(Path(tmp))
        engines = {runtime: ServingModel.load(path, warm_batch_sizes=tuple(args.batch_sizes), runtime=runtime)
                   for runtime in RUNTIMES}  # fmt: skip
    if engines["tflite"].runtime != "tflite":
        print("TensorFlow Lite n'a pas été retenu pour ce modèle (voir le journal) : rien à comparer.")
        return 1
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'lot':>4}  {'TensorFlow (ms)':>16}  {'TensorFlow Lite (ms)':>21}  {'rapport':>8}  {'écart max':>10}")
    for n in args.batch_sizes:
        size = engines["tensorflow"].image_size
        images = rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
        ms = {runtime: median_ms(serving, images, args.repeat) for runtime, serving in engines.items()}
        gap = float(np.abs(engines["tflite"].run(images) - engines["tensorflow"].run(images)).max())
        rows.append({"batch": n, **{f"{k}_ms": round(v, 3) for k, v in ms.items()}, "max_gap": gap})
        ratio = ms["tensorflow"] / ms["tflite"]
        print(f"{n:>4}  {ms['tensorflow']:>16.3f}  {ms['tflite']:>21.3f}  {ratio:>7.1f}×  {gap:>10.1e}")
    print(json.dumps({"model": str(args.model or "cnn non entraîné"), "rows": rows}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
