"""Les routes de l'API, un ``APIRouter`` par module : ``predict``, ``history``, ``model``, ``web``."""
