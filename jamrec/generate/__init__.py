"""Deterministic synthetic TIMJ + Spotify dumps with planted preferences.

``generate(out, scale, seed)`` writes, under `out`:
``archive/jams.tsv``, ``archive/likes.tsv``, ``archive/followers.tsv`` (the TIMJ dump,
real format and quirks), ``tracks.csv`` and optionally the four other Kaggle variants,
and ``truth/`` (users.parquet, tracks.parquet, params.json: the planted preferences).
The same seed and settings give the same bytes; each part of the world draws from its own
generator ``default_rng([seed, part])``, so changing one part does not reshuffle the others.

The planted score (``taste.Mix``; docs/inputs.md) is

    score(u, j) = beta * (sqrt(1 - s) * u . t_j + sqrt(s) * h_u(a_j)) + bias_j

a latent dot product (track vectors ``t`` about half linear in the audio features), a
non-linear audio taste ``h_u`` (a bump around the user's preferred point ``p_u`` in five
standardised audio features ``a``, scaled to the spread of ``u . t``, so ``s`` is its
share of the taste variance) and a log-popularity ``bias``; ``s`` is the audio share
(``audio_share``, AUDIO_SHARE by default). A user picks a track with probability
proportional to ``exp(score)``; the oracle ranks by the score.

Why 0.3 by default: a middle value on the realistic side. In real listening data the
audio features explain a minority of taste (content-based recommenders trail
collaborative filtering by a wide margin), and the latent vectors ``t`` already follow
the features linearly for about half their variance, so at 0.3 the features account for
about two thirds of the taste variance, and about a seventh of it (the bump's non-linear part)
lies beyond any model linear in them. 0 reproduces the dumps made before the share
existed; 0.8 makes the audio taste dominate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from jamrec.errors import JamrecError
from jamrec.generate import activity, names, spotify, taste, text, timj, truth

BETA = 2.0  # taste vs popularity: beta * u.t has sd ~2.2, the log-popularity sd 1.6
AUDIO_SHARE = 0.3  # the audio taste's share of the taste variance (why 0.3: module docstring)
LURKER_SHARE = 0.05  # users who only like or follow, on top of those who jam
DUPLICATE_SHARE = 0.006
BROKEN_SHARE = 0.0002
# One generator per part of the world (the numbers are part of the output's identity).
POOL, NAMES, IDS, USERS, COUNTS, JAMS, DAYS, LIKES, FOLLOWERS, TIMJ, SPOTIFY, AUDIO = range(1, 13)


@dataclass(frozen=True)
class ScaleSpec:
    """Target sizes of one dump; the summary of `generate` reports what was written."""

    n_users: int  # users with at least one jam (plus LURKER_SHARE who only like/follow)
    n_jams: int  # jam rows, injected duplicates included
    n_likes: int
    n_followers: int
    n_tracks: int  # the Spotify catalogue
    n_songs: int  # distinct songs jammed, about n_jams / 4.2
    # Songs TIMJ users know per distinct song jammed; calibrated so that about n_songs
    # distinct songs get jammed (more users per taste cluster concentrate the picks).
    known_per_song: float = 1.75


SCALES: dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(300, 3_000, 9_000, 900, 2_000, 714),
    "small": ScaleSpec(5_000, 50_000, 150_000, 15_000, 20_000, 11_900),
    "full": ScaleSpec(200_000, 2_100_000, 6_000_000, 600_000, 600_000, 500_000, 1.85),
}


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.default_rng([seed, part])


def _variants(requested: Sequence[str] | str) -> list[str]:
    if isinstance(requested, str):
        requested = spotify.VARIANTS if requested == "all" else requested.split(",")
    chosen = list(spotify.VARIANTS) if "all" in requested else [v.strip() for v in requested]
    unknown = [v for v in chosen if v not in spotify.VARIANTS]
    if unknown:
        raise JamrecError(
            f"unknown Spotify variant(s) {unknown}; known: all, {', '.join(spotify.VARIANTS)}"
        )
    return [v for v in spotify.VARIANTS if v in chosen]


def _names(rng: np.random.Generator, pool: taste.Pool) -> tuple[pl.Series, ...]:
    """Artist names (n_artists,), titles and TIMJ artist text (n_pool,), albums (n_catalogue,)."""
    n_pool, n_cat = pool.n_pool, pool.n_catalogue
    n_artists = len(pool.artist_genre)
    scripts = names.artist_scripts(rng, n_artists)
    artist_names = names.artist_names(rng, scripts)
    featured = np.where(
        pool.artists[:, 1] >= 0, pool.artists[:, 1], rng.integers(0, n_artists, n_pool)
    )
    titles = names.titles(rng, n_pool, scripts[pool.artists[:, 0]], artist_names.gather(featured))
    titles = names.unique_per_artist(titles, pool.artists[:, 0])
    first = artist_names.gather(pool.artists[:, 0])
    second = artist_names.gather(np.maximum(pool.artists[:, 1], 0))
    # TIMJ users typed the artist: the Spotify first artist for catalogue songs, and for
    # TIMJ-only songs sometimes "A feat. B".
    feat = (np.arange(n_pool) >= n_cat) & (pool.artists[:, 1] >= 0) & (rng.random(n_pool) < 0.5)
    timj_artist = pl.select(
        pl.when(pl.lit(feat)).then(first + " feat. " + second).otherwise(first)
    ).to_series()
    return artist_names, titles, timj_artist, names.albums(rng, titles.head(n_cat))


@dataclass
class _World:
    """What the generator draws before any activity: the catalogue and its names, every
    id, and the users' planted taste."""

    spec: ScaleSpec
    pool: taste.Pool
    artist_names: pl.Series
    titles: pl.Series
    timj_artist: pl.Series
    albums: pl.Series
    track_ids: pl.Series
    artist_ids: pl.Series
    album_ids: pl.Series
    user_chars: np.ndarray
    user_ids: pl.Series
    users_taste: taste.UserTaste
    mix: taste.Mix

    @property
    def n_all(self) -> int:
        """Users who jam plus those who only like or follow."""
        return len(self.user_ids)


@dataclass
class _Activity:
    """Who jammed, liked and followed what (indexes into the world's users and pool)."""

    jams: activity.Jams
    jam_chars: np.ndarray
    liker: np.ndarray
    liked: np.ndarray
    unknown: tuple[np.ndarray, np.ndarray, int]  # (liker, target, n_targets): unknown jams
    followed: np.ndarray
    follower: np.ndarray


class _Clock:
    """Logs one line per generation stage, with its duration."""

    def __init__(self, say: Callable[[str], None]):
        self.say, self.start, self.last = say, time.perf_counter(), time.perf_counter()

    def done(self, what: str) -> None:
        self.say(f"{what} in {time.perf_counter() - self.last:.1f} s")
        self.last = time.perf_counter()


def generate(
    out: Path,
    scale: str = "small",
    seed: int = 0,
    broken_share: float | None = None,
    spotify_variants: Sequence[str] | str = ("tracks.csv",),
    progress: Callable[[str], None] | None = None,
    audio_share: float = AUDIO_SHARE,
) -> dict:
    """Write a synthetic dump under `out`; return a summary dict of counts (printed by the CLI).

    `scale` is a key of SCALES; `broken_share` the share of jams.tsv lines to break (default
    0.0002, never fewer than 3 unless 0); `spotify_variants` file names of the Kaggle
    variants to write, or "all"; `audio_share` the share of the planted taste that is the
    non-linear audio taste, in [0, 1] (0: the TIMJ and Spotify files made before it
    existed, byte for byte). Counts refer to what the files hold: ``jams`` are the
    well-formed jam lines, ``broken_lines`` the lines that are not, and so on.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if not 0.0 <= audio_share <= 1.0:
        raise ValueError(f"the audio share must be in [0, 1], not {audio_share}")
    spec, variants, out = SCALES[scale], _variants(spotify_variants), Path(out)
    clock = _Clock(progress or logging.getLogger("jamrec.generate").info)
    world = _draw_catalogue_and_users(spec, seed, float(audio_share), clock)
    acts = _draw_activity(world, seed, clock)
    share = BROKEN_SHARE if broken_share is None else broken_share
    summary, uri_rows = _write_timj(world, acts, out, seed, share)
    clock.done(f"archive: {summary['jams_lines']:,} jams lines, {summary['likes']:,} likes written")
    summary |= _write_spotify(world, out, seed, variants)
    clock.done(f"spotify: {', '.join(variants)} written")
    users, tracks = _write_truth(world, acts, out, seed, scale, summary, uri_rows)
    clock.done(f"truth: {users:,} users, {tracks:,} tracks")
    clock.say(
        f"generated {scale} (seed {seed}, audio share {world.mix.share:g}) in "
        f"{time.perf_counter() - clock.start:.1f} s under {out}"
    )
    return summary


def _draw_catalogue_and_users(spec: ScaleSpec, seed: int, share: float, clock: _Clock) -> _World:
    """The track pool and its names, every id, the users' taste and the planted score with
    audio share `share` (no activity yet)."""
    pool = taste.build_pool(
        _rng(seed, POOL), spec.n_tracks, round(spec.known_per_song * spec.n_songs)
    )
    clock.done(f"pool: {pool.n_pool:,} tracks ({pool.n_catalogue:,} in the Spotify file)")
    artist_names, titles, timj_artist, albums = _names(_rng(seed, NAMES), pool)
    clock.done(f"names: {len(artist_names):,} artists, {pool.n_pool:,} titles")
    rng = _rng(seed, IDS)
    track_ids = text.spotify_ids(rng, pool.n_pool)
    artist_ids = text.spotify_ids(rng, len(artist_names))
    album_ids = text.spotify_ids(rng, pool.n_catalogue)
    n_all = spec.n_users + round(LURKER_SHARE * spec.n_users)
    user_chars = text.hex_chars(rng, n_all)
    users = taste.user_taste(_rng(seed, USERS), n_all, _rng(seed, AUDIO))
    return _World(
        spec, pool, artist_names, titles, timj_artist, albums, track_ids, artist_ids,
        album_ids, user_chars, text.fixed_width_strings(user_chars), users,
        taste.mix(BETA, share, users, pool),
    )  # fmt: skip


def _draw_activity(world: _World, seed: int, clock: _Clock) -> _Activity:
    """Jams (with injected duplicates), likes (some of unknown jams) and follows."""
    spec, pool, n_all = world.spec, world.pool, world.n_all
    n_dup = round(DUPLICATE_SHARE * spec.n_jams)
    counts = activity.jams_per_user(_rng(seed, COUNTS), spec.n_users, spec.n_jams - n_dup)
    user, track = activity.draw_jams((seed, JAMS), counts, world.users_taste, pool.taste, world.mix)
    rng = _rng(seed, DAYS)
    day = activity.jam_days(rng, user, np.bincount(user, minlength=spec.n_users))
    jams = activity.add_duplicates(rng, user, track, day, n_dup)
    jam_chars = text.hex_chars(rng, len(jams.user))
    clock.done(f"jams: {len(jams.user):,} picked")

    rng = _rng(seed, LIKES)
    jam_count = np.bincount(jams.user, minlength=n_all)
    liker_w = (jam_count + 1.0) ** 0.8 * np.exp(rng.normal(0, 1, n_all))
    n_unknown = round(timj.UNKNOWN_LIKE_SHARE * spec.n_likes)
    args = (world.users_taste, pool.taste, world.mix)
    liker, liked = activity.draw_likes(
        (seed, LIKES), rng, jams, liker_w, spec.n_likes - n_unknown, *args
    )
    unknown = activity.unknown_likes(rng, liker_w, n_unknown)
    rng = _rng(seed, FOLLOWERS)
    followed_w = (jam_count + 1.0) ** 0.7 * np.exp(rng.normal(0, 1, n_all))
    follower_w = (jam_count + 1.0) ** 0.4 * np.exp(rng.normal(0, 1, n_all))
    followed, follower = activity.draw_followers(rng, followed_w, follower_w, spec.n_followers)
    clock.done(f"likes and followers: {len(liker):,} + {len(followed):,} picked")
    return _Activity(jams, jam_chars, liker, liked, unknown, followed, follower)


def _write_timj(
    world: _World, acts: _Activity, out: Path, seed: int, share: float
) -> tuple[dict, np.ndarray]:
    """``archive/*.tsv``; returns the summary so far and the jam rows with a track URI."""
    rng = _rng(seed, TIMJ)
    jams = acts.jams
    unbreakable = np.zeros(len(jams.user), dtype=bool)
    unbreakable[acts.liked] = True
    dup = jams.copy_of >= 0
    unbreakable[dup] = unbreakable[jams.copy_of[dup]] = True
    n_broken = 0 if share <= 0 else max(3, round(share * len(jams.user)))
    jam_ids = text.fixed_width_strings(acts.jam_chars)
    summary, uri_rows = timj.write_jams(
        out / "archive" / "jams.tsv", rng, jams, jam_ids, world.user_ids, world.timj_artist,
        world.titles, world.track_ids, world.pool.has_uri, n_broken, unbreakable,
        world.pool.n_catalogue,
    )  # fmt: skip
    summary |= timj.write_likes(
        out / "archive" / "likes.tsv", rng, world.user_chars, acts.jam_chars,
        (acts.liker, acts.liked), acts.unknown,
    )  # fmt: skip
    summary |= timj.write_followers(
        out / "archive" / "followers.tsv", world.user_chars, acts.followed, acts.follower
    )
    return summary, uri_rows


def _write_spotify(world: _World, out: Path, seed: int, variants: list[str]) -> dict:
    """The Kaggle variants asked for, from the catalogue part of the pool."""
    pool, n_cat = world.pool, world.pool.n_catalogue
    catalogue = spotify.Catalogue(
        track_id=world.track_ids.head(n_cat), name=world.titles.head(n_cat),
        artists=pool.artists[:n_cat], artist_names=world.artist_names,
        artist_ids=world.artist_ids, album=world.albums, album_id=world.album_ids,
        genre=pool.genre[:n_cat], popularity=pool.popularity[:n_cat],
        features={k: v[:n_cat] for k, v in pool.features.items()},
    )  # fmt: skip
    return spotify.write_variants(out, _rng(seed, SPOTIFY), catalogue, variants)


def _write_truth(
    world: _World,
    acts: _Activity,
    out: Path,
    seed: int,
    scale: str,
    summary: dict,
    uri_rows: np.ndarray,
) -> tuple[int, int]:
    """``truth/``: the planted vectors of every user and track that appear; adds their
    counts to ``summary``; returns them."""
    seen = np.zeros(world.n_all, dtype=bool)
    for who in (acts.jams.user, acts.liker, acts.unknown[0], acts.followed, acts.follower):
        seen[who] = True
    users = np.flatnonzero(seen)
    tracks = np.union1d(np.arange(world.pool.n_catalogue), acts.jams.track[uri_rows])
    summary |= {"users": len(users), "truth_tracks": len(tracks)}
    mix = world.mix
    params = {
        "beta": mix.beta,
        "audio_share": mix.share,
        "audio_width": mix.width,
        "audio_scale": mix.scale,
        "audio_offset": mix.offset,
        "audio_features": list(taste.AUDIO_FEATURES),
        "seed": seed,
        "scale": scale,
        "candidates_per_jam": activity.M_JAMS,
        "candidates_per_like": activity.M_LIKES,
        "counts": summary,
        "description_args": {
            "bias_sd": taste.BIAS_SD,
            "outside": taste.OUTSIDE_BIAS,
            "clusters": taste.N_CLUSTERS,
            "m_jams": activity.M_JAMS,
            "m_likes": activity.M_LIKES,
            "width": mix.width,
        },
    }
    truth.write_truth(
        out / "truth", world.user_ids.gather(users), world.users_taste.vectors[users],
        world.users_taste.points[users], world.track_ids.gather(tracks),
        world.pool.vectors[tracks], world.pool.audio[tracks], world.pool.bias[tracks], params,
    )  # fmt: skip
    return len(users), len(tracks)
