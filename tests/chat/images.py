"""Small real pictures and Character Cards for the character tests, built with the
standard library as an image editor or SillyTavern would write them."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any


def chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(width: int = 4, height: int = 3, text: dict[str, bytes] | None = None) -> bytes:
    """An RGBA PNG (a gradient), with ``tEXt`` chunks when asked."""
    rows = b"".join(
        b"\0"
        + bytes((x * 40 % 256, y * 60 % 256, 128, 255)[i] for x in range(width) for i in range(4))
        for y in range(height)
    )
    out = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    )
    for key, value in (text or {}).items():
        out += chunk(b"tEXt", key.encode("latin-1") + b"\0" + value)
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def jpeg() -> bytes:
    """A baseline JPEG's structure: SOI, DQT, SOF0 (1x1, one component), DHT, SOS, scan
    data, EOI."""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 1, 1, 1) + b"\x01\x11\x00"
    dht = b"\xff\xc4" + struct.pack(">H", 20) + b"\x00" + bytes([0, 1] + [0] * 14) + b"\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\x00\x3f\x00" + b"\xff\xd9"


def webp() -> bytes:
    """A lossless WebP's container and VP8L header (1x1)."""
    payload = b"\x2f\x00\x00\x00\x00" + b"\x00" * 5
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def card(name: str = "Seraphina", **data: Any) -> dict[str, Any]:
    """A Character Card V2 as SillyTavern exports it."""
    fields: dict[str, Any] = {
        "name": name,
        "description": "{{char}} is a guardian of the forest glade, gentle and wise.",
        "personality": "kind, protective, speaks softly",
        "scenario": "{{user}} wakes up in {{char}}'s glade after a storm.",
        "first_mes": "*{{char}} kneels beside you.* You're awake, {{user}}. How do you feel?",
        "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I am {{char}}, keeper of "
        "this glade.",
        "creator_notes": "A gentle forest guardian.",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["*{{char}} smiles.* Welcome back."],
        "tags": ["fantasy", "guardian"],
        "creator": "someone",
        "character_version": "1.0",
        "extensions": {"talkativeness": "0.5", "fav": False},
    }
    fields.update(data)
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": fields}


def card_png(doc: dict[str, Any], key: str = "chara") -> bytes:
    """A PNG card: the picture with the card base64-encoded in a ``chara`` tEXt chunk."""
    encoded = base64.b64encode(json.dumps(doc).encode())
    return png(8, 8, text={key: encoded})
