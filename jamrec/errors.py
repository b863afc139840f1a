"""Errors that reach the user as one clear line, never as a traceback."""

from __future__ import annotations

from pathlib import Path


class JamrecError(Exception):
    """A problem the user can fix (bad input, a locked file, a missing table).

    The CLI and the flows print ``str(error)`` as a single line and exit non-zero.
    """


class InputError(JamrecError):
    """A whole input file is unusable: missing, empty, wrong header, not UTF-8, ...

    Problems with single lines never raise; they become rows in ``rejects``.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = Path(path)
        self.problem = problem
        self.line = line
        where = f"{self.path}" if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")


class WarehouseLockedError(JamrecError):
    """Another process holds the warehouse (or a build) and did not let go in time."""


class StorageError(JamrecError):
    """A write failed or would fail: disk full, file-size limit, read-only file system."""


class WarehouseDamaged(JamrecError):
    """The warehouse file cannot be read: truncated, overwritten or otherwise corrupt."""

    def __init__(self, path: str | Path, cause: str):
        self.path = Path(path)
        super().__init__(
            f"{self.path}: the warehouse file is damaged ({cause}); put the previous version "
            "back with `jamrec rollback`, or rebuild it from the raw files with "
            "`jamrec etl --fresh --timj ... --spotify ...`"
        )


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: every cleanup that handles Ctrl-C runs for both."""

    def __init__(self, signal_name: str = "SIGINT"):
        self.signal_name = signal_name
        super().__init__(signal_name)
