"""What the models see: the published warehouse as id maps and sparse matrices.

Id spaces (fixed for one build, shared by every model and by the evaluation):

- user index: position in :attr:`Dataset.users`, the users of ``splits`` sorted by id;
- track index: position in :attr:`Dataset.tracks`, the whole ``tracks`` catalogue sorted
  by id. Tracks without a train interaction are in the catalogue but are not
  *candidates* (:attr:`Dataset.candidates`); ID models cannot rank them.

Everything models learn from comes from the train split (popularity, feature scaling,
...); val and test only reach the evaluation.

Split protocols (:data:`SPLIT_PROTOCOLS`): ``leave_k_out`` reads ``splits`` and
``negatives`` (k positives per user held out at random); ``temporal`` reads
``splits_temporal`` and ``negatives_temporal`` (train before a global time cut, test
after it, no val). Both use the same user and track indexes.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from jamrec.errors import JamrecError
from jamrec.models.products import each_chunk
from jamrec.warehouse.contract import AUDIO_FEATURES
from jamrec.warehouse.store import table_names

# Split protocol -> (its splits table, its negatives table): jamrec's own names only.
SPLIT_PROTOCOLS = {
    "leave_k_out": ("splits", "negatives"),
    "temporal": ("splits_temporal", "negatives_temporal"),
}


@dataclass
class Truth:
    """The generator's planted preferences, aligned to the dataset's indexes.

    :meth:`score` is the generator's score (``truth_params``' ``score``, docs/inputs.md)::

        beta * (sqrt(1 - audio_share) * users[u] . tracks[t]
                + sqrt(audio_share) * (audio_scale * bump + audio_offset)) + bias[t]
        bump = exp(-|audio[t] - points[u]|^2 / (2 audio_width^2))

    Users or tracks the truth does not know get zero vectors and points (and the lowest
    bias). Truth written before the audio share existed has no points: share 0, the score
    ``beta * users[u] . tracks[t] + bias[t]``.
    """

    users: np.ndarray  # (n_users, dim) float32
    tracks: np.ndarray  # (n_tracks, dim) float32
    bias: np.ndarray  # (n_tracks,) float32
    beta: float
    points: np.ndarray | None = None  # (n_users, audio_dim) float32: preferred audio points
    audio: np.ndarray | None = None  # (n_tracks, audio_dim) float32: audio coordinates
    audio_share: float = 0.0
    audio_width: float = 1.0
    audio_scale: float = 0.0
    audio_offset: float = 0.0

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """(len(users), len(items)) float32: the planted score (all tracks without `items`)."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        items = np.arange(len(self.bias)) if items is None else np.asarray(items, dtype=np.int64)
        return self.scorer(items)(users, np.empty((len(users), len(items)), np.float32))

    def pair_scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(P,) float32: the planted score of each aligned pair ``(users[p], items[p])``,
        in one compiled pass over the pairs (:func:`_planted_pairs`): the same formula as
        :meth:`scorer`, to float32 rounding, without scoring whole rows."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        out = np.empty(len(users), np.float32)
        audio = self.audio_share > 0 and self.points is not None and self.audio is not None
        weight = self.beta * math.sqrt(self.audio_share) if audio else 0.0
        none = np.zeros((1, 1), np.float32)
        _planted_pairs(
            self.users,
            self.tracks,
            self.bias,
            self.points if audio and self.points is not None else none,
            self.audio if audio and self.audio is not None else none,
            np.float32(self.beta * math.sqrt(1.0 - self.audio_share)),
            np.float32(-0.5 / self.audio_width**2),
            np.float32(weight * self.audio_scale),
            np.float32(weight * self.audio_offset),
            audio,
            users,
            items,
            out,
        )
        return out

    def scorer(self, items: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """``(users, out) -> out``: :meth:`score` of ``users`` x ``items`` written into
        ``out`` (C-contiguous float32), what depends on the items prepared once. The users
        go in chunks of :data:`_TRUTH_ROWS` over every core
        (:func:`jamrec.models.products.each_chunk`), each score the same arithmetic
        whatever the chunk. Per chunk: the latent product written into ``out``, the audio
        taste's exponent ``-|a - p|^2 / (2 width^2)`` as a second product of augmented
        vectors (``[-2w p, w|p|^2, 1] . [a, 1, w|a|^2]``, ``w = -1/(2 width^2)``) into one
        reused chunk-sized buffer, ``exp`` in place, and one compiled pass that scales,
        adds the bump, the offset and the bias (:func:`_planted`): four passes over the
        chunk instead of a dozen full-size temporaries (the oracle's evaluation at TIMJ
        scale took 314 s)."""
        items = np.asarray(items, dtype=np.int64)
        tracks_t = np.ascontiguousarray(self.tracks[items].T)
        scale = np.float32(self.beta * math.sqrt(1.0 - self.audio_share))
        audio = self.audio_share > 0 and self.points is not None and self.audio is not None
        constant = self.bias[items].astype(np.float32)
        bump_scale = np.float32(0.0)
        if audio:
            assert self.points is not None and self.audio is not None
            points = self.points
            width = np.float32(-0.5 / self.audio_width**2)
            weight = self.beta * math.sqrt(self.audio_share)
            bump_scale = np.float32(weight * self.audio_scale)
            constant += np.float32(weight * self.audio_offset)
            a = self.audio[items]
            a_aug = np.empty((a.shape[1] + 2, len(items)), np.float32)
            a_aug[:-2] = a.T
            a_aug[-2] = 1
            a_aug[-1] = width * (a**2).sum(axis=1)
        buffers = threading.local()  # one exponent buffer per product thread

        def chunk(users: np.ndarray, out: np.ndarray) -> None:
            np.matmul(self.users[users], tracks_t, out=out)
            if not audio:
                _planted(out, scale, out, bump_scale, constant)  # bump_scale 0: no bump
                return
            exponent = getattr(buffers, "exponent", None)
            if exponent is None or exponent.shape[0] < len(users):
                exponent = buffers.exponent = np.empty((_TRUTH_ROWS, len(items)), np.float32)
            exponent = exponent[: len(users)]
            p = points[users]
            p_aug = np.empty((len(users), p.shape[1] + 2), np.float32)
            p_aug[:, :-2] = p * (-2 * width)
            p_aug[:, -2] = width * (p**2).sum(axis=1)
            p_aug[:, -1] = 1
            np.matmul(p_aug, a_aug, out=exponent)
            np.exp(exponent, out=exponent)
            _planted(out, scale, exponent, bump_scale, constant)

        def score(users: np.ndarray, out: np.ndarray) -> np.ndarray:
            users = np.atleast_1d(np.asarray(users, dtype=np.int64))
            each_chunk(len(users), _TRUTH_ROWS, lambda lo, hi: chunk(users[lo:hi], out[lo:hi]))
            return out

        return score


# Users per chunk of Truth.scorer: 32 x 252k scores (32 MB) in the exponent buffer.
_TRUTH_ROWS = 32
_ONE = np.float32(1.0)


@njit(cache=True, nogil=True, parallel=True)
def _planted_pairs(
    latent_users: np.ndarray,
    latent_tracks: np.ndarray,
    bias: np.ndarray,
    points: np.ndarray,
    audio: np.ndarray,
    scale: np.float32,
    width: np.float32,
    bump_scale: np.float32,
    offset: np.float32,
    with_audio: bool,
    users: np.ndarray,
    items: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """:meth:`Truth.pair_scores`: the planted score of each pair, on every core."""
    for p in prange(out.shape[0]):
        u, t = users[p], items[p]
        dot = np.float32(0.0)
        for k in range(latent_users.shape[1]):
            dot += latent_users[u, k] * latent_tracks[t, k]
        score = scale * dot + bias[t]
        if with_audio:
            d2 = np.float32(0.0)
            for k in range(points.shape[1]):
                d = audio[t, k] - points[u, k]
                d2 += d * d
            score += bump_scale * np.exp(d2 * width) + offset
        out[p] = score


@njit(cache=True, nogil=True)
def _planted(
    out: np.ndarray,
    scale: np.float32,
    bump: np.ndarray,
    bump_scale: np.float32,
    constant: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """``out = scale * out + bump_scale * min(bump, 1) + constant`` in one pass: the bump
    is ``exp`` of an exponent that is never above 0 (a squared distance is never below 0;
    the product may round it a hair above, hence the clamp)."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = scale * out[i, j] + bump_scale * min(bump[i, j], _ONE) + constant[j]


@dataclass
class Dataset:
    """A published build, ready for training and evaluation (see the module docstring)."""

    build_id: str
    users: np.ndarray  # (n_users,) str
    tracks: np.ndarray  # (n_tracks,) str
    train: sp.csr_matrix  # (n_users, n_tracks) float32, 1 per train positive
    val: sp.csr_matrix  # (n_users, n_tracks)
    test: sp.csr_matrix  # (n_users, n_tracks)
    negatives: sp.csr_matrix  # (n_users, n_tracks), 1 per published negative
    features: np.ndarray  # (n_tracks, len(feature_names)) float32, documented units
    feature_names: tuple[str, ...] = AUDIO_FEATURES
    truth: Truth | None = None
    popularity: np.ndarray | None = None  # (n_tracks,) float32 Spotify 0..100, NaN if unknown
    inputs_fingerprint: str | None = None
    protocol: str = "leave_k_out"  # which split protocol train/val/test come from
    _user_index: dict[str, int] | None = field(default=None, repr=False)
    # What the evaluation derives from the data alone, the same for every model evaluated
    # on this Dataset (the sampled protocol's lists): computed for the first, kept. Not an
    # init field, so dataclasses.replace (a changed copy) starts with an empty one.
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_users(self) -> int:
        """Number of users (rows of every matrix)."""
        return len(self.users)

    @property
    def n_tracks(self) -> int:
        """Number of catalogue tracks (columns of every matrix)."""
        return len(self.tracks)

    @property
    def candidates(self) -> np.ndarray:
        """(n_tracks,) bool: tracks with at least one train interaction."""
        return np.asarray(self.train.getnnz(axis=0) > 0)

    def positives(self) -> sp.csr_matrix:
        """(n_users, n_tracks): every positive, whatever its split."""
        return (self.train + self.val + self.test).tocsr()

    def split(self, name: str) -> sp.csr_matrix:
        """The ``train``, ``val`` or ``test`` matrix."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def user_index(self, user_id: str) -> int | None:
        """The index of a TIMJ user id, or None when the user has no interactions."""
        if self._user_index is None:
            self._user_index = {u: i for i, u in enumerate(self.users)}
        return self._user_index.get(user_id)


def standardise(
    features: np.ndarray, fitted_on: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, mean, std)``: ``(n_tracks, F)`` features as z-scores against some tracks.

    ``features`` is ``(n_tracks, F)`` in documented units (NaN = missing); ``fitted_on`` a
    ``(n_tracks,)`` bool mask of the tracks whose statistics are used (the candidates, so
    nothing from val, test or withheld tracks leaks in; every track when none is marked).
    A missing value gets z = 0 (the mean); a constant feature has std 1 (stays at 0).
    ``mean`` and ``std`` are ``(F,)`` float32.
    """
    features = np.asarray(features, dtype=np.float32)
    base = features[fitted_on] if np.any(fitted_on) else features
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(base, axis=0)).astype(np.float32)
        std = np.nan_to_num(np.nanstd(base, axis=0)).astype(np.float32)
    std = np.where(std > 0, std, np.float32(1.0))
    return np.nan_to_num((features - mean) / std).astype(np.float32), mean, std


def _matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def check_protocol(protocol: str) -> None:
    """Fail with one clear line when ``protocol`` is not a split protocol."""
    if protocol not in SPLIT_PROTOCOLS:
        raise JamrecError(
            f"unknown split protocol {protocol!r}; known: {', '.join(SPLIT_PROTOCOLS)}"
        )


def load_dataset(con: duckdb.DuckDBPyConnection, protocol: str = "leave_k_out") -> Dataset:
    """Read the published tables of ``con`` (read-only is enough) into a :class:`Dataset`,
    with the train/val/test and negatives of split ``protocol`` (:data:`SPLIT_PROTOCOLS`)."""
    check_protocol(protocol)
    splits_table, negatives_table = SPLIT_PROTOCOLS[protocol]
    row = con.execute("select build_id, inputs_fingerprint from published_build").fetchone()
    if row is None:
        raise JamrecError("the warehouse has no published build; run `jamrec etl` first")
    if splits_table not in table_names(con):
        raise JamrecError(
            f"the published build has no {splits_table} table (built by an older jamrec): "
            "rebuild it with `jamrec etl`"
        )
    build_id, fingerprint = row
    con.execute(
        "create or replace temp table _user_ix as select user_id, "
        "(row_number() over (order by user_id) - 1)::integer as ix "
        "from (select distinct user_id from splits)"
    )
    con.execute(
        "create or replace temp table _track_ix as select track_id, "
        "(row_number() over (order by track_id) - 1)::integer as ix from tracks"
    )
    users = np.asarray(
        con.execute("select user_id from _user_ix order by ix").fetchnumpy()["user_id"],
        dtype=object,
    )
    tracks = np.asarray(
        con.execute("select track_id from _track_ix order by ix").fetchnumpy()["track_id"],
        dtype=object,
    )
    shape = (len(users), len(tracks))
    pairs = con.execute(
        f"select u.ix as u, t.ix as t, s.split from {splits_table} s "
        "join _user_ix u using (user_id) join _track_ix t using (track_id)"
    ).fetchnumpy()
    split = np.asarray(pairs["split"])
    matrices = {
        name: _matrix(pairs["u"][split == name], pairs["t"][split == name], shape)
        for name in ("train", "val", "test")
    }
    neg = con.execute(
        f"select u.ix as u, t.ix as t from {negatives_table} n "
        "join _user_ix u using (user_id) join _track_ix t using (track_id)"
    ).fetchnumpy()
    features = (
        np.stack(
            [
                np.asarray(col, dtype=np.float32)
                for col in con.execute(
                    f"select {', '.join(AUDIO_FEATURES)} from tracks t "
                    "join _track_ix using (track_id) order by ix"
                )
                .fetchnumpy()
                .values()
            ],
            axis=1,
        )
        if len(tracks)
        else np.zeros((0, len(AUDIO_FEATURES)), np.float32)
    )
    popularity = np.asarray(
        con.execute(
            "select popularity::float as p from tracks join _track_ix using (track_id) order by ix"
        ).fetchnumpy()["p"],
        dtype=np.float32,
    )
    dataset = Dataset(
        build_id=build_id,
        popularity=np.where(np.isfinite(popularity), popularity, np.nan).astype(np.float32),
        users=users,
        tracks=tracks,
        negatives=_matrix(neg["u"], neg["t"], shape),
        features=features,
        truth=_load_truth(con, len(users), len(tracks)),
        inputs_fingerprint=fingerprint,
        protocol=protocol,
        **matrices,
    )
    con.execute("drop table _user_ix; drop table _track_ix")
    return dataset


def _load_truth(con: duckdb.DuckDBPyConnection, n_users: int, n_tracks: int) -> Truth | None:
    tables = table_names(con)
    if not {"truth_users", "truth_tracks", "truth_params"} <= tables:
        return None
    params = {
        k: json.loads(v) for k, v in con.execute("select name, value from truth_params").fetchall()
    }
    # Column names are built from integers only (the dimensions), never from the files.
    dim = int(params["dim"])
    audio_dim = int(params.get("audio_dim", 0))  # 0: truth from before the audio share
    u_cols = [f"coalesce(u_{i}, 0)" for i in range(dim)]
    u_cols += [f"coalesce(p_{i}, 0)" for i in range(audio_dim)]
    t_cols = [f"coalesce(t_{i}, 0)" for i in range(dim)]
    t_cols += [f"coalesce(a_{i}, 0)" for i in range(audio_dim)]
    users = _columns(
        con.execute(
            f"select {', '.join(u_cols)} from _user_ix left join truth_users using (user_id) "
            "order by ix"
        ).fetchnumpy(),
        n_users,
    )
    tracks = con.execute(
        f"select {', '.join(t_cols)}, "
        "coalesce(bias, (select min(bias) - 1 from truth_tracks)) as bias "
        "from _track_ix left join truth_tracks using (track_id) order by ix"
    ).fetchnumpy()
    bias = np.asarray(tracks.pop("bias"), dtype=np.float32)
    track_cols = _columns(tracks, n_tracks)
    audio = {
        k: float(params[f"audio_{k}"]) for k in ("share", "width", "scale", "offset") if audio_dim
    }
    return Truth(
        users=users[:, :dim],
        tracks=track_cols[:, :dim],
        bias=bias,
        beta=float(params["beta"]),
        points=users[:, dim:] if audio_dim else None,
        audio=track_cols[:, dim:] if audio_dim else None,
        audio_share=audio.get("share", 0.0),
        audio_width=audio.get("width", 1.0),
        audio_scale=audio.get("scale", 0.0),
        audio_offset=audio.get("offset", 0.0),
    )


def _columns(columns: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    """(n_rows, len(columns)) float32 from a ``fetchnumpy`` result, in column order."""
    if not columns:
        return np.zeros((n_rows, 0), np.float32)
    return np.stack([np.asarray(v, np.float32) for v in columns.values()], axis=1).reshape(
        n_rows, len(columns)
    )


def open_dataset(warehouse: Path | None = None, protocol: str = "leave_k_out") -> Dataset:
    """Load the published warehouse (read-only) as a :class:`Dataset` of split ``protocol``."""
    from jamrec.warehouse.store import warehouse_at

    check_protocol(protocol)
    con = warehouse_at(warehouse).connect_readonly()
    try:
        return load_dataset(con, protocol)
    finally:
        con.close()
