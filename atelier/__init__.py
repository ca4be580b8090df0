"""Atelier CNN : classer des images satellites (forêt, mer, désert, nuageux) et servir le modèle par une API.

Le paquet regroupe tout ce que les notebooks réutilisent d'un chapitre à l'autre : les classes, le
prétraitement unique des images, le chargement des données, le CNN, l'entraînement, l'API et le serveur.
"""

import os

# TensorFlow prints pages of C++ start-up logs on stderr; learners only need warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
