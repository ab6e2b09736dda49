"""`bench/run.py --smoke` runs end to end and writes the figures the README promises (issue 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]

#: Every command the benchmark times on each generated log (peers are off in --smoke).
COMMANDS = [
    "wc -l",
    "grep -c",
    "python loop, one regex",
    "polars, one regex + group-by",
    "parse -> parquet",
    "ingest",
    "report --since 7d",
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
    timed = [(row["source"], row["name"]) for row in results["runs"]]
    assert timed == [("postfix", name) for name in COMMANDS] + [("exim", name) for name in COMMANDS]
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
    assert [row["command"][1:4] for row in parse] == [["-m", "bounce_analyzer", "parse"]] * 2


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
    assert {(r["source"], r["ours"], r["peer"]) for r in results["ratios"]} == {
        (source, ours, peer)
        for source in ("postfix", "exim")
        for ours in ("parse -> parquet", "ingest")
        for peer in references
    }
    assert all(r["speedup_wall"] > 0 and r["speedup_cpu"] >= 0 for r in results["ratios"])
    # One size: no scaling rows; the peer targets cannot be judged, the RSS ones can.
    assert results["scaling"] == []
    met = {t["target"]: t["met_wall"] for t in results["targets"]}
    assert met["parse postfix 20,000 lines >= 10x pflogsumm"] is None
    assert met["parse exim 20,000 lines >= 20x eximstats"] is None
    assert met["parse postfix 20,000 lines: peak RSS < 1 GiB (GiB)"] is True
    assert met["parse exim 20,000 lines faster than a Python loop with one regex"] in (True, False)
    assert results["skipped"] == ["peers (--smoke)"]


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
        "source", "lines", "command", "wall", "s", "cpu", "s", "lines/s", "MB/s", "RSS", "MiB",
        "x", "peer", "(wall/cpu)",
    ]  # fmt: skip
    # The generated logs, Parquet files and stores are deleted; the results stay.
    assert sorted(p.name for p in work.iterdir()) == ["results.json"]
