"""`bench/report_memory.py --smoke` builds a small store, reports a 30-day and a one-day
window split into shares and in one pass, and finds the same report each way (issue 17;
the full-size figures are in docs/STORE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _bench import run_smoke


@pytest.mark.skipif(not Path("/usr/bin/time").exists(), reason="GNU time is not installed")
def test_report_memory_smoke_measures_both_windows_alike(tmp_path: Path) -> None:
    results, printed = run_smoke(
        "report_memory.py", tmp_path / "figures.json", "--baseline", "", "--work",
        str(tmp_path / "work"),
    )  # fmt: skip
    assert results["events"] > 2_000 * 2  # enough events for the 30 days to be split
    assert set(results["runs"]) == {"30d", "1d"}
    for runs in results["runs"].values():
        assert set(runs) == {"after", "after, one pass"}
        assert all(run["peak_rss_mb"] > 0 and run["wall_s"] > 0 for run in runs.values())
    assert results["goals"]["peak_30d_under_1_gib"] is True
    assert "peak_30d_over_1d" in printed
    assert not list((tmp_path / "work").glob("*.log"))  # the generated log is removed
