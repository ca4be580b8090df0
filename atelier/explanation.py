"""Une prédiction expliquée, prête à envoyer : probabilités et carte Grad-CAM en images PNG (API, bench).

:func:`explain_image` prend une image déjà prétraitée (:func:`atelier.preprocessing.load_image`, le même
prétraitement que ``/predict``) et **un** modèle en service (:class:`atelier.inference.ServingModel`) : les
probabilités et la carte viennent du même modèle, donc de la même version, même si un autre modèle est mis en
service pendant le calcul. La carte est celle de :func:`atelier.explain.grad_cam` (chapitre 6), compilée une
fois par modèle (:func:`atelier.explain.compiled_grad_cam`) : la passe Python couche par couche coûte cher.

Deux images PNG : la carte **superposée** à l'image (agrandie à :data:`DISPLAY_SIZE` pixels pour être lisible)
et la **carte brute** en niveaux de gris, à la taille d'entrée du réseau (0 = aucune contribution, 255 = la zone
qui a le plus poussé vers la classe prédite).
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .explain import compiled_grad_cam, overlay_heatmap
from .inference import ServingModel
from .preprocessing import to_model_input

#: Side, in pixels, of the overlay PNG (the network's input, 64 px, is too small to read).
DISPLAY_SIZE = 256
#: Opacity of the heatmap on the overlay.
OVERLAY_ALPHA = 0.45
#: Compiled Grad-CAM functions kept (the model in service and the previous one, during a swap).
_KEPT_FUNCTIONS = 2
_functions: OrderedDict[int, tuple[Any, Callable[[np.ndarray, int], np.ndarray]]] = OrderedDict()
_functions_lock = threading.Lock()


@dataclass(frozen=True)
class Explanation:
    """Une prédiction et sa carte Grad-CAM (``heatmap`` : tableau ``(h, l)`` entre 0 et 1)."""

    label: str
    probabilities: dict[str, float]
    model_version: str
    heatmap: np.ndarray
    overlay_png: bytes
    map_png: bytes

    def as_json(self) -> dict[str, Any]:
        """Le JSON de l'API (forme :class:`atelier.api.schemas.ExplanationOut`, sans ``prediction_id``)."""
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "confidence": self.probabilities[self.label],
            "model_version": self.model_version,
            "heatmap": {
                "overlay_png": base64.b64encode(self.overlay_png).decode("ascii"),
                "map_png": base64.b64encode(self.map_png).decode("ascii"),
                "map": np.round(self.heatmap, 3).tolist(),
                "size": list(self.heatmap.shape),
            },
        }


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)  # speed over size
    return buffer.getvalue()


def _enlarged(array: np.ndarray, size: int) -> np.ndarray:
    """*array* (an image ``(h, l, 3)`` uint8 or a map ``(h, l)`` float) resized to ``size × size``, bilinear."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    if array.ndim == 2:
        resized = Image.fromarray(array.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
        return np.clip(np.asarray(resized), 0.0, 1.0)
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))


def _grad_cam_of(serving: ServingModel) -> Callable[[np.ndarray, int], np.ndarray]:
    """The compiled Grad-CAM of the served model, built (and checked) at its first explanation."""
    model = serving.info.model
    with _functions_lock:
        kept = _functions.get(id(model))
        if kept is None or kept[0] is not model:
            kept = (model, compiled_grad_cam(model, serving.image_size))
            _functions[id(model)] = kept
            while len(_functions) > _KEPT_FUNCTIONS:
                _functions.popitem(last=False)
        _functions.move_to_end(id(model))
        return kept[1]


def explain_image(serving: ServingModel, image: np.ndarray, *, display_size: int = DISPLAY_SIZE) -> Explanation:
    """Prédiction et carte Grad-CAM de *image* (``uint8 (taille, taille, 3)``) par le modèle *serving*."""
    probabilities = serving.run(to_model_input(image))[0]
    index = int(np.argmax(probabilities))
    heatmap = np.asarray(_grad_cam_of(serving)(image, index), dtype=np.float32)
    overlay = overlay_heatmap(_enlarged(image, display_size), _enlarged(heatmap, display_size), alpha=OVERLAY_ALPHA)
    raw = np.rint(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    classes = serving.classes
    return Explanation(
        label=classes[index],
        probabilities={name: float(p) for name, p in zip(classes, probabilities, strict=True)},
        model_version=serving.version,
        heatmap=heatmap,
        overlay_png=_png(overlay),
        map_png=_png(raw),
    )
