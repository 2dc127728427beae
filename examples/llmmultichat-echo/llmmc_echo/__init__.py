"""A rule-based LLM provider for LlmMultiChat, written with only the SDK."""
