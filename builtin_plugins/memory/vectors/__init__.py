"""Vector search and the in-process vector index, in one place.

- :mod:`.index`: :class:`~.index.VectorIndex`, the exact (optionally IVF) in-process
  index of the busiest users' vectors, one float32 matrix per user and model;
- :mod:`.shared`: :class:`~.shared.SharedVectorIndex`, the same index kept coherent
  across processes that share the database (versions in Redis, changes on the bus);
- :mod:`.search`: :class:`~.search.VectorSearch`, what the memory service searches
  through: the index when it is on (kept in step with the store's writes, as the store's
  listener), else the store's SQL (DuckDB) or a scan of the vectors read (PostgreSQL).

The store (``store.py``) holds the SQL and knows nothing of this package: it tells its
listeners what changed once a write has committed.
"""
