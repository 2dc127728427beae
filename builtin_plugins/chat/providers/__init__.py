"""LLM provider types. The chat plugin registers these three through its own
``register_llm_providers`` hook, the same way a third-party plugin adds a type."""

from __future__ import annotations

from .anthropic import AnthropicProvider
from .base import Completion, LLMProvider, StreamEvent, ToolCallRequest, Usage
from .llama_cpp import LlamaCppProvider
from .openai import OpenAIProvider

BUILTIN_PROVIDERS: dict[str, type[LLMProvider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "llama_cpp": LlamaCppProvider,
}

__all__ = [
    "BUILTIN_PROVIDERS",
    "AnthropicProvider",
    "Completion",
    "LLMProvider",
    "LlamaCppProvider",
    "OpenAIProvider",
    "StreamEvent",
    "ToolCallRequest",
    "Usage",
]
