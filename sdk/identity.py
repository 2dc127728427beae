"""Who is calling: produced by ``authenticate`` hooks, read by everything else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    roles: tuple[str, ...] = ("user",)
    username: str = ""
    # "jwt", "api_key", ... whatever the authenticating plugin calls its scheme
    scheme: str = ""
    # id of the credential (JWT jti, API key id), for revocation and audit
    credential_id: str = ""
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles
