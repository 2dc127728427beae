"""Request limits per route and daily LLM token quotas (in-process or shared through Redis)."""
