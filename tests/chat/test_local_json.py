"""``json_schema`` on the "llm" service: the embedded model answers JSON valid against the
schema (a llama.cpp grammar), an OpenAI-compatible upstream gets it as
``response_format``, and a provider type written before the keyword existed still works."""

from __future__ import annotations

import json

import jsonschema
import pytest

from sdk import LLMProvider, Plugin, Route, StreamEvent, Usage, hookimpl, services
from tests.chat.helpers import chat_config
from tests.fakes.openai_server import FakeOpenAI

FACTS = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "fact": {"type": "string", "minLength": 1, "maxLength": 60},
                    "kind": {"enum": ["preference", "personal", "plan", "other"]},
                },
                "required": ["fact", "kind"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}


class OldProvider(LLMProvider):
    """A third-party provider type whose stream() does not know json_schema."""

    type = "old"

    async def stream(self, messages, *, model=None, tools=None, max_tokens=None, temperature=None):
        yield StreamEvent("delta", text="plain text")
        yield StreamEvent("usage", usage=Usage(1, 1))
        yield StreamEvent("finish", finish_reason="stop")


class AskPlugin(Plugin):
    """Asks the "llm" service for a JSON answer, as the memory plugin's fact extraction will."""

    name = "ask"
    config_schema = {"type": "object"}

    async def _ask(self, req):
        llm = self.context.services.get(services.LLM)
        text = await llm.complete(
            [
                {
                    "role": "system",
                    "content": "List the facts about the user in this message, as JSON.",
                },
                {"role": "user", "content": req.body["text"]},
            ],
            provider=req.body.get("provider"),
            json_schema=FACTS,
            temperature=0,
            max_tokens=400,
            identity=req.identity,
        )
        return {"text": text}

    @hookimpl
    def register_routes(self):
        return [Route("POST", "/ask", self._ask, request_schema={"type": "object"})]

    @hookimpl
    def register_llm_providers(self):
        return [OldProvider]


async def test_json_schema_goes_upstream_as_response_format_and_old_providers_ignore_it(llmmc):
    async with FakeOpenAI() as fake:
        cfg = chat_config(fake.url, enabled=("chat", "ask"))
        cfg["plugins"]["chat"]["providers"]["old"] = {"type": "old"}
        client = await llmmc(cfg, plugins={"ask": AskPlugin})
        h = client.auth_headers("u1")
        fake.queue('{"facts": []}')
        r = await client.post("/ask", json={"text": "I live in Osaka."}, headers=h)
        assert await r.json() == {"text": '{"facts": []}'}
        assert fake.requests[-1]["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": FACTS},
        }
        r = await client.post("/ask", json={"text": "x", "provider": "old"}, headers=h)
        assert r.status == 200 and await r.json() == {"text": "plain text"}


@pytest.mark.model
async def test_the_local_model_answers_json_valid_for_the_schema(llmmc):
    pytest.importorskip("llama_cpp", reason="needs the [local] extra (llama-cpp-python)")
    config = {
        "plugins": {
            "enabled": ["chat", "ask"],
            "chat": {
                "default_provider": "local",
                "providers": {"local": {"type": "llama_cpp"}},
                "characters": {"lumina": {"name": "Lumina"}},
            },
        }
    }
    client = await llmmc(config, plugins={"ask": AskPlugin})
    h = client.auth_headers("u1")
    for text in (
        "I live in Osaka, I have two cats and I am flying to Paris next week.",
        "私は東京に住んでいて、コーヒーが好きです。",
    ):
        r = await client.post("/ask", json={"text": text}, headers=h)
        body = await r.json()
        assert r.status == 200, body
        jsonschema.validate(json.loads(body["text"]), FACTS)
