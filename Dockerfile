# API de l'atelier CNN : « python -m atelier serve » dans une image Python 3.12.
#
#   docker build -t atelier-cnn-api .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/modeles:/models:ro" atelier-cnn-api
#
# Le modèle n'est pas dans l'image : montez le dossier qui contient cnn.keras et cnn.json sur /models
# (ou changez ATELIER_MODEL), ou un dépôt de modèles versionné avec -e ATELIER_MODEL_DIR=/depot
# -v "$PWD/depot:/depot" (voir compose.yaml). L'historique SQLite va dans /data (un volume).
# Les images d'exemple (images/exemples/) sont dans l'image : elles vérifient chaque version du dépôt.
# Options en plus : docker run … atelier-cnn-api --workers 2   (ajoutées à la commande serve).
# Clé d'API : -e ATELIER_API_KEY=… (jamais dans l'image ni dans la ligne de commande).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    ATELIER_MODEL=/models/cnn.keras \
    ATELIER_DB=/data/historique.sqlite3 \
    ATELIER_CACHE=/data/cache \
    ATELIER_SAMPLES=/app/images/exemples

WORKDIR /app

# The package and its declared dependencies (pyproject.toml is the single source of truth).
COPY pyproject.toml README.md ./
COPY atelier ./atelier
COPY images/exemples ./images/exemples
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin atelier \
    && mkdir -p /models /data/cache \
    && chown -R atelier:atelier /data

USER atelier
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]

ENTRYPOINT ["python", "-m", "atelier", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []
