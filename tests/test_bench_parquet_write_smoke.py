"""`bench/parquet_write.py` times the Parquet write of real events with statistics on every
column and on the filtered columns only (issue 18; the figures are in bench/RESULTS.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from _bench import REPO
from _cli import invoke


def test_parquet_write_times_both_settings_on_parsed_events(
    data_path: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.parquet"
    log = data_path / "exim" / "realistic.log"
    assert invoke("parse", str(log), "--tz", "UTC", "-o", str(events)).exit_code == 0
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "parquet_write.py"), str(events), "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "11 events in 1 frames"
    pattern = r"statistics on (.+): median [\d.]+ s cpu, min [\d.]+ s, ([\d,]+) bytes"
    settings = [re.fullmatch(pattern, line) for line in lines[1:]]
    assert [match.group(1) for match in settings if match] == ["every column", "timestamp"]
    every, lean = (int(match.group(2).replace(",", "")) for match in settings if match)
    assert lean < every  # the statistics of 32 columns are gone from the footer and pages
