"""Auth as a hostile client meets it: token answers never cached, and lookalike
account names (fullwidth, other case, another Unicode spelling) are the same name."""

from __future__ import annotations

from .conftest import PASSWORD, bearer


async def test_answers_with_credentials_are_never_cached(server, accounts):
    r = await server.post(
        "/api/v1/auth/register",
        json={"username": "cache_me", "email": "cache@example.com", "password": PASSWORD},
    )
    assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
    pair = await r.json()
    r = await server.post(
        "/api/v1/auth/login", json={"email": "cache@example.com", "password": PASSWORD}
    )
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    r = await server.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    r = await server.post(
        "/api/v1/auth/api-keys", json={"name": "ci"}, headers=bearer(pair["access_token"])
    )
    assert r.status == 201 and r.headers["Cache-Control"] == "no-store"


async def register(client, username: str, email: str):
    return await client.post(
        "/api/v1/auth/register",
        json={"username": username, "email": email, "password": PASSWORD},
    )


async def login(client, email: str):
    return await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})


async def test_lookalike_names_are_the_same_account(server, accounts):
    first = await accounts.register(username="Alice_Q", email="Jos\u00e9.Q@Example.com")
    assert first["user"]["username"] == "Alice_Q"  # kept as typed, for display
    assert first["user"]["email"] == "Jos\u00e9.Q@Example.com"
    for username, email in (
        ("\uff41\uff4c\uff49\uff43\uff45_\uff51", "other1@example.com"),  # fullwidth
        ("ALICE_Q", "other2@example.com"),
        ("someone_1", "jose\u0301.q@example.com"),  # NFD spelling of the é
        ("someone_2", "JOS\u00c9.Q@EXAMPLE.COM"),
        ("someone_3", "\uff4a\uff4f\uff53\u00e9.q@example.com"),
    ):
        r = await register(server, username, email)
        assert r.status == 409, (username, email, await r.text())
        assert (await r.json())["code"] == "USER_EXISTS"
    for spelling in ("jose\u0301.q@example.com", "JOS\u00c9.Q@EXAMPLE.COM"):
        r = await login(server, spelling)
        assert r.status == 200
        assert (await r.json())["user"]["user_id"] == first["user"]["user_id"]


async def test_accounts_stored_before_folding_keep_working(tmp_path):
    """Data from before the rule (keys merely lower-cased) is re-keyed once at start."""
    import duckdb

    from kernel.testing import start_kernel

    from .conftest import auth_config

    data_dir = tmp_path / "data"
    client = await start_kernel(auth_config(), data_dir=data_dir)
    try:
        for username, email in (
            ("Stra\u00dfe", "Stra\u00dfe@example.com"),
            ("older_b", "b@x.org"),
            ("\uff2d\uff41\uff52\uff49\uff41", "MAR\u00cdA@example.com"),  # fullwidth Maria
        ):
            assert (await register(client, username, email)).status == 201
    finally:
        await client.close()
    # what the previous version stored: lower() keys, and a second account that only
    # differs from the first by the ß that case folding turns into "ss"
    with duckdb.connect(str(data_dir / "llmmultichat.duckdb")) as db:
        db.execute("DELETE FROM kernel_migrations WHERE plugin = 'auth' AND version > 1")
        db.execute(
            "UPDATE auth_users SET username_norm = lower(username), email_norm = lower(email)"
        )
        db.execute(
            "UPDATE auth_users SET username = 'strasse', username_norm = 'strasse', "
            "email = 'strasse@example.com', email_norm = 'strasse@example.com' "
            "WHERE username = 'older_b'"
        )
    client = await start_kernel(auth_config(), data_dir=data_dir)
    try:
        # the clash: one key is left for two accounts; each logs in with its exact email
        r = await login(client, "Stra\u00dfe@example.com")
        assert r.status == 200 and (await r.json())["user"]["username"] == "Stra\u00dfe"
        r = await login(client, "strasse@example.com")
        assert r.status == 200 and (await r.json())["user"]["username"] == "strasse"
        r = await login(client, "STRASSE@EXAMPLE.COM")  # new spellings find the key holder
        assert r.status == 200 and (await r.json())["user"]["username"] == "strasse"
        r = await register(client, "STRA\u1e9eE", "new@example.com")
        assert r.status == 409
        r = await register(client, "\uff53\uff54\uff52\uff41\uff53\uff53\uff45", "n2@example.com")
        assert r.status == 409
        # a key without a clash was rebuilt under the new rule
        r = await register(client, "maria", "maria2@example.com")
        assert r.status == 409
        r = await login(client, "mari\u0301a@EXAMPLE.com")
        assert r.status == 200 and (await r.json())["user"]["email"] == "MAR\u00cdA@example.com"
        assert (await register(client, "fresh_one", "fresh@example.com")).status == 201
    finally:
        await client.close()


async def test_health_does_not_show_where_the_admin_socket_is(llmmc):
    """Anyone may read /health; the admin socket's state is there, its path (which names
    the data directory) is not."""
    from tests.auth.conftest import auth_config

    client = await llmmc(auth_config())
    r = await client.get("/health")
    text = await r.text()
    socket = (await r.json())["plugins"]["auth"]["checks"]["admin_socket"]
    assert "(data_dir)" in socket or socket == "not started", socket
    assert str(client.kernel.data_dir) not in text
