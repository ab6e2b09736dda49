"""Drive the pipeline's runs: into the store, or through a temporary file into a report.

`ingest_paths` reads only what is new into a store. Under the store's lock it builds one
`ParseRun` with the options of the run (`source, tz, strict, rules, progress`) and the store's
catalogue lookup as its resume function, stages each chunk, and commits: the store drops what
it already has, moves the files into place and writes the new catalogue, in which each input
read is remembered by its leading bytes, how far it was read and the bytes before that point
(which the next run checks the input still holds before it resumes there).

`summarize_paths` is the report straight from inputs, without a store: the events are staged
in a temporary Parquet file (`staged_events`, which `check` and `metrics` read too), so memory
stays bounded however large the inputs are.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from bounce_analyzer.errors import StoreError
from bounce_analyzer.pipeline import Chunk, FileSummary, ParseRun
from bounce_analyzer.reading import ResumeFn
from bounce_analyzer.report import Report, summarize
from bounce_analyzer.rules import Rules
from bounce_analyzer.schema import EVENT_SCHEMA
from bounce_analyzer.store import (
    CatalogueEntry,
    Committed,
    DeltaStore,
    LostRace,
    Store,
    find_resume,
    open_store,
    with_input,
)
from bounce_analyzer.writers import EventFormat, EventWriter

__all__ = [
    "IngestResult",
    "RunLike",
    "again_after_races",
    "ingest_paths",
    "ingest_run",
    "staged_events",
    "summarize_paths",
]


@dataclass
class IngestResult(Committed):
    """What an ingest run did: what the store committed, and what each input gave."""

    files: list[FileSummary] = field(default_factory=list)  # as the pipeline counted them

    @classmethod
    def of(cls, committed: Committed, files: list[FileSummary]) -> IngestResult:
        """The result of a run that committed `committed` from the inputs `files` describe."""
        return cls(**vars(committed), files=files)


class RunLike(Protocol):
    """What `ingest_run` drives: a `ParseRun`, or a stand-in with the same face."""

    summaries: list[FileSummary]

    def __iter__(self) -> Iterator[Chunk]: ...


def ingest_paths(
    store: Store | DeltaStore | str | Path,
    paths: Sequence[str],
    *,
    source: str | None = None,
    tz: str | None = None,
    strict: bool = False,
    rules: Rules | None = None,
    progress: Callable[[int], None] | None = None,
    wait: bool = False,
    now: datetime | None = None,
) -> IngestResult:
    """Read `paths` into `store`: only what is new, each event once.

    Parameters
    ----------
    store
        A store, or its folder: opened, or made there, once the options and inputs are
        checked (an unknown source or zone, a missing file, make no store).
    paths
        Files, globs, directories or `-`, as for `ParseRun`.
    source, tz, strict, rules, progress
        As for `ParseRun`.
    wait, now
        As for `Store.staging`: wait for another run's lock; when the run happens (also
        what `ParseRun` sets implausibly dated events aside against).
    """

    def new_run() -> ParseRun:
        return ParseRun(
            paths,
            source=source,
            tz=tz,
            strict=strict,
            rules=rules,
            progress=progress,
            hold_partial=True,
            now=now,
        )

    first = [new_run()]  # checks the options and inputs before a store is made
    opened = store if isinstance(store, Store | DeltaStore) else open_store(store, create=True)

    def make_run(resume: ResumeFn) -> ParseRun:
        run = first.pop() if first else new_run()  # a new run after a lost race
        run.resume = resume
        return run

    # Standard input cannot be read a second time: a run of it that loses a race stops.
    return ingest_run(opened, make_run, wait=wait, now=now, again="-" not in paths)


#: How often an ingest into a Delta store goes again after other runs committed first.
MAX_ATTEMPTS = 20


def ingest_run(
    store: Store | DeltaStore,
    make_run: Callable[[ResumeFn], RunLike],
    *,
    wait: bool = False,
    now: datetime | None = None,
    again: bool = True,
) -> IngestResult:
    """Ingest the chunks of the run `make_run(resume)` returns (`ingest_paths` makes a ParseRun).

    `resume` is the store's catalogue lookup: the run calls it for each input, to start where
    the last run that read that input stopped. A `ParseRun`'s sources carry on from the state
    the last run left in the store, and leave theirs for the next.

    Into a Delta store, runs do not lock each other out: when another run committed a new
    catalogue first (`LostRace`), this run's files are gone and it goes again with a new run
    from `make_run`, which then finds what the other run read already read. With `again`
    false (inputs that cannot be read twice, such as standard input), a lost race is a
    `StoreError`: nothing of the run was stored, and it can be run again.
    """
    return again_after_races(
        store, lambda: _ingest_once(store, make_run, wait=wait, now=now), again=again
    )


def again_after_races(
    store: Store | DeltaStore, once: Callable[[], IngestResult], *, again: bool = True
) -> IngestResult:
    """`once()`, a whole ingest from the store's catalogue to its commit, run again (up to
    `MAX_ATTEMPTS` times, after a short random wait) while it loses the race to commit to
    another run (`LostRace`); with `again` false a lost race is a `StoreError` at once (see
    `ingest_run`). `cluster.ingest_on_cluster` goes again the same way."""
    set_aside = 0  # records committed to the quarantine by runs that lost a race
    for attempt in range(MAX_ATTEMPTS):
        try:
            result = once()
        except LostRace as lost:
            if not again:
                raise StoreError(
                    f"{store.path}: another ingest committed while this one read standard "
                    "input; its events were not stored: run it again"
                ) from None
            set_aside += lost.malformed
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # let the winners pass
            continue
        result.malformed += set_aside
        return result
    raise StoreError(
        f"{store.path}: {MAX_ATTEMPTS} other ingests committed while this one ran; run it again"
    )


def _ingest_once(
    store: Store | DeltaStore,
    make_run: Callable[[ResumeFn], RunLike],
    *,
    wait: bool,
    now: datetime | None,
) -> IngestResult:
    with store.staging(wait=wait, now=now) as staging:
        run = make_run(lambda _input, head: find_resume(staging.catalogue, head))
        if isinstance(run, ParseRun):
            run.import_state(staging.carried_state())
        for chunk in run:
            staging.add(chunk.events, chunk.malformed, input_head=chunk.head, input_path=chunk.path)
        committed = staging.commit(
            _catalogue(staging.catalogue, run.summaries, staging.read_at),
            state=run.export_state() if isinstance(run, ParseRun) else None,
        )
    return IngestResult.of(committed, run.summaries)


def _catalogue(
    entries: list[CatalogueEntry], summaries: Sequence[FileSummary], read_at: datetime
) -> list[CatalogueEntry]:
    """The catalogue after a run: one entry per input read, replacing the entries it grew from."""
    for summary in summaries:
        if summary.source is None or not summary.head or summary.end_offset <= 0:
            continue  # not recognised, or nothing read: nothing to remember
        entries = with_input(
            entries,
            summary.head,
            offset=summary.end_offset,
            line=summary.end_line,
            tail=summary.tail,
            resumed_from=summary.resumed_from,
            path=summary.path,
            source=summary.source,
            read_at=read_at,
        )
    return entries


@contextmanager
def staged_events(
    paths: Sequence[str],
    *,
    source: str | None = None,
    tz: str | None = None,
    rules: Rules | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> Iterator[tuple[pl.LazyFrame, ParseRun]]:
    """The events of log or event files, staged in a temporary Parquet file (so memory stays
    bounded), as a scan valid while the block runs; and the run, with what each input gave.

    `source, tz, rules, progress, now` are as for `ParseRun`.
    """
    run = ParseRun(paths, source=source, tz=tz, rules=rules, progress=progress, now=now)
    with tempfile.TemporaryDirectory(prefix="bounce-analyzer-") as folder:
        staged = Path(folder) / "events.parquet"
        with staged.open("wb") as stream:
            writer = EventWriter(stream, EventFormat.parquet)
            for chunk in run:
                writer.write(chunk.events)
            writer.close(empty=pl.DataFrame(schema=EVENT_SCHEMA))
        yield pl.scan_parquet(staged), run


def summarize_paths(
    paths: Sequence[str],
    *,
    since: datetime | None,
    until: datetime | None = None,
    by: list[str] | None = None,
    top: int = 10,
    source: str | None = None,
    tz: str | None = None,
    rules: Rules | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
    direction: str = "outbound",
) -> tuple[Report, list[FileSummary]]:
    """The report straight from log or event files, without a store; and what each input gave.

    `source, tz, rules, progress, now` are as for `ParseRun`; the other options as for
    `summarize`, with each category's description and advice from `rules`.
    """
    with staged_events(paths, source=source, tz=tz, rules=rules, progress=progress, now=now) as (
        events,
        run,
    ):
        report = summarize(
            events,
            since=since,
            until=until,
            by=by,
            top=top,
            malformed=sum(summary.malformed for summary in run.summaries),
            categories=run.rules.categories,
            blocklists=run.rules.blocklists,
            direction=direction,
        )
    return report, run.summaries
