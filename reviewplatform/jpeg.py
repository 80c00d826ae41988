"""Whether a JPEG file is whole, told from its markers (ITU-T T.81, annex B), without decoding
its pixels: a tenth of the cost of a decode, which is most of what a submit costs.

A decode (libjpeg, as Pillow runs it) refuses a file that is cut off, and a marker or segment
that breaks the stream's structure; damage inside the compressed data it only warns about,
and decodes into grey blocks. This walk refuses the same files: it follows each segment by its
length, the compressed data of each scan to the marker that ends it, checks restart markers'
order, and asks for the end-of-image marker where the image's last scan ends. It refuses a
little more than a decode: a marker where compressed data must go on, which libjpeg would paper
over, is damage too.

It follows the codings that cameras and image libraries write: Huffman, sequential (baseline
or extended) or progressive. For another (arithmetic, lossless, hierarchical) it tells nothing,
and the file is decoded instead.
"""

from __future__ import annotations

import re
import struct

# A marker: 0xFF, any number of fill bytes 0xFF, and a code that is neither 0x00 (a stuffed
# 0xFF in compressed data) nor 0xFF.
_MARKER = re.compile(rb"\xff+([^\x00\xff])")
# In compressed data, the next 0xFF that is not a stuffed byte: a restart marker or the marker
# that ends the scan (possibly after fill bytes).
_UNSTUFFED = re.compile(rb"\xff[^\x00]")

EOI, SOS, DHT, DQT, DRI, DAC, DNL, COM = 0xD9, 0xDA, 0xC4, 0xDB, 0xDD, 0xCC, 0xDC, 0xFE
RST = range(0xD0, 0xD8)
APP = range(0xE0, 0xF0)
# Start-of-frame codes (C4, C8 and CC are DHT, JPG and DAC).
SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
SEQUENTIAL, PROGRESSIVE = frozenset({0xC0, 0xC1}), frozenset({0xC2})
# The segments libjpeg reads or skips: frames, tables (Huffman, arithmetic conditioning,
# quantisation), DNL, the restart interval, scans, APP0 to APP15 and comments. Any other
# (JPG, JPGn, the hierarchical DHP and EXP) it refuses as an unknown marker.
SEGMENTS = SOF | {DHT, DAC, DQT, DNL, DRI, SOS, COM} | set(APP)


class JpegDamaged(ValueError):
    """The file is not a whole JPEG stream; the message says where it breaks."""


def jpeg_stream_check(data: bytes) -> bool:
    """Walk the JPEG stream `data` from its start-of-image to its end-of-image marker.

    True: it is whole (bytes after the end-of-image marker are ignored, as decoders do). False:
    its coding is not one this walk follows; nothing was checked. Raises JpegDamaged.
    """
    if not data.startswith(b"\xff\xd8"):
        raise JpegDamaged("it does not begin with a start-of-image marker")
    end = len(data)
    pos = 2
    frame = 0  # its start-of-frame code, once read
    components: dict[int, tuple[int, int, int]] = {}  # id: (h, v sampling, quantisation table)
    tables: set[tuple[int, int]] = set()  # Huffman tables defined: (0 DC or 1 AC, slot)
    quantisation: set[int] = set()  # quantisation tables defined
    covered = scans = restart_interval = 0
    while True:
        found = _MARKER.match(data, pos)
        if found is None:
            raise JpegDamaged(f"byte {pos}: data where a marker belongs" if pos < end
                              else f"it is cut off after byte {end}")
        code, pos = found.group(1)[0], found.end()
        last_scan_read = frame in SEQUENTIAL and covered == len(components)
        if code == EOI:
            if not scans or (frame in SEQUENTIAL and covered < len(components)):
                raise JpegDamaged("it ends before its image data does")
            return True
        if last_scan_read:
            raise JpegDamaged(f"byte {pos - 2}: a marker where the image should end")
        if code not in SEGMENTS:
            raise JpegDamaged(f"byte {pos - 2}: a marker out of place (0xFF{code:02X})")
        if pos + 2 > end:
            raise JpegDamaged(f"it is cut off after byte {end}")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > end:
            raise JpegDamaged(f"byte {pos - 2}: a segment that runs past the end of the file"
                              if length >= 2 else f"byte {pos - 2}: a segment's length is wrong")
        at, body = pos - 2, data[pos + 2:pos + length]
        pos += length
        if code in SOF:
            if frame:
                raise JpegDamaged(f"byte {at}: a second frame")
            if code not in SEQUENTIAL | PROGRESSIVE:
                return False
            frame, components = code, _frame_components(body, at)
        elif code == DHT:
            tables |= _huffman_tables(body, at)
        elif code == DQT:
            quantisation |= _quantisation_tables(body, at)
        elif code == DRI:
            if len(body) != 2:
                raise JpegDamaged(f"byte {at}: a restart interval's length is wrong")
            (restart_interval,) = struct.unpack(">H", body)
        elif code == SOS:
            if not frame:
                raise JpegDamaged(f"byte {at}: a scan before the frame header")
            covered += _scan_header_check(body, at, frame=frame, components=components,
                                          tables=tables, quantisation=quantisation)
            if frame in SEQUENTIAL and covered > len(components):
                raise JpegDamaged(f"byte {at}: more scans than components")
            scans += 1
            pos = _scan_end(data, pos, restart_interval)


def _frame_components(body: bytes, at: int) -> dict[int, tuple[int, int, int]]:
    """A frame header's components, by id: (horizontal and vertical sampling, quantisation
    table), once its length, precision, size and sampling factors are checked as libjpeg checks
    them (1 to 4, each a whole fraction of the largest)."""
    count = body[5] if len(body) > 5 else 0
    if not count or len(body) != 6 + 3 * count:
        raise JpegDamaged(f"byte {at}: a frame header's length is wrong")
    precision, height, width = struct.unpack_from(">BHH", body)
    if precision != 8 or not height or not width:
        raise JpegDamaged(f"byte {at}: a frame header with a wrong precision or size")
    components = {}
    for i in range(count):
        component, sampling, table = body[6 + 3 * i:9 + 3 * i]
        if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 15 <= 4) or table > 3:
            raise JpegDamaged(f"byte {at}: a component's sampling or table is out of range")
        components[component] = (sampling >> 4, sampling & 15, table)
    if len(components) != count:
        raise JpegDamaged(f"byte {at}: a component id given twice")
    widest = max(h for h, _, _ in components.values())
    tallest = max(v for _, v, _ in components.values())
    if any(widest % h or tallest % v for h, v, _ in components.values()):
        raise JpegDamaged(f"byte {at}: sampling factors that are not whole fractions")
    return components


def _quantisation_tables(body: bytes, at: int) -> set[int]:
    """The slots a DQT segment defines, its tables' precision and length checked."""
    defined, pos = set(), 0
    while pos < len(body):
        precision, slot = body[pos] >> 4, body[pos] & 15
        size = 1 + 64 * (precision + 1)
        if precision > 1 or slot > 3 or pos + size > len(body):
            raise JpegDamaged(f"byte {at}: a quantisation table is malformed")
        defined.add(slot)
        pos += size
    return defined


def _huffman_tables(body: bytes, at: int) -> set[tuple[int, int]]:
    """The tables a DHT segment defines, as (class, slot), each checked as libjpeg checks it:
    its counts and symbols fill the segment, and its code lengths make a prefix code."""
    defined, pos = set(), 0
    while pos < len(body):
        if pos + 17 > len(body):
            raise JpegDamaged(f"byte {at}: a Huffman table's length is wrong")
        kind, slot = body[pos] >> 4, body[pos] & 15
        counts = body[pos + 1:pos + 17]
        symbols = body[pos + 17:pos + 17 + sum(counts)]
        if kind > 1 or slot > 3 or sum(counts) > 256 or len(symbols) != sum(counts):
            raise JpegDamaged(f"byte {at}: a Huffman table is malformed")
        code = 0
        for bits, count in enumerate(counts, start=1):
            code += count
            if code > 1 << bits:
                raise JpegDamaged(f"byte {at}: a Huffman table's codes do not fit")
            code <<= 1
        if kind == 0 and max(symbols, default=0) > 15:
            raise JpegDamaged(f"byte {at}: a DC Huffman table with a symbol out of range")
        defined.add((kind, slot))
        pos += 17 + len(symbols)
    return defined


def _scan_header_check(body: bytes, at: int, *, frame: int,
                       components: dict[int, tuple[int, int, int]],
                       tables: set[tuple[int, int]], quantisation: set[int]) -> int:
    """Check a scan header against the frame and the tables defined so far, as libjpeg does;
    returns how many components the scan covers."""
    count = body[0] if body else 0
    if not 1 <= count <= 4 or len(body) != 4 + 2 * count:
        raise JpegDamaged(f"byte {at}: a scan header's length is wrong")
    start, stop, approximation = body[1 + 2 * count:]
    first_dc = frame in SEQUENTIAL or (start == 0 and approximation >> 4 == 0)
    ac = frame in SEQUENTIAL or start > 0
    high, low = approximation >> 4, approximation & 15
    if frame in PROGRESSIVE and (start > stop or stop > 63 or (start == 0) != (stop == 0)
                                 or (start > 0 and count != 1) or low > 13
                                 or (high and low != high - 1)):
        raise JpegDamaged(f"byte {at}: a progressive scan's parameters are out of range")
    named = [body[1 + 2 * i] for i in range(count)]
    if len(set(named)) != count or not set(named) <= components.keys():
        raise JpegDamaged(f"byte {at}: a scan names a component twice, or one the frame has "
                          f"not")
    if count > 1 and sum(components[c][0] * components[c][1] for c in named) > 10:
        raise JpegDamaged(f"byte {at}: a scan's blocks per unit are over libjpeg's 10")
    for i, component in enumerate(named):
        selectors = body[2 + 2 * i]
        if components[component][2] not in quantisation:
            raise JpegDamaged(f"byte {at}: a component's quantisation table is not defined")
        if (first_dc and (0, selectors >> 4) not in tables) or (
                ac and (1, selectors & 15) not in tables):
            raise JpegDamaged(f"byte {at}: a scan uses a Huffman table not defined")
    return count


def _scan_end(data: bytes, pos: int, restart_interval: int) -> int:
    """Where the compressed data that begins at `pos` ends: at the first marker that is not a
    restart marker. Restart markers must come in their order (RST0 to RST7, again and again),
    and only where a restart interval was set."""
    expected = 0
    while True:
        found = _UNSTUFFED.search(data, pos)
        if found is None:
            raise JpegDamaged(f"it is cut off after byte {len(data)}, inside compressed data")
        code = data[found.start() + 1]
        if code not in RST:
            return found.start()
        if not restart_interval or code != RST[expected]:
            raise JpegDamaged(f"byte {found.start()}: a restart marker out of place "
                              f"(0xFF{code:02X})")
        expected = (expected + 1) % len(RST)
        pos = found.end()
