"""The networks behind the torch recommenders: they map (user, track) pairs to logits.

All take index tensors in the :class:`jamrec.models.dataset.Dataset` id spaces (users
``0..n_users-1``, tracks ``0..n_tracks-1``); ``forward(users, items)`` scores aligned pairs
(``(N,)`` logits, the sigmoid is applied by the BCE loss) and ``score_matrix(users, items)``
scores every user against every track (``(B, I)``). Weights are initialised from an explicit
``torch.Generator``, so building a network never touches torch's global random state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

from jamrec.models.torch.kernels import relu_mlp_scores

EMBEDDING_STD = 0.01  # small start: early logits near 0, so the BCE gradients are balanced
# Bound on the (users, tracks, hidden) block of the hybrid's scoring. Small enough to stay
# in cache across its three passes (add, relu, dot): 3.5x faster than 256 MB blocks here.
CHUNK_BYTES = 2 * 2**20
TRACK_BLOCK = 1 << 16  # tracks per pass when the two-tower scores many tracks at once


def _init_embedding(embedding: nn.Embedding, generator: torch.Generator) -> None:
    nn.init.normal_(embedding.weight, 0.0, EMBEDDING_STD, generator=generator)


def _init_linear(linear: nn.Linear, generator: torch.Generator) -> None:
    # torch's default Linear init (uniform in +-1/sqrt(fan_in)), drawn from our generator
    bound = 1.0 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound, generator=generator)
    nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


def compiled_scoring(*parts: torch.Tensor) -> bool:
    """Whether the hybrid's scoring can run in the compiled kernel: float32 CPU tensors
    outside autograd (scoring, probes); the torch blocks otherwise (CUDA, gradients)."""
    return not torch.is_grad_enabled() and all(
        p.device.type == "cpu" and p.dtype == torch.float32 for p in parts
    )


class DotModule(nn.Module):
    """MBCF: ``logit(u, t) = e_u . e_t`` with ``dim``-d user and track embeddings."""

    def __init__(self, n_users: int, n_tracks: int, dim: int, generator: torch.Generator):
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.tracks = nn.Embedding(n_tracks, dim)
        _init_embedding(self.users, generator)
        _init_embedding(self.tracks, generator)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(N,) logits of the aligned pairs ``(users[n], items[n])``."""
        return (self.users(users) * self.tracks(items)).sum(dim=-1)

    def score_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, I) logits of every user in ``users`` against every track in ``items``."""
        return self.user_matrix(users) @ self.item_matrix(items).T

    def user_matrix(self, users: torch.Tensor) -> torch.Tensor:
        """(B, d): the left factor of :meth:`score_matrix`."""
        return self.users(users)

    def item_matrix(self, items: torch.Tensor) -> torch.Tensor:
        """(I, d): the right factor of :meth:`score_matrix` (``user_matrix @ item_matrix.T``)."""
        return self.tracks(items)


class HybridModule(nn.Module):
    """The hybrid network: ID embeddings plus audio features through an MLP.

    ``logit(u, t) = w2 . relu(W1 [e_u; e_t; f_t] + b1) + b2`` with ``dim``-d embeddings,
    ``f_t`` the track's standardised audio features (``features``, ``(n_tracks, F)``, kept
    as a buffer so it is saved with the weights) and ``hidden`` units: the study's network.

    With ``dot = True`` the same embeddings also meet in a dot product that is added to
    the logit, ``+ e_u . e_t`` (NeuMF's two paths, He et al. 2017, with shared
    embeddings): an MLP over concatenated embeddings learns a dot product poorly (Rendle
    et al. 2020), so the collaborative signal gets the dot product and the MLP is left the
    non-linear part, e.g. a taste for a region of the audio-feature space.

    The first layer splits into a user part ``W_u e_u`` and a track part
    ``W_t e_t + W_f f_t + b1``, so scoring B users against I tracks costs one ``(B, I,
    hidden)`` pass (:meth:`score_from_parts`) instead of a full forward per pair.
    """

    features: torch.Tensor  # buffer

    def __init__(
        self,
        n_users: int,
        n_tracks: int,
        features: torch.Tensor,
        dim: int,
        hidden: int,
        generator: torch.Generator,
        dot: bool = False,
    ):
        super().__init__()
        self.dim, self.dot = dim, dot
        self.register_buffer("features", features.to(torch.float32).clone())
        self.users = nn.Embedding(n_users, dim)
        self.tracks = nn.Embedding(n_tracks, dim)
        self.layer1 = nn.Linear(2 * dim + features.shape[1], hidden)
        self.layer2 = nn.Linear(hidden, 1)
        _init_embedding(self.users, generator)
        _init_embedding(self.tracks, generator)
        _init_linear(self.layer1, generator)
        _init_linear(self.layer2, generator)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(N,) logits of the aligned pairs, through the unsplit network."""
        e_u, e_t = self.users(users), self.tracks(items)
        x = torch.cat([e_u, e_t, self.features[items]], dim=-1)
        logits = self.layer2(torch.relu(self.layer1(x))).squeeze(-1)
        return logits + (e_u * e_t).sum(dim=-1) if self.dot else logits

    def user_part(self, users: torch.Tensor) -> torch.Tensor:
        """(B, hidden): ``W_u e_u``, the users' share of the first layer."""
        return self.users(users) @ self.layer1.weight[:, : self.dim].T

    def track_part(self, items: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """(I, hidden): ``W_t e_t + W_f f_t + b1``, the tracks' share of the first layer.

        ``features`` (``(I, F)``, standardised) overrides the stored ones, e.g. for a
        track whose features changed.
        """
        features = self.features[items] if features is None else features
        w = self.layer1.weight
        return (
            self.tracks(items) @ w[:, self.dim : 2 * self.dim].T
            + features @ w[:, 2 * self.dim :].T
            + self.layer1.bias
        )

    def score_from_parts(self, user_part: torch.Tensor, track_part: torch.Tensor) -> torch.Tensor:
        """(B, I) logits: ``w2 . relu(U[:, None] + T[None]) + b2`` for every pair.

        On the CPU (float32, no gradient) one compiled pass keeps each pair's terms in
        registers (:func:`.kernels.relu_mlp_scores`, ~6x faster); otherwise computed in
        blocks of users and tracks that keep the ``(b, i, hidden)`` intermediate under
        ``CHUNK_BYTES``: one user costs one pass over the tracks, memory stays bounded.
        """
        n_users, hidden = user_part.shape
        n_items = track_part.shape[0]
        out = user_part.new_empty((n_users, n_items))
        if compiled_scoring(user_part, track_part):
            relu_mlp_scores(
                user_part.detach().contiguous().numpy(),
                track_part.detach().contiguous().numpy(),
                self.layer2.weight[0].detach().contiguous().numpy(),
                float(self.layer2.bias[0]),
                out.numpy(),
            )
            return out
        per_pair = hidden * user_part.element_size()
        item_block = max(1, min(n_items, CHUNK_BYTES // per_pair))
        user_block = max(1, CHUNK_BYTES // (per_pair * item_block))
        w2, b2 = self.layer2.weight[0], self.layer2.bias[0]
        for u0 in range(0, n_users, user_block):
            u = user_part[u0 : u0 + user_block, None, :]
            for i0 in range(0, n_items, item_block):
                h = (u + track_part[None, i0 : i0 + item_block, :]).relu_()
                out[u0 : u0 + user_block, i0 : i0 + item_block] = h @ w2 + b2
        return out

    def score_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, I) logits of every user against every track, via the split first layer."""
        out = self.score_from_parts(self.user_part(users), self.track_part(items))
        if self.dot:
            out.addmm_(self.users(users), self.tracks(items).T)
        return out

    def dot_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(N,) the dot-product path of aligned pairs (zeros without ``dot``)."""
        if not self.dot:
            return torch.zeros(len(users), device=users.device)
        return (self.users(users) * self.tracks(items)).sum(dim=-1)


class TwoTowerModule(nn.Module):
    """Two towers scored by one dot product: ``logit(u, t) = (e_u + h_u) . v_t + b_t``.

    Track tower: ``[v_t; b_t] = MLP(f_t) + m_t E_t``, with ``f_t`` the standardised audio
    features (``features`` buffer, ``(n_tracks, F)``), MLP = ``Linear(F, hidden) -> ReLU ->
    Linear(hidden, dim + 1)``, ``E_t`` a ``(dim + 1)``-d id embedding (its last entry an id
    bias) and ``m_t`` the ``has_id`` buffer (``(n_tracks,)``, 1 for tracks with a train
    interaction): a track nobody played is scored from its features alone, and its id row
    gets no gradient (gated to 0). With ``id_dropout = p`` a training pair's track loses
    its id embedding with probability p (DropoutNet's trick, Volkovs et al. 2017), so the
    feature tower must score tracks on its own: what cold tracks get.

    User tower: ``e_u`` (``dim``-d id embedding) plus ``h_u``, the mean of ``v_t`` over the
    user's train tracks (the train matrix as CSR buffers ``history_indptr``,
    ``history_indices``). In training a positive pair leaves its own track out of that mean,
    so the model cannot learn to find a positive in its own history; scoring and fold-in
    use the plain mean. :meth:`mean_track_vectors` builds ``h`` for any lists of tracks
    (a listener the model does not know).

    Training computes ``h_u`` one of two ways (``history_refresh``):

    - ``0``: exactly, with gradients through every history track, each batch. A batch of
      4,096 pairs then runs the track tower and the optimizer over the histories of its
      ~4k users (~80k tracks at TIMJ scale: 0.66 s a batch, ~50 min an epoch on 2 cores).
    - ``n > 0``: from a snapshot of the history tracks' vectors and every user's sum, taken
      (without gradients) by :meth:`refresh_history` every ``n`` batches and at the start
      of each epoch: ``h_u`` is then a constant of the step and a batch costs its own
      4,096 tracks. The trainer calls :meth:`before_batch`. The target track still learns
      to sit near the mean of its listeners' other tracks, and the snapshot follows it.
    """

    # buffers (registered in __init__)
    features: torch.Tensor
    has_id: torch.Tensor
    history_indptr: torch.Tensor
    history_indices: torch.Tensor
    history_keys: torch.Tensor

    def __init__(
        self,
        features: torch.Tensor,
        has_id: torch.Tensor,
        history_indptr: torch.Tensor,
        history_indices: torch.Tensor,
        dim: int,
        hidden: int,
        generator: torch.Generator,
        id_dropout: float = 0.0,
        history_refresh: int = 0,
    ):
        super().__init__()
        n_users, n_tracks = len(history_indptr) - 1, len(features)
        self.dim, self.n_tracks, self.id_dropout = dim, n_tracks, id_dropout
        self.history_refresh = history_refresh
        # the snapshot of history_refresh > 0: (track vectors (n_tracks, dim), user sums
        # (n_users, dim), user counts (n_users,)); never saved, rebuilt by refresh_history
        self._snapshot: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._history_tracks: torch.Tensor | None = None  # the distinct tracks of all histories
        self._eval_vectors: tuple[tuple, torch.Tensor] | None = None  # scoring's track table
        self.register_buffer("features", features.to(torch.float32).clone())
        self.register_buffer("has_id", has_id.to(torch.float32).clone())
        self.register_buffer("history_indptr", history_indptr.to(torch.int64).clone())
        self.register_buffer("history_indices", history_indices.to(torch.int64).clone())
        # sorted user * n_tracks + track keys (CSR rows are sorted), to spot a pair's own track
        rows = torch.repeat_interleave(torch.arange(n_users), history_indptr.diff())
        keys = rows * n_tracks + self.history_indices
        self.register_buffer("history_keys", keys, persistent=False)
        self.users = nn.Embedding(n_users, dim)
        self.tracks = nn.Embedding(n_tracks, dim + 1)
        self.layer1 = nn.Linear(features.shape[1], hidden)
        self.layer2 = nn.Linear(hidden, dim + 1)
        for embedding in (self.users, self.tracks):
            _init_embedding(embedding, generator)
        for linear in (self.layer1, self.layer2):
            _init_linear(linear, generator)
        # the id-dropout draws: their own stream, seeded by the init's generator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        self._dropout = torch.Generator().manual_seed(seed)

    def _track_parts(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(I, dim + 1) each: the feature tower's ``MLP(f_t)`` and the gated ``m_t E_t``."""
        mlp = self.layer2(torch.relu(self.layer1(self.features[items])))
        return mlp, self.has_id[items, None] * self.tracks(items)

    def track_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(I, dim + 1): ``[v_t; b_t]`` of each track in ``items``.

        Scoring (eval mode, no gradient) reads them from a table of every track, computed
        once for the current weights: ranking a catalogue in blocks of users would run the
        track tower over the whole catalogue for every block.
        """
        if self.training or torch.is_grad_enabled():
            mlp, ids = self._track_parts(items)
            return mlp + ids
        return self._all_track_vectors()[items]

    def _all_track_vectors(self) -> torch.Tensor:
        # keyed on every tensor's storage and in-place version: any change to the weights
        # (an optimizer step, load_state_dict, a test's edit) computes the table anew
        key = tuple((t.data_ptr(), t._version) for t in (*self.parameters(), *self.buffers()))
        if self._eval_vectors is None or self._eval_vectors[0] != key:
            everything = torch.arange(self.n_tracks, device=self.features.device)
            self._eval_vectors = (key, self._track_vectors_in_blocks(everything))
        return self._eval_vectors[1]

    def _track_vectors_in_blocks(self, items: torch.Tensor) -> torch.Tensor:
        """(I, dim + 1) like :meth:`track_vectors` for many tracks, in blocks that bound the
        ``(block, hidden)`` intermediate."""
        out = self.features.new_empty((len(items), self.dim + 1))
        for lo in range(0, len(items), TRACK_BLOCK):
            mlp, ids = self._track_parts(items[lo : lo + TRACK_BLOCK])
            out[lo : lo + TRACK_BLOCK] = mlp + ids
        return out

    def mean_track_vectors(
        self, indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sums (B, dim), counts (B,))`` of ``v_t`` over the tracks of each list.

        The lists are a CSR pattern (``indptr`` ``(R + 1,)``, ``indices`` track indexes);
        ``rows`` picks B of them (default: all R). An empty list sums to 0.
        """
        rows = torch.arange(len(indptr) - 1, device=indptr.device) if rows is None else rows
        start, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
        offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        if total == 0:
            return self.features.new_zeros((len(rows), self.dim)), counts
        pos = torch.arange(total, device=indptr.device)
        pos += torch.repeat_interleave(start - offsets, counts, output_size=total)
        tracks, inverse = torch.unique(indices[pos], return_inverse=True)
        vectors = self.track_vectors(tracks)[:, : self.dim].contiguous()
        return F.embedding_bag(inverse, vectors, offsets, mode="sum"), counts

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """(B, dim): ``e_u + h_u`` of trained users."""
        sums, counts = self.mean_track_vectors(self.history_indptr, self.history_indices, users)
        return self.users(users) + sums / counts.clamp(min=1)[:, None]

    def score_vectors(self, user_vectors: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, I) logits of any ``(B, dim)`` user vectors against ``items``."""
        return self._with_bias(user_vectors) @ self.item_matrix(items).T

    @staticmethod
    def _with_bias(user_vectors: torch.Tensor) -> torch.Tensor:
        # the bias through the product ([u; 1] . [v; b]): no second pass over (B, I)
        ones = user_vectors.new_ones((len(user_vectors), 1))
        return torch.cat([user_vectors, ones], dim=1)

    def score_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, I) logits of every user in ``users`` against every track in ``items``."""
        return self.score_vectors(self.user_vectors(users), items)

    def user_matrix(self, users: torch.Tensor) -> torch.Tensor:
        """(B, dim + 1): the left factor of :meth:`score_matrix`, ``[u; 1]``."""
        return self._with_bias(self.user_vectors(users))

    def item_matrix(self, items: torch.Tensor) -> torch.Tensor:
        """(I, dim + 1): the right factor, ``[v_t; b_t]`` (the track tower)."""
        return self.track_vectors(items)

    @torch.no_grad()
    def refresh_history(self) -> None:
        """Snapshot the history tracks' ``v_t`` and every user's history sum and count (no
        gradient; the vectors of tracks in no history stay 0, as nothing reads them)."""
        indptr, indices = self.history_indptr, self.history_indices
        if self._history_tracks is None or self._snapshot is None:
            self._history_tracks = torch.unique(indices)
            vectors = self.features.new_zeros((self.n_tracks, self.dim))
        else:  # the last snapshot's table, rewritten: no 150 MB of fresh zeros each time
            vectors = self._snapshot[0]
        tracks = self._history_tracks
        vectors.index_copy_(0, tracks, self._track_vectors_in_blocks(tracks)[:, : self.dim])
        sums = F.embedding_bag(indices, vectors, indptr[:-1], mode="sum")
        self._snapshot = (vectors, sums, indptr.diff())

    def before_batch(self, batch: int) -> None:
        """Called by the trainer before batch ``batch`` (0-based within the epoch)."""
        if self.history_refresh > 0 and batch % self.history_refresh == 0:
            self.refresh_history()

    def after_training(self) -> None:
        """Called by the trainer when training ends: the snapshot is stale from here on
        (scoring uses the exact mean) and is let go. A validation probe between batches
        keeps it, so probing does not change what is learnt."""
        self._snapshot = self._history_tracks = None

    def train(self, mode: bool = True) -> TwoTowerModule:
        if mode:
            self._eval_vectors = None
        return super().train(mode)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(N,) logits of the aligned pairs; a pair's own track is left out of ``h_u``."""
        mlp, ids = self._track_parts(items)
        full = mlp + ids
        tracks = full
        if self.training and self.id_dropout > 0:
            keep = torch.rand(len(items), generator=self._dropout) >= self.id_dropout
            tracks = mlp + keep.to(device=items.device, dtype=ids.dtype)[:, None] * ids
        v, b = tracks[:, : self.dim], tracks[:, self.dim]
        own = self._in_history(users, items).to(v.dtype)[:, None]
        if self.training and self._snapshot is not None:
            vectors, sums, counts = self._snapshot
            sums, counts, own_v = sums[users], counts[users], vectors[items]
        else:
            unique, inverse = torch.unique(users, return_inverse=True)
            sums, counts = self.mean_track_vectors(
                self.history_indptr, self.history_indices, unique
            )
            sums, counts = sums[inverse], counts[inverse]
            own_v = full[:, : self.dim]
        # the own track left out exactly as it was counted in: with its id
        h = (sums - own * own_v) / (counts[:, None] - own).clamp(min=1)
        return ((self.users(users) + h) * v).sum(dim=-1) + b

    def _in_history(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(N,) bool: is ``items[n]`` one of ``users[n]``'s train tracks?"""
        keys = self.history_keys
        if len(keys) == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        query = users * self.n_tracks + items
        at = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        return keys[at] == query
