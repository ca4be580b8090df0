"""Le prédicteur de l'API : un modèle chargé une fois, un appel compilé, un remplacement à chaud.

* :class:`ServingModel` enveloppe un modèle chargé par :func:`atelier.model_io.load_model` : son appel
  est compilé une fois (``tf.function`` à signature fixe ``[None, taille, taille, 3]`` ``float32``) puis
  « chauffé » ; ensuite chaque prédiction est un seul appel de graphe, sans ``model.predict`` (≈ 80 ms
  de frais fixes par appel) et sans retraçage : la fonction concrète de cette signature est appelée
  directement, sans repasser par la ``tf.function``. L'appel compilé peut être utilisé par plusieurs
  threads à la fois.
* :class:`Predictor` garde le modèle en service. :meth:`Predictor.replace` charge, vérifie (mêmes
  classes, même taille d'image) et chauffe un nouveau modèle puis le met en service, sous le verrou du
  prédicteur : deux remplacements se suivent, chacun vérifié contre le modèle qu'il remplace
  (:meth:`Predictor.swap`, pour un modèle déjà chargé, vérifie sous le même verrou). Une requête en
  cours garde la référence du modèle qu'elle a prise au début et se termine dessus ; les suivantes
  utilisent le nouveau.
* Regroupement des requêtes concurrentes (*micro-batching*, comme TensorFlow Serving), activé par
  défaut : un thread unique réunit jusqu'à ``max_batch_size`` images arrivées en même temps (en
  attendant au plus ``batch_wait_ms`` ; 0 par défaut : les images arrivées pendant le calcul du lot
  précédent forment le lot suivant, une requête seule n'attend pas) et les passe au réseau en un seul
  appel. Une image qui trouve le regroupement au repos (rien en attente, aucun lot en calcul, pas de
  fenêtre d'attente) passe au réseau tout de suite, dans le fil qui la soumet, sans réveiller celui du
  regroupement. Sur 2 cœurs, un appel coûte ≈ 1,8 ms de CPU pour une image mais ≈ 0,8 ms par image dès 4
  images : le regroupement économise environ un tiers du CPU par requête dès 8 requêtes simultanées.
  Sa file est bornée (``max_queued``) : au-delà, ou pendant l'arrêt, une image est refusée tout de
  suite (:class:`PredictorUnavailableError`, 503 pour l'API) au lieu d'attendre.
* L'API confie un petit JPEG **encore encodé** (:data:`EncodedImage`, :meth:`Predictor.submit_encoded_to_loop`) :
  le fil du regroupement le décode juste avant son lot, à la taille d'image du modèle de ce lot ; une erreur de
  décodage ne touche que sa requête.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import gc_pause
from .lite_runtime import LiteError
from .model_io import ModelFileError, ModelInfo, load_model
from .samples import check_images, check_outputs, probabilities_on

log = logging.getLogger(__name__)

#: What can compute the probabilities (:meth:`ServingModel.compile`): TensorFlow, or TensorFlow Lite (faster per call).
RUNTIMES = ("tensorflow", "tflite")
#: Largest difference of probability accepted between TensorFlow Lite and TensorFlow on the same images.
LITE_TOLERANCE = 1e-4


def serve_runtime() -> str:
    """Ce qui calcule les probabilités dans ``python -m atelier serve`` : ``$ATELIER_INFERENCE_RUNTIME``, sinon
    TensorFlow Lite (mesuré : 2 à 5 fois moins de frais par appel ; le banc d'essai mesure sa borne avec le même)."""
    import os

    return os.environ.get("ATELIER_INFERENCE_RUNTIME", "").strip() or "tflite"


#: Longest wait for a batched prediction before the request fails (a batch takes milliseconds).
RESULT_TIMEOUT_S = 120.0
#: Largest batch the batcher forms (and the batch sizes a model is warmed up for).
DEFAULT_MAX_BATCH_SIZE = 16
#: Images waiting for the batcher beyond which a new request is refused at once (load shedding).
DEFAULT_MAX_QUEUED = 256


class IncompatibleModelError(ModelFileError):
    """Le nouveau modèle est lisible mais ne peut pas remplacer le modèle en service (classes, taille)."""


class PredictorUnavailableError(RuntimeError):
    """Le prédicteur ne peut pas prendre cette image maintenant (arrêt en cours, file pleine) : réessayer."""


def shutting_down() -> PredictorUnavailableError:
    """L'erreur d'une image (ou d'une explication) qui arrive pendant l'arrêt du service (503 pour l'API)."""
    return PredictorUnavailableError("Le service s'arrête : réessayez dans un instant.")


def warm_batch_sizes(batching: bool, max_batch_size: int) -> tuple[int, ...]:
    """Every batch size the predictor can run: oneDNN prepares its kernels per shape on first use."""
    return tuple(range(1, max_batch_size + 1)) if batching else (1,)


@dataclass(frozen=True)
class Prediction:
    """Le résultat d'une prédiction pour une image."""

    probabilities: np.ndarray  # float32, one value per class
    classes: tuple[str, ...]
    model_version: str

    @property
    def label(self) -> str:
        return self.classes[int(np.argmax(self.probabilities))]

    def as_dict(self) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.classes, self.probabilities, strict=True)}


@dataclass
class ServingModel:
    """Un modèle prêt à servir : réseau, métadonnées et appel compilé, déjà chauffé."""

    info: ModelInfo
    loaded_at: float = field(default_factory=time.time)
    #: What computes the probabilities: ``"tensorflow"`` (the compiled function) or ``"tflite"``.
    runtime: str = "tensorflow"
    _call: Any = field(default=None, repr=False)
    _to_tensor: Any = field(default=None, repr=False)
    _lite: Any = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.info.classes)

    @property
    def image_size(self) -> int:
        return self.info.image_size

    @property
    def metadata(self) -> dict[str, Any]:
        return self.info.metadata

    @property
    def public_metadata(self) -> dict[str, Any]:
        """Les métadonnées montrées par l'API, avec la version servie (voir :attr:`ModelInfo.public_metadata`)."""
        return self.info.public_metadata

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        warm_batch_sizes: tuple[int, ...] = (1,),
        compatible_with: ServingModel | None = None,
        runtime: str = "tensorflow",
    ) -> ServingModel:
        """Charge, vérifie, compile et chauffe un modèle ; lève :class:`ModelFileError` (en français).

        ``compatible_with`` : le modèle en service ; un modèle aux classes ou à la taille d'image
        différentes est refusé (:class:`IncompatibleModelError`) avant d'être compilé. ``runtime`` : voir
        :meth:`compile`.
        """
        serving = cls(info=load_model(path))
        if compatible_with is not None:
            compatible_with.check_replacement(serving)
        serving.compile(runtime)
        serving.warm_up(warm_batch_sizes)
        return serving

    def check_replacement(self, new: ServingModel) -> None:
        """Lève :class:`IncompatibleModelError` si *new* ne peut pas remplacer ce modèle (classes, taille)."""
        if list(new.classes) != list(self.classes):
            raise IncompatibleModelError(
                f"Le nouveau modèle a les classes {list(new.classes)}, le modèle en service "
                f"{list(self.classes)} : les clients attendent les mêmes classes, dans le même ordre."
            )
        if new.image_size != self.image_size:
            raise IncompatibleModelError(
                f"Le nouveau modèle attend des images {new.image_size}×{new.image_size}, le modèle en "
                f"service {self.image_size}×{self.image_size}."
            )
        if new.version == self.version and new.info.sha256 != self.info.sha256:
            raise IncompatibleModelError(
                f"Le nouveau modèle a la même version « {new.version} » que le modèle en service mais un autre "
                "fichier : une version désigne un seul fichier."
            )

    def compile(self, runtime: str = "tensorflow") -> None:
        """Prépare l'appel du réseau : une fonction TensorFlow compilée à signature fixe et, avec
        ``runtime="tflite"``, l'interpréteur TensorFlow Lite (:mod:`atelier.lite_runtime`), gardé seulement s'il
        redonne les probabilités de TensorFlow (images aléatoires et vraies images de vérification) ; sinon
        (conversion impossible, écart), TensorFlow sert, et le journal dit pourquoi. :attr:`runtime` dit lequel
        calcule."""
        if runtime not in RUNTIMES:
            raise ValueError(f"Moteur d'inférence inconnu : {runtime} (possibles : {', '.join(RUNTIMES)}).")
        self._compile_tensorflow()
        self._lite = self._checked_lite() if runtime == "tflite" else None
        self.runtime = "tflite" if self._lite is not None else "tensorflow"

    def _checked_lite(self) -> Any:
        from .lite_runtime import LiteRunner
        from .preprocessing import load_image

        noise = np.random.default_rng(0).uniform(0, 255, (3, self.image_size, self.image_size, 3))
        real = [load_image(path, self.image_size) for path in check_images()]  # the swap check's real images
        probe = np.concatenate([noise, np.stack(real)]).astype(np.float32)
        try:
            lite = LiteRunner(self.info.model, DEFAULT_MAX_BATCH_SIZE)
            gap = float(np.abs(lite(probe) - self._call(self._to_tensor(probe)).numpy()).max())
        except LiteError as error:
            log.warning("Modèle %s : %s ; TensorFlow le sert.", self.version, error)
            return None
        if not gap <= LITE_TOLERANCE:  # also catches NaN
            log.warning(
                "Modèle %s : TensorFlow Lite s'écarte de TensorFlow (%.2g) ; TensorFlow le sert.", self.version, gap
            )
            return None
        return lite

    def _compile_tensorflow(self) -> None:
        import tensorflow as tf

        model = self.info.model
        size = self.image_size

        @tf.function(
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")],
            reduce_retracing=True,
        )
        def call(images):
            return model(images, training=False)

        # Its concrete function, called directly: calling the tf.function would first bind the arguments
        # and look up the trace on every call (measured: ≈ 0.5 ms of a 4 ms batch of one on 2 busy cores).
        self._call = call.get_concrete_function()
        self._to_tensor = functools.partial(tf.constant, dtype=tf.float32)

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Trace le graphe, prépare les noyaux pour chaque taille de lot et vérifie les probabilités.

        Les sorties sont vérifiées sur des images aléatoires (chaque taille de lot) **et sur de vraies
        images** (:func:`atelier.samples.check_images`) : un modèle qui renvoie ``NaN`` ou des valeurs non
        normalisées sur de vraies photos est refusé avant d'être mis en service.
        """
        rng = np.random.default_rng(0)
        for n in sorted(set(batch_sizes) | {1}):
            images = rng.integers(0, 256, (n, self.image_size, self.image_size, 3)).astype(np.float32)
            check_outputs(self.run(images), n, len(self.classes), where="Sur des images aléatoires")
        probabilities_on(self, check_images(), where="Sur les images d'exemple réelles")

    def run(self, images: np.ndarray) -> np.ndarray:
        """Probabilités pour un lot ``float32`` ``(n, taille, taille, 3)`` (valeurs 0–255)."""
        lite = self._lite
        if lite is not None:
            try:
                return lite(images)
            except LiteError as error:  # from now on, TensorFlow computes (same probabilities, checked at load)
                log.warning("Modèle %s : %s ; TensorFlow le sert désormais.", self.version, error)
                self._lite, self.runtime = None, "tensorflow"
        return self._call(self._to_tensor(images)).numpy()


@dataclass(frozen=True)
class LoopTarget:
    """Where a result goes when the caller awaits it on an event loop: an asyncio future and its loop."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


def deliver(results: list[tuple[Future | LoopTarget, Prediction | BaseException]]) -> None:
    """Hands results to their callers; those waiting on an event loop are woken once per batch and loop.

    One ``call_soon_threadsafe`` for a whole batch (instead of one per request) saves the event loop a
    wake-up and a callback per request: measured, the loop thread is what limits the server.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Prediction | BaseException]]] = {}
    for target, value in results:
        if isinstance(target, LoopTarget):
            by_loop.setdefault(target.loop, []).append((target.future, value))
        elif isinstance(value, BaseException):
            target.set_exception(value)
        else:
            target.set_result(value)
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[asyncio.Future, Prediction | BaseException]]) -> None:
    """On the loop: sets each future (skipped if its request was cancelled, e.g. the client left)."""
    for future, value in pairs:
        if future.done():
            continue
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)


#: An image still encoded, queued by the event loop: called in the batcher's thread with the image size of the
#: batch's model, it returns the decoded image, or ``None`` if it handed itself to another thread (not quick to
#: decode here), or raises (its error goes to its request).
EncodedImage = Callable[[int], "np.ndarray | None"]


def _decoded(batch: list, size: int) -> list:
    """The batch with its encoded images decoded (in the batcher's thread); failures go to their requests."""
    if all(isinstance(image, np.ndarray) for image, _ in batch):
        return batch
    ready: list = []
    failed: list[tuple[Future | LoopTarget, Prediction | BaseException]] = []
    for image, target in batch:
        if not isinstance(image, np.ndarray):
            try:
                image = image(size)
            except Exception as exc:
                failed.append((target, exc))
                continue
            if image is None:
                continue  # handed to a decoding thread: it will come back decoded
        ready.append((image, target))
    if failed:
        deliver(failed)
    return ready


class _Batcher:
    """Un thread qui regroupe les images soumises en même temps et les passe au réseau en un appel."""

    def __init__(self, predictor: Predictor, max_batch_size: int, max_wait_s: float, max_queued: int) -> None:
        self._predictor = predictor
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queued = max_queued
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # Held while checking _stopped and enqueueing, and while stopping: no image can be queued behind
        # the stop marker (it would wait RESULT_TIMEOUT_S for a thread that is gone).
        self._lock = threading.Lock()
        self._stopped = False
        self._waiting = 0  # images submitted, not yet in the network (under self._lock)
        # Held while a batch is passed to the network: one call at a time, by the batcher's thread or by a
        # thread that submitted an image while the batcher was idle (see submit_to).
        self._running = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="atelier-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> Future:
        """Queues *image*; its result will be set on the returned :class:`Future`."""
        fut: Future = Future()
        self.submit_to(image, fut)
        return fut

    def submit_to(self, image: np.ndarray | EncodedImage, target: Future | LoopTarget) -> None:
        """Queues *image*; its result goes to *target* (a future, or an asyncio future on its loop).

        An image that finds the batcher idle (nothing queued, no batch in the network) and no batch
        window to wait for is passed to the network at once, in the calling thread: it would be a batch
        of one anyway, and waking the batcher's thread for it costs a thread switch (a lone request's
        latency). Images submitted meanwhile queue up and form the batcher's next batch, as usual.
        An :data:`EncodedImage` always queues (its caller is the event loop, which must not compute).
        """
        with self._lock:
            if self._stopped:
                raise PredictorUnavailableError("Le service redémarre ou s'arrête : réessayez dans un instant.")
            if self._waiting >= self._max_queued:
                raise PredictorUnavailableError(
                    f"Le service est surchargé ({self._max_queued} images attendent déjà le modèle) : "
                    "réessayez dans un instant."
                )
            run_now = (
                isinstance(image, np.ndarray)
                and self._max_wait_s <= 0
                and self._waiting == 0
                and self._running.acquire(blocking=False)
            )
            if not run_now:
                self._waiting += 1
                self._queue.put((image, target))
        if run_now:
            try:
                self._run([(image, target)])
            finally:
                self._running.release()

    @property
    def waiting(self) -> int:
        """Images submitted and not yet passed to the network (bounded by ``max_queued``)."""
        return self._waiting

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            self._serve()
        finally:
            self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        """Whatever is still queued when the thread ends fails at once (never waits for the timeout)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                deliver([(item[1], shutting_down())])

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            with self._running:  # after a batch run by a submitting thread: what queued meanwhile joins
                batch, stop = self._gather(item)
                with self._lock:
                    self._waiting -= len(batch)
                self._run(batch)
            if stop:
                return

    def _gather(self, first) -> tuple[list, bool]:
        """*first* and the images queued behind it (waiting up to the batch window): ``(batch, stop)``."""
        batch = [first]
        deadline = time.perf_counter() + self._max_wait_s
        while len(batch) < self._max_batch_size:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run(self, batch) -> None:
        serving = self._predictor.current  # one model for the whole batch
        try:
            batch = _decoded(batch, serving.image_size)
            if not batch:
                return
            images = np.stack([image for image, _ in batch]).astype(np.float32, copy=False)
            probabilities = serving.run(images)
        except BaseException as exc:  # pragma: no cover - a failing model must not kill the thread
            deliver([(target, exc) for _, target in batch])
            return
        deliver(
            [
                (target, Prediction(row, serving.classes, serving.version))
                for (_, target), row in zip(batch, probabilities, strict=True)
            ]
        )
        if self._predictor.on_batch is not None:
            self._predictor.on_batch(len(batch))


class Predictor:
    """Le modèle en service et la façon de l'appeler (appel direct ou regroupé), et son remplacement à chaud."""

    def __init__(
        self,
        serving: ServingModel,
        *,
        batching: bool = True,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        batch_wait_ms: float = 0.0,
        max_queued: int = DEFAULT_MAX_QUEUED,
        runtime: str = "tensorflow",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size doit être au moins 1.")
        if max_queued < 1:
            raise ValueError("max_queued doit être au moins 1.")
        self._current = serving
        # Serialises replacements: the compatibility check and the swap see the same model in service.
        self._swap_lock = threading.Lock()
        self.batching = batching
        self.max_batch_size = max_batch_size
        self.batch_wait_ms = batch_wait_ms
        self.max_queued = max_queued
        #: The runtime asked for the models this predictor loads (:meth:`ServingModel.compile`).
        self.runtime = runtime
        self._batcher: _Batcher | None = None
        self._batcher_lock = threading.Lock()
        #: Called with the size of every batch passed to the network (the API's metrics), or None.
        self.on_batch: Callable[[int], None] | None = None

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        batching: bool = True,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        batch_wait_ms: float = 0.0,
        max_queued: int = DEFAULT_MAX_QUEUED,
        runtime: str = "tensorflow",
    ) -> Predictor:
        serving = ServingModel.load(path, warm_batch_sizes=warm_batch_sizes(batching, max_batch_size), runtime=runtime)
        return cls(
            serving,
            batching=batching,
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
            max_queued=max_queued,
            runtime=runtime,
        )

    @property
    def current(self) -> ServingModel:
        return self._current

    # -- inference -------------------------------------------------------------------------------
    def predict_array(self, image: np.ndarray) -> Prediction:
        """Prédit une image ``uint8`` ``(taille, taille, 3)`` déjà prétraitée ; bloque jusqu'au résultat.

        Lève :class:`PredictorUnavailableError` tout de suite si le regroupement s'arrête ou si sa file
        est pleine.
        """
        if self.batching:
            # The timeout only guards against a stuck model: a batch takes milliseconds.
            return self._get_batcher().submit(image).result(timeout=RESULT_TIMEOUT_S)
        serving = self._current  # taken once: a concurrent swap does not affect this request
        probabilities = serving.run(image[np.newaxis].astype(np.float32))
        if self.on_batch is not None:
            self.on_batch(1)
        return Prediction(probabilities[0], serving.classes, serving.version)

    def submit_to_loop(self, image: np.ndarray, target: LoopTarget) -> None:
        """Like :meth:`predict_array`, but the result (or the error) is set on ``target.future``, on its loop.

        Does not wait: called from a decoding thread, which is free at once for the next image.
        """
        try:
            if self.batching:
                self._get_batcher().submit_to(image, target)
                return
            result: Prediction | BaseException = self.predict_array(image)
        except Exception as exc:
            result = exc
        deliver([(target, result)])

    def submit_encoded_to_loop(self, image: EncodedImage, target: LoopTarget) -> None:
        """Queues an image **still encoded** (:data:`EncodedImage`), with regrouping only: the batcher's thread
        decodes it just before passing its batch to the network. For small uploads, called from the event
        loop: one thread switch fewer per request than a decoding thread (measured with ``bench``)."""
        if not self.batching:
            raise ValueError("submit_encoded_to_loop demande le regroupement des requêtes (batching=True).")
        try:
            self._get_batcher().submit_to(image, target)
        except Exception as exc:
            deliver([(target, exc)])

    def _get_batcher(self) -> _Batcher:
        batcher = self._batcher
        if batcher is None:
            with self._batcher_lock:
                if self._batcher is None:
                    self._batcher = _Batcher(self, self.max_batch_size, self.batch_wait_ms / 1000, self.max_queued)
                batcher = self._batcher
        return batcher

    def close(self) -> None:
        with self._batcher_lock:
            if self._batcher is not None:
                self._batcher.stop()
                self._batcher = None

    # -- hot swap --------------------------------------------------------------------------------
    def load_compatible(self, path: str | Path) -> ServingModel:
        """Charge, vérifie et chauffe le modèle de *path* sans toucher au modèle en service.

        Lève :class:`ModelFileError` si le fichier est illisible, :class:`IncompatibleModelError` si ses
        classes ou sa taille d'image diffèrent de celles du modèle en service.
        """
        return ServingModel.load(
            path,
            warm_batch_sizes=warm_batch_sizes(self.batching, self.max_batch_size),
            compatible_with=self._current,
            runtime=self.runtime,
        )

    def replace(self, path: str | Path) -> tuple[ServingModel, ServingModel]:
        """Charge, vérifie et chauffe le modèle de *path*, puis le met en service : ``(ancien, nouveau)``.

        Sérialisé : deux remplacements simultanés se suivent, chacun vérifié contre le modèle qu'il
        remplace. En cas d'erreur (:class:`ModelFileError`), l'ancien modèle reste en service.
        """
        with self._swap_lock:
            serving = self.load_compatible(path)
            return self._swap_locked(serving), serving

    def swap(self, serving: ServingModel) -> ServingModel:
        """Met *serving* en service (déjà chargé et chauffé) et renvoie l'ancien modèle.

        Lève :class:`IncompatibleModelError` (l'ancien reste en service) si ses classes ou sa taille
        d'image diffèrent de celles du modèle en service.
        """
        with self._swap_lock:
            return self._swap_locked(serving)

    def _swap_locked(self, serving: ServingModel) -> ServingModel:
        old = self._current
        old.check_replacement(serving)
        self._current = serving
        gc_pause.after_swap()  # the old model must be collectable once its requests are done
        log.info("Modèle remplacé : %s → %s", old.version, serving.version)
        return old
