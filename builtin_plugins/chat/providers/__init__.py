"""The chat plugin's own LLM provider types. It offers them through its
``register_llm_providers`` hook, the same way a third-party plugin adds a type."""

from __future__ import annotations

from sdk import LLMProvider

from .anthropic import AnthropicProvider
from .llama_cpp import LlamaCppProvider
from .openai import OpenAIProvider

BUILTIN_PROVIDERS: list[type[LLMProvider]] = [OpenAIProvider, AnthropicProvider, LlamaCppProvider]

__all__ = ["BUILTIN_PROVIDERS", "AnthropicProvider", "LlamaCppProvider", "OpenAIProvider"]
