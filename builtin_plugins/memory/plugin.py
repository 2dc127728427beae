"""The memory plugin: five tiers of memory per user, embeddings, hybrid search, and the
``memory_context`` hook that feeds the conversation. See docs/memory.md.

Wiring only: the config schema, the lifecycle, the event subscriptions and the hooks.
The work is done by the memory service (service.py), which the routes (routes.py), the
context hook (context.py) and the turn recorder (ingest.py) go through."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from sdk import Database, Embedder, Event, Health, Identity, Plugin, PluginContext, errors, hookimpl
from sdk.embedder import collect_embedder_classes
from sdk.events import CHAT_MESSAGE_CREATED, SESSION_DELETED, USER_DELETED
from sdk.plugin import unless_shared_redis

from .context import memory_context
from .embedders.registry import BUILTIN_EMBEDDERS, choose_embedder
from .ingest import TurnRecorder
from .routes import MemoryRoutes
from .service import MemoryService
from .session_cache import SessionCache
from .store import MIGRATIONS, MemoryStore
from .vectors.index import VectorIndex
from .vectors.search import VectorSearch
from .vectors.shared import SharedVectorIndex

URL_PATTERN = r"^$|^https?://\S+$"
STOP_DRAIN_SECONDS = 10
REDIS_URL_PATTERN = r"^$|^none$|^(redis|rediss|unix)://\S+$"


class MemoryPlugin(Plugin):
    name = "memory"
    requires = ("storage",)
    migrations = MIGRATIONS
    version = "0.1.0"
    description = "Five memory tiers per user (short, mid, long term, associative, knowledge), embeddings and semantic search."
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "embedder": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
                "default": "local",
                "description": "local: all-MiniLM-L6-v2 on CPU, offline (falls back to hashing "
                "when not installed); openai: an OpenAI-compatible /v1/embeddings server; "
                "hashing: character n-gram feature hashing, no model; or the type of an "
                "embedder a plugin registers (register_embedders).",
            },
            "embedder_settings": {
                "type": "object",
                "default": {},
                "description": "settings for the embedder type (a plugin's type reads its own "
                "keys here), over this table's embedder keys (base_url, model, ...)",
            },
            "base_url": {"type": "string", "pattern": URL_PATTERN, "default": ""},
            "api_key": {"type": "string", "default": "", "x-secret": True},
            "model": {"type": "string", "maxLength": 200, "default": ""},
            "model_path": {
                "type": "string",
                "default": "",
                "description": "embedder local: a sentence-transformers model folder instead of the packaged one",
            },
            "local_runtime": {
                "type": "string",
                "enum": ["auto", "onnxruntime", "torch"],
                "default": "auto",
                "description": "embedder local: auto runs the model on ONNX Runtime when it is "
                "installed and gives torch's vectors (about 2.5x faster on CPU), else on torch",
            },
            "local_precision": {
                "type": "string",
                "enum": ["int8", "float32"],
                "default": "int8",
                "description": "embedder local on ONNX Runtime: int8 runs a copy with int8 "
                "weights (a query in about 4 ms on one thread instead of 6 ms; a vector space of "
                "its own, model id all-MiniLM-L6-v2-int8, so memories embedded by the float "
                "model are embedded again at start); float32 runs torch's exact weights",
            },
            "embed_timeout_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 600,
                "default": 30,
            },
            "hashing_dim": {"type": "integer", "minimum": 64, "maximum": 4096, "default": 512},
            "auto_extract": {"type": "boolean", "default": True},
            "record_linger_ms": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10000,
                "default": 250,
                "description": "chat turns are recorded in batches: a worker waits this long "
                "after the first turn for more (one embedding call and one transaction per "
                "user for all of them); 0: record each at once",
            },
            "extractor": {
                "type": "string",
                "enum": ["auto", "llm", "rules"],
                "default": "auto",
                "description": "auto/llm: the chat plugin's LLM when running, else the rules; rules: never the LLM",
            },
            "short_term_turns": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 12},
            "summary_every_turns": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 6},
            "summary_max_words": {
                "type": "integer",
                "minimum": 10,
                "maximum": 2000,
                "default": 120,
            },
            "mid_term_ttl_seconds": {"type": "integer", "minimum": 60, "default": 604800},
            "redis_url": {
                "type": "string",
                "pattern": REDIS_URL_PATTERN,
                "default": "",
                "x-secret": True,
                "description": "Redis for the short/mid-term copies; empty: the bus's Redis when "
                "[kernel.bus] backend = 'redis', else none; 'none': never Redis.",
            },
            "redis_prefix": {"type": "string", "maxLength": 100, "default": "llmmc:memory:"},
            "max_content_chars": {
                "type": "integer",
                "minimum": 100,
                "maximum": 200000,
                "default": 10000,
            },
            "knowledge_chunk_chars": {
                "type": "integer",
                "minimum": 100,
                "maximum": 20000,
                "default": 800,
            },
            "knowledge_chunk_overlap": {
                "type": "integer",
                "minimum": 0,
                "maximum": 5000,
                "default": 100,
            },
            "dedupe_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.92},
            "link_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.75},
            "context_top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
            "context_min_score": {"type": "number", "minimum": -1, "maximum": 1, "default": 0.25},
            "index_min_vectors": {
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": "users with at least this many vectors are searched through the "
                "in-process index (1: every user who searches; the SQL scan only with the index off)",
            },
            "index_ivf_min_vectors": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "description": "users with at least this many vectors also get inverted lists "
                "(approximate, much faster on very large stores); 0: always exact",
            },
            "index_ivf_probe_fraction": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "default": 0.1,
                "description": "share of the inverted lists scanned per search (recall against speed)",
            },
            "index_half_min_vectors": {
                "type": "integer",
                "minimum": 0,
                "default": 20000,
                "description": "users with at least this many vectors are scanned in float16 first "
                "(with torch), then the best candidates re-scored exactly; 0: float32 only",
            },
            "index_max_mb": {
                "type": "integer",
                "minimum": 0,
                "default": 1024,
                "description": "memory for in-process indexes (least recently used dropped first); 0 turns them off",
            },
            "keyword_index_mb": {
                "type": "integer",
                "minimum": 0,
                "default": 256,
                "description": "DuckDB only: memory for the users' keyword postings (BM25) kept "
                "in process (least recently used users dropped first); 0: keyword search in SQL",
            },
            "row_cache_mb": {
                "type": "integer",
                "minimum": 0,
                "default": 32,
                "description": "DuckDB only: memory for the rows and links a reply's context "
                "reads, kept in process (least recently used users dropped first); 0 turns it off",
            },
        },
    }

    def __init__(self, context: PluginContext) -> None:
        super().__init__(context)
        self.store: MemoryStore | None = None
        self.index: VectorIndex | None = None
        self.vectors: VectorSearch | None = None
        self.embedder: Embedder | None = None
        self.service: MemoryService | None = None
        self.recorder: TurnRecorder | None = None
        self.cache: SessionCache | None = None
        self.degraded: list[str] = []
        self.unavailable: str = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: list[Any] = []

    # ---- lifecycle --------------------------------------------------------------------
    async def initialize(self) -> None:
        config = self.config
        # With Redis, other processes may share the database: keep the indexes in step.
        index_class = SharedVectorIndex if self._redis_url() else VectorIndex
        self.index = index_class(
            int(config["index_min_vectors"]),
            int(config["index_max_mb"]) * 1024 * 1024,
            ivf_min_vectors=int(config["index_ivf_min_vectors"]),
            ivf_probe_fraction=float(config["index_ivf_probe_fraction"]),
            half_min_vectors=int(config["index_half_min_vectors"]),
        )
        self.store = MemoryStore(
            self.context.database,
            row_cache_bytes=int(config["row_cache_mb"]) * 1024 * 1024,
            keyword_bytes=int(config["keyword_index_mb"]) * 1024 * 1024,
        )
        self.vectors = VectorSearch(self.store, self.index)
        self._declare_metrics(self.store, self.index)
        await self.store.load_dims()

    def _declare_metrics(self, store: MemoryStore, index: VectorIndex) -> None:
        metrics = self.context.metrics
        size = metrics.gauge("index_bytes", "Memory held by the in-process vector index")
        vectors = metrics.gauge("index_vectors", "Vectors held by the in-process vector index")
        users = metrics.gauge("index_users", "Users whose vectors the index holds")
        rows = metrics.gauge("row_cache_bytes", "Memory held by the cache of rows and links")

        def collect() -> None:
            rows.set(store.rows.nbytes())
            size.set(index.nbytes())
            n_users, n_vectors = index.counts()
            users.set(n_users)
            vectors.set(n_vectors)

        metrics.on_collect(collect)

    def _redis_url(self) -> str:
        return self.shared_redis_url(str(self.config["redis_url"] or ""))

    @classmethod
    def process_local_settings(
        cls, config: dict[str, Any], kernel_config: dict[str, Any]
    ) -> list[str]:
        return unless_shared_redis(
            config,
            kernel_config,
            "[plugins.memory] redis_url (keeps the processes' vector indexes in step)",
        )

    async def start(self) -> None:
        assert self.store is not None and self.vectors is not None
        # Every embedder type, ours included, as plugins register them (a plugin's answer
        # that is not a list of embedder classes is logged, naming it, and left out).
        types, problems = collect_embedder_classes(
            await self.context.hooks.results("register_embedders")
        )
        for problem in problems:
            self.log.error("memory: %s", problem)
        self.embedder, self.unavailable, self.degraded = choose_embedder(
            types, self.config, self.log
        )
        if self.embedder.dim and not self.unavailable:
            await self.store.ensure_dim(self.embedder.dim)
        redis_url = self._redis_url()
        if redis_url:
            self.cache = SessionCache(
                redis_url,
                str(self.config["redis_prefix"]),
                int(self.config["mid_term_ttl_seconds"]),
                self.log,
            )
            await self.cache.start()
        self.service = MemoryService(
            store=self.store,
            vectors=self.vectors,
            embedder=self.embedder,
            cache=self.cache,
            config=self.config,
            hooks=self.context.hooks,
            services=self.context.services,
            metrics=self.context.metrics,
            log=self.log,
        )
        self.service.spawn = self._spawn
        self.recorder = TurnRecorder(
            self.service, linger_ms=int(self.config["record_linger_ms"]), log=self.log
        )
        self.recorder.start(self._spawn)
        if isinstance(self.index, SharedVectorIndex):
            await self.index.start(redis_url, str(self.config["redis_prefix"]), self.context.bus)
        bus = self.context.bus
        # Every process hears every event (Redis bus): storing a turn or erasing data is
        # done once, by the process that published the event; every process forgets a
        # deleted user.
        self._unsubscribe = [
            bus.subscribe(CHAT_MESSAGE_CREATED, self._on_message, local_only=True),
            bus.subscribe(USER_DELETED, self._on_user_deleted_anywhere),
            bus.subscribe(USER_DELETED, self._on_user_deleted, local_only=True),
            bus.subscribe(SESSION_DELETED, self._on_session_deleted, local_only=True),
        ]
        if not self.unavailable:
            self.service.loading_model = True
            self._spawn(self.service.warm_up(), "memory-warm-up")

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            with contextlib.suppress(Exception):
                unsubscribe()
        self._unsubscribe = []
        if self.recorder is not None:
            # Turns already received are recorded before stopping, within reason.
            await self.recorder.drain(STOP_DRAIN_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if isinstance(self.index, SharedVectorIndex):
            await self.index.stop()
        if self.embedder is not None:
            await self.embedder.close()
        if self.cache is not None:
            await self.cache.stop()
            self.cache = None

    async def health(self) -> Health:
        checks: dict[str, Any] = {"embedder": self.embedder_info()}
        if self.unavailable:
            return Health("unavailable", self.unavailable, checks)
        notes = list(self.degraded)
        if self.cache is not None:
            ok = await self.cache.ping()
            checks["redis"] = "ok" if ok else self.cache.last_error or "unreachable"
            if not ok:
                notes.append("Redis unreachable: short/mid-term served from DuckDB")
        checks["pending_tasks"] = len(self._tasks)
        checks["turns_waiting"] = self.recorder.waiting if self.recorder is not None else 0
        if self.index is not None:
            checks["index_mb"] = round(self.index.nbytes() / 1048576, 1)
        if isinstance(self.index, SharedVectorIndex):
            checks["index_sync"] = self.index.redis_error or "ok"
            if self.index.redis_error:
                notes.append("Redis unreachable: indexes follow other processes by bus only")
        if notes:
            return Health("degraded", "; ".join(notes), checks)
        return Health("ok", "", checks)

    def not_ready(self) -> str | None:
        """Why this plugin cannot serve yet: its embedding model is still loading (the
        first search or chat turn would wait seconds for it)."""
        if self.service is not None and self.service.loading_model:
            return f"loading the embedding model ({self.embedder_info().get('model', '?')})"
        return None

    # ---- helpers ----------------------------------------------------------------------
    def require_service(self) -> MemoryService:
        if self.unavailable:
            raise errors.ServiceUnavailable(self.unavailable, code="EMBEDDER_NOT_CONFIGURED")
        if self.service is None:
            raise errors.ServiceUnavailable(
                "the memory plugin is not running", code="PLUGIN_NOT_RUNNING"
            )
        return self.service

    def embedder_info(self) -> dict[str, Any]:
        info = self.embedder.describe() if self.embedder else {}
        info["configured"] = self.config["embedder"]
        info["fallback"] = bool(self.degraded) and self.config["embedder"] == "local"
        return info

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(self._in_background(coro), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_background(self, coro: Any) -> Any:
        # Recording, extraction and the warm-up: nobody waits for them, so their DuckDB
        # statements run on the low-priority threads (a reply's commit and reads do not
        # queue behind them for CPU: 1 ms off a chat turn's median on 2 cores).
        with self.context.database.background():
            return await coro

    async def idle(self) -> None:
        """Wait until every chat turn received is recorded and every other background
        task (warm-up) is done. For tests and orderly shutdowns."""
        if self.recorder is not None:
            await self.recorder.idle()
        while others := [t for t in self._tasks if not t.get_name().startswith("memory-record-")]:
            await asyncio.gather(*others, return_exceptions=True)

    # ---- events -----------------------------------------------------------------------
    async def _on_message(self, event: Event) -> None:
        if self.recorder is not None and not self.unavailable:
            await self.recorder.receive(event.data)

    async def _on_user_deleted_anywhere(self, event: Event) -> None:
        user_id = str(event.data.get("user_id") or "")
        if user_id and self.recorder is not None:
            self.recorder.forget_user(user_id)

    async def _on_user_deleted(self, event: Event) -> None:
        user_id = str(event.data.get("user_id") or "")
        if user_id and self.service is not None:
            n = await self.service.delete_user(user_id)
            self.log.info("memory: erased %d memories of deleted user %s", n, user_id)

    async def _on_session_deleted(self, event: Event) -> None:
        user_id = str(event.data.get("user_id") or "")
        session_id = str(event.data.get("session_id") or "")
        if user_id and session_id and self.service is not None:
            await self.service.delete_session(user_id, session_id)

    # ---- hooks ------------------------------------------------------------------------
    @hookimpl
    def register_embedders(self) -> list[type[Embedder]]:
        return list(BUILTIN_EMBEDDERS)

    @hookimpl
    async def copy_tables(self, target: Database) -> list[str]:
        assert self.store is not None
        return await self.store.prepare_copy(MemoryStore(target))

    @hookimpl
    def register_routes(self) -> list[Any]:
        return MemoryRoutes(
            self.require_service,
            max_content_chars=self.config["max_content_chars"],
            embedder_info=self.embedder_info,
            log=self.log,
        ).routes()

    @hookimpl
    async def memory_context(
        self, identity: Identity, session_id: str | None, query: str, max_tokens: int
    ) -> list[dict[str, Any]] | None:
        if self.service is None or self.recorder is None or self.unavailable or identity is None:
            return None
        async with self.recorder.reply_in_progress():
            try:
                return await memory_context(self.service, identity, session_id, query, max_tokens)
            except Exception:
                # The conversation goes on without memories rather than failing.
                self.log.exception("memory: memory_context failed")
                return None
