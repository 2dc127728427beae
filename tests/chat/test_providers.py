"""Providers against the fake upstreams: streaming, tools, usage, retries, timeouts, fallback."""

from __future__ import annotations

import logging

import pytest

from builtin_plugins.chat.providers import BUILTIN_PROVIDERS, AnthropicProvider, OpenAIProvider
from builtin_plugins.chat.providers.registry import ProviderRegistry
from sdk import errors
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
TOOLS = [{"name": "weather", "description": "w", "parameters": {"type": "object"}}]


async def collect(provider, **kw):
    out = {"text": "", "calls": [], "usage": None, "finish": None}
    async for ev in provider.stream(MSGS, **kw):
        if ev.type == "delta":
            out["text"] += ev.text
        elif ev.type == "tool_call":
            out["calls"].append(ev.tool_call)
        elif ev.type == "usage":
            out["usage"] = ev.usage
        else:
            out["finish"] = ev.finish_reason
    return out


async def test_openai_stream_and_complete_with_tools_and_usage():
    async with FakeOpenAI(api_key="sk-secret-123") as fake:
        p = OpenAIProvider("o", {"base_url": fake.url, "api_key": "sk-secret-123", "model": "m1"})
        try:
            fake.queue("Hi there friend", usage={"prompt_tokens": 11, "completion_tokens": 3})
            got = await collect(p)
            assert got["text"] == "Hi there friend"
            assert (got["usage"].prompt_tokens, got["usage"].completion_tokens) == (11, 3)
            assert fake.requests[-1]["stream_options"] == {"include_usage": True}
            assert fake.requests[-1]["model"] == "m1"

            fake.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Tokyo"}}])
            got = await collect(p, tools=TOOLS)
            assert got["calls"][0].name == "weather" and got["calls"][0].arguments == {
                "city": "Tokyo"
            }
            assert got["finish"] == "tool_calls"
            assert fake.requests[-1]["tools"][0]["function"]["name"] == "weather"

            fake.queue("plain", tool_calls=[{"name": "weather", "arguments": '{"city": "Oslo"}'}])
            c = await p.complete(MSGS, tools=TOOLS)
            assert c.content == "plain" and c.tool_calls[0].arguments == {"city": "Oslo"}
            assert c.usage.completion_tokens > 0 and "stream" not in fake.requests[-1]
        finally:
            await p.close()


async def test_anthropic_stream_tool_use_and_message_translation():
    async with FakeAnthropic(api_key="ak-secret") as fake:
        p = AnthropicProvider("a", {"base_url": fake.url, "api_key": "ak-secret", "model": "c1"})
        try:
            fake.queue(
                "Checking.",
                tool_calls=[{"name": "weather", "arguments": {"city": "Paris"}}],
                usage={"input_tokens": 20, "output_tokens": 9},
            )
            got = await collect(p, tools=TOOLS)
            assert got["text"] == "Checking."
            assert got["calls"][0].arguments == {"city": "Paris"}
            assert (got["usage"].prompt_tokens, got["usage"].completion_tokens) == (20, 9)
            req = fake.requests[-1]
            assert req["system"] == "be brief" and req["messages"][0]["role"] == "user"
            assert req["tools"][0]["input_schema"] == {"type": "object"}

            # a tool round trip in OpenAI shape becomes tool_use / tool_result blocks
            call = got["calls"][0].to_openai()
            history = [
                *MSGS,
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": '{"t": 3}'},
            ]
            c = await p.complete(history)
            assert c.content.startswith("Hello!")
            sent = fake.requests[-1]["messages"]
            assert sent[1]["content"][0]["type"] == "tool_use"
            assert sent[2]["content"][0] == {
                "type": "tool_result",
                "tool_use_id": call["id"],
                "content": '{"t": 3}',
            }

            fake.queue_error_event()
            with pytest.raises(errors.BadGateway):
                await collect(p)
        finally:
            await p.close()


@pytest.mark.parametrize("status", [500, 429, 503])
async def test_retries_on_transient_errors_then_succeeds(status):
    async with FakeOpenAI() as fake:
        p = OpenAIProvider(
            "o", {"base_url": fake.url, "model": "m"}, max_retries=2, retry_backoff=0.01
        )
        try:
            fake.fail_next(status, times=2)
            got = await collect(p)
            assert got["text"].startswith("Hello!")
            assert len(fake.requests) == 3
        finally:
            await p.close()


async def test_gives_up_with_bad_gateway_and_never_retries_4xx(caplog):
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAI() as fake:
        p = OpenAIProvider(
            "o",
            {"base_url": fake.url, "model": "m", "api_key": "sk-LEAKME-999"},
            max_retries=1,
            retry_backoff=0.01,
        )
        try:
            fake.fail_next(500, times=5)
            with pytest.raises(errors.BadGateway) as exc:
                await collect(p)
            assert exc.value.status == 502 and len(fake.requests) == 2
            fake.reset()
            fake.fail_next(
                400,
                body={
                    "error": {"message": "bad key sk-LEAKME-999", "type": "invalid_request_error"}
                },
            )
            with pytest.raises(errors.BadGateway) as exc:
                await p.complete(MSGS)
            assert len(fake.requests) == 1
            assert "sk-LEAKME-999" not in exc.value.detail
            assert "sk-LEAKME-999" not in caplog.text
        finally:
            await p.close()


async def test_timeout_becomes_gateway_timeout():
    async with FakeOpenAI() as fake:
        fake.delay = 2
        p = OpenAIProvider("o", {"base_url": fake.url, "model": "m"}, timeout=0.3, max_retries=0)
        try:
            with pytest.raises(errors.GatewayTimeout) as exc:
                await collect(p)
            assert exc.value.status == 504
        finally:
            await p.close()


async def test_missing_key_is_unavailable_and_names_the_setting():
    p = OpenAIProvider(
        "openai", {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key": ""}
    )
    assert "plugins.chat.providers.openai.api_key" in p.unavailable_reason()
    with pytest.raises(errors.ServiceUnavailable) as exc:
        await collect(p)
    assert exc.value.status == 503 and "api_key" in exc.value.detail
    a = AnthropicProvider("anthropic", {"model": "c"})
    assert "plugins.chat.providers.anthropic.api_key" in a.unavailable_reason()
    # a local OpenAI-compatible server needs no key
    assert (
        OpenAIProvider(
            "ollama", {"base_url": "http://127.0.0.1:11434/v1", "model": "x"}
        ).unavailable_reason()
        is None
    )


async def test_fallback_moves_on_only_before_output():
    async with FakeOpenAI() as first, FakeOpenAI(default_reply="from second") as second:
        reg = ProviderRegistry(
            {
                "a": {"type": "openai", "base_url": first.url, "model": "m"},
                "b": {"type": "openai", "base_url": second.url, "model": "m"},
                "weird": {"type": "nope"},
            },
            {cls.type: cls for cls in BUILTIN_PROVIDERS},
            timeout=5,
            max_retries=0,
            retry_backoff=0,
            default_provider="a",
        )
        try:
            assert "unknown type 'nope'" in reg.unavailable()["weird"]
            first.fail_next(503)
            text = ""
            async for prov, _model, ev in reg.stream(
                [("a", None), ("weird", None), ("b", None)], MSGS
            ):
                if ev.type == "delta":
                    text += ev.text
                    assert prov.name == "b"
            assert text == "from second"
            # the stream breaks after output started: no silent switch to another provider
            first.queue("one two three four five", error_after=3)
            with pytest.raises(errors.BadGateway):
                async for _ in reg.stream([("a", None), ("b", None)], MSGS):
                    pass
            assert len(second.requests) == 1
        finally:
            await reg.close()
