"""How a user picks a song: candidates by popularity and cluster taste, then Gumbel-max.

The target is ``P(j | u) ~ exp(score(u, j))``, the planted score of ``taste.Mix``:
``bias_j + w * u . t_j`` plus, with an audio share, ``v * bump(a_j; p_u)``. A user u
belongs to a taste cluster with centre c and audio point p_c; each pick draws M
candidates from the cluster's proposal ``q(j) ~ exp(bias_j + w * c . t_j + v *
bump(a_j; p_c))`` and keeps the one maximising ``w * (u - c) . t_j + v * (bump(a_j; p_u)
- bump(a_j; p_c)) + Gumbel noise``. That is sampling-importance-resampling of the
target, exact as M grows; the cluster proposal keeps the importance weights (the user's
own deviation from the cluster) small, so M = 32-48 already ranks like M = 256 on the
small scale, where candidates by popularity alone would need thousands. Work is done in
fixed chunks, each with its own generator derived from (seed key, cluster, chunk), so the
result does not depend on how many threads run the chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from jamrec.generate.taste import Mix, TrackTaste, UserTaste, bump

CHUNK = 16_384
THREADS = 2


class WeightedSampler:
    """Draw indices 0..n-1 with probability proportional to `weights` (n,), O(1) per draw.

    A guide table over the cumulative weights replaces a binary search: it gives the
    first candidate index for each of 2^k equal slices of [0, 1), and a short vectorised
    walk finishes the search (on average n / 2^k steps per draw).
    """

    def __init__(self, weights: np.ndarray):
        cum = np.cumsum(np.asarray(weights, dtype=np.float64))
        self.cum = cum / cum[-1]
        self.slices = 1 << max(10, int(np.ceil(np.log2(2 * len(cum)))))
        grid = np.arange(self.slices, dtype=np.float64) / self.slices
        self.guide = np.searchsorted(self.cum, grid, side="right").astype(np.int32)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """An int64 array of `shape` of indices drawn independently."""
        u = rng.random(shape).reshape(-1)
        idx = self.guide[(u * self.slices).astype(np.int64)].astype(np.int64)
        todo = np.flatnonzero(self.cum[idx] <= u)
        while len(todo):
            idx[todo] += 1
            todo = todo[self.cum[idx[todo]] <= u[todo]]
        return idx.reshape(shape)


@dataclass(frozen=True)
class AudioResidual:
    """The audio part of a pick's score beyond its cluster's proposal:
    ``weight * (bump(a_j; p_u) - proposal_j)``, with ``points`` (n_users, k) the users'
    preferred points, ``items`` (n_items, k) the items' coordinates and ``proposal``
    (n_items,) the bump at the cluster's point; float32 throughout."""

    points: np.ndarray
    items: np.ndarray
    proposal: np.ndarray
    weight: float
    width: float

    def score(self, users: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(n, m) float32 for `users` (n,) and their candidates `cand` (n, m)."""
        diff = np.take(self.items, cand, axis=0) - self.points[users][:, None, :]
        bump = np.exp((diff * diff).sum(axis=2) * np.float32(-0.5 / self.width**2))
        bump -= np.take(self.proposal, cand)
        return bump * np.float32(self.weight)


def choose(
    key: tuple[int, ...],
    users: np.ndarray,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    sampler: WeightedSampler,
    beta: float,
    m: int,
    audio: AudioResidual | None = None,
) -> np.ndarray:
    """One pick per event: `users` (n,) indexes `user_vectors` (n_users, d); the sampler
    draws `m` candidates among the rows of `item_vectors` (n_items, d), the one with the
    largest ``beta * u . t (+ audio) + Gumbel`` wins. Returns (n,) int64 item indices.

    `key` seeds the draws (chunk c uses ``default_rng([*key, c])``).
    """
    out = np.empty(len(users), dtype=np.int64)

    def run(c: int) -> None:
        rng = np.random.default_rng([*key, c])
        lo, hi = c * CHUNK, min(len(users), (c + 1) * CHUNK)
        cand = sampler.draw(rng, (hi - lo, m))
        u = user_vectors[users[lo:hi]]
        # np.take copies whole rows, twice as fast as fancy indexing here.
        score = np.matmul(np.take(item_vectors, cand, axis=0), u[:, :, None])[:, :, 0]
        score *= np.float32(beta)
        if audio is not None:
            score += audio.score(users[lo:hi], cand)
        with np.errstate(divide="ignore"):
            score -= np.log(-np.log(rng.random(score.shape, dtype=np.float32)))
        out[lo:hi] = cand[np.arange(hi - lo), np.argmax(score, axis=1)]

    n_chunks = -(-len(users) // CHUNK)
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(run, range(n_chunks)))
    return out


Picker = Callable[[tuple[int, ...], np.ndarray], np.ndarray]


def by_cluster(
    users: np.ndarray, taste: UserTaste, items: TrackTaste, mix: Mix, m: int
) -> Iterator[tuple[np.ndarray, Picker]]:
    """For each taste cluster, yield (events, pick): `events` are the positions in
    `users` (n,) whose user is in the cluster, ``pick(key, which)`` makes one pick for
    each event position in `which` (a subset of `events`) and returns indices of `items`,
    by the planted score `mix`.

    Events of one user all fall in one cluster, so per-user rules (no repeats) can be
    enforced cluster by cluster, while only one cluster's proposal is in memory.
    """
    cluster = taste.cluster[users]
    residual = taste.vectors - taste.centres[taste.cluster]
    beta = mix.dot_weight  # beta itself when the audio share is 0
    for k in np.unique(cluster):
        logit = items.bias.astype(np.float64) + beta * (items.vectors @ taste.centres[k])
        audio = None
        if mix.share > 0:
            proposal = bump(taste.point_centres[k][None, :], items.audio, mix.width)[0]
            logit += mix.audio_weight * proposal
            audio = AudioResidual(taste.points, items.audio, proposal, mix.audio_weight, mix.width)
        sampler = WeightedSampler(np.exp(logit - logit.max()))

        def pick(
            key: tuple[int, ...],
            which: np.ndarray,
            k: int = int(k),
            s: WeightedSampler = sampler,
            a: AudioResidual | None = audio,
        ) -> np.ndarray:
            return choose((*key, k), users[which], residual, items.vectors, s, beta, m, a)

        yield np.flatnonzero(cluster == k), pick


def first_occurrence(keys: np.ndarray) -> np.ndarray:
    """(n,) bool: True where keys[i] has not appeared at an earlier position."""
    order = np.argsort(keys, kind="stable")
    first = np.ones(len(keys), dtype=bool)
    first[order[1:]] = keys[order[1:]] != keys[order[:-1]]
    return first
