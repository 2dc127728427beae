"""One user cannot read, change or delete another's account or keys; admins can delete anyone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kernel.testing import start_kernel

from .conftest import JWT_SECRET, PASSWORD, Accounts, auth_config, bearer

VENV_BIN = Path(sys.executable).parent


async def test_users_cannot_touch_each_other(server, accounts):
    alice = await accounts.register()
    bob = await accounts.register()
    a, b = bearer(alice["access_token"]), bearer(bob["access_token"])
    r = await server.post("/api/v1/auth/api-keys", json={"name": "bob's"}, headers=b)
    bob_key = await r.json()

    # read: /me is always the caller; listing shows only the caller's keys
    me = await (await server.get("/api/v1/auth/me", headers=a)).json()
    assert me["user"]["user_id"] == alice["user"]["user_id"]
    assert await (await server.get("/api/v1/auth/api-keys", headers=a)).json() == []

    # delete another's key: 404, and the key still works
    r = await server.delete(f"/api/v1/auth/api-keys/{bob_key['key_id']}", headers=a)
    assert r.status == 404
    assert (await accounts.me(bob_key["key"])).status == 200

    # delete another user: 403, and bob is still there
    r = await server.delete(f"/api/v1/auth/users/{bob['user']['user_id']}", headers=a)
    assert r.status == 403
    r = await server.delete("/api/v1/auth/users/00000000-0000-0000-0000-000000000000", headers=a)
    assert r.status == 403
    assert (await accounts.me(bob["access_token"])).status == 200

    # change: change-password only ever applies to the caller
    r = await server.post(
        "/api/v1/auth/change-password",
        json={"current_password": PASSWORD, "new_password": "Alice-n3w-pass"},
        headers=a,
    )
    assert r.status == 204
    await accounts.login(bob["user"]["email"], PASSWORD)

    # using bob's refresh token logs out bob, not alice; nobody can refresh with garbage
    r = await server.post("/api/v1/auth/logout", json={"refresh_token": bob["refresh_token"]})
    assert r.status == 204
    assert (await accounts.me(alice["access_token"])).status == 200


def write_config(path: Path, data_dir: Path) -> Path:
    path.write_text(
        f"""
[kernel]
data_dir = "{data_dir}"

[plugins]
enabled = ["storage", "auth"]
required = ["auth"]

[plugins.auth]
jwt_secret = "{JWT_SECRET}"
bcrypt_rounds = 4
"""
    )
    return path


def create_admin(
    config: Path, email: str, username: str, password: str | None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LLMMC_ADMIN_PASSWORD"}
    if password is not None:
        env["LLMMC_ADMIN_PASSWORD"] = password
    return subprocess.run(
        [
            str(VENV_BIN / "llmmultichat"),
            "users",
            "create-admin",
            "--config",
            str(config),
            "--email",
            email,
            "--username",
            username,
        ],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


async def test_create_admin_cli_and_admin_powers(tmp_path):
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "plugins.toml", data_dir)

    # no password and no terminal: refused
    r = create_admin(config, "root@example.com", "root", None)
    assert r.returncode == 2, r.stderr
    # weak password: refused with the policy's message
    r = create_admin(config, "root@example.com", "root", "weakweak")
    assert r.returncode == 1 and "weak" in r.stderr.lower(), r.stderr
    r = create_admin(config, "root@example.com", "root", "R00t-password")
    assert r.returncode == 0, r.stderr
    assert "admin created" in r.stdout

    cfg = auth_config(enabled=("auth",))
    cfg["kernel"] = {"data_dir": str(data_dir)}
    server = await start_kernel(cfg, data_dir=data_dir)
    try:
        accounts = Accounts(server)
        admin = await accounts.login("root@example.com", "R00t-password")
        assert admin["user"]["roles"] == ["user", "admin"]
        carol = await accounts.register()
        dave = await accounts.register()
        r = await server.delete(
            f"/api/v1/auth/users/{carol['user']['user_id']}", headers=bearer(admin["access_token"])
        )
        assert r.status == 204
        assert (await accounts.me(carol["access_token"])).status == 401
        r = await server.delete(
            f"/api/v1/auth/users/{carol['user']['user_id']}", headers=bearer(admin["access_token"])
        )
        assert r.status == 404
    finally:
        await server.close()

    # promoting an existing account needs no password
    r = create_admin(config, dave["user"]["email"].upper(), "ignored", None)
    assert r.returncode == 0, r.stderr
    assert "admin promoted" in r.stdout
    server = await start_kernel(cfg, data_dir=data_dir)
    try:
        again = await Accounts(server).login(dave["user"]["email"])
        assert again["user"]["roles"] == ["user", "admin"]
    finally:
        await server.close()
