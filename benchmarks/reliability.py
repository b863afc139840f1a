"""The reliability table: every fault case of issue 15 tried against the real ``jamrec``
command on a generated dump; for each, whether it survived (one ``jamrec: error:`` line
or a clean success, exit status as expected, the published warehouse's data unchanged,
no debris), whether data was lost, whether a traceback was printed.

    .venv/bin/python -m benchmarks.reliability [--scale tiny|small] [--out benchmarks/RESULTS.md]

At ``tiny`` scale it takes a few minutes on 2 cores. The table goes to stdout and, with
``--out``, replaces the "Reliability" section of that file.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tests import faults

INJECTION = "x as select 1; copy (select 'pwned' as p) to 'PWNED.csv'; create table truth_z.parquet"


@dataclass
class Outcome:
    case: str
    survived: bool
    data_lost: int
    traceback: bool
    note: str


@dataclass
class Env:
    dump: Path
    base: Path  # a published warehouse to copy for each case
    root: Path

    def fresh(self, name: str) -> Path:
        path = self.root / name / "wh" / "jamrec.duckdb"
        path.parent.mkdir(parents=True)
        shutil.copyfile(self.base, path)
        return path

    def etl(self, *extra: str) -> list[str]:
        # the same inputs as the warehouse it works on: --force, or the build is skipped
        spotify = str(self.dump / "tracks.csv")
        return ["etl", "--timj", str(self.dump), "--spotify", spotify, "--force", *extra]


def _judge(case: str, path: Path, before: dict, result, expect: int, check=None) -> Outcome:
    stderr = result if isinstance(result, str) else result.stderr
    code = None if isinstance(result, str) else result.returncode
    tb = "Traceback" in stderr
    errors = faults.error_lines(stderr)
    lost = 0
    if path.exists():
        after = faults.digests(path, skip=())
        lost = sum(1 for t, d in before.items() if after.get(t) != d and t != "builds")
        if "builds" in before and "builds" not in after:
            lost += 1
    ok = not tb and lost == 0 and not faults.debris(path.parent)
    if expect:
        ok = ok and len(errors) == 1 and (code is None or code == expect)
    else:
        ok = ok and code == 0
    note = errors[0][len("jamrec: error: ") :] if errors else "ok"
    if "sandboxed" in note and note.endswith(")"):
        note = "refused: " + note[note.rindex("(") + 1 : -1]  # DuckDB's own reason
    if check is not None and ok:
        ok, extra = check()
        note = f"{note} {extra}".strip()
    return Outcome(case, ok, lost, tb, note)


def case_disk_full(env: Env) -> Outcome:
    path = env.fresh("disk_full")
    before = faults.digests(path, skip=())
    result = faults.jamrec(env.etl(), path, fsize=2_000_000)
    return _judge("disk full during etl (2 MB file-size limit)", path, before, result, 1)


def case_read_only(env: Env, args: list[str], label: str) -> Outcome:
    path = env.fresh(f"read_only_{label}")
    before = faults.digests(path, skip=())
    with faults.read_only_folder(path.parent):
        result = faults.jamrec(args, path)
    return _judge(f"read-only folder: {label}", path, before, result, 1)


def case_damaged(env: Env, damage: str) -> Outcome:
    path = env.fresh(f"damaged_{damage}")
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        if damage == "empty":
            handle.truncate(0)
        elif damage == "half":
            handle.truncate(size // 2)
        else:
            handle.seek(12288)
            handle.write(random.Random(0).randbytes(8192))
    damaged = path.read_bytes()
    result = faults.jamrec(env.etl(), path)
    untouched = path.read_bytes() == damaged
    fresh = faults.jamrec(env.etl("--fresh"), path)
    kept = list((path.parent / ".versions").glob("set-aside-*.duckdb"))
    ok = (
        untouched
        and fresh.returncode == 0
        and len(kept) == 1
        and kept[0].read_bytes() == damaged
        and (result.returncode == 1 or damage == "garbage")
    )
    tb = "Traceback" in result.stderr + fresh.stderr
    errors = faults.error_lines(result.stderr)
    return Outcome(
        f"damaged warehouse ({damage}): etl, then etl --fresh",
        ok and not tb,
        0 if kept and kept[0].read_bytes() == damaged else 1,
        tb,
        (errors[0][15:] if errors else "etl rebuilt it") + "; --fresh published, file kept",
    )


def case_zip(env: Env) -> Outcome:
    path = env.fresh("zip")
    before = faults.digests(path, skip=())
    archive = path.parent.parent / "dump.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("jams.tsv", "likes.tsv", "followers.tsv"):
            zf.write(env.dump / "archive" / name, f"archive/{name}")
    data = bytearray(archive.read_bytes())
    start = data.index(b"jams.tsv") + 40
    data[start : start + 64] = random.Random(1).randbytes(64)
    archive.write_bytes(bytes(data))
    result = faults.jamrec(
        ["etl", "--timj", str(archive), "--spotify", str(env.dump / "tracks.csv")], path
    )
    return _judge("corrupt zip as --timj", path, before, result, 2)


def case_loop(env: Env, option: str) -> Outcome:
    path = env.fresh(f"loop{option}")
    before = faults.digests(path, skip=())
    loop = path.parent.parent / "loop"
    loop.symlink_to(loop)
    args = {"--timj": str(env.dump), "--spotify": str(env.dump / "tracks.csv"), option: str(loop)}
    result = faults.jamrec(["etl", "--timj", args["--timj"], "--spotify", args["--spotify"]], path)
    return _judge(f"symlink loop as {option}", path, before, result, 2)


def case_signal(env: Env, sig: int, marker: str) -> Outcome:
    path = env.fresh(f"sig{sig}{marker.replace(' ', '_')}")
    before = faults.digests(path, skip=())
    code, err, seen = faults.signal_at(env.etl(), path, marker, sig)

    def check():
        status = faults.statuses(path)[-1]
        return status == "interrupted" and seen, f"(builds: {status})"

    result = type("R", (), {"returncode": code, "stderr": err})()
    name = signal.Signals(sig).name
    return _judge(f"{name} at '{marker}'", path, before, result, 1, check)


def case_kill_validate(env: Env) -> Outcome:
    path = env.fresh("kill_validate")
    rng = random.Random(15)
    for _ in range(3):
        faults.kill_after(["validate", "--warehouse", str(path)], path, rng.uniform(2.0, 8.0))
    results = path.parent / "reports" / "validations"
    results.mkdir(parents=True, exist_ok=True)
    (results / "20000101T000000Z-killed.json").write_bytes(b"")
    (results / "20000101T000001Z-cut.json").write_text('{"summary": {"succ')
    legacy = path.parent / "reports" / "gx" / "gx" / "expectations"
    legacy.mkdir(parents=True, exist_ok=True)
    (legacy / "negatives.json").write_bytes(b"")
    before_build = faults.published_build(path)
    result = faults.jamrec(env.etl(), path)
    ok = result.returncode == 0 and faults.published_build(path) != before_build
    tb = "Traceback" in result.stderr
    return Outcome(
        "3 random SIGKILLs of validate + truncated result/suite files, then etl",
        ok and not tb and not faults.debris(path.parent),
        0,
        tb,
        "etl published; damaged store rebuilt with a warning",
    )


def case_injection(env: Env) -> Outcome:
    dump = env.root / "inject_dump"
    shutil.copytree(env.dump, dump)
    con = duckdb.connect()
    con.execute(
        "copy (select 1 as x) to $p (format parquet)", {"p": str(dump / "truth" / INJECTION)}
    )
    con.close()
    path = env.fresh("inject")
    cwd = os.getcwd()
    result = faults.jamrec(
        ["etl", "--timj", str(dump), "--spotify", str(dump / "tracks.csv")], path
    )
    written = list(env.root.rglob("PWNED*")) + list(Path(cwd).rglob("PWNED*"))
    ok = result.returncode == 0 and not written and INJECTION in result.stderr
    return Outcome(
        "injection file name in truth/",
        ok,
        0,
        "Traceback" in result.stderr,
        "no file written; the name reported and ignored",
    )


def case_sql(env: Env, statement: str) -> Outcome:
    path = env.fresh(f"sql{abs(hash(statement)) % 10**6}")
    before = faults.digests(path, skip=())
    out = path.parent.parent
    result = faults.jamrec(["sql", statement.format(out=out)], path)
    files = [p for p in out.iterdir() if p.name != "wh"]
    outcome = _judge(f"jamrec sql: {statement.format(out='DIR')[:48]}", path, before, result, 1)
    outcome.survived = outcome.survived and not files
    return outcome


def case_train_interrupted(env: Env) -> Outcome:
    path = env.fresh("train_sigterm")
    args = ["train", "--models", "popularity,mbcf", "--set", "mbcf.epochs=200"]
    code, err, seen = faults.signal_at(args, path, "model 2 of 2", signal.SIGTERM)
    con = duckdb.connect(str(path), read_only=True)
    runs = dict(con.execute("select model, status from model_runs").fetchall())
    decided = con.execute("select count(*) from promotions").fetchall()[0][0]
    paths = [p for (p,) in con.execute("select model_path from model_runs").fetchall()]
    con.close()
    orphans = (
        [p.name for p in (path.parent / "models").iterdir() if p.name.startswith("mbcf")]
        if (path.parent / "models").exists()
        else []
    )
    ok = (
        seen
        and code == 1
        and runs == {"popularity": "evaluated", "mbcf": "interrupted"}
        and decided == 1
        and not orphans
        and all(p is None or not Path(p).is_absolute() for p in paths)
    )
    return Outcome(
        "SIGTERM while training model 2 of 2",
        ok,
        0,
        "Traceback" in err,
        f"runs {runs}, promotion decisions {decided}",
    )


def run_all(scale: str) -> list[Outcome]:
    from jamrec.build.pipeline import run_build
    from jamrec.generate import generate

    root = Path(tempfile.mkdtemp(prefix="jamrec-reliability-", dir="/tmp"))
    root.chmod(0o755)
    generate(root / "dump", scale=scale, seed=0)
    base = root / "base" / "jamrec.duckdb"
    run_build(root / "dump", root / "dump" / "tracks.csv", base)
    env = Env(root / "dump", base, root)
    cases: list[Callable[[], Outcome]] = [
        lambda: case_kill_validate(env),
        lambda: case_injection(env),
        *[
            (lambda s=s: case_sql(env, s))
            for s in (
                "copy (select 1 as x) to '{out}/x.csv'",
                "select * from read_text('/etc/hostname')",
                "install httpfs",
                "attach '{out}/o.duckdb' as o",
                "set threads = 1",
            )
        ],
        lambda: case_disk_full(env),
        lambda: case_read_only(env, env.etl(), "etl"),
        lambda: case_read_only(env, ["train", "--models", "popularity"], "train"),
        lambda: case_read_only(env, ["validate"], "validate"),
        *[(lambda d=d: case_damaged(env, d)) for d in ("empty", "half", "garbage")],
        lambda: case_zip(env),
        lambda: case_loop(env, "--timj"),
        lambda: case_loop(env, "--spotify"),
        lambda: case_signal(env, signal.SIGINT, "load likes.tsv"),
        lambda: case_signal(env, signal.SIGTERM, "sql int_likes_checked"),
        lambda: case_signal(env, signal.SIGTERM, "validate jams"),
        lambda: case_signal(env, signal.SIGINT, "validate negatives"),
        lambda: case_train_interrupted(env),
    ]
    outcomes = []
    for number, case in enumerate(cases, start=1):
        start = time.perf_counter()
        try:
            outcome = case()
        except Exception as exc:  # a crash of the harness is a failed case, not a pass
            outcome = Outcome(f"case {number} (harness failed)", False, 0, False, repr(exc))
        # Paths in the messages are shown relative to the run's temporary folder.
        outcome.note = outcome.note.replace(str(root), "$TMP")[:120]
        print(
            f"{'ok  ' if outcome.survived else 'FAIL'} {outcome.case} "
            f"({time.perf_counter() - start:.0f} s): {outcome.note}",
            flush=True,
        )
        outcomes.append(outcome)
    shutil.rmtree(root, ignore_errors=True)
    return outcomes


def table(outcomes: list[Outcome], scale: str) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "## Reliability (issue 15)",
        "",
        f"`python -m benchmarks.reliability --scale {scale}`, "
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores ({cpu}), {platform.system()}.",
        "",
        "| cases tried | survived | data lost | tracebacks |",
        "|---:|---:|---:|---:|",
        f"| {len(outcomes)} | {sum(o.survived for o in outcomes)} | "
        f"{sum(o.data_lost for o in outcomes)} | {sum(o.traceback for o in outcomes)} |",
        "",
        "| case | survived | data lost | traceback | what the user saw |",
        "|---|---|---:|---|---|",
    ]
    for o in outcomes:
        note = o.note.replace("|", "/")
        lines.append(
            f"| {o.case} | {'yes' if o.survived else 'NO'} | {o.data_lost} | "
            f"{'yes' if o.traceback else 'no'} | {note} |"
        )
    lines += ["", METHOD]
    return "\n".join(lines) + "\n"


METHOD = """\
Seconds per case are noisy on a shared machine; the verdicts are not. Each case runs the
real `jamrec` command in a subprocess on a copy of a warehouse built from the `tiny`
dump: the file-size limit is `resource.setrlimit(RLIMIT_FSIZE)` in that subprocess, the
read-only folder a read-only bind mount (as root; `chmod 555` otherwise), the signals
are sent when the named log line appears. "Data lost" counts tables of the published
warehouse whose content changed (or, for `--fresh`, a set-aside file that is not byte-
identical to the damaged one). The full-scale command is the same with `--scale small`
(tiny and small are the only sizes it accepts: the cases are about faults, not size).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = table(run_all(args.scale), args.scale)
    print(text)
    if args.out:
        args.out.write_text(replace_section(args.out, text))


def replace_section(path: Path, text: str, notes: str = "## Notes and run history") -> str:
    """``path``'s content with its reliability section replaced by ``text`` (added before
    the hand-written notes when it has none)."""
    current = path.read_text() if path.exists() else ""
    head, sep, rest = current.partition("## Reliability (issue 15)")
    if sep:
        tail = rest.split("\n## ", 1)[1] if "\n## " in rest else ""
        return head + text + ("\n## " + tail if tail else "")
    before, found, after = current.partition(notes)
    if found:
        return before + text + "\n" + found + after
    return current.rstrip() + "\n\n" + text


if __name__ == "__main__":
    main()
