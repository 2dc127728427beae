"""The memory plugin: five memory tiers, embeddings and semantic search."""
