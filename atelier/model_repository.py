"""Le dépôt de modèles versionnés, suivi par chaque processus et chaque réplique (comme TF Serving).

Organisation d'un dépôt ``DOSSIER/`` ::

    DOSSIER/1/model.keras   DOSSIER/1/model.json     ← version 1 (modèle + métadonnées)
    DOSSIER/2/model.keras   DOSSIER/2/model.json     ← version 2
    DOSSIER/pin                                        ← facultatif : « 1 » épingle la version 1

* :meth:`ModelRepository.publish` copie un modèle dans une nouvelle version, de façon atomique : tout
  est écrit dans un dossier temporaire caché de ``DOSSIER/``, puis renommé en ``DOSSIER/<n>`` ; deux
  publications simultanées ne peuvent pas obtenir le même numéro (le renommage vers un dossier qui
  existe déjà échoue, la publication prend alors le numéro suivant). Les métadonnées publiées gardent
  les **étiquettes témoins** : la classe que le modèle donne à chaque image d'exemple
  (``images/exemples/``).
* :meth:`ModelRepository.resolve` donne la version à servir : la version épinglée (``DOSSIER/pin``)
  si elle est valide, sinon la plus récente version **valide**. Chaque serveur qui lit le même dossier
  arrive donc à la même réponse.
* Une version est valide si son modèle se charge, si ses classes et sa taille d'image conviennent,
  si ses sorties sur les images d'exemple sont des probabilités finies, si elle redonne ses étiquettes
  témoins et si la précision enregistrée dans ses métadonnées atteint le plancher ``min_accuracy``.
  Une version invalide est ignorée (une ligne de journal en français) et son erreur est gardée.
* :class:`RepositoryPoller` relit le dépôt toutes les quelques secondes dans un fil d'exécution à
  part et appelle une fonction de remplacement quand la version à servir change.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .model_io import ModelFileError, atomic_write_text, file_sha256, metadata_path, read_metadata
from .samples import default_sample_dir, probabilities_on, sample_files

log = logging.getLogger(__name__)

#: Name of the model file inside a version folder (its metadata is ``model.json`` next to it).
MODEL_FILE = "model.keras"
#: Name of the file that pins a version.
PIN_FILE = "pin"
#: Default seconds between two reads of the repository by a server.
DEFAULT_POLL_SECONDS = 2.0
#: Default floor for the accuracy recorded in a version's metadata.
DEFAULT_MIN_ACCURACY = 0.5
#: Metric names read as the recorded accuracy, first found wins (``train`` records ``test_accuracy``).
ACCURACY_KEYS = ("validation_accuracy", "val_accuracy", "test_accuracy", "accuracy")
#: Below this gap between the two highest probabilities an image has no reliable label: not compared.
GOLDEN_MIN_MARGIN = 1e-3

_PUBLISH_PREFIX = ".publication-"


class RepositoryError(ModelFileError):
    """Une version du dépôt ne peut pas être servie, ou le dépôt est mal utilisé (message en français)."""


class UnknownVersionError(RepositoryError):
    """La version demandée n'existe pas dans le dépôt."""


def _sample_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise RepositoryError(
            f"Images d'exemple introuvables : {directory}. Elles servent de témoins pour vérifier chaque "
            "version ; indiquez leur dossier avec la variable ATELIER_SAMPLES."
        )
    files = sample_files(directory)
    if not files:
        raise RepositoryError(f"Aucune image d'exemple dans {directory} : impossible de vérifier les modèles.")
    return files


def _probabilities(serving, files: list[Path]) -> np.ndarray:
    """Sorties du modèle pour les images *files*, vérifiées (:class:`RepositoryError` sinon)."""
    try:
        return probabilities_on(serving, files)
    except RepositoryError:
        raise
    except ModelFileError as exc:
        raise RepositoryError(str(exc)) from None


def golden_record(serving, sample_dir: Path) -> dict[str, dict[str, Any]]:
    """Étiquettes témoins : pour chaque image d'exemple, la classe donnée, l'écart avec la 2e et l'empreinte."""
    files = _sample_files(sample_dir)
    record = {}
    for path, row in zip(files, _probabilities(serving, files), strict=True):
        top = np.sort(row)[::-1]
        record[path.name] = {
            "label": serving.classes[int(np.argmax(row))],
            "margin": round(float(top[0] - top[1]), 6),
            "sha256": file_sha256(path),
        }
    return record


def check_golden(serving, golden: dict[str, dict[str, Any]], sample_dir: Path) -> None:
    """Vérifie que *serving* redonne les étiquettes témoins *golden* ; lève :class:`RepositoryError`."""
    files = []
    for name, expected in golden.items():
        path = sample_dir / name
        if not path.is_file():
            raise RepositoryError(f"Image témoin absente : {path}.")
        if file_sha256(path) != expected["sha256"]:
            raise RepositoryError(f"L'image témoin {name} a changé depuis la publication.")
        files.append(path)
    if not files:
        raise RepositoryError("Aucune étiquette témoin dans les métadonnées.")
    wrong = [
        f"{name} : « {serving.classes[int(np.argmax(row))]} » au lieu de « {expected['label']} »"
        for (name, expected), row in zip(golden.items(), _probabilities(serving, files), strict=True)
        if expected["margin"] >= GOLDEN_MIN_MARGIN and serving.classes[int(np.argmax(row))] != expected["label"]
    ]
    if wrong:
        raise RepositoryError(
            f"Le modèle ne redonne pas ses étiquettes témoins ({len(wrong)} sur {len(files)} images) : "
            + " ; ".join(wrong[:3])
            + "."
        )


def recorded_accuracy(metadata: dict[str, Any]) -> tuple[str, float] | None:
    """La précision enregistrée dans les métadonnées : ``(nom de la métrique, valeur)`` ou ``None``."""
    metrics = metadata.get("metrics") or {}
    for key in ACCURACY_KEYS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, float(value)
    return None


def _percent(value: float) -> str:
    """0.975 → « 97,5 % » (typographie française)."""
    return f"{100 * value:.1f}".replace(".", ",").removesuffix(",0") + " %"


def _default_loader(path: Path):
    from .inference import ServingModel

    return ServingModel.load(path)


@dataclass(frozen=True)
class _Verdict:
    key: tuple  # file identities: a changed file is checked again
    error: str | None


class ModelRepository:
    """Un dossier de versions numérotées ``DOSSIER/<n>/model.keras`` (voir le module).

    * ``min_accuracy`` : plancher de la précision enregistrée (``metrics.validation_accuracy``,
      ``val_accuracy``, ``test_accuracy`` ou ``accuracy``) ; ``0`` ne l'exige pas ;
    * ``classes`` / ``image_size`` : si donnés, une version doit avoir exactement ces classes (dans cet
      ordre) et cette taille d'image (voir :meth:`require`) ;
    * ``sample_dir`` : les images témoins (défaut : :func:`default_sample_dir`) ;
    * ``loader`` : charge, vérifie et chauffe un modèle (défaut : ``ServingModel.load``) ;
    * ``on_invalid`` : appelée ``(version, message)`` chaque fois qu'une version est jugée invalide.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        min_accuracy: float = DEFAULT_MIN_ACCURACY,
        classes: tuple[str, ...] | list[str] | None = None,
        image_size: int | None = None,
        sample_dir: str | Path | None = None,
        loader: Callable[[Path], Any] | None = None,
        on_invalid: Callable[[int, str], None] | None = None,
    ) -> None:
        if not 0 <= min_accuracy <= 1:
            raise ValueError(f"min_accuracy doit être entre 0 et 1 (reçu : {min_accuracy!r}).")
        self.root = Path(root).expanduser()
        self.min_accuracy = float(min_accuracy)
        self.classes = tuple(classes) if classes is not None else None
        self.image_size = image_size
        self.sample_dir = Path(sample_dir) if sample_dir is not None else default_sample_dir()
        self._loader = loader or _default_loader
        self._on_invalid = on_invalid
        self._verdicts: dict[int, _Verdict] = {}
        self._check_lock = threading.Lock()
        self._loaded: tuple[int, tuple, Any] | None = None  # last model loaded by a successful check
        self._pin_warning: str | None = None

    # -- layout ----------------------------------------------------------------------------------
    def versions(self) -> list[int]:
        """Les numéros de version présents, croissants (dossiers dont le nom est un entier positif)."""
        if not self.root.is_dir():
            return []
        numbers = []
        for entry in self.root.iterdir():
            name = entry.name
            if name.isdigit() and name.isascii() and int(name) > 0 and entry.is_dir():
                numbers.append(int(name))
        return sorted(numbers)

    def model_file(self, version: int) -> Path:
        return self.root / str(int(version)) / MODEL_FILE

    def ensure_exists(self, version: int) -> None:
        """Lève :class:`RepositoryError` si *version* n'est pas dans le dépôt."""
        if version not in self.versions():
            known = ", ".join(map(str, self.versions())) or "aucune"
            raise UnknownVersionError(f"La version {version} n'existe pas dans {self.root} (versions : {known}).")

    # -- publishing ------------------------------------------------------------------------------
    def publish(self, model_path: str | Path) -> int:
        """Copie le modèle *model_path* (avec son ``.json``) dans une nouvelle version ; renvoie son numéro.

        Le modèle est d'abord chargé et ses étiquettes témoins calculées ; la copie est atomique.
        Lève :class:`~atelier.model_io.ModelFileError` (en français) pour un modèle illisible.
        """
        source = Path(model_path).expanduser()
        serving = self._loader(source)
        golden = golden_record(serving, self.sample_dir)
        metadata = dict(serving.metadata)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_PUBLISH_PREFIX, dir=self.root))
        try:
            shutil.copyfile(source, tmp / MODEL_FILE)
            sha = file_sha256(tmp / MODEL_FILE)
            if metadata.get("sha256") and metadata["sha256"] != sha:
                raise RepositoryError(
                    f"{source.name} ne correspond pas à l'empreinte de ses métadonnées (fichier modifié "
                    "pendant la publication, ou mauvais couple modèle/métadonnées)."
                )
            tmp.chmod(0o755)  # mkdtemp makes it private; servers may run as another user
            published = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            while True:
                number = max(self.versions(), default=0) + 1
                record = {
                    **metadata,
                    "version": str(number),
                    "source_version": metadata.get("source_version", metadata["version"]),
                    "sha256": sha,
                    "repository": {"version": number, "published": published, "golden": golden},
                }
                text = json.dumps(record, ensure_ascii=False, indent=2) + "\n"
                atomic_write_text(metadata_path(tmp / MODEL_FILE), text)
                try:
                    os.rename(tmp, self.root / str(number))
                except OSError:
                    if (self.root / str(number)).exists():
                        continue  # another publisher took this number: take the next one
                    raise
                log.info("Version %d publiée dans %s (modèle %s).", number, self.root, record["source_version"])
                return number
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -- pin -------------------------------------------------------------------------------------
    def pinned(self) -> int | None:
        """La version épinglée dans ``DOSSIER/pin``, ou ``None``."""
        try:
            text = (self.root / PIN_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self._warn_pin(f"Fichier d'épinglage illisible ({exc}) : ignoré.")
            return None
        if not (text.isdigit() and text.isascii() and int(text) > 0):
            self._warn_pin(f"Fichier d'épinglage {self.root / PIN_FILE} invalide ({text[:20]!r}) : ignoré.")
            return None
        return int(text)

    def pin(self, version: int) -> None:
        """Épingle *version* (qui doit exister) : tous les serveurs qui lisent ce dossier la serviront."""
        self.ensure_exists(int(version))
        atomic_write_text(self.root / PIN_FILE, f"{int(version)}\n")
        log.info("Version %d épinglée dans %s.", version, self.root)

    def unpin(self) -> bool:
        """Retire l'épinglage (les serveurs reviennent à la plus récente version valide) ; vrai s'il y en avait un."""
        try:
            (self.root / PIN_FILE).unlink()
        except FileNotFoundError:
            return False
        log.info("Épinglage retiré dans %s : retour à la version la plus récente.", self.root)
        return True

    def _warn_pin(self, message: str) -> None:
        if message != self._pin_warning:
            self._pin_warning = message
            log.warning(message)

    # -- validation ------------------------------------------------------------------------------
    def require(self, classes, image_size: int) -> None:
        """Exige désormais ces classes et cette taille (celles du modèle en service) ; oublie les verdicts."""
        classes = tuple(classes)
        if (classes, image_size) == (self.classes, self.image_size):
            return
        with self._check_lock:
            self.classes, self.image_size = classes, int(image_size)
            self._loaded = None
            for version, verdict in list(self._verdicts.items()):
                if verdict.error is None:  # still valid only if it has these classes and this size
                    try:
                        self._check_metadata(version)
                    except ModelFileError as exc:
                        self._verdicts[version] = _Verdict(verdict.key, str(exc).rstrip("."))

    def _key(self, version: int) -> tuple:
        path = self.model_file(version)
        key: list[tuple[int, int, int] | None] = []
        for file in (path, metadata_path(path)):
            try:
                st = file.stat()
                key.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                key.append(None)
        return tuple(key)

    def _check_metadata(self, version: int) -> dict[str, Any]:
        path = self.model_file(version)
        if not path.is_file():
            raise RepositoryError(f"{MODEL_FILE} absent du dossier de la version {version}.")
        metadata = read_metadata(path)
        golden = (metadata.get("repository") or {}).get("golden")
        if not isinstance(golden, dict) or not golden:
            raise RepositoryError(
                "pas d'étiquettes témoins dans ses métadonnées : publiez le modèle avec « python -m atelier publish »."
            )
        if metadata.get("sha256") and file_sha256(path) != metadata["sha256"]:
            raise RepositoryError(f"{MODEL_FILE} ne correspond pas à l'empreinte de ses métadonnées (fichier abîmé).")
        if self.min_accuracy > 0:
            accuracy = recorded_accuracy(metadata)
            if accuracy is None:
                raise RepositoryError(
                    "aucune précision enregistrée dans ses métadonnées (metrics.validation_accuracy ou "
                    f"metrics.test_accuracy) alors que le plancher est de {_percent(self.min_accuracy)}"
                )
            name, value = accuracy
            if value < self.min_accuracy:
                raise RepositoryError(
                    f"précision enregistrée ({name}) de {_percent(value)}, sous le plancher de "
                    f"{_percent(self.min_accuracy)}"
                )
        if self.classes is not None and tuple(metadata["classes"]) != self.classes:
            raise RepositoryError(
                f"classes {metadata['classes']} au lieu de {list(self.classes)} (mêmes classes, même ordre attendus)"
            )
        if self.image_size is not None and metadata["image_size"] != self.image_size:
            raise RepositoryError(
                f"images {metadata['image_size']}×{metadata['image_size']} au lieu de {self.image_size}"
            )
        return metadata

    def check(self, version: int):
        """Vérifie la version *version* et renvoie son modèle chargé et chauffé ; lève :class:`RepositoryError`.

        Le verdict est gardé : une version invalide n'est plus rechargée tant que ses fichiers ne
        changent pas. Un échec est écrit dans le journal (en français).
        """
        version = int(version)
        self.ensure_exists(version)
        with self._check_lock:
            key = self._key(version)
            if self._loaded is not None and self._loaded[:2] == (version, key):
                return self._loaded[2]
            verdict = self._verdicts.get(version)
            if verdict is not None and verdict.key == key and verdict.error is not None:
                raise RepositoryError(f"Version {version} invalide : {verdict.error}")
            try:
                metadata = self._check_metadata(version)
                serving = self._loader(self.model_file(version))
                check_golden(serving, metadata["repository"]["golden"], self.sample_dir)
            except ModelFileError as exc:
                message = str(exc).rstrip(".")
                self._verdicts[version] = _Verdict(key, message)
                log.warning("Version %d ignorée dans %s : %s.", version, self.root, message)
                self._notify_invalid(version, message)
                raise RepositoryError(f"Version {version} invalide : {message}.") from None
            self._verdicts[version] = _Verdict(key, None)
            self._loaded = (version, key, serving)
            return serving

    def reject(self, version: int, message: str) -> None:
        """Marque *version* invalide (par exemple refusée par le serveur au moment du remplacement)."""
        with self._check_lock:
            self._verdicts[int(version)] = _Verdict(self._key(int(version)), message.rstrip("."))
            if self._loaded is not None and self._loaded[0] == int(version):
                self._loaded = None
        log.warning("Version %d ignorée dans %s : %s", version, self.root, message)
        self._notify_invalid(int(version), message)

    def _notify_invalid(self, version: int, message: str) -> None:
        if self._on_invalid is not None:
            self._on_invalid(version, message)

    def release(self) -> None:
        """Oublie le dernier modèle chargé par :meth:`check` (après l'avoir mis en service, par exemple)."""
        with self._check_lock:
            self._loaded = None

    def is_valid(self, version: int) -> bool:
        """Vrai si *version* passe toutes les vérifications (verdict gardé, sinon :meth:`check`)."""
        verdict = self._verdicts.get(int(version))
        if verdict is not None and verdict.key == self._key(int(version)):
            return verdict.error is None
        try:
            self.check(version)
        except RepositoryError:
            return False
        return True

    def error(self, version: int) -> str | None:
        """L'erreur gardée pour *version* (``None`` si elle est valide ou pas encore vérifiée)."""
        verdict = self._verdicts.get(int(version))
        return verdict.error if verdict is not None else None

    def resolve(self) -> int | None:
        """La version à servir : l'épinglée si elle est valide, sinon la plus récente valide (``None`` : aucune)."""
        versions = self.versions()
        pin = self.pinned()
        if pin is not None:
            if pin in versions and self.is_valid(pin):
                self._pin_warning = None
                return pin
            reason = "n'existe pas" if pin not in versions else f"est invalide ({self.error(pin)})"
            self._warn_pin(f"La version épinglée {pin} {reason} : la plus récente version valide est servie.")
        for version in reversed(versions):
            if self.is_valid(version):
                return version
        return None

    def describe(self) -> list[dict[str, Any]]:
        """Chaque version avec ses métriques et son état (``valide``, ``invalide``, ``non vérifiée``)."""
        pin = self.pinned()
        rows = []
        for version in self.versions():
            row: dict[str, Any] = {"version": version, "pinned": version == pin}
            try:
                metadata = read_metadata(self.model_file(version))
            except ModelFileError as exc:
                row.update(status="invalide", error=str(exc))
                rows.append(row)
                continue
            accuracy = recorded_accuracy(metadata)
            verdict = self._verdicts.get(version)
            if verdict is None or verdict.key != self._key(version):
                status, error = "non vérifiée", None
            else:
                status, error = ("valide" if verdict.error is None else "invalide"), verdict.error
            row.update(
                source_version=metadata.get("source_version"),
                published=(metadata.get("repository") or {}).get("published"),
                classes=metadata["classes"],
                image_size=metadata["image_size"],
                accuracy=accuracy[1] if accuracy else None,
                metrics=metadata.get("metrics") or {},
                status=status,
                error=error,
            )
            rows.append(row)
        return rows


class RepositoryPoller:
    """Relit le dépôt toutes les ``interval`` secondes et appelle ``on_change(version, modèle chargé)``.

    ``on_change`` met le modèle en service (par exemple ``Predictor.swap``) ; s'il lève une
    :class:`~atelier.model_io.ModelFileError`, la version est marquée invalide et l'ancienne continue.
    Le fil d'exécution ne touche pas aux requêtes : il lit quelques fichiers, et charge un modèle
    seulement quand la version à servir change.
    """

    def __init__(
        self,
        repository: ModelRepository,
        on_change: Callable[[int, Any], None],
        *,
        interval: float = DEFAULT_POLL_SECONDS,
        served: int | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval doit être positif (reçu : {interval!r}).")
        self.repository = repository
        self.interval = float(interval)
        self.served = served
        self.last_error: str | None = None
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()  # the thread and a request (pin) may poll at the same time

    def poll_once(self) -> bool:
        """Une lecture du dépôt ; vrai si la version servie a changé."""
        with self._poll_lock:
            return self._poll()

    def _poll(self) -> bool:
        try:
            target = self.repository.resolve()
            if target is None or target == self.served:
                return False
            serving = self.repository.check(target)
            try:
                self._on_change(target, serving)
            except ModelFileError as exc:
                self.repository.reject(target, str(exc))
                self.last_error = f"Version {target} refusée : {exc}"
                return False
            finally:
                self.repository.release()
        except (OSError, ModelFileError) as exc:
            self.last_error = str(exc)
            log.warning("Lecture du dépôt de modèles %s impossible : %s", self.repository.root, exc)
            return False
        self.served = target
        return True

    def start(self) -> RepositoryPoller:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="atelier-depot-modeles", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception:  # pragma: no cover - the poller must survive a bug in on_change
                log.exception("Erreur inattendue en relisant le dépôt de modèles %s", self.repository.root)
