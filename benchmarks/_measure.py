"""Wall time and peak memory per stage, and the machine it ran on, for benchmarks."""

from __future__ import annotations

import os
import platform
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """Samples RSS every 20 ms in a thread; :meth:`stage` reports a stage's peak."""

    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.rows: list[dict] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.02)

    @contextmanager
    def stage(self, name: str, **extra):
        """Time a stage; record its wall time and the process's peak RSS during it."""
        self.peak = rss_bytes()
        start = time.perf_counter()
        info: dict = {}
        yield info
        seconds = time.perf_counter() - start
        self.peak = max(self.peak, rss_bytes())
        row = {"stage": name, "seconds": seconds, "peak_rss_gb": self.peak / 2**30, **extra, **info}
        self.rows.append(row)
        print(f"{name}: {seconds:.1f} s, peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def machine() -> str:
    """One line: CPU model, cores, memory, Python, date."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )


NOTES = "## Notes and run history\n"  # hand-written, kept last


def write_section(title: str, body: str) -> None:
    """Replace the ``## title`` section of RESULTS.md, or add it before the hand-written notes."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    header = f"## {title}\n"
    section = header + body.rstrip() + "\n\n"
    if header in text:
        start = text.index(header)
        nxt = text.find("\n## ", start + len(header))
        end = len(text) if nxt == -1 else nxt + 1
        text = text[:start] + section + text[end:]
    elif NOTES in text:
        at = text.index(NOTES)
        text = text[:at] + section + text[at:]
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table of ``rows``; columns are (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key, "")
            cells.append(format(value, fmt) if value != "" and fmt else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
