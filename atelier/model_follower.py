"""Un processus serveur qui suit le dépôt de modèles : il sert la version que le dépôt désigne.

Chaque processus (``serve --workers N``) et chaque réplique a son propre :class:`ModelFollower`. Au
démarrage, il charge la version désignée par le dépôt (l'épinglée, sinon la plus récente valide) ; puis
un fil d'exécution relit le dépôt toutes les ``interval`` secondes et, quand la version désignée change,
la charge, la vérifie, la chauffe et la met en service par :meth:`Predictor.swap` : les requêtes en cours
finissent sur l'ancien modèle. Tous les processus qui lisent le même dossier convergent donc vers la même
version, au plus un intervalle (plus le temps de chargement) après une publication ou un épinglage.

Un dépôt sans version valide au démarrage n'empêche pas le serveur de démarrer : il n'est simplement
pas prêt (``/health/ready`` répond 503) jusqu'à la première version valide publiée.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import metrics
from .inference import Predictor, ServingModel
from .model_repository import DEFAULT_MIN_ACCURACY, DEFAULT_POLL_SECONDS, ModelRepository, RepositoryPoller

log = logging.getLogger(__name__)


class ModelFollower:
    """La version servie par ce processus, tenue à jour depuis le dépôt *model_dir*.

    ``make_predictor(serving)`` construit le prédicteur au premier modèle valide (mêmes réglages de
    regroupement que l'API) ; ``warm_batch_sizes`` : tailles de lot chauffées à chaque chargement ; ``runtime`` :
    ce qui calcule les probabilités (:meth:`atelier.inference.ServingModel.compile`).
    """

    def __init__(
        self,
        model_dir: str | Path,
        make_predictor: Callable[[ServingModel], Predictor],
        *,
        interval: float = DEFAULT_POLL_SECONDS,
        min_accuracy: float = DEFAULT_MIN_ACCURACY,
        warm_batch_sizes: tuple[int, ...] = (1,),
        sample_dir: str | Path | None = None,
        runtime: str = "tensorflow",
    ) -> None:
        self._make_predictor = make_predictor
        self._warm = tuple(warm_batch_sizes)
        self._runtime = runtime
        self.repository = ModelRepository(
            model_dir,
            min_accuracy=min_accuracy,
            sample_dir=sample_dir,
            loader=lambda path: ServingModel.load(path, warm_batch_sizes=self._warm, runtime=self._runtime),
            on_invalid=self._invalid,
        )
        self.predictor: Predictor | None = None
        self.poller = RepositoryPoller(self.repository, self._serve, interval=interval)
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        """Vrai dès qu'un modèle est chargé, vérifié et chauffé dans ce processus."""
        return self.predictor is not None

    def _invalid(self, version: int, message: str) -> None:
        self.last_error = f"Version {version} ignorée : {message}"
        metrics.FAILED_LOADS.inc()

    @property
    def served(self) -> int | None:
        return self.poller.served

    def load_initial(self) -> None:
        """Charge la version désignée par le dépôt, s'il y en a une (sinon le serveur attend la première)."""
        if not self.poller.poll_once():
            log.warning(
                "Aucune version valide dans le dépôt %s : le serveur attend la première publication "
                "(python -m atelier publish --model … --model-dir %s).",
                self.repository.root,
                self.repository.root,
            )

    def _serve(self, version: int, serving: ServingModel) -> None:
        """Met *serving* (version *version*, déjà vérifiée et chauffée) en service dans ce processus."""
        if self.predictor is None:
            self.predictor = self._make_predictor(serving)
        else:
            self.predictor.swap(serving)  # IncompatibleModelError (other classes or size): the old one stays
            metrics.SWAPS.inc()
        self.repository.require(serving.classes, serving.image_size)
        metrics.set_model_version(serving.version)
        log.info("Processus %d : version %d en service (dépôt %s).", os.getpid(), version, self.repository.root)

    def start(self) -> None:
        self.poller.start()

    def stop(self) -> None:
        self.poller.stop()

    def pin(self, version: int) -> None:
        """Épingle *version* après l'avoir vérifiée, et la met tout de suite en service dans ce processus.

        Lève :class:`~atelier.model_repository.RepositoryError` (en français) si elle n'existe pas ou
        est invalide ; les autres processus suivent à leur prochaine lecture du dépôt.
        """
        self.repository.check(int(version))
        self.repository.pin(int(version))
        self.poller.poll_once()

    def unpin(self) -> bool:
        """Retire l'épinglage et revient tout de suite à la plus récente version valide ; vrai s'il y en avait un."""
        removed = self.repository.unpin()
        self.poller.poll_once()
        return removed

    def status(self) -> dict[str, Any]:
        """Ce que renvoie ``GET /models`` : les versions, celle de ce processus, l'épinglage, la dernière erreur."""
        pin = self.repository.pinned()
        return {
            "model_dir": str(self.repository.root),
            "served_version": self.served,
            "pid": os.getpid(),
            "pin": pin,
            "policy": "épinglée" if pin is not None else "la plus récente valide",
            "poll_seconds": self.poller.interval,
            "min_accuracy": self.repository.min_accuracy,
            "last_error": self.last_error,
            "versions": self.repository.describe(),
        }
