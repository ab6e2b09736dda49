"""`bench/run.py --smoke` runs end to end and writes the figures the README promises (issue 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import _scripts

REPO = Path(__file__).resolve().parents[1]

#: Every command the benchmark times on each generated log (peers are off in --smoke), with
#: the parser path ours run on: side by side, the C path ("native") and the polars one.
REFERENCES = ["wc -l", "grep -c", "python loop, one regex", "polars, one regex + group-by"]
OURS = ["parse -> parquet", "ingest", "report --since 7d"]
COMMANDS = [(name, None) for name in REFERENCES] + [
    (name, path) for name in OURS for path in ("native", "polars")
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--out", str(out / "work")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "work" / "results.json").read_text(encoding="utf-8"))
    return results, done.stdout, out / "work"


@pytest.mark.slow
def test_bench_smoke_runs_every_command(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = smoke
    assert results["settings"]["sizes"] == [20_000]
    assert results["settings"]["repeat"] == 1
    assert results["settings"]["smoke"] is True
    assert results["complete"] is True
    timed = [(row["source"], row["name"], row["path"]) for row in results["runs"]]
    assert timed == [("postfix", *command) for command in COMMANDS] + [
        ("exim", *command) for command in COMMANDS
    ]
    assert results["settings"]["paths"] == ["native", "polars"]
    # What each path really ran, as `--version` says it (no C extension: both are polars).
    assert results["paths"]["polars"] == "parser: polars path (BOUNCE_ANALYZER_NATIVE=0)"
    assert results["paths"]["native"].startswith("parser: ")
    for row in results["runs"]:
        assert row["size"] == 20_000
        assert row["runs"] == 1
        assert row["wall_s"] > 0
        assert row["peak_rss_bytes"] > 0
        if row["name"].startswith("report"):
            assert row["lines_per_s"] is None
        else:
            assert row["lines_per_s"] > 0
            assert row["mb_per_s"] > 0
    parse = [row for row in results["runs"] if row["name"] == "parse -> parquet"]
    assert [row["command"][1:4] for row in parse] == [["-m", "bounce_analyzer", "parse"]] * 4
    # Each path writes its own output (and ingests into its own store).
    assert len({row["command"][-1] for row in parse}) == 4


@pytest.mark.slow
def test_bench_smoke_window_ratios_and_targets(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = smoke
    window = results["window"]
    assert window["day_lines"] == 300
    for days in (1, 60):
        assert window[f"store_{days}d"]["store_days"] == days
        assert window[f"store_{days}d"]["wall_s"] > 0
        assert window[f"store_{days}d"]["store_bytes"] > 0
    assert window["ratio_wall"] == pytest.approx(
        window["store_60d"]["wall_s"] / window["store_1d"]["wall_s"]
    )
    # Without peers, the reference programs, wc and grep are compared.
    references = ("python loop, one regex", "polars, one regex + group-by", "wc -l", "grep -c")
    assert {(r["source"], r["ours"], r["peer"], r["path"]) for r in results["ratios"]} == {
        (source, ours, peer, path)
        for source in ("postfix", "exim")
        for ours in ("parse -> parquet", "ingest")
        for peer in references
        for path in ("native", "polars")
    }
    assert all(r["speedup_wall"] > 0 and r["speedup_cpu"] >= 0 for r in results["ratios"])
    # One size: no scaling rows; the peer targets cannot be judged, the RSS ones can.
    assert results["scaling"] == []
    met = {t["target"]: t["met_wall"] for t in results["targets"]}
    for path in ("native", "polars"):
        assert met[f"parse postfix 20,000 lines >= 7x pflogsumm [{path}]"] is None
        assert met[f"parse exim 20,000 lines >= 7x eximstats [{path}]"] is None
        assert met[f"parse postfix 20,000 lines >= 10x pflogsumm [{path}]"] is None
        assert met[f"parse exim 20,000 lines >= 20x eximstats [{path}]"] is None
        assert met[f"parse postfix 20,000 lines: peak RSS < 1 GiB (GiB) [{path}]"] is True
        faster = f"parse exim 20,000 lines faster than a Python loop with one regex [{path}]"
        assert met[faster] in (True, False)
    assert results["skipped"] == ["peers (--smoke)"]


def test_paths_choose_the_environment_of_our_commands() -> None:
    bench = _scripts.load("bench_run", "bench/run.py")
    assert bench.path_env("polars")[bench.NATIVE_ENV] == "0"
    assert bench.NATIVE_ENV not in bench.path_env("native")
    rows = [
        {"name": "grep -c", "source": "exim", "size": 5, "path": None, "wall_s": 1.0},
        {"name": "ingest", "source": "exim", "size": 5, "path": "native", "wall_s": 2.0},
        {"name": "ingest", "source": "exim", "size": 5, "path": "polars", "wall_s": 3.0},
    ]
    assert bench.paths_of(rows) == ["native", "polars"]
    assert bench.find(rows, "ingest", "exim", 5, "polars")["wall_s"] == 3.0
    assert bench.find(rows, "ingest", "exim", 5)["wall_s"] == 2.0
    assert bench.find(rows, "grep -c", "exim", 5, "polars")["wall_s"] == 1.0


@pytest.mark.slow
def test_bench_smoke_describes_the_machine_and_cleans_up(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    results, stdout, work = smoke
    machine = results["machine"]
    assert machine["cores"] >= 1
    assert machine["memory_bytes"] > 0
    assert machine["polars"] == pl.__version__
    assert machine["python"] == ".".join(map(str, sys.version_info[:3]))
    assert len(results["load_average_end"]) == 3
    assert stdout.splitlines()[0].split() == [
        "source", "lines", "command", "path", "wall", "s", "cpu", "s", "lines/s", "MB/s", "RSS",
        "MiB", "x", "peer", "(wall/cpu)",
    ]  # fmt: skip
    assert "path polars: parser: polars path (BOUNCE_ANALYZER_NATIVE=0)" in stdout.splitlines()
    # The generated logs, Parquet files and stores are deleted; the results stay.
    assert sorted(p.name for p in work.iterdir()) == ["results.json"]
