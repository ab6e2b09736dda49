"""The event store: a folder of Parquet files, partitioned by day, and what was read into it.

Layout (docs/STORE.md gives the reasons)::

    <store>/store.json                        {"format": "bounce-analyzer-store", "version": 1, ...}
    <store>/events/date=YYYY-MM-DD/part-<run-id>-<n>.parquet      the event table, by UTC day
    <store>/quarantine/date=YYYY-MM-DD/part-<run-id>-<n>.parquet  malformed records, by day read
    <store>/catalogue.json                    each input read: its identity and how far
    <store>/state/<source>-<run-id>.parquet   what a source carries to the next run
    <store>/lock                              flock'ed by the run that writes
    <store>/read.lock                         flock'ed by readers (shared) and prune (exclusive)
    <store>/tmp/<run-id>/                     a run's files before they are moved into place

The store only stores: `ingest.py` drives a run into it. Under the lock (`Store.staging`), a
run stages its events to Parquet files under `tmp/`; `Staging.commit` drops events whose
`event_id` is already stored, then moves the files into place, writes the state the sources
carry to the next run (`Staging.carried_state` reads it back) and the new catalogue, which
names it, each step with `os.replace` or a file of its own. A run killed at any point leaves
either the old state or whole files whose events the next run de-duplicates. `scan_events`
reads the partitions a time window needs, lazily; inside `Store.reading()` a reader sees the
store before a prune or after it, never between, and a damaged file is named.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import platformdirs
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from bounce_analyzer import schema
from bounce_analyzer.direction import DirectionSettings, direction_of
from bounce_analyzer.errors import BounceAnalyzerError, StoreError
from bounce_analyzer.reading import TAIL_BYTES, Resume

__all__ = [
    "CATALOGUE_VERSION",
    "QUARANTINE_SCHEMA",
    "STORE_FORMAT",
    "STORE_VERSION",
    "CatalogueEntry",
    "Committed",
    "DayWriter",
    "OldDay",
    "StagedFiles",
    "StagedWriter",
    "Staging",
    "StagingTarget",
    "Store",
    "StoreReader",
    "as_current",
    "between_steps",
    "count_quarantined",
    "find_resume",
    "input_identity",
    "open_store",
    "partition_files",
    "scan_events",
    "scan_quarantine",
    "store_path",
    "with_input",
]

STORE_FORMAT = "bounce-analyzer-store"
STORE_VERSION = 1
CATALOGUE_VERSION = 2

#: Environment variable naming the store when --store is not given.
STORE_ENV = "BOUNCE_ANALYZER_STORE"

#: Rows per Parquet row group (a unit of reading and of statistics). pyarrow writes a row
#: group from rows held whole in memory, so this also bounds what a run buffers per day:
#: 32k rows of events are about 19 MB in Arrow (128k rows made the peak memory of a long run
#: grow by 70 MB). Files are about 2% bigger than with 128k rows, and as fast to read.
ROW_GROUP_ROWS = 32 * 1024

#: How many leading (decompressed) bytes identify an input in the catalogue.
PREFIX_BYTES = 4096

#: The partition of events without a timestamp.
UNKNOWN_DATE = "unknown"

#: Columns of the quarantine table: a source's malformed records, and when they were set aside.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "origin": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
    "run_id": pl.String(),
    "read_at": pl.Datetime("us", "UTC"),
}

#: The quarantine as stored: its columns and `location`, the key that de-duplicates a record:
#: the identity of its input (`input_identity`, as the catalogue knows it) and the record's
#: place in it (its origin without the file name, `7` or `12#3`). The same record read again
#: under another name (a copy, a rotated file) has the same location; an identical record
#: elsewhere has another. Readers leave the column out (`scan_quarantine`).
_STORED_QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**QUARANTINE_SCHEMA, "location": pl.String()}

#: Parquet files a run keeps open at once (one per day being written).
_MAX_OPEN_WRITERS = 32

Table = Literal["events", "quarantine"]


# --- where the store is ---------------------------------------------------------------------


def store_path(option: str | None) -> Path:
    """The store's folder: `--store`, else $BOUNCE_ANALYZER_STORE, else the user data dir."""
    if option:
        return Path(option).expanduser()
    from_env = os.environ.get(STORE_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path(platformdirs.user_data_path("bounce-analyzer")) / "store"


def _marker() -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "schema_version": schema.SCHEMA_VERSION,
    }


def _write_json_atomically(path: Path, data: object) -> None:
    """Write `data` to a temporary file beside `path`, sync it, and rename it over `path`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _not_a_store(root: Path, why: str) -> StoreError:
    return StoreError(
        f"{root} is not a bounce-analyzer store ({why}); "
        "give --store a new folder or the folder of an existing store"
    )


def _check_marker(root: Path) -> None:
    marker = root / "store.json"
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise _not_a_store(root, "unreadable store.json") from None
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
        raise _not_a_store(root, f"store.json is not of format {STORE_FORMAT}")
    if data.get("version") != STORE_VERSION:
        raise _not_a_store(
            root, f"store.json says version {data.get('version')!r}, this program reads 1"
        )


def _is_marker_in_making(name: str) -> bool:
    """Whether `name` is the temporary file of a store.json being written."""
    return name.startswith(".store.json.") and name.endswith(".tmp")


def open_store(path: str | Path, *, create: bool) -> Store:
    """The store in the folder `path`; with `create`, a new store there if there is none.

    Creating is atomic and idempotent: processes that create the same store at once all open
    it (the marker is written beside and renamed into place, and is a store's first file).

    Raises `StoreError` when `path` exists but is not a store (a folder with other files and no
    store.json, or a store.json of another format or version), or when there is no store and
    `create` is false.
    """
    root = Path(path)
    marker = root / "store.json"
    if root.exists() and not root.is_dir():
        raise _not_a_store(root, "not a folder")
    if not marker.exists():
        # Files without a marker are someone else's, unless another process is making this
        # store now: its marker being written, or the marker (and what follows it) come since.
        others = root.is_dir() and any(
            not _is_marker_in_making(child.name) for child in root.iterdir()
        )
        if others and not marker.exists():
            raise _not_a_store(root, "no store.json")
        if not create and not marker.exists():
            raise StoreError(f"no store at {root}: run `bounce-analyzer ingest` first")
        if not marker.exists():
            try:
                root.mkdir(parents=True, exist_ok=True)
                _write_json_atomically(marker, _marker())
            except OSError as error:
                raise StoreError(f"cannot create a store at {root}: {_reason(error)}") from None
    _check_marker(root)
    return Store(root)


def _reason(error: OSError) -> str:
    """An OSError in a few words, on one line."""
    text = error.strerror or str(error) or type(error).__name__
    return " ".join(text.split())


# --- the catalogue: what was read ------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueEntry:
    """One input read into the store: its identity (leading bytes), how far it was read, and
    what it held just before that point (its tail)."""

    prefix_len: int  # min(len(head), 4096): how many leading decompressed bytes are hashed
    prefix_hash: str  # sha256 (hex) of those bytes
    offset: int  # decompressed bytes read (the end of the last whole line)
    line: int  # lines read
    path: str  # where it was read from (for people; identity is the prefix and the tail)
    source: str | None
    read_at: str  # ISO 8601, UTC
    #: How many bytes before `offset` are hashed (up to 4096); None in an entry written by a
    #: version before 2, which did not keep them: the prefix alone identifies the input then.
    tail_len: int | None = None
    tail_hash: str | None = None  # sha256 (hex) of those bytes

    def matches(self, head: bytes) -> bool:
        """Whether an input starting with `head` may be this input (or a grown or rotated
        copy): their first bytes are the same (`Resume.follows` checks the tail)."""
        return (
            self.prefix_len <= len(head)
            and hashlib.sha256(head[: self.prefix_len]).hexdigest() == self.prefix_hash
        )

    def place(self) -> Resume:
        """Where an input that is this one is resumed, and what it must hold before."""
        return Resume(self.offset, self.line, self.tail_len, self.tail_hash or "")


def input_identity(head: bytes) -> str:
    """An input's identity: the sha256 (hex) of its first `PREFIX_BYTES` decompressed bytes."""
    return hashlib.sha256(head[:PREFIX_BYTES]).hexdigest()


#: The fields of a catalogue entry, and what each must be.
_ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "prefix_len": (int,),
    "prefix_hash": (str,),
    "offset": (int,),
    "line": (int,),
    "path": (str,),
    "source": (str, type(None)),
    "read_at": (str,),
}

#: The fields catalogue version 2 added, absent from the entries of version 1 (both or none).
_TAIL_FIELDS: dict[str, tuple[type, ...]] = {"tail_len": (int,), "tail_hash": (str,)}

_KIND_NAMES = {int: "a whole number >= 0", str: "text", type(None): "null"}


def _catalogue_entries(data: object) -> list[CatalogueEntry]:
    """The entries of a catalogue read from JSON; `ValueError` saying which entry is wrong
    and how (fields it does not know are ignored: a later version may add some). An entry
    without a tail (written by version 1) is kept without one."""
    inputs = data.get("inputs") if isinstance(data, dict) else None
    if not isinstance(inputs, list):
        raise ValueError("no list of inputs")
    entries = []
    for number, item in enumerate(inputs, 1):
        if not isinstance(item, dict):
            raise ValueError(f"input {number} is not an object")
        fields = _ENTRY_FIELDS
        if any(name in item for name in _TAIL_FIELDS):
            fields = {**_ENTRY_FIELDS, **_TAIL_FIELDS}
        for name, kinds in fields.items():
            value = item.get(name)
            wrong = not isinstance(value, kinds) or isinstance(value, bool)
            if name not in item or wrong or (isinstance(value, int) and value < 0):
                expected = " or ".join(_KIND_NAMES[kind] for kind in kinds)
                raise ValueError(f"input {number}: {name} is not {expected}")
        entries.append(CatalogueEntry(**{name: item[name] for name in fields}))
    return entries


def _write_catalogue(
    root: Path, entries: list[CatalogueEntry], *, state: dict[str, str] | None = None
) -> None:
    inputs = []
    for entry in entries:
        fields = asdict(entry)
        if entry.tail_len is None:  # (an entry of version 1, kept as it was)
            del fields["tail_len"], fields["tail_hash"]
        inputs.append(fields)
    data: dict[str, Any] = {
        "format": "bounce-analyzer-catalogue",
        "version": CATALOGUE_VERSION,
        "inputs": inputs,
    }
    if state:
        data["state"] = state  # the file in `state/` of each source's carried state
    _write_json_atomically(root / "catalogue.json", data)


def find_resume(entries: Sequence[CatalogueEntry], head: bytes) -> list[Resume]:
    """Where an input that starts with `head` may have been left: the places of the entries
    whose prefix it has, furthest first (`reading.read_batches` takes the furthest whose
    tail the input holds). Several inputs may share a prefix; one entry each."""
    if not head:
        return []
    hashes: dict[int, str] = {}
    found: list[CatalogueEntry] = []
    for entry in entries:
        if entry.prefix_len > len(head) or entry.prefix_len == 0:
            continue
        if entry.prefix_len not in hashes:
            hashes[entry.prefix_len] = hashlib.sha256(head[: entry.prefix_len]).hexdigest()
        if hashes[entry.prefix_len] == entry.prefix_hash:
            found.append(entry)
    found.sort(key=lambda entry: entry.offset, reverse=True)
    return [entry.place() for entry in found]


def with_input(
    entries: list[CatalogueEntry],
    head: bytes,
    *,
    offset: int,
    line: int,
    tail: bytes,
    resumed_from: Resume | None,
    path: str,
    source: str | None,
    read_at: datetime,
) -> list[CatalogueEntry]:
    """`entries` with one more input: the one that starts with `head`, read up to `offset`
    (the end of its line `line`), which `tail` ends (up to `TAIL_BYTES` of the bytes before).

    The new entry supersedes the entries it grew from: the one it was resumed from
    (`resumed_from`), an entry of version 1 with the same prefix read less far (trusted, as
    that version did), and one with the same prefix, offset and tail (the same input read
    again from its start). Other entries with the same prefix are other inputs, or what an
    input rewritten in place held before (its rotated copy may still come): they stay.
    """
    tail = tail[-TAIL_BYTES:]
    entry = CatalogueEntry(
        prefix_len=min(len(head), PREFIX_BYTES),
        prefix_hash=input_identity(head),
        offset=offset,
        line=line,
        path=path,
        source=source,
        read_at=read_at.isoformat(),
        tail_len=len(tail),
        tail_hash=hashlib.sha256(tail).hexdigest(),
    )

    def superseded(old: CatalogueEntry) -> bool:
        if not old.matches(head) or old.offset > entry.offset:
            return False
        if old.tail_len is None or old.place() == resumed_from:
            return True
        return (old.offset, old.tail_len, old.tail_hash) == (
            entry.offset,
            entry.tail_len,
            entry.tail_hash,
        )

    return [*(old for old in entries if not superseded(old)), entry]


# --- the state the sources carry from run to run ------------------------------------------------

#: The folder of the state files (`state/<source>-<run-id>.parquet`).
STATE_DIR = "state"


def _state_files(root: Path) -> dict[str, str]:
    """The state file of each source, as the catalogue names it (in `state/`); {} for none."""
    path = root / "catalogue.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # (`Store.catalogue` reports a damaged catalogue)
    files = data.get("state", {}) if isinstance(data, dict) else {}
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(file, str) and _is_state_file(file)
        for name, file in files.items()
    ):
        raise StoreError(f"{path} is damaged (its state is not a map of file names in state/)")
    return files


def _is_state_file(name: str) -> bool:
    return name == Path(name).name and name.endswith(".parquet") and not name.startswith(".")


def _read_state(root: Path, files: Mapping[str, str]) -> dict[str, pl.DataFrame]:
    """The state frame of each source from its file; a file removed by hand carries nothing."""
    state = {}
    for source, name in files.items():
        path = root / STATE_DIR / name
        try:
            state[source] = pl.read_parquet(path)
        except FileNotFoundError:
            continue
        except (OSError, pl.exceptions.PolarsError) as error:
            detail = " ".join(str(error).split())
            raise StoreError(
                f"{path}: unreadable state ({detail}); remove it to go on without it"
            ) from None
    return state


def _write_state(root: Path, run_id: str, state: Mapping[str, pl.DataFrame]) -> dict[str, str]:
    """Write each source's state to a file of this run in `state/` (synced); their names."""
    folder = root / STATE_DIR
    folder.mkdir(exist_ok=True)
    files = {}
    for source, frame in state.items():
        name = f"{source}-{run_id}.parquet"
        frame.write_parquet(folder / name, compression="zstd")
        handle = os.open(folder / name, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
        files[source] = name
    return files


def _remove_other_state(root: Path, files: Mapping[str, str]) -> None:
    """Remove the files in `state/` that `files` does not name (older runs', killed runs')."""
    folder = root / STATE_DIR
    if not folder.is_dir():
        return
    kept = set(files.values())
    for path in folder.iterdir():
        if path.name not in kept:
            with contextlib.suppress(OSError):
                path.unlink()


# --- results ----------------------------------------------------------------------------------


@dataclass
class Committed:
    """What a commit added to the store."""

    run_id: str
    events_by_type: dict[str, int] = field(default_factory=dict)  # written, by `event`
    malformed: int = 0  # records set aside in the quarantine
    duplicates: int = 0  # events dropped because the store (or this run) already had them

    @property
    def events(self) -> int:
        """Events written."""
        return sum(self.events_by_type.values())


# --- staging ----------------------------------------------------------------------------------


def _stored_columns(table: Table) -> dict[str, pl.DataType]:
    return schema.EVENT_SCHEMA if table == "events" else _STORED_QUARANTINE_SCHEMA


def _scan_files(files: list[Path], table: Table) -> pl.LazyFrame:
    """The stored files `files` of `table`, lazily, with the table's columns as stored (those
    missing from older files are null)."""
    return pl.scan_parquet(
        files,
        hive_partitioning=False,
        glob=False,
        schema=_stored_columns(table),
        missing_columns="insert",
        extra_columns="ignore",
    )


def _arrow_schema(table: Table) -> pa.Schema:
    columns = _stored_columns(table)
    arrow: pa.Schema = pl.DataFrame(schema=columns).to_arrow().schema
    return arrow.with_metadata(
        {
            b"bounce_analyzer.table": table.encode(),
            b"bounce_analyzer.schema_version": str(schema.SCHEMA_VERSION).encode(),
        }
    )


def _parquet_writer(path: Path, arrow_schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer with the store's settings: zstd, statistics on the columns readers
    filter on, dictionary strings, page checksums."""
    return pq.ParquetWriter(
        str(path),
        arrow_schema,
        compression="zstd",
        use_dictionary=[c for c in schema.dictionary_columns(arrow_schema) if c != "location"],
        write_statistics=schema.statistics_columns(arrow_schema),
        write_page_checksum=True,  # so that a damaged page can be found (`_damage`)
    )


@dataclass
class _DayFile:
    """The staged file a run is currently writing for one day, and rows waiting for it."""

    path: Path
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0


class DayWriter:
    """Writes frames to Parquet files under `directory/date=<day>/`, a day at a time (the
    store's staging, and exports partitioned by date).

    Rows wait in memory until a whole row group (`row_group_rows`, default `ROW_GROUP_ROWS`)
    is there, or until two groups' worth wait in all; then the biggest buffer is written. At
    most `_MAX_OPEN_WRITERS` files are open: when the rows span more days at once, the least
    recently used file is finished and a new one started for that day when it comes back.
    Files are named `<prefix>-<n>.parquet`, `n` counting from `counter[0]`; they are written
    with the store's settings (`_parquet_writer`) and `arrow_schema`'s columns.
    """

    def __init__(
        self,
        directory: Path,
        arrow_schema: pa.Schema,
        *,
        prefix: str = "part",
        counter: list[int] | None = None,
        row_group_rows: int | None = None,
    ) -> None:
        self._directory = directory
        self._schema = arrow_schema
        self._prefix = prefix
        self._counter = [0] if counter is None else counter  # may be shared between writers
        self._group = row_group_rows or ROW_GROUP_ROWS
        self._open: dict[str, _DayFile] = {}  # insertion order = least recently used first
        self.files: dict[str, list[Path]] = {}

    def add(self, frame: pl.DataFrame, day: pl.Expr) -> None:
        """Write the rows of `frame` (its columns of the schema, cast), split by `day`."""
        if frame.height == 0:
            return
        days = frame.select(day.fill_null(UNKNOWN_DATE).alias("__day")).to_series()
        rows = frame.select(self._schema.names)
        if days.n_unique() == 1:
            # The usual case, a chunk within one day: partitioning would copy every row.
            self._add_day(str(days[0]), rows.to_arrow().cast(self._schema))
            return
        keyed = rows.with_columns(days)
        for key, part in keyed.partition_by("__day", as_dict=True, include_key=False).items():
            self._add_day(str(key[0]), part.to_arrow().cast(self._schema))

    def _add_day(self, day: str, rows: pa.Table) -> None:
        current = self._open.pop(day, None)
        if current is None:
            current = self._new_file(day)
        self._open[day] = current  # now the most recently used
        current.pending.append(rows)
        current.pending_rows += rows.num_rows
        if current.pending_rows >= self._group:
            self._flush(current, whole_groups_only=True)
        if sum(f.pending_rows for f in self._open.values()) > 2 * self._group:
            self._flush(max(self._open.values(), key=lambda f: f.pending_rows))

    def _new_file(self, day: str) -> _DayFile:
        if len(self._open) >= _MAX_OPEN_WRITERS:
            oldest = next(iter(self._open))
            self._close(self._open.pop(oldest))
        folder = self._directory / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        number = self._counter[0]
        self._counter[0] += 1
        path = folder / f"{self._prefix}-{number}.parquet"
        self.files.setdefault(day, []).append(path)
        return _DayFile(path=path)

    def _flush(self, day_file: _DayFile, *, whole_groups_only: bool = False) -> None:
        if not day_file.pending_rows:
            return
        rows = pa.concat_tables(day_file.pending)
        cut = rows.num_rows
        if whole_groups_only:
            cut -= rows.num_rows % self._group
        if day_file.writer is None:
            day_file.writer = _parquet_writer(day_file.path, self._schema)
        day_file.writer.write_table(rows.slice(0, cut), row_group_size=self._group)
        rest = rows.slice(cut)
        day_file.pending = [rest] if rest.num_rows else []
        day_file.pending_rows = rest.num_rows

    def _close(self, day_file: _DayFile) -> None:
        self._flush(day_file)
        if day_file.writer is not None:
            day_file.writer.close()
            day_file.writer = None

    def finish(self) -> dict[str, list[Path]]:
        """Write what waits, close every file; the staged files by day, in writing order."""
        while self._open:
            self._close(self._open.pop(next(iter(self._open))))
        return {day: [p for p in paths if p.exists()] for day, paths in self.files.items()}

    def abort(self) -> None:
        """Close the open files without writing what waits (the caller removes them)."""
        for day_file in self._open.values():
            if day_file.writer is not None:
                with contextlib.suppress(Exception):
                    day_file.writer.close()
        self._open.clear()


# --- de-duplication ---------------------------------------------------------------------------


def _rewrite_keeping(path: Path, keep: pl.Series, arrow_schema: pa.Schema) -> None:
    """Rewrite the staged file `path` with only the rows where `keep` is true (row group by
    row group, so memory stays at one group)."""
    rewritten = path.with_name(path.name + ".dedup")
    source = pq.ParquetFile(str(path))
    writer = _parquet_writer(rewritten, arrow_schema)
    try:
        start = 0
        for index in range(source.num_row_groups):
            group = source.read_row_group(index)
            mask = keep.slice(start, group.num_rows).to_arrow()
            start += group.num_rows
            writer.write_table(group.filter(mask), row_group_size=ROW_GROUP_ROWS)
    finally:
        writer.close()
        source.close()
    os.replace(rewritten, path)


#: What makes two rows of a table the same record: events by their id, set-aside records by
#: their location and text.
_KEYS: dict[Table, pl.Expr] = {
    "events": pl.col("event_id"),
    "quarantine": pl.concat_str([pl.col("location"), pl.col("raw")], separator="\x1f"),
}


def _dedup_day(
    staged: list[Path],
    existing: list[Path],
    table: Table,
    counts: dict[str, int] | None,
) -> tuple[list[Path], int]:
    """Drop staged rows of `table` whose key is in `existing` files or earlier in `staged`.

    Reads only the key columns. Returns the staged files left (a file with no row left is
    removed) and the number of rows dropped; `counts` gets the kept rows by `event`.

    A day can hold millions of events, so the keys are compared as 64-bit hashes first (8
    bytes a row instead of the key text); only rows whose hash is already in the store or
    repeats within the run are compared by their text, so a hash collision drops nothing.
    """
    # A row without a key cannot be matched: it is kept (its hash stays null).
    key = _KEYS[table]
    hashed = pl.when(key.is_not_null()).then(key.hash()).alias("hash")
    stored = (
        _collect(_scan_files(existing, table).select(hashed))
        if existing
        else pl.DataFrame(schema={"hash": pl.UInt64()})
    )["hash"]
    run = (
        _collect(_scan_files(staged, table).select(hashed)) if staged else stored.clear().to_frame()
    )["hash"]
    suspects = (
        run.filter((run.is_duplicated() | run.is_in(stored.implode())) & run.is_not_null())
        .unique()
        .implode()
    )
    del run, stored
    heights = [pq.ParquetFile(str(path)).metadata.num_rows for path in staged]
    if suspects.list.len().item():
        drop = _rows_to_drop(staged, heights, existing, table, suspects)
    else:
        drop = [pl.Series("row", [], dtype=pl.UInt32()) for _ in staged]
    kept_files: list[Path] = []
    dropped = 0
    for path, height, rows in zip(staged, heights, drop, strict=True):
        dropped += rows.len()
        if counts is not None and rows.len() < height:
            by_event = (
                pl.scan_parquet(path, hive_partitioning=False)
                .select("event")
                .with_row_index("row")
                .filter(~pl.col("row").is_in(rows.implode()))
                .group_by("event")
                .len()
            )
            for event, number in _collect(by_event).iter_rows():
                counts[str(event)] = counts.get(str(event), 0) + int(number)
        if rows.len() == height:
            path.unlink()
            continue
        if rows.len():
            keep = ~pl.int_range(height, dtype=pl.UInt32, eager=True).is_in(rows.implode())
            _rewrite_keeping(path, keep, _arrow_schema(table))
        kept_files.append(path)
    return kept_files, dropped


def _rows_to_drop(
    staged: list[Path],
    heights: list[int],
    existing: list[Path],
    table: Table,
    suspects: pl.Series,
) -> list[pl.Series]:
    """For each staged file (of `heights` rows), the rows (indices) whose key is stored or came
    earlier in the run.

    Only rows whose key hash is in `suspects` (a one-row list column) can be dropped; their
    keys are read and compared as text.
    """
    key = _KEYS[table]
    suspect = pl.col("key").is_not_null() & pl.col("key").hash().is_in(suspects)
    candidates = (
        _scan_files(staged, table).select(key.alias("key")).with_row_index("row").filter(suspect)
    )
    if existing:
        stored = (
            _scan_files(existing, table)
            .select(pl.lit(None, pl.UInt32).alias("row"), key.alias("key"))
            .filter(suspect)
        )
        candidates = pl.concat([stored, candidates])
    # Stored keys come first, then the run's in file and row order: a row goes when its key
    # was seen before it.
    seen_before = ~pl.col("key").is_first_distinct() & pl.col("row").is_not_null()
    dropped = _collect(candidates.filter(seen_before).select("row"))["row"]
    result = []
    start = 0
    for height in heights:
        end = start + height
        result.append(dropped.filter(dropped.is_between(start, end, closed="left")) - start)
        start = end
    return result


def _collect(frame: pl.LazyFrame) -> pl.DataFrame:
    """`frame` collected by the streaming engine: files are read a piece at a time."""
    return frame.collect(engine="streaming")


# --- reading the store ------------------------------------------------------------------------


def _utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"`{name}` must be timezone-aware")
    return moment.astimezone(UTC)


def _partition_dirs(root: Path, table: Table) -> list[tuple[str, Path]]:
    """The `date=...` folders of `table`, sorted: (day text, folder)."""
    folder = root / table
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        if child.name.startswith("date=") and child.is_dir():
            found.append((child.name[len("date=") :], child))
    return sorted(found)


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def partition_files(
    store: str | Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    table: Table = "events",
) -> list[Path]:
    """The Parquet files of the day partitions that a window `since <= t < until` touches.

    Days are UTC days. The `date=unknown` partition (rows without a timestamp) is listed only
    when there is no window at all.
    """
    start = _utc(since, "since")
    end = _utc(until, "until")
    last = None if end is None else (end - timedelta(microseconds=1)).date()
    files: list[Path] = []
    for text, folder in _partition_dirs(Path(store), table):
        day = _day(text)
        if day is None:
            if text != UNKNOWN_DATE or start is not None or end is not None:
                continue
        elif (start is not None and day < start.date()) or (last is not None and day > last):
            continue
        files.extend(sorted(folder.glob("part-*.parquet")))
    return files


def _scan(
    store: str | Path,
    table: Table,
    column: str,
    since: datetime | None,
    until: datetime | None,
    seen: list[Path] | None = None,
    direction: DirectionSettings | None = None,
) -> pl.LazyFrame:
    """The rows of `table` with `since <= column < until`; the files it reads go to `seen`.
    Events of files written by an older schema are read as the current one has them
    (`as_current`, with `direction`)."""
    open_store(store, create=False)  # a clear error for a missing folder or a non-store
    columns = schema.EVENT_SCHEMA if table == "events" else QUARANTINE_SCHEMA
    files = partition_files(store, since=since, until=until, table=table)
    if seen is not None:
        seen.extend(files)
    if not files:
        return pl.LazyFrame(schema=columns)
    older = [path for path in files if table == "events" and _schema_version(path) == 1]
    current = [path for path in files if path not in older] if older else files
    frames = []
    for group in (current, older):
        if not group:
            continue
        frame = pl.scan_parquet(
            group,
            hive_partitioning=False,
            glob=False,
            schema=columns,
            missing_columns="insert",
            extra_columns="ignore",
        )
        start = _utc(since, "since")
        end = _utc(until, "until")
        if start is not None:
            frame = frame.filter(pl.col(column) >= start)
        if end is not None:
            frame = frame.filter(pl.col(column) < end)
        frames.append(as_current(frame, direction) if group is older else frame)
    return frames[0] if len(frames) == 1 else pl.concat(frames)


def _schema_version(path: Path) -> int:
    """The schema version a stored file was written by (its footer says; version 1 wrote it
    too). An unreadable footer is left to the scan, which names the damaged file."""
    try:
        metadata = pq.read_schema(str(path)).metadata or {}
    except (pa.ArrowException, OSError):
        return schema.SCHEMA_VERSION
    version = metadata.get(b"bounce_analyzer.schema_version", b"1")
    return int(version) if version.isdigit() else schema.SCHEMA_VERSION


def scan_events(
    store: str | Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    direction: DirectionSettings | None = None,
) -> pl.LazyFrame:
    """The stored events with `since <= timestamp < until`, lazily (only those days are read),
    as the current schema has them: the events of files written by schema version 1 are read
    as the current version (`as_current`, with `direction`: the settings that decide their
    direction, default none); those of version 2 with a null `retry_after`, as every file
    lacking a column.

    An empty store gives an empty frame with the event table's columns. Raises `StoreError`
    when there is no store at `store`.
    """
    return _scan(store, "events", "timestamp", since, until, direction=direction)


def as_current(events: pl.LazyFrame, direction: DirectionSettings | None = None) -> pl.LazyFrame:
    """Events of schema version 1 (with the event table's columns, the new ones null) as the
    current version has them, from the facts version 1 kept, with the expressions the
    classification uses (docs/STORE.md, Versions):

    - the client our server refused: on a `rejected` event of Postfix or Exim, version 1 put it
      in `relay_host`/`relay_ip` (an empty host where postscreen names none); it moves to
      `client_host`/`client_ip`, and `relay_*` become null;
    - `direction`: `direction.direction_of` with `direction` (the reader's settings, default
      none), over the facts (no `transport`: the decision tells local deliveries by their relay);
    - `transport` stays null (version 1 did not keep the program), and so do `blocklist` and
      `retry_after` (verdicts read from the diagnostic by the engine, which the store does not
      know).

    Files of version 2 need none of this: they lack only `retry_after`, which the scan adds
    as null.
    """
    settings = DirectionSettings() if direction is None else direction
    refused = (
        pl.col("source").is_in(schema.LOG_SOURCES) & (pl.col("event") == "rejected")
    ).fill_null(False)
    relay_host = pl.col("relay_host")
    return events.with_columns(
        client_host=pl.when(refused).then(pl.when(relay_host != "").then(relay_host)),
        client_ip=pl.when(refused).then(pl.col("relay_ip")),
        relay_host=pl.when(~refused).then(relay_host),
        relay_ip=pl.when(~refused).then(pl.col("relay_ip")),
    ).with_columns(direction_of(settings))


def scan_quarantine(
    store: str | Path, *, since: datetime | None = None, until: datetime | None = None
) -> pl.LazyFrame:
    """The malformed records set aside, read between `since` and `until` (by `read_at`)."""
    return _scan(store, "quarantine", "read_at", since, until)


def count_quarantined(
    store: str | Path, *, since: datetime | None = None, until: datetime | None = None
) -> int:
    """How many malformed records were set aside between `since` and `until` (by `read_at`)."""
    return int(scan_quarantine(store, since=since, until=until).select(pl.len()).collect().item())


# --- damage ---------------------------------------------------------------------------------

#: What reading a damaged Parquet file raises, besides the errors of its values (a
#: timestamp out of range): polars' errors and panics, pyarrow's, the system's.
_READ_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException, pa.ArrowException, OSError)


def _detail(error: BaseException) -> str:
    """An error's message on one short line of printable text."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 120 else text[:117] + "..."


def _day_range(path: Path) -> tuple[str, datetime, datetime] | None:
    """(column, start, end): the time column of a stored file and the UTC day its partition
    folder names, which its values lie in; None for `date=unknown`."""
    day = _day(path.parent.name.removeprefix("date="))
    if day is None:
        return None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    column = "timestamp" if path.parent.parent.name == "events" else "read_at"
    return column, start, start + timedelta(days=1)


def _damage(path: Path) -> StoreError | None:
    """Why the stored file `path` cannot be read, as a `StoreError` naming it; None when it
    reads whole: every value decodes (and matches its page checksum, where the file has them)
    and every time lies in the day of its partition."""
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        return StoreError(f"cannot read the store file {path}: {_reason(error)}")
    try:
        frame = pl.scan_parquet(path, hive_partitioning=False)
        _collect(frame.select(pl.all().hash().sum()))
        with pq.ParquetFile(str(path), page_checksum_verification=True) as pages:
            for _ in pages.iter_batches(batch_size=ROW_GROUP_ROWS):
                pass
        bounds = _day_range(path)
        if bounds is not None:
            column, start, end = bounds
            value = pl.col(column)
            outside = _collect(frame.select(((value < start) | (value >= end)).sum())).item()
            if outside:
                raise ValueError(f"{outside} values of {column} outside the day of its folder")
    except (*_READ_ERRORS, ValueError) as error:
        return StoreError(
            f"{path} is damaged ({_detail(error)}); move it out of the store, or prune its "
            "day (docs/STORE.md, Damage)"
        )
    return None


@contextlib.contextmanager
def _naming_damage(files: Sequence[Path]) -> Iterator[None]:
    """Turn an error while reading `files` into a `StoreError` naming the first of them that
    cannot be read (each is read again alone); an error no file explains goes on as it is.
    `files` may grow while the block runs: it is looked at when an error comes."""
    try:
        yield
    except BounceAnalyzerError:
        raise
    except (Exception, pl.exceptions.PanicException):
        for path in files:
            damage = _damage(path)
            if damage is not None:
                raise damage from None
        raise


class StoreReader:
    """One reader's view of a store (see `Store.reading`): the scans of a report or export.

    Each scan lists its files once; they stay in place until the reading block ends.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        #: The files the scans have listed so far.
        self.files: list[Path] = []

    def scan_events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        direction: DirectionSettings | None = None,
    ) -> pl.LazyFrame:
        """As `scan_events`, for this reader."""
        return _scan(
            self.store.path, "events", "timestamp", since, until, self.files, direction=direction
        )

    def scan_quarantine(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> pl.LazyFrame:
        """As `scan_quarantine`, for this reader."""
        return _scan(self.store.path, "quarantine", "read_at", since, until, self.files)

    def count_quarantined(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        """As `count_quarantined`, for this reader."""
        frame = self.scan_quarantine(since=since, until=until).select(pl.len())
        return int(frame.collect().item())


# --- the store --------------------------------------------------------------------------------


class Store:
    """A bounce-analyzer store (open it with `open_store`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- locking and housekeeping

    @contextlib.contextmanager
    def _locked(self, *, wait: bool) -> Iterator[None]:
        """Hold the store's lock (flock on `<store>/lock`) for one writing run."""
        try:
            handle = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreError(f"cannot lock the store {self.path}: {_reason(error)}") from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as error:
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StoreError(
                        f"another bounce-analyzer run holds the store lock: {self.path}"
                    ) from None
                raise StoreError(f"cannot lock the store {self.path}: {_reason(error)}") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            os.close(handle)

    def _clear_tmp(self) -> None:
        """Remove what killed runs left in `tmp/` (only called while holding the lock)."""
        tmp = self.path / "tmp"
        if tmp.is_dir():
            for child in tmp.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        child.unlink()
        for leftover in self.path.glob(".catalogue.json.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    # -- the catalogue

    def catalogue(self) -> list[CatalogueEntry]:
        """The inputs read so far, and how far."""
        path = self.path / "catalogue.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StoreError(f"cannot read {path}: {_reason(error)}") from None
        try:
            return _catalogue_entries(json.loads(text))
        except ValueError as error:  # json.JSONDecodeError is one
            detail = " ".join(str(error).split())
            raise StoreError(f"{path} is damaged ({detail}); remove it to re-read") from None

    # -- writing

    @contextlib.contextmanager
    def staging(self, *, wait: bool = False, now: datetime | None = None) -> Iterator[Staging]:
        """Hold the lock for one writing run, and give it a staging folder under `tmp/`.

        What the run stages goes into the store only through `Staging.commit`; however the run
        ends, its staging folder is removed. An OSError on the way becomes a `StoreError`.

        Parameters
        ----------
        wait
            Wait for another run's lock instead of failing with `StoreError`.
        now
            When the run happens (`read_at` in the catalogue and the quarantine); default:
            the clock.
        """
        read_at = _utc(now, "now") or datetime.now(UTC)
        run_id = f"{read_at:%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"
        with self._locked(wait=wait):
            self._clear_tmp()
            catalogue = self.catalogue()
            folder = self.path / "tmp" / run_id
            try:
                staging = Staging(self, folder, run_id, read_at, catalogue)
                try:
                    yield staging
                except BaseException:
                    staging.abort()
                    raise
            except OSError as error:
                raise StoreError(
                    f"cannot write to the store {self.path}: {_reason(error)}"
                ) from None
            finally:
                shutil.rmtree(folder, ignore_errors=True)

    # -- reading

    @contextlib.contextmanager
    def _readers_lock(self, *, exclusive: bool) -> Iterator[None]:
        """Hold `<store>/read.lock`: shared by readers, exclusive while a prune moves days out.

        A reader that can neither open nor create the file (a store it may not write, made
        before the file existed) reads without it.
        """
        path = self.path / "read.lock"
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            if exclusive:
                raise StoreError(f"cannot lock the store {self.path}: {_reason(error)}") from None
            try:
                handle = os.open(path, os.O_RDONLY)
            except OSError:
                yield
                return
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            except OSError as error:
                raise StoreError(f"cannot lock the store {self.path}: {_reason(error)}") from None
            yield
        finally:
            os.close(handle)  # and with it the lock

    @contextlib.contextmanager
    def reading(self) -> Iterator[StoreReader]:
        """A consistent view of the store for one reader (a report, an export) while the block
        runs: scan through the `StoreReader` it gives, and collect inside the block.

        A prune waits until the block ends, and the block until a prune has moved its days out,
        so a reader sees the store as it was before a prune or after it, never between. An error
        reading a file the scans listed becomes a `StoreError` that names the file (damaged,
        cut short, unreadable) and what to do.
        """
        with self._readers_lock(exclusive=False):
            reader = StoreReader(self)
            with _naming_damage(reader.files):
                yield reader

    # -- pruning

    def _old_partitions(self, cutoff: datetime) -> list[tuple[Table, date, Path]]:
        """The day folders (of both tables) that end at or before `cutoff`."""
        return [
            (table, day, folder)
            for table in get_args(Table)
            for text, folder in _partition_dirs(self.path, table)
            if (day := _day(text)) is not None and day < cutoff.date()
        ]

    def old_days(self, older_than: timedelta, *, now: datetime) -> list[OldDay]:
        """The days `prune(older_than, now=now)` would remove, oldest first, with the events
        and set-aside records they hold (as the files' footers say). Removes nothing."""
        counts: dict[date, dict[Table, int]] = {}
        for table, day, folder in self._old_partitions(_cutoff(now, older_than)):
            rows = sum(_footer_rows(path) for path in folder.glob("part-*.parquet"))
            counts.setdefault(day, {"events": 0, "quarantine": 0})[table] += rows
        return [
            OldDay(day, events=rows["events"], malformed=rows["quarantine"])
            for day, rows in sorted(counts.items())
        ]

    def prune(self, older_than: timedelta, *, now: datetime, wait: bool = False) -> int:
        """Remove the day partitions (events and quarantine) wholly older than `now - older_than`.

        A day is removed when it ends at or before the cut-off, so no event newer than the
        cut-off goes (a cut-off before the year 1 removes nothing). Returns the number of
        events removed (as the files' footers say: a damaged file is removed without being
        read, and counts none). The catalogue is kept: inputs read before are not read again.
        Readers (`reading`) see all the old days or none.
        """
        cutoff = _cutoff(now, older_than)
        removed = 0
        with self._locked(wait=wait):
            self._clear_tmp()
            trash = self.path / "tmp" / f"prune-{secrets.token_hex(4)}"
            try:
                old = self._old_partitions(cutoff)
                removed = sum(
                    _footer_rows(path)
                    for table, _, folder in old
                    if table == "events"
                    for path in folder.glob("part-*.parquet")
                )
                if old:
                    trash.mkdir(parents=True, exist_ok=True)
                    # One rename a day, while no reader reads.
                    with self._readers_lock(exclusive=True):
                        for table, _, folder in old:
                            os.replace(folder, trash / f"{table}-{folder.name}")
                            between_steps()
            except OSError as error:
                raise StoreError(f"cannot prune the store {self.path}: {_reason(error)}") from None
            finally:
                shutil.rmtree(trash, ignore_errors=True)
        return removed

    def days(self) -> list[date]:
        """The UTC days the store holds events of (its `date=` folders that hold a Parquet
        file), oldest first: for a report to say which days there are. Reads no file."""
        return [
            day
            for text, folder in _partition_dirs(self.path, "events")
            if (day := _day(text)) is not None and any(folder.glob("part-*.parquet"))
        ]


@dataclass(frozen=True)
class OldDay:
    """A day that a prune removes, and what it holds."""

    day: date
    events: int = 0
    malformed: int = 0  # records set aside that day


def _cutoff(now: datetime, older_than: timedelta) -> datetime:
    """`now - older_than` in UTC; the earliest moment when that is before the year 1."""
    try:
        return (_utc(now, "now") or now) - older_than
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _footer_rows(path: Path) -> int:
    """The rows of a stored Parquet file, as its footer says; 0 when it cannot be read."""
    try:
        return int(pq.read_metadata(str(path)).num_rows)
    except _READ_ERRORS:
        return 0


def between_steps() -> None:
    """Called between the steps of a commit (after staging, after de-duplication and after each
    file moved into place) and of a prune (after each day moved out). It does nothing; the
    crash and race tests (tests/test_ingest_kill.py, test_store_faults.py) put a pause here, so
    that a kill or a reader can land in each window."""


@dataclass(frozen=True)
class StagedFiles:
    """Files a `StagedWriter` wrote, by table and day, that `Staging.adopt` takes into a run.

    Plain data (paths as text), so that it crosses processes: a worker of another process (a
    Dask worker, `bounce_analyzer.cluster`) returns it to the process that commits.
    """

    events: dict[str, list[str]] = field(default_factory=dict)
    quarantine: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StagingTarget:
    """Where a worker stages its part of a run, and with what run identity (picklable).

    `Staging.target(name)` gives one per worker task; `writer()` opens a `StagedWriter` in the
    process that calls it. Its files enter the store only when the run's `Staging` adopts them
    and commits: a worker never writes the catalogue, the state or the table itself.
    """

    folder: str
    run_id: str
    read_at: datetime
    name: str

    def writer(self) -> StagedWriter:
        return StagedWriter(Path(self.folder), self.run_id, self.read_at, prefix=self.name)


class StagedWriter:
    """Stages events (by the UTC day of their timestamp) and malformed records (by the day they
    are read) to Parquet files under one folder: what `Staging.add` does for the process that
    holds the store's lock, and what a worker does for its part of a run (`StagingTarget`)."""

    def __init__(self, folder: Path, run_id: str, read_at: datetime, *, prefix: str = "") -> None:
        self.run_id = run_id
        self.read_at = read_at
        counter = [0]  # part numbers are unique in a writer, across both tables
        name = f"part-{run_id}-{prefix}" if prefix else f"part-{run_id}"
        folder.mkdir(parents=True, exist_ok=True)
        self._events = DayWriter(
            folder / "events", _arrow_schema("events"), prefix=name, counter=counter
        )
        self._quarantine = DayWriter(
            folder / "quarantine", _arrow_schema("quarantine"), prefix=name, counter=counter
        )

    def add(
        self,
        events: pl.DataFrame,
        malformed: pl.DataFrame,
        *,
        input_head: bytes = b"",
        input_path: str = "",
    ) -> None:
        """Stage events and malformed records (see `Staging.add`)."""
        if events.height:
            self._events.add(
                schema.conform(events, schema.EVENT_SCHEMA),
                pl.col("timestamp").dt.strftime("%Y-%m-%d"),
            )
        if malformed.height:
            set_aside = malformed.with_columns(
                pl.lit(self.run_id).alias("run_id"),
                pl.lit(self.read_at, pl.Datetime("us", "UTC")).alias("read_at"),
                pl.concat_str(
                    pl.lit(input_identity(input_head) + ":"),
                    pl.col("origin").str.strip_prefix(f"{input_path}:"),
                ).alias("location"),
            )
            self._quarantine.add(
                schema.conform(set_aside, _STORED_QUARANTINE_SCHEMA),
                pl.lit(self.read_at.strftime("%Y-%m-%d")),
            )

    def finish(self) -> StagedFiles:
        """Close every file; what was staged."""
        events = self._events.finish()
        quarantine = self._quarantine.finish()
        return StagedFiles(
            events={day: [str(p) for p in paths] for day, paths in events.items()},
            quarantine={day: [str(p) for p in paths] for day, paths in quarantine.items()},
        )

    def abort(self) -> None:
        """Close the open files without writing what waits (the caller removes them)."""
        self._events.abort()
        self._quarantine.abort()


class Staging:
    """One writing run's files under `tmp/<run-id>/`, until `commit` moves them into place.

    `Store.staging` makes it and holds the store's lock while it is open. `catalogue` is the
    catalogue as it was when the lock was taken: where each input read before was left.
    Workers of other processes stage parts of the run under targets it gives (`target`), and
    it takes their files in (`adopt`) before `commit`.
    """

    def __init__(
        self,
        store: Store,
        folder: Path,
        run_id: str,
        read_at: datetime,
        catalogue: list[CatalogueEntry],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.read_at = read_at
        self.catalogue = catalogue
        self._folder = folder
        self._writer = StagedWriter(folder, run_id, read_at)
        self._adopted: list[StagedFiles] = []

    def add(
        self,
        events: pl.DataFrame,
        malformed: pl.DataFrame,
        *,
        input_head: bytes = b"",
        input_path: str = "",
    ) -> None:
        """Stage events (by the UTC day of their timestamp) and malformed records (by the day
        they are read).

        The malformed records come from the input `input_path` that starts with `input_head`:
        each is known by that identity and its origin without the path (its location), so that
        it is set aside once however often and under whatever name its input is read.
        """
        self._writer.add(events, malformed, input_head=input_head, input_path=input_path)

    def target(self, name: str) -> StagingTarget:
        """A place for a worker to stage a part of this run (`name`: unique in the run, made of
        letters, digits and `-`), on the store's file system."""
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"invalid staging target name {name!r}")
        return StagingTarget(str(self._folder / "workers" / name), self.run_id, self.read_at, name)

    def adopt(self, files: StagedFiles) -> None:
        """Take into this run the files a worker staged under one of its targets; they are
        de-duplicated and committed with the run's own, in the order adopted (after its own)."""
        for paths in (*files.events.values(), *files.quarantine.values()):
            for path in paths:
                if Path(path).parent.parent.parent.parent != self._folder / "workers":
                    raise ValueError(f"{path} was not staged under this run's targets")
        self._adopted.append(files)

    def abort(self) -> None:
        """Close the staged files without writing what waits (`Store.staging` removes them)."""
        self._writer.abort()

    def carried_state(self) -> dict[str, pl.DataFrame]:
        """The state each source carried out of the last run that committed (`CarriesState`)."""
        root = self.store.path
        return _read_state(root, _state_files(root))

    def commit(
        self,
        catalogue: list[CatalogueEntry],
        *,
        state: Mapping[str, pl.DataFrame] | None = None,
    ) -> Committed:
        """Put what was staged into the store, each event once, then write `catalogue`.

        Staged rows whose key the store (or this run) already has are dropped; the files left
        are moved into place whole, one rename each; the catalogue is written last. `state`:
        what each source carries to the next run, written to files of this run that the new
        catalogue names (a source not in it keeps the state it had).
        """
        root = self.store.path
        staged_events, staged_quarantine = self._staged()
        between_steps()

        # The safety net: drop what the store (or this run) already has.
        result = Committed(run_id=self.run_id)
        final: list[tuple[Table, str, list[Path]]] = []
        for day, files in staged_events.items():
            existing = _day_files(root, "events", day)
            with _naming_damage(existing):
                kept, dropped = _dedup_day(files, existing, "events", result.events_by_type)
            result.duplicates += dropped
            final.append(("events", day, kept))
        if staged_quarantine:
            every_quarantined = partition_files(root, table="quarantine")
            for day, files in staged_quarantine.items():
                with _naming_damage(every_quarantined):
                    kept, _ = _dedup_day(files, every_quarantined, "quarantine", None)
                result.malformed += sum(pq.ParquetFile(str(p)).metadata.num_rows for p in kept)
                final.append(("quarantine", day, kept))
        between_steps()

        # Commit: whole files into place, one rename each.
        for table, day, files in final:
            folder = root / table / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            for path in files:
                os.replace(path, folder / path.name)
                between_steps()
        state_files = {**_state_files(root), **_write_state(root, self.run_id, state or {})}
        _write_catalogue(root, catalogue, state=state_files)
        _remove_other_state(root, state_files)
        return result

    def _staged(self) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
        """Every staged file of the run (its own, then the adopted), by table and day."""
        return _merge_staged([self._writer.finish(), *self._adopted])


def _merge_staged(
    parts: Sequence[StagedFiles],
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """The staged files of several writers, by table and day, in the order of `parts`."""
    events: dict[str, list[Path]] = {}
    quarantine: dict[str, list[Path]] = {}
    for part in parts:
        for merged, days in ((events, part.events), (quarantine, part.quarantine)):
            for day, paths in days.items():
                merged.setdefault(day, []).extend(Path(p) for p in paths)
    return events, quarantine


def _day_files(store: Path, table: Table, day: str) -> list[Path]:
    """The committed files of one day partition."""
    return sorted((store / table / f"date={day}").glob("part-*.parquet"))
