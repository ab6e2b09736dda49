"""The store against damage, races and careless options, through the real CLI (issue 12).

Set-aside records counted once, damaged or unreadable part files named, readers that never see
half a prune, first ingests that race, `prune` that asks before it empties a store, and
timestamps no clock could have written.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from _samples import BOUNCED, BROKEN
from bounce_analyzer.store import scan_quarantine
from test_faults import invoke, write_log


def quarantined(root: Path) -> list[tuple[str, str]]:
    """(origin, raw) of each record the store set aside, sorted."""
    frame = scan_quarantine(root).select("origin", "raw").collect()
    return sorted(frame.iter_rows())


# --- the quarantine counts each record once ---------------------------------------------------


def test_identical_files_in_one_run_set_a_record_aside_once(tmp_path: Path) -> None:
    content = f"{BOUNCED}\n{BROKEN}\n".encode()
    first = write_log(tmp_path / "mail.log", content)
    copy = write_log(tmp_path / "copy.log", content)
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(first), str(copy))
    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "ingested 2 files: 1 new events (1 bounced), 1 malformed set aside, 1 duplicates dropped\n"
    )
    assert quarantined(root) == [(f"{first}:2", BROKEN)]
    report = invoke("report", "--store", str(root), "--since", "1d", "--format", "json")
    assert json.loads(report.stdout)["malformed"] == 1


def test_a_rotated_copy_read_again_sets_nothing_aside_twice(tmp_path: Path) -> None:
    """The catalogue lost (a run killed before writing it): the rotated, compressed copy is
    read again from its start, and its malformed line is known by its place in the input."""
    content = f"{BOUNCED}\n{BROKEN}\n".encode()
    live = write_log(tmp_path / "mail.log", content)
    root = tmp_path / "store"
    assert invoke("ingest", "--store", str(root), "--tz", "UTC", str(live)).exit_code == 0
    (root / "catalogue.json").unlink()
    rotated = write_log(tmp_path / "mail.log.1.gz", gzip.compress(content))
    live.unlink()
    again = invoke("ingest", "--store", str(root), "--tz", "UTC", str(rotated))
    assert again.exit_code == 0, again.output
    assert again.output.endswith("0 new events, 0 malformed set aside, 1 duplicates dropped\n")
    assert quarantined(root) == [(f"{live}:2", BROKEN)]


def test_identical_records_in_different_places_all_count(tmp_path: Path) -> None:
    """The same broken line twice in one log, and once in another log: three records."""
    one = write_log(tmp_path / "one.log", f"{BOUNCED}\n{BROKEN}\n{BROKEN}\n".encode())
    other = write_log(tmp_path / "other.log", f"{BROKEN}\n".encode())
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(one), str(other))
    assert result.exit_code == 0, result.output
    assert "3 malformed set aside" in result.output
    assert quarantined(root) == [(f"{one}:2", BROKEN), (f"{one}:3", BROKEN), (f"{other}:1", BROKEN)]
    # Both read again: nothing more.
    (root / "catalogue.json").unlink()
    again = invoke("ingest", "--store", str(root), "--tz", "UTC", str(one), str(other))
    assert "0 malformed set aside" in again.output
    assert len(quarantined(root)) == 3
