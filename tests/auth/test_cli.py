"""``llmmultichat users ...`` while the server runs (through its admin socket) and while it
does not (opening the store itself)."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.serverproc import ServerProcess

from .conftest import JWT_SECRET, PASSWORD, bearer

BIN = Path(sys.executable).parent / "llmmultichat"
CONFIG = {
    "plugins": {
        "enabled": ["auth"],
        "required": ["auth"],
        "auth": {"jwt_secret": JWT_SECRET, "bcrypt_rounds": 4},
    }
}


async def cli(server: ServerProcess, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LLMMC_ADMIN_PASSWORD", "LLMMC_NEW_PASSWORD")
    }
    return await asyncio.to_thread(
        subprocess.run,
        [str(BIN), "users", args[0], "--config", str(server.config_path), *args[1:]],
        capture_output=True,
        text=True,
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


async def code_of(method, url, **kw) -> int:
    return (await call(method, url, **kw))[0]


async def call(method, url, **kw):
    async with aiohttp.ClientSession() as s, s.request(method, url, **kw) as r:
        return r.status, await r.json(content_type=None) if r.status != 204 else None


async def test_users_commands_beside_a_running_server(tmp_path):
    server = ServerProcess(CONFIG, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        url = server.base_url + "/api/v1"
        r = await cli(
            server,
            "create-admin",
            "--email",
            "root@example.com",
            "--username",
            "root",
            LLMMC_ADMIN_PASSWORD="R00t-password",
        )
        assert r.returncode == 0 and "admin created" in r.stdout, r.stderr
        sock = Path(server.config_path.parent / "server-data" / "auth-admin.sock")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        status, bob = await call(
            "POST",
            url + "/auth/register",
            json={"username": "bob", "email": "bob@example.com", "password": PASSWORD},
        )
        assert status == 201
        status, root = await call(
            "POST",
            url + "/auth/login",
            json={"email": "root@example.com", "password": "R00t-password"},
        )
        assert status == 200 and root["user"]["roles"] == ["user", "admin"]

        r = await cli(server, "list")
        assert (
            r.returncode == 0 and "root@example.com" in r.stdout and "bob@example.com" in r.stdout
        )
        assert "(2 of 2 users)" in r.stdout
        r = await cli(server, "set-role", "bob", "admin")
        assert r.returncode == 0 and "roles=user,admin" in r.stdout, r.stderr
        status, fresh = await call(
            "POST", url + "/auth/refresh", json={"refresh_token": bob["refresh_token"]}
        )
        assert fresh["user"]["roles"] == ["user", "admin"]
        assert (
            await code_of("GET", url + "/admin/users", headers=bearer(fresh["access_token"])) == 200
        )

        r = await cli(server, "disable", "bob@example.com")
        assert r.returncode == 0 and "disabled" in r.stdout, r.stderr
        assert await code_of("GET", url + "/auth/me", headers=bearer(fresh["access_token"])) == 401
        login_bob = {"email": "bob@example.com", "password": PASSWORD}
        assert await code_of("POST", url + "/auth/login", json=login_bob) == 403
        r = await cli(server, "enable", bob["user"]["user_id"])
        assert r.returncode == 0, r.stderr
        assert await code_of("POST", url + "/auth/login", json=login_bob) == 200

        r = await cli(server, "reset-password", "bob")
        assert r.returncode == 0, r.stderr
        token = re.search(r"^(rst_\S+)$", r.stdout, re.M).group(1)
        status, _ = await call(
            "POST",
            url + "/auth/reset-password",
            json={"reset_token": token, "new_password": "N3w-password"},
        )
        assert status == 204
        r = await cli(server, "reset-password", "bob", "--set", LLMMC_NEW_PASSWORD="Th1rd-password")
        assert r.returncode == 0, r.stderr
        login_bob["password"] = "Th1rd-password"
        assert await code_of("POST", url + "/auth/login", json=login_bob) == 200

        # the rules hold on the command line too
        r = await cli(server, "set-role", "bob", "user")
        assert r.returncode == 0
        r = await cli(server, "set-role", "root", "user")
        assert r.returncode == 1 and "last enabled admin" in r.stderr
        r = await cli(server, "reset-password", "bob", "--set")  # no password, no terminal
        assert r.returncode == 2 and "LLMMC_NEW_PASSWORD" in r.stderr

        status, audit = await call(
            "GET",
            url + "/admin/audit",
            params={"type": "user"},
            headers=bearer(root["access_token"]),
        )
        kinds = [e["type"] for e in audit["events"]]
        assert kinds.count("user.roles") == 2 and "user.disabled" in kinds
    finally:
        server.stop()

    # with the server stopped, the command opens the store itself
    assert sock.name not in os.listdir(sock.parent)
    r = await cli(server, "list")
    assert r.returncode == 0 and "bob@example.com" in r.stdout, r.stderr


async def test_a_plugin_whose_commands_cannot_load_says_why(tmp_path):
    config = {**CONFIG, "plugins": {**CONFIG["plugins"], "auth": {"bcrypt_rounds": 2}}}
    server = ServerProcess(config, tmp_path)  # not started: only its config file is used
    r = await cli(server, "list")
    assert r.returncode == 2
    assert "plugin 'auth' offers no commands" in r.stderr and "bcrypt_rounds" in r.stderr, r.stderr
