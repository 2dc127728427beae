"""The translate plugin: tools ``translate``, ``detect_language`` and ``languages`` over
LibreTranslate (default), Google Cloud Translation v2, DeepL, or the chat plugin's LLM.
See docs/translate.md."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp

from sdk import Health, Plugin, Tool, ToolCall, errors, hookimpl
from sdk.http import Upstream, client_session, close_session, upstream_latency

from .providers import Provider
from .providers.deepl import DeepL
from .providers.deepl import default_base_url as deepl_base_url
from .providers.google import DEFAULT_BASE_URL as GOOGLE_BASE_URL
from .providers.google import GoogleTranslate
from .providers.libretranslate import LibreTranslate
from .providers.llm import LLMTranslator
from .service import (
    DETECT_PARAMETERS,
    DETECT_RESULT,
    LANGUAGES_PARAMETERS,
    LANGUAGES_RESULT,
    TRANSLATE_PARAMETERS,
    TRANSLATE_RESULT,
    TranslateService,
)

LIBRETRANSLATE_BASE_URL = "http://127.0.0.1:5000"
# http(s), a host name or an IP (IPv6 in brackets), an optional port and path; no query,
# fragment or credentials. jsonschema does not enforce "format": "uri", so a pattern does.
URL_PATTERN = (
    r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(:[0-9]{1,5})?(/[^\s?#]*)?$"
)
NEEDS_KEY = {"google", "deepl"}


class TranslatePlugin(Plugin):
    name = "translate"
    version = "0.1.0"
    description = (
        "Translation and language detection (LibreTranslate, Google, DeepL or an LLM), as tools."
    )
    # The llm provider uses the chat plugin's "llm" service when chat is enabled.
    optional = ("chat",)
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "provider": {
                "type": "string",
                "enum": ["libretranslate", "google", "deepl", "llm"],
                "default": "libretranslate",
            },
            "base_url": {
                "type": "string",
                "pattern": URL_PATTERN,
                "default": LIBRETRANSLATE_BASE_URL,
                "description": "The provider's API base. Left at the LibreTranslate default, "
                "google and deepl use their public endpoints.",
            },
            "api_key": {"type": "string", "default": "", "x-secret": True},
            "max_text_chars": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100000,
                "default": 5000,
                "description": "Longer texts answer 413.",
            },
            "llm_provider": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9_.-]*$",
                "maxLength": 100,
                "default": "",
                "description": "provider = 'llm': a key of [plugins.chat.providers]; empty: "
                "chat's default_provider.",
            },
            "languages_cache_seconds": {
                "type": "integer",
                "minimum": 0,
                "maximum": 604800,
                "default": 3600,
            },
            "timeout_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 300,
                "default": 15,
                "description": "Total time allowed for one upstream request.",
            },
            "connect_timeout_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 60,
                "default": 5,
            },
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._session: aiohttp.ClientSession | None = None
        self._service: TranslateService | None = None
        self._llm: LLMTranslator | None = None

    # ---- configuration ----------------------------------------------------------------
    @property
    def provider_name(self) -> str:
        return str(self.config["provider"])

    def missing_setting(self) -> str:
        if self.provider_name in NEEDS_KEY and not self.config["api_key"]:
            return "plugins.translate.api_key"
        return ""

    def base_url(self) -> str:
        url = str(self.config["base_url"]).rstrip("/")
        if url != LIBRETRANSLATE_BASE_URL:
            return url
        if self.provider_name == "google":
            return GOOGLE_BASE_URL
        if self.provider_name == "deepl":
            return deepl_base_url(str(self.config["api_key"]))
        return url

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        total = float(self.config["timeout_seconds"])
        self._session = client_session(
            timeout=aiohttp.ClientTimeout(
                total=total, connect=float(self.config["connect_timeout_seconds"])
            ),
            headers={"User-Agent": f"llmmultichat-translate/{self.version}"},
        )
        self._service = TranslateService(
            self._provider(self._session, total),
            int(self.config["max_text_chars"]),
            float(self.config["languages_cache_seconds"]),
            self.context.metrics.counter(
                "languages_cache_lookups",
                "Lookups of the provider's cached language list, by result (hit or miss)",
                ("result",),
            ),
        )
        if missing := self.missing_setting():
            self.log.warning(
                "translate provider %s needs %s; the tools answer 503 until it is set",
                self.provider_name,
                missing,
            )

    def _provider(self, session: aiohttp.ClientSession, timeout: float) -> Provider:
        key = str(self.config["api_key"] or "")
        name = self.provider_name
        if name == "llm":
            self._llm = LLMTranslator(self.context, str(self.config["llm_provider"]))
            return self._llm
        latency = upstream_latency(self.context.metrics)
        if name == "google":
            upstream = Upstream(session, "Google Translation", timeout, latency=latency)
            return GoogleTranslate(upstream, self.base_url(), key)
        if name == "deepl":
            return DeepL(Upstream(session, "DeepL", timeout, latency=latency), self.base_url(), key)
        upstream = Upstream(session, "LibreTranslate", timeout, latency=latency)
        return LibreTranslate(upstream, self.base_url(), key)

    async def stop(self) -> None:
        self._service = None
        if self._session is not None:
            await close_session(self._session)
            self._session = None

    async def health(self) -> Health:
        checks: dict[str, Any] = {"provider": self.provider_name}
        if missing := self.missing_setting():
            checks["api_key"] = "missing"
            return Health(
                status="unavailable",
                detail=f"provider {self.provider_name} needs the setting {missing}",
                checks=checks,
            )
        if self._llm is not None and self._llm.service() is None:
            checks["llm"] = "chat plugin not running"
            return Health(
                status="unavailable",
                detail='provider llm needs the chat plugin: add "chat" to plugins.enabled',
                checks=checks,
            )
        if self._service is None:
            return Health(status="unavailable", detail="not started", checks=checks)
        return Health(status="ok", checks=checks)

    # ---- the tools --------------------------------------------------------------------
    def _ready(self) -> TranslateService:
        if missing := self.missing_setting():
            raise errors.ServiceUnavailable(
                f"The translate provider {self.provider_name} needs an API key: "
                f"set {missing} in plugins.toml",
                code="MISSING_SETTING",
                extra={"setting": missing},
            )
        if self._service is None:
            raise errors.ServiceUnavailable("The translate plugin is not running")
        return self._service

    async def _translate(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        return await self._ready().translate(
            str(params["text"]),
            str(params["target_lang"]),
            params.get("source_lang"),
            call.identity,
        )

    async def _detect(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        return await self._ready().detect(str(params["text"]), call.identity)

    async def _languages(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        return await self._ready().list_languages()

    @hookimpl
    def register_tools(self) -> list[Tool]:
        return [
            Tool(
                name="translate",
                description="Translate a text into another language (the source language "
                "is detected unless given).",
                parameters=TRANSLATE_PARAMETERS,
                handler=self._translate,
                result=TRANSLATE_RESULT,
            ),
            Tool(
                name="detect_language",
                description="Tell which language a text is written in (a language code).",
                parameters=DETECT_PARAMETERS,
                handler=self._detect,
                result=DETECT_RESULT,
            ),
            Tool(
                name="languages",
                description="List the language codes the translate tool accepts.",
                parameters=LANGUAGES_PARAMETERS,
                handler=self._languages,
                result=LANGUAGES_RESULT,
            ),
        ]
