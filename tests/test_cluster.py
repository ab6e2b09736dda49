"""Ingest on a Dask cluster (issue 17, cluster.py): four servers' rotated logs read on two worker
processes give the store one single-process ingest gives (events, set-aside records, catalogue,
the sources' carried state), and so does the next run over the grown logs; a failed task leaves
the store as it was; without the options nothing of Dask is imported.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from bounce_analyzer.cli import app
from bounce_analyzer.cluster import ingest_on_cluster, log_sets
from bounce_analyzer.errors import UsageError
from bounce_analyzer.generate import generate_exim, generate_postfix
from bounce_analyzer.ingest import IngestResult, ingest_paths
from bounce_analyzer.reading import InputFile, expand_inputs, total_size
from bounce_analyzer.sources import get_source
from bounce_analyzer.store import DeltaStaging, open_store, scan_events, scan_quarantine

distributed = pytest.importorskip("distributed")

#: When the runs happen, and the logs' modification time (the year of a syslog stamp).
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

#: Each server's log: (folder, the log's name, its format, the generator's seed).
SERVERS = [
    ("mx1", "mail.log", "postfix", 11),
    ("mx2", "mail.log", "postfix", 12),
    ("ex1", "mainlog", "exim", 13),
    ("ex2", "mainlog", "exim", 14),
]

#: A line no source reads (Postfix sets it aside as malformed).
DAMAGED = b"%% a damaged line\n"


def _lines(folder: Path, name: str, fmt: str, seed: int) -> list[bytes]:
    """A generated log of 4,000 lines over two days, as its lines."""
    generated = folder / f"{name}.generated"
    start = datetime(2026, 11, 20)
    if fmt == "postfix":
        generate_postfix(generated, lines=4000, seed=seed, start=start, days=2, host=folder.name)
    else:
        generate_exim(generated, lines=4000, seed=seed, start=start, days=2)
    lines = generated.read_bytes().splitlines(keepends=True)
    generated.unlink()
    return lines


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.utime(path, (NOW.timestamp(), NOW.timestamp()))


def make_logs(root: Path) -> dict[Path, bytes]:
    """Four servers' logs as logrotate leaves them (`.3.gz`, `.2.gz`, `.1`, the live log), cut
    at line ends that messages span; one with a damaged line. Returns what each live log
    grows by before the next run."""
    growth = {}
    for folder_name, name, fmt, seed in SERVERS:
        folder = root / folder_name
        folder.mkdir(parents=True)
        lines = _lines(folder, name, fmt, seed)
        if folder_name == "mx2":
            lines.insert(1500, DAMAGED)
        cuts = [0, 700, 1500, 2300, 3100, len(lines)]
        parts = [b"".join(lines[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
        _write(folder / f"{name}.3.gz", gzip.compress(parts[0]))
        _write(folder / f"{name}.2.gz", gzip.compress(parts[1]))
        _write(folder / f"{name}.1", parts[2])
        _write(folder / name, parts[3])
        growth[folder / name] = parts[4]
    return growth


def grow(growth: dict[Path, bytes]) -> None:
    for path, data in growth.items():
        _write(path, path.read_bytes() + data)


def state_of(store: Path) -> dict[str, pl.DataFrame]:
    """The state the sources carry to the next run, as a source takes it in (ordered, its
    line numbers renumbered)."""
    with open_store(store, create=False).staging() as staging:
        carried = staging.carried_state()
    taken = {}
    for name, frame in carried.items():
        source = get_source(name, tz="UTC")
        source.import_state(frame)  # type: ignore[attr-defined]
        taken[name] = source.export_state()  # type: ignore[attr-defined]
    return taken


def assert_same_store(store: Path, expected: Path) -> None:
    """`store` holds what `expected` holds: events, set-aside records, catalogue, state."""
    assert_frame_equal(
        scan_events(store).collect().sort("event_id"),
        scan_events(expected).collect().sort("event_id"),
    )
    quarantined = [
        scan_quarantine(path).collect().drop("run_id").sort("origin") for path in (store, expected)
    ]
    assert quarantined[0].height > 0
    assert_frame_equal(*quarantined)
    assert open_store(store, create=False).catalogue() == (
        open_store(expected, create=False).catalogue()
    )
    state, expected_state = state_of(store), state_of(expected)
    assert sorted(state) == sorted(expected_state) == ["exim", "postfix"]
    for name, frame in expected_state.items():
        assert_frame_equal(state[name], frame)


def same_result(result: IngestResult, expected: IngestResult) -> None:
    assert result.events_by_type == expected.events_by_type
    assert (result.malformed, result.duplicates) == (expected.malformed, expected.duplicates)
    assert [vars(summary) for summary in result.files] == [
        vars(summary) for summary in expected.files
    ]


@pytest.fixture(scope="module")
def scheduler() -> object:
    """The address of a local Dask cluster of two worker processes, for the module's tests."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def test_four_servers_on_two_workers_store_what_one_process_stores(
    tmp_path: Path, scheduler: str
) -> None:
    logs = tmp_path / "logs"
    growth = make_logs(logs)
    paths = [str(logs)]
    counted: dict[str, list[int]] = {"one": [], "cluster": []}
    one = ingest_paths(tmp_path / "one", paths, tz="UTC", now=NOW, progress=counted["one"].append)
    on_cluster = ingest_on_cluster(
        tmp_path / "cluster",
        paths,
        address=scheduler,
        tz="UTC",
        now=NOW,
        progress=counted["cluster"].append,
    )
    # Progress counts the bytes read as a single run does (the bar's total: sizes on disk).
    assert sum(counted["cluster"]) == sum(counted["one"]) == total_size(expand_inputs(paths))
    assert len(on_cluster.files) == 16 and on_cluster.events > 4 * 500
    assert on_cluster.malformed == 1 and on_cluster.duplicates == 0
    same_result(on_cluster, one)
    assert_same_store(tmp_path / "cluster", tmp_path / "one")
    # Messages left open in the live logs: the next run continues them from the state.
    assert all(frame.height for frame in state_of(tmp_path / "cluster").values())

    # The logs grow; the next run adds what a single process's next run adds.
    grow(growth)
    one = ingest_paths(tmp_path / "one", paths, tz="UTC", now=NOW)
    on_cluster = ingest_on_cluster(
        tmp_path / "cluster", paths, address=scheduler, tz="UTC", now=NOW
    )
    assert on_cluster.events > 4 * 100 and on_cluster.duplicates == 0
    same_result(on_cluster, one)
    assert_same_store(tmp_path / "cluster", tmp_path / "one")


def test_a_failed_task_fails_the_run_and_stores_nothing(tmp_path: Path, scheduler: str) -> None:
    logs = tmp_path / "logs"
    make_logs(logs)
    with pytest.raises(Exception) as single:
        ingest_paths(tmp_path / "one", [str(logs)], tz="UTC", strict=True, now=NOW)
    store = tmp_path / "cluster"
    with pytest.raises(type(single.value)) as failed:
        ingest_on_cluster(store, [str(logs)], address=scheduler, tz="UTC", strict=True, now=NOW)
    assert str(failed.value) == str(single.value)
    assert str(failed.value).startswith(f"{logs}/mx2/mail.log.1:1: ")
    assert scan_events(store).select(pl.len()).collect().item() == 0
    assert open_store(store, create=False).catalogue() == []
    # (a Delta store: what the tasks wrote into the tables' folders is gone)
    assert sorted(path.name for path in store.iterdir()) == [
        "_bounce_analyzer",
        "events",
        "quarantine",
    ]
    assert list(store.glob("*/date=*/part-*.parquet")) == []


def test_the_cli_with_workers_prints_what_a_single_ingest_prints(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    make_logs(logs)
    runner = CliRunner()
    outputs = []
    for store, more in (("one", []), ("cluster", ["--workers", "2"])):
        args = ["ingest", "--store", str(tmp_path / store), "--tz", "UTC", *more, str(logs)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append(result.stderr)
    assert outputs[1] == outputs[0]
    assert outputs[0].startswith("ingested 16 files: ")
    assert_frame_equal(
        scan_events(tmp_path / "cluster").collect().sort("event_id"),
        scan_events(tmp_path / "one").collect().sort("event_id"),
    )


def test_log_sets_are_a_log_and_its_rotated_files_in_reading_order(tmp_path: Path) -> None:
    for name in ("a/mail.log", "a/mail.log.1", "a/mail.log.2.gz", "a/mail.err", "b/mail.log",
                 "b/mail.log-20261120", "c.log"):  # fmt: skip
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    sets = log_sets(expand_inputs([str(tmp_path)]))
    names = [[os.path.relpath(item.path, tmp_path) for item in group] for group in sets]
    assert names == [
        ["a/mail.err"],
        ["a/mail.log.2.gz", "a/mail.log.1", "a/mail.log"],
        ["b/mail.log-20261120", "b/mail.log"],
        ["c.log"],
    ]
    with pytest.raises(UsageError, match=r"^<stdin>: --workers and --cluster read files"):
        log_sets([InputFile(path="-")])


def test_an_ordinary_ingest_imports_nothing_of_dask(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    generate_postfix(log, lines=200, seed=1, start=datetime(2026, 11, 20))
    script = (
        "import sys\n"
        "from bounce_analyzer.cli import main\n"
        f"sys.argv = ['bounce-analyzer', 'ingest', '--quiet', '--store', {str(tmp_path / 's')!r},"
        f" {str(log)!r}]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    assert scan_events(tmp_path / "s").select(pl.len()).collect().item() > 0


def test_options_that_cannot_run_on_a_cluster_are_usage_errors(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    generate_postfix(log, lines=100, seed=1, start=datetime(2026, 11, 20))
    runner = CliRunner()
    store = ["--store", str(tmp_path / "s")]
    both = runner.invoke(
        app, ["ingest", *store, "--workers", "2", "--cluster", "tcp://h:8786", str(log)]
    )
    assert (both.exit_code, both.stderr) == (2, "Error: give either --workers or --cluster\n")
    piped = runner.invoke(app, ["ingest", *store, "--workers", "2", "-"], input=log.read_bytes())
    assert piped.exit_code == 2
    assert piped.stderr == (
        "Error: <stdin>: --workers and --cluster read files (a worker cannot read this "
        "process's stdin or pipes)\n"
    )
    assert not (tmp_path / "s").exists()  # (nothing made before the options are checked)


def test_a_scheduler_that_cannot_be_reached_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bounce_analyzer import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    log = tmp_path / "mail.log"
    generate_postfix(log, lines=100, seed=1, start=datetime(2026, 11, 20))
    result = CliRunner().invoke(
        app, ["ingest", "--store", str(tmp_path / "s"), "--cluster", "tcp://127.0.0.1:9", str(log)]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: cannot reach the Dask scheduler at tcp://127.0.0.1:9: ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_files_a_worker_staged_out_of_sight_stop_the_run(tmp_path: Path) -> None:
    from bounce_analyzer import cluster
    from bounce_analyzer.errors import ClusterError
    from bounce_analyzer.store import StagedFiles

    here = tmp_path / "part-0.parquet"
    here.write_bytes(b"")
    elsewhere = str(tmp_path / "not-here" / "part-1.parquet")
    seen = cluster._Done(StagedFiles(events={"2026-11-20": [str(here)]}), [], {}, 0)
    cluster._check_shared([seen])  # (a file this machine sees; and one at a URL)
    at_url = StagedFiles(events={"2026-11-20": ["s3://bucket/store/events/part-1.parquet"]})
    cluster._check_shared([cluster._Done(at_url, [], {}, 0)])
    unseen = cluster._Done(StagedFiles(quarantine={"2026-11-20": [elsewhere]}), [], {}, 0)
    with pytest.raises(ClusterError, match="must be on a file system every worker shares"):
        cluster._check_shared([seen, unseen])


def test_merged_table_keeps_what_no_part_touched_then_each_parts_changes() -> None:
    from bounce_analyzer.sources._carry import merged_table

    def table(*rows: tuple[str, str | None]) -> pl.DataFrame:
        return pl.DataFrame(rows, schema={"id": pl.String(), "sender": pl.String()}, orient="row")

    before = table(("a", "s1"), ("b", None), ("c", "s3"))
    # One part closed b and opened x; the other gave b a sender (moved to the end) and
    # opened y; a third touched nothing.
    parts = [
        table(("a", "s1"), ("c", "s3"), ("x", "s4")),
        table(("a", "s1"), ("c", "s3"), ("b", "s2"), ("y", None)),
        before,
    ]
    assert_frame_equal(
        merged_table(before, parts),
        table(("a", "s1"), ("c", "s3"), ("x", "s4"), ("b", "s2"), ("y", None)),
    )


def test_a_run_that_loses_the_race_to_commit_goes_again(
    tmp_path: Path, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another ingest commits to the Delta store while the cluster's run is about to: the
    cluster's commit loses, its files go, and it reads its log sets again from the catalogue
    the other left; the store ends as the two runs one after the other leave it."""
    logs = tmp_path / "logs"
    make_logs(logs)
    servers = sorted(str(path) for path in logs.iterdir())
    mine, other = [servers[0], servers[1]], [servers[1], servers[2]]  # one server in both
    expected = tmp_path / "expected"
    ingest_paths(expected, other, tz="UTC", now=NOW)
    ingest_paths(expected, mine, tz="UTC", now=NOW)

    commits: list[str] = []
    real_commit = DeltaStaging.commit

    def commit_after_another(self: DeltaStaging, *args: Any, **kwargs: Any) -> Any:
        commits.append(self.run_id)
        if len(commits) == 1:  # the first attempt: another run commits first
            ingest_paths(self.store.path, other, tz="UTC", now=NOW)
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(DeltaStaging, "commit", commit_after_another)
    store = tmp_path / "store"
    result = ingest_on_cluster(store, mine, address=scheduler, tz="UTC", now=NOW)
    # The cluster's first attempt (lost), the other run's (which went through the same
    # method), the cluster's second (committed).
    assert len(commits) == 3 and commits[2] not in commits[:2]
    # The server both read was stored once, by the other run: the second attempt found its
    # logs read.
    assert result.duplicates == 0
    assert_frame_equal(
        scan_events(store).collect().sort("event_id"),
        scan_events(expected).collect().sort("event_id"),
    )
    assert open_store(store, create=False).catalogue() == (
        open_store(expected, create=False).catalogue()
    )
    # The lost attempt's files (its workers wrote them into the table's folders) are gone.
    assert list(store.glob(f"events/date=*/part-{commits[2]}-set-*.parquet"))
    assert not list(store.glob(f"events/date=*/part-{commits[0]}-*.parquet"))
