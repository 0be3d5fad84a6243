"""Backends: memory (the oracle), sqlite (the embedded default)."""
