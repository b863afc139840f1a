"""SIGINT and SIGTERM end jamrec the same way: cleanly, recorded, with one line.

:func:`installed` (the CLI runs inside it) makes SIGTERM raise :class:`jamrec.errors.Interrupted`
like Ctrl-C does, so every ``except BaseException`` cleanup (a build recorded as
``interrupted``, a run recorded, temporary files removed) runs for both. DuckDB turns a
signal that arrives during a query into ``RuntimeError: Query interrupted``;
:func:`is_interruption` recognises both. SIGXFSZ is ignored, so a file-size limit
(``ulimit -f``) makes a write fail with ``EFBIG`` (a clean error) instead of killing
the process.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from jamrec.errors import Interrupted

_received: list[str] = []
Handler = Callable[[int, FrameType | None], None] | signal.Handlers


@contextmanager
def _handling(wanted: dict[signal.Signals, Handler]) -> Iterator[None]:
    """``wanted`` handlers while inside, the previous ones back on the way out; nothing
    changes outside the main thread (where Python refuses signal handlers)."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    _received.append(name)
    raise Interrupted(name)


@contextmanager
def installed() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM raise :class:`Interrupted`, SIGXFSZ is ignored;
    the previous handlers come back on the way out (a caller such as a test process
    keeps its own)."""
    wanted: dict[signal.Signals, Handler] = {signal.SIGINT: _raise, signal.SIGTERM: _raise}
    if hasattr(signal, "SIGXFSZ"):
        wanted[signal.SIGXFSZ] = signal.SIG_IGN
    with _handling(wanted):
        yield


def received() -> str | None:
    """The last signal that interrupted this process, if any."""
    return _received[-1] if _received else None


def is_interruption(exc: BaseException) -> bool:
    """Whether ``exc`` is an interruption: Ctrl-C, SIGTERM, or DuckDB's report of one."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if type(exc).__name__ == "InterruptException":
        return True
    return isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower() and bool(_received)


def as_interrupted(exc: BaseException) -> BaseException:
    """``exc`` as :class:`Interrupted` when it is an interruption (for one clean line)."""
    if isinstance(exc, Interrupted) or not is_interruption(exc):
        return exc
    return Interrupted(received() or "SIGINT")


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while cleaning up (recording an interruption must not be
    interrupted); a signal that arrives meanwhile is re-raised at the end."""
    pending: list[str] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        pending.append(signal.Signals(signum).name)

    with _handling({signal.SIGINT: hold, signal.SIGTERM: hold}):
        yield
    if pending:
        _received.append(pending[-1])
        raise Interrupted(pending[-1])
