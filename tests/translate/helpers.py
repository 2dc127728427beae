"""Small helpers shared by the translate tests."""

from __future__ import annotations

from typing import Any

EXECUTE = "/api/v1/plugins/translate/execute"
FIELDS = {
    "original_text",
    "translated_text",
    "source_lang",
    "target_lang",
    "detected_source_lang",
    "provider",
}


def config(enabled: tuple[str, ...] = ("translate",), **table: Any) -> dict[str, Any]:
    return {"plugins": {"enabled": list(enabled), "translate": table}}


async def run(client: Any, tool: str, user: str = "u1", **params: Any) -> Any:
    return await client.post(
        EXECUTE, json={"tool": tool, "params": params}, headers=client.auth_headers(user)
    )


async def result(client: Any, tool: str, **params: Any) -> dict[str, Any]:
    r = await run(client, tool, **params)
    assert r.status == 200, await r.text()
    return (await r.json())["result"]
