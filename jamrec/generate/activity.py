"""Who jammed, liked and followed what, as integer arrays (no text yet).

Users are indexed 0..n_users-1 (those with jams come first, then "lurkers" who only
like or follow); tracks by pool index (``taste.Pool``); jams by row number in the order
they will be written (sorted by creation day).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jamrec.generate.choice import WeightedSampler, by_cluster, first_occurrence
from jamrec.generate.taste import Mix, TrackTaste, UserTaste

N_DAYS = 1493  # 2011-08-26 .. 2015-09-26, both included
M_JAMS = 48  # candidates per pick: enough for the pick to follow exp(planted score)
M_LIKES = 32
SOFT_CAP = 900  # jams per user stay in the hundreds
ROUNDS = 12  # redraws of repeated picks (user-track, liker-jam) before the rest are dropped


@dataclass
class Jams:
    """(n_jams,) arrays: creator user, pool track, day since 2011-08-26; ``copy_of`` is the
    row of the original for injected duplicates and -1 otherwise."""

    user: np.ndarray
    track: np.ndarray
    day: np.ndarray
    copy_of: np.ndarray


def jams_per_user(rng: np.random.Generator, n_users: int, n_jams: int) -> np.ndarray:
    """(n_users,) int64 counts >= 1: ~44% exactly one, median 2, max in the hundreds,
    summing to about `n_jams`."""
    x = np.exp(rng.normal(np.log(2.5), 1.7, n_users))
    extra = np.floor(SOFT_CAP * (1 - np.exp(-np.maximum(x - 1, 0) / SOFT_CAP)))
    # Rescale the counts above one (the ones stay ones) so the total lands near n_jams.
    scale = max(n_jams - n_users, 0) / max(extra.sum(), 1)
    extra = np.floor(extra * scale + rng.random(n_users) * (extra > 0))
    return 1 + np.minimum(extra, SOFT_CAP - 1).astype(np.int64)


def draw_jams(
    key: tuple[int, ...],
    counts: np.ndarray,
    users: UserTaste,
    tracks: TrackTaste,
    mix: Mix,
) -> tuple[np.ndarray, np.ndarray]:
    """Creator and pool track per jam, for `counts` (n_users,) jams per user; `tracks`
    are the pool's planted preferences, `mix` the planted score. A user never jams the
    same track twice here (repeats are redrawn, the few left after ROUNDS rounds
    dropped)."""
    user = np.repeat(np.arange(len(counts)), counts)
    track = np.full(len(user), -1)
    n_tracks = len(tracks.bias)
    for events, pick in by_cluster(user, users, tracks, mix, M_JAMS):
        track[events] = pick((*key, 0), events)
        for r in range(1, ROUNDS + 1):
            again = events[~first_occurrence(user[events] * n_tracks + track[events])]
            if not len(again):
                break
            track[again] = -1 if r == ROUNDS else pick((*key, r), again)
    keep = track >= 0
    return user[keep], track[keep]


def jam_days(rng: np.random.Generator, user: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n,) day numbers: each user is active over a window whose length grows with activity."""
    n_users = len(counts)
    span = np.clip(60 * np.sqrt(counts) * np.exp(rng.normal(0, 0.8, n_users)), 1, N_DAYS)
    start = rng.random(n_users) * (N_DAYS - span)
    return (start[user] + rng.random(len(user)) * span[user]).astype(np.int64)


def add_duplicates(
    rng: np.random.Generator, user: np.ndarray, track: np.ndarray, day: np.ndarray, n_dup: int
) -> Jams:
    """Append `n_dup` copies of random jams (same user and track, mostly the same day),
    then order all rows by day (ties in random order)."""
    orig = rng.choice(len(user), size=min(n_dup, len(user)), replace=False)
    shift = np.where(rng.random(len(orig)) < 0.75, 0, rng.integers(1, 7, len(orig)))
    day = np.concatenate([day, np.minimum(day[orig] + shift, N_DAYS - 1)])
    copy_of = np.concatenate([np.full(len(user), -1), orig])
    user, track = np.concatenate([user, user[orig]]), np.concatenate([track, track[orig]])
    order = np.lexsort((rng.random(len(day)), day))
    row_of = np.empty(len(order), dtype=np.int64)
    row_of[order] = np.arange(len(order))
    copy_of = copy_of[order]
    copy_of[copy_of >= 0] = row_of[copy_of[copy_of >= 0]]
    return Jams(user=user[order], track=track[order], day=day[order], copy_of=copy_of)


def draw_likes(
    key: tuple[int, ...],
    rng: np.random.Generator,
    jams: Jams,
    liker_weight: np.ndarray,
    n_likes: int,
    users: UserTaste,
    tracks: TrackTaste,
    mix: Mix,
) -> tuple[np.ndarray, np.ndarray]:
    """(liker, jam row) pairs, unique, never a user's own jam.

    A like picks a song the way a jam does (popularity-weighted candidates among the
    jammed songs, Gumbel-max over the liker's taste), then one of that song's jams.
    """
    songs, n_jams_of = np.unique(jams.track, return_counts=True)
    by_song = np.argsort(jams.track, kind="stable")
    start = np.concatenate([[0], np.cumsum(n_jams_of)[:-1]])
    liker = np.repeat(
        np.arange(len(liker_weight)), rng.multinomial(n_likes, liker_weight / liker_weight.sum())
    )
    liker = liker[rng.permutation(len(liker))]
    jam = np.full(len(liker), -1)
    n_rows = len(jams.user)
    for events, pick in by_cluster(liker, users, tracks.subset(songs), mix, M_LIKES):
        for r in range(ROUNDS):
            todo = events[jam[events] < 0]
            if not len(todo):
                break
            song = pick((*key, r), todo)
            pos = (rng.random(len(todo)) * n_jams_of[song]).astype(np.int64)
            chosen = by_song[start[song] + pos]
            # The liker's own jam: take another jam of the same song, if there is one.
            shift = 1 + (rng.random(len(todo)) * (n_jams_of[song] - 1)).astype(np.int64)
            other = by_song[start[song] + (pos + shift) % n_jams_of[song]]
            chosen = np.where(jams.user[chosen] == liker[todo], other, chosen)
            chosen[jams.user[chosen] == liker[todo]] = -1
            jam[todo] = chosen
            # Unique (liker, jam) pairs: later repeats go back into the next round.
            keys = np.where(jam[events] >= 0, liker[events] * n_rows + jam[events], -1 - events)
            jam[events[(jam[events] >= 0) & ~first_occurrence(keys)]] = -1
    keep = jam >= 0
    return liker[keep], jam[keep]


def unknown_likes(
    rng: np.random.Generator, liker_weight: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Likes of jams that are not in jams.tsv: (liker, target) unique pairs, about `n`,
    and the number of targets (each liked about three times, a few far more)."""
    n_targets = max(1, n // 3)
    liker = WeightedSampler(liker_weight).draw(rng, (n,))
    target = (n_targets * rng.random(n) ** 2).astype(np.int64)
    once = first_occurrence(liker * n_targets + target)
    return liker[once], target[once], n_targets


def draw_followers(
    rng: np.random.Generator, followed_w: np.ndarray, follower_w: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """`n` unique (followed, follower) pairs of distinct users, both ends heavy-tailed."""
    a_s, b_s = WeightedSampler(followed_w), WeightedSampler(follower_w)
    a, b = np.empty(0, np.int64), np.empty(0, np.int64)
    for _ in range(10):
        k = int(1.3 * (n - len(a))) + 16
        a, b = np.concatenate([a, a_s.draw(rng, (k,))]), np.concatenate([b, b_s.draw(rng, (k,))])
        ok = (a != b) & first_occurrence(a * len(followed_w) + b)
        a, b = a[ok], b[ok]
        if len(a) >= n:
            break
    return a[:n], b[:n]
