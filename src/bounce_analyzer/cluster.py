"""Ingest on a Dask cluster (issue 17): log sets read by workers, committed once.

`ingest_on_cluster` reads inputs into the store as `ingest.ingest_paths` does, with the same
store at the end, but parses and classifies them on the worker processes of a Dask cluster: a
local one of `workers` processes, or the one whose scheduler is at `address`. Dask is imported
here only, and only when a run asks for a cluster (`ingest --workers N`, `--cluster ADDRESS`).

The inputs are cut into log sets (`log_sets`): the files of one folder whose names are one name
with or without a rotation suffix (`mx1/mail.log.2.gz`, `mx1/mail.log.1`, `mx1/mail.log`), in
the order a single run reads them (rotated files oldest first). A log set is one server's log
as logrotate left it: Postfix queue ids and Exim message ids join across its files, and never
across two servers. The set is known by its path, not by the host field of its lines: an
Exim mainlog's lines name no host, a syslog relay's file holds many hosts' lines, and the path
is known without opening a file (a compressed one would be decompressed to be read).

The process that calls (the coordinator) holds the store's lock the whole run
(`Store.staging`). Each log set is one task: a `ParseRun` over it on a worker, resuming from
the catalogue as the lock found it, its sources starting from the state the last run left
(the whole of it: the state names no host; each source's `merge_state` tells the rows a part
changed from those it left), its chunks staged by a `StagedWriter` under `Staging.target`.
A task returns its staged files, the summary of each input and the state its sources export.
When every task is done, the coordinator adopts their files (log set after log set), builds
the catalogue from the summaries (in the inputs' order), merges the sources' state and commits
once. A task that fails fails the run: the other tasks are told to stop and waited for,
nothing is committed, the staging folder goes, and the error is the task's, or a
`ClusterError` when the cluster was lost or a worker died.

Workers read the inputs at the paths the coordinator has, and write where the store is:
both must be on a file system every worker shares (docs/SCALE.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import polars as pl

from bounce_analyzer.errors import BounceAnalyzerError, ClusterError, UsageError
from bounce_analyzer.ingest import IngestResult, _catalogue, again_after_races
from bounce_analyzer.pipeline import FileSummary, ParseRun
from bounce_analyzer.reading import InputFile, expand_inputs, log_set
from bounce_analyzer.rules import Rules
from bounce_analyzer.sources import get_source
from bounce_analyzer.sources.base import CarriesState
from bounce_analyzer.store import (
    CatalogueEntry,
    DeltaStore,
    StagedFiles,
    Staging,
    StagingTarget,
    Store,
    find_resume,
    open_store,
)

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["IngestOptions", "ingest_on_cluster", "log_sets", "merge_states"]

#: How long to wait for the scheduler at `--cluster` before giving up.
CONNECT_TIMEOUT = "30s"

#: How long a failed run waits for its other tasks to stop (each stops after its chunk).
STOP_WAIT = 120


def log_sets(inputs: Sequence[InputFile]) -> list[list[InputFile]]:
    """`inputs` in log sets (a folder and a name without its rotation suffix:
    `reading.log_set`), each in the order of `inputs`, the sets in the order they first come.

    Raises `UsageError` for stdin or a pipe: a worker cannot read this process's streams.
    """
    sets: dict[str, list[InputFile]] = {}
    for item in inputs:
        if item.stream:
            raise UsageError(
                f"{item.display}: --workers and --cluster read files (a worker cannot read "
                "this process's stdin or pipes)"
            )
        sets.setdefault(log_set(os.path.abspath(item.path)), []).append(item)
    return list(sets.values())


@dataclass(frozen=True)
class _Shared:
    """What every task of a run is given (sent to the workers once)."""

    catalogue: list[CatalogueEntry]  # as the store's lock found it
    state: dict[str, pl.DataFrame]  # what each source carried out of the last run
    rules: Rules
    source: str | None
    tz: str | None
    strict: bool
    now: datetime
    topic: str | None  # the progress events' topic (None: no progress is shown)
    stop: str  # the name of the Dask `Event` set when the run fails: the tasks stop


@dataclass(frozen=True)
class _Task:
    """One log set, and where its worker stages what it reads."""

    name: str
    inputs: list[InputFile]
    target: StagingTarget


@dataclass(frozen=True)
class _Done:
    """What a task gives back: plain data that crosses processes."""

    files: StagedFiles
    summaries: list[FileSummary]  # one per input of the set, in its order
    state: dict[str, pl.DataFrame]  # what each source the task used carries to the next run
    progressed: int  # the bytes its progress events counted


def _read_log_set(task: _Task, shared: _Shared) -> _Done | None:
    """On a worker: read, parse and classify one log set into its staging target. None when
    the run failed elsewhere (its stop event was set) before the task was done: it stops
    after the chunk it is writing."""
    from distributed import Event, get_worker

    worker = get_worker()
    stop = Event(shared.stop)
    if stop.is_set():
        return None
    progressed = 0

    def progress(size: int) -> None:
        nonlocal progressed
        progressed += size
        if shared.topic is not None:
            worker.log_event(shared.topic, (task.name, size))

    run = ParseRun(
        task.inputs,
        source=shared.source,
        tz=shared.tz,
        strict=shared.strict,
        rules=shared.rules,
        progress=progress,
        resume=lambda _input, head: find_resume(shared.catalogue, head),
        hold_partial=True,
        now=shared.now,
    )
    run.import_state(shared.state)
    writer = task.target.writer()
    try:
        for chunk in run:
            writer.add(chunk.events, chunk.malformed, input_head=chunk.head, input_path=chunk.path)
            if stop.is_set():
                writer.abort()
                return None
    except BaseException:
        writer.abort()
        raise
    return _Done(writer.finish(), run.summaries, run.export_state(), progressed)


class IngestOptions(TypedDict, total=False):
    """The options of `ingest.ingest_paths` that a run on a cluster takes as they are: `source,
    tz, strict, rules, progress` (called in a thread of Dask's client), `wait`, `now`."""

    source: str | None
    tz: str | None
    strict: bool
    rules: Rules | None
    progress: Callable[[int], None] | None
    wait: bool
    now: datetime | None


def ingest_on_cluster(
    store: Store | DeltaStore | str | Path,
    paths: Sequence[str],
    *,
    workers: int | None = None,
    address: str | None = None,
    **options: Unpack[IngestOptions],
) -> IngestResult:
    """Read `paths` into `store` as `ingest.ingest_paths` does (with its `options`), each log
    set on a worker of a local Dask cluster of `workers` processes, or of the cluster whose
    scheduler is at `address` (`tcp://host:8786`): one of the two."""
    if (workers is None) == (address is None):
        raise UsageError("give either --workers or --cluster")
    if workers is not None and workers < 1:
        raise UsageError(f"invalid --workers {workers}: give 1 or more")
    source, tz, strict = options.get("source"), options.get("tz"), options.get("strict", False)
    now = options.get("now") or datetime.now(UTC)
    inputs = expand_inputs(paths)
    # The options and the inputs are checked here as a single run checks them, before a store
    # is made or a cluster started.
    checked = ParseRun(
        inputs, source=source, tz=tz, strict=strict, rules=options.get("rules"), now=now
    )
    sets = log_sets(inputs)
    with _client(workers=workers, address=address) as client:
        # (made once the cluster is there)
        opened = store if isinstance(store, Store | DeltaStore) else open_store(store, create=True)

        def once() -> IngestResult:
            return _once_on_cluster(client, opened, inputs, sets, checked.rules, now, options)

        # Another ingest that commits to a Delta store first: the log sets are read again from
        # the catalogue it left, as a single-process run goes again.
        return again_after_races(opened, once)


def _once_on_cluster(
    client: Client,
    store: Store | DeltaStore,
    inputs: Sequence[InputFile],
    sets: list[list[InputFile]],
    rules: Rules,
    now: datetime,
    options: IngestOptions,
) -> IngestResult:
    """One attempt of `ingest_on_cluster`: the log sets read on the workers from the store's
    catalogue, their files adopted and committed once (`LostRace` when another run committed
    first)."""
    source, tz, strict = options.get("source"), options.get("tz"), options.get("strict", False)
    progress = options.get("progress")
    with store.staging(wait=options.get("wait", False), now=now) as staging:
        carried = staging.carried_state()
        shared = _Shared(
            catalogue=staging.catalogue,
            state=carried,
            rules=rules,
            source=source,
            tz=tz,
            strict=strict,
            now=now,
            topic=None if progress is None else f"bounce-analyzer-{staging.run_id}",
            stop=f"bounce-analyzer-{staging.run_id}-stop",
        )
        parts = _run(client, staging, sets, shared, progress)
        for part in parts:
            staging.adopt(part.files)
        summaries = [summary for part in parts for summary in part.summaries]
        order = {id(item): index for index, item in enumerate(inputs)}
        positions = [order[id(item)] for group in sets for item in group]
        summaries = [summary for _, summary in sorted(zip(positions, summaries, strict=True))]
        committed = staging.commit(
            _catalogue(staging.catalogue, summaries, staging.read_at),
            state=merge_states(carried, [part.state for part in parts]),
        )
    return IngestResult.of(committed, summaries)


def merge_states(
    carried: dict[str, pl.DataFrame], parts: Sequence[dict[str, pl.DataFrame]]
) -> dict[str, pl.DataFrame]:
    """The state each source carries out of a run read in parts, each part's sources having
    started from `carried`: what each part exported, merged by the source
    (`CarriesState.merge_state`)."""
    merged = {}
    for name in sorted({name for part in parts for name in part}):
        instance = get_source(name, tz="UTC")
        if isinstance(instance, CarriesState):
            exported = [part[name] for part in parts if name in part]
            merged[name] = instance.merge_state(carried.get(name), exported)
    return merged


@contextmanager
def _client(*, workers: int | None, address: str | None) -> Iterator[Client]:
    """A Dask client of a local cluster of `workers` processes (closed after), or of the
    scheduler at `address`; `UsageError` without Dask, `ClusterError` when it cannot start
    or be reached."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            "--workers and --cluster need Dask: pip install 'bounce-analyzer[cluster]'"
        ) from None
    import logging

    if address is not None:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address}: {_one_line(error)}"
            ) from None
        with client:
            yield client
        return
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # (any free port: the default, 8787, may be taken)
            silence_logs=logging.ERROR,
        )
    except (OSError, TimeoutError) as error:
        raise ClusterError(f"cannot start {workers} Dask workers: {_one_line(error)}") from None
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


def _run(
    client: Client,
    staging: Staging,
    sets: list[list[InputFile]],
    shared: _Shared,
    progress: Callable[[int], None] | None,
) -> list[_Done]:
    """Every log set read by a task of the cluster; what each gave, in the sets' order.

    When a task fails, the others are told to stop (`_Shared.stop`), and waited for (at most
    `STOP_WAIT`) before the error is raised, so that none is still writing into the staging
    folder when it is removed.
    """
    from distributed import Event, as_completed

    tasks = [
        _Task(f"set-{index}", inputs, staging.target(f"set-{index}"))
        for index, inputs in enumerate(sets)
    ]
    lock = threading.Lock()
    counted: dict[str, int] = {task.name: 0 for task in tasks}
    finished: set[str] = set()

    def report(name: str, size: int, *, total: bool = False) -> None:
        """Count `size` bytes more read by the task `name`, or (`total`) its last figure."""
        with lock:
            if name in finished:
                return  # (an event that came after the task's result)
            if total:
                size -= counted[name]
                finished.add(name)
            counted[name] += size
            if progress is not None and size:
                progress(size)

    def on_event(event: tuple[float, Any]) -> None:
        name, size = event[1]
        report(name, size)

    if shared.topic is not None:
        client.subscribe_topic(shared.topic, on_event)
    futures: list[Future[_Done | None]] = []
    try:
        on_workers = client.scatter(shared, broadcast=True, hash=False)
        futures = [
            client.submit(
                _read_log_set,
                task,
                on_workers,
                key=f"bounce-analyzer-{staging.run_id}-{task.name}",
                pure=False,
            )
            for task in tasks
        ]
        index = {future.key: number for number, future in enumerate(futures)}
        done: list[_Done | None] = [None] * len(tasks)
        for future in as_completed(futures, loop=client.loop):
            number = index[future.key]
            if future.status == "error":
                raise _failure(tasks[number], future.exception())
            if future.status != "finished":  # (cancelled, or lost with the scheduler)
                raise _failure(tasks[number], None)
            part: _Done | None = future.result()
            if part is None:  # (stopped: not before a failure, which raised)
                raise _failure(tasks[number], None)
            # (the events of the task still on their way are not waited for)
            report(tasks[number].name, part.progressed, total=True)
            done[number] = part
    except BaseException:
        Event(shared.stop, client=client).set()
        deadline = time.monotonic() + STOP_WAIT
        for future in futures:  # (each done, failed or stopped; or the time is up)
            with contextlib.suppress(Exception):
                future.exception(timeout=max(0.0, deadline - time.monotonic()))
        client.cancel(futures)
        raise
    finally:
        if shared.topic is not None:
            client.unsubscribe_topic(shared.topic)
    parts = [part for part in done if part is not None]
    _check_shared(parts)
    return parts


def _failure(task: _Task, error: BaseException | None) -> BaseException:
    """What a failed task raises in the coordinator: the library's own errors (and an OSError,
    which the staging makes a `StoreError`) as they are; a `ClusterError` when Dask lost the
    task; anything else is a bug and keeps its traceback."""
    if isinstance(error, BounceAnalyzerError | OSError):
        return error
    if error is None or type(error).__module__.split(".")[0] in {"distributed", "dask"}:
        first = task.inputs[0].display if task.inputs else task.name
        kind = "cancelled" if error is None else type(error).__name__
        return ClusterError(
            f"the cluster lost the task reading {first} and its log set "
            f"({kind}: {_one_line(error) if error else 'no result'}); nothing was stored"
        )
    return error


def _check_shared(parts: Sequence[_Done]) -> None:
    """`ClusterError` when the files the workers staged in a folder are not on this machine's
    file system (workers elsewhere, with the store on a path of their own). Files at a URL
    (`s3://...`) are where every machine sees them."""
    for part in parts:
        for paths in (*part.files.events.values(), *part.files.quarantine.values()):
            for path in paths:
                if "://" not in path and not os.path.exists(path):
                    raise ClusterError(
                        f"{path}: a worker staged this file where this process cannot see it; "
                        "the store and the inputs must be on a file system every worker shares"
                    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
