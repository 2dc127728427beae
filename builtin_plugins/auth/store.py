"""Every SQL statement of the auth plugin. Times are UNIX seconds (DOUBLE PRECISION), roles a
comma-separated list; emails and usernames are unique after NFKC and case folding
(``*_norm``, see :mod:`.names`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from sdk import Database, Migration, Transaction

from .names import fold

log = logging.getLogger("llmmultichat.plugin.auth")
CONFLICT_RETRIES = 5  # a write that lost a race is tried this many times in all

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS auth_users (
        user_id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        username_norm TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        email_norm TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        roles TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS auth_refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        family_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        issued_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        spent_at DOUBLE PRECISION,
        revoked BOOLEAN NOT NULL DEFAULT FALSE
    )""",
    "CREATE INDEX IF NOT EXISTS auth_refresh_family ON auth_refresh_tokens (family_id)",
    "CREATE INDEX IF NOT EXISTS auth_refresh_user ON auth_refresh_tokens (user_id)",
    """CREATE TABLE IF NOT EXISTS auth_api_keys (
        key_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS auth_api_keys_user ON auth_api_keys (user_id)",
    # Revocations of access tokens (which are never looked up in the database): kind 'user'
    # (tokens of subject issued before `after`, except family `keep`) or 'family'.
    """CREATE TABLE IF NOT EXISTS auth_revocations (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        after DOUBLE PRECISION NOT NULL,
        keep TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (kind, subject)
    )""",
]


async def refold_names(tx: Transaction) -> None:
    """Rebuild the ``*_norm`` keys stored by version 1 (merely lower-cased). An account
    whose new key another already holds keeps its old one (no constraint is ever hit:
    PostgreSQL would abort the transaction) and logs in with the exact email it
    registered; a warning names it."""
    rows = await tx.fetchall(
        "SELECT user_id, username, email, username_norm, email_norm FROM auth_users "
        "ORDER BY created_at"
    )
    holder = {key: row[0] for row in rows for key in (("u", row[3]), ("e", row[4]))}
    clashes = []
    for user_id, username, email, username_norm, email_norm in rows:
        new_u, new_e = fold(username), fold(email)
        if (new_u, new_e) == (username_norm, email_norm):
            continue
        if (
            holder.get(("u", new_u), user_id) != user_id
            or holder.get(("e", new_e), user_id) != user_id
        ):
            clashes.append(user_id)
            continue
        holder.pop(("u", username_norm), None)
        holder.pop(("e", email_norm), None)
        holder[("u", new_u)] = holder[("e", new_e)] = user_id
        await tx.execute(
            "UPDATE auth_users SET username_norm = $1, email_norm = $2 WHERE user_id = $3",
            [new_u, new_e, user_id],
        )
    if clashes:
        log.warning(
            "%d accounts share a name with another once case and Unicode spelling are "
            "ignored; they keep their old lookup key and log in with their exact email "
            "(user ids: %s)",
            len(clashes),
            ", ".join(clashes),
        )


ADMINISTRATION = [
    # Disabled accounts and last logins; DuckDB cannot add a NOT NULL column, so reads
    # treat NULL as FALSE. Each statement may run again harmlessly (IF NOT EXISTS).
    "ALTER TABLE auth_users ADD COLUMN IF NOT EXISTS disabled BOOLEAN DEFAULT FALSE",
    "ALTER TABLE auth_users ADD COLUMN IF NOT EXISTS last_login_at DOUBLE PRECISION",
    """CREATE TABLE IF NOT EXISTS auth_reset_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION,
        origin TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS auth_reset_user ON auth_reset_tokens (user_id)",
    """CREATE TABLE IF NOT EXISTS auth_audit (
        event_id TEXT PRIMARY KEY,
        occurred_at DOUBLE PRECISION NOT NULL,
        type TEXT NOT NULL,
        user_id TEXT,
        actor_id TEXT,
        ip TEXT,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS auth_audit_at ON auth_audit (occurred_at)",
    "CREATE INDEX IF NOT EXISTS auth_audit_user ON auth_audit (user_id)",
]
MIGRATIONS = [
    Migration(1, "users, refresh tokens, API keys, revocations", SCHEMA),
    Migration(2, "usernames and emails keyed after NFKC and case folding", run=refold_names),
    Migration(3, "administration: disabled, last login, reset tokens, audit log", ADMINISTRATION),
]

_USER_COLUMNS = (
    "user_id, username, email, roles, created_at, password_hash, disabled, last_login_at"
)
# Roles are a comma list; this matches rows that hold the admin role.
_IS_ADMIN = "(',' || roles || ',') LIKE '%,admin,%'"
_ENABLED_ADMIN = f"{_IS_ADMIN} AND NOT COALESCE(disabled, FALSE)"


class LastAdmin(Exception):
    """The change would leave the server without an enabled admin."""


class DuplicateUser(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    username: str
    email: str
    roles: tuple[str, ...]
    created_at: float
    password_hash: str
    disabled: bool = False
    last_login_at: float | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> UserRow:
        roles = tuple(r for r in str(row[3]).split(",") if r)
        return cls(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            roles,
            float(row[4]),
            str(row[5]),
            bool(row[6]),
            None if row[7] is None else float(row[7]),
        )


@dataclass(frozen=True, slots=True)
class AuditRow:
    event_id: str
    at: float
    type: str
    user_id: str | None
    actor_id: str | None
    ip: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class RefreshRow:
    token_hash: str
    family_id: str
    user_id: str
    expires_at: float
    spent_at: float | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    key_id: str
    user_id: str
    name: str
    created_at: float
    expires_at: float | None


def _like_escape(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _is_conflict(exc: BaseException) -> bool:
    """A write that lost a race with another transaction (DuckDB's optimistic concurrency,
    PostgreSQL's serialization failures)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return "conflict" in text or "serializ" in text


def _is_constraint_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "constraint" in text or "duplicate key" in text


class AuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ----------------------------------------------------------------------------

    async def insert_user(
        self,
        user_id: str,
        username: str,
        email: str,
        password_hash: str,
        roles: tuple[str, ...],
        created_at: float,
    ) -> None:
        taken = await self.db.fetchone(
            "SELECT email_norm = $1, username_norm = $2 FROM auth_users "
            "WHERE email_norm = $1 OR username_norm = $2 LIMIT 1",
            [fold(email), fold(username)],
        )
        if taken is not None:
            raise DuplicateUser("email" if taken[0] else "username")
        try:
            await self.db.execute(
                "INSERT INTO auth_users (user_id, username, username_norm, email, email_norm, "
                "password_hash, roles, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                [
                    user_id,
                    username,
                    fold(username),
                    email,
                    fold(email),
                    password_hash,
                    ",".join(roles),
                    created_at,
                ],
            )
        except Exception as exc:  # a concurrent registration won the race
            if _is_constraint_error(exc):
                raise DuplicateUser("email or username") from exc
            raise

    async def user_by_id(self, user_id: str) -> UserRow | None:
        row = await self.db.fetchone(
            f"SELECT {_USER_COLUMNS} FROM auth_users WHERE user_id = $1", [user_id]
        )
        return UserRow.from_row(row) if row else None

    async def user_by_email(self, email: str) -> UserRow | None:
        # An account re-keyed from before folding may hold the lower-cased key instead
        # (see refold_names): the exact spelling decides between the two.
        row = await self.db.fetchone(
            f"SELECT {_USER_COLUMNS} FROM auth_users WHERE email_norm IN ($1, $2) "
            "ORDER BY email = $3 DESC, email_norm = $1 DESC LIMIT 1",
            [fold(email), email.lower(), email],
        )
        return UserRow.from_row(row) if row else None

    async def user_by_username(self, username: str) -> UserRow | None:
        row = await self.db.fetchone(
            f"SELECT {_USER_COLUMNS} FROM auth_users WHERE username_norm = $1", [fold(username)]
        )
        return UserRow.from_row(row) if row else None

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self.db.execute(
            "UPDATE auth_users SET password_hash = $1 WHERE user_id = $2", [password_hash, user_id]
        )

    async def update_user(
        self, user_id: str, roles: tuple[str, ...], disabled: bool, keep_an_admin: bool
    ) -> UserRow | None:
        """Set roles and disabled together. With ``keep_an_admin``, refuse (LastAdmin) a
        change that would leave no enabled admin: the check and the write are one
        transaction, and on PostgreSQL the admins' rows are locked first, so two such
        changes from two processes run one after the other."""
        async with self.db.transaction() as tx:
            if keep_an_admin and tx.engine == "postgresql":
                await tx.execute(f"SELECT user_id FROM auth_users WHERE {_IS_ADMIN} FOR UPDATE")
            row = await tx.fetchone(
                f"SELECT {_USER_COLUMNS} FROM auth_users WHERE user_id = $1", [user_id]
            )
            if row is None:
                return None
            before = UserRow.from_row(row)
            loses_admin = before.is_admin and not before.disabled
            loses_admin = loses_admin and ("admin" not in roles or disabled)
            if keep_an_admin and loses_admin:
                others = await tx.fetchval(
                    f"SELECT COUNT(*) FROM auth_users WHERE {_ENABLED_ADMIN} AND user_id <> $1",
                    [user_id],
                )
                if not others:
                    raise LastAdmin()
            await tx.execute(
                "UPDATE auth_users SET roles = $1, disabled = $2 WHERE user_id = $3",
                [",".join(roles), disabled, user_id],
            )
        return UserRow.from_row((*row[:3], ",".join(roles), *row[4:6], disabled, row[7]))

    async def is_last_admin(self, user_id: str) -> bool:
        """True when this user is the only enabled admin."""
        row = await self.db.fetchone(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE user_id = $1) FROM auth_users "
            f"WHERE {_ENABLED_ADMIN}",
            [user_id],
        )
        return row is not None and row[0] == 1 and row[1] == 1

    async def touch_login(self, user_id: str, at: float) -> None:
        await self.db.execute(
            "UPDATE auth_users SET last_login_at = $1 WHERE user_id = $2", [at, user_id]
        )

    async def search_users(self, q: str, limit: int, offset: int) -> tuple[list[UserRow], int]:
        """Users whose username or email contains ``q`` (case-insensitively), oldest
        first, and how many match in all."""
        where, params = "", []
        if q:
            where = "WHERE username_norm LIKE $1 ESCAPE '!' OR email_norm LIKE $1 ESCAPE '!'"
            params = ["%" + _like_escape(fold(q)) + "%"]
        total = await self.db.fetchval(f"SELECT COUNT(*) FROM auth_users {where}", params)
        n = len(params)
        rows = await self.db.fetchall(
            f"SELECT {_USER_COLUMNS} FROM auth_users {where} "
            f"ORDER BY created_at, user_id LIMIT ${n + 1} OFFSET ${n + 2}",
            [*params, limit, offset],
        )
        return [UserRow.from_row(r) for r in rows], int(total or 0)

    async def end_credentials(self, user_id: str) -> list[str]:
        """Revoke every refresh token and delete every API key of the user (disabling);
        returns the deleted keys' ids."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE auth_refresh_tokens SET revoked = TRUE WHERE user_id = $1 AND NOT revoked",
                [user_id],
            )
            keys = await tx.fetchall(
                "DELETE FROM auth_api_keys WHERE user_id = $1 RETURNING key_id", [user_id]
            )
        return [str(k[0]) for k in keys]

    async def delete_user(self, user_id: str) -> bool:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM auth_api_keys WHERE user_id = $1", [user_id])
            await tx.execute("DELETE FROM auth_refresh_tokens WHERE user_id = $1", [user_id])
            await tx.execute("DELETE FROM auth_reset_tokens WHERE user_id = $1", [user_id])
            gone = await tx.fetchall(
                "DELETE FROM auth_users WHERE user_id = $1 RETURNING user_id", [user_id]
            )
        return bool(gone)

    # -- refresh tokens -------------------------------------------------------------------

    async def insert_refresh(
        self, token_hash: str, family_id: str, user_id: str, issued_at: float, expires_at: float
    ) -> None:
        await self.db.execute(
            "INSERT INTO auth_refresh_tokens (token_hash, family_id, user_id, issued_at, "
            "expires_at) VALUES ($1, $2, $3, $4, $5)",
            [token_hash, family_id, user_id, issued_at, expires_at],
        )

    async def refresh_by_hash(self, token_hash: str) -> RefreshRow | None:
        row = await self.db.fetchone(
            "SELECT token_hash, family_id, user_id, expires_at, spent_at, revoked "
            "FROM auth_refresh_tokens WHERE token_hash = $1",
            [token_hash],
        )
        if row is None:
            return None
        return RefreshRow(row[0], row[1], row[2], float(row[3]), row[4], bool(row[5]))

    async def spend_refresh(self, token_hash: str, now: float) -> bool:
        """Mark a live refresh token spent; False if it was already spent or revoked."""
        rows = await self.db.fetchall(
            "UPDATE auth_refresh_tokens SET spent_at = $1 "
            "WHERE token_hash = $2 AND spent_at IS NULL AND NOT revoked RETURNING token_hash",
            [now, token_hash],
        )
        return bool(rows)

    async def revoke_family(self, family_id: str) -> None:
        await self.db.execute(
            "UPDATE auth_refresh_tokens SET revoked = TRUE WHERE family_id = $1 AND NOT revoked",
            [family_id],
        )

    async def revoke_user_families(self, user_id: str, keep_family: str) -> None:
        await self.db.execute(
            "UPDATE auth_refresh_tokens SET revoked = TRUE "
            "WHERE user_id = $1 AND family_id <> $2 AND NOT revoked",
            [user_id, keep_family],
        )

    async def purge_refresh(self, now: float) -> None:
        await self.db.execute("DELETE FROM auth_refresh_tokens WHERE expires_at < $1", [now])

    # -- API keys -------------------------------------------------------------------------

    async def insert_api_key(
        self,
        key_id: str,
        user_id: str,
        name: str,
        key_hash: str,
        created_at: float,
        expires_at: float | None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO auth_api_keys (key_id, user_id, name, key_hash, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [key_id, user_id, name, key_hash, created_at, expires_at],
        )

    async def api_key_owner(self, key_hash: str) -> tuple[ApiKeyRow, UserRow] | None:
        row = await self.db.fetchone(
            "SELECT k.key_id, k.user_id, k.name, k.created_at, k.expires_at, "
            f"{', '.join('u.' + c.strip() for c in _USER_COLUMNS.split(','))} "
            "FROM auth_api_keys k JOIN auth_users u ON u.user_id = k.user_id "
            "WHERE k.key_hash = $1",
            [key_hash],
        )
        if row is None:
            return None
        key = ApiKeyRow(row[0], row[1], row[2], float(row[3]), row[4])
        return key, UserRow.from_row(row[5:])

    async def api_keys_of(self, user_id: str) -> list[ApiKeyRow]:
        rows = await self.db.fetchall(
            "SELECT key_id, user_id, name, created_at, expires_at FROM auth_api_keys "
            "WHERE user_id = $1 ORDER BY created_at, key_id",
            [user_id],
        )
        return [ApiKeyRow(r[0], r[1], r[2], float(r[3]), r[4]) for r in rows]

    async def delete_api_key(self, user_id: str, key_id: str) -> bool:
        rows = await self.db.fetchall(
            "DELETE FROM auth_api_keys WHERE key_id = $1 AND user_id = $2 RETURNING key_id",
            [key_id, user_id],
        )
        return bool(rows)

    # -- revocations ----------------------------------------------------------------------

    async def save_revocation(
        self, kind: str, subject: str, after: float, keep: str, expires_at: float
    ) -> None:
        await self.db.execute(
            "INSERT INTO auth_revocations (kind, subject, after, keep, expires_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, subject) DO UPDATE SET "
            "after = excluded.after, keep = excluded.keep, expires_at = excluded.expires_at",
            [kind, subject, after, keep, expires_at],
        )

    async def live_revocations(self, now: float) -> list[tuple[str, str, float, str, float]]:
        await self.db.execute("DELETE FROM auth_revocations WHERE expires_at < $1", [now])
        rows = await self.db.fetchall(
            "SELECT kind, subject, after, keep, expires_at FROM auth_revocations"
        )
        return [(r[0], r[1], float(r[2]), r[3], float(r[4])) for r in rows]

    # -- password reset tokens ------------------------------------------------------------

    async def insert_reset(
        self, token_hash: str, user_id: str, created_at: float, expires_at: float, origin: str
    ) -> None:
        """Store a new reset token; the user's earlier unused ones stop working."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "DELETE FROM auth_reset_tokens WHERE user_id = $1 AND used_at IS NULL", [user_id]
            )
            await tx.execute(
                "INSERT INTO auth_reset_tokens (token_hash, user_id, created_at, expires_at, "
                "origin) VALUES ($1, $2, $3, $4, $5)",
                [token_hash, user_id, created_at, expires_at, origin],
            )

    async def use_reset(self, token_hash: str, now: float) -> str | None:
        """Spend a live reset token; the user id, or None if unknown, used or expired.

        Requests spending one token at once: PostgreSQL lets the first one through and
        the others find it used; DuckDB fails the others' update ("Conflict on tuple
        deletion"), so the update is tried again and then finds the token used."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                rows = await self.db.fetchall(
                    "UPDATE auth_reset_tokens SET used_at = $1 WHERE token_hash = $2 "
                    "AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
                    [now, token_hash],
                )
            except Exception as exc:
                if not _is_conflict(exc) or attempt == CONFLICT_RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
                continue
            return str(rows[0][0]) if rows else None
        return None

    async def last_reset_at(self, user_id: str, origin: str) -> float | None:
        value = await self.db.fetchval(
            "SELECT MAX(created_at) FROM auth_reset_tokens WHERE user_id = $1 AND origin = $2",
            [user_id, origin],
        )
        return None if value is None else float(value)

    async def purge_reset(self, now: float) -> None:
        await self.db.execute(
            "DELETE FROM auth_reset_tokens WHERE expires_at < $1 OR used_at IS NOT NULL", [now]
        )

    # -- audit log ------------------------------------------------------------------------

    async def insert_audit(self, row: AuditRow) -> None:
        # The event id is the bus event's: the same event arriving from another instance
        # (shared database) is stored once.
        await self.db.execute(
            "INSERT INTO auth_audit (event_id, occurred_at, type, user_id, actor_id, ip, "
            "detail) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [row.event_id, row.at, row.type, row.user_id, row.actor_id, row.ip, row.detail],
        )

    async def audit_at(self, event_id: str) -> float | None:
        value = await self.db.fetchval(
            "SELECT occurred_at FROM auth_audit WHERE event_id = $1", [event_id]
        )
        return None if value is None else float(value)

    async def audit_events(
        self,
        user_id: str | None,
        type_prefix: str | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> list[AuditRow]:
        """Newest first. ``before`` = (time, event_id) of the last event already seen."""
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, *values: Any) -> None:
            for value in values:
                params.append(value)
                sql = sql.replace("?", f"${len(params)}", 1)
            clauses.append(sql)

        if user_id:
            add("(user_id = ? OR actor_id = ?)", user_id, user_id)
        if type_prefix:
            # "login" matches "login" and "login.failed", "login.ok", ...
            add(
                "(type = ? OR type LIKE ? ESCAPE '!')",
                type_prefix,
                _like_escape(type_prefix) + ".%",
            )
        if before is not None:
            add(
                "(occurred_at < ? OR (occurred_at = ? AND event_id < ?))",
                before[0],
                before[0],
                before[1],
            )
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)
        rows = await self.db.fetchall(
            "SELECT event_id, occurred_at, type, user_id, actor_id, ip, detail FROM auth_audit "
            f"{where} ORDER BY occurred_at DESC, event_id DESC LIMIT ${len(params)}",
            params,
        )
        return [AuditRow(r[0], float(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def prune_audit(self, older_than: float) -> None:
        await self.db.execute("DELETE FROM auth_audit WHERE occurred_at < $1", [older_than])
