"""Text building blocks for the generator: ids, mojibake, number text, and file writers.

Everything here works on whole columns (numpy arrays, polars Series) so that millions of
rows never pass through a Python loop; only the small sets of distinct non-ASCII names
and artist names do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from jamrec.textfix import damage_text

BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
YOUTUBE = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_", np.uint8
)
BASE36 = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", np.uint8)


def fixed_width_strings(chars: np.ndarray) -> pl.Series:
    """Turn an (n, w) uint8 array of ASCII codes into a String Series of n width-w strings.

    Zero-copy into Arrow: the rows are already contiguous, only offsets are built.
    """
    chars = np.ascontiguousarray(chars, dtype=np.uint8)
    n, w = chars.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))
    return pl.Series(pl.from_arrow(arr)).cast(pl.String)


def random_strings(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray) -> pl.Series:
    """n random strings of `width` characters drawn uniformly from `alphabet` (uint8 codes)."""
    return fixed_width_strings(
        alphabet[rng.integers(0, len(alphabet), size=(n, width), dtype=np.uint8)]
    )


def assemble(
    kind: np.ndarray, builders: Sequence[Callable[[np.ndarray], pl.Series] | None]
) -> pl.Series:
    """A String Series where row i comes from ``builders[kind[i]]`` (None: null).

    Each builder is called once, in order, with the (m,) row indices of its kind and
    returns m strings, so every variant is built only for the rows that use it.
    """
    parts, rows = [], []
    for k, build in enumerate(builders):
        ix = np.flatnonzero(kind == k)
        if build is not None and len(ix):
            parts.append(build(ix).cast(pl.String))
            rows.append(ix)
    values = pl.concat([*parts, pl.Series([None], dtype=pl.String)])
    where = np.full(len(kind), len(values) - 1, dtype=np.int64)  # the trailing null
    if rows:
        where[np.concatenate(rows)] = np.arange(len(values) - 1)
    return values.gather(where)


def hex_chars(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 32) uint8: n TIMJ-style ids, 32 lowercase hex characters (128 random bits)."""
    raw = np.frombuffer(rng.bytes(16 * n), np.uint8).reshape(n, 16)
    return np.stack([HEX[raw >> 4], HEX[raw & 15]], axis=2).reshape(n, 32)


def hex_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """n TIMJ-style ids as a String Series (see :func:`hex_chars`)."""
    return fixed_width_strings(hex_chars(rng, n))


def spotify_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """n Spotify-style ids: 22 characters of [0-9A-Za-z]; a 128-bit number in base 62, so
    the first character is 0-7 like in the real ids."""
    chars = BASE62[rng.integers(0, 62, size=(n, 22), dtype=np.uint8)]
    chars[:, 0] = BASE62[rng.integers(0, 8, size=n, dtype=np.uint8)]
    return fixed_width_strings(chars)


def youtube_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """n YouTube video ids: 11 characters of [0-9A-Za-z_-]; 64 bits, so the last one is
    one of 16 characters like in the real ids."""
    chars = YOUTUBE[rng.integers(0, 64, size=(n, 11), dtype=np.uint8)]
    chars[:, 10] = YOUTUBE[rng.integers(0, 16, size=n, dtype=np.uint8) * 4]
    return fixed_width_strings(chars)


def damage_non_ascii(values: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """Damage every non-ASCII value of a String Series; return it and the (n,) bool mask.

    Only the non-ASCII values (a few percent) go through Python.
    """
    mask = values.str.contains(r"[^\x00-\x7F]").fill_null(False).to_numpy()
    idx = np.flatnonzero(mask)
    if len(idx):
        fixed = [damage_text(s) for s in values.gather(idx).to_list()]
        # Series.scatter writes in place: damage a copy, the caller keeps the clean text.
        values = values.clone().scatter(idx, pl.Series(fixed, dtype=pl.String))
    return values, mask


def float_text(x: np.ndarray) -> pl.Series:
    """Python ``repr`` of every float64 value (what pandas ``to_csv`` writes), as a Series.

    Polars already prints the shortest round-trip digits; it differs from ``repr`` only
    below 1e-4 ("0.0000112" for "1.12e-05"), so those few values take the Python path.
    """
    x = np.asarray(x, dtype=np.float64)
    out = pl.Series(x).cast(pl.String)
    small = np.flatnonzero((np.abs(x) < 1e-4) & (x != 0))
    if len(small):
        out = out.scatter(small, pl.Series([repr(float(v)) for v in x[small]], dtype=pl.String))
    return out


def round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    """Round each value to `digits` significant digits (0 stays 0), like the Kaggle files."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.floor(np.log10(np.abs(np.where(x == 0, 1.0, x)))).astype(np.int64)
    out = x.copy()
    for m in np.unique(mag):
        sel = mag == m
        out[sel] = np.round(x[sel], int(digits - 1 - m))
    return out


def slug(values: pl.Series, fallback: str) -> pl.Series:
    """URL slugs ("The Big Moon" -> "the-big-moon"); `fallback` where nothing ASCII is left."""
    s = values.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-").str.strip_chars("-")
    return pl.select(pl.when(s == "").then(pl.lit(fallback)).otherwise(s)).to_series()


def write_tsv(path: Path, header: str, lines: pl.Series) -> None:
    """Write a TIMJ file: `header`, then each value of `lines` verbatim, LF after each.

    No quoting at all (a ``"`` is a literal character); a value holding a newline or a
    tab is written as it is, which is how broken lines get into the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header.encode() + b"\n")
        pl.DataFrame({"line": lines}).write_csv(fh, include_header=False, quote_style="never")


def write_pairs(path: Path, header: str, left: np.ndarray, right: np.ndarray) -> None:
    """Write a two-column TIMJ file from (n, w) uint8 character rows, tab between, LF after.

    Byte arrays, not strings: likes.tsv has millions of fixed-width lines.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tab, lf = (
        np.full((len(left), 1), ord("\t"), np.uint8),
        np.full((len(left), 1), ord("\n"), np.uint8),
    )
    with open(path, "wb") as fh:
        fh.write(header.encode() + b"\n")
        for lo in range(0, len(left), 1 << 20):
            hi = lo + (1 << 20)
            fh.write(
                np.concatenate([left[lo:hi], tab[lo:hi], right[lo:hi], lf[lo:hi]], axis=1).tobytes()
            )


def write_csv(path: Path, header: str, frame: pl.DataFrame) -> None:
    """Write a Kaggle-style CSV like pandas ``to_csv(index=False)``: minimal quoting.

    `header` is written verbatim (two variants start with an unnamed index column);
    fields holding a comma, a quote or a newline are quoted, inner quotes doubled.
    Callers pass floats already as text (:func:`float_text`) so digits are pandas'.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header.encode() + b"\n")
        frame.write_csv(fh, include_header=False, quote_style="necessary")
