"""HTTP routes of the auth plugin (``/api/v1/auth``): thin handlers over :mod:`.accounts`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sdk import Request, Response, Route, services

from .accounts import Accounts, user_json

if TYPE_CHECKING:
    from .plugin import AuthPlugin

PREFIX = "/api/v1/auth"
TAGS = ["auth"]

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


def build_routes(plugin: AuthPlugin) -> list[Route]:
    def accounts() -> Accounts:
        return plugin.accounts

    async def register(req: Request) -> Any:
        b = req.body
        return secret(await accounts().register(b["username"], b["email"], b["password"]), 201)

    async def login(req: Request) -> Any:
        return secret(await accounts().login(req.body["email"], req.body["password"]))

    async def refresh(req: Request) -> Any:
        return secret(await accounts().refresh(req.body["refresh_token"]))

    async def logout(req: Request) -> Any:
        await accounts().logout(req.body["refresh_token"])
        return Response(None, 204)

    async def me(req: Request) -> Any:
        identity = req.require_identity()
        user = await accounts().me(identity)
        quota_service = plugin.context.services.get(services.QUOTA)
        if quota_service is None:
            quota = {"tokens_per_day": 0, "used_today": 0}  # ratelimit not running: no quota
        else:
            quota = await quota_service.usage(identity)
        return {"user": user_json(user), "quota": quota}

    async def change_password(req: Request) -> Any:
        b = req.body
        await accounts().change_password(
            req.require_identity(), b["current_password"], b["new_password"]
        )
        return Response(None, 204)

    async def delete_user(req: Request) -> Any:
        await accounts().delete_user(req.require_identity(), req.match_info["user_id"])
        return Response(None, 204)

    async def create_key(req: Request) -> Any:
        b = req.body
        key = await accounts().create_api_key(
            req.require_identity(), b["name"], b.get("expires_in_days")
        )
        return secret(key, 201)

    async def list_keys(req: Request) -> Any:
        return await accounts().list_api_keys(req.require_identity())

    async def delete_key(req: Request) -> Any:
        await accounts().delete_api_key(req.require_identity(), req.match_info["key_id"])
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
    ]
