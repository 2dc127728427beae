"""The audit log: what is recorded, the filters, paging, pruning, and other plugins' events."""

from __future__ import annotations

import time
import uuid

from sdk import Plugin, Route, audit, hookimpl
from sdk.events import Event

from .conftest import PASSWORD, Accounts, auth_config, bearer, make_admin

AUDIT = "/api/v1/admin/audit"


class Flusher(Plugin):
    """A third-party plugin that adds its own audit event type through the SDK."""

    name = "flusher"

    @hookimpl
    def register_routes(self):
        async def flush(req):
            await audit.record(
                self.context.bus,
                "flusher.flushed",
                user_id=req.identity.user_id,
                ip=req.client_ip,
                detail={"deleted": 3},
            )
            return {"ok": True}

        return [Route("POST", "/api/v1/flusher/flush", flush, auth="user")]


async def events_of(server, admin, **params):
    r = await server.get(AUDIT, params=params, headers=bearer(admin["access_token"]))
    assert r.status == 200, await r.text()
    return (await r.json())["events"]


async def test_what_the_audit_log_records(llmmc, database_url):
    cfg = auth_config()
    cfg["plugins"]["enabled"].append("flusher")
    server = await llmmc(cfg, plugins={"flusher": Flusher}, database_url=database_url)
    accounts = Accounts(server)
    root = await make_admin(server, accounts)
    root_id = root["user"]["user_id"]
    bob = await accounts.register()
    bob_id = bob["user"]["user_id"]
    hb = bearer(bob["access_token"])

    r = await server.post(
        "/api/v1/auth/login", json={"email": bob["user"]["email"], "password": "Wr0ng-pass"}
    )
    assert r.status == 401
    ghost = f"ghost-{uuid.uuid4().hex[:6]}@example.com"
    await server.post("/api/v1/auth/login", json={"email": ghost, "password": "Wr0ng-pass"})
    login = await accounts.login(bob["user"]["email"])
    await server.post("/api/v1/auth/logout", json={"refresh_token": login["refresh_token"]})
    r = await server.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=hb)
    key_id = (await r.json())["key_id"]
    await server.delete(f"/api/v1/auth/api-keys/{key_id}", headers=hb)
    r = await server.post(
        "/api/v1/auth/change-password",
        json={"current_password": PASSWORD, "new_password": "N3w-password"},
        headers=hb,
    )
    assert r.status == 204
    hr = bearer(root["access_token"])
    await server.patch(
        f"/api/v1/admin/users/{bob_id}", json={"roles": ["user", "admin"]}, headers=hr
    )
    await server.patch(f"/api/v1/admin/users/{bob_id}", json={"disabled": True}, headers=hr)
    await server.patch(f"/api/v1/admin/users/{bob_id}", json={"disabled": False}, headers=hr)
    await server.post(f"/api/v1/admin/users/{bob_id}/password-reset", headers=hr)
    assert (await server.post("/api/v1/flusher/flush", headers=hr)).status == 200
    await server.delete(f"/api/v1/auth/users/{bob_id}", headers=hr)

    events = await events_of(server, root, user_id=bob_id)
    types = [e["type"] for e in reversed(events)]
    assert types == [
        "user.created",
        "login.failed",
        "login.ok",
        "logout",
        "api_key.created",
        "api_key.revoked",
        "password.changed",
        "user.roles",
        "user.disabled",
        "user.enabled",
        "password.reset_issued",
        "user.deleted",
    ], types
    by_type = {e["type"]: e for e in events}
    assert all(e["ip"] == "127.0.0.1" for e in events)
    assert by_type["login.failed"]["detail"]["reason"] == "wrong password"
    assert by_type["user.roles"]["detail"] == {"before": ["user"], "after": ["user", "admin"]}
    assert by_type["user.roles"]["actor_id"] == root_id
    assert by_type["user.deleted"]["actor_id"] == root_id
    assert by_type["api_key.created"]["detail"]["key_id"] == key_id
    assert by_type["login.ok"]["actor_id"] is None
    assert all(e["at"].endswith("Z") and e["event_id"] for e in events)

    # an unknown email's failed login is there too, with the email it tried
    failed = await events_of(server, root, type="login.failed")
    assert any(e["user_id"] is None and e["detail"]["email"] == ghost for e in failed)
    assert all(e["type"] == "login.failed" for e in failed)
    # a type prefix takes the whole family; the events the admin did are theirs too
    assert {e["type"] for e in await events_of(server, root, type="login")} == {
        "login.ok",
        "login.failed",
    }
    mine = await events_of(server, root, user_id=root_id)
    assert {"user.roles", "user.disabled", "flusher.flushed"} <= {e["type"] for e in mine}
    [flushed] = await events_of(server, root, type="flusher.flushed")
    assert flushed["detail"] == {"deleted": 3} and flushed["user_id"] == root_id


async def test_paging_filters_and_bad_queries(server, accounts):
    root = await make_admin(server, accounts)
    for _ in range(5):
        await server.post(
            "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "Wr0ng-pass1"}
        )
    everything = await events_of(server, root, type="login.failed", limit=1000)
    assert len(everything) == 5
    pages, before = [], None
    while True:
        params = {"type": "login.failed", "limit": 2, **({"before": before} if before else {})}
        page = await events_of(server, root, **params)
        if not page:
            break
        pages += page
        before = page[-1]["event_id"]
    assert [e["event_id"] for e in pages] == [e["event_id"] for e in everything]
    assert [e["at"] for e in pages] == sorted((e["at"] for e in pages), reverse=True)
    # an ISO time works as "before" too
    assert await events_of(server, root, type="login.failed", before="2000-01-01T00:00:00Z") == []
    h = bearer(root["access_token"])
    for bad in (
        {"limit": 0},
        {"limit": 1001},
        {"type": "Robert'); DROP TABLE"},
        {"before": "not-an-event"},
        {"user_id": "x" * 100},
    ):
        r = await server.get(AUDIT, params=bad, headers=h)
        assert r.status == 422, bad


async def test_old_events_are_pruned(llmmc):
    server = await llmmc(auth_config(auth={"audit_days": 1}))
    accounts = Accounts(server)
    root = await make_admin(server, accounts)
    # an event recorded two days ago, then the hourly pruning
    bus = server.kernel.bus
    old = Event(
        topic="audit.test.old",
        data={"type": "test.old", "user_id": None, "actor_id": None, "ip": None, "detail": {}},
        timestamp=time.time() - 2 * 86400,
    )
    await bus.deliver(old)
    assert len(await events_of(server, root, type="test.old")) == 1
    await server.plugin("auth").audit_log.prune()
    assert await events_of(server, root, type="test.old") == []
    assert await events_of(server, root, type="login.ok")  # today's stay
