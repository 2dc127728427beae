from llmmc_bow.plugin import BowEmbedder

MEMORY = "/api/v1/memory"


async def test_memory_stores_and_finds_with_the_bow_embedder(llmmc):
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["memory", "bow"],
                "memory": {
                    "embedder": "bow",
                    "embedder_settings": {"dim": 128},
                    "redis_url": "none",
                },
            }
        }
    )
    h = client.auth_headers("ada")
    for text in ("Ada keeps bees on the roof", "Ada's sister lives in Lisbon"):
        r = await client.post(MEMORY, json={"content": text}, headers=h)
        assert r.status == 201, await r.text()
    r = await client.post(
        f"{MEMORY}/search", json={"query": "bees roof", "mode": "semantic"}, headers=h
    )
    results = (await r.json())["results"]
    assert results[0]["content"] == "Ada keeps bees on the roof"
    r = await client.get(f"{MEMORY}/stats", headers=h)
    embedder = (await r.json())["embedder"]
    assert embedder["embedder"] == "bow" and embedder["model"] == "bow-128"
    assert embedder["dim"] == 128


async def test_the_same_text_gives_the_same_unit_vector():
    embedder = BowEmbedder({"dim": 32})
    try:
        a, b, c = await embedder.embed(["Bees, bees!", "bees bees", "Lisbon"])
    finally:
        await embedder.close()
    assert abs(float(a @ a) - 1.0) < 1e-6
    assert float(a @ b) > 0.999 and float(a @ c) < 0.5
