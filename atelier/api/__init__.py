"""L'API web de l'atelier : FastAPI autour du modèle entraîné.

Construire l'application ::

    from atelier.api import create_app
    app = create_app("cnn.keras")                      # dans un notebook ou un test
    # uvicorn --factory atelier.api:create_app_from_env   (réglages lus dans l'environnement)

Les réglages (mots-clés de :func:`create_app`, variables d'environnement ``ATELIER_*`` de
:func:`create_app_from_env`, valeurs par défaut) sont tous définis dans :class:`ApiSettings`
(:mod:`atelier.api.settings`) ; ``help(ApiSettings)`` en donne la liste.

Routes (documentées en français dans ``/docs``), un module de :mod:`atelier.api.routes` chacune :

* ``POST /predict`` (``predict``) : une image (champ multipart ``file``) → classe, probabilités, version
  du modèle, numéro de la prédiction dans l'historique ;
* ``GET /health``, ``GET /model`` / ``PUT /model`` (``model``) : l'API répond ; métadonnées du modèle en
  service / remplacement à chaud ;
* ``GET /predictions?limit=&offset=`` (``history``) : l'historique, le plus récent d'abord ;
* ``GET /`` (``web``) : la page web (``atelier/web/index.html``) ; ses fichiers sont servis sous ``/static/``.

Les formes des réponses sont dans :mod:`atelier.api.schemas`, les erreurs (toujours
``{"detail": "<message en français>"}``, codes de chaque problème d'image) dans :mod:`atelier.api.errors`.

Avec plusieurs processus (``--workers N``), chaque processus a son propre modèle en mémoire :
``PUT /model`` ne remplace que celui du processus qui reçoit la requête. Pour mettre à jour tous les
processus, remplacez le fichier configuré puis redémarrez le service (ou envoyez ``PUT /model`` avec
``{"reload": true}`` autant de fois qu'il y a de processus).
"""

from .app import create_app, create_app_from_env
from .settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "create_app_from_env"]
