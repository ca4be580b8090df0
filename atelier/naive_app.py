"""L'API « naïve » des tutoriels, gardée seulement comme point de comparaison pour ``python -m atelier bench``.

**C'est l'anti-modèle : ne la prenez pas comme exemple.** Elle reproduit le schéma qu'on trouve dans
la plupart des tutoriels : une route ``async def`` qui lit le fichier puis appelle ``model.predict(x)``
à chaque requête. Or ``model.predict`` est fait pour de gros lots : à chaque appel, Keras prépare un
jeu de données, une boucle et des rappels (≈ des dizaines de millisecondes pour une seule image), et
comme la route est ``async def``, ce calcul bloque la boucle d'événements : les requêtes passent
une par une. La vraie API (:mod:`atelier.api`) charge le modèle une fois, appelle une fonction compilée
hors de la boucle et regroupe les requêtes simultanées ; le banc d'essai mesure l'écart.

Lancement (pour le banc d'essai) : ``python -m atelier.naive_app --model cnn.keras --port 8001``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, UploadFile  # at module level: annotations are resolved here


def create_naive_app(model_path: str | Path) -> FastAPI:
    """Construit l'application naïve (FastAPI) pour le modèle ``model_path`` (avec son ``.json`` à côté)."""
    from .model_io import load_model
    from .preprocessing import ImageError, load_image, to_model_input

    info = load_model(model_path)
    model, classes, size = info.model, info.classes, info.image_size
    app = FastAPI(title="API naïve (comparaison)", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model_version": info.version}

    @app.post("/predict")
    async def predict(file: Annotated[UploadFile, File()]) -> dict:
        contents = await file.read()
        try:
            x = to_model_input(load_image(contents, size))
        except ImageError as exc:
            raise HTTPException(status_code=415, detail=str(exc)) from None
        probabilities = model.predict(x, verbose=0)[0]  # the anti-pattern: Keras' batch loop for one image
        best = int(probabilities.argmax())
        return {
            "label": classes[best],
            "probabilities": {name: float(p) for name, p in zip(classes, probabilities, strict=True)},
            "model_version": info.version,
        }

    return app


def main(argv: list[str] | None = None) -> None:
    """Lance l'application naïve avec uvicorn (un seul processus)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m atelier.naive_app", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    uvicorn.run(create_naive_app(args.model), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
