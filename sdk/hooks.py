"""Hook specifications: how plugins contribute to the server and take part in decisions.

Implement a hook by defining a method of the same name on your Plugin class, decorated
with ``@hookimpl``. Any implementation may be ``async``. The kernel calls every
implementation itself, one plugin at a time, so a plugin whose hook raises is blamed by
name and does not take the others down. The full contract of each hook is in
``docs/hooks.md``; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from .cli import CliCommand
    from .database import Database, Migration
    from .embedder import Embedder
    from .identity import Identity
    from .llm import LLMProvider
    from .plugin import PluginEvent
    from .routes import Middleware, Request, Route
    from .tools import Tool

PROJECT = "llmmultichat"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    @hookspec
    def register_routes(self) -> list[Route]:
        """Return the HTTP routes this plugin serves."""

    @hookspec
    def register_tools(self) -> list[Tool]:
        """Return the tools this plugin offers to characters and to the execute route."""

    @hookspec
    def register_llm_providers(self) -> list[type[LLMProvider]]:
        """Return :class:`sdk.LLMProvider` subclasses; each one's ``type`` is the name ``[plugins.chat.providers.*]`` tables use."""

    @hookspec
    def register_embedders(self) -> list[type[Embedder]]:
        """Return :class:`sdk.Embedder` subclasses; each one's ``type`` is a name ``[plugins.memory] embedder`` may choose."""

    @hookspec
    def register_characters(self) -> list[dict[str, Any]]:
        """Return extra chat characters, each a dict shaped like a ``[plugins.chat.characters.*]`` table plus ``id``."""

    @hookspec
    def register_cli_commands(self) -> list[CliCommand]:
        """Return :class:`sdk.cli.CliCommand` objects that become ``llmmultichat`` subcommands."""

    @hookspec
    def register_middleware(self) -> list[Middleware]:
        """Return :class:`sdk.Middleware` objects that wrap every request (access log, metrics, compression)."""

    @hookspec
    def prepare_plugin(self, name: str, migrations: Sequence[Migration]) -> None:
        """Prepare what plugin ``name`` needs before it initializes (the storage plugin applies its ``migrations``); raise to fail it."""

    @hookspec
    def plugin_overrides(self) -> dict[str, dict[str, Any]] | None:
        """The run-time plugin changes to apply over ``plugins.toml`` at start: ``{name: {"enabled": bool | None, "config": {key: value} | None}}`` (``config``: the keys set at run time). Asked once the implementing plugin (and what it requires) initialized."""

    @hookspec
    def plugin_event(self, event: PluginEvent) -> None:
        """A plugin's history grew by ``event`` (``ServerView.record``); keep it (the plugin administration stores it). Must not block."""

    @hookspec
    def browser_home(self) -> str | None:
        """Return the path (on this server) that a browser asking ``GET /`` for HTML is redirected to, or None."""

    @hookspec
    def authenticate(self, request: web.Request) -> Identity | None:
        """Return the caller's Identity from the request's credentials, None if not yours; raise InvalidCredentials for a bad one."""

    @hookspec
    def permission_allowed(self, identity: Identity, action: str, resource: Any) -> bool | None:
        """Return False to deny ``action`` on ``resource`` to ``identity``, True to allow, None to abstain; any False wins."""

    @hookspec
    def before_request(self, request: Request) -> dict[str, str] | None:
        """Inspect an authenticated request before its handler runs; raise a Problem to refuse, or return headers for the response."""

    @hookspec
    def memory_context(
        self, identity: Identity, session_id: str | None, query: str, max_tokens: int
    ) -> list[dict[str, Any]] | None:
        """Return memories relevant to ``query`` (each ``{tier, content, score, memory_id}``), within ``max_tokens``, for the prompt."""

    @hookspec
    def summarize_text(self, identity: Identity | None, text: str, max_words: int) -> str | None:
        """Return a summary of ``text`` in at most ``max_words`` words, or None to let another plugin answer."""

    @hookspec
    def copy_tables(self, target: Database) -> list[str]:
        """Return this plugin's tables for ``llmmultichat db copy``, parents first, after creating in ``target`` any table the plugin makes at run time."""


class HookCaller(Protocol):
    """How a plugin calls hooks of every plugin (``self.context.hooks``)."""

    async def call(self, name: str, **kwargs: Any) -> list[Any]:
        """Call every running plugin's implementation, await each, return the non-None results."""

    async def results(self, name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Like ``call``, with the name of the plugin that gave each answer."""

    async def first(self, name: str, **kwargs: Any) -> Any:
        """Call implementations until one returns something other than None; return it (or None)."""

    def has(self, name: str) -> bool:
        """Whether a running plugin implements hook ``name``."""
