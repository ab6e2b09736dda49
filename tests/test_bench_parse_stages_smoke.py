"""`bench/parse_stages.py` says where `parse` spends its CPU, stage by stage (issue 18; the
figures are in bench/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _bench import REPO


def test_parse_stages_counts_each_stage_of_a_real_log(data_path: Path, tmp_path: Path) -> None:
    figures_path = tmp_path / "stages.json"
    log = data_path / "exim" / "realistic.log"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "parse_stages.py"), str(log), "--json",
         str(figures_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    assert figures["events"] == 11  # the log's events, as `parse` counts them
    assert done.stdout.startswith(f"{log}: 11 events\n")
    # the stages the pipeline runs ahead of each other (and the source's own), and the two
    # steps timed per call
    stages = set(figures["waits"])
    assert {
        "thread ParseRun._chunks",
        "threads ParseRun._conformed (2 at once)",
        "thread Exim.parse.<locals>.<genexpr>",  # the Exim source's cut of each batch
    } <= stages
    assert all(name.startswith(("thread ", "threads ")) for name in stages)
    # what the threads of a stage on several spend advancing its items (the source's
    # stateful part), apart from their calls
    assert "its items: Exim.parse" in figures["cpu"]
    assert {"classification (calls)", "Parquet write (calls)"} <= set(figures["cpu"])
    assert figures["cpu"]["classification (calls)"] > 0
    assert 0 < figures["start-up"]["cpu"] and 0 < figures["run"]["cpu"]
    assert sum(figures["cpu"].values()) > 0
    # the threads Python did not start (polars' pool, by its name on Linux), apart from the rest
    native = figures["native threads"]
    assert all(name.endswith(" threads") and seconds >= 0.005 for name, seconds in native.items())
    assert figures["other threads"] <= figures["run"]["cpu"]
