"""Recommenders, all behind one contract (:class:`jamrec.models.base.Recommender`).

:data:`MODELS` is the one list of models: a name and where its class lives. Adding a
model is a class implementing the contract and a line here (``docs/architecture.md``);
the contract suite (``tests/test_models_contract.py``) then runs it like every other.
Classes are imported on first use, so naming a model does not load torch.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jamrec.errors import JamrecError
from jamrec.models.base import (
    RUNTIME_OPTIONS,
    FoldsIn,
    ItemVectors,
    ModelConfig,
    Recommender,
    Runtime,
)

MODELS: dict[str, str] = {
    "popularity": "jamrec.models.baselines:Popularity",
    "random": "jamrec.models.baselines:Random",
    "oracle": "jamrec.models.baselines:Oracle",
    "item_knn": "jamrec.models.knn:ItemKNN",
    "user_knn": "jamrec.models.knn:UserKNN",
    "als": "jamrec.models.als:ALS",
    "mbcf": "jamrec.models.torch.recommenders:MBCF",
    "hybrid": "jamrec.models.torch.recommenders:Hybrid",
    "hybrid_study": "jamrec.models.torch.recommenders:HybridStudy",
    "two_tower": "jamrec.models.torch.two_tower:TwoTower",
    "feature_knn": "jamrec.models.coldstart_baselines:FeatureKNN",
    "spotify_popularity": "jamrec.models.coldstart_baselines:SpotifyPopularity",
}

# A model's name as a type: flow parameters take it, so Prefect offers the names as choices
# and refuses any other when a run is created (built from MODELS: one list of names).
# A Literal built at runtime is no type to mypy, which checks it as a plain name.
if TYPE_CHECKING:
    ModelName = str
else:
    ModelName = Literal[tuple(MODELS)]

# What a plain `jamrec train` (and the weekly retrain) trains: the study's three models,
# the study's NN exactly as the study set it up (hybrid_study) beside jamrec's hybrid,
# the baselines (item-kNN among them: cheap at TIMJ scale, a similarity matrix of 50
# neighbours a track) and the two-tower; plus the oracle when the warehouse has the planted
# truth. user_knn is on demand (`--models user_knn`): its similarity search costs the sum
# over tracks of their listeners squared, which the most played tracks dominate.
DEFAULT_MODELS = (
    "popularity",
    "random",
    "item_knn",
    "als",
    "mbcf",
    "hybrid",
    "hybrid_study",
    "two_tower",
)
# What `jamrec coldstart` trains: models that can score a track without interactions, the
# ID models for contrast, and the baselines (plus the oracle with truth).
COLD_START_MODELS = (
    "two_tower",
    "feature_knn",
    "spotify_popularity",
    "popularity",
    "hybrid",
    "mbcf",
    "random",
)


def model_class(name: str) -> type[Recommender]:
    """The class of model ``name`` (a :class:`JamrecError` naming the known ones if none)."""
    if name not in MODELS:
        raise JamrecError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    module, _, cls = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def check_names(names: list[str]) -> None:
    """Fail with one clear line when any of ``names`` is not a model."""
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise JamrecError(f"unknown model(s) {unknown}; known: {', '.join(sorted(MODELS))}")


def default_models(has_truth: bool) -> list[str]:
    """:data:`DEFAULT_MODELS`, and the oracle when the planted truth is there."""
    return [*DEFAULT_MODELS, *(["oracle"] if has_truth else [])]


def split_options(settings: dict | None) -> tuple[dict, dict]:
    """``(config, runtime)``: a model's settings with the runtime options taken out."""
    settings = dict(settings or {})
    runtime = {k: settings.pop(k) for k in list(settings) if k in RUNTIME_OPTIONS}
    return settings, runtime


def create(name: str, runtime: Runtime | dict | None = None, **config: Any) -> Recommender:
    """A new, untrained model ``name`` with its config (hyperparameters and seed).

    ``runtime`` (device, threads) says how it runs; runtime keys given with the config
    (``create("mbcf", device="cuda")``) are moved there.
    """
    cls = model_class(name)
    config, extra = split_options(config)
    if isinstance(runtime, dict) or runtime is None:
        runtime = Runtime(**{**(runtime or {}), **extra})
    elif extra:
        runtime = runtime.model_copy(update=extra)
    return cls(cls.Config(**config), runtime)


def load(folder: Path, runtime: Runtime | None = None) -> Recommender:
    """Read a model saved by :meth:`Recommender.save` (its class is named in model.json)."""
    folder = Path(folder)
    meta = json.loads((folder / "model.json").read_text())
    cls = model_class(meta["name"])
    config, _ = split_options(meta["config"])  # models saved before runtime options existed
    model = cls(cls.Config(**config), runtime)
    model.n_users, model.n_tracks = meta["n_users"], meta["n_tracks"]
    model._load(folder)
    return model


def folds_in(name: str) -> bool:
    """Whether model ``name`` scores new listeners from their tracks (:class:`FoldsIn`)."""
    return issubclass(model_class(name), FoldsIn)


__all__ = [
    "COLD_START_MODELS",
    "DEFAULT_MODELS",
    "MODELS",
    "FoldsIn",
    "ItemVectors",
    "ModelConfig",
    "ModelName",
    "Recommender",
    "Runtime",
    "check_names",
    "create",
    "default_models",
    "folds_in",
    "load",
    "model_class",
]
