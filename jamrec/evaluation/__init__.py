"""Evaluation: the protocols that put a model, a split and the metrics together, and the
metric arithmetic itself (pure functions with a seed and defined edge cases)."""
