"""Chapter 4 exercises: checked by behaviour (the learner's app is started, real requests are sent)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi import FastAPI, HTTPException, UploadFile
from PIL import Image

from atelier.exercices import OK, WRONG
from atelier.exercices import chapitre4 as ex
from atelier.exercices.solution_source import solution_text


def _solution(item, **context):
    namespace = {
        "FastAPI": FastAPI,
        "HTTPException": HTTPException,
        "UploadFile": UploadFile,
        "Image": Image,
        "io": io,
        "np": np,
        **context,
    }
    for cell_id in item.cells:
        exec(solution_text(item.notebook, cell_id), namespace)
    return namespace


@pytest.fixture(scope="module")
def atelier_server(saved_model):
    from atelier.api import create_app
    from atelier.server import start_server

    server = start_server(create_app(saved_model[0], db_path=":memory:"), port=None)
    yield server
    server.stop()


def _bad_files():
    """The four bad files of the notebook (section 5)."""
    gif = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 110, 50)).save(gif, format="GIF")
    return {
        "un fichier texte": ("notes.txt", b"Ceci n'est pas une image.", "text/plain"),
        "un fichier vide": ("vide.jpg", b"", "image/jpeg"),
        "un GIF renommé en .jpg": ("foret.jpg", gif.getvalue(), "image/jpeg"),
        "un fichier de 11 Mio": ("enorme.jpg", b"\xff\xd8" + bytes(11 * 2**20), "image/jpeg"),
    }


# --------------------------------------------------------------------------- exercice 1 : GET /bonjour


def _hello(
    path="/bonjour", method="get", param="nom", message=lambda nom: f"Bonjour {nom} !", default=None, as_text=False
):
    app = FastAPI()

    def bonjour(**kwargs):
        text = message(kwargs[param])
        return text if as_text else {"message": text}

    import inspect

    annotation = inspect.Parameter(
        param, inspect.Parameter.KEYWORD_ONLY, annotation=str, **({} if default is None else {"default": default})
    )
    bonjour.__signature__ = inspect.Signature([annotation])
    getattr(app, method)(path)(bonjour)
    return app


EX1_WRONG = [
    (_hello(path="/hello"), "répond 404"),
    (_hello(method="post"), "répond 405"),
    (_hello(param="name"), "FastAPI attend un autre paramètre"),
    (_hello(as_text=True), "la chaîne JSON"),
    (_hello(message=lambda nom: f"Bonjour {nom}!"), "une espace avant le point d'exclamation"),
    (_hello(message=lambda nom: "Bonjour Ada !"), "écrit en dur"),
    (_hello(default="toi"), "le paramètre doit être obligatoire"),
    ("hello_app", "n'est pas une application web"),
]


def test_ex1_solution_passes():
    assert ex.ex1.evaluate(_solution(ex.ex1)).status == OK


@pytest.mark.parametrize(("app", "fragment"), EX1_WRONG, ids=[f for _, f in EX1_WRONG])
def test_ex1_wrong_answers(app, fragment):
    result = ex.ex1.evaluate({"hello_app": app})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 2 : prévoir les codes

EX2_WRONG = [
    ([400, 400, 415, 413, 422], "pour le fichier texte, vous prévoyez 400"),
    ([415, 415, 415, 413, 422], "un fichier vide n'a aucun octet"),
    ([415, 400, 200, 413, 422], "l'API ne croit ni le nom"),
    ([415, 400, 415, 415, 422], "la taille est contrôlée pendant la lecture"),
    ([415, 400, 415, 413, 400], "c'est FastAPI qui refuse"),
    ([400, 400, 400, 400, 400], "et 3 autre(s) prévision(s) à revoir"),
    (["415", 400, 415, 413, 422], "sans guillemets"),
    ([415, 400, 415, 413], "il faut cinq codes"),
    ({"un fichier texte": 415}, "doit être une liste"),
]


def test_ex2_solution_passes(atelier_server):
    namespace = _solution(ex.ex2, server=atelier_server, bad_files=_bad_files())
    assert ex.ex2.evaluate(namespace).status == OK


@pytest.mark.parametrize(("codes", "fragment"), EX2_WRONG, ids=[f for _, f in EX2_WRONG])
def test_ex2_wrong_answers(atelier_server, codes, fragment):
    result = ex.ex2.evaluate({"predicted_codes": codes, "server": atelier_server, "bad_files": _bad_files()})
    assert result.status == WRONG and fragment in result.message, result


def test_ex2_stopped_server_is_explained(saved_model):
    from atelier.api import create_app
    from atelier.server import start_server

    server = start_server(create_app(saved_model[0], db_path=":memory:"), port=None)
    server.stop()
    result = ex.ex2.evaluate(
        {"predicted_codes": [415, 400, 415, 413, 422], "server": server, "bad_files": _bad_files()}
    )
    assert result.status == WRONG and "impossible de joindre le serveur" in result.message, result


# --------------------------------------------------------------------------- exercice 3 : corriger /taille


def _size_app(on_error=None, load=True, swap=False):
    app = FastAPI()

    @app.post("/taille")
    async def taille(file: UploadFile):
        data = await file.read()
        try:
            image = Image.open(io.BytesIO(data))
            if load:
                image.load()
        except OSError:
            if on_error is None:
                raise
            return on_error()
        width, height = image.size
        return {"largeur": height, "hauteur": width} if swap else {"largeur": width, "hauteur": height}

    return app


def _raise(status, detail=None):
    def handler():
        raise HTTPException(status, detail=detail) if detail else HTTPException(status)

    return handler


EX3_WRONG = [
    (_size_app(), "reçoit encore 500"),
    (_size_app(on_error=lambda: {"erreur": "pas une image"}), "(succès)"),
    (_size_app(on_error=_raise(400, "Pas une image.")), "au lieu de 415"),
    (_size_app(on_error=_raise(415)), "le texte anglais par défaut"),
    (_size_app(on_error=_raise(415, "Pas une image."), load=False), "tronquée"),
    (_size_app(on_error=_raise(415, "Pas une image."), swap=True), "au lieu de {'largeur': 64, 'hauteur': 48}"),
    (42, "n'est pas une application web"),
]


def test_ex3_solution_passes():
    assert ex.ex3.evaluate(_solution(ex.ex3)).status == OK


@pytest.mark.parametrize(("app", "fragment"), EX3_WRONG, ids=[f for _, f in EX3_WRONG])
def test_ex3_wrong_answers(app, fragment):
    result = ex.ex3.evaluate({"fixed_app": app})
    assert result.status == WRONG and fragment in result.message, result


# --------------------------------------------------------------------------- exercice 4 : résumer la charge


def _summary(throughput=lambda n, s: n / s, percentiles=lambda x: np.percentile(x, [50, 95, 99]), keys=None):
    def summarize(latencies_ms, elapsed):
        p50, p95, p99 = percentiles(latencies_ms)
        result = {"débit": throughput(len(latencies_ms), elapsed), "p50": p50, "p95": p95, "p99": p99}
        return {key: result[key] for key in (keys or result)}

    return summarize


EX4_WRONG = [
    (_summary(percentiles=lambda x: [x.mean(), *np.percentile(x, [95, 99])]), "p50 égal à la moyenne"),
    (_summary(throughput=lambda n, s: s / n), "débit inversé"),
    (_summary(throughput=lambda n, s: n / (s * 1000)), "1000 fois trop petit"),
    (_summary(percentiles=lambda x: np.percentile(x, [0.5, 0.95, 0.99])), "np.quantile"),
    (_summary(percentiles=lambda x: [*np.percentile(x, [50, 95]), x.max()]), "p99 égal au maximum"),
    (_summary(percentiles=lambda x: np.percentile(x, [50, 95, 99]) / 1000), "en secondes"),
    (_summary(keys=("débit", "p50")), "il manque les clés"),
    (lambda latencies_ms, elapsed: None, "il manque « return »"),
]


def test_ex4_solution_passes():
    assert ex.ex4.evaluate(_solution(ex.ex4)).status == OK


@pytest.mark.parametrize(("summarize", "fragment"), EX4_WRONG, ids=[f for _, f in EX4_WRONG])
def test_ex4_wrong_answers(summarize, fragment):
    result = ex.ex4.evaluate({"summarize": summarize})
    assert result.status == WRONG and fragment in result.message, result
