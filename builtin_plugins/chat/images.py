"""Is it really a PNG, JPEG or WebP picture? Checked by decoding its structure with the
standard library (no imaging library is a dependency):

- PNG: the signature, every chunk's length and CRC, an ``IHDR`` first with sane
  dimensions and bit depth, the ``IDAT`` stream inflated in full (bounded, so a
  decompression bomb is refused) to exactly the size its dimensions need, ``IEND`` last.
- JPEG: SOI, every marker segment's length up to a frame header (SOF) with dimensions and
  components, a scan (SOS), and EOI at the end.
- WebP: the RIFF container's sizes and every chunk, and a VP8, VP8L or VP8X header with
  its signature and dimensions.

Anything else (or any inconsistency) is 422 ``NOT_AN_IMAGE``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from sdk import errors

MAX_AVATAR_BYTES = 1024 * 1024
MAX_SIDE = 8192
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def not_an_image(why: str) -> errors.Problem:
    return errors.ValidationFailed(
        f"not a PNG, JPEG or WebP image: {why}",
        code="NOT_AN_IMAGE",
        errors=[{"path": "/", "message": why}],
    )


def check_image(data: bytes) -> str:
    """The content type of a valid PNG, JPEG or WebP image; 422 otherwise (413 when over
    1 MiB)."""
    if len(data) > MAX_AVATAR_BYTES:
        raise errors.PayloadTooLarge(
            f"the image is {len(data)} bytes; the limit is {MAX_AVATAR_BYTES}",
            code="AVATAR_TOO_LARGE",
        )
    if data.startswith(PNG_SIGNATURE):
        check_png(data)
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        check_jpeg(data)
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        check_webp(data)
        return "image/webp"
    raise not_an_image("unknown format")


# ---- PNG --------------------------------------------------------------------------------
def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``(type, payload)`` of each chunk, CRCs checked, up to and including IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise not_an_image("no PNG signature")
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise not_an_image("the PNG ends inside a chunk (no IEND)")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if length > len(data) or end + 4 > len(data):
            raise not_an_image("a PNG chunk runs past the end")
        payload = data[pos + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(kind + payload) & 0xFFFFFFFF != crc:
            raise not_an_image(f"bad CRC in the PNG chunk {kind!r}")
        yield kind, payload
        pos = end + 4
        if kind == b"IEND":
            return


def check_png(data: bytes) -> None:
    chunks = png_chunks(data)
    kind, ihdr = next(chunks)
    if kind != b"IHDR" or len(ihdr) != 13:
        raise not_an_image("the PNG does not start with IHDR")
    width, height, depth, color, compression, filtering, interlace = struct.unpack(">IIBBBBB", ihdr)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise not_an_image(f"PNG dimensions {width}x{height} out of range")
    if color not in _PNG_DEPTHS or depth not in _PNG_DEPTHS[color]:
        raise not_an_image("unknown PNG colour type or bit depth")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise not_an_image("unknown PNG compression, filter or interlace method")
    bits = depth * _PNG_CHANNELS[color]
    if interlace == 0:
        expected = height * (1 + (width * bits + 7) // 8)
    else:
        expected = 0
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                               (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):  # fmt: skip
            w = (width - x0 + dx - 1) // dx
            h = (height - y0 + dy - 1) // dy
            if w > 0 and h > 0:
                expected += h * (1 + (w * bits + 7) // 8)
    inflater = zlib.decompressobj()
    produced = 0
    seen_idat = ended_idat = False
    palette = False
    for kind, payload in chunks:
        if kind == b"PLTE":
            palette = True
        if kind == b"IDAT":
            if ended_idat:
                raise not_an_image("PNG IDAT chunks are not consecutive")
            seen_idat = True
            try:
                produced += len(inflater.decompress(payload, expected + 1 - produced))
                while inflater.unconsumed_tail and produced <= expected:
                    produced += len(
                        inflater.decompress(inflater.unconsumed_tail, expected + 1 - produced)
                    )
            except zlib.error as exc:
                raise not_an_image(f"the PNG image data does not inflate ({exc})") from None
            if produced > expected:
                raise not_an_image("the PNG image data is larger than its dimensions")
        elif seen_idat:
            ended_idat = True
    if not seen_idat:
        raise not_an_image("the PNG has no image data")
    if color == 3 and not palette:
        raise not_an_image("a palette PNG without a palette")
    if produced != expected or not inflater.eof:
        raise not_an_image("the PNG image data is truncated")


def png_text(data: bytes) -> dict[str, bytes]:
    """The ``tEXt`` chunks of a PNG, keyword -> text (Latin-1 bytes as stored)."""
    out: dict[str, bytes] = {}
    for kind, payload in png_chunks(data):
        if kind == b"tEXt" and b"\0" in payload:
            key, _, text = payload.partition(b"\0")
            out.setdefault(key.decode("latin-1"), text)
        elif kind == b"iTXt" and b"\0" in payload:
            key, _, rest = payload.partition(b"\0")
            if len(rest) < 2:
                continue
            flag, method, rest = rest[0], rest[1], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            if flag:
                if method != 0:
                    continue
                try:
                    text = zlib.decompressobj().decompress(text, 8 * 1024 * 1024)
                except zlib.error:
                    continue
            out.setdefault(key.decode("latin-1"), text)
    return out


def png_with_text(data: bytes, key: str, text: bytes) -> bytes:
    """The PNG with a ``tEXt`` chunk ``key`` (replacing any of that key) before IEND."""
    parts = [PNG_SIGNATURE]
    for kind, payload in png_chunks(data):
        if kind == b"tEXt" and payload.partition(b"\0")[0] == key.encode("latin-1"):
            continue
        if kind == b"IEND":
            parts.append(png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text))
        parts.append(png_chunk(kind, payload))
    return b"".join(parts)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


# ---- JPEG -------------------------------------------------------------------------------
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def check_jpeg(data: bytes) -> None:
    if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise not_an_image("the JPEG does not end with EOI")
    pos = 2
    frame = False
    while True:
        if pos + 4 > len(data):
            raise not_an_image("the JPEG ends before its scan")
        if data[pos] != 0xFF:
            raise not_an_image("bad JPEG marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if marker in (0xD8, 0xD9):
            raise not_an_image("misplaced JPEG SOI/EOI")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise not_an_image("a JPEG segment runs past the end")
        segment = data[pos + 4 : pos + 2 + length]
        if marker in _SOF:
            if len(segment) < 6:
                raise not_an_image("short JPEG frame header")
            _precision, height, width, components = struct.unpack(">BHHB", segment[:6])
            if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and 1 <= components <= 4):
                raise not_an_image("JPEG dimensions or components out of range")
            if len(segment) < 6 + 3 * components:
                raise not_an_image("short JPEG frame header")
            frame = True
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if not frame:
                raise not_an_image("a JPEG scan before its frame header")
            if pos + 2 + length >= len(data) - 2:
                raise not_an_image("the JPEG has no scan data")
            return
        pos += 2 + length


# ---- WebP -------------------------------------------------------------------------------
def check_webp(data: bytes) -> None:
    (riff_size,) = struct.unpack("<I", data[4:8])
    if riff_size + 8 > len(data) or riff_size < 4 + 8:
        raise not_an_image("the WebP container's size is wrong")
    end = 8 + riff_size
    pos = 12
    first = True
    image = False
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        payload = data[pos + 8 : pos + 8 + size]
        if len(payload) != size:
            raise not_an_image("a WebP chunk runs past the end")
        if first and kind not in (b"VP8 ", b"VP8L", b"VP8X"):
            raise not_an_image("the WebP does not start with VP8, VP8L or VP8X")
        first = False
        if kind == b"VP8 ":
            if size < 10 or payload[3:6] != b"\x9d\x01\x2a":
                raise not_an_image("bad VP8 frame header")
            width, height = struct.unpack("<HH", payload[6:10])
            if not (width & 0x3FFF and height & 0x3FFF):
                raise not_an_image("VP8 dimensions are zero")
            image = True
        elif kind == b"VP8L":
            if size < 5 or payload[0] != 0x2F:
                raise not_an_image("bad VP8L signature")
            image = True
        elif kind == b"VP8X":
            if size < 10:
                raise not_an_image("short VP8X header")
        elif kind == b"ANMF":
            image = True
        pos += 8 + size + (size & 1)
    if not image:
        raise not_an_image("the WebP has no image data")
