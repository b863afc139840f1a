"""What an operator types and reads: --version, unknown models refused at once, the SQL
lineage, progress lines, flow parameters with descriptions and choices, migrations."""

from __future__ import annotations

import logging

import duckdb
import pytest

import jamrec
from jamrec.cli import main
from jamrec.log import progress
from jamrec.models import MODELS
from jamrec.warehouse import history


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"jamrec {jamrec.__version__}"


def test_an_unknown_model_is_named_before_any_work(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["recommend", "--user", "x", "--model", "foo", "--warehouse", str(tmp_path / "w")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'foo'; known: als," in err


@pytest.mark.slow
def test_lineage_prints_the_sql_layers_from_real_references(capsys):
    assert main(["lineage"]) == 0
    text = capsys.readouterr().out
    for layer in ("raw:", "staging:", "intermediate:", "marts (published):"):
        assert layer in text
    lines = {line.split()[0]: line for line in text.splitlines() if "<-" in line}
    assert lines["stg_jams"].split("<-")[1].split()[0] == "raw_jams"
    assert "int_positives, tracks" in lines["interactions"]
    assert main(["lineage", "splits"]) == 0
    tree = capsys.readouterr().out
    assert tree.startswith("splits (mart)") and "raw_jams (raw) <- jams.tsv" in tree
    assert main(["lineage", "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph jamrec {")
    assert main(["lineage", "nope"]) == 2
    assert "nope: no such table in sql/" in capsys.readouterr().err


def test_progress_says_how_far_a_loop_is():
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger = logging.getLogger("jamrec.test_progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        assert list(progress(["a", "b", "c"], "thing", name=str, logger=logger)) == ["a", "b", "c"]
    finally:
        logger.removeHandler(handler)
    lines = [r.getMessage() for r in seen]
    assert lines[0] == "thing 1 of 3: a"
    assert lines[1].startswith("thing 2 of 3: b (ETA ") and lines[2].startswith("thing 3 of 3")


@pytest.mark.slow
def test_flow_parameters_are_typed_described_and_offer_the_model_names():
    from prefect.utilities.callables import parameter_schema

    from flows.build_warehouse import build_warehouse
    from flows.train_and_evaluate import train_and_evaluate

    schema = parameter_schema(train_and_evaluate).model_dump()
    models = schema["properties"]["models"]
    (as_list,) = [s for s in models["anyOf"] if s.get("type") == "array"]
    assert sorted(as_list["items"]["enum"]) == sorted(MODELS)
    assert "The models to train" in models["description"]
    build = parameter_schema(build_warehouse).model_dump()["properties"]
    assert all(p.get("description") for p in build.values())
    assert build["force"]["type"] == "boolean"


def test_migrations_apply_every_step_not_yet_recorded(tmp_path, monkeypatch):
    every = history.MIGRATIONS
    versions = {step.version for step in every}
    # a warehouse migrated by a branch that did not have step 2 yet
    monkeypatch.setattr(history, "MIGRATIONS", tuple(s for s in every if s.version != 2))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    history.migrate(con)
    assert history.applied_versions(con) == versions - {2}
    assert history.is_current(con)
    # step 2, numbered below steps already applied (work merged later), still runs
    monkeypatch.setattr(history, "MIGRATIONS", every)
    assert not history.is_current(con)
    assert history.migrate(con) == [2]
    assert history.applied_versions(con) == versions and history.migrate(con) == []
    con.close()
