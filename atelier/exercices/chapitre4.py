"""Exercices du chapitre 4 (l'API web) : ``from atelier.exercices import chapitre4 as ex``.

Les vérifications démarrent l'application de l'apprenant sur un port libre et lui envoient de vraies
requêtes (:mod:`atelier.exercices.http`) : on juge les codes d'état et le JSON, pas le texte du code.
"""

from __future__ import annotations

import io
import math
import numbers

import numpy as np

from .base import Wrong, attempt, exercise, expect
from .http import json_of, running, send

NOTEBOOK = "04_api.ipynb"


# --------------------------------------------------------------------------- exercice 1 : GET /bonjour


@exercise(
    notebook=NOTEBOOK,
    cells="bonjour-app",
    hints=(
        "Reprenez l'exemple /carre de la section 2 : une application FastAPI, une fonction décorée par la "
        "méthode HTTP et le chemin, un paramètre annoté par son type, un dict renvoyé.",
        "Le paramètre de la fonction s'appelle comme le paramètre de l'adresse (?nom=Ada) : nom: str. Le message "
        "se construit avec une f-string.",
        'hello_app = FastAPI() ; @hello_app.get("/bonjour") au-dessus de def bonjour(nom: str): qui renvoie '
        '{"message": f"Bonjour {nom} !"}.',
    ),
    success='GET /bonjour?nom=Ada répond 200 {"message": "Bonjour Ada !"}, et 422 sans le paramètre nom.',
)
def ex1(hello_app):
    with running(hello_app, what="hello_app") as server:
        response = send(server, "GET", "/bonjour", params={"nom": "Ada"})
        if response.status_code == 404:
            raise Wrong(
                "GET /bonjour répond 404 (chemin inconnu) : l'endpoint n'est pas déclaré sur ce chemin. "
                'Vérifiez le décorateur : @hello_app.get("/bonjour"), avec la barre oblique, sans accent.'
            )
        if response.status_code == 405:
            raise Wrong(
                "GET /bonjour répond 405 (méthode non autorisée) : l'endpoint existe mais pour une autre "
                "méthode (POST ?). Le navigateur et requests.get envoient un GET : utilisez @hello_app.get."
            )
        if response.status_code == 422:
            raise Wrong(
                "GET /bonjour?nom=Ada répond 422 : FastAPI attend un autre paramètre. Le paramètre de la "
                "fonction doit s'appeler nom (comme dans ?nom=Ada), avec l'annotation str."
            )
        if response.status_code == 500:
            raise Wrong(
                "GET /bonjour?nom=Ada répond 500 : votre fonction lève une erreur ; essayez-la d'abord en Python."
            )
        expect(response.status_code == 200, f"GET /bonjour?nom=Ada répond {response.status_code} au lieu de 200.")
        body = json_of(response, "GET /bonjour?nom=Ada")
        if isinstance(body, str):
            raise Wrong(
                f"la réponse est la chaîne JSON {body!r}, pas un objet : renvoyez un dict, "
                '{"message": ...}, pour que le client lise response.json()["message"].'
            )
        expect(isinstance(body, dict), f'la réponse JSON est {body!r} : un objet {{"message": ...}} est attendu.')
        expect(
            "message" in body,
            f"la réponse a les clés {sorted(body)} : la clé attendue est « message » (le client lira "
            'response.json()["message"]).',
        )
        message = body["message"]
        expect(
            isinstance(message, str) and "Ada" in message,
            f"le message {message!r} ne contient pas le nom envoyé (Ada) : utilisez le paramètre nom.",
        )
        expect(
            message == "Bonjour Ada !",
            f"le message vaut {message!r} au lieu de 'Bonjour Ada !' (une espace avant le point d'exclamation, "
            "comme en français).",
        )
        other = json_of(send(server, "GET", "/bonjour", params={"nom": "Grace"}), "GET /bonjour?nom=Grace")
        expect(
            other == {"message": "Bonjour Grace !"},
            f"avec ?nom=Grace, la réponse est {other!r} : le message doit suivre le nom reçu, pas être écrit en dur.",
        )
        missing = send(server, "GET", "/bonjour")
        expect(
            missing.status_code == 422,
            f"sans le paramètre nom, GET /bonjour répond {missing.status_code} au lieu de 422 : le paramètre doit "
            "être obligatoire (pas de valeur par défaut), pour que FastAPI refuse une requête incomplète.",
        )


# --------------------------------------------------------------------------- exercice 2 : prévoir les codes

SENDS = (
    "le fichier texte",
    "le fichier vide",
    "le GIF renommé en .jpg",
    "le fichier de 11 Mio",
    "le formulaire sans champ « file »",
)
WHY = {
    ("le fichier texte", 400): "400 dirait « requête incorrecte » en général ; l'API dit plus précisément que ce "
    "contenu n'est pas une image d'un format accepté : 415 (type de média non pris en charge).",
    ("le fichier texte", 422): "la requête est bien construite (un champ file, avec un fichier) : c'est le "
    "contenu qui est refusé, 415.",
    ("le fichier vide", 415): "un fichier vide n'a aucun octet à examiner : l'API le refuse avant de chercher son "
    "format, par un 400 (requête incorrecte) qui dit « fichier vide ».",
    ("le fichier vide", 422): "le formulaire est correct, c'est son fichier qui est vide : 400.",
    ("le GIF renommé en .jpg", 200): "l'API ne croit ni le nom ni le type annoncé : elle lit les premiers octets, "
    "reconnaît un GIF, format qu'elle n'accepte pas : 415.",
    ("le GIF renommé en .jpg", 422): "l'API reconnaît bien l'image, mais le GIF n'est pas un format accepté : 415.",
    ("le GIF renommé en .jpg", 400): "l'API lit les premiers octets, reconnaît un GIF, format refusé : 415.",
    ("le fichier de 11 Mio", 415): "la taille est contrôlée pendant la lecture, avant tout examen du contenu : "
    "au-delà de 10 Mio, c'est 413 (trop volumineux), quel que soit le contenu.",
    (
        "le fichier de 11 Mio",
        400,
    ): "413 (contenu trop volumineux) : la limite de 10 Mio est vérifiée pendant la lecture.",
    ("le formulaire sans champ « file »", 400): "c'est FastAPI qui refuse une requête à laquelle il manque un "
    "paramètre obligatoire, avant d'appeler la fonction : 422, comme pour /bonjour sans nom.",
    ("le formulaire sans champ « file »", 415): "il n'y a aucun fichier à examiner : FastAPI refuse la requête "
    "incomplète avant d'appeler la fonction, par un 422.",
}


def _actual_codes(server, bad_files) -> list[int]:
    codes = [
        send(server, "POST", "/predict", files={"file": file}).status_code for file in list(bad_files.values())[:4]
    ]
    codes.append(send(server, "POST", "/predict", data={"image": "foret_1.jpg"}).status_code)
    return codes


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-2-code",
    hints=(
        "Relisez la liste des codes 4xx de la section 1 : chacun dit au client ce qu'il doit corriger.",
        "Trois règles ci-dessus : l'API examine le contenu (pas le nom), limite la taille pendant la lecture, "
        "et FastAPI refuse une requête mal construite avant d'appeler la fonction.",
        "Un code par envoi : vide → requête incorrecte ; trop gros → 413 ; pas une image acceptée → 415 ; "
        "champ manquant → 422.",
    ),
    success="vos cinq prévisions sont les réponses de l'API : 415, 400, 415, 413, 422.",
)
def ex2(predicted_codes, server, bad_files):
    if isinstance(predicted_codes, dict):
        raise Wrong("predicted_codes doit être une liste de cinq codes, dans l'ordre des envois : [415, …].")
    expect(
        isinstance(predicted_codes, (list, tuple)),
        f"predicted_codes doit être une liste de cinq entiers, pas un {type(predicted_codes).__name__}.",
    )
    expect(len(predicted_codes) == 5, f"il faut cinq codes, un par envoi ; la liste en a {len(predicted_codes)}.")
    for send_name, code in zip(SENDS, predicted_codes, strict=True):
        expect(
            isinstance(code, numbers.Integral) and not isinstance(code, bool),
            f"pour {send_name}, {code!r} n'est pas un code d'état : écrivez un entier comme 415, sans guillemets.",
        )
    actual = _actual_codes(server, bad_files)
    wrong = [
        (name, guess, code) for name, guess, code in zip(SENDS, predicted_codes, actual, strict=True) if guess != code
    ]
    if wrong:
        name, guess, code = wrong[0]
        why = WHY.get((name, guess), f"l'API répond {code}.")
        more = f" (et {len(wrong) - 1} autre(s) prévision(s) à revoir)" if len(wrong) > 1 else ""
        raise Wrong(f"pour {name}, vous prévoyez {guess}, l'API répond {code} : {why}{more}")


# --------------------------------------------------------------------------- exercice 3 : corriger /taille


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-3-code",
    hints=(
        "Le 500 vient d'une exception que personne n'attrape : Image.open ne reconnaît pas le fichier texte. "
        "Quelle exception ? Essayez Image.open(io.BytesIO(b'texte')) dans une cellule.",
        "Attrapez cette exception (try / except) et répondez par une erreur choisie : FastAPI transforme "
        'HTTPException(status_code, detail=...) en réponse JSON {"detail": ...} avec ce code.',
        "Dans un try : Image.open(...) ; except OSError (PIL.UnidentifiedImageError en est une) : "
        'raise HTTPException(415, detail="Ce fichier n\'est pas une image…").',
    ),
    success="une image donne sa taille (200), un fichier texte ou une image tronquée reçoit 415 avec un message "
    "JSON : le client sait quoi corriger, et le serveur ne signale plus de fausse panne.",
)
def ex3(fixed_app):
    with running(fixed_app, what="fixed_app") as server:
        image = send(server, "POST", "/taille", files={"file": ("image.png", _png(64, 48), "image/png")})
        if image.status_code == 404:
            raise Wrong('POST /taille répond 404 : gardez le même endpoint, @fixed_app.post("/taille").')
        if image.status_code == 422:
            raise Wrong(
                "POST /taille répond 422 à une vraie image : le paramètre de la fonction doit rester "
                "file: UploadFile, le nom du champ du formulaire."
            )
        expect(
            image.status_code == 200,
            f"une vraie image PNG reçoit {image.status_code} au lieu de 200 : la correction ne doit pas casser "
            "le cas normal.",
        )
        body = json_of(image, "POST /taille (image PNG 64 × 48)")
        expect(
            body == {"largeur": 64, "hauteur": 48},
            f"pour une image de 64 × 48 pixels, la réponse est {body!r} au lieu de {{'largeur': 64, 'hauteur': 48}}.",
        )
        text = send(
            server, "POST", "/taille", files={"file": ("notes.txt", b"Ceci n'est pas une image.", "text/plain")}
        )
        if text.status_code == 500:
            raise Wrong(
                "un fichier texte reçoit encore 500 (erreur interne) : Image.open lève une exception "
                "(PIL.UnidentifiedImageError, une OSError) que personne n'attrape. Attrapez-la et levez "
                "HTTPException(415, detail=...)."
            )
        if 200 <= text.status_code < 300:
            raise Wrong(
                f"un fichier texte reçoit {text.status_code} (succès) : un client qui ne lit que le code croirait "
                "que tout va bien. Un refus doit avoir un code 4xx, ici 415."
            )
        if text.status_code != 415:
            raise Wrong(
                f"un fichier texte reçoit {text.status_code} au lieu de 415 : 415 (type de média non pris en "
                "charge) dit précisément « ce n'est pas un format que j'accepte », comme l'API de l'atelier."
            )
        refusal = json_of(text, "la réponse au fichier texte")
        detail = refusal.get("detail") if isinstance(refusal, dict) else None
        expect(
            isinstance(detail, str) and detail.strip(),
            f"la réponse 415 est {refusal!r} : mettez un message pour l'utilisateur dans detail, "
            'HTTPException(415, detail="…").',
        )
        expect(
            str(detail).strip().lower() not in {"unsupported media type", "bad request"},
            f"le message {detail!r} est le texte anglais par défaut : écrivez une phrase en français qui dit "
            "quoi faire.",
        )
        truncated = send(server, "POST", "/taille", files={"file": ("coupee.png", _png(64, 48)[:60], "image/png")})
        expect(
            truncated.status_code == 415,
            f"une image PNG tronquée (seulement ses 60 premiers octets) reçoit {truncated.status_code} au lieu de "
            "415 : Pillow reconnaît le format sans lire l'image ; forcez la lecture (image.load()) dans le try "
            "pour attraper aussi les images abîmées.",
        )


# --------------------------------------------------------------------------- exercice 4 : résumer une mesure de charge

#: 90 fast requests and 10 slow ones: the mean (44 ms) hides the slow ones, the p95 and p99 show them.
LATENCIES_MS = np.array([10.0] * 90 + [100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0, 500.0, 800.0])
ELAPSED_S = 2.0


@exercise(
    notebook=NOTEBOOK,
    cells="exercice-4-code",
    hints=(
        "Le débit compte des requêtes par seconde : combien de latences avez-vous, en combien de secondes ?",
        "Un percentile 95 est la valeur sous laquelle se trouvent 95 % des mesures ; NumPy : np.percentile(valeurs, q) "
        "avec q entre 0 et 100 (np.quantile, lui, attend une fraction).",
        "p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99]) ; débit = len(latencies_ms) / elapsed ; "
        'renvoyez {"débit": …, "p50": p50, "p95": p95, "p99": p99}.',
    ),
    success="débit et percentiles justes : sur 90 requêtes à 10 ms et 10 lentes, le p50 (10 ms), le p95 (302,5 ms) "
    "et le p99 (503 ms) racontent ce que la moyenne (44 ms) cache.",
)
def ex4(summarize):
    result = attempt(summarize, LATENCIES_MS.copy(), ELAPSED_S, what="summarize(latencies_ms, elapsed)")
    expect(result is not None, "summarize ne renvoie rien : il manque « return » et son dict.")
    expect(isinstance(result, dict), f"summarize doit renvoyer un dict, pas un {type(result).__name__}.")
    missing = [key for key in ("débit", "p50", "p95", "p99") if key not in result]
    expect(not missing, f"il manque les clés {missing} dans le dict renvoyé (clés attendues : débit, p50, p95, p99).")
    try:
        values = {key: float(result[key]) for key in ("débit", "p50", "p95", "p99")}
    except (TypeError, ValueError):
        raise Wrong("les valeurs du dict doivent être des nombres (un float par clé).") from None
    throughput = values["débit"]
    if math.isclose(throughput, ELAPSED_S / len(LATENCIES_MS)):
        raise Wrong("débit inversé : vous calculez des secondes par requête (elapsed / n) ; le débit est n / elapsed.")
    if math.isclose(throughput, len(LATENCIES_MS) / (ELAPSED_S * 1000)):
        raise Wrong("débit 1000 fois trop petit : elapsed est déjà en secondes, ne le convertissez pas.")
    expect(
        math.isclose(throughput, 50.0, rel_tol=1e-6),
        f"débit {throughput:g} au lieu de 50 pour 100 requêtes en 2 secondes : nombre de requêtes / durée totale.",
    )
    mean = float(LATENCIES_MS.mean())
    if math.isclose(values["p50"], mean):
        raise Wrong(
            "p50 égal à la moyenne (44 ms) : le percentile 50 est la médiane, la latence qui partage les requêtes "
            "en deux moitiés (ici 10 ms). La moyenne est tirée vers le haut par quelques requêtes lentes."
        )
    if math.isclose(values["p99"], float(LATENCIES_MS.max())):
        raise Wrong(
            "p99 égal au maximum (800 ms) : le p99 est la latence que 99 % des requêtes ne dépassent pas, pas la "
            "plus lente de toutes ; calculez-le avec np.percentile."
        )
    p50, p95, p99 = np.percentile(LATENCIES_MS, [50, 95, 99])
    quantile_like = np.percentile(LATENCIES_MS, [0.50, 0.95, 0.99])
    if np.allclose([values["p50"], values["p95"], values["p99"]], quantile_like):
        raise Wrong(
            "percentiles de 0,5 %, 0,95 % et 0,99 % : np.percentile attend q entre 0 et 100 (50, 95, 99) ; "
            "c'est np.quantile qui attend une fraction (0.5, 0.95, 0.99)."
        )
    if np.allclose([values["p50"], values["p95"], values["p99"]], [p50 / 1000, p95 / 1000, p99 / 1000]):
        raise Wrong("percentiles en secondes : latencies_ms est déjà en millisecondes, ne divisez pas par 1000.")
    expect(
        np.allclose([values["p50"], values["p95"], values["p99"]], [p50, p95, p99]),
        f"percentiles ({values['p50']:g}, {values['p95']:g}, {values['p99']:g}) au lieu de ({p50:g}, {p95:g}, {p99:g}) "
        "ms pour 90 requêtes à 10 ms et 10 requêtes de 100 à 800 ms.",
    )
