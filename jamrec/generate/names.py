"""Synthetic artist names, track titles and album names that look like the real TIMJ rows.

ASCII names are assembled column-wise with polars from the word lists in ``vocab.py``
(templates such as "First Last", "The Nouns", coined words, 'Bobby "Blue" Bland',
"Emerson, Lake & Palmer"). Artists in another script (about 5%: accented Latin, Korean,
Japanese, Chinese, Cyrillic, Greek-styled, mixed) are built one by one in Python; there
are few of them. All functions are deterministic given the generator passed in.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from jamrec.generate import text, vocab

LATIN, ACCENTED, KOREAN, JAPANESE, CHINESE, CYRILLIC, GREEK, MIXED = range(8)
SCRIPT_SHARE = np.array([0.968, 0.012, 0.008, 0.004, 0.002, 0.003, 0.001, 0.002])
# Artists in these scripts usually title their songs in the same script.
NATIVE_TITLES = (KOREAN, JAPANESE, CHINESE, CYRILLIC, MIXED)
# The common Hangul jamo (as indices into the lead/vowel/tail tables of Unicode).
_HANGUL_LEADS = np.array([0, 2, 3, 5, 6, 7, 9, 11, 12, 14, 18])
_HANGUL_VOWELS = np.array([0, 1, 4, 5, 6, 8, 12, 13, 18, 20])
_HANGUL_TAILS = np.array([1, 4, 8, 16, 17, 21])


def _pick(rng: np.random.Generator, words: tuple[str, ...] | list[str], n: int) -> pl.Series:
    return pl.Series(list(words), dtype=pl.String).gather(rng.integers(0, len(words), n))


def _coined(rng: np.random.Generator, n: int) -> pl.Series:
    """Made-up words of 2-3 syllables ("Semisonic"), title-cased."""
    parts = [_pick(rng, vocab.SYLLABLES, n) for _ in range(3)]
    third = pl.select(pl.when(pl.lit(rng.random(n) < 0.5)).then(parts[2])).to_series()
    both = pl.select(pl.concat_str([parts[0], parts[1], third], ignore_nulls=True)).to_series()
    return both.str.to_titlecase()


def _choose(rng: np.random.Generator, n: int, share: list[float], builders: list) -> pl.Series:
    """(n,) strings; row i is made by builders[k], k drawn with probabilities ∝ `share`.

    A builder maps the (m,) row indices of its kind to m strings (see ``text.assemble``).
    """
    p = np.asarray(share, dtype=float)
    return text.assemble(rng.choice(len(p), size=n, p=p / p.sum()), builders)


def artist_scripts(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) int8 script code per artist (LATIN ... MIXED), drawn with SCRIPT_SHARE."""
    return rng.choice(len(SCRIPT_SHARE), size=n, p=SCRIPT_SHARE / SCRIPT_SHARE.sum()).astype(
        np.int8
    )


def _ascii_artists(rng: np.random.Generator, n: int) -> pl.Series:
    first, adj = _pick(rng, vocab.FIRST_NAMES, n), _pick(rng, vocab.ADJECTIVES, n)
    real_last = pl.lit(rng.random(n) < 0.5)
    last = pl.select(
        pl.when(real_last).then(_pick(rng, vocab.LAST_NAMES, n)).otherwise(_coined(rng, n))
    ).to_series()
    last2, last3 = _pick(rng, vocab.LAST_NAMES, n), _pick(rng, vocab.LAST_NAMES, n)
    noun, noun2 = _pick(rng, vocab.NOUNS, n), _pick(rng, vocab.NOUNS, n)
    coined = _coined(rng, n)
    title = _pick(rng, ("DJ ", "MC ", "Lil ", "Dr. "), n)
    band = _pick(rng, (" Trio", " Quartet", " Band", " Orchestra", " Ensemble"), n)

    def person(ix: np.ndarray) -> pl.Series:
        return first.gather(ix) + " " + last.gather(ix)

    def word(w: pl.Series, ix: np.ndarray) -> pl.Series:
        return w.gather(ix)

    builders = [
        person,
        lambda ix: "The " + noun.gather(ix) + "s",
        lambda ix: coined.gather(ix),
        lambda ix: adj.gather(ix) + " " + noun.gather(ix),
        lambda ix: person(ix) + " & The " + noun2.gather(ix) + "s",
        lambda ix: title.gather(ix) + coined.gather(ix),
        lambda ix: person(ix) + band.gather(ix),
        lambda ix: coined.gather(ix).str.to_lowercase(),
        lambda ix: coined.gather(ix).str.to_uppercase(),
        lambda ix: word(first, ix) + ' "' + word(adj, ix) + '" ' + word(last, ix),
        lambda ix: word(last, ix) + ", " + word(last2, ix) + " & " + word(last3, ix),
        lambda ix: word(noun, ix) + "'s " + word(adj, ix) + " " + word(noun2, ix),
        lambda ix: word(noun, ix) + "s' " + word(noun2, ix),
        lambda ix: word(coined, ix) + " " + word(coined, ix).str.reverse().str.to_titlecase(),
    ]
    share = [30, 10, 14, 12, 4, 3, 3, 3, 3, 0.8, 0.8, 2, 0.6, 10]
    return _choose(rng, n, share, builders)


def _accent(rng: np.random.Generator, word: str) -> str:
    spots = [i for i, ch in enumerate(word) if ch in vocab.ACCENT_MAP]
    if not spots:
        return word + "é"
    chars = list(word)
    for i in rng.choice(spots, size=min(len(spots), 1 + int(rng.random() < 0.3)), replace=False):
        chars[i] = rng.choice(list(vocab.ACCENT_MAP[chars[i]]))
    return "".join(chars)


def _hangul(rng: np.random.Generator, k: int) -> str:
    # A Hangul syllable is 0xAC00 + (lead * 21 + vowel) * 28 + tail.
    lead = rng.choice(_HANGUL_LEADS, k)
    vowel = rng.choice(_HANGUL_VOWELS, k)
    tail = np.where(rng.random(k) < 0.6, 0, rng.choice(_HANGUL_TAILS, k))
    return "".join(chr(0xAC00 + (a * 21 + b) * 28 + c) for a, b, c in zip(lead, vowel, tail))


def _chars(rng: np.random.Generator, alphabet: str, lo: int, hi: int) -> str:
    return "".join(rng.choice(list(alphabet), size=int(rng.integers(lo, hi + 1))))


def native_text(rng: np.random.Generator, script: int, latin: str) -> str:
    """A name or title in `script`; `latin` is an ASCII name to decorate or transliterate."""
    if script == ACCENTED:
        return " ".join(_accent(rng, w) if rng.random() < 0.7 else w for w in latin.split(" "))
    if script == KOREAN:
        name = " ".join(
            _hangul(rng, int(rng.integers(2, 5))) for _ in range(int(rng.integers(1, 3)))
        )
        return f"{name} ({latin.upper()})" if rng.random() < 0.35 else name
    if script == JAPANESE:
        if rng.random() < 0.5:
            return _chars(rng, vocab.KATAKANA, 3, 7)
        return _chars(rng, vocab.KANJI, 1, 3) + _chars(rng, vocab.HIRAGANA, 1, 4)
    if script == CHINESE:
        return _chars(rng, vocab.HANZI, 2, 4)
    if script == CYRILLIC:
        word = "".join(vocab.CYRILLIC.get(ch, ch) for ch in latin.lower()).capitalize()
        if rng.random() < 0.3:
            return rng.choice(vocab.CYRILLIC_WORDS) + " " + word
        return word
    if script == GREEK:
        return latin.upper().replace("A", "Λ").replace("E", "Σ")
    return f"{latin} {_hangul(rng, int(rng.integers(2, 5)))}"  # MIXED: "Hitchhiker 히치하이커"


def artist_names(rng: np.random.Generator, scripts: np.ndarray) -> pl.Series:
    """One distinct name per artist; (n,) String Series aligned with `scripts`."""
    n = len(scripts)
    names = _ascii_artists(rng, n)
    idx = np.flatnonzero(scripts != LATIN)
    native = [
        native_text(rng, int(scripts[i]), s) for i, s in zip(idx, names.gather(idx).to_list())
    ]
    names = names.scatter(idx, pl.Series(native, dtype=pl.String))
    for _ in range(20):  # rename clashes with two coined words until every name is unique
        dup = np.flatnonzero(
            names.is_duplicated().to_numpy() & ~names.is_first_distinct().to_numpy()
        )
        if not len(dup):
            break
        names = names.scatter(dup, _coined(rng, len(dup)) + " " + _coined(rng, len(dup)))
    return names


def titles(rng: np.random.Generator, n: int, scripts: np.ndarray, featured: pl.Series) -> pl.Series:
    """(n,) track titles; `scripts` (n,) is the primary artist's script, `featured` (n,)
    an artist name usable in " (feat. X)"."""
    w0, w1, w2 = (_pick(rng, vocab.TITLE_WORDS, n) for _ in range(3))
    noun, noun2 = _pick(rng, vocab.NOUNS, n), _pick(rng, vocab.NOUNS, n)
    adj, verb = _pick(rng, vocab.ADJECTIVES, n), _pick(rng, vocab.VERBS, n)
    obj, contraction = _pick(rng, vocab.OBJECTS, n), _pick(rng, vocab.CONTRACTIONS, n)
    bases = [
        lambda ix: w0.gather(ix),
        lambda ix: adj.gather(ix) + " " + noun.gather(ix),
        lambda ix: "The " + noun.gather(ix),
        lambda ix: verb.gather(ix) + " " + obj.gather(ix),
        lambda ix: noun.gather(ix) + " of the " + noun2.gather(ix),
        lambda ix: w0.gather(ix) + " " + w1.gather(ix) + " " + w2.gather(ix),
        lambda ix: contraction.gather(ix) + " " + verb.gather(ix) + " " + obj.gather(ix),
        lambda ix: adj.gather(ix) + " " + noun.gather(ix) + "s",
        lambda ix: w0.gather(ix) + " " + w1.gather(ix),
    ]
    base = _choose(rng, n, [18, 18, 7, 14, 5, 10, 8, 6, 14], bases)
    suffix, accented = _pick(rng, vocab.SUFFIXES, n), _pick(rng, vocab.ACCENTED_WORDS, n)
    decorations = [
        lambda ix: base.gather(ix),
        lambda ix: base.gather(ix) + suffix.gather(ix),
        lambda ix: base.gather(ix) + " (feat. " + featured.gather(ix) + ")",
        lambda ix: '"' + base.gather(ix) + '"',
        lambda ix: base.gather(ix) + ' "' + w2.gather(ix) + '"',
        lambda ix: base.gather(ix) + ", " + adj.gather(ix) + " " + noun2.gather(ix),
        lambda ix: base.gather(ix).str.to_lowercase(),
        lambda ix: base.gather(ix).str.to_uppercase(),
        lambda ix: base.gather(ix) + " " + accented.gather(ix),
        lambda ix: accented.gather(ix) + " " + w1.gather(ix),
        lambda ix: base.gather(ix) + "…",
        lambda ix: base.gather(ix) + " – " + w2.gather(ix),
    ]
    share = [62, 11, 3, 0.6, 0.4, 1.5, 3, 2, 0.4, 0.3, 0.1, 0.2]
    out = _choose(rng, n, share, decorations)
    # Curly apostrophes are common in the real titles (and become "â€™" in jams.tsv).
    curly = np.flatnonzero(rng.random(n) < 0.15)
    out = out.scatter(curly, out.gather(curly).str.replace_all("'", "’"))
    native = np.flatnonzero(np.isin(scripts, NATIVE_TITLES) & (rng.random(n) < 0.6))
    latin = out.gather(native).to_list()
    texts = [native_text(rng, int(scripts[i]), s) for i, s in zip(native, latin)]
    return out.scatter(native, pl.Series(texts, dtype=pl.String))


def albums(rng: np.random.Generator, track_titles: pl.Series) -> pl.Series:
    """(n,) album names: the track's own title for singles, else a short made-up title."""
    n = len(track_titles)
    made = _pick(rng, vocab.ADJECTIVES, n) + " " + _pick(rng, vocab.NOUNS, n)
    compilation = _pick(rng, ("Greatest Hits", "Live", "Demos", "B-Sides"), n)
    builders = [
        lambda ix: track_titles.gather(ix),
        lambda ix: made.gather(ix),
        lambda ix: made.gather(ix) + "s",
        lambda ix: compilation.gather(ix),
    ]
    return _choose(rng, n, [0.3, 0.45, 0.15, 0.1], builders)


def unique_per_artist(track_titles: pl.Series, artist: np.ndarray) -> pl.Series:
    """Make (artist, title) pairs distinct: a repeated title gets a version suffix
    (" (Live)", ...), and after three rounds the row number, which cannot clash."""
    track_titles = track_titles.clone()  # scatter below writes in place
    for attempt in range(4):
        frame = pl.DataFrame({"a": artist, "t": track_titles})
        k = frame.select(pl.int_range(pl.len()).over("a", "t")).to_series().to_numpy()
        again = np.flatnonzero(k > 0)
        if not len(again):
            break
        if attempt < 3:
            version = (k[again] - 1 + attempt) % len(vocab.SUFFIXES)
            suffix = pl.Series(list(vocab.SUFFIXES)).gather(version)
        else:
            suffix = " (" + pl.Series(again).cast(pl.String) + ")"
        track_titles = track_titles.scatter(again, track_titles.gather(again) + suffix)
    return track_titles
