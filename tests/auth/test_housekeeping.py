"""Expired refresh tokens (and used reset tokens) are deleted by the periodic pruning."""

from __future__ import annotations

import asyncio
import time

from builtin_plugins.auth import housekeeping

from .conftest import Accounts, auth_config


async def refresh_hashes(server) -> set[str]:
    db = server.plugin("auth").context.database
    return {row[0] for row in await db.fetchall("SELECT token_hash FROM auth_refresh_tokens")}


async def test_expired_refresh_tokens_are_pruned_and_live_ones_stay(
    llmmc, database_url, monkeypatch
):
    monkeypatch.setattr(housekeeping, "PRUNE_EVERY_SECONDS", 0.2)
    server = await llmmc(auth_config(), database_url=database_url)
    accounts = Accounts(server)
    user = await accounts.register()
    user_id = user["user"]["user_id"]
    live = await refresh_hashes(server)
    assert len(live) == 1

    db = server.plugin("auth").context.database
    now = time.time()
    insert = (
        "INSERT INTO auth_refresh_tokens (token_hash, family_id, user_id, issued_at, "
        "expires_at) VALUES ($1, $2, $3, $4, $5)"
    )
    # long expired (a week ago): goes
    await db.execute(insert, ["old-expired", "fam-old", user_id, now - 14 * 86400, now - 7 * 86400])
    # expired a moment ago: its login's last access token may still be alive, so it stays
    # one access-token lifetime more (logout with it still ends that login)
    await db.execute(insert, ["just-expired", "fam-new", user_id, now - 86400, now - 5])

    deadline = time.monotonic() + 5
    while "old-expired" in await refresh_hashes(server):
        assert time.monotonic() < deadline, "the expired refresh token was never deleted"
        await asyncio.sleep(0.1)
    left = await refresh_hashes(server)
    assert live <= left and "just-expired" in left

    # the live login still refreshes
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status == 200, await r.text()
