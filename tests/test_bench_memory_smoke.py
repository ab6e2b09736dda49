"""`bench/memory.py --smoke` builds every input, runs every case and reports its peak memory
(issue 12; the full-size figures are in docs/RELIABILITY.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _bench import run_smoke

CASES = ["long-line", "zstd-bomb", "pretty-array", "open-queue-ids", "export", "export-csv"]


@pytest.mark.skipif(shutil.which("time") is None and not Path("/usr/bin/time").exists(),
                    reason="GNU time is not installed")  # fmt: skip
def test_memory_smoke_runs_every_case_under_a_gib(tmp_path: Path) -> None:
    results, printed = run_smoke(
        "memory.py", tmp_path / "memory.json", "--out", str(tmp_path / "work")
    )
    assert [result["case"] for result in results] == CASES
    assert all(result["exit_code"] == 0 and result["under_1_gib"] for result in results)
    assert printed.splitlines()[0].split() == ["case", "peak", "RSS", "wall", "exit", "under",
                                               "1", "GiB"]  # fmt: skip
    assert not (tmp_path / "work" / "long-line").exists()  # inputs are removed
