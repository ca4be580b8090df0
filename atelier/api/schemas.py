"""Les formes des réponses de l'API (Pydantic) : ce que ``/docs`` décrit.

Les routes rapides (``/predict``, ``/health``) construisent leur JSON directement, sans passer par Pydantic ;
les tests de contrat (``tests/test_api_contract.py``) valident chaque réponse réelle contre ces modèles
(``extra="forbid"`` : un champ en trop ou en moins fait échouer le test), si bien que ``/docs`` et la
réalité ne peuvent pas diverger.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from ..history import MAX_COMMENT_CHARS
from ..labels import CLASSES
from ..model_io import METADATA_FORMAT

#: Largest prediction number (SQLite's INTEGER is 64-bit: a larger number would overflow, a 500).
MAX_PREDICTION_ID = 2**63 - 1
#: The ``{prediction_id}`` of the history routes.
PredictionId = Annotated[
    int, Path(ge=1, le=MAX_PREDICTION_ID, description="Le numéro de la prédiction (prediction_id).")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictionOut(_Strict):
    label: str = Field(description="Classe prédite (celle de plus forte probabilité).", examples=["forêt"])
    probabilities: dict[str, float] = Field(
        description="Probabilité de chaque classe, dans l'ordre des métadonnées ; leur somme vaut 1.",
        examples=[{"forêt": 0.91, "mer": 0.04, "désert": 0.02, "nuageux": 0.03}],
    )
    model_version: str = Field(description="Version du modèle qui a répondu.", examples=["cnn-3f2a9c1d"])
    prediction_id: int = Field(description="Numéro de la prédiction dans l'historique.", examples=[42])
    confidence: float = Field(description="Probabilité de la classe prédite.", examples=[0.91])
    duration_ms: float = Field(
        description="Durée du traitement côté serveur (décodage + réseau), en ms.", examples=[3.2]
    )
    image_stored: bool = Field(
        description="Le serveur a gardé l'image (`serve --store-images DOSSIER`) : on peut expliquer cette "
        "prédiction plus tard (`GET /predictions/{id}/explanation`) et la corriger ou la confirmer "
        "(`POST /predictions/{id}/feedback`). Faux : ces deux routes répondent 409.",
        examples=[True],
    )
    uncertain: bool | None = Field(
        default=None,
        description="Seulement si l'API a un seuil de confiance (`uncertainty_threshold`) : vrai quand la "
        "confiance est sous ce seuil — le modèle « ne sait pas ».",
        examples=[False],
    )
    message: str | None = Field(
        default=None, description="Explication en français quand `uncertain` est vrai.", examples=[None]
    )


class HealthOut(_Strict):
    status: str = Field(examples=["ok"])
    ready: bool = Field(description="Un modèle est chargé et chauffé dans ce processus.", examples=[True])
    model_version: str | None = Field(
        description="Version du modèle en service dans ce processus (null tant qu'il n'y en a pas).", examples=["2"]
    )


class ReadyOut(_Strict):
    ready: bool = Field(examples=[True])
    model_version: str | None = Field(examples=["2"])
    detail: str | None = Field(examples=[None])


class VersionOut(BaseModel):
    version: int | str | None = Field(description="Numéro de la version (ou version du fichier servi).")
    pinned: bool
    status: str = Field(description="`valide`, `invalide` ou `non vérifiée`.", examples=["valide"])
    error: str | None = Field(description="Pourquoi la version est ignorée (en français).")
    source_version: str | None = None
    published: str | None = None
    classes: list[str] | None = None
    image_size: int | None = None
    accuracy: float | None = Field(default=None, description="Précision enregistrée dans ses métadonnées.")
    metrics: dict[str, Any] = Field(default_factory=dict)


class ModelsOut(_Strict):
    model_dir: str | None = Field(description="Le dépôt suivi (null : serveur lancé sur un seul fichier).")
    served_version: int | str | None = Field(description="La version servie par le processus qui répond.")
    pid: int | None = Field(description="Le processus qui répond (un par --workers).")
    pin: int | None = Field(description="La version épinglée (fichier DOSSIER/pin), ou null.")
    policy: str = Field(examples=["la plus récente valide"])
    poll_seconds: float | None
    min_accuracy: float | None
    last_error: str | None = Field(description="La dernière version refusée par ce processus, et pourquoi.")
    versions: list[VersionOut]


class ErrorOut(_Strict):
    detail: str = Field(
        description="Explication en français.", examples=["Le fichier est vide : il ne contient aucune image."]
    )


class HistoryItem(_Strict):
    id: int
    created: str = Field(description="Date UTC, ISO 8601.", examples=["2025-01-31T14:02:11.532+00:00"])
    label: str
    probabilities: dict[str, float | None] = Field(
        description="Probabilité de chaque classe ; null pour une valeur non finie écrite par une ancienne "
        "version de l'atelier (l'historique n'en enregistre plus)."
    )
    model_version: str
    image_sha256: str = Field(description="Empreinte SHA-256 de l'image reçue.")
    filename: str | None = Field(
        description="Nom de fichier envoyé par le client, nettoyé (jamais utilisé comme chemin)."
    )
    duration_ms: float | None
    feedback_label: str | None = Field(
        description="La vraie classe selon l'utilisateur (POST /predictions/{id}/feedback), ou null sans retour.",
        examples=["forêt"],
    )
    feedback_comment: str | None = Field(description="Son commentaire, s'il en a laissé un.", examples=[None])
    feedback_by: str | None = Field(
        description="Qui a donné le retour : le nom de la clé d'API quand l'API en a, sinon null.", examples=[None]
    )
    feedback_at: str | None = Field(description="Date UTC du retour, ISO 8601.", examples=[None])
    key_label: str | None = Field(
        description="Étiquette de la clé d'API qui a fait la requête (jamais la clé) ; null sans clé."
    )


class HistoryOut(_Strict):
    total: int = Field(description="Nombre total de prédictions enregistrées.")
    limit: int
    offset: int
    items: list[HistoryItem] = Field(description="Les prédictions, les plus récentes d'abord.")


class FeedbackIn(_Strict):
    label: str = Field(
        description="La vraie classe de l'image : forêt, mer, désert ou nuageux (la classe prédite si c'est juste).",
        examples=["forêt"],
        # Documented as an enum; checked by History.set_feedback, whose 422 lists the classes in French.
        json_schema_extra={"enum": list(CLASSES)},
    )
    comment: str | None = Field(
        default=None,
        max_length=MAX_COMMENT_CHARS,
        description=f"Commentaire facultatif ({MAX_COMMENT_CHARS} caractères au plus).",
        examples=["Une forêt sous une fine couche de nuages."],
    )


class FeedbackOut(HistoryItem):
    """La prédiction avec le retour qui vient d'être rangé (son image est gardée : il servira au réentraînement)."""


class DeletedOut(_Strict):
    status: str = Field(examples=["effacée"])
    prediction_id: int = Field(examples=[42])
    image_deleted: bool = Field(
        description="L'image gardée a été effacée aussi (faux si le serveur ne garde pas les images, ou si une "
        "autre prédiction de l'historique a la même image : elle est effacée avec la dernière)."
    )


class HeatmapOut(_Strict):
    overlay_png: str = Field(description="La carte superposée à l'image (ce que le réseau a vu), PNG en base64.")
    map_png: str = Field(
        description="La carte brute, PNG en niveaux de gris et en base64, à la taille d'entrée du réseau "
        "(255 = la zone qui a le plus poussé vers la classe prédite, 0 = aucune contribution)."
    )
    map: list[list[float]] = Field(description="La même carte en nombres, entre 0 et 1 (lignes de haut en bas).")
    size: list[int] = Field(description="Hauteur et largeur de la carte, en pixels.", examples=[[64, 64]])


class ExplanationOut(_Strict):
    label: str = Field(description="Classe prédite, celle que la carte explique.", examples=["forêt"])
    probabilities: dict[str, float] = Field(examples=[{"forêt": 0.91, "mer": 0.04, "désert": 0.02, "nuageux": 0.03}])
    confidence: float = Field(examples=[0.91])
    model_version: str = Field(
        description="Version du modèle qui a calculé la prédiction et la carte (la même pour les deux).",
        examples=["cnn-3f2a9c1d"],
    )
    prediction_id: int | None = Field(
        description="Pour GET /predictions/{id}/explanation : le numéro de la prédiction ; null pour POST /explain "
        "(qui n'ajoute rien à l'historique).",
        examples=[None],
    )
    recorded_model_version: str | None = Field(
        description="Pour GET /predictions/{id}/explanation : la version enregistrée avec la prédiction (si elle "
        "diffère de model_version, le modèle a changé depuis et l'explication est celle du modèle en service).",
        examples=[None],
    )
    heatmap: HeatmapOut


class ModelSwapOut(_Strict):
    status: str = Field(examples=["remplacé"])
    previous_version: str = Field(examples=["cnn-3f2a9c1d"])
    model_version: str = Field(examples=["cnn-7be01c44"])
    metadata: dict[str, Any]


class ModelOut(BaseModel):
    """Les métadonnées du modèle en service (d'autres champs libres peuvent s'y ajouter)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "format": METADATA_FORMAT,
                "version": "cnn-3f2a9c1d",
                "classes": ["forêt", "mer", "désert", "nuageux"],
                "image_size": 64,
                "created": "2025-01-31T14:00:00+00:00",
                "metrics": {"accuracy": 0.97},
            }
        },
    )

    version: str = Field(
        description="Version servie, dérivée par le serveur de l'empreinte SHA-256 du fichier (la même que "
        "l'en-tête X-Model-Version et l'historique)."
    )
    declared_version: str | None = Field(
        default=None,
        description="L'étiquette de version écrite dans les métadonnées (une étiquette, pas une identité).",
    )
    classes: list[str] = Field(description="Les classes, dans l'ordre des sorties du réseau.")
    image_size: int = Field(description="Côté, en pixels, des images que le réseau attend.")
