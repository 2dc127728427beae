"""Small helpers shared by the weather tests."""

from __future__ import annotations

from typing import Any

EXECUTE = "/api/v1/plugins/weather/execute"


def config(**table: Any) -> dict[str, Any]:
    return {"plugins": {"enabled": ["weather"], "weather": table}}


async def weather(client: Any, city: str, units: str | None = None, user: str = "u1") -> Any:
    params: dict[str, Any] = {"city": city}
    if units is not None:
        params["units"] = units
    return await client.post(
        EXECUTE, json={"tool": "weather", "params": params}, headers=client.auth_headers(user)
    )
