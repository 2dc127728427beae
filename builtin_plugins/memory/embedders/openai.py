"""``openai``: any OpenAI-compatible ``POST {base_url}/embeddings`` server (OpenAI, Ollama,
vLLM, llama.cpp server, LM Studio, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import numpy as np

from sdk import errors
from sdk.embedder import Embedder
from sdk.http import client_session


class OpenAIEmbedder(Embedder):
    type = "openai"
    max_batch = 64

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 30.0) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.model_id = f"openai:{model}"
        self.model = model
        self._api_key = api_key
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> OpenAIEmbedder:
        return cls(
            str(settings.get("base_url") or ""),
            str(settings.get("model") or ""),
            str(settings.get("api_key") or ""),
            float(settings.get("embed_timeout_seconds") or 30.0),
        )

    def unavailable_reason(self) -> str | None:
        missing = [k for k in ("base_url", "model") if not getattr(self, k)]
        if missing:
            return "embedder 'openai' needs " + " and ".join(f"plugins.memory.{k}" for k in missing)
        return None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = client_session(timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self._session

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        payload = {"model": self.model, "input": texts, "encoding_format": "float"}
        url = f"{self.base_url}/embeddings"
        try:
            async with self._client().post(url, json=payload, headers=headers) as resp:
                if resp.status >= 400:
                    text = (await resp.text())[:300]
                    raise errors.BadGateway(
                        f"embeddings server answered {resp.status}: {text}",
                        code="EMBEDDING_UPSTREAM_ERROR",
                    )
                body: Any = await resp.json(content_type=None)
        except TimeoutError as exc:
            raise errors.GatewayTimeout(
                "embeddings server timed out", code="EMBEDDING_UPSTREAM_TIMEOUT"
            ) from exc
        except aiohttp.ClientError as exc:
            raise errors.BadGateway(
                f"embeddings server unreachable: {exc.__class__.__name__}",
                code="EMBEDDING_UPSTREAM_ERROR",
            ) from exc
        try:
            data = sorted(body["data"], key=lambda item: int(item.get("index", 0)))
            matrix = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.BadGateway(
                "embeddings server sent a malformed answer", code="EMBEDDING_UPSTREAM_ERROR"
            ) from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise errors.BadGateway(
                f"embeddings server returned {matrix.shape[0] if matrix.ndim else 0} vectors for {len(texts)} inputs",
                code="EMBEDDING_UPSTREAM_ERROR",
            )
        if self.dim is not None and matrix.shape[1] != self.dim:
            raise errors.BadGateway(
                f"embeddings changed dimension ({self.dim} -> {matrix.shape[1]})",
                code="EMBEDDING_UPSTREAM_ERROR",
            )
        return matrix
