"""Faire tourner un modèle Keras avec TensorFlow Lite (XNNPACK) : le même calcul, bien moins de frais par appel.

Le serveur (``python -m atelier serve``) passe ses lots au réseau des centaines de fois par seconde, souvent par
petits lots. Un appel de la fonction TensorFlow compilée coûte environ 1 ms de frais fixes, même pour une image ;
l'interpréteur TensorFlow Lite, avec son moteur XNNPACK pour processeur, en coûte quelques dizaines de µs. Mesuré
sur 2 cœurs, CNN de l'atelier : lot de 1, 1,10 → 0,20 ms ; lot de 8, 3,09 → 1,43 ms ; lot de 16, 5,10 → 2,87 ms ;
mêmes probabilités à 10⁻¹⁰ près (``python tools/measure_runtimes.py``).

:class:`LiteRunner` convertit le modèle une fois (une à deux secondes) et garde un interpréteur par taille de lot
jusqu'à ``max_batch``, la taille des lots du serveur (les tailles de tenseurs y sont fixées à l'allocation) : un
lot plus grand passe par tranches, si bien qu'un modèle garde au plus ``max_batch`` interpréteurs. Il n'en appelle
qu'un à la fois (un interpréteur n'est pas partagé entre fils d'exécution).
:func:`atelier.inference.ServingModel.compile` compare ses sorties à celles de TensorFlow avant de s'en servir, et
garde TensorFlow si la conversion échoue ou si les sorties diffèrent.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from typing import Any

import numpy as np

#: Threads of an interpreter: the machine's two cores (the batcher passes one batch at a time).
THREADS = 2


class LiteError(RuntimeError):
    """Le modèle ne se convertit pas en TensorFlow Lite (message en français)."""


def convert(model) -> bytes:
    """Le modèle Keras ``model`` converti en TensorFlow Lite (sans quantification : les mêmes nombres)."""
    import tensorflow as tf

    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet):  # the converter prints its traced signatures
            return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    except Exception as error:  # the converter raises ConverterError, ValueError… for an unsupported layer
        raise LiteError(f"conversion en TensorFlow Lite impossible ({type(error).__name__})") from None


class LiteRunner:
    """Probabilités d'un lot ``float32`` ``(n, taille, taille, 3)`` calculées par TensorFlow Lite."""

    def __init__(self, model, max_batch: int, *, threads: int = THREADS) -> None:
        self._content = convert(model)
        self._max_batch = max_batch
        self._threads = threads
        self._interpreters: dict[tuple[int, ...], tuple[Any, int, int]] = {}
        self._lock = threading.Lock()

    def _interpreter(self, shape: tuple[int, ...]) -> tuple[Any, int, int]:
        entry = self._interpreters.get(shape)
        if entry is None:
            import tensorflow as tf

            with warnings.catch_warnings():
                # TensorFlow announces that tf.lite.Interpreter will move to the ai-edge-litert package (not
                # available on every platform the workshop supports). While it is here, it is used; the day it
                # is gone, LiteError makes the model fall back to TensorFlow (ServingModel.run).
                warnings.simplefilter("ignore", UserWarning)
                interpreter = tf.lite.Interpreter(model_content=self._content, num_threads=self._threads)
            source = interpreter.get_input_details()[0]["index"]
            target = interpreter.get_output_details()[0]["index"]
            interpreter.resize_tensor_input(source, list(shape))
            interpreter.allocate_tensors()
            entry = self._interpreters[shape] = (interpreter, source, target)
        return entry

    def __call__(self, images: np.ndarray) -> np.ndarray:
        size = self._max_batch
        if len(images) > size:
            return np.concatenate([self(images[start : start + size]) for start in range(0, len(images), size)])
        batch = np.ascontiguousarray(images, dtype=np.float32)
        with self._lock:
            try:
                interpreter, source, target = self._interpreter(batch.shape)
                interpreter.set_tensor(source, batch)
                interpreter.invoke()
                return np.array(interpreter.get_tensor(target))  # a copy: the buffer is reused by the next call
            except Exception as error:  # no tf.lite any more, an allocation that fails…
                raise LiteError(
                    f"TensorFlow Lite n'a pas pu calculer ce lot ({type(error).__name__} : {error})"
                ) from None
