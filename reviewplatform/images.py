"""Validation of submitted images: a format the platform accepts, whole (a JPEG by its markers,
`jpeg`; any other by decoding it), its size and pixel count within limits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from .errors import ServiceError
from .jpeg import JpegDamaged, jpeg_stream_check

# How a format is written for people (Pillow's names are upper case).
FORMAT_NAMES = {"WEBP": "WebP"}


def accepted_in_words() -> str:
    """The accepted formats as people write them: "JPEG, PNG, WebP"."""
    return ", ".join(FORMAT_NAMES.get(f, f) for f in sorted(settings.ALLOWED_IMAGE_FORMATS))


@dataclass(frozen=True)
class ImageFacts:
    format: str
    width: int
    height: int
    sha256: str


def image_inspect(file: IO[bytes], *, size: int) -> ImageFacts:
    """Check that `file` is an image the platform accepts; raise ServiceError naming why not."""
    if size == 0:
        raise ServiceError("the image file is empty", field="image")
    if size > settings.MAX_IMAGE_BYTES:
        raise ServiceError(
            f"the image is {size} bytes; the limit is {settings.MAX_IMAGE_BYTES}", field="image"
        )
    file.seek(0)
    data = file.read()  # at most MAX_IMAGE_BYTES
    file.seek(0)
    try:
        with Image.open(file) as image:
            fmt, (width, height) = image.format or "", image.size
            if fmt not in settings.ALLOWED_IMAGE_FORMATS:
                raise ServiceError(f"the image is a {FORMAT_NAMES.get(fmt, fmt)}, a format the "
                                   f"platform does not accept (accepted: {accepted_in_words()})",
                                   field="image")
            if width * height > settings.MAX_IMAGE_PIXELS:
                raise ServiceError(f"the image has {width * height} pixels; the limit is "
                                   f"{settings.MAX_IMAGE_PIXELS}", field="image")
            if min(width, height) < settings.MIN_IMAGE_SIDE:
                raise ServiceError(f"the image is {width}x{height}; each side must be at least "
                                   f"{settings.MIN_IMAGE_SIDE} pixels", field="image")
            # A cut-off or broken file fails here, not in the worker. A JPEG's markers tell
            # (`jpeg`): a tenth of the cost of decoding it. Another format, or a JPEG coding
            # the walk does not follow, is decoded, a JPEG at an eighth of its size (`draft`:
            # every block's data is still read, the full-size pixels are not computed).
            if not (fmt == "JPEG" and jpeg_stream_check(data)):
                image.draft(image.mode, (1, 1))
                image.load()
    except ServiceError:
        raise
    except JpegDamaged as exc:
        raise ServiceError(f"the image is damaged or cut off: {exc}", field="image") from exc
    except Image.DecompressionBombError as exc:
        raise ServiceError(f"the image has more pixels than the limit of "
                           f"{settings.MAX_IMAGE_PIXELS}", field="image") from exc
    except UnidentifiedImageError as exc:
        raise ServiceError(f"the file is not an image the platform can read (accepted: "
                           f"{accepted_in_words()})", field="image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow's message names its internals (a truncated stream, a broken chunk): not shown.
        raise ServiceError("the image is damaged or cut off: it could not be decoded",
                           field="image") from exc
    finally:
        file.seek(0)
    return ImageFacts(format=fmt, width=width, height=height,
                      sha256=hashlib.sha256(data).hexdigest())
