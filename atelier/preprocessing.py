"""Le prétraitement unique des images : décoder → RVB → redimensionner → tableau ``uint8``.

L'entraînement, l'évaluation et l'API appellent tous :func:`load_image`. Une image est donc vue
exactement de la même façon par le modèle pendant l'apprentissage et une fois déployé.

La normalisation des pixels (division par 255) n'est pas faite ici : elle est une couche du modèle
(``Rescaling``), si bien qu'un modèle enregistré emporte son propre prétraitement numérique.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .memory import release_free_memory

#: Side of the square images the workshop's models take, in pixels.
IMAGE_SIZE = 64

#: Formats accepted everywhere (sniffed from the bytes by Pillow, never from a file name).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")

#: Largest image accepted, in pixels actually decoded (width × height, after JPEG's reduce-on-load), checked
#: from the header before decoding. The model sees 64×64 pixels: a 4K screenshot (3840×2160, 8.3 Mpx) is already
#: 2,000 times more than it uses, and decoding it costs ≈ 25 MB (RGB) plus the conversions. Beyond that a file is
#: either a mistake or a decompression bomb (a 84 KB PNG of 5000×5000 costs ≈ 75 MB): refused with a 413. Photos
#: from a phone (12 Mpx JPEG) still pass, because a JPEG is decoded at 1/8 of its size (``draft``).
MAX_PIXELS = 3840 * 2160

#: Pixels that may be decoding at the same time in one process (:class:`DecodeBudget` of the API): two
#: worst-case images, ≈ 150 MB at most, whatever the number of simultaneous uploads.
DECODE_BUDGET_PIXELS = 2 * MAX_PIXELS

#: Images up to this many pixels decode without taking the budget (the usual 64×64 … 512×512 tiles: the
#: /predict hot path never waits for a lock); 40 of them at once cost ≈ 30 MB.
SMALL_IMAGE_PIXELS = 512 * 512

#: A JPEG is decoded in passes (*scans*) over the whole image: one for an ordinary JPEG, about ten for a progressive
#: one. A hostile file can repeat an empty scan thousands of times in a few KiB (progressive, or sequential with one
#: colour per scan, or inside an MPO), and each costs a pass over every block of the full-size image (measured:
#: 1,000 scans of a 4096×4096 image in 128 KiB take 11.7 s; 64 of them 0.8 s). Refused before decoding (413): more
#: than ``MAX_JPEG_SCANS`` scans, or more than ``MAX_JPEG_SCAN_PIXELS`` scans × pixels of the full-size image (a
#: 24 Mpx photo with 40 scans still passes; a 108 Mpx progressive photo does not).
MAX_JPEG_SCANS = 64
MAX_JPEG_SCAN_PIXELS = 64 * 4096 * 4096

#: Pillow's names for JPEG files: an MPO (several JPEG frames, some cameras) decodes its first frame as a JPEG.
JPEG_FORMATS = ("JPEG", "MPO")

#: Longest wait for the decode budget before an image is refused (503: the server is busy decoding).
DECODE_WAIT_S = 30.0

ImageSource = bytes | bytearray | memoryview | str | Path | BinaryIO | Image.Image


class ImageError(ValueError):
    """Une image ne peut pas être utilisée ; le message, en français, dit pourquoi."""


class EmptyImageError(ImageError):
    """Le fichier est vide."""


class UnsupportedImageFormatError(ImageError):
    """Le contenu n'est pas une image dans un format accepté."""


class ImageTooLargeError(ImageError):
    """L'image a trop de pixels (protection contre les « bombes de décompression »)."""


class TooManyScansError(ImageTooLargeError):
    """JPEG dont le décodage coûterait trop de passes sur l'image (protection contre un déni de service)."""


class CorruptImageError(ImageError):
    """Le format est reconnu mais l'image est illisible (tronquée, abîmée)."""


class DecodeBusyError(RuntimeError):
    """Trop de grandes images sont en cours de décodage : réessayer dans un instant (503 pour l'API)."""


class DecodeBudget:
    """Borne les pixels en cours de décodage dans le processus (un sémaphore pondéré par le nombre de pixels).

    Une grande image réserve ses pixels le temps de son décodage et de son redimensionnement ; au-delà de
    ``max_pixels`` réservés, les suivantes attendent (au plus ``wait_s`` secondes, puis
    :class:`DecodeBusyError`). Une image plus grande que tout le budget le prend en entier, seule. Les petites
    images (``small_pixels``) passent sans verrou.
    """

    def __init__(
        self,
        max_pixels: int = DECODE_BUDGET_PIXELS,
        *,
        small_pixels: int = SMALL_IMAGE_PIXELS,
        wait_s: float = DECODE_WAIT_S,
    ) -> None:
        if max_pixels < 1:
            raise ValueError("max_pixels doit être au moins 1.")
        self.max_pixels = int(max_pixels)
        self.small_pixels = int(small_pixels)
        self.wait_s = float(wait_s)
        self.in_use = 0
        #: Highest number of pixels reserved at the same time (for the tests and the curious).
        self.peak = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        if pixels <= self.small_pixels:
            yield
            return
        weight = min(int(pixels), self.max_pixels)
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.in_use + weight > self.max_pixels:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    if self.in_use + weight <= self.max_pixels:
                        break
                    raise DecodeBusyError(
                        "Le serveur décode déjà plusieurs grandes images : réessayez dans un instant, ou "
                        "envoyez une image plus petite."
                    )
            self.in_use += weight
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= weight
                self._cond.notify_all()
            # The freed blocks would otherwise stay in this thread's malloc arena (≈ 2 GB kept after 40
            # parallel uploads, measured): give them back to the system (a few ms, large images only).
            release_free_memory()


def _formats_text(formats: tuple[str, ...]) -> str:
    names = [{"WEBP": "WebP"}.get(f, f) for f in formats]
    return ", ".join(names[:-1]) + " ou " + names[-1] if len(names) > 1 else names[0]


def _too_large(width: int, height: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"Image trop grande : {width}×{height} pixels ; le maximum accepté est {max_pixels:_} pixels.".replace(
            "_", "\u202f"
        )
    )


def _open_header(
    source: ImageSource, *, max_pixels: int, formats: tuple[str, ...], draft_size: int | None
) -> Image.Image:
    """Read the header only (Pillow is lazy), apply JPEG's reduce-on-load and check the pixel cap."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.stat().st_size == 0:
            raise EmptyImageError(f"Le fichier {path.name} est vide : il ne contient aucune image.")
        source = path.read_bytes()
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise EmptyImageError("Le fichier est vide : il ne contient aucune image.")
            source = io.BytesIO(bytes(source))
        try:
            with warnings.catch_warnings():
                # Pillow warns above ~89 Mpx; our own, lower cap (max_pixels) is checked just below.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(source, formats=list(formats))
        except Image.DecompressionBombError:  # header beyond 2 × Image.MAX_IMAGE_PIXELS
            raise ImageTooLargeError(
                f"Image trop grande : le maximum accepté est {max_pixels:_} pixels.".replace("_", "\u202f")
            ) from None
        except UnidentifiedImageError:
            raise UnsupportedImageFormatError(
                "Format d'image non pris en charge : envoyez une image "
                f"{_formats_text(formats)} (le contenu du fichier a été examiné, pas son nom)."
            ) from None
        except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error… for damaged headers
            raise CorruptImageError(f"Image illisible : son en-tête est abîmé (détail technique : {exc}).") from None
        image.info["scans"] = _check_scans(image)
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImageError("Image illisible : elle n'a aucun pixel.")
    if draft_size and image.format in JPEG_FORMATS and getattr(image, "tile", None):
        # Reduce-on-load: a JPEG decodes at 1/2, 1/4 or 1/8 scale directly (far less memory and work);
        # the cap below applies to the pixels really decoded.
        try:
            image.draft(image.mode, (draft_size, draft_size))
        except Exception as exc:
            raise CorruptImageError(f"Image JPEG illisible (détail technique : {exc}).") from None
    decoded_width, decoded_height = image.size
    if decoded_width * decoded_height > max_pixels:
        raise _too_large(width, height, max_pixels)
    return image


def jpeg_scans(image: Image.Image) -> int:
    """Nombre de passes (*scans*) de l'image principale d'un JPEG ouvert par Pillow (0 pour un autre format),
    compté dans ses octets sans rien décoder, en les lisant comme libjpeg : chaque segment est sauté d'après sa
    longueur (vignette EXIF et commentaires compris), les données compressées sont parcourues jusqu'au marqueur
    suivant, chaque marqueur SOS (``FF DA``) ouvre une passe, et la fin de l'image (EOI) arrête le compte. Un
    fichier qui ne se lit pas ainsi compte toutes les séquences ``FF DA`` de ses octets : le compte peut être
    trop grand, jamais trop petit. Une image déjà ouverte par l'appelant (sans ``fp``) compte 0."""
    if image.format not in JPEG_FORMATS:
        return 0
    fp = getattr(image, "fp", None)
    if fp is None:
        return 0
    position = fp.tell()
    try:
        fp.seek(0)
        data = fp.getvalue() if isinstance(fp, io.BytesIO) else fp.read()
    finally:
        fp.seek(position)
    return _count_scans(data)


_NO_LENGTH = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0-7: markers without a length field


def _count_scans(data: bytes) -> int:
    scans, position, size = 0, 2, len(data)  # after SOI
    while (marker := data.find(b"\xff", position)) >= 0:  # libjpeg skips any other byte between segments
        code_at = marker + 1
        while code_at < size and data[code_at] == 0xFF:  # fill bytes
            code_at += 1
        if code_at >= size:
            break
        code, position = data[code_at], code_at + 1
        if code == 0x00 or code in _NO_LENGTH:  # a stuffed data byte, or a marker without length
            continue
        if code == 0xD9 and scans:  # EOI: the end of the main image (an MPO's other frames follow)
            return scans
        if code in (0xD8, 0xD9):  # SOI or EOI before any scan: not read as libjpeg does here
            break
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2 or position + length > size:
            break
        scans += code == 0xDA
        position += length
    return max(scans, data.count(b"\xff\xda"))


def _check_scans(image: Image.Image) -> int:
    scans = jpeg_scans(image)
    if scans > MAX_JPEG_SCANS or scans * image.width * image.height > MAX_JPEG_SCAN_PIXELS:
        raise TooManyScansError(
            f"JPEG refusé : {scans} passes sur {image.width}×{image.height} pixels, son décodage coûterait trop "
            f"cher. Au plus {MAX_JPEG_SCANS} passes sont acceptées, et moins pour une très grande image (au plus "
            f"{MAX_JPEG_SCANS} passes × 4096 × 4096 pixels) ; un JPEG ordinaire en a une, un JPEG progressif une "
            "dizaine. Enregistrez l'image en JPEG standard (non progressif), plus petite, ou en PNG."
        )
    return scans


def decode_cost(image: Image.Image) -> int:
    """Pixels que coûte le décodage d'une image ouverte par :func:`read_header`, pour :class:`DecodeBudget` : ceux
    de l'image décodée, sauf pour un JPEG à plusieurs passes (progressif…), que libjpeg garde en entier, à sa
    taille d'origine, le temps de le décoder (mesuré : + 578 Mo pour un fichier de 565 octets annonçant
    10 000 × 10 000 pixels, décodé en 1 250 × 1 250)."""
    return announced_pixels(image) if image.info.get("scans", 0) > 1 else image.width * image.height


def announced_pixels(image: Image.Image) -> int:
    """Pixels de l'image *annoncés par le fichier*, avant le décodage réduit d'un JPEG (``draft``)."""
    # Reduce-on-load (draft) divides the size by its scale, kept by Pillow in decoderconfig.
    scale = (getattr(image, "decoderconfig", None) or (1,))[0]
    return image.width * scale * image.height * scale


def _decode(image: Image.Image) -> Image.Image:
    """Decode the pixels (first frame), apply the EXIF orientation and convert to 8-bit RGB."""
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))
    except Exception as exc:  # Pillow raises many types for damaged pixel data
        raise CorruptImageError(
            f"Image {image.format or ''} illisible ou tronquée : le fichier est incomplet ou abîmé "
            f"(détail technique : {exc})."
        ) from None


def open_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
    draft_size: int | None = None,
) -> Image.Image:
    """Ouvre une image et la renvoie décodée, en RVB 8 bits, orientée selon ses données EXIF.

    *source* peut être des octets, un chemin, un fichier ouvert ou une image Pillow. Le format est
    reconnu d'après le contenu (jamais d'après le nom). Les modes CMJN (CMYK, y compris les JPEG
    Adobe inversés), niveaux de gris, palette, transparence et 16 bits deviennent un RVB correct.
    ``draft_size`` : un JPEG est décodé directement à une échelle réduite (1/2, 1/4 ou 1/8) qui garde au
    moins ce côté.

    Lève une :class:`ImageError` (message en français) si l'image est vide, dans un format non
    accepté, trop grande ou illisible.
    """
    return _decode(_open_header(source, max_pixels=max_pixels, formats=formats, draft_size=draft_size))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over black."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit or 32-bit grey: scale to 0–255 instead of clipping (Pillow's convert would clip).
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            scale = 1.0 if values.max(initial=0) <= 1.0 else 1 / 255
            values = values / scale if scale != 1.0 else values * 255
        else:
            values = values / 257.0 if values.max(initial=0) > 255 else values
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK (Adobe-inverted CMYK/YCCK are handled by Pillow's JPEG decoder), L, 1, P, YCbCr, LAB, HSV.
    return image.convert("RGB")


def resize_image(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Recadre l'image au centre en carré puis la redimensionne en ``size × size`` pixels.

    C'est la seule fonction de redimensionnement de l'atelier : les images de tailles différentes
    (64×64, 256×256, photos rectangulaires) sont toutes ramenées à la même échelle de la même façon.
    """
    if image.size == (size, size):
        return image
    return ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)


def read_header(
    source: ImageSource,
    size: int = IMAGE_SIZE,
    *,
    max_pixels: int = MAX_PIXELS,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> Image.Image:
    """Lit seulement l'en-tête de l'image (Pillow ne décode rien encore) et fait les vérifications de
    :func:`load_image` qui n'ont pas besoin des pixels : fichier vide, format, taille maximale (pour un JPEG,
    celle du décodage réduit qui garde au moins ``size`` pixels de côté).

    ``image.size`` dit alors combien de pixels le décodage coûtera ; ``load_image(image, size, …)`` la décode.
    Lève une :class:`ImageError` comme :func:`load_image`.
    """
    return _open_header(source, max_pixels=max_pixels, formats=formats, draft_size=size)


def quick_to_decode(image: Image.Image, max_pixels: int) -> bool:
    """Dit si une image ouverte par :func:`read_header` se décode en un temps borné par ``max_pixels`` : un JPEG
    **à une seule passe** (ni progressif, ni une couleur par passe) dont la taille *annoncée par le fichier*
    (:func:`announced_pixels`) est d'au plus ``max_pixels``.

    Le décodage réduit d'un JPEG produit moins de pixels mais lit quand même tout le fichier ; un JPEG
    progressif fait une passe sur toute l'image par *scan* (jusqu'à :data:`MAX_JPEG_SCANS` acceptés, un
    fichier qui en a plus est refusé dès l'en-tête) ; les autres formats peuvent cacher des blocs compressés
    dans leur en-tête.
    """
    return image.format == "JPEG" and image.info.get("scans") == 1 and announced_pixels(image) <= max_pixels


def load_image(
    source: ImageSource,
    size: int = IMAGE_SIZE,
    *,
    max_pixels: int = MAX_PIXELS,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
    budget: DecodeBudget | None = None,
) -> np.ndarray:
    """Renvoie l'image sous forme de tableau ``uint8`` de forme ``(size, size, 3)``.

    C'est *le* prétraitement de l'atelier : décodage comme Pillow (CMJN, gris, palette, 16 bits…),
    conversion en RVB, recadrage carré et redimensionnement. Lève une :class:`ImageError` avec un
    message en français si l'image ne convient pas.

    ``budget`` (l'API) : une grande image réserve ses pixels dans ce :class:`DecodeBudget` le temps de son
    décodage (:class:`DecodeBusyError` si elle attend trop) ; le résultat est le même avec ou sans.
    """
    image = read_header(source, size, max_pixels=max_pixels, formats=formats)
    with budget.reserve(decode_cost(image)) if budget is not None else contextlib.nullcontext():
        return np.asarray(resize_image(_decode(image), size), dtype=np.uint8)


def to_model_input(images) -> np.ndarray:
    """Empile une ou plusieurs images ``uint8`` en un lot ``float32`` de forme ``(n, h, w, 3)``.

    Les valeurs restent entre 0 et 255 : la couche ``Rescaling`` du modèle les ramène entre 0 et 1.
    """
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[np.newaxis]
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"Un lot d'images RVB de forme (n, h, l, 3) est attendu, reçu {batch.shape}.")
    return batch.astype(np.float32)
