"""The only ways a name reaches SQL text.

Values always travel as parameters (``$name`` or ``?``). What cannot be a parameter (a
table or column name, a ``comment on`` text) goes through here: :func:`identifier`
accepts only plain names, checked against an allow-list where one applies, and quotes
them; :func:`literal` is for jamrec's own constant text (comments from ``sql/schema.yml``
and :mod:`jamrec.warehouse.history`), never for input or command-line values.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from jamrec.errors import JamrecError

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class UnsafeName(JamrecError):
    """A name that is not one of jamrec's own, or not a plain SQL identifier."""


def is_plain(name: str) -> bool:
    """Whether ``name`` is a plain identifier: a letter or ``_``, then letters, digits, ``_``."""
    return isinstance(name, str) and _PLAIN.fullmatch(name) is not None


def identifier(name: str, allowed: Collection[str] | None = None, what: str = "name") -> str:
    """``name`` double-quoted for SQL, after checking it is plain (and in ``allowed``).

    Raises :class:`UnsafeName` naming the rejected name (shown with ``repr``, so control
    characters are visible) otherwise.
    """
    if not is_plain(name):
        raise UnsafeName(f"{what} {name!r} is not a plain SQL name (letters, digits, _)")
    if allowed is not None and name not in allowed:
        raise UnsafeName(f"{what} {name!r} is not one of {sorted(allowed)}")
    return f'"{name}"'


def literal(text: str) -> str:
    """A SQL string literal for jamrec's own constant text (``comment on`` takes no
    parameters). Quotes are doubled and NUL bytes refused, so the text stays one literal."""
    if "\x00" in text:
        raise UnsafeName("a SQL literal cannot hold a NUL byte")
    return "'" + text.replace("'", "''") + "'"
