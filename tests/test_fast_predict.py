"""The short path of ``POST /predict`` (atelier.api.fast_predict): the usual form only, the same answers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from atelier.api import create_app
from atelier.api.fast_predict import single_file_part
from tests.conftest import encode, textured_rgb

B = b"limite"
IMAGE = encode(textured_rgb())


def body(*parts: bytes, end: bytes = b"--limite--\r\n") -> bytes:
    return b"".join(b"--limite\r\n" + part + b"\r\n" for part in parts) + end


def part(headers: str, content: bytes = IMAGE) -> bytes:
    return headers.encode() + b"\r\n\r\n" + content


USUAL = 'Content-Disposition: form-data; name="file"; filename="tuile.jpg"\r\nContent-Type: image/jpeg'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (body(part(USUAL)), ("tuile.jpg", IMAGE)),
        (body(part(USUAL), end=b"--limite--"), ("tuile.jpg", IMAGE)),  # no final CRLF (curl sends one, some do not)
        (body(part('content-disposition: form-data; name="file"; filename="é.jpg"')), ("é.jpg", IMAGE)),
        (
            body(part('Content-Disposition: form-data; name="file"; filename="C:\\\\dossier\\\\a.jpg"')),
            ("a.jpg", IMAGE),
        ),
        # everything else is FastAPI's to parse (and to refuse in French when it must)
        (body(part(USUAL), part(USUAL)), None),  # two parts
        (body(part('Content-Disposition: form-data; name="image"; filename="a.jpg"')), None),  # another field
        (body(part('Content-Disposition: form-data; name="file"')), None),  # a text field, not a file
        (body(part('Content-Disposition: form-data; name="file"; filename=""')), None),
        (body(part(USUAL, b"")), None),  # empty file: FastAPI's route says it is empty
        (body(part(USUAL + "\r\nContent-Transfer-Encoding: binary")), None),  # an unusual part header
        (body(part(USUAL + "\r\n" + USUAL.split("\r\n")[0])), None),  # two Content-Disposition
        (body(part(USUAL)) + b"suite", None),  # bytes after the closing delimiter
        (body(part(USUAL))[:-4], None),  # cut before the end
        (b"--autre\r\n" + part(USUAL) + b"\r\n--autre--\r\n", None),  # another boundary
    ],
)
def test_only_the_usual_form_takes_the_short_path(raw, expected):
    assert single_file_part(raw, B) == expected


@pytest.fixture(scope="module")
def client(saved_model):
    with TestClient(create_app(saved_model[0], db_path=":memory:")) as http:
        yield http


def _raw_post(client, raw: bytes, content_type: str = "multipart/form-data; boundary=limite"):
    return client.post("/predict", content=raw, headers={"Content-Type": content_type})


def test_the_short_path_and_fastapi_answer_the_same(client):
    short = _raw_post(client, body(part(USUAL)))
    # An extra part header sends the same image through FastAPI's own form parsing.
    routed = _raw_post(client, body(part(USUAL + "\r\nContent-Transfer-Encoding: binary")))
    charset = _raw_post(client, body(part(USUAL)), "multipart/form-data; boundary=limite; charset=utf-8")
    for response in (short, routed, charset):
        assert response.status_code == 200, response.text
        assert response.headers["x-model-version"] == response.json()["model_version"]
    answers = [response.json() for response in (short, routed, charset)]
    for answer in answers:
        answer.pop("prediction_id"), answer.pop("duration_ms")
    assert answers[0] == answers[1] == answers[2]
    ids = [client.get("/predictions", params={"limit": 3}).json()["items"][i]["id"] for i in range(3)]
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (body(part('Content-Disposition: form-data; name="image"; filename="a.jpg"')), 422),
        (body(part(USUAL, b"")), 400),
        (body(part(USUAL, b"pas une image du tout")), 415),
        (body(part(USUAL, IMAGE[: len(IMAGE) // 2])), 422),
        (body(part(USUAL))[:-4], 422),  # cut: FastAPI finds no complete « file » part
    ],
)
def test_errors_stay_french_json_on_both_paths(client, raw, status):
    response = _raw_post(client, raw)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10
