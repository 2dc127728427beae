"""The app's files, read once at start and kept in memory with their gzip form and an
ETag, so serving one is a dictionary lookup and no request path ever reaches the disk."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = {".html", ".js", ".css", ".svg", ".json", ".webmanifest", ".txt"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def load(root: Path) -> dict[str, Asset]:
    """Every servable file under ``root`` by its path relative to it ("js/app.js")."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in TYPES or path.name.startswith("."):
            continue
        body = path.read_bytes()
        packed = gzip.compress(body, 9, mtime=0) if path.suffix in COMPRESSIBLE else None
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        rel = path.relative_to(root).as_posix()
        assets[rel] = Asset(body, packed, TYPES[path.suffix], etag)
    return assets


def compressed_size(assets: dict[str, Asset], suffixes: tuple[str, ...]) -> int:
    """Bytes sent for these kinds of file to a client that accepts gzip."""
    return sum(
        len(a.gzipped if a.gzipped is not None else a.body)
        for name, a in assets.items()
        if name.endswith(suffixes)
    )
