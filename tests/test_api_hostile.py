"""Hostile and unusual inputs: each gives the right status with a French JSON detail, never a 500.

Oversize bodies with a lying or absent Content-Length are tested against a real server in
``test_api_server.py``; here the size cap is also exercised directly at the ASGI level.
"""

from __future__ import annotations

import asyncio
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atelier.api import create_app
from atelier.security import BodySizeLimitMiddleware
from tests.conftest import encode, mpo, repeated_scans_jpeg, sequential_repeated_scans_jpeg, textured_rgb

CAP = 256 * 1024  # a small upload cap keeps the oversize tests fast


@pytest.fixture(scope="module")
def client(saved_model):
    path, _ = saved_model
    with TestClient(create_app(path, db_path=":memory:", max_upload_bytes=CAP)) as test_client:
        yield test_client


def _png_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A valid 1-bit PNG of width × height black pixels: a few kB on disk, 10⁸ pixels once decoded."""
    image = Image.new("1", (width, height))
    return encode(image, "PNG", optimize=True)


def _fake_header_png(width: int, height: int) -> bytes:
    """A PNG whose header announces huge dimensions, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def _sixteen_bit_png() -> bytes:
    values = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    image = Image.fromarray(values)  # Pillow picks I;16 for uint16 arrays
    assert image.mode.startswith("I;16")
    return encode(image, "PNG")


JPEG = encode(textured_rgb())
PNG = encode(textured_rgb(), "PNG")

VALID = {
    "jpeg": JPEG,
    "png-16-bits": _sixteen_bit_png(),
    "jpeg-cmyk": encode(textured_rgb().convert("CMYK"), "JPEG"),
    "png-rgba": encode(textured_rgb().convert("RGBA"), "PNG"),
    "png-palette": encode(textured_rgb().convert("P"), "PNG"),
    "png-gris": encode(textured_rgb().convert("L"), "PNG"),
    "png-1x1": encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
    "webp": encode(textured_rgb(), "WEBP"),
    "bmp": encode(textured_rgb(), "BMP"),
    "tiff": encode(textured_rgb(), "TIFF"),
    "png-rectangulaire": encode(textured_rgb(size=300).crop((0, 0, 300, 40)), "PNG"),
}

# name → (bytes, expected status, a word the French detail must contain)
HOSTILE = {
    "vide": (b"", 400, "vide"),
    "texte": (b"bonjour, je ne suis pas une image", 415, "format"),
    "html": (b"<!doctype html><html><body><script>alert(1)</script></body></html>", 415, "format"),
    "svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>',
        415,
        "format",
    ),
    "gif": (encode(textured_rgb(), "GIF"), 415, "format"),
    "pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", 415, "format"),
    "jpeg-tronque": (JPEG[: len(JPEG) // 2], 422, "illisible"),
    "png-tronque": (PNG[: len(PNG) // 2], 422, "illisible"),
    "jpeg-entete-seul": (JPEG[:4], 415, "format"),
    "bombe-png": (_png_bomb(), 413, "trop grande"),
    "bombe-entete": (_fake_header_png(60_000, 60_000), 413, "trop grande"),
    "png-sans-pixel": (_fake_header_png(0, 10), 415, "format"),
    # 128 KiB, but 1 000 passes over a 4096×4096 image: 11.7 s of decoding if it were not refused first.
    "jpeg-passes-repetees": (repeated_scans_jpeg(4096, 1000), 413, "passes"),
    # The same scans in the first frame of an MPO (10.3 s), and 1 000 empty scans of a sequential JPEG (1.5 s).
    "mpo-passes-repetees": (mpo(repeated_scans_jpeg(4096, 1000), textured_rgb(8)), 413, "passes"),
    "jpeg-sequentiel-passes-repetees": (sequential_repeated_scans_jpeg(4096, 1000), 413, "passes"),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_unusual_but_valid_images_are_classified(client, name):
    response = client.post("/predict", files={"file": (f"{name}.jpg", VALID[name], "image/jpeg")})
    assert response.status_code == 200, response.text
    assert abs(sum(response.json()["probabilities"].values()) - 1) < 1e-4


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_refused_in_french(client, name):
    data, status, word = HOSTILE[name]
    assert len(data) < CAP
    response = client.post("/predict", files={"file": ("image.jpg", data, "image/jpeg")})
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"} and word in body["detail"].lower()
    # …and the server keeps serving.
    assert client.post("/predict", files={"file": ("ok.jpg", JPEG)}).status_code == 200


def test_bomb_is_small_on_the_wire():
    assert len(HOSTILE["bombe-png"][0]) < 50_000


@pytest.mark.parametrize(
    ("kwargs", "status", "word"),
    [
        ({"files": {"image": ("a.jpg", JPEG)}}, 422, "« file » manquant"),
        ({"data": {"file": "ceci est du texte"}}, 422, "pas du texte"),
        ({"json": {"file": "abc"}}, 422, "multipart"),
        ({"content": JPEG, "headers": {"content-type": "image/jpeg"}}, 422, "multipart"),
        ({}, 422, "multipart"),
        (
            {"content": b"--x\r\nnimporte quoi", "headers": {"content-type": "multipart/form-data; boundary=zz"}},
            400,
            "mal formé",
        ),
        ({"content": b"a" * 1000, "headers": {"content-type": "multipart/form-data"}}, 400, "mal formé"),
    ],
    ids=["mauvais-champ", "champ-texte", "json", "corps-brut", "sans-corps", "multipart-casse", "sans-boundary"],
)
def test_malformed_requests(client, kwargs, status, word):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert word in response.json()["detail"]


def test_oversize_body_with_honest_content_length(client):
    big = b"\xff\xd8" + b"\0" * (CAP + 10)
    response = client.post("/predict", files={"file": ("gros.jpg", big)})
    assert response.status_code == 413
    assert "trop volumineux" in response.json()["detail"]
    assert client.post("/predict", files={"file": ("ok.jpg", JPEG)}).status_code == 200


def _multipart(filename: bytes, data: bytes, boundary: bytes = b"limite") -> tuple[bytes, str]:
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    return body, f"multipart/form-data; boundary={boundary.decode()}"


@pytest.mark.parametrize(
    ("raw_name", "stored"),
    [
        (b"../../etc/passwd.jpg", "passwd.jpg"),
        (b"..\\..\\windows\\win.ini.jpg", "win.ini.jpg"),
        (b"/abs/path/x.jpg", "x.jpg"),
        (b"nul\x00byte.jpg", "nulbyte.jpg"),
        (b"x" * 3000 + b".jpg", "x" * 115 + "….jpg"),
        ("sémaphore-été.jpg".encode(), "sémaphore-été.jpg"),
    ],
    ids=["traversee", "antislash", "absolu", "nul", "tres-long", "accents"],
)
def test_path_traversal_names_are_only_stored_sanitized(client, raw_name, stored):
    body, content_type = _multipart(raw_name, JPEG)
    response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    item = client.get("/predictions", params={"limit": 1}).json()["items"][0]
    assert item["id"] == response.json()["prediction_id"]
    assert item["filename"] == stored


# ----------------------------------------------------------------------------------------- ASGI level
async def _call_asgi(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]):
    """Drive an ASGI app with a body split in *chunks* whatever Content-Length says."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []
    pulled = 0

    async def receive():
        nonlocal pulled
        if pulled < len(messages):
            pulled += 1
            return messages[pulled - 1]
        await asyncio.sleep(3600)  # like a client that went quiet

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers, "query_string": b""}
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent, pulled


def _echo_app():
    async def app(scope, receive, send):
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    return app


@pytest.mark.parametrize(
    "declared",
    [None, b"100"],
    ids=["sans-content-length", "content-length-menteur"],
)
def test_size_cap_counts_bytes_while_reading(declared):
    guarded = BodySizeLimitMiddleware(_echo_app(), max_bytes=1000)
    headers = [(b"content-length", declared)] if declared else [(b"transfer-encoding", b"chunked")]
    chunks = [b"a" * 400] * 50  # 20 kB in 400-byte chunks
    sent, pulled = asyncio.run(_call_asgi(guarded, headers, chunks))
    assert sent[0]["status"] == 413
    assert b"trop volumineux" in sent[-1]["body"].decode().encode()
    assert pulled == 3  # stopped reading at the first chunk past the cap


def test_size_cap_refuses_large_content_length_without_reading():
    guarded = BodySizeLimitMiddleware(_echo_app(), max_bytes=1000)
    sent, pulled = asyncio.run(_call_asgi(guarded, [(b"content-length", b"5000000")], [b"a" * 10]))
    assert sent[0]["status"] == 413 and pulled == 0


def test_size_cap_lets_small_bodies_through():
    guarded = BodySizeLimitMiddleware(_echo_app(), max_bytes=1000)
    sent, _ = asyncio.run(_call_asgi(guarded, [], [b"a" * 500, b"b" * 500]))
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"1000"


def test_size_cap_replaces_fastapi_parse_error_with_413(client):
    """Through the whole app: a lying Content-Length under the cap, a body far over it → 413."""
    app = client.app
    body, content_type = _multipart(b"a.jpg", b"\xff\xd8" + b"\0" * (CAP + 100_000))
    chunks = [body[i : i + 16_384] for i in range(0, len(body), 16_384)]
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"1000")]
    sent, pulled = asyncio.run(_call_asgi(app, headers, chunks))
    assert sent[0]["status"] == 413
    assert "trop volumineux" in sent[-1]["body"].decode()
    assert pulled <= CAP // 16_384 + 2
