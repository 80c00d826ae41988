"""Validation of submitted images: it decodes, and its size and pixel count are within limits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from .errors import ServiceError

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
    digest = hashlib.sha256()
    for chunk in iter(lambda: file.read(1024 * 1024), b""):
        digest.update(chunk)
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
            # Decode the whole stream: a truncated or broken file fails here, not in the
            # worker. A JPEG is decoded at an eighth of its size (`draft`): every block's data
            # is still read and entropy-decoded, which is where a damaged file fails, and the
            # full-size pixels, never used here, are not computed. Other formats ignore it.
            image.draft(image.mode, (1, 1))
            image.load()
    except ServiceError:
        raise
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
    return ImageFacts(format=fmt, width=width, height=height, sha256=digest.hexdigest())
