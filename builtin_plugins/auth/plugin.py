"""The auth plugin: accounts, JWT access tokens, rotating refresh tokens, API keys, roles,
and their administration (users, disabling, password resets, the audit log)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sdk import (
    CliCommand,
    Database,
    Health,
    Identity,
    Plugin,
    Route,
    audit,
    control,
    events,
    hookimpl,
)
from sdk.plugin import unless_shared_redis

from . import cli
from .admin import Administration
from .apikeys import ApiKeys
from .auditlog import AuditLog, Recorder
from .checks import TokenChecks
from .housekeeping import Housekeeping
from .lockout import LockoutSettings, LoginGuard
from .mailer import EmailSettings
from .resets import Resets
from .revocation import RevocationStore
from .routes import Parts, build_routes
from .sessions import Sessions
from .settings import SOCKET_NAME, Settings
from .store import MIGRATIONS, AuthStore
from .tokens import TokenService, load_or_create_secret


def _ints(defaults: dict[str, int], minimum: int = 1) -> dict[str, Any]:
    return {k: {"type": "integer", "minimum": minimum, "default": v} for k, v in defaults.items()}


LOCKOUT_DEFAULTS = {
    "max_failures": 5,
    "account_max_failures": 50,
    "window_seconds": 900,
    "lock_seconds": 30,
    "max_lock_seconds": 900,
    "known_ip_days": 30,
}


class AuthPlugin(Plugin):
    name = "auth"
    version = "0.2.0"
    description = "Accounts, JWT access tokens, rotating refresh tokens, API keys, roles and their administration."
    requires = ("storage",)
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
                "description": "Redis that shares token revocations and login locks between "
                "instances; empty: [kernel.bus] redis_url when the bus backend is redis, else "
                "none (one instance).",
            },
            "redis_prefix": {"type": "string", "default": "llmmc:auth:"},
            "on_redis_error": {
                "enum": ["open", "closed"],
                "default": "open",
                "description": "while the Redis that shares revocations is unreachable: "
                "'open' accepts tokens on this instance's knowledge (revocations made on other "
                "instances meanwhile hold once Redis is back); 'closed' answers authenticated "
                "requests 503 REVOCATIONS_UNAVAILABLE",
            },
            "revocation_checks": {
                "enum": ["pushed", "asked"],
                "default": "pushed",
                "description": "with Redis: 'pushed' checks tokens in memory, kept current "
                "by revocations Redis pushes to every instance as they are made; 'asked' asks "
                "Redis on every request (one round trip each)",
            },
            "audit_days": {
                "type": "integer",
                "minimum": 1,
                "default": 90,
                "description": "audit events older than this are deleted",
            },
            "reset_token_minutes": {
                "type": "integer",
                "minimum": 5,
                "maximum": 10080,
                "default": 60,
                "description": "how long a password-reset token works",
            },
            "forgot_password_interval_seconds": {
                "type": "integer",
                "minimum": 0,
                "default": 60,
                "description": "at most one reset mail per account in this time",
            },
            "admin_socket": {
                "type": "boolean",
                "default": True,
                "description": "serve the command line on data_dir/auth-admin.sock (mode 0600)",
            },
            "lockout": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": _ints(LOCKOUT_DEFAULTS),
            },
            "email": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "description": "SMTP for POST /api/v1/auth/forgot-password; without a host "
                "that route answers 503.",
                "properties": {
                    "host": {"type": "string", "default": ""},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 587},
                    "security": {"enum": ["starttls", "tls", "none"], "default": "starttls"},
                    "username": {"type": "string", "default": ""},
                    "password": {"type": "string", "default": "", "x-secret": True},
                    "from_address": {"type": "string", "default": ""},
                    "reset_url": {
                        "type": "string",
                        "default": "",
                        "description": "link mailed, with {token} replaced; empty: the "
                        "mail holds the token itself",
                    },
                    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 10},
                },
            },
        },
    }

    migrations = MIGRATIONS

    revocations: RevocationStore
    guard: LoginGuard
    checks: TokenChecks
    sessions: Sessions
    resets: Resets
    admin: Administration
    api_keys: ApiKeys
    audit_log: AuditLog
    housekeeping: Housekeeping
    parts: Parts
    control: control.ControlServer | None = None
    _background: set[asyncio.Task[None]]

    def _redis_url(self) -> str:
        return self.shared_redis_url(self.config["redis_url"])

    @classmethod
    def process_local_settings(
        cls, config: dict[str, Any], kernel_config: dict[str, Any]
    ) -> list[str]:
        return unless_shared_redis(
            config, kernel_config, "[plugins.auth] redis_url (revocations and account changes)"
        )

    async def initialize(self) -> None:
        cfg = self.config
        self._background = set()
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
            store,
            access_seconds,
            self.log,
            self._redis_url(),
            cfg["redis_prefix"],
            pushed=cfg.get("revocation_checks", "pushed") == "pushed",
            on_redis_error=cfg.get("on_redis_error", "open"),
            on_learned=self._revoked_while_away,
            counted=self._declare_revocation_metrics(),
        )
        self.guard = LoginGuard(
            LockoutSettings.from_config({**LOCKOUT_DEFAULTS, **(cfg.get("lockout") or {})}),
            self.log,
            self._redis_url(),
            cfg["redis_prefix"],
        )
        settings = Settings(
            bcrypt_rounds=int(cfg["bcrypt_rounds"]),
            allow_registration=bool(cfg["allow_registration"]),
            access_seconds=access_seconds,
            refresh_seconds=int(cfg["refresh_token_days"]) * 86400,
            reset_seconds=int(cfg.get("reset_token_minutes", 60)) * 60,
            forgot_interval_seconds=int(cfg.get("forgot_password_interval_seconds", 60)),
            email=EmailSettings.from_config(cfg.get("email") or {}),
        )
        bus = self.context.bus
        audit_trail = Recorder(bus)
        self.checks = TokenChecks(store, tokens, self.revocations, bus)
        self.sessions = Sessions(store, tokens, self.checks, self.guard, audit_trail, settings)
        self.resets = Resets(store, self.checks, self.guard, audit_trail, settings, self.log)
        self.admin = Administration(store, self.checks, self.resets, bus, audit_trail, settings)
        self.api_keys = ApiKeys(store, self.checks, audit_trail)
        self.audit_log = AuditLog(store, int(cfg.get("audit_days", 90)), self.log)
        self.housekeeping = Housekeeping(store, self.audit_log, access_seconds, self.log)
        self.parts = Parts(self.sessions, self.resets, self.admin, self.api_keys, self.audit_log)

    def _declare_revocation_metrics(self) -> Callable[[str], None]:
        metrics = self.context.metrics
        unverified = metrics.counter(
            "revocation_checks_unverified",
            "Token checks Redis could not answer, by what on_redis_error made of them",
            labels=("outcome",),
        )
        redis_up = metrics.gauge(
            "revocations_redis_up",
            "1 while the Redis that shares revocations answers (or none is configured), else 0",
            aggregate="min",
        )

        def collect() -> None:
            revocations = getattr(self, "revocations", None)
            redis_up.set(1 if revocations is None or revocations.redis_up else 0)

        metrics.on_collect(collect)
        return lambda outcome: unverified.labels(outcome=outcome).inc()

    def _revoked_while_away(self, user_id: str, after: float, keep: str) -> None:
        """A user revocation made on another instance while Redis was away, learned when
        it came back: announce it, so that WebSockets it ends are closed here too."""
        data = {
            "user_id": user_id,
            "family_id": None,
            "issued_before": min(after, 1e18),  # (deletion revokes "forever")
            "keep_family": keep,
            "api_keys": False,
            "api_key_ids": [],
            "reason": "revoked while Redis was unreachable",
        }
        task = asyncio.create_task(self.context.bus.publish(events.TOKENS_REVOKED, data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def accounts(self) -> Administration:
        """The administration part under its former name (tests of other plugins use it)."""
        return self.admin

    async def start(self) -> None:
        bus = self.context.bus
        bus.subscribe(audit.TOPIC_PREFIX + "*", self.audit_log.on_event)
        await self.revocations.start()
        await self.guard.start()
        await self.sessions.prepare()
        await self.housekeeping.start()
        if self.config.get("admin_socket", True):
            self.control = control.ControlServer(
                self.context.data_dir / SOCKET_NAME, self._control, self.log
            )
            await self.control.start()

    async def _control(self, message: dict[str, Any]) -> dict[str, Any]:
        return await cli.execute(self.admin, message)

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
        await self.resets.finish_mails()
        await self.housekeeping.stop()
        await self.guard.stop()
        await self.revocations.stop()

    def not_ready(self) -> str | None:
        revocations = getattr(self, "revocations", None)
        if revocations is not None and revocations.shared and not revocations.redis_up:
            return "the Redis that shares token revocations does not answer"
        return None

    async def health(self) -> Health:
        ok, detail = self.revocations.status()
        checks: dict[str, Any] = {"revocations": detail}
        if self.revocations.shared:
            checks["on_redis_error"] = self.revocations.policy
            checks["redis"] = "up" if self.revocations.redis_up else "unreachable"
        if self.control is not None:
            # whether the CLI can reach this server; its path is in the log, not in the
            # answer to anyone who asks /health
            checks["admin_socket"] = self.control.detail.replace(
                str(self.control.path), "(data_dir)"
            )
        return Health("ok" if ok else "degraded", detail, checks)

    @hookimpl
    def register_routes(self) -> list[Route]:
        return build_routes(lambda: self.parts, self.context.services)

    @hookimpl
    async def copy_tables(self, target: Database) -> list[str]:
        # every auth_* table comes from MIGRATIONS, so the target has them all already
        return await self.context.database.tables("auth_")

    @hookimpl
    def register_cli_commands(self) -> list[CliCommand]:
        return cli.commands()

    @hookimpl
    async def authenticate(self, request: Any) -> Identity | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        if not token.startswith("llmmc_") and token.count(".") != 2:
            return None  # not one of ours (another plugin may know it)
        return await self.checks.authenticate(token)

    @hookimpl
    def permission_allowed(self, identity: Identity, action: str, resource: Any) -> bool | None:
        # A user may only touch their own account; admins may touch anyone's.
        if isinstance(resource, dict) and "user_id" in resource:
            if resource["user_id"] != identity.user_id and not identity.is_admin:
                return False
        return None
