"""The LlmMultiChat SDK: everything a plugin author imports.

from sdk import Plugin, Route, Tool, hookimpl, errors
from sdk import LLMProvider, StreamEvent, Usage   # to add an LLM backend
from sdk import Embedder                        # to add an embedder (memory)
"""

from . import audit, credentials, embedder, errors, events, llm, metrics, services
from .cli import CliCommand
from .database import Database, Migration, Transaction
from .embedder import Embedder
from .errors import Problem
from .events import Event, EventBus
from .hooks import HookCaller, hookimpl, hookspec
from .identity import Identity
from .llm import Completion, LLMProvider, StreamEvent, ToolCallRequest, Usage
from .metrics import Metrics
from .plugin import Health, Plugin, PluginContext, PluginEvent, PluginInfo, PluginState
from .routes import Middleware, Request, Response, Route
from .services import LLMService, RateLimiter, Services
from .tools import Tool, ToolCall, ToolRegistry

ENTRY_POINT_GROUP = "llmmultichat.plugins"

__all__ = [
    "ENTRY_POINT_GROUP",
    "CliCommand",
    "Completion",
    "Database",
    "Embedder",
    "Event",
    "EventBus",
    "Health",
    "HookCaller",
    "Identity",
    "LLMProvider",
    "LLMService",
    "Metrics",
    "Middleware",
    "Migration",
    "Plugin",
    "PluginContext",
    "PluginEvent",
    "PluginInfo",
    "PluginState",
    "Problem",
    "RateLimiter",
    "Request",
    "Response",
    "Route",
    "Services",
    "StreamEvent",
    "Tool",
    "ToolCall",
    "ToolCallRequest",
    "ToolRegistry",
    "Transaction",
    "Usage",
    "audit",
    "credentials",
    "embedder",
    "errors",
    "events",
    "hookimpl",
    "hookspec",
    "llm",
    "metrics",
    "services",
]
