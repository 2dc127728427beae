"""HTTP routes of the auth plugin (``/api/v1/auth``, ``/api/v1/admin``): thin handlers over
the parts that do the work (:mod:`.sessions`, :mod:`.resets`, :mod:`.admin`,
:mod:`.apikeys`, :mod:`.auditlog`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdk import Request, Response, Route, Services, audit, errors
from sdk import services as sdk_services

from .admin import KNOWN_ROLES, Administration
from .apikeys import ApiKeys
from .auditlog import AuditLog
from .resets import Resets
from .sessions import Sessions
from .views import admin_user_json, iso, user_json

PREFIX = "/api/v1/auth"
ADMIN = "/api/v1/admin"
TAGS = ["auth"]
ADMIN_TAGS = ["admin"]

USER = {
    "type": "object",
    "required": ["user_id", "username", "email", "roles", "created_at"],
    "properties": {
        "user_id": {"type": "string", "format": "uuid"},
        "username": {"type": "string"},
        "email": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
TOKEN_PAIR = {
    "type": "object",
    "required": ["access_token", "refresh_token", "token_type", "expires_in", "user"],
    "properties": {
        "access_token": {"type": "string"},
        "refresh_token": {"type": "string"},
        "token_type": {"const": "bearer"},
        "expires_in": {"type": "integer", "description": "seconds until the access token expires"},
        "user": USER,
    },
}
ADMIN_USER = {
    "type": "object",
    "required": [*USER["required"], "disabled", "last_login_at"],
    "properties": {
        **USER["properties"],
        "disabled": {"type": "boolean"},
        "last_login_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
AUDIT_EVENT = {
    "type": "object",
    "required": ["event_id", "at", "type", "user_id", "actor_id", "ip", "detail"],
    "properties": {
        "event_id": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "type": {"type": "string", "description": "login.ok, login.failed, user.disabled, ..."},
        "user_id": {"type": ["string", "null"], "description": "the account it is about"},
        "actor_id": {"type": ["string", "null"], "description": "who did it, when not the user"},
        "ip": {"type": ["string", "null"]},
        "detail": {"type": "object"},
    },
}
PASSWORD = {"type": "string", "minLength": 1, "maxLength": 1024}
REFRESH_BODY = {
    "type": "object",
    "required": ["refresh_token"],
    "additionalProperties": False,
    "properties": {"refresh_token": {"type": "string", "minLength": 1, "maxLength": 4096}},
}
API_KEY = {
    "type": "object",
    "required": ["key_id", "name", "created_at", "expires_at"],
    "properties": {
        "key_id": {"type": "string"},
        "name": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
QUOTA = {
    "type": "object",
    "required": ["tokens_per_day", "used_today"],
    "properties": {
        "tokens_per_day": {"type": "integer", "description": "0: unlimited"},
        "used_today": {"type": "integer"},
    },
}


# Answers holding credentials must not be kept by a browser or a proxy cache.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def secret(body: Any, status: int = 200) -> Response:
    return Response(body, status, dict(NO_STORE))


@dataclass(frozen=True, slots=True)
class Parts:
    """What the routes call; the plugin makes them when it initializes."""

    sessions: Sessions
    resets: Resets
    admin: Administration
    api_keys: ApiKeys
    audit_log: AuditLog


def build_routes(parts: Callable[[], Parts], services: Services) -> list[Route]:
    """The routes, given a getter for the parts (made after the routes are registered)."""

    async def register(req: Request) -> Any:
        b = req.body
        return secret(
            await parts().sessions.register(
                b["username"], b["email"], b["password"], req.client_ip
            ),
            201,
        )

    async def login(req: Request) -> Any:
        return secret(
            await parts().sessions.login(req.body["email"], req.body["password"], req.client_ip)
        )

    async def refresh(req: Request) -> Any:
        return secret(await parts().sessions.refresh(req.body["refresh_token"]))

    async def logout(req: Request) -> Any:
        await parts().sessions.logout(req.body["refresh_token"], req.client_ip)
        return Response(None, 204)

    async def reset_password(req: Request) -> Any:
        b = req.body
        await parts().resets.reset_password(b["reset_token"], b["new_password"], req.client_ip)
        return Response(None, 204)

    async def forgot_password(req: Request) -> Any:
        await parts().resets.forgot_password(req.body["email"], req.client_ip)
        return Response(
            {"detail": "If an account has this email, a reset link is on its way."}, 202
        )

    async def admin_list_users(req: Request) -> Any:
        q = req.query.get("q", "")
        if len(q) > 254:
            raise errors.ValidationFailed(
                "q is at most 254 characters.", errors=[{"path": "/q", "message": "too long"}]
            )
        limit = req.query_int("limit", 50, 1, 200)
        offset = req.query_int("offset", 0, 0, 10**9)
        users, total = await parts().admin.list_users(q, limit, offset)
        return {"users": [admin_user_json(u) for u in users], "total": total}

    async def admin_get_user(req: Request) -> Any:
        return admin_user_json(await parts().admin.get_user(req.match_info["user_id"]))

    async def admin_update_user(req: Request) -> Any:
        b = req.body
        user = await parts().admin.update_user(
            req.require_identity(),
            req.match_info["user_id"],
            roles=b.get("roles"),
            disabled=b.get("disabled"),
            ip=req.client_ip,
        )
        return admin_user_json(user)

    async def admin_password_reset(req: Request) -> Any:
        token, expires = await parts().admin.admin_reset(
            req.require_identity(), req.match_info["user_id"], req.client_ip
        )
        return secret({"reset_token": token, "expires_at": iso(expires)}, 201)

    async def admin_audit(req: Request) -> Any:
        event_type = req.query.get("type", "")
        if event_type:
            try:
                audit.check_type(event_type)
            except ValueError:
                raise errors.ValidationFailed(
                    "type must be a dotted lowercase event type (login, login.failed, ...).",
                    errors=[{"path": "/type", "message": "a dotted lowercase name"}],
                ) from None
        user_id = req.query.get("user_id", "")
        before = req.query.get("before", "")
        if len(user_id) > 64 or len(before) > 64:
            raise errors.ValidationFailed(
                "user_id and before are at most 64 characters.",
                errors=[{"path": "/user_id", "message": "at most 64 characters"}],
            )
        limit = req.query_int("limit", 100, 1, 1000)
        events = await parts().audit_log.events(user_id, event_type, before, limit)
        return {"events": events}

    async def me(req: Request) -> Any:
        identity = req.require_identity()
        user = await parts().sessions.me(identity)
        quota_service = services.get(sdk_services.QUOTA)
        if quota_service is None:
            quota = {"tokens_per_day": 0, "used_today": 0}  # ratelimit not running: no quota
        else:
            quota = await quota_service.usage(identity)
        return {"user": user_json(user), "quota": quota}

    async def change_password(req: Request) -> Any:
        b = req.body
        await parts().sessions.change_password(
            req.require_identity(), b["current_password"], b["new_password"], req.client_ip
        )
        return Response(None, 204)

    async def delete_user(req: Request) -> Any:
        await parts().admin.delete_user(
            req.require_identity(), req.match_info["user_id"], req.client_ip
        )
        return Response(None, 204)

    async def create_key(req: Request) -> Any:
        b = req.body
        key = await parts().api_keys.create(
            req.require_identity(), b["name"], b.get("expires_in_days"), req.client_ip
        )
        return secret(key, 201)

    async def list_keys(req: Request) -> Any:
        return await parts().api_keys.list(req.require_identity())

    async def delete_key(req: Request) -> Any:
        await parts().api_keys.delete(
            req.require_identity(), req.match_info["key_id"], req.client_ip
        )
        return Response(None, 204)

    return [
        Route(
            "POST",
            f"{PREFIX}/register",
            register,
            auth="public",
            status=201,
            summary="Create an account",
            request_schema={
                "type": "object",
                "required": ["username", "email", "password"],
                "additionalProperties": False,
                "properties": {
                    "username": {"type": "string", "pattern": r"^[\w.\-]{3,32}$"},
                    "email": {"type": "string", "minLength": 3, "maxLength": 254},
                    "password": PASSWORD,
                },
            },
            response_schema=TOKEN_PAIR,
            responses={403: "Registration is disabled", 409: "Email or username taken"},
            tags=TAGS,
            operation_id="auth_register",
        ),
        Route(
            "POST",
            f"{PREFIX}/login",
            login,
            auth="public",
            summary="Log in with email and password",
            request_schema={
                "type": "object",
                "required": ["email", "password"],
                "additionalProperties": False,
                "properties": {"email": {"type": "string", "maxLength": 254}, "password": PASSWORD},
            },
            response_schema=TOKEN_PAIR,
            responses={401: "Wrong email or password (one message for both)"},
            tags=TAGS,
            operation_id="auth_login",
        ),
        Route(
            "POST",
            f"{PREFIX}/refresh",
            refresh,
            auth="public",
            summary="Trade a refresh token for a new pair (the old one is spent)",
            description="Presenting a refresh token that was already used ends that login: "
            "every token of it stops working.",
            request_schema=REFRESH_BODY,
            response_schema=TOKEN_PAIR,
            responses={401: "Invalid, expired, revoked or reused refresh token"},
            tags=TAGS,
            operation_id="auth_refresh",
        ),
        Route(
            "POST",
            f"{PREFIX}/logout",
            logout,
            auth="public",
            status=204,
            summary="End the login the refresh token belongs to",
            request_schema=REFRESH_BODY,
            responses={401: "Invalid refresh token"},
            tags=TAGS,
            operation_id="auth_logout",
        ),
        Route(
            "GET",
            f"{PREFIX}/me",
            me,
            auth="user",
            summary="The caller's account and today's LLM token quota",
            response_schema={
                "type": "object",
                "required": ["user", "quota"],
                "properties": {"user": USER, "quota": QUOTA},
            },
            responses={404: "The account no longer exists on this server"},
            tags=TAGS,
            operation_id="auth_me",
        ),
        Route(
            "POST",
            f"{PREFIX}/change-password",
            change_password,
            auth="user",
            status=204,
            summary="Change the password; every other login of the user ends",
            request_schema={
                "type": "object",
                "required": ["current_password", "new_password"],
                "additionalProperties": False,
                "properties": {"current_password": PASSWORD, "new_password": PASSWORD},
            },
            responses={403: "The current password is wrong"},
            tags=TAGS,
            operation_id="auth_change_password",
        ),
        Route(
            "DELETE",
            f"{PREFIX}/users/{{user_id}}",
            delete_user,
            auth="user",
            status=204,
            summary="Delete an account (admins: anyone; users: themselves) and all its data",
            responses={403: "Not your account", 404: "No such user"},
            tags=TAGS,
            operation_id="auth_delete_user",
        ),
        Route(
            "POST",
            f"{PREFIX}/api-keys",
            create_key,
            auth="user",
            status=201,
            summary="Create an API key (the key is shown only in this answer)",
            request_schema={
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650},
                },
            },
            response_schema={
                **API_KEY,
                "required": [*API_KEY["required"], "key"],
                "properties": {**API_KEY["properties"], "key": {"type": "string"}},
            },
            tags=TAGS,
            operation_id="auth_create_api_key",
        ),
        Route(
            "GET",
            f"{PREFIX}/api-keys",
            list_keys,
            auth="user",
            summary="The caller's API keys (never the keys themselves)",
            response_schema={"type": "array", "items": API_KEY},
            tags=TAGS,
            operation_id="auth_list_api_keys",
        ),
        Route(
            "DELETE",
            f"{PREFIX}/api-keys/{{key_id}}",
            delete_key,
            auth="user",
            status=204,
            summary="Revoke one of the caller's API keys",
            responses={404: "No such key (or not yours)"},
            tags=TAGS,
            operation_id="auth_delete_api_key",
        ),
        Route(
            "POST",
            f"{PREFIX}/reset-password",
            reset_password,
            auth="public",
            status=204,
            summary="Choose a new password with a one-time reset token",
            description="The token (from an admin or a reset mail) works once; every login "
            "of the user ends.",
            request_schema={
                "type": "object",
                "required": ["reset_token", "new_password"],
                "additionalProperties": False,
                "properties": {
                    "reset_token": {"type": "string", "minLength": 1, "maxLength": 200},
                    "new_password": PASSWORD,
                },
            },
            responses={400: "Unknown, used or expired reset token"},
            tags=TAGS,
            operation_id="auth_reset_password",
        ),
        Route(
            "POST",
            f"{PREFIX}/forgot-password",
            forgot_password,
            auth="public",
            status=202,
            summary="Mail a password-reset token to the account with this email",
            description="The same 202 whether or not an account has this email.",
            request_schema={
                "type": "object",
                "required": ["email"],
                "additionalProperties": False,
                "properties": {"email": {"type": "string", "minLength": 1, "maxLength": 254}},
            },
            response_schema={
                "type": "object",
                "required": ["detail"],
                "properties": {"detail": {"type": "string"}},
            },
            responses={503: "Email is not configured on this server"},
            tags=TAGS,
            operation_id="auth_forgot_password",
        ),
        Route(
            "GET",
            f"{ADMIN}/users",
            admin_list_users,
            auth="admin",
            summary="List and search accounts (oldest first)",
            query_schema={
                "type": "object",
                "properties": {
                    "q": {
                        "type": "string",
                        "maxLength": 254,
                        "description": "part of the username or email (any case)",
                    },
                    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    "offset": {"type": "integer", "minimum": 0, "default": 0},
                },
            },
            response_schema={
                "type": "object",
                "required": ["users", "total"],
                "properties": {
                    "users": {"type": "array", "items": ADMIN_USER},
                    "total": {"type": "integer", "description": "accounts matching q in all"},
                },
            },
            tags=ADMIN_TAGS,
            operation_id="admin_list_users",
        ),
        Route(
            "GET",
            f"{ADMIN}/users/{{user_id}}",
            admin_get_user,
            auth="admin",
            summary="One account",
            response_schema=ADMIN_USER,
            responses={404: "No such user"},
            tags=ADMIN_TAGS,
            operation_id="admin_get_user",
        ),
        Route(
            "PATCH",
            f"{ADMIN}/users/{{user_id}}",
            admin_update_user,
            auth="admin",
            summary="Set an account's roles or disable it",
            description="A removed role, or disabling, takes effect at once on every instance: "
            "the user's earlier access tokens stop working (a removed role comes back only "
            "with a fresh token, so the client refreshes). Disabling also ends every refresh "
            "token, API key and open WebSocket of the user. Every account keeps the role "
            "'user'. Removing the admin role from (or disabling) the last enabled admin is 409.",
            request_schema={
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "roles": {
                        "type": "array",
                        "items": {"enum": list(KNOWN_ROLES)},
                        "maxItems": len(KNOWN_ROLES),
                        "uniqueItems": True,
                    },
                    "disabled": {"type": "boolean"},
                },
            },
            response_schema=ADMIN_USER,
            responses={404: "No such user", 409: "It would leave no enabled admin"},
            tags=ADMIN_TAGS,
            operation_id="admin_update_user",
        ),
        Route(
            "POST",
            f"{ADMIN}/users/{{user_id}}/password-reset",
            admin_password_reset,
            auth="admin",
            status=201,
            summary="Issue a one-time password-reset token (shown only in this answer)",
            description="Give it to the user, who sends it to POST /api/v1/auth/reset-password. "
            "A new token replaces the user's earlier unused ones.",
            response_schema={
                "type": "object",
                "required": ["reset_token", "expires_at"],
                "properties": {
                    "reset_token": {"type": "string"},
                    "expires_at": {"type": "string", "format": "date-time"},
                },
            },
            responses={404: "No such user"},
            tags=ADMIN_TAGS,
            operation_id="admin_password_reset",
        ),
        Route(
            "GET",
            f"{ADMIN}/audit",
            admin_audit,
            auth="admin",
            summary="The audit log, newest first",
            query_schema={
                "type": "object",
                "properties": {
                    "user_id": {
                        "type": "string",
                        "description": "events about this user or done by them",
                    },
                    "type": {
                        "type": "string",
                        "description": "a type ('login.failed') or a prefix of types ('login')",
                    },
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    "before": {
                        "type": "string",
                        "description": "the event_id of the last event seen (next page), "
                        "or an ISO 8601 time",
                    },
                },
            },
            response_schema={
                "type": "object",
                "required": ["events"],
                "properties": {"events": {"type": "array", "items": AUDIT_EVENT}},
            },
            tags=ADMIN_TAGS,
            operation_id="admin_audit",
        ),
    ]
