"""The networks behind the torch recommenders: they map (user, track) pairs to logits.

Both take index tensors in the :class:`jamrec.data.Dataset` id spaces (users
``0..n_users-1``, tracks ``0..n_tracks-1``); ``forward(users, items)`` scores aligned pairs
(``(N,)`` logits, the sigmoid is applied by the BCE loss) and ``score_matrix(users, items)``
scores every user against every track (``(B, I)``). Weights are initialised from an explicit
``torch.Generator``, so building a network never touches torch's global random state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

EMBEDDING_STD = 0.01  # small start: early logits near 0, so the BCE gradients are balanced
CHUNK_BYTES = 256 * 2**20  # bound on the (users, tracks, hidden) block of the hybrid's scoring


def _init_embedding(embedding: nn.Embedding, generator: torch.Generator) -> None:
    nn.init.normal_(embedding.weight, 0.0, EMBEDDING_STD, generator=generator)


def _init_linear(linear: nn.Linear, generator: torch.Generator) -> None:
    # torch's default Linear init (uniform in +-1/sqrt(fan_in)), drawn from our generator
    bound = 1.0 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound, generator=generator)
    nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


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
        return self.users(users) @ self.tracks(items).T


class HybridModule(nn.Module):
    """The study's hybrid network: ID embeddings plus audio features through an MLP.

    ``logit(u, t) = w2 . relu(W1 [e_u; e_t; f_t] + b1) + b2`` with ``dim``-d embeddings,
    ``f_t`` the track's standardised audio features (``features``, ``(n_tracks, F)``, kept
    as a buffer so it is saved with the weights) and ``hidden`` units.

    The first layer splits into a user part ``W_u e_u`` and a track part
    ``W_t e_t + W_f f_t + b1``, so scoring B users against I tracks costs one ``(B, I,
    hidden)`` pass (:meth:`score_from_parts`) instead of a full forward per pair.
    """

    def __init__(
        self,
        n_users: int,
        n_tracks: int,
        features: torch.Tensor,
        dim: int,
        hidden: int,
        generator: torch.Generator,
    ):
        super().__init__()
        self.dim = dim
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
        x = torch.cat([self.users(users), self.tracks(items), self.features[items]], dim=-1)
        return self.layer2(torch.relu(self.layer1(x))).squeeze(-1)

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

        Computed in blocks of users and tracks that keep the ``(b, i, hidden)`` intermediate
        under ``CHUNK_BYTES``: one user costs one pass over the tracks, memory stays bounded.
        """
        n_users, hidden = user_part.shape
        n_items = track_part.shape[0]
        out = user_part.new_empty((n_users, n_items))
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
        return self.score_from_parts(self.user_part(users), self.track_part(items))
