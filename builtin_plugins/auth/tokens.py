"""Access tokens (HS256 JWTs), refresh tokens (rotated, stored hashed) and API keys.

Access and refresh tokens are both JWTs signed with the same key, told apart by their
``typ`` header (``at+jwt`` / ``rt+jwt``) and their ``type`` claim (RFC 8725 §3.11), and
decoding pins the algorithm to HS256. ``iat`` carries milliseconds so that a revocation at
time T refuses exactly the tokens issued before T.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from .cache import BoundedCache

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
API_KEY_PREFIX = "llmmc_"
SECRET_FILE = "auth_jwt_secret"
REQUIRED_CLAIMS = ["sub", "iat", "exp", "jti", "iss", "aud", "type", "fam"]
# what an access token carries beside those (docs/auth.md: every listed claim is required)
ACCESS_CLAIMS = [*REQUIRED_CLAIMS, "roles", "username"]
HEADER_TYPES = {ACCESS: "at+jwt", REFRESH: "rt+jwt"}


class TokenError(Exception):
    """A token that is malformed, forged, expired or of the wrong kind."""


def load_or_create_secret(data_dir: Path) -> bytes:
    """A random 256-bit key, generated once and kept in ``data_dir`` (mode 0600). Written
    whole to a private file, then linked into place: processes starting together (``serve
    --workers N``) all end up with the one key, and none reads a half-written file."""
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_bytes(32).hex() + "\n")
        try:
            os.link(tmp, path)  # fails if another process got there first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text().strip()
    if len(text) < 64:
        raise RuntimeError(f"{path} does not hold a 256-bit hex key")
    return bytes.fromhex(text)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    claims: dict[str, Any]


class TokenService:
    def __init__(
        self,
        secret: bytes | str,
        *,
        issuer: str,
        audience: str,
        access_seconds: int,
        refresh_seconds: int,
        leeway: int = 0,
    ) -> None:
        self.secret = secret
        self.issuer = issuer
        self.audience = audience
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        self.leeway = leeway
        self._jwt = jwt.PyJWT()
        # Access tokens already verified, by their exact text (signature included): a
        # client sends the same token with every request, and verifying it again costs
        # more than the rest of the authentication. Expiry is checked on every hit.
        self._verified = BoundedCache(10_000)

    def _issue(
        self, kind: str, user_id: str, family_id: str, extra: dict[str, Any], ttl: int
    ) -> Issued:
        now = round(time.time(), 3)
        claims: dict[str, Any] = {
            "sub": user_id,
            "iat": now,
            "exp": int(now) + ttl,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": self.audience,
            "type": kind,
            "fam": family_id,
            **extra,
        }
        token = jwt.encode(
            claims, self.secret, algorithm=ALGORITHM, headers={"typ": HEADER_TYPES[kind]}
        )
        return Issued(token, claims)

    def issue_access(
        self, user_id: str, family_id: str, roles: tuple[str, ...], username: str
    ) -> Issued:
        extra = {"roles": list(roles), "username": username}
        return self._issue(ACCESS, user_id, family_id, extra, self.access_seconds)

    def issue_refresh(self, user_id: str, family_id: str) -> Issued:
        return self._issue(REFRESH, user_id, family_id, {}, self.refresh_seconds)

    def decode(self, token: str, kind: str, *, verify_exp: bool = True) -> dict[str, Any]:
        if kind == ACCESS:
            cached = self._verified.get(token)
            if cached is not None:
                if cached["exp"] + self.leeway <= time.time():
                    self._verified.pop(token, None)
                    raise TokenError("the token has expired")
                return cached
        claims = self._decode(token, kind, verify_exp)
        if kind == ACCESS and verify_exp:
            self._verified.put(token, claims)
        return claims

    def _decode(self, token: str, kind: str, verify_exp: bool) -> dict[str, Any]:
        try:
            decoded = self._jwt.decode_complete(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "require": ACCESS_CLAIMS if kind == ACCESS else REQUIRED_CLAIMS,
                    "verify_exp": verify_exp,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"the token is not valid ({type(exc).__name__})") from exc
        header, claims = decoded["header"], decoded["payload"]
        if header.get("typ") != HEADER_TYPES[kind] or claims.get("type") != kind:
            raise TokenError(f"not an {kind} token" if kind == ACCESS else f"not a {kind} token")
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("fam"), str):
            raise TokenError("the token is not valid (claims)")
        if kind == ACCESS and not (
            isinstance(claims.get("roles"), list)
            and all(isinstance(r, str) for r in claims["roles"])
        ):
            raise TokenError("the token is not valid (roles)")
        if kind == ACCESS and not isinstance(claims.get("username"), str):
            raise TokenError("the token is not valid (username)")
        return claims
