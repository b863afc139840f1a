"""The architecture stays as docs/architecture.md draws it: imports flow one way between
the stage packages, the SQL layers read only what their layer may read, and the SQL
runner orders models by the tables they really read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jamrec.build import sqlrunner
from jamrec.config import PROJECT_ROOT
from jamrec.errors import JamrecError

SQL = PROJECT_ROOT / "sql"
# rejects quotes the raw input line beside each reason: the one mart that reads raw_ lines
RAW_READERS = {"rejects"}


def layer(table: str) -> str:
    """``raw``, ``stg``, ``int`` or ``mart`` from a table's name."""
    for prefix in ("raw", "stg", "int"):
        if table.startswith(prefix + "_"):
            return prefix
    return "mart"


MAY_READ = {"stg": {"raw"}, "int": {"stg", "int"}, "mart": {"int", "mart"}}


def test_imports_follow_the_stage_layers():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.split("Contracts:")[-1].replace("0 broken", "")


@pytest.mark.parametrize("model", sorted(sqlrunner.discover(SQL)))
def test_each_sql_layer_reads_only_the_layers_below_it(model):
    found = sqlrunner.discover(SQL)[model]
    allowed = MAY_READ[layer(model)] | ({"raw"} if model in RAW_READERS else set())
    wrong = sorted(t for t in found.reads if layer(t) not in allowed)
    assert not wrong, f"sql/{model}.sql ({layer(model)}) reads {wrong}"


def test_dependencies_come_from_table_references_not_words(tmp_path):
    (tmp_path / "stg_a.sql").write_text("select 'int_b' as note, 1 as x from raw_a -- int_c\n")
    (tmp_path / "int_b.sql").write_text(
        "with stg_a as (select 2 as x) select * from stg_a union all select x from int_c"
    )
    (tmp_path / "int_c.sql").write_text("select x from stg_a")
    models = sqlrunner.discover(tmp_path)
    assert models["stg_a"].deps == frozenset() and models["stg_a"].reads == {"raw_a"}
    # int_b's stg_a is its own CTE, not the model
    assert models["int_b"].deps == {"int_c"}
    assert [m.name for m in sqlrunner.order(models)] == ["stg_a", "int_c", "int_b"]


def test_a_file_that_does_not_parse_is_named(tmp_path):
    (tmp_path / "broken.sql").write_text("select from where")
    with pytest.raises(JamrecError, match=r"broken\.sql"):
        sqlrunner.discover(tmp_path)
