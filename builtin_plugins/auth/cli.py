"""``llmmultichat users create-admin | list | set-role | disable | enable | reset-password``.

Each command is one operation (:func:`execute`) that runs either here, on a store this
process opens, or inside the running server, sent over its admin socket
(:mod:`.control`): the command tries the socket first, so it works whether or not the
server is running. Passwords are asked for here, never by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sdk import CliCommand, control, errors

from .admin import Administration
from .settings import SOCKET_NAME
from .views import iso


class HasAdmin(Protocol):
    """What a command needs of the plugin that runs it (the kernel passes the plugin)."""

    admin: Administration


PASSWORD_ENV = "LLMMC_ADMIN_PASSWORD"
NEW_PASSWORD_ENV = "LLMMC_NEW_PASSWORD"

Call = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class _NeedPassword(Exception):
    pass


def _ask_password(prompt: str) -> str | None:
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(f"{prompt}: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        print("The passwords do not match.", file=sys.stderr)
        return None
    return first


async def _user(admin: Administration, ref: str) -> Any:
    user = await admin.find_user(ref)
    if user is None:
        raise errors.NotFound(f"no such user: {ref} (give an email, user_id or username)")
    return user


def _line(user: Any) -> str:
    state = "disabled" if user.disabled else "enabled"
    return f"{user.username} <{user.email}> user_id={user.user_id} roles={','.join(user.roles)} {state}"


async def _run(admin: Administration, op: str, p: dict[str, Any], out: io.StringIO) -> None:
    if op == "ping":
        out.write("pong\n")
    elif op == "create-admin":
        exists = await admin.store.user_by_email(p["email"]) is not None
        if not exists and not p.get("password"):
            raise _NeedPassword(f"a password is needed: set ${PASSWORD_ENV} or run in a terminal")
        user, created = await admin.promote_admin(p["email"], p["username"], p.get("password"))
        out.write(f"admin {'created' if created else 'promoted'}: {_line(user)}\n")
    elif op == "list":
        if not (1 <= p["limit"] <= 1000 and p["offset"] >= 0):
            raise errors.BadRequest("--limit must be 1 to 1000 and --offset at least 0")
        users, total = await admin.list_users(p.get("query") or "", p["limit"], p["offset"])
        out.write(
            "USER_ID                               USERNAME  EMAIL  ROLES  STATE  LAST_LOGIN\n"
        )
        for u in users:
            state = "disabled" if u.disabled else "enabled"
            last = iso(u.last_login_at) or "-"
            out.write(
                f"{u.user_id}  {u.username}  {u.email}  {','.join(u.roles)}  {state}  {last}\n"
            )
        out.write(f"({len(users)} of {total} users)\n")
    elif op == "set-role":
        user = await _user(admin, p["user"])
        user = await admin.update_user(None, user.user_id, roles=list(p["roles"]))
        out.write(f"roles set: {_line(user)}\n")
    elif op in ("disable", "enable"):
        user = await _user(admin, p["user"])
        user = await admin.update_user(None, user.user_id, disabled=op == "disable")
        out.write(f"{op}d: {_line(user)}\n")
    elif op == "reset-password":
        user = await _user(admin, p["user"])
        if p.get("set"):
            if not p.get("password"):
                raise _NeedPassword(
                    f"a password is needed: set ${NEW_PASSWORD_ENV} or run in a terminal"
                )
            await admin.set_password(user.user_id, p["password"])
            out.write(f"password set; every login of {user.email} has ended\n")
        else:
            token, expires = await admin.admin_reset(None, user.user_id)
            out.write(
                f"reset token for {user.email} (works once, until {iso(expires)}):\n{token}\n"
            )
    else:
        raise errors.BadRequest(f"unknown operation {op!r}")


async def execute(admin: Administration, message: dict[str, Any]) -> dict[str, Any]:
    """Run one operation; the answer is ``{code, out, err}`` (plus ``need_password``)."""
    out = io.StringIO()
    try:
        params = message.get("params")
        await _run(admin, str(message.get("op")), params if isinstance(params, dict) else {}, out)
    except _NeedPassword as exc:
        return {"code": 2, "out": out.getvalue(), "err": f"{exc}\n", "need_password": True}
    except errors.Problem as exc:
        err = f"error: {exc.detail}\n" + "".join(
            f"  {item['path']}: {item['message']}\n" for item in exc.errors or []
        )
        return {"code": 1, "out": out.getvalue(), "err": err}
    except (KeyError, TypeError, ValueError) as exc:
        return {"code": 2, "out": out.getvalue(), "err": f"bad request: {exc!r}\n"}
    return {"code": 0, "out": out.getvalue(), "err": ""}


async def _drive(call: Call, op: str, params: dict[str, Any]) -> int:
    """Send the operation; ask for a password when it needs one, then send it again."""
    while True:
        answer = await call({"op": op, "params": params})
        if answer.get("need_password") and "password" not in params:
            prompt = "Password for the new admin" if op == "create-admin" else "New password"
            password = await asyncio.to_thread(_ask_password, prompt)
            if password is not None:
                params["password"] = password
                continue
        sys.stdout.write(str(answer.get("out", "")))
        sys.stderr.write(str(answer.get("err", "")))
        return int(answer.get("code", 1))


def _params(op: str, args: argparse.Namespace) -> dict[str, Any]:
    if op == "create-admin":
        p: dict[str, Any] = {"email": args.email, "username": args.username}
        env = os.environ.get(PASSWORD_ENV)
    elif op == "list":
        return {"query": args.query or "", "limit": args.limit, "offset": args.offset}
    elif op == "set-role":
        return {"user": args.user, "roles": [r for a in args.roles for r in a.split(",") if r]}
    elif op == "reset-password":
        p = {"user": args.user, "set": args.set}
        env = os.environ.get(NEW_PASSWORD_ENV) if args.set else None
    else:
        return {"user": args.user}
    if env:
        p["password"] = env
    return p


def _command(op: str, help_text: str, arguments: list[Any]) -> CliCommand:
    async def run(plugin: HasAdmin, args: argparse.Namespace) -> int:
        async def local(message: dict[str, Any]) -> dict[str, Any]:
            return await execute(plugin.admin, message)

        return await _drive(local, op, _params(op, args))

    async def via_server(data_dir: Path, args: argparse.Namespace) -> int | None:
        path = data_dir / SOCKET_NAME
        if not path.exists():
            return None

        async def remote(message: dict[str, Any]) -> dict[str, Any]:
            return await control.request(path, message)

        try:
            return await _drive(remote, op, _params(op, args))
        except control.NoServer:
            return None  # a socket left by a server that is gone: open the store here

    return CliCommand(
        name=f"users {op}",
        help=help_text,
        run=run,
        arguments=arguments,
        plugin="auth",
        via_server=via_server,
    )


USER_ARG = (("user",), {"help": "the account: its email, user_id or username"})


def commands() -> list[CliCommand]:
    return [
        _command(
            "create-admin",
            "create an admin account, or give the admin role to an existing one "
            f"(password from ${PASSWORD_ENV} or a prompt)",
            [
                (("--email",), {"required": True, "help": "the account's email"}),
                (("--username",), {"required": True, "help": "username for a new account"}),
            ],
        ),
        _command(
            "list",
            "list accounts (oldest first)",
            [
                (("--query", "-q"), {"help": "only usernames or emails containing this"}),
                (("--limit",), {"type": int, "default": 100}),
                (("--offset",), {"type": int, "default": 0}),
            ],
        ),
        _command(
            "set-role",
            "set an account's roles, e.g. 'admin' or 'user' (every account keeps 'user')",
            [USER_ARG, (("roles",), {"nargs": "+", "help": "roles: user, admin"})],
        ),
        _command("disable", "disable an account: every login, API key and socket ends", [USER_ARG]),
        _command("enable", "enable a disabled account again", [USER_ARG]),
        _command(
            "reset-password",
            "print a one-time password-reset token for an account, or with --set choose "
            f"the new password here (from ${NEW_PASSWORD_ENV} or a prompt)",
            [
                USER_ARG,
                (("--set",), {"action": "store_true", "help": "set the password directly"}),
            ],
        ),
    ]
