"""Le schéma OpenAPI de ``/docs`` en français, avec la clé d'API déclarée quand elle est exigée."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..security import API_KEY_HEADER

#: Where the Swagger UI / ReDoc files of /docs and /redoc are served from (fastapi-offline: no CDN).
DOCS_STATIC_URL = "/docs-static"
TITLE = "Atelier CNN — API de classification d'images satellites"
VERSION = "1.0"
TAGS = [
    {"name": "prédiction", "description": "Classer une image et consulter l'historique."},
    {
        "name": "explication",
        "description": "Où le réseau a regardé (Grad-CAM), et les retours des utilisateurs sur ses réponses.",
    },
    {"name": "modèle", "description": "Le modèle en service et son remplacement à chaud."},
    {"name": "service", "description": "État du service."},
]


def description(*, protected: bool) -> str:
    """Le texte d'accueil de ``/docs``."""
    text = (
        "Envoyez une image satellite (JPEG, PNG, WebP, BMP ou TIFF) à **POST /predict** : l'API "
        "renvoie la classe prédite (forêt, mer, désert, nuageux), la probabilité de chaque classe et "
        'la version du modèle.\n\nToutes les erreurs sont au format `{"detail": "message en français"}`.'
    )
    if protected:
        text += f"\n\n🔑 Cette API est protégée : envoyez l'en-tête `{API_KEY_HEADER}` (bouton **Authorize**)."
    return text


def install_openapi(app: FastAPI, *, protected: bool) -> None:
    """OpenAPI en français ; déclare la clé d'API (bouton « Authorize » de /docs) quand elle est exigée."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                if "422" in responses:
                    responses["422"]["content"] = {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
                    }
                    if responses["422"].get("description") == "Validation Error":
                        responses["422"]["description"] = "Paramètre ou champ invalide."
                for response in responses.values():
                    if response.get("description") == "Successful Response":
                        response["description"] = "Réussite"
        components = schema.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        if protected:
            components.setdefault("securitySchemes", {})["CleAPI"] = {
                "type": "apiKey",
                "in": "header",
                "name": API_KEY_HEADER,
                "description": "La clé d'API configurée au démarrage du serveur.",
            }
            for path, path_item in schema.get("paths", {}).items():
                if path != "/health":
                    for operation in path_item.values():
                        operation["security"] = [{"CleAPI": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
