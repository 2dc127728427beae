"""The auth settings the account parts share (from ``[plugins.auth]``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import mailer

# the command line's way into the running server (sdk.control)
SOCKET_NAME = "auth-admin.sock"


@dataclass(slots=True)
class Settings:
    bcrypt_rounds: int
    allow_registration: bool
    access_seconds: int
    refresh_seconds: int
    reset_seconds: int = 3600
    forgot_interval_seconds: int = 60
    email: mailer.EmailSettings = dataclasses.field(default_factory=mailer.EmailSettings)
