"""Administration over HTTP: users, roles, disabling, reset tokens, and who may do it."""

from __future__ import annotations

import asyncio
import uuid

from sdk import Plugin, hookimpl
from sdk.events import TOKENS_REVOKED

from .conftest import PASSWORD, Accounts, auth_config, bearer, make_admin

ADMIN = "/api/v1/admin"


async def test_every_admin_route_refuses_users_and_strangers(server, accounts):
    """A hostile user tries each admin route (found from the server's own route table,
    so a route added later is covered too): 403, and nothing changes."""
    admin = await make_admin(server, accounts)
    mallory = await accounts.register()
    target = admin["user"]["user_id"]
    admin_routes = [r for r in server.kernel.routes if r.path.startswith(ADMIN)]
    assert len(admin_routes) >= 5
    bodies = {"PATCH": {"roles": ["user"], "disabled": True}, "POST": {}}
    for route in admin_routes:
        path = route.path.replace("{user_id}", target)
        for headers, status in ((bearer(mallory["access_token"]), 403), ({}, 401)):
            r = await server.request(
                route.method, path, json=bodies.get(route.method), headers=headers
            )
            assert r.status == status, (route.key, await r.text())
            problem = await r.json()
            assert problem["code"] in ("ADMIN_REQUIRED", "AUTH_REQUIRED")
    # a user's own id does not open the admin routes either
    own = mallory["user"]["user_id"]
    r = await server.patch(
        f"{ADMIN}/users/{own}",
        json={"roles": ["user", "admin"]},
        headers=bearer(mallory["access_token"]),
    )
    assert r.status == 403
    # ... and nothing happened to the admin
    r = await server.get(f"{ADMIN}/users/{target}", headers=bearer(admin["access_token"]))
    body = await r.json()
    assert body["roles"] == ["user", "admin"] and body["disabled"] is False


async def test_list_search_and_page_users(server, accounts):
    admin = await make_admin(server, accounts)
    tag = uuid.uuid4().hex[:6]
    made = [
        await accounts.register(username=f"srch_{tag}_{i}", email=f"srch{i}.{tag}@example.com")
        for i in range(3)
    ]
    await accounts.register(username=f"other_{tag}", email=f"zz.{tag}@example.org")
    h = bearer(admin["access_token"])

    r = await server.get(f"{ADMIN}/users", params={"q": f"SRCH_{tag}"}, headers=h)
    body = await r.json()
    assert r.status == 200 and body["total"] == 3
    assert [u["user_id"] for u in body["users"]] == [m["user"]["user_id"] for m in made]
    first = body["users"][0]
    assert first["disabled"] is False and first["last_login_at"] is None
    assert set(first) == {
        "user_id",
        "username",
        "email",
        "roles",
        "created_at",
        "disabled",
        "last_login_at",
    }

    r = await server.get(
        f"{ADMIN}/users", params={"q": f"srch_{tag}", "limit": 2, "offset": 1}, headers=h
    )
    body = await r.json()
    assert body["total"] == 3
    assert [u["user_id"] for u in body["users"]] == [m["user"]["user_id"] for m in made[1:]]

    # an email part matches too; LIKE wildcards are taken literally
    r = await server.get(f"{ADMIN}/users", params={"q": f"zz.{tag}"}, headers=h)
    assert (await r.json())["total"] == 1
    r = await server.get(f"{ADMIN}/users", params={"q": "%"}, headers=h)
    assert (await r.json())["total"] == 0

    r = await server.get(f"{ADMIN}/users", headers=h)
    body = await r.json()
    assert body["total"] == 5 and len(body["users"]) == 5
    admin_row = next(u for u in body["users"] if u["user_id"] == admin["user"]["user_id"])
    assert admin_row["last_login_at"] is not None

    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"offset": -1}, {"q": "a" * 300}):
        r = await server.get(f"{ADMIN}/users", params=bad, headers=h)
        assert r.status == 422, bad

    r = await server.get(f"{ADMIN}/users/{uuid.uuid4()}", headers=h)
    assert r.status == 404 and (await r.json())["code"] == "USER_NOT_FOUND"
    r = await server.patch(f"{ADMIN}/users/{uuid.uuid4()}", json={"disabled": True}, headers=h)
    assert r.status == 404


async def test_patch_validates_its_body(server, accounts):
    admin = await make_admin(server, accounts)
    bob = await accounts.register()
    h = bearer(admin["access_token"])
    url = f"{ADMIN}/users/{bob['user']['user_id']}"
    for bad in (
        {},
        {"roles": ["root"]},
        {"roles": "admin"},
        {"disabled": "yes"},
        {"x": 1},
        {"roles": ["admin", "admin"]},
    ):
        r = await server.patch(url, json=bad, headers=h)
        assert r.status == 422, (bad, await r.text())
    r = await server.patch(url, data=b"{broken", headers={**h, "Content-Type": "application/json"})
    assert r.status == 400
    # every account keeps the role "user"
    r = await server.patch(url, json={"roles": ["admin"]}, headers=h)
    assert r.status == 200 and (await r.json())["roles"] == ["user", "admin"]
    r = await server.patch(url, json={"roles": []}, headers=h)
    assert r.status == 200 and (await r.json())["roles"] == ["user"]


async def test_a_removed_admin_role_is_gone_at_once_for_issued_tokens(server, accounts):
    root = await make_admin(server, accounts)
    eve = await make_admin(server, accounts)  # a second admin, about to be demoted
    h_root = bearer(root["access_token"])
    key = await server.post(
        "/api/v1/auth/api-keys", json={"name": "eve"}, headers=bearer(eve["access_token"])
    )
    eve_key = (await key.json())["key"]
    for cred in (eve["access_token"], eve_key):
        assert (await server.get(f"{ADMIN}/users", headers=bearer(cred))).status == 200

    r = await server.patch(
        f"{ADMIN}/users/{eve['user']['user_id']}", json={"roles": ["user"]}, headers=h_root
    )
    assert r.status == 200 and (await r.json())["roles"] == ["user"]
    # the token minted while admin no longer works at all (the client refreshes) ...
    r = await server.get(f"{ADMIN}/users", headers=bearer(eve["access_token"]))
    assert r.status == 401
    # ... the API key keeps working, without the admin role
    assert (await server.get(f"{ADMIN}/users", headers=bearer(eve_key))).status == 403
    assert (await accounts.me(eve_key)).status == 200
    # a refreshed token carries the roles of now
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": eve["refresh_token"]})
    fresh = await r.json()
    assert fresh["user"]["roles"] == ["user"]
    assert (await server.get(f"{ADMIN}/users", headers=bearer(fresh["access_token"]))).status == 403
    assert (await accounts.me(fresh["access_token"])).status == 200


async def test_a_granted_role_reaches_api_keys_at_once_and_tokens_on_refresh(server, accounts):
    root = await make_admin(server, accounts)
    bob = await accounts.register()
    key = await server.post(
        "/api/v1/auth/api-keys", json={"name": "bob"}, headers=bearer(bob["access_token"])
    )
    bob_key = (await key.json())["key"]
    r = await server.patch(
        f"{ADMIN}/users/{bob['user']['user_id']}",
        json={"roles": ["user", "admin"]},
        headers=bearer(root["access_token"]),
    )
    assert r.status == 200
    assert (await server.get(f"{ADMIN}/users", headers=bearer(bob_key))).status == 200
    # the old token never said admin: it stays a user token until refreshed
    assert (await server.get(f"{ADMIN}/users", headers=bearer(bob["access_token"]))).status == 403
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": bob["refresh_token"]})
    fresh = await r.json()
    assert (await server.get(f"{ADMIN}/users", headers=bearer(fresh["access_token"]))).status == 200


async def test_the_last_admin_cannot_be_removed_disabled_or_deleted(server, accounts):
    root = await make_admin(server, accounts)
    h = bearer(root["access_token"])
    me = f"{ADMIN}/users/{root['user']['user_id']}"
    for body in ({"roles": ["user"]}, {"disabled": True}):
        r = await server.patch(me, json=body, headers=h)
        assert r.status == 409 and (await r.json())["code"] == "LAST_ADMIN", body
    r = await server.delete(f"/api/v1/auth/users/{root['user']['user_id']}", headers=h)
    assert r.status == 409 and (await r.json())["code"] == "LAST_ADMIN"

    # with a second admin, the first may step down
    other = await make_admin(server, accounts)
    r = await server.patch(me, json={"roles": ["user"]}, headers=h)
    assert r.status == 200
    # and now the other is the last one
    h2 = bearer(other["access_token"])
    r = await server.patch(
        f"{ADMIN}/users/{other['user']['user_id']}", json={"disabled": True}, headers=h2
    )
    assert r.status == 409


async def test_two_admins_demoting_each_other_at_once_leave_one(server, accounts):
    a = await make_admin(server, accounts)
    b = await make_admin(server, accounts)
    ra, rb = await asyncio.gather(
        server.patch(
            f"{ADMIN}/users/{b['user']['user_id']}",
            json={"roles": ["user"]},
            headers=bearer(a["access_token"]),
        ),
        server.patch(
            f"{ADMIN}/users/{a['user']['user_id']}",
            json={"roles": ["user"]},
            headers=bearer(b["access_token"]),
        ),
    )
    statuses = sorted([ra.status, rb.status])
    # one wins; the other is refused (409, or 401 when its token was revoked first)
    assert statuses[0] == 200 and statuses[1] in (401, 409), statuses
    admin = await make_admin(server, accounts)
    r = await server.get(
        f"{ADMIN}/users", params={"limit": 200}, headers=bearer(admin["access_token"])
    )
    admins = [u for u in (await r.json())["users"] if "admin" in u["roles"]]
    assert len(admins) == 2  # the survivor and the one just made


class RevocationProbe(Plugin):
    """Records what auth announces on the bus, as the chat WebSocket would see it."""

    name = "probe"
    seen: list[dict] = []

    async def start(self) -> None:
        async def record(event):
            self.seen.append(event.data)

        self.context.bus.subscribe(TOKENS_REVOKED, record)

    @hookimpl
    def register_routes(self):
        return []


async def test_disabling_ends_every_credential_and_says_so_on_the_bus(llmmc, database_url):
    cfg = auth_config()
    cfg["plugins"]["enabled"].append("probe")
    server = await llmmc(cfg, plugins={"probe": RevocationProbe}, database_url=database_url)
    accounts = Accounts(server)
    root = await make_admin(server, accounts)
    bob = await accounts.register()
    second = await accounts.login(bob["user"]["email"])
    r = await server.post(
        "/api/v1/auth/api-keys", json={"name": "k"}, headers=bearer(bob["access_token"])
    )
    key = await r.json()
    bob_id = bob["user"]["user_id"]
    RevocationProbe.seen.clear()

    r = await server.patch(
        f"{ADMIN}/users/{bob_id}", json={"disabled": True}, headers=bearer(root["access_token"])
    )
    assert r.status == 200 and (await r.json())["disabled"] is True
    for cred in (bob["access_token"], second["access_token"], key["key"]):
        r = await accounts.me(cred)
        assert r.status == 401, cred
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status == 401
    # the right password still does not let a disabled user in, and says why
    r = await server.post(
        "/api/v1/auth/login", json={"email": bob["user"]["email"], "password": PASSWORD}
    )
    assert r.status == 403 and (await r.json())["code"] == "ACCOUNT_DISABLED"
    # a wrong one gets the usual answer (disabled is told only to who knows the password)
    r = await server.post(
        "/api/v1/auth/login", json={"email": bob["user"]["email"], "password": "Wr0ng-pass"}
    )
    assert r.status == 401

    [event] = [e for e in RevocationProbe.seen if e["reason"] == "disabled"]
    assert event["user_id"] == bob_id and event["api_keys"] is True
    assert event["api_key_ids"] == [key["key_id"]] and event["issued_before"] > 0
    assert event["family_id"] is None and event["keep_family"] == ""

    # enabled again: the user logs in anew; what was ended stays ended
    r = await server.patch(
        f"{ADMIN}/users/{bob_id}", json={"disabled": False}, headers=bearer(root["access_token"])
    )
    assert r.status == 200 and (await r.json())["disabled"] is False
    again = await accounts.login(bob["user"]["email"])
    assert (await accounts.me(again["access_token"])).status == 200
    assert (await accounts.me(key["key"])).status == 401
    assert (await accounts.me(bob["access_token"])).status == 401

    # a logout is announced with its login family
    RevocationProbe.seen.clear()
    await server.post("/api/v1/auth/logout", json={"refresh_token": again["refresh_token"]})
    [event] = RevocationProbe.seen
    assert event["reason"] == "logout" and event["family_id"] and event["issued_before"] is None


async def test_admin_reset_token_works_once_and_ends_every_login(server, accounts):
    root = await make_admin(server, accounts)
    bob = await accounts.register()
    other = await accounts.login(bob["user"]["email"])
    h = bearer(root["access_token"])
    url = f"{ADMIN}/users/{bob['user']['user_id']}/password-reset"
    r = await server.post(url, headers=h)
    assert r.status == 201
    first = await r.json()
    assert first["expires_at"].endswith("Z")
    r = await server.post(url, headers=h)
    token = (await r.json())["reset_token"]
    reset = "/api/v1/auth/reset-password"
    # a newer token replaces the older one
    r = await server.post(
        reset, json={"reset_token": first["reset_token"], "new_password": "N3w-password"}
    )
    assert r.status == 400 and (await r.json())["code"] == "INVALID_RESET_TOKEN"
    # a weak password is refused and does not spend the token
    r = await server.post(reset, json={"reset_token": token, "new_password": "weak"})
    assert r.status == 422
    r = await server.post(reset, json={"reset_token": token, "new_password": "N3w-password"})
    assert r.status == 204
    r = await server.post(reset, json={"reset_token": token, "new_password": "An0ther-pass"})
    assert r.status == 400
    for tokens in (bob, other):
        assert (await accounts.me(tokens["access_token"])).status == 401
        r = await server.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert r.status == 401
    r = await server.post(
        "/api/v1/auth/login", json={"email": bob["user"]["email"], "password": PASSWORD}
    )
    assert r.status == 401
    await accounts.login(bob["user"]["email"], "N3w-password")
    r = await server.post(
        reset, json={"reset_token": "rst_" + "x" * 43, "new_password": "N3w-password"}
    )
    assert r.status == 400
    r = await server.post(f"{ADMIN}/users/{uuid.uuid4()}/password-reset", headers=h)
    assert r.status == 404
