"""Scoring fitted heads on held-out data: retrieval, zero-shot classification, compositional tests."""
