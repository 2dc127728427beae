async def test_a_character_speaks_through_the_echo_provider(llmmc):
    client = await llmmc(
        {
            "plugins": {
                "enabled": ["chat", "echo"],
                "chat": {
                    "default_provider": "parrot",
                    "providers": {"parrot": {"type": "echo", "replies": {"hello": "Hi there!"}}},
                    "characters": {"polly": {"name": "Polly", "provider": "parrot"}},
                },
            }
        }
    )
    h = client.auth_headers("ada")
    r = await client.post("/api/v1/chat", json={"user_input": "hello, Polly"}, headers=h)
    assert (await r.json())["response"] == "Hi there!"
    r = await client.post("/api/v1/chat", json={"user_input": "crackers"}, headers=h)
    assert (await r.json())["response"] == "You said: crackers"
