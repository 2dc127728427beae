"""The OpenAI-compatible door as OpenAI's own Python SDK sees it: errors carry OpenAI's
shape, so the SDK raises the right class with the message, type, param and code (it used
to show only "Error code: 404")."""

from __future__ import annotations

from typing import Any

import openai

from tests.chat.helpers import chat_config
from tests.fakes.openai_server import FakeOpenAI

HELLO = [{"role": "user", "content": "hi"}]


async def test_errors_reach_openai_clients_in_their_shape(llmmc: Any) -> None:
    async with FakeOpenAI() as fake:
        client = await llmmc(chat_config(fake.url))
        sdk = openai.AsyncOpenAI(base_url=client.url("/v1"), api_key="test:u1", max_retries=0)
        models = await sdk.models.list()
        assert "character:lumina" in [m.id for m in models.data]
        reply = await sdk.chat.completions.create(model="character:lumina", messages=HELLO)
        assert reply.choices[0].message.content == "Hello! You said: hi"

        try:
            await sdk.chat.completions.create(model="character:nobody", messages=HELLO)
            raise AssertionError("an unknown model must fail")
        except openai.NotFoundError as exc:
            assert exc.status_code == 404 and exc.code == "MODEL_NOT_FOUND"
            assert exc.type == "not_found_error" and "nobody" in exc.message

        try:
            await sdk.chat.completions.create(model="character:lumina", messages=[])
            raise AssertionError("an empty conversation must fail")
        except openai.UnprocessableEntityError as exc:
            assert exc.code == "VALIDATION_FAILED" and exc.param == "messages"
            assert exc.type == "invalid_request_error"

        stranger = openai.AsyncOpenAI(base_url=client.url("/v1"), api_key="nope", max_retries=0)
        try:
            await stranger.models.list()
            raise AssertionError("a bad key must fail")
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401 and exc.code == "INVALID_TOKEN"
            assert exc.type == "authentication_error"

        fake.fail_next(500, times=5)
        try:
            await sdk.chat.completions.create(model="character:lumina", messages=HELLO)
            raise AssertionError("an upstream failure must fail")
        except openai.APIStatusError as exc:
            assert exc.status_code == 502 and exc.type == "upstream_error"
        await sdk.close()
        await stranger.close()
