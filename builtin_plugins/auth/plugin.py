"""The auth plugin: accounts, JWT access tokens, rotating refresh tokens, API keys, roles."""

from __future__ import annotations

from typing import Any

from sdk import CliCommand, Database, Health, Identity, Plugin, Route, hookimpl
from sdk.plugin import unless_shared_redis

from . import cli
from .accounts import Accounts, Settings
from .revocation import RevocationStore
from .routes import build_routes
from .store import MIGRATIONS, AuthStore
from .tokens import TokenService, load_or_create_secret


class AuthPlugin(Plugin):
    name = "auth"
    version = "0.1.0"
    description = "Accounts, JWT access tokens, rotating refresh tokens, API keys and roles."
    optional = ("ratelimit",)
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "jwt_secret": {
                "type": "string",
                "default": "",
                "x-secret": True,
                "description": "HS256 signing key; empty: a random 256-bit key is generated "
                "once and kept in data_dir/auth_jwt_secret. Instances behind one load "
                "balancer must share it.",
            },
            "access_token_minutes": {"type": "integer", "minimum": 1, "default": 30},
            "refresh_token_days": {"type": "integer", "minimum": 1, "default": 7},
            "bcrypt_rounds": {"type": "integer", "minimum": 4, "maximum": 31, "default": 12},
            "allow_registration": {"type": "boolean", "default": True},
            "issuer": {"type": "string", "minLength": 1, "default": "llmmultichat"},
            "audience": {"type": "string", "minLength": 1, "default": "llmmultichat-api"},
            "redis_url": {
                "type": "string",
                "default": "",
                "description": "Redis that shares token revocations between instances; empty: "
                "[kernel.bus] redis_url when the bus backend is redis, else none (one instance).",
            },
            "redis_prefix": {"type": "string", "default": "llmmc:auth:"},
        },
    }

    migrations = MIGRATIONS

    accounts: Accounts
    revocations: RevocationStore

    def _redis_url(self) -> str:
        return self.shared_redis_url(str(self.config.get("redis_url") or ""))

    @classmethod
    def process_local_settings(
        cls, config: dict[str, Any], kernel_config: dict[str, Any]
    ) -> list[str]:
        return unless_shared_redis(
            config, kernel_config, "[plugins.auth] redis_url (revocations and account changes)"
        )

    async def initialize(self) -> None:
        cfg = self.config
        store = AuthStore(self.context.database)
        secret: bytes | str = cfg["jwt_secret"] or load_or_create_secret(self.context.data_dir)
        access_seconds = int(cfg["access_token_minutes"]) * 60
        tokens = TokenService(
            secret,
            issuer=cfg["issuer"],
            audience=cfg["audience"],
            access_seconds=access_seconds,
            refresh_seconds=int(cfg["refresh_token_days"]) * 86400,
        )
        self.revocations = RevocationStore(
            store, access_seconds, self.log, self._redis_url(), cfg["redis_prefix"]
        )
        self.accounts = Accounts(
            store,
            tokens,
            self.revocations,
            self.context.bus,
            Settings(
                bcrypt_rounds=int(cfg["bcrypt_rounds"]),
                allow_registration=bool(cfg["allow_registration"]),
                access_seconds=access_seconds,
                refresh_seconds=int(cfg["refresh_token_days"]) * 86400,
            ),
        )

    async def start(self) -> None:
        await self.revocations.start()
        await self.accounts.prepare()

    async def stop(self) -> None:
        await self.revocations.stop()

    async def health(self) -> Health:
        ok, detail = self.revocations.status()
        return Health("ok" if ok else "degraded", detail, {"revocations": detail})

    @hookimpl
    def register_routes(self) -> list[Route]:
        return build_routes(self)

    @hookimpl
    async def copy_tables(self, target: Database) -> list[str]:
        # every auth_* table comes from MIGRATIONS, so the target has them all already
        return await self.context.database.tables("auth_")

    @hookimpl
    def register_cli_commands(self) -> list[CliCommand]:
        return cli.commands(self)

    @hookimpl
    async def authenticate(self, request: Any) -> Identity | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        if not token.startswith("llmmc_") and token.count(".") != 2:
            return None  # not one of ours (another plugin may know it)
        return await self.accounts.authenticate_token(token)

    @hookimpl
    def permission_allowed(self, identity: Identity, action: str, resource: Any) -> bool | None:
        # A user may only touch their own account; admins may touch anyone's.
        if isinstance(resource, dict) and "user_id" in resource:
            if resource["user_id"] != identity.user_id and not identity.is_admin:
                return False
        return None
