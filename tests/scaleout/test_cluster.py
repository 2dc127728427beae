"""Three ``serve`` processes on one PostgreSQL database and one Redis act as one server:
everything made or changed through one holds on the others, before the response returns."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from typing import Any

import aiohttp
import pytest

from tests.serverproc import BIN, ServerProcess, wait_for

from .conftest import PASSWORD, bearer, login, register, status_of

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
ME = "/api/v1/auth/me"


async def test_an_account_made_on_one_process_is_the_same_on_all(cluster: Any) -> None:
    a, b, c = cluster
    user = await register(a)
    tokens = await login(b, user["email"])  # B knows the account A made
    status, me, _ = await c.request("GET", ME, headers=bearer(tokens["access_token"]))
    assert status == 200 and me["user"]["user_id"] == user["user"]["user_id"]
    # the same email once only, whichever process is asked
    body = {
        "username": "other_" + user["user"]["username"][2:],
        "email": user["email"],
        "password": PASSWORD,
    }
    status, problem, _ = await b.request("POST", "/api/v1/auth/register", json=body)
    assert status == 409, problem


async def test_account_changes_are_in_force_everywhere_before_the_response(cluster: Any) -> None:
    a, b, c = cluster
    user = await register(a)
    logins = [await login(s, user["email"]) for s in (a, b, c)]
    # an API key made on A, used (and so cached) on B and C
    status, key, _ = await a.request(
        "POST",
        "/api/v1/auth/api-keys",
        json={"name": "k"},
        headers=bearer(logins[0]["access_token"]),
    )
    assert status == 201
    for s in (b, c):
        assert await status_of(s, "GET", ME, key["key"]) == 200
    status, _, _ = await a.request(
        "DELETE",
        f"/api/v1/auth/api-keys/{key['key_id']}",
        headers=bearer(logins[0]["access_token"]),
    )
    assert status == 204
    for s in (b, c):
        assert await status_of(s, "GET", ME, key["key"]) == 401

    # logout on B: that login fails on A and C at once; the others go on
    status, _, _ = await b.request(
        "POST", "/api/v1/auth/logout", json={"refresh_token": logins[1]["refresh_token"]}
    )
    assert status == 204
    for s in (a, c):
        assert await status_of(s, "GET", ME, logins[1]["access_token"]) == 401
        assert await status_of(s, "GET", ME, logins[2]["access_token"]) == 200

    # password change on C (with login 2): login 0 fails everywhere, the old password too
    status, _, _ = await c.request(
        "POST",
        "/api/v1/auth/change-password",
        json={"current_password": PASSWORD, "new_password": "N3w-password!"},
        headers=bearer(logins[2]["access_token"]),
    )
    assert status == 204
    for s in (a, b):
        assert await status_of(s, "GET", ME, logins[0]["access_token"]) == 401
        assert await status_of(s, "GET", ME, logins[2]["access_token"]) == 200
    status, _, _ = await a.request(
        "POST", "/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    assert status == 401
    fresh = await login(b, user["email"], "N3w-password!")
    # an old refresh token (cached nowhere, but read through A) is refused too
    status, _, _ = await a.request(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": logins[0]["refresh_token"]}
    )
    assert status == 401

    # deletion through A: every token fails on B and C
    status, _, _ = await a.request(
        "DELETE",
        f"/api/v1/auth/users/{user['user']['user_id']}",
        headers=bearer(fresh["access_token"]),
    )
    assert status == 204
    for s in (b, c):
        for tokens in (fresh, logins[2]):
            assert await status_of(s, "GET", ME, tokens["access_token"]) == 401


async def test_a_role_change_made_while_serving_shows_on_every_process(cluster: Any) -> None:
    """``users create-admin`` run beside the servers promotes an account: every process
    shows the new roles at once (their cached copies of the user are dropped)."""
    a, b, c = cluster
    user = await register(a)
    token = user["access_token"]
    for s in (a, b, c):  # each process caches the user
        status, me, _ = await s.request("GET", ME, headers=bearer(token))
        assert me["user"]["roles"] == ["user"]
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(BIN),
            "users",
            "create-admin",
            "--config",
            str(a.config_path),
            "--email",
            user["email"],
            "--username",
            user["user"]["username"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLMMC_ADMIN_PASSWORD": PASSWORD},
    )
    assert done.returncode == 0, done.stderr
    for s in (a, b, c):
        status, me, _ = await s.request("GET", ME, headers=bearer(token))
        assert status == 200 and sorted(me["user"]["roles"]) == ["admin", "user"]


async def test_memories_across_processes(cluster: Any) -> None:
    a, b, c = cluster
    user = await register(a)
    auth = bearer(user["access_token"])
    for i in range(3):  # enough for each process to search through its index
        status, _, _ = await a.request(
            "POST", "/api/v1/memory", json={"content": f"filler memory number {i}"}, headers=auth
        )
        assert status == 201
    query = {"query": "the lighthouse keeper named Orla", "top_k": 3}
    for s in (a, b, c):  # each process loads the user's index
        status, _found, _ = await s.request(
            "POST", "/api/v1/memory/search", json=query, headers=auth
        )
        assert status == 200

    status, made, _ = await a.request(
        "POST",
        "/api/v1/memory",
        json={"content": "The lighthouse keeper is named Orla."},
        headers=auth,
    )
    assert status == 201
    written = time.monotonic()

    async def found_on(s: ServerProcess) -> bool:
        _, res, _ = await s.request("POST", "/api/v1/memory/search", json=query, headers=auth)
        return made["memory_id"] in [m["memory_id"] for m in res["results"]]

    for s in (b, c):
        assert await wait_for(lambda s=s: found_on(s), timeout=1.0)
    assert time.monotonic() - written < 2.0

    status, _, _ = await c.request("DELETE", f"/api/v1/memory/{made['memory_id']}", headers=auth)
    assert status == 204
    for s in (a, b, c):  # never again, from the moment DELETE returned
        assert not await found_on(s)
        status, _, _ = await s.request("GET", f"/api/v1/memory/{made['memory_id']}", headers=auth)
        assert status == 404


async def _rest_turn(server: ServerProcess, token: str, session_id: str, text: str) -> str:
    status, reply, _ = await server.request(
        "POST",
        "/api/v1/chat",
        json={"user_input": text, "session_id": session_id},
        headers=bearer(token),
    )
    assert status == 200, reply
    return str(reply["response"])


async def _sse_turn(server: ServerProcess, token: str, session_id: str, text: str) -> str:
    reply = ""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/api/v1/chat/stream",
            json={"user_input": text, "session_id": session_id},
            headers=bearer(token),
        ) as r,
    ):
        assert r.status == 200
        event = ""
        async for raw in r.content:
            line = raw.decode().strip()
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "chunk":
                reply += json.loads(line[5:])["delta"]
    return reply


async def _ws_turn(server: ServerProcess, token: str, session_id: str, text: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url.replace("http", "ws") + "/ws/chat", headers=bearer(token)) as ws,
    ):
        await ws.send_json(
            {"type": "chat", "message": text, "session_id": session_id, "request_id": "r1"}
        )
        reply = ""
        while True:
            frame = await ws.receive_json(timeout=30)
            if frame["type"] == "chunk":
                reply += frame["data"]
            if frame["type"] in ("complete", "error"):
                assert frame["type"] == "complete", frame
                return reply


async def test_a_session_continues_on_other_processes_over_rest_sse_and_websocket(
    cluster: Any,
) -> None:
    a, b, c = cluster
    user = await register(a)
    token = user["access_token"]
    status, first, _ = await a.request(
        "POST", "/api/v1/chat", json={"user_input": "hello from A"}, headers=bearer(token)
    )
    assert status == 200, first
    session_id = first["session_id"]
    assert "seen 1 user turns" in first["response"]
    assert "seen 2 user turns" in await _sse_turn(b, token, session_id, "hello from B")
    assert "seen 3 user turns" in await _ws_turn(c, token, session_id, "hello from C")
    assert "seen 4 user turns" in await _rest_turn(b, token, session_id, "back on B")
    for s in (a, b, c):
        status, history, _ = await s.request(
            "GET", f"/api/v1/chat/history/{session_id}", headers=bearer(token)
        )
        assert status == 200
        users = [m["content"] for m in history["messages"] if m["role"] == "user"]
        assert users == ["hello from A", "hello from B", "hello from C", "back on B"]


async def test_one_process_killed_mid_stream_the_others_serve_and_it_rejoins(
    cluster: Any, upstream: Any
) -> None:
    a, b, c = cluster
    user = await register(a)
    token = user["access_token"]
    status, first, _ = await b.request(
        "POST", "/api/v1/chat", json={"user_input": "before"}, headers=bearer(token)
    )
    session_id = first["session_id"]
    upstream.fake.queue(chunks=["slow "] * 200, chunk_delay=0.05)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            c.url + "/api/v1/chat/stream",
            json={"user_input": "a long story", "session_id": session_id},
            headers=bearer(token),
        ) as r,
    ):
        assert r.status == 200
        seen = 0
        async for raw in r.content:
            if raw.startswith(b"event: chunk"):
                seen += 1
                if seen == 3:
                    break
        assert c.proc is not None
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)
    # the others go on, with the same accounts and sessions
    for s in (a, b):
        assert await status_of(s, "GET", ME, token) == 200
        await _rest_turn(s, token, session_id, "still here")
    # C comes back on its port and rejoins: old tokens, the shared session, revocations
    c.start(wait=True, timeout=120)
    assert await status_of(c, "GET", ME, token) == 200
    await _rest_turn(c, token, session_id, "C is back")
    other = await login(a, user["email"])
    status, _, _ = await a.request(
        "POST", "/api/v1/auth/logout", json={"refresh_token": other["refresh_token"]}
    )
    assert status == 204
    assert await status_of(c, "GET", ME, other["access_token"]) == 401
