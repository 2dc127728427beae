"""The chat plugin: characters, LLM providers, the LangGraph conversation graph, REST/SSE/WS."""
