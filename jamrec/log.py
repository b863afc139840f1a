"""Logging: one ``jamrec`` logger tree, per-stage lines with counts and timings, and
progress (counts and ETA) for long loops.

Inside a Prefect flow run the ``jamrec`` lines go to the run's logs (the UI and
``prefect flow-run logs``) through Prefect's API handler: :func:`setup_flow_logging`
attaches it and lets INFO through (Python's default, WARNING, would keep every stage line
out). The CLI prints the same lines to stderr (:func:`setup_cli_logging`); on a terminal
:func:`progress` adds a bar with counts and ETA, elsewhere it writes plain lines.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

log = logging.getLogger("jamrec")

T = TypeVar("T")
_bar = None  # the progress bar on the terminal now, if any (lines are written above it)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it per test); above
    the progress bar while one is shown, and without the progress lines the bar replaces."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if _bar is None:
            super().emit(record)
        elif getattr(record, "jamrec_progress", None) != id(_bar):  # the bar shows those
            try:
                _bar.write(self.format(record), file=sys.stderr)
            except Exception:
                self.handleError(record)


def setup_cli_logging(verbose: bool = False) -> None:
    """Print ``jamrec`` log lines to stderr as ``HH:MM:SS stage message`` for CLI use.

    Handlers others attached (Prefect's, forwarding lines to a flow run) are kept.
    """
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger("jamrec")
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def setup_flow_logging() -> None:
    """Send ``jamrec``'s INFO lines to the Prefect flow run they happen in.

    Prefect copies its API handler (the ``prefect.extra`` logger's) onto the loggers named
    in ``PREFECT_LOGGING_EXTRA_LOGGERS`` when it configures logging, but leaves their level
    alone: ``jamrec`` would inherit the root logger's WARNING and only errors would reach
    the run. Called by ``flows`` on import, and again once Prefect has configured logging
    (a worker's flow-run process configures it before it imports the flow).
    """
    logger = logging.getLogger("jamrec")
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    for handler in logging.getLogger("prefect.extra").handlers:
        if not any(type(h) is type(handler) for h in logger.handlers):
            logger.addHandler(handler)


@contextmanager
def stage(name: str, logger: logging.Logger = log) -> Iterator[dict]:
    """Time a stage and log one line when it ends.

    The body may put counts into the yielded dict; they are printed after the timing,
    e.g. ``load jams: 2.4 s  lines=2,100,001 loaded=2,099,790 rejected=211``.
    """
    info: dict = {}
    start = time.perf_counter()
    yield info
    elapsed = time.perf_counter() - start
    info["seconds"] = elapsed
    counts = "  ".join(
        f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}"
        for k, v in info.items()
        if k != "seconds"
    )
    logger.info("%s: %.1f s  %s", name, elapsed, counts)


def _eta(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _on_terminal() -> bool:
    """Whether the CLI prints to a terminal (a bar makes sense there, not in a log file)."""
    cli = any(isinstance(h, _StderrHandler) for h in log.handlers)
    return cli and sys.stderr.isatty()


def progress(
    items: Iterable[T],
    what: str,
    total: int | None = None,
    name: Callable[[T], str] | None = None,
    logger: logging.Logger = log,
) -> Iterator[T]:
    """Yield ``items``, saying how far the loop is: ``what 3 of 7: name (ETA 40 s)``.

    One INFO line as each item starts (so flow runs and log files get them), with the
    estimated time left from the items done so far; on a terminal (the CLI) a bar with
    counts, rate and ETA replaces those lines on screen. ``name(item)`` labels an item.
    """
    global _bar
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    bar = None
    if _on_terminal() and _bar is None:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=what, unit="", file=sys.stderr, leave=False, dynamic_ncols=True)
        _bar = bar
    start = time.perf_counter()
    try:
        for position, item in enumerate(items, start=1):
            done = position - 1
            label = f": {name(item)}" if name is not None else ""
            left = ""
            if done:
                left = f" (ETA {_eta((time.perf_counter() - start) / done * (n - done))})"
            logger.info(
                "%s %d of %d%s%s",
                what,
                position,
                n,
                label,
                left,
                extra={"jamrec_progress": id(bar)},
            )
            if bar is not None:
                bar.set_postfix_str(label.removeprefix(": "), refresh=False)
            yield item
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
            _bar = None


def fmt_int(n: int) -> str:
    """``1234567`` -> ``'1,234,567'``."""
    return f"{n:,}"
