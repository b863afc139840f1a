"""Read the raw input files, byte-exact, into Arrow tables of numbered lines.

Nothing is parsed here beyond what is needed to number lines and check that a file is
usable at all (present, not empty, UTF-8, the expected header). Field splitting, typing
and every per-line judgement happen in SQL (``sql/stg_*.sql``), so that each raw line
ends up either in a table or in ``rejects`` with its line number and reason.

Line numbers are 1-based and count the header, so the first data line is line 2.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from jamrec.errors import InputError
from jamrec.files import os_error_cause

TIMJ_HEADERS: dict[str, tuple[str, ...]] = {
    "jams.tsv": (
        "jam_id",
        "user_id",
        "artist",
        "title",
        "creation_date",
        "link",
        "spotify_uri",
    ),
    "likes.tsv": ("user_id", "jam_id"),
    "followers.tsv": ("followed_user_id", "follower_user_id"),
}

_BOM = b"\xef\xbb\xbf"
# A file where more than this share of lines is not UTF-8 is the wrong encoding, not a
# few damaged lines: it gets one clear error instead of millions of rejects.
_MAX_INVALID_UTF8_SHARE = 0.01


@dataclass(frozen=True)
class Source:
    """One input file: where it is (a path, or a member of a zip) and its name in the dump."""

    name: str
    path: Path
    member: str | None = None

    @property
    def display(self) -> str:
        """How the file is named in messages: ``dump.zip:archive/jams.tsv`` or the path."""
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def read_bytes(self) -> bytes:
        """The file's content; a missing file is an :class:`InputError`."""
        try:
            if self.member is None:
                return self.path.read_bytes()
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(self.member)
        except FileNotFoundError:
            raise InputError(self.display, "file not found") from None
        except (zipfile.BadZipFile, KeyError, zlib.error, EOFError) as exc:
            raise InputError(self.display, f"the zip is damaged: {exc}") from None
        except IsADirectoryError:
            raise InputError(self.display, "is a directory, expected a file") from None
        except OSError as exc:
            raise InputError(self.display, os_error_cause(exc)) from None


@dataclass
class RawLines:
    """A file cut into numbered lines, plus what was noticed about the file as a whole.

    ``table`` has columns ``line_number`` (int64, 1-based, header = 1) and ``raw_line``
    (binary: the line's bytes without its line terminator); the header is not in it.
    """

    source: Source
    header: str
    table: pa.Table
    sha256: str
    size: int
    n_lines: int
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> dict:
        """What ``builds.inputs`` records for this file."""
        return {"file": self.source.display, "bytes": self.size, "sha256": self.sha256}


_CHUNK = 1 << 24  # 16 MiB


def _newlines(data: bytes) -> np.ndarray:
    """The offsets of every LF in ``data`` (int64, ascending). In 16 MiB chunks: one
    comparison over a whole 400 MB file allocates a 400 MB mask, and faulting its pages
    in costs three times the comparison itself; a chunk's mask is reused memory."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    parts = [
        np.flatnonzero(buffer[start : start + _CHUNK] == 0x0A) + start
        for start in range(0, len(buffer), _CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def split_lines(source: Source, data: bytes) -> RawLines:
    """Cut ``data`` into numbered lines; check it is non-empty UTF-8 with a header line.

    Tolerates (and notes) a UTF-8 byte-order mark and CRLF line endings: both are
    stripped, so a file saved by a Windows tool loads the same as the original.
    A line that is not valid UTF-8 is kept as bytes; SQL rejects it. Raises
    :class:`InputError` when the file is empty or mostly not UTF-8.
    """
    digest = hashlib.sha256(data).hexdigest()
    size = len(data)
    notes: list[str] = []
    start = 0
    if data.startswith(_BOM):
        start = len(_BOM)
        notes.append("starts with a UTF-8 byte-order mark (ignored)")
    if size - start == 0 or not data[start:].strip():
        raise InputError(source.display, "file is empty (expected at least a header line)")

    if start:
        data = data[start:]
    if b"\r" in data:
        n_crlf = data.count(b"\r\n")
        if n_crlf:
            # CR before LF belongs to the terminator (CRLF files), not to the last field.
            notes.append(f"{n_crlf:,} lines end in CRLF (the carriage returns are ignored)")
            data = data.replace(b"\r\n", b"\n")
    newlines = _newlines(data)
    if not data.endswith(b"\n"):
        newlines = np.concatenate([newlines, [len(data)]])
    # With every LF removed the lines sit back to back: line i starts where the i-th
    # newline was, minus the i newlines before it.
    compact = data.replace(b"\n", b"")
    offsets = np.zeros(len(newlines) + 1, dtype=np.int64)
    offsets[1:] = newlines - np.arange(len(newlines))

    try:
        header = compact[: offsets[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            source.display, "is not UTF-8 (the header line cannot be decoded)", 1
        ) from None

    n = len(offsets) - 2
    body = pa.py_buffer(compact)
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets[1:]), body]
    )
    table = pa.table(
        {"line_number": pa.array(np.arange(2, n + 2, dtype=np.int64)), "raw_line": lines}
    )
    return RawLines(source, header, table, digest, size, n + 1, notes)


def check_utf8_share(raw: RawLines, n_invalid: int, first_invalid: int | None) -> None:
    """Fail the file when too many of its lines are not UTF-8 (a wrong encoding).

    A handful of damaged lines go to ``rejects``; a latin-1 file would reject every
    line with accents and is better refused as a whole.
    """
    n_data = raw.n_lines - 1
    if n_invalid and n_invalid > max(10, _MAX_INVALID_UTF8_SHARE * n_data):
        raise InputError(
            raw.source.display,
            f"is not UTF-8: {n_invalid:,} of {n_data:,} lines hold bytes that are not valid "
            f"UTF-8 (first on line {first_invalid}); re-encode the file as UTF-8",
        )


def check_header(raw: RawLines, expected: tuple[str, ...], sep: str = "\t") -> None:
    """Fail unless the header line is exactly ``expected`` joined by ``sep``."""
    found = raw.header.split(sep)
    if tuple(found) != expected:
        shown = raw.header if len(raw.header) <= 120 else raw.header[:117] + "..."
        raise InputError(
            raw.source.display,
            f"header is not the expected one: expected {sep.join(expected)!r}, found {shown!r}",
            1,
        )


def locate_timj(path: Path) -> dict[str, Source]:
    """Find ``jams.tsv``, ``likes.tsv`` and ``followers.tsv`` in a dump folder or zip.

    ``path`` may be the zip itself, the folder holding ``archive/``, or ``archive/``.
    All three files are required (likes and followers may hold only their header).
    """
    path = Path(path)
    check_input_path(path, "--timj")
    if not path.exists():
        raise InputError(path, "not found (expected the TIMJ dump folder or its zip)")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InputError(path, "is neither a folder nor a zip file")
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if not m.endswith("/")]
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise InputError(path, f"the zip is damaged: {exc}") from None
        found = {}
        for name in TIMJ_HEADERS:
            matches = sorted(m for m in members if m == name or m.endswith("/" + name))
            if not matches:
                raise InputError(
                    path, f"the zip holds no {name} (required; it may hold only its header)"
                )
            found[name] = Source(name, path, min(matches, key=len))
        return found
    folder = path / "archive" if (path / "archive").is_dir() else path
    sources = {name: Source(name, folder / name) for name in TIMJ_HEADERS}
    for source in sources.values():
        if not source.path.is_file():
            raise InputError(source.path, "file not found (required; it may hold only its header)")
    return sources


def check_input_path(path: Path, option: str) -> None:
    """Fail with one line when ``path`` exists but cannot be read as a file or folder: a
    symlink loop, a permission problem, ... (a missing path is reported where it is
    needed, with what was expected there)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(path, f"cannot be read as {option}: {os_error_cause(exc)}") from None


def locate_truth(path: Path) -> Path | None:
    """The ``truth/`` folder beside a generated dump, or None for real data."""
    path = Path(path)
    base = path.parent if path.is_file() or path.name == "archive" else path
    truth = base / "truth"
    return truth if truth.is_dir() else None
