"""Les réglages de l'API, définis une seule fois : :class:`ApiSettings`.

Chaque réglage est un champ de :class:`ApiSettings` qui porte, au même endroit, sa valeur par défaut, sa
variable d'environnement ``ATELIER_*``, sa vérification et sa description en français. La liste complète,
générée depuis ces champs, est dans la documentation de :class:`ApiSettings` (``help(ApiSettings)``).

* dans un notebook ou un test : ``create_app("cnn.keras", api_key="…")`` (les mots-clés sont ces champs) ;
* en déploiement : :meth:`ApiSettings.from_env` lit les variables d'environnement (``python -m atelier
  serve``, ``uvicorn --factory atelier.api:create_app_from_env``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..connection_guard import (
    DEFAULT_BODY_MIN_RATE,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionLimits,
)
from ..history import DEFAULT_MAX_ROWS, DEFAULT_RETENTION_DAYS
from ..inference import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUED, RUNTIMES
from ..model_repository import DEFAULT_MIN_ACCURACY, DEFAULT_POLL_SECONDS
from ..preprocessing import ALLOWED_FORMATS, DECODE_BUDGET_PIXELS, MAX_PIXELS
from .admission import DEFAULT_MAX_INFLIGHT
from .explanation_pool import DEFAULT_MAX_WAITING

_MIB = 1024 * 1024


# --- how a value is read from the environment (text → value) ---------------------------------------------
def _text(raw: str) -> str:
    return raw


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _number(kind: type) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return kind(raw)
        except ValueError:
            raise ValueError("un nombre est attendu") from None

    return parse


def _mebibytes(raw: str) -> int:
    megabytes = _number(float)(raw)
    if megabytes <= 0:
        raise ValueError("un nombre de Mio positif est attendu")
    return max(1, int(megabytes * _MIB))


def _flag(raw: str) -> bool:
    return raw.lower() not in ("0", "false", "non", "no", "off")


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(origin.strip() for origin in raw.split(",") if origin.strip())


# --- what a valid value is (value → None, or the French description of what is expected) ----------------
def _positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "un entier positif"


def _non_negative(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    return None if ok else "un nombre positif ou nul"


def _positive(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return None if ok else "un nombre positif"


def _fraction(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    return None if ok else "entre 0 et 1"


def _non_negative_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "un entier positif ou nul"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else " ou ".join(choices)

    return check


def _probability_or_none(value: Any) -> str | None:
    ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1)
    return None if ok else "entre 0 et 1 (exclus)"


def _header_value(value: Any) -> str | None:
    ok = value is None or (
        isinstance(value, str) and value.isascii() and value.isprintable() and value.strip() == value
    )
    return (
        None
        if ok
        else (
            "une clé d'API faite de caractères ASCII imprimables, sans espace au début ni à la fin "
            "(elle voyage dans un en-tête HTTP)"
        )
    )


def _spec(
    *,
    doc: str,
    env: str | None = None,
    parse: Callable[[str], Any] = _text,
    check: Callable[[Any], str | None] | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    """What a setting means: its French description, its environment variable, how to read and check it.

    ``secret``: the value is never repeated in an error message (it would end up in logs).
    """
    return {"doc": doc, "env": env, "parse": parse, "check": check, "secret": secret}


@dataclass(frozen=True)
class ApiSettings:
    """Tous les réglages de l'API (valeurs par défaut, variables d'environnement, vérifications).

    ``ApiSettings("cnn.keras", api_key="…")`` vérifie chaque valeur (``ValueError`` en français) ; les
    chemins deviennent des :class:`~pathlib.Path`, les listes des tuples. Les réglages :
    """

    model_path: Path | None = field(
        metadata=_spec(
            doc="le modèle .keras à servir, avec son .json à côté (défaut de ATELIER_MODEL : "
            "atelier.paths.model_path(), le modèle du chapitre 2) ; aussi celui que recharge PUT /model. "
            "Ignoré si model_dir est donné",
            env="ATELIER_MODEL",
            parse=_path,
        ),
    )
    model_dir: Path | None = field(
        default=None,
        metadata=_spec(
            doc="dépôt de modèles versionné (DOSSIER/1/model.keras, DOSSIER/2/…) : chaque processus sert la "
            "version épinglée (DOSSIER/pin) ou la plus récente valide, et relit le dépôt toutes les "
            "poll_seconds secondes (atelier.model_repository)",
            env="ATELIER_MODEL_DIR",
            parse=_path,
        ),
    )
    poll_seconds: float = field(
        default=DEFAULT_POLL_SECONDS,
        metadata=_spec(
            doc="secondes entre deux lectures du dépôt de modèles",
            env="ATELIER_POLL_SECONDS",
            parse=_number(float),
            check=_positive,
        ),
    )
    min_accuracy: float = field(
        default=DEFAULT_MIN_ACCURACY,
        metadata=_spec(
            doc="précision enregistrée minimale d'une version du dépôt pour être servie (0 : pas exigée)",
            env="ATELIER_MIN_ACCURACY",
            parse=_number(float),
            check=_fraction,
        ),
    )
    history_days: float = field(
        default=DEFAULT_RETENTION_DAYS,
        metadata=_spec(
            doc="l'historique efface les prédictions plus vieilles que ce nombre de jours (0 : sans limite)",
            env="ATELIER_HISTORY_DAYS",
            parse=_number(float),
            check=_non_negative,
        ),
    )
    history_max_rows: int = field(
        default=DEFAULT_MAX_ROWS,
        metadata=_spec(
            doc="l'historique ne garde que ce nombre de prédictions, les plus récentes (0 : sans limite)",
            env="ATELIER_HISTORY_MAX_ROWS",
            parse=_number(int),
            check=_non_negative_int,
        ),
    )
    api_key: str | None = field(
        default=None,
        metadata=_spec(
            doc="si donnée, l'en-tête X-API-Key est exigé partout sauf /, /health, /docs, /openapi.json et /static/ ; "
            "clé d'inférence quand une clé de gestion existe (admin_key ou keys_file), sinon tous les droits "
            "(atelier.keys)",
            env="ATELIER_API_KEY",
            check=_header_value,
            secret=True,
        ),
    )
    admin_key: str | None = field(
        default=None,
        metadata=_spec(
            doc="clé de gestion (PUT /model, épinglage, effacement, tout l'historique, /metrics), étiquette "
            "« cle-gestion » dans l'historique",
            env="ATELIER_ADMIN_KEY",
            check=_header_value,
            secret=True,
        ),
    )
    keys_file: Path | None = field(
        default=None,
        metadata=_spec(
            doc="fichier JSON des clés (étiquette, rôle, empreinte SHA-256), relu dès qu'il change : "
            "« python -m atelier cle » y ajoute une clé",
            env="ATELIER_KEYS_FILE",
            parse=_path,
        ),
    )
    db_path: str | Path | None = field(
        default=None,
        metadata=_spec(
            doc="fichier SQLite de l'historique (défaut : <cache de l'atelier>/historique.sqlite3 ; "
            "« :memory: » le garde en mémoire)",
            env="ATELIER_DB",
        ),
    )
    max_upload_bytes: int = field(
        default=10 * _MIB,
        metadata=_spec(
            doc="taille maximale d'une requête, en octets (ATELIER_MAX_UPLOAD_MB en Mio)",
            env="ATELIER_MAX_UPLOAD_MB",
            parse=_mebibytes,
            check=_positive_int,
        ),
    )
    max_pixels: int = field(
        default=MAX_PIXELS,
        metadata=_spec(
            doc="nombre maximal de pixels décodés d'une image (contre les bombes de décompression ; un JPEG "
            "est décodé réduit, jusqu'à 1/8 : atelier.preprocessing.MAX_PIXELS dit pourquoi 3840×2160)",
            env="ATELIER_MAX_PIXELS",
            parse=_number(int),
            check=_positive_int,
        ),
    )
    decode_budget_pixels: int = field(
        default=DECODE_BUDGET_PIXELS,
        metadata=_spec(
            doc="pixels de grandes images décodés en même temps par un processus (les autres attendent leur "
            "tour) : la mémoire du décodage reste bornée quel que soit le nombre d'envois simultanés",
            env="ATELIER_DECODE_BUDGET_PIXELS",
            parse=_number(int),
            check=_positive_int,
        ),
    )
    formats: tuple[str, ...] = field(
        default=ALLOWED_FORMATS, metadata=_spec(doc="formats d'image acceptés (noms de Pillow)")
    )
    store_images_dir: Path | None = field(
        default=None,
        metadata=_spec(
            doc="si donné, les images reçues y sont copiées sous le nom <sha256>.<ext>",
            env="ATELIER_STORE_IMAGES",
            parse=_path,
        ),
    )
    max_explanations_waiting: int = field(
        default=DEFAULT_MAX_WAITING,
        metadata=_spec(
            doc="explications (Grad-CAM) en attente au-delà desquelles /explain répond 503 ; elles sont calculées "
            "une à la fois, dans leur propre fil, sans ralentir /predict",
            env="ATELIER_MAX_EXPLAIN_QUEUE",
            parse=_number(int),
            check=_non_negative_int,
        ),
    )
    cors_origins: tuple[str, ...] = field(
        default=(),
        metadata=_spec(
            doc='origines autorisées pour une application JavaScript d\'un autre site (("*",) pour toutes ; '
            "ATELIER_CORS_ORIGINS : séparées par des virgules)",
            env="ATELIER_CORS_ORIGINS",
            parse=_origins,
        ),
    )
    batching: bool = field(
        default=True,
        metadata=_spec(
            doc="regrouper les requêtes simultanées en un seul appel du réseau (sans attente : les images "
            "arrivées pendant le calcul d'un lot forment le suivant) ; False : un appel par requête "
            "(ATELIER_BATCHING=0)",
            env="ATELIER_BATCHING",
            parse=_flag,
        ),
    )
    inference_runtime: str = field(
        default="tensorflow",
        metadata=_spec(
            doc="ce qui calcule les probabilités : tensorflow (la fonction compilée) ou tflite (TensorFlow Lite, "
            "bien moins de frais par appel ; gardé seulement s'il redonne les sorties de TensorFlow) ; "
            "« python -m atelier serve » prend tflite par défaut",
            env="ATELIER_INFERENCE_RUNTIME",
            check=_one_of(RUNTIMES),
        ),
    )
    max_batch_size: int = field(
        default=DEFAULT_MAX_BATCH_SIZE,
        metadata=_spec(
            doc="taille maximale d'un lot regroupé",
            env="ATELIER_MAX_BATCH",
            parse=_number(int),
            check=_positive_int,
        ),
    )
    batch_wait_ms: float = field(
        default=0.0,
        metadata=_spec(
            doc="attente maximale, en ms, d'autres images avant de lancer un lot",
            env="ATELIER_BATCH_WAIT_MS",
            parse=_number(float),
            check=_non_negative,
        ),
    )
    max_queued: int = field(
        default=DEFAULT_MAX_QUEUED,
        metadata=_spec(
            doc="images en attente du modèle au-delà desquelles /predict répond 503 tout de suite (délestage)",
            env="ATELIER_MAX_QUEUE",
            parse=_number(int),
            check=_positive_int,
        ),
    )
    max_inflight: int = field(
        default=DEFAULT_MAX_INFLIGHT,
        metadata=_spec(
            doc="requêtes /predict en cours au-delà desquelles une nouvelle reçoit 503 et Retry-After tout de "
            "suite, sans être lue (délestage, atelier.api.admission ; 0 : pas de limite)",
            env="ATELIER_MAX_INFLIGHT",
            parse=_number(int),
            check=_non_negative_int,
        ),
    )
    max_connections: int = field(
        default=DEFAULT_MAX_CONNECTIONS,
        metadata=_spec(
            doc="connexions ouvertes au-delà desquelles chaque requête d'une nouvelle connexion reçoit 503 "
            "(atelier.connection_guard ; 0 : pas de plafond)",
            env="ATELIER_MAX_CONNECTIONS",
            parse=_number(int),
            check=_non_negative_int,
        ),
    )
    header_timeout: float = field(
        default=DEFAULT_HEADER_TIMEOUT_S,
        metadata=_spec(
            doc="secondes pour recevoir la ligne de requête et les en-têtes, sinon 408 et connexion fermée "
            "(contre les clients lents, « slowloris » ; 0 : pas de délai)",
            env="ATELIER_HEADER_TIMEOUT",
            parse=_number(float),
            check=_non_negative,
        ),
    )
    body_timeout: float = field(
        default=DEFAULT_BODY_TIMEOUT_S,
        metadata=_spec(
            doc="fenêtre, en secondes, pendant laquelle un corps pas encore complet doit arriver au débit "
            "body_min_rate, sinon 408 et connexion fermée (0 : pas de délai)",
            env="ATELIER_BODY_TIMEOUT",
            parse=_number(float),
            check=_non_negative,
        ),
    )
    body_min_rate: int = field(
        default=DEFAULT_BODY_MIN_RATE,
        metadata=_spec(
            doc="débit minimal, en octets par seconde, d'un corps de requête (moyenne sur body_timeout)",
            env="ATELIER_BODY_MIN_RATE",
            parse=_number(int),
            check=_positive_int,
        ),
    )
    max_model_bytes: int = field(
        default=200 * _MIB,
        metadata=_spec(
            doc="taille maximale d'un modèle envoyé par PUT /model, en octets (ATELIER_MAX_MODEL_MB en Mio)",
            env="ATELIER_MAX_MODEL_MB",
            parse=_mebibytes,
            check=_positive_int,
        ),
    )
    model_upload_dir: Path | None = field(
        default=None,
        metadata=_spec(
            doc="dossier temporaire des modèles envoyés par PUT /model (défaut : celui du système)",
            env="ATELIER_MODEL_UPLOAD_DIR",
            parse=_path,
        ),
    )
    gc_freeze: bool = field(
        default=True,
        metadata=_spec(
            doc="geler les objets du ramasse-miettes de Python une fois le modèle chargé (atelier.gc_pause : "
            "plus de pause de plusieurs centaines de ms sous charge) ; False : comportement de Python "
            "(ATELIER_GC_FREEZE=0)",
            env="ATELIER_GC_FREEZE",
            parse=_flag,
        ),
    )
    uncertainty_threshold: float | None = field(
        default=None,
        metadata=_spec(
            doc="seuil de confiance du « je ne sais pas » : sous ce seuil, /predict ajoute "
            '"uncertain": true et un "message" en français (chapitre 6, atelier.explain.choose_threshold)',
            env="ATELIER_UNCERTAINTY_THRESHOLD",
            parse=_number(float),
            check=_probability_or_none,
        ),
    )

    def __post_init__(self) -> None:
        normalise = object.__setattr__  # frozen dataclass: normalised once, here
        normalise(self, "api_key", self.api_key or None)
        normalise(self, "admin_key", self.admin_key or None)
        for name in ("model_path", "model_dir", "store_images_dir", "model_upload_dir", "keys_file"):
            value = getattr(self, name)
            normalise(self, name, Path(value) if value else None)
        normalise(self, "cors_origins", tuple(self.cors_origins))
        normalise(self, "formats", tuple(self.formats))
        normalise(self, "batching", bool(self.batching))
        if self.api_key is not None and self.api_key == self.admin_key:
            raise ValueError("api_key et admin_key doivent être différentes (sinon la clé d'inférence gère tout).")
        if self.model_path is None and self.model_dir is None:
            raise ValueError(
                'Indiquez le modèle à servir : create_app("modeles/cnn.keras") ou un dépôt de modèles '
                'create_app(model_dir="depot/").'
            )
        for item in dataclasses.fields(self):
            check = item.metadata["check"]
            expected = check(getattr(self, item.name)) if check else None
            if expected:
                received = "" if item.metadata["secret"] else f" (reçu : {getattr(self, item.name)!r})"
                raise ValueError(f"{item.name} doit être {expected}{received}.")

    @property
    def protected(self) -> bool:
        """Vrai si l'API exige une clé (``api_key``, ``admin_key`` ou ``keys_file``)."""
        return bool(self.api_key or self.admin_key or self.keys_file)

    def connection_limits(self) -> ConnectionLimits:
        """Les limites de connexion de ces réglages, pour le protocole HTTP (:mod:`atelier.connection_guard`)."""
        return ConnectionLimits(
            max_connections=self.max_connections,
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            body_min_rate=self.body_min_rate,
        )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Les noms des réglages (les mots-clés de :func:`atelier.api.create_app`)."""
        return tuple(item.name for item in dataclasses.fields(cls))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """Les réglages lus dans les variables ``ATELIER_*`` (les autres gardent leur valeur par défaut)."""
        from ..paths import model_path as default_model_path

        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {"model_path": default_model_path()}
        for item in dataclasses.fields(cls):
            env = item.metadata["env"]
            raw = environ.get(env, "").strip() if env else ""
            if not raw:
                continue
            try:
                value = item.metadata["parse"](raw)
                check = item.metadata["check"]
                expected = check(value) if check else None
                if expected:
                    raise ValueError(f"{expected} est attendu")
            except ValueError as exc:
                received = "" if item.metadata["secret"] else f" (reçu : {raw!r})"
                raise ValueError(f"La variable d'environnement {env} est invalide : {exc}{received}.") from None
            values[item.name] = value
        return cls(**values)

    @classmethod
    def from_values(cls, model_path: str | Path | None = None, /, **values: Any) -> ApiSettings:
        """Les réglages donnés par mots-clés (ceux de :func:`atelier.api.create_app`) ; un nom inconnu est refusé."""
        _check_names(values)
        if model_path is not None:
            values["model_path"] = model_path
        if values.get("model_path") is None and values.get("model_dir") is None:
            raise TypeError(
                'Indiquez le modèle à servir, par exemple create_app("modeles/cnn.keras") ou '
                'create_app(model_dir="depot/") pour un dépôt de modèles versionné.'
            )
        values.setdefault("model_path", None)
        return cls(**values)

    def replace(self, **overrides: Any) -> ApiSettings:
        """Une copie avec d'autres valeurs (vérifiées de la même façon) ; un nom inconnu est refusé."""
        _check_names(overrides)
        return dataclasses.replace(self, **overrides) if overrides else self


def _check_names(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(ApiSettings.names()))
    if unknown:
        raise TypeError(
            f"Réglage inconnu : {', '.join(unknown)}. Réglages possibles : {', '.join(ApiSettings.names())}."
        )


def describe_settings() -> str:
    """La liste des réglages en texte (nom, variable d'environnement, défaut, rôle), générée depuis les champs."""
    lines = []
    for item in dataclasses.fields(ApiSettings):
        env = item.metadata["env"]
        default = "" if item.default in (dataclasses.MISSING, None) else f", défaut {item.default!r}"
        where = f" (``{env}``{default})" if env else f" ({default.removeprefix(', ')})"
        lines.append(f"    * ``{item.name}``{where} : {item.metadata['doc']}.")
    return "\n".join(lines)


ApiSettings.__doc__ = f"{ApiSettings.__doc__}\n{describe_settings()}\n"
