async def test_roll_route_and_tool(llmmc):
    client = await llmmc({"plugins": {"enabled": ["dice"], "dice": {"max_dice": 3}}})
    r = await client.get("/api/v1/dice/roll?count=3&sides=6")
    body = await r.json()
    assert r.status == 200 and len(body["rolls"]) == 3 and sum(body["rolls"]) == body["total"]
    r = await client.get("/api/v1/dice/roll?count=4")
    assert r.status == 422
    r = await client.post(
        "/api/v1/plugins/dice/execute",
        json={"tool": "roll_dice", "params": {"count": 2, "sides": 20}},
        headers=client.auth_headers("u1"),
    )
    assert r.status == 200 and all(1 <= x <= 20 for x in (await r.json())["result"]["rolls"])
