"""From input paths to classified event frames: read, detect, parse, classify.

The pipeline owns the per-run state: one instance of each source for the whole run, so that
state spanning files (a Postfix queue id whose sender sits in yesterday's rotated log) carries
over, and the per-file accounting the `parse` summary and `ingest` report. An ingest also
carries the sources' state from one run to the next (`import_state`, `export_state`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from bounce_analyzer import native, reading, schema
from bounce_analyzer.errors import ParseError
from bounce_analyzer.reading import Batch, Resume, ResumeFn
from bounce_analyzer.rules import Rules, load_rules
from bounce_analyzer.sources import SOURCES, Source, get_source
from bounce_analyzer.sources import detect as detect_source
from bounce_analyzer.sources.base import MALFORMED_SCHEMA, CarriesState, SourceOutput
from bounce_analyzer.stages import ahead, ahead_map

if TYPE_CHECKING:
    import pyarrow as pa

_HEAD_BYTES = 65536  # what reading.head reads to detect the format


@dataclass
class FileSummary:
    """What one input gave: the counts the run summary prints."""

    path: str
    source: str | None
    read: int = 0
    events: int = 0
    skipped: int = 0
    malformed: int = 0
    bytes_read: int = 0
    damage: str | None = None  # a truncated or corrupt compressed stream, where it broke
    head: bytes = b""  # the first bytes of the decompressed content (the file's identity)
    in_directory: bool = False  # found by walking a directory rather than named
    empty: bool = False  # no content at all (logrotate leaves one): 0 read, nothing to detect
    start_offset: int = 0  # where reading started (bytes of decompressed content)
    end_offset: int = 0  # the end of the last whole line read
    end_line: int = 0  # the number of that line
    held_back: int = 0  # bytes of a final line without newline left for the next run
    #: The bytes before `end_offset` (up to `reading.TAIL_BYTES`; fewer after a line passed
    #: over as too long, whose end is not kept): what a resume checks the input still holds.
    tail: bytes = b""
    resumed_from: Resume | None = None  # the place reading resumed at (None: the start)

    @property
    def partial(self) -> bool:
        return self.damage is not None

    @property
    def failed(self) -> bool:
        """Damaged, or named by the user and of no format we read (exit code 1). An empty
        input is not a failure: it is 0 records read."""
        return self.partial or (self.source is None and not self.in_directory and not self.empty)

    @property
    def misread(self) -> bool:
        """Read as a source whose records these are not, it seems: more than half of the
        records malformed and none an event (`--source exim` on a Postfix log). The new part
        of a resumed input is judged so only when it holds more than one record: its format
        was read before, and a lone bad record there is a torn last line (a writer killed
        mid-line), counted and set aside like any malformed record, not a wrong format."""
        if self.resumed_from is not None and self.read < 2:
            return False
        return self.events == 0 and self.malformed > 0 and 2 * self.malformed > self.read


def run_failed(summaries: Sequence[FileSummary]) -> bool:
    """Whether a run over these inputs failed (exit code 1), by one rule for every command
    (parse, ingest, report): an input failed, or not one record was read as an event while
    an input was misread (its records mostly malformed: the wrong `--source`)."""
    if any(summary.failed for summary in summaries):
        return True
    events = any(summary.events for summary in summaries)
    return not events and any(summary.misread for summary in summaries)


#: Events dated before this are set aside: no mail log or ESP event is older than Unix time.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

#: How far past the run's clock an event may be dated (hosts' clocks drift, zones are
#: misconfigured); later ones are set aside.
AHEAD = timedelta(days=1)


def set_aside_implausible(
    events: pl.DataFrame, *, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`events` without those dated implausibly, and those set aside as malformed records (one
    per origin), for every source alike: before 1970-01-01 UTC (`EARLIEST`), or more than a
    day (`AHEAD`) after `now`. Such a date is a misread or forged stamp (a SendGrid timestamp
    in milliseconds, a journal stamp of 0 - 1 s): stored, it would make a day no reader can
    name (`date=+10000-01-01`) or count in every later window. Events without a timestamp
    are kept. The record's `raw` is its date, event and recipient (the events keep no text).
    """
    stamp = pl.col("timestamp")
    early = stamp < EARLIEST
    late = stamp > now.astimezone(UTC) + AHEAD
    wrong = (early | late).fill_null(False)
    if not events.select(wrong.any()).item():
        return events, pl.DataFrame(schema=MALFORMED_SCHEMA)
    aside = (
        events.filter(wrong)
        .unique("origin", keep="first", maintain_order=True)
        .select(
            "origin",
            pl.when(early)
            .then(pl.lit("implausible timestamp: before 1970-01-01 UTC"))
            .otherwise(pl.lit("implausible timestamp: more than a day after the run"))
            .alias("reason"),
            pl.concat_str(
                [stamp.dt.to_string(), pl.col("event"), pl.col("recipient")],
                separator=" ",
                ignore_nulls=True,
            ).alias("raw"),
        )
    )
    return events.filter(~wrong), aside


def own_texts(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its text columns in buffers of their own where they point into buffers
    more than twice the size of their texts. The C path's columns are views into the whole
    input batch (docs/NATIVE.md): a frame of Postfix events, a fifth of the batch's bytes,
    keeps all of it alive until the frame is written; copied, the texts take the bytes they
    need and the batch can go (the peak RSS of `parse` over 1M Postfix lines: 505 MB against
    585 MB). Exim's events hold most of their batch's bytes: copying them (0.3 s of CPU per
    1M lines) would free little. Texts of 12 bytes or less live inside their view. The copy
    is made in C where the Postfix module is built (`_compacted`), else by polars."""
    texts = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not texts or not frame.height:
        return frame
    sizes = frame.select(pl.col(texts).str.len_bytes().sum().fill_null(0)).row(0, named=True)
    if _buffer_bytes(frame.select(texts)) <= 2 * sum(sizes.values()):
        return frame
    tokenizer = native.module("postfix")
    compact = getattr(tokenizer, "compact", None)
    if compact is None:  # (no C path: polars copies them, at about twice the cost)
        return frame.with_columns(pl.col(texts) + pl.lit(""))
    return frame.with_columns(
        _compacted(frame.get_column(name), sizes[name], compact) for name in texts
    )


def _release_tables() -> None:
    """At the end of a run: the C tokenizers let go of the tables they keep for the next
    batch (native/reuse.h; tables still in use live on with their users), so that a
    long-lived process does not hold them until its next run."""
    for name in ("postfix", "exim"):
        release = getattr(native.module(name), "release", None)
        if release is not None:
            release()


def _compacted(column: pl.Series, size: int, compact: Callable[..., int]) -> pl.Series:
    """`column` (String, of `size` bytes of text) with its texts copied, in C, into one buffer
    of their own per chunk (native/postfix.c, `compact`): one pass and a copy of each text's
    bytes, 0.07-0.12 s of CPU per 1M Postfix lines where polars' own copy (`+ ""`) costs
    0.14-0.23 s. The buffers come from pyarrow's memory pool (peak RSS +30 MB over 1M lines
    against polars' copy: bench/RESULTS.md); the validity bitmap is copied too, since the one
    polars exports keeps the whole old column, and the batch, alive. The chunks go back to
    polars through the Arrow C data interface (`native.arrow_series`, as the sources' columns
    do): `pl.from_arrow` would import pyarrow.compute, 0.03-0.04 s of every Postfix run."""
    import pyarrow as pa  # (loaded already: the C path's columns come through it)

    exported = column.to_arrow(compat_level=pl.CompatLevel.newest())  # (no copy)
    chunks = []
    for array in getattr(exported, "chunks", [exported]):
        validity, views, *data = array.buffers()
        if array.null_count == 0:
            validity = None
        rows = len(array)
        new_views = pa.allocate_buffer(rows * 16)
        new_data = pa.allocate_buffer(size, resizable=True)  # (at most the column's bytes)
        written = compact(views, rows, array.offset, validity, data, new_views, new_data)
        new_data.resize(written)
        bits = None if validity is None else _bits(validity, array)
        made = pa.Array.from_buffers(pa.string_view(), rows, [bits, new_views, new_data])
        chunks.append(native.arrow_series(column.name, made.__arrow_c_array__()))
    return pl.concat(chunks, rechunk=False)


def _bits(validity: pa.Buffer, array: pa.Array) -> pa.Buffer:
    """The validity bitmap of `array` from its first row, in a buffer of its own: `validity`
    itself, exported by polars, keeps the whole column alive (and the batch it points into)."""
    import pyarrow as pa

    if array.offset % 8 == 0:
        start = array.offset // 8
        return pa.py_buffer(validity.to_pybytes()[start : start + (len(array) + 7) // 8])
    import pyarrow.compute as pc

    shifted: pa.Buffer = pc.is_valid(array).buffers()[1]
    return shifted


def _buffer_bytes(frame: pl.DataFrame) -> int:
    """The bytes of the distinct data buffers the (text) columns of `frame` point into."""
    sizes: dict[int, int] = {}
    for column in frame.iter_columns():
        exported = column.to_arrow(compat_level=pl.CompatLevel.newest())  # (no copy)
        for array in getattr(exported, "chunks", [exported]):
            for buffer in array.buffers()[2:]:  # (validity, views, then the data buffers)
                if buffer is not None:
                    sizes[buffer.address] = buffer.size
    return sum(sizes.values())


#: Classification costs a few milliseconds a call whatever its size, and works once per
#: distinct text and key: the fewer calls the better (measured on the events of 1M Postfix
#: lines: 1.16 s of CPU in calls of 25k rows, 0.43 s of 100k, 0.31 s of 200k). But a chunk's
#: events are held until written, and those of the C path keep their whole input batches
#: alive (their columns point into them): a chunk also ends with the events of
#: `CLASSIFY_BYTES` of input (two batches of `parse`), which bounds what it holds on every
#: path. Measured with `ingest` of 5M generated Exim lines on the C path (peak RSS, wall):
#: 48 MiB 1,154 MB and 14.6-16.1 s; 32 MiB 935-957 MB and 16.4-17.0 s; 24 MiB 835 MB and
#: 20.7 s. 48 MiB took Exim past 1 GiB; 32 MiB keeps both sources and both paths under it.
#: (Since the events own their texts (`own_texts`) a chunk no longer holds its batches, but
#: the classification's own working memory grows with the chunk: ~200 MB for the 72k
#: events of 32 MiB of Exim input, measured with VmHWM with and without classifying.)
CLASSIFY_ROWS = 200_000
CLASSIFY_BYTES = 32 * 2**20


@dataclass
class Chunk:
    """Classified events and set-aside records from one stretch of one input."""

    path: str
    events: pl.DataFrame
    malformed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MALFORMED_SCHEMA))
    head: bytes = b""  # the input's first bytes (its identity, as `FileSummary.head`)


class ParseRun:
    """Iterate over it for `Chunk`s; `summaries` fills in as the inputs are read.

    Parameters
    ----------
    paths
        Files, globs, directories or `-` for stdin, or inputs already expanded
        (`reading.expand_inputs`).
    source
        The source of every input (default: detected per input).
    tz
        The zone of log stamps without an offset (default: this machine's).
    strict
        Raise `ParseError` at the first malformed record instead of setting it aside.
    rules
        The loaded rules that classify the events (default: the built-in ones).
    progress
        Called with the bytes read for each batch (also settable later, see `progress`).
    resume
        Where each input may have been left (an ingest asks its store's catalogue): it is
        read from the furthest place it still holds (`reading.read_batches`), else whole.
    classify_rows, classify_bytes
        The events are classified in chunks of at most about `classify_rows` events, or of
        the events of the batches of `classify_bytes` of input, whichever comes first
        (`CLASSIFY_ROWS`).
    hold_partial
        Hold back a final line without its newline when the input may still be written
        (`reading.may_grow` at `now`) and the line does not end a JSON document: it is read
        next time.
    now
        When the run happens (default: the clock when the run is made): events dated more
        than a day after it are set aside (`set_aside_implausible`), and a plain file
        modified shortly before it may still grow.
    """

    def __init__(
        self,
        paths: Sequence[str | reading.InputFile],
        *,
        source: str | None = None,
        tz: str | None = None,
        strict: bool = False,
        rules: Rules | None = None,
        batch_bytes: int = 16 * 2**20,
        progress: Callable[[int], None] | None = None,
        resume: ResumeFn | None = None,
        hold_partial: bool = False,
        classify_rows: int = CLASSIFY_ROWS,
        classify_bytes: int = CLASSIFY_BYTES,
        now: datetime | None = None,
    ) -> None:
        self._now = datetime.now(UTC) if now is None else now
        self._source = source
        self._tz = tz
        self._instances: dict[str, Source] = {}
        self._carried: Mapping[str, pl.DataFrame] = {}  # state for sources made later
        for name in [source] if source is not None else SOURCES:
            self._instance(name)  # an unknown name or zone fails now, before anything is read
        self._inputs = reading.expand_inputs(paths)
        self._strict = strict
        #: The rules the events are classified with.
        self.rules = load_rules() if rules is None else rules
        self._batch_bytes = batch_bytes
        #: Malformed rows of the lines the reader passed over, from the thread reading ahead.
        self._long_lines: deque[pl.DataFrame] = deque()
        #: Where to start each input (also settable later, as `progress` is).
        self.resume = resume
        self._hold_partial = hold_partial
        self._classify_rows = classify_rows
        self._classify_bytes = classify_bytes
        self.summaries: list[FileSummary] = []
        #: Called with the bytes read for each batch, counted as stored on disk (compressed
        #: or not; decompressed for stdin): a progress bar's update against `total_bytes`.
        self.progress = progress

    def total_bytes(self) -> int | None:
        """The size on disk of all inputs, or None when one of them is stdin."""
        return reading.total_size(self._inputs)

    def _instance(self, name: str) -> Source:
        if name not in self._instances:
            instance = get_source(name, tz=self._tz)
            if name in self._carried and isinstance(instance, CarriesState):
                instance.import_state(self._carried[name])
            self._instances[name] = instance
        return self._instances[name]

    def import_state(self, state: Mapping[str, pl.DataFrame]) -> None:
        """Before the run: what each source carried out of an earlier run (`export_state`)."""
        self._carried = state
        for name, instance in self._instances.items():  # those made to check the options
            if name in state and isinstance(instance, CarriesState):
                instance.import_state(state[name])

    def export_state(self) -> dict[str, pl.DataFrame]:
        """After the run: what each source it used carries to the next (`CarriesState`)."""
        # (the sources this run read, and those whose state it was given: not every source
        # made to check the options)
        kept = {summary.source for summary in self.summaries} | set(self._carried)
        return {
            name: instance.export_state()
            for name, instance in self._instances.items()
            if name in kept and isinstance(instance, CarriesState)
        }

    def __iter__(self) -> Iterator[Chunk]:
        """The chunks, classified a chunk ahead of the caller in a thread of their own: what
        the caller does with one (writing it) overlaps the classification of the next."""
        return ahead(self._chunks())

    def _chunks(self) -> Iterator[Chunk]:
        try:
            yield from self._inputs_chunks()
        finally:
            _release_tables()

    def _inputs_chunks(self) -> Iterator[Chunk]:
        for item in self._inputs:
            head = reading.head(item)
            name = self._source or detect_source(head)
            summary = FileSummary(
                path=item.display, source=name, head=head, in_directory=item.in_directory
            )
            self.summaries.append(summary)
            if name is None:
                # A compressed file cut before its first line is damage, not a strange format.
                summary.damage = reading.damage(item) if len(head) < _HEAD_BYTES else None
                summary.empty = not head and summary.damage is None
                continue  # else the summary says the format was not recognised (or empty)
            places = self.resume(item, head) if self.resume is not None else ()
            yield from self._parse_file(item, self._instance(name), summary, places)

    def _batches(
        self, item: reading.InputFile, summary: FileSummary, places: Sequence[Resume]
    ) -> Iterator[Batch]:
        """The input's batches from the furthest of `places` it holds (else its start); a
        final line without its newline is held back when `hold_partial` (a live log being
        written: it is read next time)."""

        def resumed(start: Resume, before: bytes) -> None:
            summary.start_offset = summary.end_offset = start.offset
            summary.end_line = start.line
            summary.tail = before
            summary.resumed_from = start if start.offset else None

        raw_read = 0
        hold = self._hold_partial and reading.may_grow(item, now=self._now)
        batches = reading.read_batches(
            item, batch_bytes=self._batch_bytes, resume=places, resumed=resumed
        )
        for batch in batches:
            if self.progress is not None:
                # Bytes as stored, to match `total_bytes` (sizes on disk) for compressed files.
                if batch.raw_end is None:
                    self.progress(len(batch.data))
                else:
                    self.progress(batch.raw_end - raw_read)
                    raw_read = batch.raw_end
            if batch.long_lines:
                kept = batch.long_lines
                if hold and batch.final and not batch.data and not kept[-1].ended:
                    summary.held_back = kept[-1].length  # a long line still being written
                    kept = kept[:-1]
                batch = replace(batch, long_lines=kept)
            data = batch.data
            if batch.final and hold and data and not data.endswith(b"\n"):
                kept_end = data.rfind(b"\n") + 1
                if not reading.ends_a_json_document(data[kept_end:]):
                    summary.held_back = len(data) - kept_end
                    data = data[:kept_end]
                    batch = replace(batch, data=data, newlines=None)
            summary.bytes_read += len(data)
            if batch.long_lines:
                summary.tail = b""  # (the end of a line passed over is not kept)
            if batch.long_lines and not data:
                summary.end_offset = batch.long_lines[-1].end
                summary.end_line = batch.long_lines[-1].line
            else:
                summary.end_offset = batch.offset + len(data)
                summary.end_line = batch.first_line - 1 + batch.line_ends()
                summary.tail = (summary.tail + data[-reading.TAIL_BYTES :])[-reading.TAIL_BYTES :]
            if data and not data.endswith(b"\n"):
                summary.end_line += 1
            if batch.long_lines:
                self._long_lines.append(reading.long_line_rows(batch))
            yield batch
            del batch, data  # (not held while the next is read: its buffer may serve again)

    def _conformed(self, output: SourceOutput) -> SourceOutput:
        """A source's output with its events conformed and those dated implausibly set aside
        with its malformed records, in a thread of the source's stage (`_parse_file`): the
        thread that classifies has the most to do. The events' texts are copied out of the
        input batch where they point into it (`own_texts`), so that the batch goes as soon
        as it is parsed."""
        conformed, implausible = set_aside_implausible(schema.conform(output.events), now=self._now)
        return replace(
            output,
            events=own_texts(conformed),
            malformed=pl.concat([output.malformed, implausible]),
        )

    def _parse_file(
        self,
        item: reading.InputFile,
        source: Source,
        summary: FileSummary,
        places: Sequence[Resume],
    ) -> Iterator[Chunk]:
        from bounce_analyzer.classify import classify  # lazy: `--help` starts without the engine

        events: list[pl.DataFrame] = []  # conformed, waiting to be classified
        malformed: list[pl.DataFrame] = []

        def set_aside_long_lines() -> None:
            """The lines the reader passed over as too long (counted read and malformed)."""
            while self._long_lines:
                rows = self._long_lines.popleft()
                summary.read += rows.height
                summary.malformed += rows.height
                if self._strict:
                    first = rows.row(0, named=True)
                    raise ParseError(f"{first['origin']}: {first['reason']}")
                malformed.append(rows)

        # A source's output is a batch's events: a chunk ends after this many of them.
        outputs = max(1, self._classify_bytes // self._batch_bytes)

        def chunk() -> Chunk:
            joined = pl.concat(events) if events else schema.empty_facts()
            if joined.height:
                # (the event table's columns in order: a verdict no stage gave yet is null)
                joined = schema.conform(classify(joined, self.rules), schema.EVENT_SCHEMA)
            made = Chunk(
                path=item.display,
                events=joined,
                malformed=pl.concat(malformed),
                head=summary.head,
            )
            events.clear()
            malformed.clear()
            return made

        try:
            batches = self._batches(item, summary, places)
            if not reading.is_plain_file(item):
                # Decompression is worth a thread of its own; a plain file's batches are
                # read where they are parsed: each batch in flight is memory.
                batches = ahead(batches)
            # The source's outputs are made one after another (a source carries state from
            # one batch to the next), and conformed two at a time: while one thread
            # conforms an output, the other makes the next and conforms it.
            parsed = ahead_map(self._conformed, iter(source.parse(batches)), workers=2)
            for output in parsed:
                set_aside_long_lines()
                conformed, set_aside = output.events, output.malformed
                summary.read += output.read
                summary.skipped += output.skipped
                summary.malformed += set_aside.height
                if self._strict and set_aside.height:
                    first = set_aside.row(0, named=True)
                    raise ParseError(f"{first['origin']}: {first['reason']}")
                summary.events += conformed.height
                events.append(conformed)
                malformed.append(set_aside)
                # Classification has a fixed cost per call and works per distinct text and
                # key: the events of several batches are classified at once (`CLASSIFY_ROWS`).
                rows = sum(frame.height for frame in events)
                if rows >= self._classify_rows or len(events) >= outputs:
                    yield chunk()
        except reading.TruncatedInputError as error:
            summary.damage = str(error)
        set_aside_long_lines()
        if events or malformed:
            yield chunk()
