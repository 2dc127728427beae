"""Embedders behind one interface (:class:`~.base.Embedder`): local, openai, hashing."""
