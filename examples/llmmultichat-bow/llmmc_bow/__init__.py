"""A bag-of-words embedder for LlmMultiChat's memory, written with only the SDK."""
