"""Recommenders, all behind one contract (:class:`jamrec.models.base.Recommender`).

``MODELS`` maps a model's name to its class; :func:`create` builds one with a config.
"""

from __future__ import annotations

from jamrec.models.base import Recommender, registry


def create(name: str, **config) -> Recommender:
    """A new, untrained model ``name`` (see ``jamrec train --help`` for the names)."""
    models = registry()
    if name not in models:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(models))}")
    cls = models[name]
    return cls(cls.Config(**config))


__all__ = ["Recommender", "create", "registry"]
