"""Reference points every model is reported beside: popularity, random and the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit, prange
from pydantic import Field

from jamrec.models.base import BlockScorer, ModelConfig, Recommender, TrainData
from jamrec.models.dataset import Truth
from jamrec.rand import splitmix64


class Popularity(Recommender):
    """Ranks tracks by how many users have them in train (the same list for everyone)."""

    name = "popularity"
    pair_scoring = True  # a pair is one lookup: the sampled lists go as pairs
    shared_scores = True  # the same list for everyone: the full ranking orders one row

    def _fit(self, data: TrainData) -> None:
        self.counts = np.asarray(data.train.getnnz(axis=0), dtype=np.float32)
        data.step(0, None, self)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.counts[np.asarray(items, dtype=np.int64)]

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        counts = self.counts if items is None else self.counts[np.asarray(items)]
        return np.broadcast_to(counts, (len(np.atleast_1d(users)), len(counts))).copy()

    def block_scorer(self, items: np.ndarray) -> BlockScorer:
        counts = self.counts[np.asarray(items)]

        def score(users: np.ndarray, out: np.ndarray) -> np.ndarray:
            out[...] = counts
            return out

        return score

    def _save(self, folder: Path) -> None:
        np.save(folder / "counts.npy", self.counts)

    def _load(self, folder: Path) -> None:
        self.counts = np.load(folder / "counts.npy")


@njit(cache=True, parallel=True)
def _random_words(
    values: np.ndarray, multipliers: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``out[r, j]``: the top 23 bits of ``values[j] * multipliers[r] mod 2**32`` as the
    mantissa of a float in [1, 2) (no conversion pass), one pass over the block on every
    thread (numpy's multiply, shift and or took three single-threaded passes: ~50 s of
    scoring per full ranking at TIMJ scale)."""
    n_rows, n = out.shape
    for r in prange(n_rows):
        m = np.uint64(multipliers[r])
        row = out[r]
        for j in range(n):
            word = np.uint32((np.uint64(values[j]) * m) & np.uint64(0xFFFFFFFF))
            row[j] = (word >> np.uint32(9)) | np.uint32(0x3F800000)


class Random(Recommender):
    """Random scores: the floor of every metric.

    ``score(u, t)`` in [1, 2) holds the top 23 bits of ``r_t * a_u mod 2**32``: a seeded
    random 32-bit word per track times a random odd multiplier per user (multiplicative
    hashing), so each user gets their own pseudo-random order of the tracks, depending on no
    data, and a block of users x tracks costs three passes over memory (a generator per pair costs
    ~5 ns a pair: minutes per protocol at TIMJ scale).
    """

    name = "random"
    reference = True  # the floor every model is read against, never served
    pair_scoring = True  # a pair is one product: the sampled lists go as pairs

    def _fit(self, data: TrainData) -> None:
        self.track_values = np.random.default_rng([self.config.seed, 0x7A4]).integers(
            0, 2**32, data.n_tracks, dtype=np.uint32
        )
        data.step(0, None, self)

    def _multipliers(self, users: np.ndarray) -> np.ndarray:
        keys = splitmix64(np.uint64(self.config.seed) ^ np.asarray(users).astype(np.uint64))
        return (keys >> np.uint64(32)).astype(np.uint32) | np.uint32(1)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        n_items = self.n_tracks if items is None else len(items)
        return self._scores(users, items, np.empty((len(users), n_items), np.float32))

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The same words as :meth:`score`, one per aligned pair."""
        values = self.track_values[np.asarray(items, dtype=np.int64)].astype(np.uint64)
        multipliers = self._multipliers(np.asarray(users, dtype=np.int64)).astype(np.uint64)
        words = ((values * multipliers) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return ((words >> np.uint32(9)) | np.uint32(0x3F800000)).view(np.float32)

    def block_scorer(self, items: np.ndarray) -> BlockScorer:
        values = self.track_values[np.asarray(items)]  # gathered once
        return lambda users, out: self._words(np.asarray(users, dtype=np.int64), values, out)

    def _scores(self, users: np.ndarray, items: np.ndarray | None, out: np.ndarray) -> np.ndarray:
        values = self.track_values if items is None else self.track_values[np.asarray(items)]
        return self._words(users, values, out)

    def _words(self, users: np.ndarray, values: np.ndarray, out: np.ndarray) -> np.ndarray:
        if out.size:
            _random_words(
                np.ascontiguousarray(values, np.uint32),
                self._multipliers(users),
                out.view(np.uint32),
            )
        return out

    def _save(self, folder: Path) -> None:
        np.save(folder / "track_values.npy", self.track_values)

    def _load(self, folder: Path) -> None:
        self.track_values = np.load(folder / "track_values.npy")


class OracleConfig(ModelConfig):
    """The oracle has nothing to tune: it reads the generator's planted preferences."""

    note: str = Field("generated data only", description="Needs the warehouse's truth_ tables.")


class Oracle(Recommender):
    """Ranks by the generator's planted score (generated data only): the latent dot
    product, the audio taste by its share, and the popularity bias (``Truth.score``).

    The best ranking any model can hope for on a generated dump; real data has no
    truth, and fitting this model there is an error.
    """

    name = "oracle"
    Config = OracleConfig
    reference = True  # the ceiling, on generated data only, never served
    pair_scoring = True  # the audio taste's exp per score: the sampled lists go as pairs

    def _fit(self, data: TrainData) -> None:
        if data.truth is None:
            raise ValueError("the oracle needs the planted truth (truth_* tables, generated data)")
        self.truth = data.truth
        data.step(0, None, self)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return self.truth.score(users, items)

    def block_scorer(self, items: np.ndarray) -> BlockScorer:
        """The planted score written into ``out``, the items' side prepared once."""
        return self.truth.scorer(items)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The planted score of aligned pairs, each computed on its own."""
        return self.truth.pair_scores(users, items)

    def _save(self, folder: Path) -> None:
        t = self.truth
        none = np.zeros((0, 0), np.float32)  # truth without the audio taste
        np.savez(
            folder / "truth.npz",
            users=t.users,
            tracks=t.tracks,
            bias=t.bias,
            points=none if t.points is None else t.points,
            audio=none if t.audio is None else t.audio,
            mix=np.array([t.beta, t.audio_share, t.audio_width, t.audio_scale, t.audio_offset]),
        )

    def _load(self, folder: Path) -> None:
        saved = np.load(folder / "truth.npz")
        if "mix" not in saved:  # saved before the audio share: users already times beta
            self.truth = Truth(saved["users"], saved["tracks"], saved["bias"], beta=1.0)
            return
        beta, share, width, scale, offset = (float(v) for v in saved["mix"])
        audio = saved["points"].size > 0
        self.truth = Truth(
            saved["users"],
            saved["tracks"],
            saved["bias"],
            beta=beta,
            points=saved["points"] if audio else None,
            audio=saved["audio"] if audio else None,
            audio_share=share,
            audio_width=width,
            audio_scale=scale,
            audio_offset=offset,
        )
