"""Password reset by email, against a real SMTP server the test starts."""

from __future__ import annotations

import queue
import re

import pytest

from tests.fakes.smtp import FakeSMTP

from .conftest import Accounts, auth_config, bearer

FORGOT = "/api/v1/auth/forgot-password"


@pytest.fixture
def smtp():
    server = FakeSMTP().start()
    try:
        yield server
    finally:
        server.stop()


def token_in(mail) -> str:
    match = re.search(r"token=(rst_[A-Za-z0-9_\-]+)", mail.get_payload(decode=True).decode())
    assert match, mail.get_payload()
    return match.group(1)


async def test_reset_by_email_end_to_end(llmmc, smtp):
    email_cfg = smtp.settings(reset_url="https://chat.example.com/reset?token={token}")
    server = await llmmc(auth_config(auth={"email": email_cfg}))
    accounts = Accounts(server)
    bob = await accounts.register()
    address = bob["user"]["email"]

    # an unknown address gets the same answer, and no mail
    r = await server.post(FORGOT, json={"email": "nobody@example.com"})
    unknown = (r.status, await r.json())
    r = await server.post(FORGOT, json={"email": address.upper()})
    known = (r.status, await r.json())
    assert unknown == known and known[0] == 202

    mail = await smtp.next_mail()
    assert mail["To"] == address and mail["Subject"] == "Reset your password"
    token = token_in(mail)
    assert smtp.inbox.empty()  # the unknown address got nothing

    # asked again at once: no second mail (nobody floods an inbox through us)
    r = await server.post(FORGOT, json={"email": address})
    assert r.status == 202
    with pytest.raises(queue.Empty):
        await smtp.next_mail(timeout=0.5)

    r = await server.post(
        "/api/v1/auth/reset-password", json={"reset_token": token, "new_password": "N3w-password"}
    )
    assert r.status == 204
    assert (await accounts.me(bob["access_token"])).status == 401
    await accounts.login(address, "N3w-password")
    r = await server.post(
        "/api/v1/auth/reset-password", json={"reset_token": token, "new_password": "Th1rd-password"}
    )
    assert r.status == 400

    await server.plugin("auth").admin.promote_admin(address, "", None)
    admin = await accounts.login(address, "N3w-password")
    r = await server.get(
        "/api/v1/admin/audit",
        params={"type": "password"},
        headers=bearer(admin["access_token"]),
    )
    kinds = [(e["type"], e["detail"].get("sent")) for e in (await r.json())["events"]]
    assert ("password.reset", None) in kinds
    assert ("password.reset_requested", True) in kinds
    assert kinds.count(("password.reset_requested", False)) == 2  # unknown, then too soon


async def test_the_mail_holds_the_token_when_no_link_is_configured(llmmc, smtp):
    server = await llmmc(auth_config(auth={"email": smtp.settings()}))
    bob = await Accounts(server).register()
    await server.post(FORGOT, json={"email": bob["user"]["email"]})
    body = (await smtp.next_mail()).get_payload(decode=True).decode()
    token = re.search(r"\b(rst_[A-Za-z0-9_\-]+)", body).group(1)
    r = await server.post(
        "/api/v1/auth/reset-password", json={"reset_token": token, "new_password": "N3w-password"}
    )
    assert r.status == 204


async def test_without_smtp_the_route_says_what_is_missing(server):
    r = await server.post(FORGOT, json={"email": "someone@example.com"})
    assert r.status == 503
    problem = await r.json()
    assert problem["code"] == "EMAIL_NOT_CONFIGURED" and "host" in problem["detail"]
    for bad in ({}, {"email": 5}, {"email": "x" * 300}, {"email": "a@b.c", "more": 1}):
        assert (await server.post(FORGOT, json=bad)).status == 422


async def test_a_disabled_account_gets_no_mail(llmmc, smtp):
    server = await llmmc(auth_config(auth={"email": smtp.settings()}))
    accounts = Accounts(server)
    bob = await accounts.register()
    plugin = server.plugin("auth")
    await plugin.admin.update_user(None, bob["user"]["user_id"], disabled=True)
    r = await server.post(FORGOT, json={"email": bob["user"]["email"]})
    assert r.status == 202
    with pytest.raises(queue.Empty):
        await smtp.next_mail(timeout=0.5)
