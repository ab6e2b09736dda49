"""The store as Delta tables (issue 17), locally and on S3: moto's S3 server on 127.0.0.1,
started by a fixture on a free port, stands in for the object store.

Ingest, report, export and prune through the command line on S3 give what they give on a
local store; two ingests racing (threads, processes) leave each event once and a catalogue
that knows every input; `store migrate` moves the stores of version 1 (tests/data/store_v1,
store_v2, a generated one) with the same events, records, catalogue and state; DuckDB and
polars read the table; a bad URL, a missing bucket are one line.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from _cli import invoke
from bounce_analyzer import ingest as ingest_module
from bounce_analyzer import store as store_module
from bounce_analyzer.errors import StoreError
from bounce_analyzer.generate import generate_postfix
from bounce_analyzer.ingest import _catalogue, ingest_paths, ingest_run
from bounce_analyzer.migrate import migrate_store
from bounce_analyzer.pipeline import Chunk, FileSummary, ParseRun
from bounce_analyzer.store import (
    DeltaStaging,
    DeltaStore,
    LostRace,
    Store,
    find_resume,
    open_store,
    scan_events,
    scan_quarantine,
)


def _log(folder: Path, seed: int, *, lines: int = 2000, host: str = "mx1") -> Path:
    """A generated Postfix log of two UTC days, from host `host`."""
    path = folder / f"{host}-{seed}.log"
    generate_postfix(
        path, lines=lines, seed=seed, start=datetime(2026, 11, 20), days=2, tz="UTC", host=host
    )
    return path


def _ids(store: str | Path) -> list[str]:
    return scan_events(store).select("event_id").collect()["event_id"].to_list()


def _events(store: str | Path) -> pl.DataFrame:
    return scan_events(store).collect().sort("event_id")


# --- local Delta stores: the default -------------------------------------------------------------


def test_a_new_store_is_a_delta_table_other_engines_read(tmp_path: Path) -> None:
    log = _log(tmp_path, 1)
    store = tmp_path / "store"
    result = ingest_paths(store, [str(log)], tz="UTC")
    opened = open_store(store, create=False)
    assert isinstance(opened, DeltaStore)
    assert json.loads((store / "_bounce_analyzer" / "store.json").read_text())["version"] == 2
    assert result.events > 300
    # the same events as a store of version 1 holds
    old = tmp_path / "old"
    assert ingest_paths(open_store(old, create=True, version=1), [str(log)], tz="UTC").events == (
        result.events
    )
    assert isinstance(open_store(old, create=False), Store)
    assert_frame_equal(_events(store), _events(old))
    # polars reads the table itself, partitions and all
    table = pl.scan_delta(str(store / "events"))
    by_day = table.group_by("date").len().sort("date").collect()
    expected = (
        _events(old)
        .group_by(pl.col("timestamp").dt.strftime("%Y-%m-%d").alias("date"))
        .len()
        .sort("date")
    )
    assert_frame_equal(by_day, expected, check_dtypes=False)
    # DuckDB reads it through Arrow (its delta extension cannot be downloaded offline)
    from deltalake import DeltaTable

    connection = duckdb.connect()
    connection.register("events", DeltaTable(str(store / "events")).to_pyarrow_dataset())
    query = "SELECT date, count(*) FROM events GROUP BY date ORDER BY date"
    rows = connection.sql(query).fetchall()
    assert rows == list(expected.iter_rows())
    # per-file statistics: other engines skip files outside a window
    stats = [
        json.loads(action["add"]["stats"])
        for line in sorted((store / "events" / "_delta_log").glob("*.json"))
        for action in map(json.loads, line.read_text().splitlines())
        if "add" in action
    ]
    assert sum(s["numRecords"] for s in stats) == result.events
    assert all(s["minValues"]["timestamp"] <= s["maxValues"]["timestamp"] for s in stats)
    # the same log again adds nothing; the catalogue knows it
    assert ingest_paths(store, [str(log)], tz="UTC").events == 0
    assert len(opened.catalogue()) == 1


def test_a_reader_reads_one_version_while_a_prune_removes_days(tmp_path: Path) -> None:
    store = tmp_path / "store"
    total = ingest_paths(store, [str(_log(tmp_path, 2))], tz="UTC").events
    opened = open_store(store, create=False)
    assert [str(day) for day in opened.days()] == ["2026-11-20", "2026-11-21"]
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    (old_day,) = opened.old_days(timedelta(days=1), now=now)
    with opened.reading() as view:
        before = view.scan_events()
        removed = opened.prune(timedelta(days=1), now=now)
        assert removed == old_day.events > 0
        # the scan listed the version before the prune: its files are still there to read
        assert before.select(pl.len()).collect().item() == total
    assert len(_ids(store)) == total - removed
    assert [str(day) for day in opened.days()] == ["2026-11-21"]


# --- on S3 --------------------------------------------------------------------------------------


def test_ingest_report_export_prune_on_s3(tmp_path: Path, bucket: str) -> None:
    log = _log(tmp_path, 3)
    url = f"s3://{bucket}/mail/bounces"
    local = tmp_path / "local"
    ingested = invoke("ingest", "--store", url, "--tz", "UTC", str(log))
    assert ingested.exit_code == 0, ingested.output
    assert invoke("ingest", "--store", str(local), "--tz", "UTC", str(log)).exit_code == 0
    assert_frame_equal(_events(url), _events(local))
    since = ("--since", "2026-11-01", "--format", "json")
    remote = invoke("report", "--store", url, *since)
    assert remote.exit_code == 0, remote.output
    assert remote.stdout == invoke("report", "--store", str(local), *since).stdout
    assert json.loads(remote.stdout)["totals"]
    exported = tmp_path / "events.parquet"
    result = invoke("export", "--store", url, "--since", "2026-11-01", "-o", str(exported))
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(exported).height == len(_ids(url))
    again = invoke("ingest", "--store", url, "--tz", "UTC", str(log))
    assert again.output.endswith("0 new events, 0 malformed set aside, 0 duplicates dropped\n")
    days_before = open_store(url, create=False).days()
    pruned = invoke("prune", "--store", url, "--older-than", "1d", "--yes")
    assert pruned.exit_code == 0, pruned.output
    assert open_store(url, create=False).days() == []
    assert len(days_before) == 2 and _ids(url) == []
    # the objects are where the layout says
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert "mail/bounces/_bounce_analyzer/store.json" in keys
    assert any(key.startswith("mail/bounces/events/_delta_log/") for key in keys)


def test_bad_store_urls_are_one_line(tmp_path: Path, s3_endpoint: str) -> None:
    for url, why in [
        ("s3://", "s3://: not a valid S3 location (s3://bucket/prefix)"),
        ("gs://bucket/x", "gs://bucket/x: unsupported store URL"),
        ("s3://no-such-bucket-here/x", "s3://no-such-bucket-here/x: the bucket does not exist"),
    ]:
        result = invoke("report", "--store", url, "--since", "1d")
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and why in result.output, result.output
        assert result.output.count("\n") == 1, result.output
    log = _log(tmp_path, 4, lines=200)
    result = invoke("ingest", "--store", "s3://no-such-bucket-here/x", "--tz", "UTC", str(log))
    assert result.exit_code == 1
    assert result.output == (
        "Error: cannot open the store s3://no-such-bucket-here/x: the bucket does not exist\n"
    )


# --- racing ingests -----------------------------------------------------------------------------


def _racing_logs(folder: Path) -> list[Path]:
    return [_log(folder, seed, lines=1500, host=f"mx{seed}") for seed in (11, 12, 13)]


def test_two_ingests_racing_in_threads_on_s3(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = _racing_logs(tmp_path)
    url = f"s3://{bucket}/race"
    open_store(url, create=True)
    # Each commit waits between its steps, so that the two runs are in them at once.
    monkeypatch.setattr(store_module, "between_steps", lambda: time.sleep(0.05))
    barrier = threading.Barrier(2)
    results = []
    errors: list[BaseException] = []

    def run(paths: list[Path]) -> None:
        barrier.wait()
        try:
            results.append(ingest_paths(url, [str(p) for p in paths], tz="UTC"))
        except BaseException as error:  # (reported below)
            errors.append(error)

    threads = [threading.Thread(target=run, args=(group,)) for group in ([a, b], [b, c])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    reference = ingest_paths(tmp_path / "one", [str(a), str(b), str(c)], tz="UTC")
    ids = _ids(url)
    assert len(ids) == len(set(ids)) == reference.events
    assert sum(result.events for result in results) == reference.events
    assert ingest_paths(url, [str(a), str(b), str(c)], tz="UTC").events == 0
    assert len(open_store(url, create=False).catalogue()) == 3


RACER = """
import sys, time
from pathlib import Path
from bounce_analyzer import store
from bounce_analyzer.errors import StoreError
from bounce_analyzer.generate import generate_postfix
from bounce_analyzer.ingest import _catalogue, ingest_paths, ingest_run
store.between_steps = lambda: time.sleep(0.05)
go, target, *paths = sys.argv[1:]
while not Path(go).exists():
    time.sleep(0.001)
print(ingest_paths(target, paths, tz="UTC").events)
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_ingests_racing_in_processes(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    a, b, c = _racing_logs(tmp_path)
    if where == "s3":
        target = f"s3://{request.getfixturevalue('bucket')}/race"
    else:
        target = str(tmp_path / "store")
    open_store(target, create=True)
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(go), target, *map(str, group)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for group in ([a, b], [b, c])
    ]
    go.touch()
    added = 0
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        added += int(out.decode().split()[-1])
    reference = ingest_paths(tmp_path / "one", [str(a), str(b), str(c)], tz="UTC")
    ids = _ids(target)
    assert len(ids) == len(set(ids)) == reference.events == added
    assert len(open_store(target, create=False).catalogue()) == 3


# --- store migrate ------------------------------------------------------------------------------


def _quarantine(store: str | Path) -> pl.DataFrame:
    return scan_quarantine(store).collect().sort("origin", "raw")


@pytest.mark.parametrize("name", ["store_v1", "store_v2"])
def test_migrate_the_stores_of_earlier_versions(tmp_path: Path, data_path: Path, name: str) -> None:
    source = data_path / name
    target = tmp_path / "delta"
    result = invoke("store", "migrate", str(source), str(target), "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.endswith("the counts of every day match\n")
    assert_frame_equal(_events(target), _events(source))
    assert_frame_equal(_quarantine(target), _quarantine(source))
    old, new = open_store(source, create=False), open_store(target, create=False)
    assert new.catalogue() == old.catalogue()
    assert new.days() == old.days()


def test_migrate_a_generated_store_resumes_and_carries_catalogue_and_state(
    tmp_path: Path, bucket: str
) -> None:
    log = _log(tmp_path, 5)
    head = log.read_bytes()
    cut = head.rindex(b"\n", 0, len(head) // 2) + 1
    live = tmp_path / "live.log"
    live.write_bytes(head[:cut])  # a live log read half-way: its sources carry state
    source = tmp_path / "v1"
    ingest_paths(open_store(source, create=True, version=1), [str(live)], tz="UTC")
    assert list((source / "state").iterdir())
    url = f"s3://{bucket}/migrated"

    class Killed(Exception):
        pass

    def kill_after_first(step: str) -> None:
        raise Killed(step)

    with pytest.raises(Killed):
        migrate_store(source, url, progress=kill_after_first)  # killed after its first day
    done = migrate_store(source, url)
    assert done.committed == 2 * done.days - 1  # the day-tables (events, quarantine) left
    assert_frame_equal(_events(url), _events(source))
    assert_frame_equal(_quarantine(url), _quarantine(source))
    assert migrate_store(source, url).committed == 0  # done: nothing again
    # the rest of the live log goes on from the carried state, in both stores alike
    live.write_bytes(head)
    ingest_paths(source, [str(live)], tz="UTC")
    assert ingest_paths(url, [str(live)], tz="UTC").events > 0
    assert_frame_equal(_events(url), _events(source))
    once = tmp_path / "once"
    ingest_paths(once, [str(log)], tz="UTC")
    assert_frame_equal(
        _events(url).drop("origin"), _events(once).drop("origin"), check_row_order=False
    )
    with pytest.raises(StoreError, match="holds events of its own"):
        migrate_store(source, url)  # ingested into since: not again


def test_migrate_refuses_a_store_with_events_of_its_own(tmp_path: Path, data_path: Path) -> None:
    target = tmp_path / "delta"
    ingest_paths(target, [str(_log(tmp_path, 6, lines=200))], tz="UTC")
    result = invoke("store", "migrate", str(data_path / "store_v2"), str(target))
    assert result.exit_code == 1
    assert result.output == f"Error: {target} holds events of its own: migrate into a new store\n"


# --- the optimistic lock ------------------------------------------------------------------------


def test_of_two_runs_that_read_one_catalogue_the_second_to_commit_loses(tmp_path: Path) -> None:
    a, b = _log(tmp_path, 21, lines=600), _log(tmp_path, 22, lines=600, host="mx2")
    store = open_store(tmp_path / "store", create=True)
    assert isinstance(store, DeltaStore)

    def stage(staging: DeltaStaging, log: Path) -> list[FileSummary]:
        run = ParseRun([str(log)], tz="UTC", hold_partial=True)
        run.resume = lambda _input, head: find_resume(staging.catalogue, head)
        for chunk in run:
            staging.add(chunk.events, chunk.malformed, input_head=chunk.head, input_path=chunk.path)
        return run.summaries

    with store.staging() as first, store.staging() as second:
        first_read, second_read = stage(first, a), stage(second, b)
        first.commit(_catalogue(first.catalogue, first_read, first.read_at))
        written = sorted((tmp_path / "store" / "events").glob("date=*/part-*.parquet"))
        with pytest.raises(LostRace):
            second.commit(_catalogue(second.catalogue, second_read, second.read_at))
    # the loser's files are gone; the winner's are the table's
    assert sorted((tmp_path / "store" / "events").glob("date=*/part-*.parquet")) == written
    assert [entry.path for entry in store.catalogue()] == [str(a)]
    # standard input cannot be read again: a run of it that loses stops, saying so
    monkey = pytest.MonkeyPatch()
    with monkey.context() as patch:
        patch.setattr(DeltaStaging, "commit", lambda *_, **__: (_ for _ in ()).throw(LostRace("x")))
        patch.setattr(ingest_module.time, "sleep", lambda _: None)
        with pytest.raises(StoreError, match="while this one read standard input"):
            ingest_run(store, lambda resume: Nothing(), again=False)
        with pytest.raises(StoreError, match="20 other ingests committed while this one ran"):
            ingest_run(store, lambda resume: Nothing())


class Nothing:
    """A run that reads nothing (`ingest.RunLike`)."""

    summaries: list[FileSummary] = []

    def __iter__(self) -> Iterator[Chunk]:
        return iter(())


def test_a_killed_runs_catalogue_of_the_same_version_is_not_taken(tmp_path: Path) -> None:
    """A run killed after writing its catalogue file, before its commit, leaves a file of the
    version another run committed: the log's commit says which file is current."""
    log = _log(tmp_path, 23, lines=300)
    store = tmp_path / "store"
    ingest_paths(store, [str(log)], tz="UTC")
    meta = store / "_bounce_analyzer"
    (current,) = meta.glob("catalogue-00000001-*.json")
    (meta / "catalogue-00000001-20261207T000000Z-deadbeef.json").write_text('{"inputs": []}')
    assert [entry.path for entry in open_store(store, create=False).catalogue()] == [str(log)]
    assert ingest_paths(store, [str(log)], tz="UTC").events == 0
    assert current.name in {path.name for path in meta.glob("catalogue-*.json")}


def test_a_full_disk_while_writing_leaves_the_delta_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _log(tmp_path, 24, lines=400), _log(tmp_path, 25, lines=400, host="mx2")
    root = tmp_path / "store"
    assert invoke("ingest", "--store", str(root), "--tz", "UTC", str(first)).exit_code == 0
    before = sorted(_ids(root))
    files = sorted(root.rglob("*"))
    real = store_module._parquet_writer
    calls = [0]

    def full(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "_parquet_writer", full)
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(second))
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write to the store {root}: No space left on device\n"
    assert sorted(_ids(root)) == before
    assert sorted(root.rglob("*")) == files  # what the run wrote is gone
    monkeypatch.undo()
    assert ingest_paths(root, [str(second)], tz="UTC").events > 0
