"""The planted world: a pool of tracks with audio features, taste vectors and popularity,
and users with taste vectors.

Pool layout (row index = "pool index", used by every other generator module):
``[0, n_catalogue)`` are the Spotify-file tracks, the rest are TIMJ-only songs (with a
Spotify URI that is missing from the file, or with no URI at all). The TIMJ "universe"
(the songs TIMJ users know) is a popularity-weighted part of the catalogue plus all
TIMJ-only songs; the other catalogue tracks get a bias so low they are (almost) never
chosen. A user u picks track j with probability proportional to ``exp(score(u, j))``
(see ``choice.py``), where the planted score (:class:`Mix`) is

    score(u, j) = beta * (sqrt(1 - s) * u . t_j + sqrt(s) * h_u(a_j)) + bias_j
    h_u(a) = scale * exp(-|a - p_u|^2 / (2 width^2)) + offset

That is the oracle score. ``u . t_j`` is the latent taste; ``t_j`` is itself about half
linear in the audio features (:func:`track_vectors`), as before the audio share existed.
``h_u`` is a non-linear audio taste: a bump around the user's preferred point ``p_u`` in
the standardised space of :data:`AUDIO_FEATURES` (``a_j``, the track's coordinates
there); ``p_u`` lies near a point of the user's taste cluster, drawn independently of the
cluster's latent centre. ``scale`` and ``offset`` give ``h_u`` mean 0 and the same
within-user spread over the tracks TIMJ users know as ``u . t``, and the two terms are
nearly uncorrelated, so ``s`` (the audio share) is the share of the taste variance that
the bump carries, and the taste's total spread, hence its balance with popularity
(``beta``), does not depend on ``s``. ``s = 0`` is the planted score as it was before the
share existed: the same TIMJ and Spotify files, byte for byte (the truth gains columns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jamrec.generate import vocab

DIM = 16
N_CLUSTERS = 20
USER_NOISE = 0.6  # a user's own deviation from the taste cluster, per dimension
BIAS_SD = 1.2  # log-popularity spread of TIMJ songs (lognormal popularity)
OUTSIDE_BIAS = -14.0  # catalogue tracks no TIMJ user knows: ~1e-7 of the candidate draws
FEATURE_NAMES = (
    "danceability",
    "energy",
    "loudness",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "mode",
    "explicit",
    "duration_ms",
    "year",
)
# The non-linear audio taste: a bump around each user's point in these standardised
# features (all among the 11 the models see; energy and acousticness nearly opposite).
AUDIO_FEATURES = ("danceability", "energy", "valence", "acousticness", "tempo")
# The bump's width, in standard deviations of the features. Narrower is less linear but
# more peaked: over the tracks TIMJ users know (small scale), a model linear in the 13
# features, fitted per user, explains 36% of a user's bump at width 1.0, 47% at 1.25, 55%
# at 1.5, 65% at 2.0, and the top track sits 9, 6.6, 5.5, 4.6 sd above the mean. A peaked
# bump makes heavy users exhaust the few tracks near their point: at 1.25 and audio share
# 0.5 the tiny scale loses 11% of its jams (repeats redrawn in vain), at 1.5 3%.
AUDIO_WIDTH = 1.5
AUDIO_CLUSTER_SD = 1.0  # taste clusters' points, in sd of each feature: the populated region
AUDIO_USER_SD = 0.5  # a user's point around their cluster's (the proposal's residual stays small)
MIX_USERS, MIX_TRACKS = 1_000, 2_000  # the sample that sets the audio term's scale


@dataclass
class Pool:
    """Every track the generator knows; arrays are indexed by pool index, (n_pool, ...).

    ``artists`` holds up to three artist indices per track (-1 = none; column 0 is the
    first artist); ``features`` the audio features in the units of the Kaggle files plus
    ``key``, ``time_signature`` and the release ``year``; ``popularity`` is Spotify's
    0..100 column; ``vectors`` (n_pool, DIM) float32 and ``bias`` (n_pool,) float32 are the
    planted preferences, ``audio`` (n_pool, len(AUDIO_FEATURES)) float32 the tracks'
    coordinates in the audio taste's standardised space; ``timj`` marks the songs TIMJ
    users know and ``has_uri`` those whose jams carry a Spotify URI (the catalogue and the
    first TIMJ-only songs).
    """

    n_catalogue: int
    artists: np.ndarray
    artist_genre: np.ndarray
    genre: np.ndarray
    features: dict[str, np.ndarray]
    popularity: np.ndarray
    vectors: np.ndarray
    bias: np.ndarray
    timj: np.ndarray
    has_uri: np.ndarray
    audio: np.ndarray

    @property
    def n_pool(self) -> int:
        """Catalogue tracks + TIMJ-only songs."""
        return len(self.genre)

    @property
    def taste(self) -> TrackTaste:
        """The tracks' part of the planted score."""
        return TrackTaste(vectors=self.vectors, audio=self.audio, bias=self.bias)


@dataclass
class TrackTaste:
    """Tracks' planted preferences, (n, ...) arrays: ``vectors`` (n, DIM) float32,
    ``audio`` (n, len(AUDIO_FEATURES)) float32 coordinates, ``bias`` (n,) float32."""

    vectors: np.ndarray
    audio: np.ndarray
    bias: np.ndarray

    def subset(self, rows: np.ndarray) -> TrackTaste:
        """The tracks at `rows`, in that order."""
        return TrackTaste(self.vectors[rows], self.audio[rows], self.bias[rows])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def audio_features(rng: np.random.Generator, genre: np.ndarray) -> dict[str, np.ndarray]:
    """Audio features for tracks of the given genres (n,), in the Kaggle files' units.

    Six latent "audio factors" per track (genre profile + noise) drive the features, so
    energy goes with loudness, acousticness against energy, valence with danceability.
    """
    n = len(genre)
    profile = rng.normal(0.0, 0.9, (len(vocab.GENRES), 7))
    z = profile[genre] + rng.normal(0.0, 0.8, (n, 7))
    e = rng.normal(size=(n, 9))
    f = {"energy": _sigmoid(0.05 + 1.1 * z[:, 0] + 0.3 * e[:, 0])}
    f["loudness"] = np.clip(-10.0 + 3.8 * z[:, 0] + 2.0 * e[:, 1], -60.0, 1.0)
    quiet = rng.random(n) < 0.01  # field recordings, ambient: far below the rest
    f["loudness"][quiet] = rng.uniform(-45.0, -22.0, quiet.sum())
    f["acousticness"] = _sigmoid(-0.2 - 2.4 * z[:, 0] + 0.9 * e[:, 2])
    f["danceability"] = _sigmoid(0.25 + 0.55 * z[:, 1] + 0.35 * e[:, 3])
    f["valence"] = _sigmoid(0.2 + 0.5 * z[:, 1] + 0.7 * z[:, 2] + 0.4 * e[:, 4])
    f["speechiness"] = np.clip(np.exp(-3.0 + 0.6 * z[:, 3] + 0.45 * e[:, 5]), 0.022, 0.97)
    instrumental = rng.random(n) < _sigmoid(-1.3 + 1.4 * z[:, 4])
    tiny = 10.0 ** rng.uniform(-6.0, -2.0, n) * (rng.random(n) < 0.6)
    f["instrumentalness"] = np.where(instrumental, _sigmoid(1.0 + 1.2 * e[:, 6]), tiny)
    f["liveness"] = np.clip(np.exp(-1.8 + 0.35 * z[:, 5] + 0.5 * e[:, 7]), 0.01, 0.99)
    f["tempo"] = np.clip(118.0 + 10.0 * z[:, 0] + 26.0 * e[:, 8], 45.0, 220.0)
    f["tempo"][rng.random(n) < 0.0005] = 0.0  # Spotify reports 0 BPM for a handful
    f["mode"] = (rng.random(n) < _sigmoid(0.8 + 0.4 * z[:, 2])).astype(np.int8)
    f["explicit"] = (rng.random(n) < _sigmoid(-4.3 + 1.6 * z[:, 3])).astype(np.int8)
    f["duration_ms"] = np.clip(
        np.exp(rng.normal(np.log(215_000) + 0.1 * z[:, 4], 0.35)), 2e4, 4.8e6
    )
    f["duration_ms"] = f["duration_ms"].astype(np.int64)
    age = rng.exponential(20.0 + 6.0 * np.abs(z[:, 6]), n)
    f["year"] = np.clip(2020 - age.astype(np.int64), 1921, 2020)
    key_share = np.array([12, 8, 11, 3, 8, 8, 6, 12, 6, 10, 6, 10], dtype=float)
    f["key"] = rng.choice(12, size=n, p=key_share / key_share.sum()).astype(np.int8)
    f["time_signature"] = rng.choice([4, 3, 5, 1], size=n, p=[0.88, 0.09, 0.02, 0.01]).astype(
        np.int8
    )
    return f


def standardized_features(f: dict[str, np.ndarray]) -> np.ndarray:
    """(n, len(FEATURE_NAMES)) float64: skewed features logged, each column z-scored."""
    cols = []
    for name in FEATURE_NAMES:
        x = f[name].astype(np.float64)
        if name in ("speechiness", "liveness", "duration_ms"):
            x = np.log(x)
        cols.append((x - x.mean()) / (x.std() + 1e-12))
    return np.stack(cols, axis=1)


def _rank_normal(rng: np.random.Generator, score: np.ndarray) -> np.ndarray:
    """Standard-normal values assigned in the rank order of `score` (a Gaussian copula)."""
    out = np.empty(len(score))
    out[np.argsort(score, kind="stable")] = np.sort(rng.normal(size=len(score)))
    return out


def build_pool(rng: np.random.Generator, n_catalogue: int, n_universe: int) -> Pool:
    """The track pool: `n_catalogue` Spotify tracks plus TIMJ-only songs.

    `n_universe` songs are known to TIMJ users: 52.5% of them are catalogue tracks (the
    best-known ones, by a noisy "fame"), 17.5% TIMJ-only with a URI, 30% without a URI.
    """
    n_cat_timj = min(round(0.525 * n_universe), n_catalogue)
    n_extra = n_universe - n_cat_timj
    n_pool = n_catalogue + n_extra
    n_artists = max(40, n_pool // 3)
    # Few artists have many tracks: the first artist index is skewed towards 0.
    artists = np.full((n_pool, 3), -1, dtype=np.int32)
    artists[:, 0] = (n_artists * rng.random(n_pool) ** 1.6).astype(np.int32)
    n_feat = rng.choice(3, size=n_pool, p=[0.85, 0.12, 0.03])
    for col in (1, 2):
        has = n_feat >= col
        artists[has, col] = (
            artists[has, 0] + 1 + rng.integers(0, n_artists - 1, has.sum())
        ) % n_artists
    weights = np.array([g[2] for g in vocab.GENRES], dtype=float)
    artist_genre = rng.choice(len(weights), size=n_artists, p=weights / weights.sum())
    own = rng.random(n_pool) < 0.8
    genre = np.where(
        own,
        artist_genre[artists[:, 0]],
        rng.choice(len(weights), n_pool, p=weights / weights.sum()),
    )
    features = audio_features(rng, genre)
    x = standardized_features(features)
    vectors = track_vectors(rng, x, genre)

    fame = 0.5 * x[:, -1] + 0.25 * x[:, 0] + 0.2 * x[:, 1] + 0.75 * rng.normal(size=n_pool)
    fame /= fame.std()
    popularity = np.clip(np.round(28 + 16 * fame + 6 * rng.normal(size=n_pool)), 0, 100).astype(
        np.int16
    )
    timj = np.ones(n_pool, dtype=bool)
    noisy = fame[:n_catalogue] + 0.5 * rng.normal(size=n_catalogue)
    timj[:n_catalogue] = False
    timj[np.argsort(-noisy, kind="stable")[:n_cat_timj]] = True
    bias = np.full(n_pool, OUTSIDE_BIAS) + 0.5 * rng.normal(size=n_pool)
    for group in (np.flatnonzero(timj[:n_catalogue]), np.arange(n_catalogue, n_pool)):
        z = 0.7 * _rank_normal(rng, fame[group]) + 0.71 * rng.normal(size=len(group))
        bias[group] = BIAS_SD * z
    has_uri = np.zeros(n_pool, dtype=bool)
    has_uri[: n_catalogue + round(0.175 * n_universe)] = True
    return Pool(
        n_catalogue=n_catalogue,
        artists=artists,
        artist_genre=artist_genre,
        genre=genre.astype(np.int16),
        features=features,
        popularity=popularity,
        vectors=vectors,
        bias=bias.astype(np.float32),
        timj=timj,
        has_uri=has_uri,
        audio=x[:, [FEATURE_NAMES.index(f) for f in AUDIO_FEATURES]].astype(np.float32),
    )


def track_vectors(rng: np.random.Generator, x: np.ndarray, genre: np.ndarray) -> np.ndarray:
    """(n, DIM) float32 taste vectors: linear in the audio features + genre centre + noise.

    Weights chosen so that about half of the variance (44-53% over seeds, measured) is
    linear in the standardised audio features `x` (n, F): hybrid models can learn from
    them, cold-start tracks included; the rest is genre and noise. E|t|^2 = 1.
    """
    mix = rng.normal(0.0, 1.0 / np.sqrt(x.shape[1]), (DIM, x.shape[1]))
    centres = rng.normal(size=(len(vocab.GENRES), DIM))
    t = 1.05 * x @ mix.T + 0.75 * centres[genre] + 0.95 * rng.normal(size=(len(x), DIM))
    t /= np.sqrt((t**2).sum(axis=1).mean())
    return t.astype(np.float32)


@dataclass
class UserTaste:
    """Users' planted taste: ``vectors`` (n_users, DIM) float32 = ``centres[cluster]`` +
    noise, with ``cluster`` (n_users,) int64 and ``centres`` (N_CLUSTERS, DIM) float32;
    ``points`` (n_users, len(AUDIO_FEATURES)) float32 = ``point_centres[cluster]`` + noise,
    the users' preferred points of the audio taste."""

    vectors: np.ndarray
    cluster: np.ndarray
    centres: np.ndarray
    points: np.ndarray
    point_centres: np.ndarray


def user_taste(rng: np.random.Generator, n: int, audio_rng: np.random.Generator) -> UserTaste:
    """Taste vectors for n users from N_CLUSTERS taste clusters of uneven size; their
    preferred audio points are drawn from `audio_rng` (the vectors do not depend on it)."""
    centres = rng.normal(size=(N_CLUSTERS, DIM)).astype(np.float32)
    share = rng.dirichlet(np.full(N_CLUSTERS, 3.0))
    cluster = rng.choice(N_CLUSTERS, size=n, p=share)
    vectors = (centres[cluster] + USER_NOISE * rng.normal(size=(n, DIM))).astype(np.float32)
    k = len(AUDIO_FEATURES)
    point_centres = AUDIO_CLUSTER_SD * audio_rng.normal(size=(N_CLUSTERS, k))
    points = point_centres[cluster] + AUDIO_USER_SD * audio_rng.normal(size=(n, k))
    return UserTaste(
        vectors=vectors,
        cluster=cluster,
        centres=centres,
        points=points.astype(np.float32),
        point_centres=point_centres.astype(np.float32),
    )


def bump(points: np.ndarray, audio: np.ndarray, width: float) -> np.ndarray:
    """(n_points, n_tracks): ``exp(-|a - p|^2 / (2 width^2))`` for every point p (rows of
    `points`) and track coordinates a (rows of `audio`), in the dtype of the inputs."""
    d2 = (points**2).sum(axis=1)[:, None] + (audio**2).sum(axis=1)[None, :] - 2 * points @ audio.T
    return np.exp(-np.maximum(d2, 0) / (2 * width**2))


@dataclass(frozen=True)
class Mix:
    """How the planted score mixes its parts (module docstring):
    ``beta * (sqrt(1 - share) * u . t + sqrt(share) * (scale * bump + offset)) + bias``."""

    beta: float
    share: float
    width: float = AUDIO_WIDTH
    scale: float = 1.0
    offset: float = 0.0

    @property
    def dot_weight(self) -> float:
        """The factor of ``u . t``: ``beta`` exactly when the share is 0."""
        return self.beta * math.sqrt(1.0 - self.share)

    @property
    def audio_weight(self) -> float:
        """The factor of the bump (0 when the share is 0)."""
        return self.beta * math.sqrt(self.share) * self.scale


def mix(beta: float, share: float, users: UserTaste, pool: Pool) -> Mix:
    """The score's :class:`Mix` for an audio `share` in [0, 1].

    ``scale`` and ``offset`` are measured on MIX_USERS users and MIX_TRACKS of the tracks
    TIMJ users know (evenly spaced; no random draws): the bump, scaled, has mean 0 and the
    within-user standard deviation of ``u . t``.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the audio share must be in [0, 1], not {share}")
    known = np.flatnonzero(pool.timj)
    cols = known[np.linspace(0, len(known) - 1, min(MIX_TRACKS, len(known))).astype(np.int64)]
    rows = np.arange(min(MIX_USERS, len(users.vectors)))
    dot = users.vectors[rows].astype(np.float64) @ pool.vectors[cols].T.astype(np.float64)
    points, audio = users.points[rows].astype(np.float64), pool.audio[cols].astype(np.float64)
    b = bump(points, audio, AUDIO_WIDTH)
    scale = math.sqrt(dot.var(axis=1).mean() / b.var(axis=1).mean())
    return Mix(beta, share, AUDIO_WIDTH, scale, -scale * float(b.mean()))
