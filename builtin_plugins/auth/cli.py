"""``llmmultichat users create-admin --email E --username U``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import TYPE_CHECKING

from sdk import CliCommand, errors

if TYPE_CHECKING:
    from .plugin import AuthPlugin

PASSWORD_ENV = "LLMMC_ADMIN_PASSWORD"


def _ask_password() -> str | None:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("Password for the new admin: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        print("The passwords do not match.", file=sys.stderr)
        return None
    return first


async def create_admin(plugin: AuthPlugin, args: argparse.Namespace) -> int:
    accounts = plugin.accounts
    existing = await accounts.store.user_by_email(args.email)
    password = None
    if existing is None:
        password = await asyncio.to_thread(_ask_password)
        if password is None:
            print(
                f"A password is needed: set ${PASSWORD_ENV} or run this in a terminal.",
                file=sys.stderr,
            )
            return 2
    try:
        user, created = await accounts.promote_admin(args.email, args.username, password)
    except errors.Problem as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        for item in exc.errors or []:
            print(f"  {item['path']}: {item['message']}", file=sys.stderr)
        return 1
    action = "created" if created else "promoted"
    print(f"admin {action}: {user.username} <{user.email}> user_id={user.user_id}")
    return 0


def commands(plugin: AuthPlugin) -> list[CliCommand]:
    async def run(p: AuthPlugin, args: argparse.Namespace) -> int:
        return await create_admin(p, args)

    return [
        CliCommand(
            name="users create-admin",
            help="create an admin account, or give the admin role to an existing one "
            f"(password from a prompt or ${PASSWORD_ENV})",
            run=run,
            arguments=[
                (("--email",), {"required": True, "help": "the account's email"}),
                (("--username",), {"required": True, "help": "username for a new account"}),
            ],
            plugin="auth",
        )
    ]
