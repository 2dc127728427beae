"""The memory plugin: five tiers of memory per user, embeddings, semantic search, and
the ``memory_context`` hook that feeds the conversation. See docs/memory.md."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any, ClassVar

from sdk import Database, Embedder, Event, Health, Identity, Plugin, errors, hookimpl
from sdk.embedder import collect_embedder_classes
from sdk.events import CHAT_MESSAGE_CREATED, SESSION_DELETED, USER_DELETED
from sdk.plugin import unless_shared_redis
from sdk.untrusted import repair

from .cache import SessionCache
from .coherence import SharedVectorIndex
from .context import memory_context
from .embedders.hashing import HashingEmbedder
from .embedders.local import LocalEmbedder, local_model_available
from .embedders.openai import OpenAIEmbedder
from .index import VectorIndex
from .routes import MemoryRoutes
from .store import MIGRATIONS, MemoryStore
from .tiers import MemoryService

URL_PATTERN = r"^$|^https?://\S+$"
# Chat turns waiting to be recorded, and the tasks recording them (see _on_message).
INBOX_TURNS = 10_000
RECORD_WORKERS = 2
RECORD_BATCH = 32  # turns a worker takes at once (stored in one write per user)
STOP_DRAIN_SECONDS = 10
# A worker about to record a turn waits while a reply's context is being worked out (it
# would compete for the CPU and the database), but never longer than this.
YIELD_SECONDS = 0.05
REDIS_URL_PATTERN = r"^$|^none$|^(redis|rediss|unix)://\S+$"
BUILTIN_EMBEDDERS: tuple[type[Embedder], ...] = (LocalEmbedder, OpenAIEmbedder, HashingEmbedder)
# The keys of [plugins.memory] every embedder type's settings start from.
EMBEDDER_KEYS = (
    "base_url",
    "api_key",
    "model",
    "model_path",
    "local_runtime",
    "local_precision",
    "embed_timeout_seconds",
    "hashing_dim",
)


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

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.store: MemoryStore | None = None
        self.index: VectorIndex | None = None
        self.embedder: Embedder | None = None
        self.service: MemoryService | None = None
        self.cache: SessionCache | None = None
        self.degraded: list[str] = []
        self.unavailable: str = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._contexts = 0  # memory_context calls in progress
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._gathering = asyncio.Lock()
        self._flush = asyncio.Event()  # set: record what is waiting now (idle(), stop())
        self._flushers = 0
        # Users deleted while this process runs: a chat reply finishing after the deletion
        # must not bring memories back. Bounded; user ids are never reused.
        self._deleted_users: OrderedDict[str, None] = OrderedDict()
        self._unsubscribe: list[Any] = []
        # True from start until the warm-up has loaded the embedding model (or failed to)
        self._loading_model = False

    # ---- lifecycle --------------------------------------------------------------------
    async def initialize(self) -> None:
        max_mb = int(self.config["index_max_mb"])
        # With Redis, other processes may share the database: keep the indexes in step.
        index_class = SharedVectorIndex if self._redis_url() else VectorIndex
        self.index = index_class(
            int(self.config["index_min_vectors"]),
            max_mb * 1024 * 1024,
            ivf_min_vectors=int(self.config["index_ivf_min_vectors"]),
            ivf_probe_fraction=float(self.config["index_ivf_probe_fraction"]),
            half_min_vectors=int(self.config["index_half_min_vectors"]),
        )
        self.store = MemoryStore(
            self.context.database,
            self.index,
            row_cache_bytes=int(self.config["row_cache_mb"]) * 1024 * 1024,
            keyword_bytes=int(self.config["keyword_index_mb"]) * 1024 * 1024,
        )
        self._declare_index_metrics(self.index)
        await self.store.load_dims()

    def _declare_index_metrics(self, index: VectorIndex) -> None:
        metrics = self.context.metrics
        size = metrics.gauge("index_bytes", "Memory held by the in-process vector index")
        vectors = metrics.gauge("index_vectors", "Vectors held by the in-process vector index")
        users = metrics.gauge("index_users", "Users whose vectors the index holds")
        rows = metrics.gauge("row_cache_bytes", "Memory held by the cache of rows and links")
        store = self.store

        def collect() -> None:
            rows.set(store.rows.nbytes() if store is not None else 0)
            size.set(index.nbytes())
            n_users, n_vectors = index.counts()
            users.set(n_users)
            vectors.set(n_vectors)

        metrics.on_collect(collect)

    async def _embedder_types(self) -> dict[str, type[Embedder]]:
        """Every embedder type, ours included, from ``register_embedders`` (a plugin's
        answer that is not a list of embedder classes is logged, naming it, and left out)."""
        types, problems = collect_embedder_classes(
            await self.context.hooks.results("register_embedders")
        )
        for problem in problems:
            self.log.error("memory: %s", problem)
        return types

    async def _make_embedder(self) -> Embedder:
        """The embedder ``embedder`` names, built from its settings. One that cannot serve
        makes the plugin unavailable (503 naming why); ``local`` without its model falls
        back to ``hashing`` (degraded)."""
        kind = str(self.config["embedder"])
        settings = {k: self.config[k] for k in EMBEDDER_KEYS}
        settings.update(self.config.get("embedder_settings") or {})
        types = await self._embedder_types()
        cls = types.get(kind)
        if kind == "local" and cls is LocalEmbedder:
            ok, why = local_model_available(str(self.config["model_path"] or ""))
            if not ok:
                note = f"local embedding model not available ({why}); using the hashing embedder"
                self.log.warning("memory: %s: search quality is much lower", note)
                self.degraded.append(note)
                cls = HashingEmbedder
        reason = None
        embedder: Embedder | None = None
        if cls is None:
            known = ", ".join(sorted(types)) or "none"
            reason = f"no embedder type {kind!r} is registered (known: {known})"
        else:
            try:
                embedder = cls.from_settings(settings)
                if not isinstance(embedder, Embedder):
                    raise TypeError(f"{cls.__qualname__}.from_settings gave no sdk.Embedder")
                reason = embedder.unavailable_reason()
            except Exception as exc:
                self.log.exception("memory: the embedder %r could not be built", kind)
                reason = f"embedder {kind!r} could not be built: {exc}"
                embedder = None
        if reason:
            self.unavailable = reason
            self.log.warning("memory: %s; searching and storing answer 503", reason)
        return (
            embedder if embedder is not None else HashingEmbedder(int(self.config["hashing_dim"]))
        )

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
        assert self.store is not None
        self.unavailable = ""
        self.degraded = []
        self.embedder = await self._make_embedder()
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
            embedder=self.embedder,
            cache=self.cache,
            config=self.config,
            context=self.context,
            log=self.log,
        )
        self.service.spawn = self._spawn
        self._inbox = asyncio.Queue(maxsize=INBOX_TURNS)
        for i in range(RECORD_WORKERS):
            self._spawn(self._record_turns(self._inbox), f"memory-record-turns-{i}")
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
            self._loading_model = True
            self._spawn(self._warm_up(), "memory-warm-up")

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            with contextlib.suppress(Exception):
                unsubscribe()
        self._unsubscribe = []
        if self._inbox is not None:
            # Turns already received are recorded before stopping, within reason.
            self._flush.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox.join(), STOP_DRAIN_SECONDS)
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
        checks["turns_waiting"] = self._inbox.qsize() if self._inbox is not None else 0
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
        if self._loading_model:
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
        if self._inbox is not None:
            self._flushers += 1
            self._flush.set()
            try:
                await self._inbox.join()
            finally:
                self._flushers -= 1
                if not self._flushers:
                    self._flush.clear()
        while others := [t for t in self._tasks if not t.get_name().startswith("memory-record-")]:
            await asyncio.gather(*others, return_exceptions=True)

    async def _warm_up(self) -> None:
        """Load the embedding model (so the first chat turns do not wait for it) and embed
        memories that have no vector of the current model (after a change of embedder)."""
        assert self.embedder is not None and self.service is not None
        try:
            await self.embedder.load()
        except Exception as exc:  # the first embedding will try again and report it
            self.log.warning("memory: loading the embedder failed: %s", exc)
        finally:
            self._loading_model = False
        if self.embedder.dim is None:
            return  # openai: the dimension is known after its first answer
        try:
            n = await self.service.reembed_missing()
            if n:
                self.log.info(
                    "memory: embedded %d memories for model %s", n, self.embedder.model_id
                )
        except Exception as exc:
            self.log.warning("memory: warm-up failed: %s", exc)

    # ---- events -----------------------------------------------------------------------
    async def _on_message(self, event: Event) -> None:
        # Chat must not wait for embeddings and extraction: the turn goes to the inbox and
        # the workers record it. A full inbox (the workers far behind) makes the publisher
        # wait for room rather than grow memory without bound or lose the turn.
        if self._inbox is None or self.unavailable:
            return
        if str(event.data.get("user_id") or "") in self._deleted_users:
            return
        # A broken upstream's reply can hold lone surrogates (or NUL) that no store can
        # encode: keep the turn with U+FFFD in their place rather than lose it.
        await self._inbox.put(repair(dict(event.data)))

    async def _record_turns(self, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        linger = int(self.config["record_linger_ms"]) / 1000
        while True:
            # One worker gathers a batch at a time (the other records the previous one):
            # turns that arrive within the linger are recorded together, so the cost per
            # turn falls as the rate rises instead of competing with every reply.
            async with self._gathering:
                batch = [await inbox.get()]
                if linger and inbox.qsize() < RECORD_BATCH and not self._flush.is_set():
                    # (asyncio.timeout, not wait_for: on 3.11 that can swallow a cancel)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(linger):
                            await self._flush.wait()
                while len(batch) < RECORD_BATCH and not inbox.empty():
                    batch.append(inbox.get_nowait())
            if not self._quiet.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(YIELD_SECONDS):
                        await self._quiet.wait()
            try:
                if self.service is not None:
                    await self.service.record_turns(
                        [d for d in batch if str(d.get("user_id") or "") not in self._deleted_users]
                    )
            except Exception:
                self.log.exception("memory: could not record %d chat messages", len(batch))
            finally:
                for _ in batch:
                    inbox.task_done()

    async def _on_user_deleted_anywhere(self, event: Event) -> None:
        user_id = str(event.data.get("user_id") or "")
        if user_id:
            self._deleted_users[user_id] = None
            while len(self._deleted_users) > 10_000:
                self._deleted_users.popitem(last=False)

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
        if self.service is None or self.unavailable or identity is None:
            return None
        self._contexts += 1
        self._quiet.clear()
        try:
            return await memory_context(self.service, identity, session_id, query, max_tokens)
        except Exception:
            # The conversation goes on without memories rather than failing.
            self.log.exception("memory: memory_context failed")
            return None
        finally:
            self._contexts -= 1
            if not self._contexts:
                self._quiet.set()
