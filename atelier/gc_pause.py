"""Pas de longue pause du ramasse-miettes de Python sous charge : :func:`gc.freeze` une fois le modèle chargé.

Un processus qui a importé TensorFlow et chargé un modèle garde ≈ 370 000 objets suivis par le
ramasse-miettes. Une collecte complète (génération 2) les parcourt tous : mesurée à 0,2–1,4 s selon la
charge de la machine, pendant laquelle le GIL est pris et **aucune** requête n'avance. Sous charge,
Python en déclenche une de temps en temps : c'était la queue de latence (p99) à 32 connexions.

:func:`freeze` range tous les objets présents (TensorFlow, le modèle, FastAPI…) dans la génération
permanente, que les collectes ne parcourent plus : elles ne voient que les objets créés ensuite, et
durent quelques millisecondes. L'API l'appelle au démarrage, :func:`thaw` à l'arrêt. Après un
remplacement du modèle (:func:`after_swap`), l'ancien modèle doit pouvoir être libéré : les objets
sont « dégelés » tout de suite, puis une collecte et un nouveau gel ont lieu :data:`REFREEZE_DELAY_S`
secondes plus tard, quand les requêtes en cours sur l'ancien modèle sont finies.
"""

from __future__ import annotations

import gc
import threading

#: Seconds between a model swap and the collection that frees the old model (then everything is frozen again).
REFREEZE_DELAY_S = 5.0

_lock = threading.Lock()
_state: dict[str, object] = {"frozen": False, "timer": None}


def freeze() -> None:
    """Collecte une fois puis gèle tous les objets présents (à appeler une fois le modèle chargé et chauffé)."""
    with _lock:
        gc.collect()
        gc.freeze()
        _state["frozen"] = True


def thaw() -> None:
    """Rend tous les objets au ramasse-miettes (arrêt de l'API) et annule un nouveau gel prévu."""
    with _lock:
        _cancel_timer()
        gc.unfreeze()
        _state["frozen"] = False


def after_swap() -> None:
    """Après un remplacement de modèle : dégèle (l'ancien modèle pourra être libéré), regèle plus tard."""
    with _lock:
        if not _state["frozen"]:
            return
        gc.unfreeze()
        _cancel_timer()
        timer = threading.Timer(REFREEZE_DELAY_S, _refreeze)
        timer.daemon = True
        _state["timer"] = timer
        timer.start()


def _refreeze() -> None:
    with _lock:
        if _state["frozen"]:
            gc.collect()
            gc.freeze()


def _cancel_timer() -> None:
    timer = _state["timer"]
    if isinstance(timer, threading.Timer):
        timer.cancel()
    _state["timer"] = None
