"""Write the TIMJ dump (``archive/jams.tsv``, ``likes.tsv``, ``followers.tsv``) with the
real files' quirks: mojibake, literal quotes, empty and non-track URIs, malformed links,
duplicate jams, likes of unknown jams and a few broken lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from jamrec.generate import text, vocab
from jamrec.generate.activity import Jams

JAMS_HEADER = "jam_id\tuser_id\tartist\ttitle\tcreation_date\tlink\tspotify_uri"
LIKES_HEADER = "user_id\tjam_id"
FOLLOWERS_HEADER = "followed_user_id\tfollower_user_id"
FIRST_DAY = np.datetime64("2011-08-26")
NON_TRACK_URI_SHARE = 0.003
UNKNOWN_LIKE_SHARE = 0.005
BROKEN_KINDS = ("embedded tab", "truncated", "embedded newline")
# (kind, share of links) as in the real sample: mostly YouTube, 0.4% empty, 0.3% "http:///".
LINK_SHARE = {
    "youtube": 62.8,
    "soundcloud": 13.4,
    "vimeo": 12.2,
    "hypem": 7.6,
    "bandcamp": 1.0,
    "yeyo": 0.5,
    "bare": 0.7,
    "site": 0.3,
    "malformed": 0.3,
    "empty": 0.4,
}


def links(rng: np.random.Generator, artist_slug: pl.Series, title_slug: pl.Series) -> pl.Series:
    """(n,) link per jam; slugs (n,) are URL-safe forms of the jam's artist and title."""
    share = np.array(list(LINK_SHARE.values()))
    kind = rng.choice(len(share), size=len(artist_slug), p=share / share.sum())

    def chars(m: int, width: int, alphabet: np.ndarray, shortest: int | None = None) -> pl.Series:
        s = text.random_strings(rng, m, width, alphabet)
        return (
            s
            if shortest is None
            else s.str.slice(0, pl.Series(rng.integers(shortest, width + 1, m)))
        )

    def number(m: int) -> pl.Series:
        return pl.Series(rng.integers(1_000_000, 140_000_000, m)).cast(pl.String)

    def youtube(ix: np.ndarray) -> pl.Series:
        return "http://www.youtube.com/watch?v=" + text.youtube_ids(rng, len(ix))

    def bandcamp(ix: np.ndarray) -> pl.Series:
        https = pl.Series(np.where(rng.random(len(ix)) < 0.6, "https://", "http://"))
        host = artist_slug.gather(ix).str.replace_all("-", "")
        return https + host + ".bandcamp.com/track/" + title_slug.gather(ix)

    def malformed(ix: np.ndarray) -> pl.Series:
        # "http:///" links: mostly Dropbox files, some YouTube.
        mp3 = title_slug.gather(ix).str.replace_all("-", "%20") + ".mp3"
        dropbox = "http:///dl.dropboxusercontent.com/u/" + number(len(ix)) + "/" + mp3
        tube = "http:///www.youtube.com/watch?v=" + text.youtube_ids(rng, len(ix))
        return pl.select(
            pl.when(pl.lit(rng.random(len(ix)) < 0.7)).then(dropbox).otherwise(tube)
        ).to_series()

    builders = {
        "youtube": youtube,
        "soundcloud": lambda ix: (
            "http://soundcloud.com/" + artist_slug.gather(ix) + "/" + title_slug.gather(ix)
        ),
        "vimeo": lambda ix: "http://vimeo.com/" + number(len(ix)),
        "hypem": lambda ix: "http://hypem.com/item/" + chars(len(ix), 5, text.BASE36, shortest=4),
        "bandcamp": bandcamp,
        "yeyo": lambda ix: (
            "http://www.yeyo.me/tracks/" + chars(len(ix), 6, text.BASE62, shortest=4)
        ),
        "bare": lambda ix: pl.Series(vocab.BARE_SITES).gather(
            rng.integers(0, len(vocab.BARE_SITES), len(ix))
        ),
        "site": lambda ix: (
            "http://"
            + artist_slug.gather(ix).str.replace_all("-", "")
            + ".com/track/"
            + title_slug.gather(ix)
        ),
        "malformed": malformed,
        "empty": None,
    }
    return text.assemble(kind, [builders[k] for k in LINK_SHARE])


def uris(
    rng: np.random.Generator,
    track_id: pl.Series,
    has_uri: np.ndarray,
    artist_slug: pl.Series,
    title_slug: pl.Series,
) -> tuple[pl.Series, np.ndarray]:
    """(n,) spotify_uri per jam (null where the song has none) and the (n,) mask of the
    ~0.3% of URI jams given a non-track URI (album, local file, wrong-length id)."""
    n = len(track_id)
    odd = has_uri & (rng.random(n) < NON_TRACK_URI_SHARE)
    kind = np.where(has_uri, 0, 4)
    kind[odd] = 1 + rng.choice(3, size=int(odd.sum()), p=[0.4, 0.3, 0.3])

    def local(ix: np.ndarray) -> pl.Series:
        seconds = pl.Series(rng.integers(90, 420, len(ix))).cast(pl.String)
        artist, title = artist_slug.gather(ix), title_slug.gather(ix)
        return (
            "spotify:local:"
            + artist.str.replace_all("-", "+")
            + "::"
            + title.str.replace_all("-", "+")
            + ":"
            + seconds
        )

    def wrong_length(ix: np.ndarray) -> pl.Series:
        width = pl.Series(np.where(rng.random(len(ix)) < 0.5, 21, 23))
        return "spotify:track:" + text.random_strings(rng, len(ix), 23, text.BASE62).str.slice(
            0, width
        )

    builders = [
        lambda ix: "spotify:track:" + track_id.gather(ix),
        lambda ix: "spotify:album:" + text.spotify_ids(rng, len(ix)),
        local,
        wrong_length,
        None,
    ]
    return text.assemble(kind, builders), odd


def _break(line: str, kind: str, rng: np.random.Generator) -> str:
    fields = line.split("\t")
    cut = 1 + int(rng.integers(0, max(len(fields[3]) - 1, 1)))
    if kind == "embedded tab":
        fields[3] = fields[3][:cut] + "\t" + fields[3][cut:]
    elif kind == "embedded newline":
        fields[3] = fields[3][:cut] + "\n" + fields[3][cut:]
    else:
        keep = int(rng.integers(2, 7))
        fields = fields[:keep]
        fields[-1] = fields[-1][: max(1, len(fields[-1]) // 2)]
    return "\t".join(fields)


def write_jams(
    path: Path,
    rng: np.random.Generator,
    jams: Jams,
    jam_ids: pl.Series,
    user_ids: pl.Series,
    song_artist: pl.Series,
    song_title: pl.Series,
    track_ids: pl.Series,
    has_uri: np.ndarray,
    n_broken: int,
    unbreakable: np.ndarray,
    n_catalogue: int,
) -> tuple[dict, np.ndarray]:
    """Write jams.tsv; artist/title/track_ids (n_pool,) are per pool track, undamaged.

    Rows in `unbreakable` (bool, n_jams) are never broken (liked jams, duplicates).
    Returns counts of what was written and the (n_jams,) mask of rows whose URI is a
    valid track URI (their track ids are in the dump, broken lines included).
    """
    artist_slug = text.slug(song_artist, "artist").gather(jams.track)
    title_slug = text.slug(song_title, "track").gather(jams.track)
    damaged_artist, bad_a = text.damage_non_ascii(song_artist)
    damaged_title, bad_t = text.damage_non_ascii(song_title)
    uri, odd = uris(rng, track_ids.gather(jams.track), has_uri[jams.track], artist_slug, title_slug)
    copy = np.flatnonzero(jams.copy_of >= 0)  # a duplicate jam repeats its original's URI
    uri = uri.scatter(copy, uri.gather(jams.copy_of[copy]))
    odd[copy] = odd[jams.copy_of[copy]]
    dates = pl.Series((FIRST_DAY + jams.day).astype("datetime64[D]")).dt.to_string("%Y-%m-%d")
    fields = [
        jam_ids,
        user_ids.gather(jams.user),
        damaged_artist.gather(jams.track),
        damaged_title.gather(jams.track),
        dates,
        links(rng, artist_slug, title_slug),
        uri,
    ]
    lines = pl.select(
        pl.concat_str([pl.lit(f).fill_null("") for f in fields], separator="\t")
    ).to_series()
    candidates = np.flatnonzero(~unbreakable)
    broken = np.sort(rng.choice(candidates, size=min(n_broken, len(candidates)), replace=False))
    kinds = [BROKEN_KINDS[i % 3] for i in range(len(broken))]
    if len(broken):
        new = [_break(s, k, rng) for s, k in zip(lines.gather(broken).to_list(), kinds)]
        lines = lines.scatter(broken, pl.Series(new, dtype=pl.String))
    text.write_tsv(path, JAMS_HEADER, lines)

    ok = np.ones(len(lines), dtype=bool)
    ok[broken] = False
    mojibake = (bad_a | bad_t)[jams.track]
    with_uri = has_uri[jams.track]
    counts = {
        "jams": int(ok.sum()),
        "jams_lines": int(ok.sum() + len(broken) + kinds.count("embedded newline")),
        "broken_jams": len(broken),
        "broken_lines": len(broken) + kinds.count("embedded newline"),
        **{f"broken_{k.replace(' ', '_')}": kinds.count(k) for k in BROKEN_KINDS},
        "duplicate_jams": int((ok & (jams.copy_of >= 0)).sum()),
        "jams_with_uri": int((ok & with_uri).sum()),
        "jams_with_track_uri": int((ok & with_uri & ~odd).sum()),
        "non_track_uris": int((ok & odd).sum()),
        "mojibake_rows": int((ok & mojibake).sum()),
        "jams_with_track_in_spotify": int(
            (ok & with_uri & ~odd & (jams.track < n_catalogue)).sum()
        ),
        "songs": len(np.unique(jams.track)),
    }
    return counts, with_uri & ~odd


def write_likes(
    path: Path,
    rng: np.random.Generator,
    user_chars: np.ndarray,
    jam_chars: np.ndarray,
    likes: tuple[np.ndarray, np.ndarray],
    unknown: tuple[np.ndarray, np.ndarray, int],
) -> dict:
    """Write likes.tsv in random order: `likes` (liker, jam row) pairs, and `unknown`
    (liker, target, n_targets) likes of jams missing from jams.tsv, whose ids are drawn
    here and never written there. `user_chars`/`jam_chars` (n, 32) are the ids."""
    (liker, liked), (unknown_liker, target, n_targets) = likes, unknown
    unknown_jam = text.hex_chars(rng, n_targets)
    users = np.concatenate([user_chars[liker], user_chars[unknown_liker]])
    liked_jams = np.concatenate([jam_chars[liked], unknown_jam[target]])
    order = rng.permutation(len(users))
    text.write_pairs(path, LIKES_HEADER, users[order], liked_jams[order])
    return {"likes": len(users), "likes_of_unknown_jams": len(unknown_liker)}


def write_followers(
    path: Path, user_chars: np.ndarray, followed: np.ndarray, follower: np.ndarray
) -> dict:
    """Write followers.tsv (followed_user_id, follower_user_id); users index `user_chars`."""
    text.write_pairs(path, FOLLOWERS_HEADER, user_chars[followed], user_chars[follower])
    return {"followers": len(followed)}
