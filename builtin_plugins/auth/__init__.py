"""Accounts, JWT access tokens, rotating refresh tokens, API keys and roles."""
