"""The JPEG walk (reviewplatform.jpeg) that stands in for decoding a submitted JPEG: it takes
every whole file libjpeg decodes, in each coding Pillow writes, and refuses every file libjpeg
refuses, on a seeded corpus of damaged copies as well as on each kind of damage alone."""

from __future__ import annotations

import io
import random
import struct

import pytest
from PIL import Image

from reviewplatform.jpeg import JpegDamaged, jpeg_stream_check


def photo(size: tuple[int, int] = (160, 120), seed: int = 0) -> Image.Image:
    """A gradient with noise: compressed data with many 0xFF bytes to stuff."""
    noise = Image.effect_noise(size, 40 + seed)
    gradient = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (noise, gradient, Image.eval(noise, lambda v: 255 - v)))


def encoded(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


CODINGS = {
    "baseline 4:2:0": {"quality": 85},
    "baseline 4:4:4": {"quality": 90, "subsampling": 0},
    "baseline 4:2:2": {"quality": 90, "subsampling": 1},
    "optimised tables": {"quality": 75, "optimize": True},
    "progressive": {"quality": 80, "progressive": True},
    "restart markers every 4 blocks": {"quality": 80, "restart_marker_blocks": 4},
    "progressive with restart markers": {"progressive": True, "restart_marker_rows": 1},
    "comment": {"comment": b"camera-7"},
    "ICC profile": {"icc_profile": b"\0" * 600},
}


def whole_files() -> dict[str, bytes]:
    files = {name: encoded(photo(seed=i), **options)
             for i, (name, options) in enumerate(CODINGS.items())}
    files["grayscale"] = encoded(photo().convert("L"))
    files["CMYK"] = encoded(photo().convert("CMYK"))
    exif = Image.Exif()
    exif[0x0110] = "camera-7"  # Model
    files["EXIF"] = encoded(photo(), exif=exif)
    baseline = files["baseline 4:2:0"]
    files["bytes after the end"] = baseline + b"trailing bytes some writers leave"
    last = baseline.rindex(b"\xff\xd9")
    files["fill bytes before the end"] = baseline[:last] + b"\xff" * 5 + baseline[last:]
    return files


def libjpeg_refuses(data: bytes) -> bool:
    """What decoding told before: Pillow opens the file and libjpeg decodes it (at 1/8)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft(image.mode, (1, 1))
            image.load()
    except Exception:  # any refusal counts
        return True
    return False


def walk_refuses(data: bytes) -> bool:
    """What intake does now: Pillow opens the file, then the walk (or a decode, for a coding
    it does not follow)."""
    try:
        Image.open(io.BytesIO(data)).close()
        if not jpeg_stream_check(data):
            return libjpeg_refuses(data)
    except Exception:  # any refusal counts
        return True
    return False


@pytest.mark.parametrize("name", list(whole_files()))
def test_it_takes_a_whole_file_in_each_coding(name):
    data = whole_files()[name]

    assert not libjpeg_refuses(data)
    assert jpeg_stream_check(data) is True


def segment(data: bytes, code: int) -> int:
    """Where the first segment with this marker code begins."""
    return data.index(bytes([0xFF, code]))


def scan_data(data: bytes) -> int:
    """Where the first scan's compressed data begins."""
    at = segment(data, 0xDA)
    return at + 2 + struct.unpack_from(">H", data, at + 2)[0]


def replaced(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


BASELINE = whole_files()["baseline 4:2:0"]
RESTARTS = whole_files()["restart markers every 4 blocks"]
FIRST_RST = RESTARTS.index(b"\xff\xd0", scan_data(RESTARTS))


@pytest.mark.parametrize(("damage", "data", "says"), [
    ("no start-of-image marker", BASELINE[2:], "does not begin with a start-of-image"),
    ("cut inside a header", BASELINE[:segment(BASELINE, 0xDB) + 30], "runs past the end"),
    ("cut inside compressed data", BASELINE[:len(BASELINE) // 2], "cut off after byte"),
    ("no end-of-image marker", BASELINE[:-2], "cut off after byte"),
    ("a run of 0xFF inside compressed data",
     replaced(BASELINE, len(BASELINE) // 2, b"\xff" * 300), "where the image should end"),
    ("a table inside a baseline scan's data",
     replaced(BASELINE, len(BASELINE) // 2, b"\xff\xc4\x00\x02"), "where the image should end"),
    ("a restart marker without a restart interval",
     replaced(BASELINE, len(BASELINE) // 2, b"\xff\xd0"), "restart marker out of place"),
    ("restart markers out of order", replaced(RESTARTS, FIRST_RST, b"\xff\xd3"),
     "restart marker out of place"),
    ("an unknown marker", replaced(BASELINE, segment(BASELINE, 0xDB), b"\xff\xc8"),
     "marker out of place"),
    ("a second start-of-image", replaced(BASELINE, segment(BASELINE, 0xDB), b"\xff\xd8"),
     "marker out of place"),
    ("data where a marker belongs", replaced(BASELINE, segment(BASELINE, 0xDB), b"\x00\x00"),
     "data where a marker belongs"),
    ("a segment length under 2", replaced(BASELINE, segment(BASELINE, 0xDB) + 2, b"\x00\x01"),
     "length is wrong"),
    ("a scan before the frame header",
     replaced(BASELINE, segment(BASELINE, 0xC0), b"\xff\xfe"), "scan before the frame"),
    ("a Huffman table whose codes do not fit",
     replaced(BASELINE, segment(BASELINE, 0xC4) + 5, b"\x05"), "Huffman table"),
    ("a scan using a Huffman table never defined",
     replaced(BASELINE, scan_data(BASELINE) - 8, b"\x33"), "not defined"),
    ("a component's quantisation table never defined",
     replaced(BASELINE, segment(BASELINE, 0xC0) + 12, b"\x03"), "not defined"),
    ("sampling factors that are not whole fractions",
     replaced(BASELINE, segment(BASELINE, 0xC0) + 14, b"\x31"), "whole fractions"),
    ("a scan naming a component twice",
     replaced(BASELINE, scan_data(BASELINE) - 7, b"\x01"), "names a component twice"),
])
def test_it_refuses_each_kind_of_damage_saying_where(damage, data, says):
    with pytest.raises(JpegDamaged, match=says):
        jpeg_stream_check(data)
    assert walk_refuses(data)


def test_it_refuses_a_file_cut_anywhere():
    for cut in range(2, len(BASELINE) - 1, 97):
        with pytest.raises(JpegDamaged):
            jpeg_stream_check(BASELINE[:cut])


def test_it_leaves_a_coding_it_does_not_follow_to_the_decoder():
    arithmetic = replaced(BASELINE, segment(BASELINE, 0xC0), b"\xff\xc9")  # SOF9
    lossless = replaced(BASELINE, segment(BASELINE, 0xC0), b"\xff\xc3")  # SOF3

    assert jpeg_stream_check(arithmetic) is False
    assert jpeg_stream_check(lossless) is False


def damaged_copies(sources: list[bytes], count: int, seed: int) -> list[bytes]:
    """Seeded damage of every kind, a third of it in the headers (where a single wrong byte
    is most likely to break a decode)."""
    rng = random.Random(seed)
    copies = []
    for _ in range(count):
        data = bytearray(rng.choice(sources))
        headers = scan_data(bytes(data)) + 4
        kind = rng.choice(["cut", "flip", "header flip", "header byte", "overwrite", "zeros",
                           "0xFF run", "insert", "delete"])
        at = rng.randrange(2, headers) if kind.startswith("header") else rng.randrange(
            2, len(data) - 1)
        if kind == "cut":
            del data[at:]
        elif kind in ("flip", "header flip"):
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "header byte":
            data[at] = rng.randrange(256)
        elif kind == "overwrite":
            data[at:at + 60] = rng.randbytes(len(data[at:at + 60]))
        elif kind == "zeros":
            data[at:at + 60] = bytes(len(data[at:at + 60]))
        elif kind == "0xFF run":
            data[at:at + 60] = b"\xff" * len(data[at:at + 60])
        elif kind == "insert":
            data[at:at] = rng.randbytes(rng.randrange(1, 20))
        else:
            del data[at:at + rng.randrange(1, 60)]
        copies.append(bytes(data))
    return copies


def test_it_refuses_every_damaged_copy_libjpeg_refuses():
    sources = list(whole_files().values())
    copies = damaged_copies(sources, 3000, seed=11)

    refused_by_libjpeg = [data for data in copies if libjpeg_refuses(data)]
    let_through = [data for data in refused_by_libjpeg if not walk_refuses(data)]

    assert let_through == []
    assert len(refused_by_libjpeg) > 600  # a good part of the corpus is damage libjpeg sees
