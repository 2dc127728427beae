"""Discovery, ordering, lifecycle states, isolation of failures and required plugins."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from kernel.config import ConfigError
from kernel.plugins import StartupError
from sdk import Plugin, Request, Route, hookimpl
from tests.serverproc import ServerProcess

from .samples.llmmc_samples import Crasher, Echoer, NeedsCrasher

SAMPLES = {"crasher": Crasher, "echoer": Echoer, "needs_crasher": NeedsCrasher}


def cfg(fail_in: str, *extra: str) -> dict[str, Any]:
    return {"plugins": {"enabled": ["crasher", "echoer", *extra], "crasher": {"fail_in": fail_in}}}


async def test_healthy_plugins_run_and_stop(llmmc: Any) -> None:
    client = await llmmc(cfg("none", "needs_crasher"), plugins=SAMPLES)
    assert client.plugin_state("crasher") == "RUNNING"
    r = await client.get("/api/v1/plugins")
    states = {p["name"]: p["state"] for p in (await r.json())["plugins"]}
    assert states == {
        "testauth": "RUNNING",
        "crasher": "RUNNING",
        "echoer": "RUNNING",
        "needs_crasher": "RUNNING",
    }
    await client.close()
    assert client.plugin_state("crasher") == "STOPPED"
    assert client.plugin_state("echoer") == "STOPPED"


@pytest.mark.parametrize("phase", ["initialize", "register_routes"])
async def test_failure_before_start_isolates_the_plugin(llmmc: Any, phase: str) -> None:
    client = await llmmc(cfg(phase, "needs_crasher"), plugins=SAMPLES)
    assert client.plugin_state("crasher") == "ERROR"
    assert client.plugin_state("needs_crasher") == "ERROR"  # its dependent is not started
    assert client.plugin_state("echoer") == "RUNNING"
    r = await client.get("/api/v1/plugins/crasher")
    body = await r.json()
    assert body["state"] == "ERROR" and f"crasher fails in {phase}" in body["error"]
    r = await client.get("/api/v1/plugins/needs_crasher")
    assert "crasher" in (await r.json())["error"]
    r = await client.get("/api/v1/echoer/events")  # the others keep serving
    assert r.status == 200
    r = await client.get("/health")
    health = await r.json()
    assert r.status == 200 and health["status"] == "degraded"
    assert health["plugins"]["crasher"]["state"] == "ERROR"


async def test_failure_in_start_makes_routes_answer_503(llmmc: Any) -> None:
    client = await llmmc(cfg("start", "needs_crasher"), plugins=SAMPLES)
    assert client.plugin_state("crasher") == "ERROR"
    assert client.plugin_state("needs_crasher") == "ERROR"
    r = await client.get("/api/v1/crasher/hello")
    assert r.status == 503
    problem = await r.json()
    assert r.content_type == "application/problem+json"
    assert problem["code"] == "PLUGIN_UNAVAILABLE" and "crasher fails in start" in problem["detail"]
    r = await client.get("/api/v1/needs_crasher/hello")
    assert r.status == 503
    assert (await client.get("/api/v1/echoer/events")).status == 200


async def test_failure_in_stop_is_recorded(llmmc: Any) -> None:
    client = await llmmc(cfg("stop"), plugins=SAMPLES)
    assert client.plugin_state("crasher") == "RUNNING"
    await client.close()
    assert client.plugin_state("crasher") == "ERROR"
    assert "stop failed" in client.kernel.records["crasher"].error
    assert client.plugin_state("echoer") == "STOPPED"


async def test_plugin_that_is_not_installed_is_an_error_not_a_crash(llmmc: Any) -> None:
    client = await llmmc({"plugins": {"enabled": ["ghost", "echoer"]}}, plugins=SAMPLES)
    assert client.plugin_state("ghost") == "ERROR"
    assert "no plugin named 'ghost' is installed" in client.kernel.records["ghost"].error
    assert client.plugin_state("echoer") == "RUNNING"


ORDER: list[str] = []


def _ordered(name: str, requires: tuple[str, ...] = ()) -> type[Plugin]:
    class P(Plugin):
        async def start(self) -> None:
            ORDER.append(f"start:{self.name}")

        async def stop(self) -> None:
            ORDER.append(f"stop:{self.name}")

    P.name, P.requires = name, requires
    return P


async def test_start_in_dependency_order_and_stop_in_reverse(llmmc: Any) -> None:
    ORDER.clear()
    plugins = {"c": _ordered("c", ("b",)), "b": _ordered("b", ("a",)), "a": _ordered("a")}
    client = await llmmc({"plugins": {"enabled": ["c", "b", "a"]}}, plugins=plugins)
    await client.close()
    assert ORDER == ["start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"]


async def test_cycle_is_a_startup_error_naming_the_plugins(llmmc: Any) -> None:
    plugins = {"x": _ordered("x", ("y",)), "y": _ordered("y", ("x",))}
    with pytest.raises(StartupError, match=r"cycle: (x -> y -> x|y -> x -> y)"):
        await llmmc({"plugins": {"enabled": ["x", "y"]}}, plugins=plugins)


async def test_missing_requirement_is_a_startup_error(llmmc: Any) -> None:
    with pytest.raises(
        StartupError, match="'needs_crasher' requires 'crasher', which is not enabled"
    ):
        await llmmc({"plugins": {"enabled": ["needs_crasher"]}}, plugins=SAMPLES)


async def test_required_not_enabled_is_a_config_error(llmmc: Any) -> None:
    with pytest.raises(ConfigError, match=r"'auth' is required but not in plugins\.enabled"):
        await llmmc({"plugins": {"enabled": ["echoer"], "required": ["auth"]}}, plugins=SAMPLES)


async def test_duplicate_routes_are_rejected(llmmc: Any) -> None:
    class Copycat(Plugin):
        name = "copycat"

        @hookimpl
        def register_routes(self) -> list[Route]:
            async def h(req: Request) -> dict[str, Any]:
                return {}

            return [Route("GET", "/api/v1/echoer/events", h, auth="public")]

    with pytest.raises(
        StartupError,
        match=r"duplicate route GET /api/v1/echoer/events: declared by 'echoer' and 'copycat'",
    ):
        await llmmc(
            {"plugins": {"enabled": ["echoer", "copycat"]}}, plugins={**SAMPLES, "copycat": Copycat}
        )


def test_entry_point_that_fails_to_import_is_an_error_with_traceback(
    tmp_path: Path, samples_env: dict[str, str]
) -> None:
    async def check(server: ServerProcess) -> None:
        status, body, _ = await server.request("GET", "/api/v1/plugins/broken")
        assert status == 200
        assert body["state"] == "ERROR" and body["error"].startswith(
            "import failed: ModuleNotFoundError"
        )
        status, body, _ = await server.request("GET", "/api/v1/echoer/events")
        assert status == 200

    with ServerProcess(
        {"plugins": {"enabled": ["broken", "echoer"]}}, tmp_path, env=samples_env
    ) as server:
        asyncio.run(check(server))


@pytest.mark.parametrize("phase", ["initialize", "start"])
def test_required_plugin_failure_exits_non_zero(
    tmp_path: Path, samples_env: dict[str, str], phase: str
) -> None:
    server = ServerProcess(
        {
            "plugins": {
                "enabled": ["crasher", "echoer"],
                "required": ["crasher"],
                "crasher": {"fail_in": phase},
            }
        },
        tmp_path,
        env=samples_env,
    )
    server.start(wait=False)
    assert server.wait(60) == 1
    assert (
        f"required plugin 'crasher' failed: {phase} failed: RuntimeError: crasher fails in {phase}"
        in server.output()
    )


def test_sigterm_lets_in_flight_requests_finish(
    tmp_path: Path, samples_env: dict[str, str]
) -> None:
    server = ServerProcess({"plugins": {"enabled": ["echoer"]}}, tmp_path, env=samples_env).start()

    async def scenario() -> tuple[int, Any]:
        pending = asyncio.create_task(server.request("GET", "/api/v1/echoer/slow?seconds=1.5"))
        await asyncio.sleep(0.4)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        status, body, _ = await pending
        return status, body

    status, body = asyncio.run(scenario())
    assert (status, body) == (200, {"slept": True})
    assert server.wait(30) == 0
