"""HTML building blocks for the report: one page, inline CSS, no scripts, no network.

Every function returns a string of HTML; all text passes through :func:`esc`, and
`backticks` in notes become ``<code>`` (for commands the reader can run).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; font-size: 16px; line-height: 1.5; color: #1d232b; background: #fff;
  max-width: 1080px; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 1.8rem; margin: 0 0 .25rem; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 .5rem; padding-bottom: .2rem;
  border-bottom: 2px solid #dde3ea; }
h3 { font-size: 1.1rem; margin: 1.75rem 0 .4rem; }
p, li { max-width: 75ch; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
  background: #f1f4f7; padding: .05em .3em; border-radius: 3px; }
nav ul { columns: 2; padding-left: 1.2rem; margin: .5rem 0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem;
  margin: .75rem 0; }
dl.meta dt { font-weight: 600; color: #4a5562; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .55rem; border-bottom: 1px solid #e3e8ee; text-align: left;
  vertical-align: top; }
th { background: #f5f7f9; position: sticky; top: 0; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.baseline td:first-child { font-style: italic; }
tr.significant td { font-weight: 600; }
tr.group td { background: #eef2f6; font-weight: 600; }
small.ci { display: block; color: #6b7682; font-size: .75rem; }
figure { margin: 1rem 0 1.5rem; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eef1f4; }
figcaption { font-size: .9rem; color: #4a5562; margin-top: .35rem; max-width: 80ch; }
.note, .missing, .bad { padding: .5rem .8rem; margin: .75rem 0; border-left: 4px solid; }
.note { background: #f5f8fb; border-color: #8aa4c0; }
.missing { background: #fff8e6; border-color: #e0a800; }
.bad { background: #fdeeee; border-color: #c62828; }
.ok { color: #1b7a33; font-weight: 600; }
.fail { color: #c62828; font-weight: 600; }
footer { margin-top: 3rem; font-size: .85rem; color: #6b7682; }
"""


def esc(text: object) -> str:
    """``text`` as HTML text (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def rich(text: str) -> str:
    """Escaped text where `backticked` spans become ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def note(text: str, kind: str = "note") -> str:
    """A boxed paragraph: ``note`` (information), ``missing`` (how to produce it), ``bad``."""
    return f'<p class="{kind}">{rich(text)}</p>\n'


def para(text: str) -> str:
    """A plain paragraph (with `code` spans)."""
    return f"<p>{rich(text)}</p>\n"


def heading(level: int, ident: str, text: str) -> str:
    """``<hN id=...>``: every section and subsection has an id to link to."""
    return f'<h{level} id="{esc(ident)}">{esc(text)}</h{level}>\n'


def fmt(value: object, digits: int = 4) -> str:
    """Numbers for tables: thousands separators for ints, ``digits`` decimals for floats."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def seconds(value: float | None) -> str:
    """A duration in seconds with sensible precision (``–`` when unknown)."""
    if value is None:
        return "–"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def table(
    headers: list[str],
    body: Sequence[Sequence[object]],
    numeric: set[int] | None = None,
    row_classes: list[str] | None = None,
    raw: bool = False,
) -> str:
    """A table; ``numeric``: column indexes aligned right; ``raw``: cells are HTML already."""
    numeric = numeric or set()
    head = "".join(
        f'<th{" class=num" if i in numeric else ""} scope="col">{esc(h)}</th>'
        for i, h in enumerate(headers)
    )
    lines = []
    for r, cells in enumerate(body):
        klass = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        tds = "".join(
            f"<td{' class=num' if i in numeric else ''}>{c if raw else esc(fmt(c))}</td>"
            for i, c in enumerate(cells)
        )
        lines.append(f"<tr{klass}>{tds}</tr>")
    rows = "\n".join(lines)
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody></table></div>\n"
    )


def figure(ident: str, png: bytes, alt: str, caption: str) -> str:
    """A figure with an embedded PNG (base64 data URI) and its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{esc(ident)}"><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{rich(caption)}</figcaption></figure>\n"
    )


def meta(pairs: list[tuple[str, str]]) -> str:
    """A definition list of (label, value) pairs; values may hold `code` spans."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{rich(v)}</dd>" for k, v in pairs)
    return f'<dl class="meta">{items}</dl>\n'


def link(href: str, text: str) -> str:
    """A link (used for the relative link to the Data Docs)."""
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def page(title: str, subtitle: str, toc: list[tuple[str, str]], body: str, footer: str) -> str:
    """The whole document: inline CSS, a table of contents, the sections."""
    items = "".join(f'<li><a href="#{esc(i)}">{esc(t)}</a></li>' for i, t in toc)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<header><h1 id="top">{esc(title)}</h1><p>{rich(subtitle)}</p></header>\n'
        f'<nav aria-label="contents"><ul>{items}</ul></nav>\n'
        f"<main>\n{body}</main>\n<footer>{rich(footer)}</footer>\n</body>\n</html>\n"
    )
