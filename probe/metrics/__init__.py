"""Metrics: small pure functions over features (similarity, and later retrieval, zero-shot, kNN)."""
