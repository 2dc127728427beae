"""/openapi.json is valid OpenAPI 3.1, lists every declared route and tool, and the
documentation pages work with no network (their assets are served by the kernel)."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate

from .samples.llmmc_samples import Crasher, Echoer
from .test_http import Things

PLUGINS = {"crasher": Crasher, "echoer": Echoer, "things": Things}


async def test_openapi_is_valid_and_complete(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": list(PLUGINS)}}, plugins=PLUGINS)
    r = await client.get("/openapi.json")
    assert r.status == 200
    doc = await r.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    declared = {(route.method.lower(), route.path) for route in client.kernel.routes}
    listed = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert declared <= listed
    things = doc["paths"]["/api/v1/things"]["post"]
    assert things["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "name",
        "tags",
    ]
    assert {"201", "400", "401", "413", "415", "422", "429", "503"} <= set(things["responses"])
    assert things["security"] == [{"bearerAuth": []}]
    assert "403" in doc["paths"]["/api/v1/things/admin"]["get"]["responses"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_docs_and_redoc_are_served_offline(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": []}})
    for page in ("/docs", "/redoc"):
        r = await client.get(page)
        html = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/") for a in assets), "every asset must be local"
        for asset in assets:
            async with client.stream("GET", asset) as a:
                assert a.status == 200 and len(await a.read()) > 100, asset


async def test_index_ping_health(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["echoer"]}}, plugins=PLUGINS)
    r = await client.get("/")
    body = await r.json()
    assert body["name"] == "LlmMultiChat" and body["links"]["docs"] == "/docs"
    assert await (await client.get("/ping")).json() == {"pong": True}
    r = await client.get("/health")
    assert r.status == 200 and (await r.json())["status"] == "healthy"
