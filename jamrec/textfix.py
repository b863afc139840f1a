"""Repair of double-encoded UTF-8 ("mojibake") in the TIMJ dump.

Every TIMJ row with non-ASCII text was encoded to UTF-8, decoded as Windows-1252 and
encoded to UTF-8 again, so "González" arrives as "GonzÃ¡lez". The repair reverses
that: encode each character back to its cp1252 byte and decode the bytes as UTF-8.
cp1252 leaves five bytes undefined (0x81 0x8D 0x8F 0x90 0x9D); the damage passed
those through as the code points U+0081 ... U+009D (latin-1's mapping), so they map
back to the same byte. Text that does not round-trip (real non-ASCII, not mojibake)
is returned unchanged. The result is NFC-normalised, which recombines the decomposed
accents and Hangul jamo that some clients sent.

On the real 5,000-line sample this repairs every damaged row; ``ftfy.fix_text``
misses some of them ("LÃ¥psley", "ì\\xa0„ì§„") and also rewrites curly quotes,
which are part of the titles.
"""

from __future__ import annotations

import unicodedata

_UNDEFINED_CP1252 = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})


def _to_cp1252_bytes(text: str) -> bytes | None:
    out = bytearray()
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            out.append(code)
            continue
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            if code in _UNDEFINED_CP1252:
                out.append(code)
            else:
                return None
    return bytes(out)


def repair_text(text: str | None) -> str | None:
    """Undo one round of UTF-8-read-as-cp1252 damage; leave anything else as it is.

    ``None`` and pure-ASCII strings are returned unchanged (the fast path for ~95% of
    rows). The output is NFC-normalised whenever the input held non-ASCII characters.
    """
    if text is None or text.isascii():
        return text
    raw = _to_cp1252_bytes(text)
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return unicodedata.normalize("NFC", text)


# The damage as a translation table: decoding UTF-8 bytes as latin-1 and mapping the 27
# bytes cp1252 defines in 0x80-0x9F gives cp1252's reading, with the five undefined bytes
# passed through as their own code points.
_CP1252_C1 = str.maketrans(
    {chr(b): bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in _UNDEFINED_CP1252}
)


def damage_text(text: str) -> str:
    """The inverse of :func:`repair_text`: how the TIMJ export damaged non-ASCII text.

    Used by the synthetic-data generator and by tests. "Á" (C3 81) becomes "Ã\\x81".
    """
    return text.encode("utf-8").decode("latin-1").translate(_CP1252_C1)
