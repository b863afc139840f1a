"""``make install``: create ``.venv`` and install the pinned set, saying what and how far.

pip runs quietly (this machine's pip configuration lists package mirrors that do not
exist, and pip warns about each one); this script reads pip's own progress lines instead
and prints one line per package as it is collected, then installed, with the count:

    [ 37/162] collecting torch==2.13.0 (CPU build)
    installing 162 packages ... (a minute or two)

Runs with the system Python (before ``.venv`` exists): standard library only.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import venv
from pathlib import Path


def pinned(constraints: Path) -> list[str]:
    """The ``name==version`` lines of constraints.txt."""
    lines = constraints.read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if "==" in line.split("#")[0]]


def main(venv_dir: str = ".venv", constraints: str = "constraints.txt") -> int:
    start = time.monotonic()
    pins = pinned(Path(constraints))
    python = Path(venv_dir) / "bin" / "python"
    if not python.exists():
        print(f"[install] creating the virtual environment {venv_dir}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    print(
        f"[install] installing jamrec and {len(pins)} pinned packages from {constraints} "
        "(torch CPU build, prefect, great_expectations, duckdb, ...): 2-4 minutes on a "
        "fresh machine",
        flush=True,
    )
    cmd = [
        str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
        "-c", constraints, "-e", ".[dev]",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[str] = set()
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail, line.rstrip()][-40:]
        found = re.match(
            r"(Collecting|Requirement already satisfied:) ([A-Za-z0-9_.\-\[\]]+)", line
        )
        if found and found.group(2).lower() not in seen:
            seen.add(found.group(2).lower())
            verb = "collecting" if found.group(1) == "Collecting" else "already installed"
            print(f"[{len(seen):>4}/{len(pins)}] {verb} {found.group(2)}", flush=True)
        elif line.startswith("Installing collected packages"):
            count = len(line.split(":", 1)[1].split(","))
            print(f"[install] installing {count} packages into {venv_dir}/ ...", flush=True)
        elif line.startswith("Successfully installed"):
            print(f"[install] {len(line.split()) - 2} packages installed", flush=True)
    if proc.wait() != 0:
        print("\n".join(tail), file=sys.stderr)
        print(
            f"[install] pip failed (exit {proc.returncode}); its last lines are above",
            file=sys.stderr,
        )
        return proc.returncode
    print(f"[install] done in {time.monotonic() - start:.0f} s: {venv_dir}/bin/jamrec", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
