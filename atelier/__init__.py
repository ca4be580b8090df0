"""Atelier CNN : classer des images satellites (forêt, mer, désert, nuageux) et servir le modèle par une API.

Le paquet regroupe tout ce que les notebooks réutilisent d'un chapitre à l'autre : les classes, le
prétraitement unique des images, le chargement des données, le CNN, l'entraînement, l'API et le serveur.
"""

import os
import warnings

# Keras warns (in English) that ``shuffle=True`` is ignored when ``fit`` receives a tf.data pipeline: the
# workshop's pipelines shuffle themselves (atelier.data.to_tf_dataset), so the warning only misleads learners.
warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed")

# TensorFlow prints pages of C++ start-up logs on stderr; learners only need warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
