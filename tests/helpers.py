"""Helpers shared by the tests: hand-written dump lines and files, the real TIMJ sample.

Import them as ``from tests.helpers import ...``; fixtures stay in ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "timj" / "jams_sample.tsv"

TRACKS_HEADER = (
    "id,name,popularity,duration_ms,explicit,artists,id_artists,release_date,danceability,energy,"
    "key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,valence,tempo,"
    "time_signature"
)


def hex_id(i: int) -> str:
    """A valid 32-hex TIMJ id for a small integer."""
    return f"{i:032x}"


def track_id(i: int) -> str:
    """A valid 22-character Spotify track id for a small integer."""
    return f"T{i:021d}"


def jam_line(
    jam: int, user: int, track: int | None, artist="Artist", title="Title", date="2013-05-01"
):
    """One jams.tsv line (no newline)."""
    uri = f"spotify:track:{track_id(track)}" if track is not None else ""
    link = "http://www.youtube.com/watch?v=abcdefghijk"
    return "\t".join([hex_id(jam), hex_id(user), artist, title, date, link, uri])


def track_line(track: int, danceability: float = 0.5) -> str:
    """One tracks.csv line for a track with plausible features."""
    return (
        f"{track_id(track)},Song {track},{track % 100},200000,0,\"['Artist {track}', 'B']\","
        f"['{track_id(track)}'],2001-02-03,{danceability},0.6,5,-7.5,1,0.05,0.2,0.0,0.1,0.6,"
        "120.0,4"
    )


def write_dump(
    root: Path,
    jams: list[str] | None = None,
    likes: list[str] | None = None,
    followers: list[str] | None = None,
    tracks: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write a hand-made dump (TIMJ folder + tracks.csv); returns (timj, spotify) paths.

    By default: 6 users, 12 jams over 8 tracks, a few likes and follows, 10 tracks.
    """
    archive = root / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    if jams is None:
        jams = [jam_line(j, j % 6, j % 8) for j in range(12)]
    if likes is None:
        likes = [f"{hex_id(u)}\t{hex_id(j)}" for u, j in [(1, 0), (2, 0), (3, 5), (4, 7), (5, 9)]]
    if followers is None:
        followers = [f"{hex_id(1)}\t{hex_id(2)}", f"{hex_id(2)}\t{hex_id(3)}"]
    if tracks is None:
        tracks = [track_line(t) for t in range(10)]
    (archive / "jams.tsv").write_text(
        "jam_id\tuser_id\tartist\ttitle\tcreation_date\tlink\tspotify_uri\n"
        + "".join(line + "\n" for line in jams)
    )
    (archive / "likes.tsv").write_text("user_id\tjam_id\n" + "".join(x + "\n" for x in likes))
    (archive / "followers.tsv").write_text(
        "followed_user_id\tfollower_user_id\n" + "".join(x + "\n" for x in followers)
    )
    spotify = root / "tracks.csv"
    spotify.write_text(TRACKS_HEADER + "\n" + "".join(x + "\n" for x in tracks))
    return root, spotify
