"""The two-tower hybrid: audio features and ids on the track side, ids and history on the user's.

The network is :class:`.modules.TwoTowerModule`, trained by the shared BCE loop
(:func:`.trainer.train`). Scores are one dot product per (user, track), so every evaluated
user is full-ranked (not ``pairwise``), and two things ID models cannot do come for free:

- a track with no train interaction is scored from its audio features alone (its id
  embedding is gated off, never used nor learnt);
- a listener the model was not trained on is scored from a few tracks
  (:meth:`TwoTower.user_from_tracks`, used by :func:`jamrec.evaluation.foldin.fold_in`).

Saved as ``module.pt`` (weights plus the buffers: standardised features, the has-id mask
and the users' train tracks, so a loaded model scores without the data) and ``scaler.npz``
(the feature means and standard deviations it was trained with).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from jamrec.models.base import TrainData
from jamrec.models.dataset import standardise
from jamrec.models.torch.modules import TwoTowerModule
from jamrec.models.torch.recommenders import _TorchRecommender
from jamrec.models.torch.trainer import TrainConfig, resolve_device


class TwoTowerConfig(TrainConfig):
    """Two towers: settings chosen on the generated ``small`` dump (seed 0, full ranking).

    Measured there (6,319 candidates; test NDCG@10 of popularity 0.031, ALS 0.044), val /
    test NDCG@10: 0.048 / 0.055 at 10 epochs, 0.052 / 0.058 at 15, 0.054 / 0.061 at 20,
    0.055 / 0.061 at 25, 0.055 / 0.060 at 30, 0.054 / 0.058 at 40. With the published
    negatives (``negatives_per_positive=0``, 10 epochs) 0.008 / 0.007, below popularity:
    68% of them are catalogue tracks nobody played, so the feature tower learns "played at
    all", not "played by this user", which does not rank the candidates. Hence fresh
    negatives. ``id_dropout=0.2`` (20 epochs): val 0.053, and withheld tracks ranked among
    themselves no better (NDCG@10 0.053 vs 0.051; feature_knn 0.052, popularity 0.007).
    Spotify's popularity as a track feature (``use_popularity``, lazy Adam): val / test
    0.065 / 0.061, and withheld tracks 0.058 (0.044 without it; feature_knn 0.052,
    spotify_popularity 0.031).

    The history snapshot (``history_refresh``, see :class:`.modules.TwoTowerModule`), val /
    test / withheld-among-withheld NDCG@10 and fit time: exact (0) 0.065 / 0.061 / 0.058 in
    76 s; every 10 batches 0.061 / 0.058 / 0.058 in 41 s; every 20 (benchmarks/RESULTS.md)
    test 0.058, withheld 0.054 in 22 s; every 50 0.060 / 0.056 / 0.054;
    every 100 0.059 / 0.055 / 0.056. At TIMJ scale a batch costs 22 ms with the snapshot
    and 612 ms exact, and a snapshot 0.35 s: every 20 batches, 10 epochs took 1,136 s
    (25 ms a batch; exact: ~8 h).

    Early stopping probes validation five times an epoch at TIMJ scale (``probe_every``,
    19M pairs an epoch) with a patience of 3 probes. Measured there (benchmarks/RESULTS.md,
    "Two-tower training and serving (full)"): the 10,000-user probe read 0.0068, 0.0098,
    0.0120, 0.0132, 0.0142 over the first epoch, its best 0.0147 at probe 8 and
    0.0140-0.0143 for the three probes after it; the kept probe gave test ``full`` NDCG@10
    0.0139 in 298 s (10 epochs with the probe once an epoch: 0.0132 in 1,349 s). On the
    small dump an epoch is 0.4M pairs, one probe, and patience 3 and 5 both train to the
    20-epoch maximum (RESULTS.md, "Early stopping (small)").
    """

    dim: int = Field(64, ge=1, description="MBCF's width (not tuned here).")
    hidden: int = Field(64, ge=1, description="Not tuned: 11 features in, dim + 1 out.")
    epochs: int = Field(
        20, ge=1, description="The most epochs (val NDCG@10 flattens there on small, above)."
    )
    id_dropout: float = Field(
        0.0, ge=0, lt=1, description="Off: on small it cost warm accuracy, gave cold none."
    )
    negatives_per_positive: int = Field(
        4, ge=0, description="Fresh candidate negatives (see above); 0 = the published ones."
    )
    history_refresh: int = Field(
        20,
        ge=0,
        description="Batches between snapshots of the users' history vectors, which then "
        "carry no gradient (0 = exact, with gradients through the history: 28x slower a "
        "batch at TIMJ scale, ~50 min an epoch on 2 cores).",
    )
    use_audio: bool = Field(
        True,
        description="Feed the audio features to the track tower (False: the ablation; the "
        "tower then sees Spotify's popularity only, or nothing).",
    )
    probe_every: int = Field(
        4_000_000,
        ge=0,
        description="About this many training pairs between validation probes: at TIMJ "
        "scale (19M pairs an epoch) five probes an epoch, as validation peaks within the "
        "second epoch there; one an epoch on smaller data (0 = once an epoch).",
    )
    patience: int = Field(
        3,
        ge=1,
        description="Probes without a gain before stopping: 3, as on the small dump it "
        "stops where 5 does (at the maximum); at TIMJ scale three fifths of an epoch.",
    )
    use_popularity: bool = Field(
        True,
        description="Spotify's popularity (log) beside the audio features: fame is content "
        "a track without interactions has too, and what audio alone misses.",
    )


class TwoTower(_TorchRecommender[TwoTowerModule]):
    """Dot-product two-tower hybrid (module docstring): ``score = (e_u + h_u) . v_t + b_t``.

    Features are standardised with the statistics of the candidate tracks (a train
    interaction), as in the hybrid; ``mean``/``std`` are ``(n_features,)`` float32.
    """

    name = "two_tower"
    Config = TwoTowerConfig
    config: TwoTowerConfig
    pair_scoring = True  # a pair is one dot product: the sampled lists go as pairs

    def _features(self, data: TrainData) -> torch.Tensor:
        features = np.asarray(data.features, dtype=np.float32)
        if not self.config.use_audio:  # the ablation: no audio columns
            features = features[:, :0]
        if self.config.use_popularity and data.popularity is not None:
            features = np.column_stack([features, np.log1p(data.popularity)])
        z, self.mean, self.std = standardise(features, data.candidates)
        self._has_id = torch.from_numpy(data.candidates.astype(np.float32))
        history = sp.csr_matrix(data.train, copy=True)
        history.sort_indices()
        self._history = (
            torch.from_numpy(history.indptr.astype(np.int64)),
            torch.from_numpy(history.indices.astype(np.int64)),
        )
        return torch.from_numpy(z)

    def _build(self, features: torch.Tensor | None) -> TwoTowerModule:
        # always built from features: the data's (_features) or a saved model's (_load)
        assert features is not None, "the two-tower network needs the track features"
        cfg = self.config
        return TwoTowerModule(
            features,
            self._has_id,
            *self._history,
            cfg.dim,
            cfg.hidden,
            self._generator(),
            cfg.id_dropout,
            cfg.history_refresh,
        )

    def _save(self, folder: Path) -> None:
        super()._save(folder)
        np.savez(folder / "scaler.npz", mean=self.mean, std=self.std)

    def _load(self, folder: Path) -> None:
        device = resolve_device(self.runtime.device)
        state = torch.load(folder / "module.pt", map_location="cpu", weights_only=True)
        with np.load(folder / "scaler.npz") as scaler:
            self.mean, self.std = scaler["mean"], scaler["std"]
        self._has_id = state["has_id"]
        self._history = (state["history_indptr"], state["history_indices"])
        self.module = self._build(state["features"])
        self.module.load_state_dict(state)
        self.module.to(device)
        self.stats = {}

    # -- capabilities: FoldsIn, ItemVectors; vectors for both ----------------------------
    def _device(self) -> torch.device:
        return next(self.module.parameters()).device

    def user_from_tracks(self, tracks: sp.csr_matrix) -> np.ndarray:
        """(B, dim) float32 user vectors ``h`` of B listeners given only their tracks.

        ``tracks`` is ``(B, n_tracks)``: row b marks listener b's tracks (any track, played
        or not: unplayed ones count through their features). No user id is used, so this
        is a trained user's :meth:`track_part` when given that user's train tracks; an
        empty row gives the zero vector (the score is then the track bias: popularity).
        """
        tracks = sp.csr_matrix(tracks)
        tracks.sort_indices()
        device = self._device()
        indptr = torch.as_tensor(tracks.indptr.astype(np.int64), device=device)
        indices = torch.as_tensor(tracks.indices.astype(np.int64), device=device)
        self.module.eval()
        with torch.no_grad():
            sums, counts = self.module.mean_track_vectors(indptr, indices)
            out = sums / counts.clamp(min=1)[:, None]
        return out.cpu().numpy().astype(np.float32)

    def track_part(self, users: np.ndarray) -> np.ndarray:
        """(B, dim) float32: ``h_u``, the history half of trained users' vectors."""
        device = self._device()
        rows = torch.as_tensor(np.atleast_1d(np.asarray(users, dtype=np.int64)), device=device)
        self.module.eval()
        with torch.no_grad():
            sums, counts = self.module.mean_track_vectors(
                self.module.history_indptr, self.module.history_indices, rows
            )
            out = sums / counts.clamp(min=1)[:, None]
        return out.cpu().numpy().astype(np.float32)

    def score_vectors(self, vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """(B, len(items)) float32 scores of ``(B, dim)`` user vectors; ``None`` = every track."""
        device = self._device()
        items = np.arange(self.n_tracks) if items is None else np.asarray(items, dtype=np.int64)
        self.module.eval()
        with torch.no_grad():
            out = self.module.score_vectors(
                torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=device),
                torch.as_tensor(items, device=device),
            )
        return out.cpu().numpy().astype(np.float32, copy=False)

    def fold_in_scores(self, tracks: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """(B, len(items)) float32: the user tower from the listeners' tracks alone."""
        return self.score_vectors(self.user_from_tracks(tracks), items)

    def learnt_tracks(self) -> np.ndarray | None:
        """None: every track has a vector, through its audio features."""
        return None

    def item_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        """(len(items), dim) float32 ``v_t`` (bias left out): the tracks in the model's space."""
        device = self._device()
        items = np.arange(self.n_tracks) if items is None else np.asarray(items, dtype=np.int64)
        self.module.eval()
        with torch.no_grad():
            out = self.module.track_vectors(torch.as_tensor(items, device=device))
        return out[:, : self.config.dim].cpu().numpy().astype(np.float32)
