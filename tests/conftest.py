"""Shared fixtures: isolated settings, hand-written dumps, a tiny generated warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jamrec.config import get_settings

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "timj" / "jams_sample.tsv"

TRACKS_HEADER = (
    "id,name,popularity,duration_ms,explicit,artists,id_artists,release_date,danceability,energy,"
    "key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,valence,tempo,"
    "time_signature"
)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Every test gets its own default warehouse path; settings are re-read."""
    monkeypatch.setenv("JAMREC_WAREHOUSE", str(tmp_path_factory.mktemp("wh") / "jamrec.duckdb"))
    monkeypatch.setenv("JAMREC_LOCK_TIMEOUT_S", "5")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


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


@pytest.fixture
def dump(tmp_path):
    """A small valid hand-made dump: (timj folder, tracks.csv)."""
    return write_dump(tmp_path / "dump")


def pytest_configure(config):
    # Prefect: never phone home, and give its temporary server time on slow machines.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")


@pytest.fixture(scope="session")
def tiny_dump(tmp_path_factory) -> Path:
    """A tiny generated dump (seed 0) with all five Spotify variants."""
    from jamrec.generate import generate
    from jamrec.spotify import VARIANTS

    out = tmp_path_factory.mktemp("tiny") / "dump"
    generate(out, scale="tiny", seed=0, spotify_variants=[v.name for v in VARIANTS])
    return out


@pytest.fixture(scope="session")
def tiny_warehouse(tiny_dump, tmp_path_factory) -> Path:
    """A warehouse built from :func:`tiny_dump` (read it, never write it)."""
    from jamrec.etl import run_build

    path = tmp_path_factory.mktemp("tiny_wh") / "jamrec.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    return path


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory) -> Path:
    """A warehouse built from a `small` generated dump (the demo's size); read-only use."""
    from jamrec.etl import run_build
    from jamrec.generate import generate

    root = tmp_path_factory.mktemp("small")
    generate(root / "dump", scale="small", seed=0)
    path = root / "wh" / "jamrec.duckdb"
    run_build(root / "dump", root / "dump" / "tracks.csv", path)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server for flow tests (one per test session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
