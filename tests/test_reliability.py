"""Faults end cleanly: one ``jamrec: error:`` line, the published warehouse untouched, no
debris; the quality gate survives kills; input never reaches SQL; ``jamrec sql`` is
sandboxed; versions can be rolled back; runs are accounted for; text fields are checked."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import zipfile
from pathlib import Path

import duckdb
import pytest

from jamrec.build import quality
from jamrec.build.pipeline import run_build
from jamrec.cli import main
from jamrec.config import get_settings
from jamrec.errors import StorageError
from jamrec.files import check_free_space
from jamrec.warehouse.store import Warehouse
from tests import faults
from tests.helpers import jam_line, track_line, write_dump

INJECTION = "x as select 1; copy (select 'pwned' as p) to 'PWNED.csv'; create table truth_z.parquet"


def _copy(warehouse: Path, tmp_path: Path) -> Path:
    target = tmp_path / "wh" / "jamrec.duckdb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(warehouse, target)
    return target


def _one_error(stderr: str) -> str:
    lines = faults.error_lines(stderr)
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


# --- the quality gate -------------------------------------------------------------------


def test_damaged_results_and_legacy_store_are_healed(tmp_path, caplog):
    reports = tmp_path / "reports"
    results = reports / quality.RESULTS_DIR
    results.mkdir(parents=True)
    (results / "20260101T000000Z-a.json").write_bytes(b"")
    (results / "20260101T000001Z-b.json").write_text('{"summary": {"succ')
    (results / "20260101T000002Z-c.json").write_text("{}")
    legacy = reports / "gx" / "gx" / "expectations"
    legacy.mkdir(parents=True)
    (legacy / "negatives.json").write_bytes(b"")
    warnings = quality.heal_store(reports)
    assert len(warnings) == 3, warnings
    assert any("damaged Great Expectations store" in w for w in warnings)
    assert sorted(p.name for p in results.iterdir()) == ["20260101T000002Z-c.json"]
    assert not (reports / "gx").exists()


def test_results_are_pruned_to_the_newest(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMREC_KEEP_VALIDATIONS", "2")
    get_settings.cache_clear()
    for i in range(4):
        quality.save_results(tmp_path, f"run{i}", {"success": True}, {})
    kept = sorted(p.name for p in (tmp_path / quality.RESULTS_DIR).iterdir())
    assert len(kept) == 2 and kept[-1].endswith("-run3.json") and kept[0].endswith("-run2.json")


@pytest.mark.slow
def test_validate_killed_at_random_points_then_etl_publishes(tiny_warehouse, tiny_dump, tmp_path):
    path = _copy(tiny_warehouse, tmp_path)
    rng = random.Random(15)
    for _ in range(3):  # bounded: three kills at seeded points of a ~10 s validation
        faults.kill_after(["validate", "--warehouse", str(path)], path, rng.uniform(2.0, 8.0))
    reports = path.parent / "reports"
    results = reports / quality.RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True)
    # What a SIGKILL or a full disk leaves in a file GX writes: empty or cut short.
    (results / "20000101T000000Z-killed.json").write_bytes(b"")
    (results / "20000101T000001Z-full-disk.json").write_text('{"summary": {"success": tr')
    legacy = reports / "gx" / "gx" / "expectations"
    legacy.mkdir(parents=True, exist_ok=True)
    (legacy / "negatives.json").write_bytes(b"")
    before = faults.published_build(path)
    result = faults.jamrec(
        ["etl", "--timj", str(tiny_dump), "--spotify", str(tiny_dump / "tracks.csv"), "--force"],
        path,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "damaged" in result.stderr  # the warning names what was rebuilt
    assert faults.published_build(path) != before
    assert not (reports / "gx").exists()
    assert all(json.loads(p.read_text()) for p in results.glob("*.json"))
    assert (reports / "data_docs" / "index.html").exists()
    assert not faults.debris(path.parent)


# --- nothing from the input reaches SQL ------------------------------------------------


def test_an_injection_file_name_in_truth_runs_no_sql(dump, tmp_path, monkeypatch, capsys):
    timj, spotify = dump
    truth = timj / "truth"
    truth.mkdir()
    con = duckdb.connect()
    con.execute("copy (select 1 as x) to $p (format parquet)", {"p": str(truth / INJECTION)})
    con.close()
    monkeypatch.chdir(tmp_path)
    code = main(["etl", "--timj", str(timj), "--spotify", str(spotify)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().rglob("PWNED*"))
    assert INJECTION in err and "unknown truth file" in err
    con = duckdb.connect(str(get_settings().warehouse), read_only=True)
    counts = json.loads(
        con.execute("select stage_counts from builds where status = 'published'").fetchall()[0][0]
    )
    tables = {t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()}
    con.close()
    assert counts["ignored_files"] == [INJECTION]
    assert not {t for t in tables if t.startswith("truth_")}


# --- jamrec sql is sandboxed -----------------------------------------------------------

REFUSED = [
    "copy (select 1 as x) to '{out}/x.csv'",
    "copy jams to '{out}/jams.parquet' (format parquet)",
    "select * from read_text('/etc/hostname')",
    "select * from read_csv('/etc/passwd')",
    "install httpfs",
    "load httpfs",
    "attach '{out}/other.duckdb' as other",
    "set threads = 1",
    "export database '{out}/dump'",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_sql_sandbox_refuses(tiny_warehouse, tmp_path, capsys, statement):
    sql = statement.format(out=tmp_path)
    code = main(["sql", "--warehouse", str(tiny_warehouse), sql])
    err = capsys.readouterr().err
    assert code == 1
    line = _one_error(err)
    assert "read-only and sandboxed" in line and "--format csv" in line
    assert list(tmp_path.iterdir()) == []


def test_sql_exports_on_purpose_through_stdout(tiny_warehouse, capsys):
    code = main(["sql", "--warehouse", str(tiny_warehouse), "--format", "csv", "select 1 as x"])
    assert code == 0 and capsys.readouterr().out == "x\n1\n"


# --- faults: one line, the warehouse untouched, no debris ------------------------------


def test_free_space_is_checked_before_writing(tmp_path):
    with pytest.raises(StorageError, match=r"needs about .* is free"):
        check_free_space(tmp_path, 10**18, "a copy of the warehouse")


@pytest.mark.slow
def test_disk_full_during_etl(tiny_warehouse, tiny_dump, tmp_path):
    path = _copy(tiny_warehouse, tmp_path)
    before = faults.digests(path)
    args = ["etl", "--timj", str(tiny_dump), "--spotify", str(tiny_dump / "tracks.csv"), "--force"]
    result = faults.jamrec(args, path, fsize=2_000_000)
    assert result.returncode == 1, result.stderr
    line = _one_error(result.stderr)
    assert "too large" in line or "no space" in line
    assert faults.digests(path) == before
    assert faults.statuses(path)[-1] == "failed"
    assert not faults.debris(path.parent)
    assert not (path.parent / ".work" / "failed-build.duckdb").exists()


@pytest.mark.slow
def test_read_only_folder_is_refused_before_any_work(tiny_warehouse, tiny_dump, tmp_path):
    path = _copy(tiny_warehouse, tmp_path)
    before = faults.digests(path)
    cases = [
        ["etl", "--timj", str(tiny_dump), "--spotify", str(tiny_dump / "tracks.csv"), "--force"],
        ["train", "--models", "popularity"],
        ["validate"],
        ["promote", "popularity-x", "--note", "n"],
        ["rollback"],
    ]
    with faults.read_only_folder(path.parent):
        for args in cases:
            result = faults.jamrec(args, path)
            assert result.returncode == 1, (args, result.stderr)
            line = _one_error(result.stderr)
            assert "permission denied" in line or "read-only" in line, line
            assert "trained " not in result.stderr  # refused before any training
    assert faults.digests(path) == before


@pytest.mark.parametrize("damage", ["empty", "half", "garbage"])
def test_a_damaged_warehouse_is_named_and_rebuilt_fresh(tiny_warehouse, dump, tmp_path, damage):
    path = _copy(tiny_warehouse, tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        if damage == "empty":
            handle.truncate(0)
        elif damage == "half":
            handle.truncate(size // 2)
        else:
            handle.seek(12288)
            handle.write(os.urandom(8192))
    damaged = path.read_bytes()
    result = faults.jamrec(["sql", "select count(*) from jams"], path)
    if damage != "garbage" or result.returncode != 0:
        assert result.returncode == 1
        line = _one_error(result.stderr)
        assert "damaged" in line and "jamrec rollback" in line and "--fresh" in line
    timj, spotify = dump
    etl = ["etl", "--timj", str(timj), "--spotify", str(spotify)]
    result = faults.jamrec(etl, path)
    if damage != "garbage":
        assert result.returncode == 1 and "damaged" in _one_error(result.stderr)
        assert path.read_bytes() == damaged  # never rewritten
    result = faults.jamrec([*etl, "--fresh"], path)
    assert result.returncode == 0, result.stderr
    assert faults.published_build(path) is not None
    kept = list((path.parent / ".versions").glob("set-aside-*.duckdb"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged


def test_a_damaged_zip_is_one_line(dump, tmp_path, capsys):
    timj, spotify = dump
    archive = tmp_path / "dump.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("jams.tsv", "likes.tsv", "followers.tsv"):
            zf.write(timj / "archive" / name, f"archive/{name}")
    data = bytearray(archive.read_bytes())
    start = data.index(b"jams.tsv") + 40  # inside the first member's compressed bytes
    data[start : start + 64] = os.urandom(64)
    archive.write_bytes(bytes(data))
    code = main(["etl", "--timj", str(archive), "--spotify", str(spotify)])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and "dump.zip" in line and "damaged" in line


@pytest.mark.parametrize("option", ["--timj", "--spotify"])
def test_a_symlink_loop_is_one_line(dump, tmp_path, capsys, option):
    timj, spotify = dump
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    paths = {"--timj": str(timj), "--spotify": str(spotify), option: str(loop)}
    code = main(["etl", "--timj", paths["--timj"], "--spotify", paths["--spotify"]])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and "symlink loop" in line and str(loop) in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "marker"),
    [
        (signal.SIGINT, "load likes.tsv"),
        (signal.SIGTERM, "sql int_likes_checked"),
        (signal.SIGTERM, "validate jams"),
    ],
)
def test_a_signal_at_any_stage_is_recorded_and_cleaned(
    tiny_warehouse, tiny_dump, tmp_path, sig, marker
):
    path = _copy(tiny_warehouse, tmp_path)
    before = faults.digests(path)
    args = ["etl", "--timj", str(tiny_dump), "--spotify", str(tiny_dump / "tracks.csv"), "--force"]
    code, err, seen = faults.signal_at(args, path, marker, sig)
    assert seen, err
    assert code == 1, err
    line = _one_error(err)
    assert f"interrupted by {signal.Signals(sig).name}" in line
    assert faults.statuses(path)[-1] == "interrupted"
    assert faults.digests(path) == before
    assert not faults.debris(path.parent)


# --- versions and rollback -------------------------------------------------------------


@pytest.mark.slow
def test_rollback_republishes_the_previous_build_and_keeps_history(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAMREC_KEEP_VERSIONS", "2")
    get_settings.cache_clear()
    path = tmp_path / "wh" / "jamrec.duckdb"
    first = write_dump(tmp_path / "a")
    second = write_dump(tmp_path / "b", jams=[jam_line(j, j % 3, j % 5) for j in range(9)])
    b1 = run_build(*first, path)["build_id"]
    b2 = run_build(*second, path)["build_id"]
    b3 = run_build(*second, path, force=True)["build_id"]  # the same inputs again
    store = Warehouse(path)
    assert [p.stem for p in store.versions()] == [b1, b2]  # the newest two, pruned
    with store.update("a run recorded after the last build") as con:
        con.execute(
            "insert into model_runs (run_id, build_id, model, status) "
            "values ('r-1', $b, 'als', 'evaluated')",
            {"b": b3},
        )
    assert main(["rollback", "--warehouse", str(path)]) == 0
    assert faults.published_build(path) == b2
    # The file replaced (b3's) is kept too; b1's, the oldest, is pruned (keep 2).
    assert sorted(p.stem for p in store.versions()) == sorted([b2, b3])
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select count(*) from jams").fetchall() == [(9,)]
    assert con.execute("select run_id from model_runs").fetchall() == [("r-1",)]
    rows = dict(
        con.execute("select build_id, status from builds where status <> 'rollback'").fetchall()
    )
    assert rows == {b1: "published", b2: "published", b3: "rolled_back"}
    con.close()
    assert main(["rollback", b1, "--warehouse", str(path)]) == 1
    assert "no kept version of build" in capsys.readouterr().err
    assert main(["rollback", b3, "--warehouse", str(path)]) == 0  # undo the rollback
    assert faults.published_build(path) == b3
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select run_id from model_runs").fetchall() == [("r-1",)]
    assert con.execute("select count(*) from builds where status = 'rollback'").fetchall() == [(2,)]
    con.close()


# --- small writes ----------------------------------------------------------------------


def _tiny_store(tmp_path: Path) -> Warehouse:
    store = Warehouse(tmp_path / "jamrec.duckdb", lock_timeout_s=3)
    with store.update("create"):
        pass
    return store


def test_small_writes_go_in_place_without_a_copy(tmp_path):
    store = _tiny_store(tmp_path)
    inode = store.path.stat().st_ino
    with store.update("record") as con:
        con.execute(
            "insert into model_runs (run_id, build_id, model, status) "
            "values ('r', 'b', 'als', 'trained')"
        )
    assert store.path.stat().st_ino == inode  # the same file: no copy was made
    assert not list(store.work_dir.glob("update-*"))
    with pytest.raises(RuntimeError), store.update("fails") as con:
        con.execute(
            "insert into model_runs (run_id, build_id, model, status) "
            "values ('x', 'b', 'als', 'trained')"
        )
        raise RuntimeError("boom")
    con = store.connect_readonly()
    assert con.execute("select run_id from model_runs").fetchall() == [("r",)]  # all or nothing
    con.close()


def test_a_reader_makes_small_writes_copy_and_stays_undisturbed(tmp_path):
    store = _tiny_store(tmp_path)
    inode = store.path.stat().st_ino
    reader = duckdb.connect(str(store.path), read_only=True)
    try:
        with store.update("record") as con:
            con.execute(
                "insert into model_runs (run_id, build_id, model, status) "
                "values ('r', 'b', 'als', 'trained')"
            )
        assert reader.execute("select count(*) from model_runs").fetchall() == [(0,)]
    finally:
        reader.close()
    assert store.path.stat().st_ino != inode  # copied and renamed over
    con = store.connect_readonly()
    assert con.execute("select count(*) from model_runs").fetchall() == [(1,)]
    con.close()


# --- text fields -----------------------------------------------------------------------


@pytest.mark.slow
def test_nul_bytes_and_huge_text_are_rejected(tmp_path, capsys):
    jams = [jam_line(j, j % 6, j % 8) for j in range(12)]
    jams += [
        jam_line(20, 1, 1, artist="Bad\x00Artist"),  # line 14
        jam_line(21, 1, 1, title="t" * 1001),  # line 15
    ]
    tracks = [track_line(t) for t in range(10)]
    tracks += [track_line(11).replace("Song 11", "S" * 1001)]  # line 12
    timj, spotify = write_dump(tmp_path / "d", jams=jams, tracks=tracks)
    code = main(["etl", "--timj", str(timj), "--spotify", str(spotify)])
    assert code == 0, capsys.readouterr().err
    con = duckdb.connect(str(get_settings().warehouse), read_only=True)
    got = con.execute(
        "select source_file, line_number, reason from rejects order by all"
    ).fetchall()
    con.close()
    assert got == [
        ("jams.tsv", 14, "artist holds a NUL byte"),
        ("jams.tsv", 15, "title is 1001 characters long (at most 1000)"),
        ("tracks.csv", 12, "name is 1001 characters long (at most 1000)"),
    ]


# --- runs are accounted for ------------------------------------------------------------


@pytest.mark.slow
def test_an_interrupted_train_records_the_run_and_decides_the_earlier_ones(
    tiny_warehouse, tmp_path
):
    path = _copy(tiny_warehouse, tmp_path)
    args = ["train", "--models", "popularity,mbcf", "--set", "mbcf.epochs=200"]
    args += ["--set", "mbcf.early_stopping=false"]  # a long training, to be interrupted
    code, err, seen = faults.signal_at(args, path, "train mbcf: step 1", signal.SIGTERM)
    assert seen and code == 1, err
    assert "interrupted by SIGTERM" in _one_error(err)
    con = duckdb.connect(str(path), read_only=True)
    runs = dict(con.execute("select model, status from model_runs").fetchall())
    decided = con.execute("select model, promoted from promotions").fetchall()
    stored = con.execute("select model_path from model_runs where model_path is not null")
    paths = [p for (p,) in stored.fetchall()]
    con.close()
    assert runs == {"popularity": "evaluated", "mbcf": "interrupted"}
    assert decided == [("popularity", True)]
    assert [p.name for p in (path.parent / "models").iterdir()] == [Path(paths[0]).name]
    assert paths and not Path(paths[0]).is_absolute()


@pytest.mark.slow
def test_build_change_stops_promotion_and_paths_are_relative(tiny_warehouse, tmp_path):
    from jamrec.evaluation.protocols import EvaluationSettings
    from jamrec.models.dataset import open_dataset
    from jamrec.operations import runs
    from jamrec.operations.promotion import promote_runs
    from jamrec.provenance import now

    path = _copy(tiny_warehouse, tmp_path)
    data = open_dataset(path)
    run = runs.train("popularity", data)
    runs.save(run, data, path)
    settings = EvaluationSettings(user_sample=50)
    run_id = runs.record(run, runs.evaluate(run, data, settings), path)
    with Warehouse(path).update("a rebuild published meanwhile") as con:
        con.execute(
            "insert into builds (build_id, started_at, status) values ('b-new', $t, 'published')",
            {"t": now()},
        )
    (decision,) = promote_runs([run_id], data, path)
    assert not decision.promoted
    assert "published build changed" in decision.note and "b-new" in decision.note
    # Stored relative to the warehouse folder: a copied warehouse loads its own models.
    copy = tmp_path / "copy"
    shutil.copytree(path.parent, copy)
    shutil.rmtree(path.parent / "models")
    model, row = runs.load_run(run_id, copy / "jamrec.duckdb")
    assert row["model_path"] == f"models/{run_id}" and model.name == "popularity"
    # Rows written before (absolute paths) still read.
    with Warehouse(copy / "jamrec.duckdb").update("an old absolute path") as con:
        con.execute(
            "update model_runs set model_path = $p where run_id = $r",
            {"p": str(copy / "models" / run_id), "r": run_id},
        )
    assert runs.load_run(run_id, copy / "jamrec.duckdb")[0].name == "popularity"


def test_orphan_model_folders_of_dead_writers_are_removed(tmp_path):
    from jamrec.operations import runs

    store = _tiny_store(tmp_path)
    dead, alive = tmp_path / "models" / "als-dead", tmp_path / "models" / "als-alive"
    for folder, pid in ((dead, 2**22 + 12345), (alive, os.getpid() + 0)):
        folder.mkdir(parents=True)
        (folder / runs.WRITER_MARK).write_text(str(pid))
    os.utime(alive)
    (alive / runs.WRITER_MARK).write_text(str(os.getppid()))  # a live process
    assert runs.clean_orphans(store.path) == ["als-dead"]
    assert alive.exists() and not dead.exists()


def test_orphan_cleaning_leaves_the_models_of_a_warehouse_beside_it(tmp_path):
    """Two warehouses in one folder share models/: cleaning one never removes a run the
    other recorded (nor one saved before folders named their warehouse), only its own
    unfinished saves."""
    from jamrec.operations import runs

    store = _tiny_store(tmp_path)
    models = tmp_path / "models"
    other, legacy, mine = models / "als-other", models / "als-legacy", models / "als-mine"
    for folder in (other, legacy, mine):
        folder.mkdir(parents=True)
    (other / runs.OWNER_MARK).write_text("beside.duckdb")  # recorded there: no writer mark
    (other / runs.WRITER_MARK).write_text(str(2**22 + 12345))  # even while being written
    (mine / runs.OWNER_MARK).write_text(store.path.name)
    (mine / runs.WRITER_MARK).write_text(str(2**22 + 12345))  # its writer died
    assert runs.clean_orphans(store.path) == ["als-mine"]
    assert other.exists() and legacy.exists() and not mine.exists()
