"""Incremental runs: rebuild the warehouse only when something that shapes it changed.

A build is skipped, and recorded as ``skipped`` in ``builds``, only when the raw inputs'
content hashes, the build parameters and the code version all match the last published
build.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from jamrec.build import ingest, records
from jamrec.config import BuildParams, get_settings
from jamrec.errors import JamrecError, WarehouseLockedError
from jamrec.log import log
from jamrec.provenance import code_version, file_sha256, new_build_id, now
from jamrec.timing import Timing
from jamrec.warehouse import timings
from jamrec.warehouse.store import Warehouse


def fingerprint_inputs(timj: Path, spotify: Path) -> dict[str, dict]:
    """The content hash of every input, keyed as the ETL records them in ``builds.inputs``.

    Problems with the inputs (missing files, ...) raise the same clear errors as the ETL.
    """
    inputs: dict[str, dict] = {}
    for name, source in ingest.locate_timj(timj).items():
        if source.member is None:
            digest = file_sha256(source.path)
        else:
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
        inputs[name] = {"file": source.display, "sha256": digest}
    spotify = Path(spotify)
    if not spotify.is_file():
        raise ingest.InputError(spotify, "file not found")
    inputs["spotify"] = {"file": str(spotify), "sha256": file_sha256(spotify)}
    truth = ingest.locate_truth(timj)
    if truth is not None:
        for path in sorted(truth.glob("*.parquet")):
            inputs["truth_" + path.stem] = {"file": str(path), "sha256": file_sha256(path)}
        if (truth / "params.json").is_file():
            inputs["truth_params"] = {
                "file": str(truth / "params.json"),
                "sha256": file_sha256(truth / "params.json"),
            }
    return inputs


def build_decision(
    timj: Path, spotify: Path, warehouse: Path | None = None, params: BuildParams | None = None
) -> dict:
    """Whether the warehouse must be rebuilt, and why (``{"rebuild": bool, "reason": ...}``),
    with how long the check took (``timing``: recorded with the build, or the skipped row)."""
    start = time.perf_counter()
    decision = _decide(timj, spotify, warehouse, params)
    return {**decision, "timing": Timing.since("check inputs", start).as_json()}


def _decide(timj: Path, spotify: Path, warehouse: Path | None, params: BuildParams | None) -> dict:
    params = params or BuildParams()
    settings = get_settings()
    try:
        fingerprint = records.inputs_fingerprint(fingerprint_inputs(timj, spotify))
    except JamrecError as exc:
        # Unreadable inputs: build anyway, so the build fails where it reads them and the
        # failure is recorded in `builds` like any other.
        return {"rebuild": True, "reason": f"the inputs cannot be fingerprinted ({exc})"}
    decision: dict[str, Any] = {
        "rebuild": True,
        "inputs_fingerprint": fingerprint,
        "code_version": code_version(),
        "parameters": params.model_dump(),
    }
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    if not store.exists():
        return {**decision, "reason": "no warehouse yet"}
    try:
        con = store.connect_readonly()
    except WarehouseLockedError:
        raise
    except JamrecError as exc:
        # A damaged warehouse is no reason to skip: the build says what is wrong with it.
        return {**decision, "reason": f"the published warehouse cannot be read ({exc})"}
    try:
        last = con.execute(
            "select build_id, inputs_fingerprint, parameters, code_version from published_build"
        ).fetchone()
    finally:
        con.close()
    if last is None:
        return {**decision, "reason": "no published build yet"}
    build_id, last_fingerprint, last_params, last_code = last
    last_params = {
        k: v for k, v in json.loads(last_params or "{}").items() if k in decision["parameters"]
    }
    if last_fingerprint != fingerprint:
        reason = f"the inputs changed since build {build_id}"
    elif last_params != decision["parameters"]:
        reason = (
            f"the build parameters changed since build {build_id} "
            f"({last_params} -> {decision['parameters']})"
        )
    elif last_code != decision["code_version"]:
        reason = (
            f"the code changed since build {build_id} ({last_code} -> {decision['code_version']})"
        )
    else:
        return {
            **decision,
            "rebuild": False,
            "reason": f"inputs, parameters and code match build {build_id}",
            "build_id": build_id,
        }
    return {**decision, "reason": reason}


def record_skipped(decision: dict, warehouse: Path | None = None) -> str:
    """Add a ``skipped`` row to ``builds`` for a build that did not need to run."""
    settings = get_settings()
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    build_id = new_build_id()
    with store.update(f"record skipped build {build_id}") as con:
        records.register(con, build_id, now(), decision["parameters"])
        con.execute(
            "update builds set status = 'skipped', finished_at = $t, inputs_fingerprint = $f, "
            "note = $why where build_id = $id",
            {
                "t": now(),
                "f": decision["inputs_fingerprint"],
                "why": decision["reason"],
                "id": build_id,
            },
        )
        if "timing" in decision:
            timings.insert(con, [Timing.from_json(decision["timing"])], build_id)
    log.info("build skipped: %s (recorded as %s)", decision["reason"], build_id)
    return build_id


def skip_message(decision: dict) -> str:
    """What a skipped build says (log line, flow-run state message, CLI)."""
    return (
        f"nothing to build: the inputs, parameters and code match published build "
        f"{decision['build_id']}, which already holds them (force rebuilds: --force, or the "
        "flow's force=true)"
    )


def skipped_summary(decision: dict, warehouse: Path | None, recorded_as: str) -> dict:
    """The summary of a skipped build (what :func:`jamrec.build.pipeline.run_build` and the
    ``build-warehouse`` flow return): the published build that holds these inputs."""
    store = Warehouse(Path(warehouse or get_settings().warehouse))
    return {
        "skipped": True,
        "build_id": decision["build_id"],
        "recorded_as": recorded_as,
        "warehouse": str(store.path),
        "reason": decision["reason"],
        "message": skip_message(decision),
    }
