"""`bench/memory.py --smoke` builds every input, runs every case and reports its peak memory
(issue 12; the full-size figures are in docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CASES = ["long-line", "zstd-bomb", "pretty-array", "open-queue-ids", "export", "export-csv"]


@pytest.mark.skipif(shutil.which("time") is None and not Path("/usr/bin/time").exists(),
                    reason="GNU time is not installed")  # fmt: skip
def test_memory_smoke_runs_every_case_under_a_gib(tmp_path: Path) -> None:
    figures = tmp_path / "memory.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "memory.py"), "--smoke",
         "--out", str(tmp_path / "work"), "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(figures.read_text(encoding="utf-8"))
    assert [result["case"] for result in results] == CASES
    assert all(result["exit_code"] == 0 and result["under_1_gib"] for result in results)
    assert done.stdout.splitlines()[0].split() == ["case", "peak", "RSS", "wall", "exit", "under",
                                                    "1", "GiB"]  # fmt: skip
    assert not (tmp_path / "work" / "long-line").exists()  # inputs are removed
