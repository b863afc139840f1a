"""The torch recommenders: MBCF (embeddings + dot product) and the hybrid network.

Each owns one network from :mod:`.modules`, trained by :func:`.trainer.train`. Saved as
``module.pt`` (the ``state_dict``) beside ``model.json``; the hybrid also writes
``scaler.npz`` (the feature means and standard deviations it was trained with). Loading
rebuilds the network from the config, ``n_users``/``n_tracks`` and the feature count.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
from pydantic import Field

from jamrec.models.base import BlockScorer, Recommender, TrainData
from jamrec.models.dataset import standardise
from jamrec.models.products import matmul_into, pair_dots
from jamrec.models.torch.kernels import add_dot_pairs, relu_mlp_pairs
from jamrec.models.torch.modules import (
    DotModule,
    HybridModule,
    TwoTowerModule,
    compiled_scoring,
)
from jamrec.models.torch.trainer import TrainConfig, resolve_device, train


class MBCFConfig(TrainConfig):
    """MBCF: the study's settings; ``epochs`` chosen on the generated ``small`` dump.

    Measured there (seed 0, published negatives, full ranking of 6,319 candidates): test
    NDCG@10 0.038 at 20 epochs (popularity 0.031, ALS 0.044); validation NDCG@10 rises to
    epoch ~20 and slowly falls after (0.035 on test at 30 epochs, 0.034 at 40).
    """

    dim: int = Field(64, ge=1, description="The study's setting.")


class HybridStudyConfig(MBCFConfig):
    """The study's hybrid network, as the study set it up: MBCF's settings (the published
    negatives, batch 4096, lr 1e-3, 64-d) plus the hidden layer's width.

    On the small dump with the published negatives, validation NDCG@10 peaks at epoch 3
    (0.022, popularity 0.027) and then falls (0.007 at 30): 68% of the published negatives
    are catalogue tracks nobody played, likely learnt apart from the candidates by their
    ids and features, which does not help rank the candidates.
    """

    hidden: int = Field(128, ge=1, description="The study's setting.")
    epochs: int = Field(
        3,
        ge=1,
        description="The most epochs (val NDCG@10 peaks there on small with the published "
        "negatives).",
    )
    use_audio: bool = Field(
        True,
        description="Feed the standardised audio features to the network (False: ids only, "
        "the audio-feature ablation).",
    )
    dot: bool = Field(
        False,
        description="Add the embeddings' dot product to the logit (NeuMF's two paths; the "
        "study's network has none).",
    )
    early_stopping: bool = Field(
        False, description="Off: the study trained a fixed number of epochs."
    )


class HybridConfig(HybridStudyConfig):
    """jamrec's hybrid: the study's network plus a dot-product path, on fresh negatives.

    Chosen on validation (docs/protocols.md, "The hybrid"): the study's network sits below
    popularity because of its training data (the published negatives are mostly tracks
    nobody played), and an MLP over concatenated embeddings learns the collaborative
    signal poorly. Fresh negatives drawn from the candidates and the dot-product path fix
    both; the MLP then carries what the audio features add.
    """

    negatives_per_positive: int = Field(
        4, ge=0, description="Fresh candidate negatives per positive (0 = the published ones)."
    )
    epochs: int = Field(
        20, ge=1, description="The most epochs, as MBCF (validation still rising there on small)."
    )
    dot: bool = Field(True, description="Add the embeddings' dot product to the logit.")
    early_stopping: bool = Field(
        True, description="Stop when validation NDCG@10 stops improving (patience steps)."
    )
    probe_users: int = Field(
        2000,
        ge=1,
        description="Validation users probed each epoch: fewer than the dot-product models' "
        "10,000, as every probed user is scored against every candidate through the MLP "
        "(10,000 would cost about as much as an epoch at TIMJ scale).",
    )


_PAIR_BLOCK = 1 << 16  # pairs per block in score_pairs: (65536, hidden) floats

# The network a torch recommender owns: one of those in .modules.
NetworkT = TypeVar("NetworkT", DotModule, HybridModule, TwoTowerModule)


class _TorchRecommender(Recommender, Generic[NetworkT]):
    """Fit, score, save and load shared by the torch models (registers no name itself)."""

    config: TrainConfig
    module: NetworkT
    stats: dict

    @abstractmethod
    def _build(self, features: torch.Tensor | None) -> NetworkT:
        """A freshly initialised network (``features``: standardised, hybrid only)."""

    def _features(self, data: TrainData) -> torch.Tensor | None:
        """What :meth:`_build` needs from the data besides the ids."""
        return None

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed)

    def _fit(self, data: TrainData) -> None:
        resolve_device(self.runtime.device)  # fail before any work when CUDA is missing
        self.module = self._build(self._features(data))
        self.stats = train(self.module, data, self.config, self)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """(len(users), len(items)) float32 logits (higher = more likely a positive)."""
        device = next(self.module.parameters()).device
        user_ids = torch.as_tensor(np.atleast_1d(np.asarray(users, dtype=np.int64)), device=device)
        if items is None:
            item_ids = torch.arange(self.n_tracks, device=device)
        else:
            item_ids = torch.as_tensor(np.asarray(items, dtype=np.int64), device=device)
        self.module.eval()
        with torch.no_grad():
            out = self.module.score_matrix(user_ids, item_ids)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def block_scorer(self, items: np.ndarray) -> BlockScorer:
        """On the CPU, the dot-product networks compute the items' vectors once (the
        two-tower's track tower runs once, not once per batch) and write each block into
        ``out`` with numpy's product on every core (:func:`.products.matmul_into`: torch's
        CPU product of these shapes measured 2.3x slower); elsewhere, :meth:`score`."""
        module = self.module
        device = next(module.parameters()).device
        if device.type != "cpu" or not isinstance(module, DotModule | TwoTowerModule):
            return super().block_scorer(items)
        module.eval()
        with torch.no_grad():
            tracks = module.item_matrix(torch.as_tensor(np.asarray(items, dtype=np.int64)))
        tracks_t = tracks.numpy().T

        def score(users: np.ndarray, out: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                vectors = module.user_matrix(torch.as_tensor(np.asarray(users, dtype=np.int64)))
            return matmul_into(vectors.numpy(), tracks_t, out)

        return score

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(P,) float32 scores of aligned pairs: for the dot-product networks on the CPU,
        the distinct users' and tracks' vectors once, then one dot product per pair
        (:func:`jamrec.models.products.pair_dots`); elsewhere the default."""
        module = self.module
        device = next(module.parameters()).device
        if device.type != "cpu" or not isinstance(module, DotModule | TwoTowerModule):
            return super().score_pairs(users, items)
        user_ids, user_at = np.unique(np.asarray(users, np.int64), return_inverse=True)
        item_ids, item_at = np.unique(np.asarray(items, np.int64), return_inverse=True)
        module.eval()
        with torch.no_grad():
            left = module.user_matrix(torch.as_tensor(user_ids)).numpy()
            right = module.item_matrix(torch.as_tensor(item_ids)).numpy()
        return pair_dots(left, right, user_at, item_at)

    def _save(self, folder: Path) -> None:
        torch.save(self.module.state_dict(), folder / "module.pt")

    def _load(self, folder: Path) -> None:
        device = resolve_device(self.runtime.device)
        self.module = self._build(self._saved_features(folder)).to(device)
        state = torch.load(folder / "module.pt", map_location=device, weights_only=True)
        self.module.load_state_dict(state)
        self.stats = {}

    def _saved_features(self, folder: Path) -> torch.Tensor | None:
        """A placeholder of the right shape for :meth:`_build` (the values are in module.pt)."""
        return None


class MBCF(_TorchRecommender[DotModule]):
    """Model-based CF: 64-d user and track embeddings, ``score = e_u . e_t``, BCE-trained.

    Scores are dot products, so every evaluated user is full-ranked like ALS.
    """

    name = "mbcf"
    Config = MBCFConfig
    config: MBCFConfig
    pair_scoring = True  # a pair is one dot product: the sampled lists go as pairs

    def _build(self, features: torch.Tensor | None) -> DotModule:
        return DotModule(self.n_users, self.n_tracks, self.config.dim, self._generator())

    # -- capability: ItemVectors ------------------------------------------------------------
    def item_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        """(len(items), dim) float32 track embeddings; ``None`` = every track."""
        weight = self.module.tracks.weight.detach().cpu().numpy().astype(np.float32)
        return weight if items is None else weight[np.asarray(items, dtype=np.int64)]

    def learnt_tracks(self) -> np.ndarray | None:
        """Tracks with a train interaction (the others keep their random start)."""
        return None if self.seen is None else np.asarray(self.seen.getnnz(axis=0) > 0)


class _Hybrid(_TorchRecommender[HybridModule]):
    """Embeddings + standardised audio features -> 128 ReLU -> logit (:class:`HybridModule`).

    Features are standardised with the mean and standard deviation of the *candidate*
    tracks (those with a train interaction), so nothing from val or test leaks in; those
    statistics then apply to every track (``mean``, ``std``: ``(n_features,)`` float32).
    Scoring costs users x tracks x hidden (``pairwise``), even with the split first layer.
    """

    config: HybridStudyConfig
    pairwise = True

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(P,) float32 logits of aligned pairs, through the split first layer.

        Each distinct user's and track's share of the first layer is computed once, so a
        pair costs one ``hidden``-wide add, ReLU and dot product: on the CPU in one
        compiled pass over the pairs (:func:`.kernels.relu_mlp_pairs`), else in torch
        blocks of pairs.
        """
        module = self.module
        device = next(module.parameters()).device
        out = np.empty(len(users), np.float32)
        user_ids, user_at = np.unique(np.asarray(users, np.int64), return_inverse=True)
        item_ids, item_at = np.unique(np.asarray(items, np.int64), return_inverse=True)
        module.eval()
        with torch.no_grad():
            u = module.user_part(torch.as_tensor(user_ids, device=device))
            t = module.track_part(torch.as_tensor(item_ids, device=device))
            w2, b2 = module.layer2.weight[0], module.layer2.bias[0]
            if compiled_scoring(u, t):  # the CPU: each pair in registers, every core
                relu_mlp_pairs(u.numpy(), t.numpy(), user_at, item_at, w2.numpy(), float(b2), out)
                if module.dot:
                    add_dot_pairs(
                        module.users.weight.numpy(),
                        module.tracks.weight.numpy(),
                        np.asarray(users, np.int64),
                        np.asarray(items, np.int64),
                        out,
                    )
                return out
            for lo in range(0, len(out), _PAIR_BLOCK):
                ua = torch.as_tensor(user_at[lo : lo + _PAIR_BLOCK], device=device)
                ia = torch.as_tensor(item_at[lo : lo + _PAIR_BLOCK], device=device)
                logits = (u[ua] + t[ia]).relu_() @ w2 + b2
                if module.dot:
                    logits += module.dot_pairs(
                        torch.as_tensor(user_ids[user_at[lo : lo + _PAIR_BLOCK]], device=device),
                        torch.as_tensor(item_ids[item_at[lo : lo + _PAIR_BLOCK]], device=device),
                    )
                out[lo : lo + len(ua)] = logits.cpu().numpy()
        return out

    def _features(self, data: TrainData) -> torch.Tensor:
        features = np.asarray(data.features, dtype=np.float32)
        if not self.config.use_audio:  # the ablation: no feature columns at all
            features = features[:, :0]
        z, self.mean, self.std = standardise(features, data.candidates)
        return torch.from_numpy(z)

    def _build(self, features: torch.Tensor | None) -> HybridModule:
        # always built from features: the data's (_features) or a saved model's shape
        assert features is not None, "the hybrid network needs the track features"
        cfg = self.config
        return HybridModule(
            self.n_users, self.n_tracks, features, cfg.dim, cfg.hidden, self._generator(), cfg.dot
        )

    def _save(self, folder: Path) -> None:
        super()._save(folder)
        np.savez(folder / "scaler.npz", mean=self.mean, std=self.std)

    def _saved_features(self, folder: Path) -> torch.Tensor:
        with np.load(folder / "scaler.npz") as scaler:
            self.mean, self.std = scaler["mean"], scaler["std"]
        return torch.zeros((self.n_tracks, len(self.mean)))


class Hybrid(_Hybrid):
    """jamrec's hybrid (:class:`HybridConfig`): the study's network with a dot-product
    path, trained on fresh negatives."""

    name = "hybrid"
    Config = HybridConfig
    config: HybridConfig


class HybridStudy(_Hybrid):
    """The study's NN exactly as the study set it up (:class:`HybridStudyConfig`): kept to
    be reported beside jamrec's ``hybrid``."""

    name = "hybrid_study"
    Config = HybridStudyConfig
    config: HybridStudyConfig
