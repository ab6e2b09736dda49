"""Workers' staging (`Staging.target`, `StagedWriter`, `Staging.adopt`): a run whose inputs are
parsed in parts, each part staged by its own writer (as a worker process of a cluster does),
commits the same store as one run over the same inputs (in a local store, and in a Delta store
on moto's S3 server); a staged file from elsewhere is refused.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bounce_analyzer.ingest import IngestResult, _catalogue, ingest_paths
from bounce_analyzer.pipeline import ParseRun
from bounce_analyzer.store import StagedFiles, find_resume, open_store, scan_events


def _log(folder: Path, seed: int, host: str) -> Path:
    path = folder / f"{host}.log"
    subprocess.run(
        [sys.executable, "-m", "bounce_analyzer.generate", "postfix", "--lines", "3000",
         "--seed", str(seed), "--start", "2026-11-20T00:00:00", "--days", "2", "--tz", "UTC",
         "-o", str(path)],
        check=True,
    )  # fmt: skip
    text = path.read_text().replace(" mx1 ", f" {host} ")
    path.write_text(text)
    return path


def _in_parts(store_dir: Path | str, groups: list[list[str]]) -> IngestResult:
    store = open_store(store_dir, create=True)
    summaries = []
    with store.staging() as staging:
        for index, group in enumerate(groups):
            run = ParseRun(group, tz="UTC", hold_partial=True)
            run.resume = lambda _input, head: find_resume(staging.catalogue, head)
            writer = staging.target(f"g{index}").writer()
            for chunk in run:
                writer.add(chunk.events, chunk.malformed, input_head=chunk.head,
                           input_path=chunk.path)  # fmt: skip
            staging.adopt(writer.finish())
            summaries.extend(run.summaries)
        committed = staging.commit(_catalogue(staging.catalogue, summaries, staging.read_at))
    return IngestResult.of(committed, summaries)


def test_parts_staged_by_workers_commit_the_store_of_one_run(tmp_path: Path) -> None:
    logs = [str(_log(tmp_path, seed, f"mx{seed}")) for seed in (1, 2, 3)]
    one = ingest_paths(tmp_path / "one", logs, tz="UTC")
    parts = _in_parts(tmp_path / "parts", [logs[:2], logs[2:]])
    assert one.events == parts.events > 0
    assert parts.duplicates == 0
    order = ["event_id"]
    assert_frame_equal(
        scan_events(tmp_path / "parts").collect().sort(order),
        scan_events(tmp_path / "one").collect().sort(order),
    )
    # The catalogue knows every input: the same logs again add nothing.
    again = ingest_paths(tmp_path / "parts", logs, tz="UTC")
    assert again.events == 0
    # A part staged twice is committed once.
    twice = _in_parts(tmp_path / "twice", [logs, logs])
    assert twice.events == one.events and twice.duplicates == one.events
    assert scan_events(tmp_path / "twice").select(pl.len()).collect().item() == one.events


def test_files_staged_elsewhere_are_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store", create=True)
    with store.staging() as staging, pytest.raises(ValueError, match="not staged under"):
        staging.adopt(StagedFiles(events={"2026-11-20": [str(tmp_path / "x.parquet")]}))
    with store.staging() as staging:
        for bad in ("", "a/b", "../x", "a.b"):
            with pytest.raises(ValueError, match="invalid staging target"):
                staging.target(bad)


def test_workers_write_their_parts_into_a_delta_store_on_s3(tmp_path: Path, bucket: str) -> None:
    """A worker on another machine writes its part straight into the store's tables: its
    target's folder is the store's s3:// location; the run commits the parts once."""
    logs = [str(_log(tmp_path, seed, f"mx{seed}")) for seed in (4, 5)]
    url = f"s3://{bucket}/parts"
    assert _in_parts(url, [logs[:1], logs[1:]]).events > 0
    one = ingest_paths(tmp_path / "one", logs, tz="UTC")
    order = ["event_id"]
    assert_frame_equal(
        scan_events(url).collect().sort(order), scan_events(tmp_path / "one").collect().sort(order)
    )
    assert one.events == scan_events(url).select(pl.len()).collect().item()
    assert ingest_paths(url, logs, tz="UTC").events == 0
