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
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from bounce_analyzer.location import Location, describe, is_url, locate
from bounce_analyzer.reading import TAIL_BYTES, Resume

__all__ = [
    "CATALOGUE_VERSION",
    "QUARANTINE_SCHEMA",
    "STORE_FORMAT",
    "STORE_VERSION",
    "CatalogueEntry",
    "Committed",
    "DayWriter",
    "DeltaStaging",
    "DeltaStore",
    "LostRace",
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
    "store_location",
    "store_path",
    "with_input",
]

STORE_FORMAT = "bounce-analyzer-store"
STORE_VERSION = 1
#: The layout of a store made without a `version`: 2, the Delta store (1: the folder layout
#: of version 1, which the tests of its internals make).
NEW_STORE_VERSION = 2
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

#: The local file system, for the stores and files that are local folders.
_LOCAL = Location(uri="/", root=Path("/"))


# --- where the store is ---------------------------------------------------------------------


def store_location(option: str | None) -> str | Path:
    """Where the store is: `--store`, else $BOUNCE_ANALYZER_STORE, else the user data dir; a
    folder's path, or a URL (`s3://bucket/prefix`) as given."""
    chosen = option or os.environ.get(STORE_ENV)
    if chosen:
        return chosen if is_url(chosen) else Path(chosen).expanduser()
    return Path(platformdirs.user_data_path("bounce-analyzer")) / "store"


def store_path(option: str | None) -> Path:
    """The store's folder, for what needs a local one (`serve`'s ingest worker): as
    `store_location`, and a `StoreError` for a URL."""
    where = store_location(option)
    if isinstance(where, str):
        raise StoreError(f"{where}: this command needs a store in a local folder")
    return where


def _marker() -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "schema_version": schema.SCHEMA_VERSION,
    }


def _write_json_atomically(path: Path, data: object) -> None:
    """Write `data` to a temporary file beside `path`, sync it, and rename it over `path`."""
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    _LOCAL.write_bytes(path, text.encode())


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


def open_store(path: str | Path, *, create: bool, version: int | None = None) -> Store | DeltaStore:
    """The store at `path` (a folder, or `s3://bucket/prefix`); with `create`, a new store
    there if there is none: a Delta store (`DeltaStore`), or with `version=1` a store of the
    version-1 folder layout (`Store`). A folder holding a version-1 store opens as one.

    Creating is atomic and idempotent: processes that create the same store at once all open
    it (the marker is written beside and renamed into place, and is a store's first file).

    Raises `StoreError` when `path` exists but is not a store (a folder with other files and no
    store.json, or a store.json of another format or version), when there is no store and
    `create` is false, or when the place cannot be reached (a missing bucket, denied access).
    """
    where = locate(path)
    if not where.local:
        return _open_delta(where, create=create)
    root = Path(path)
    marker = root / "store.json"
    if root.exists() and not root.is_dir():
        raise _not_a_store(root, "not a folder")
    if (root / META_DIR / "store.json").exists():
        return _open_delta(where, create=create)
    if not marker.exists():
        # Files without a marker are someone else's, unless another process is making this
        # store now: its marker being written, or the marker (and what follows it) come since.
        others = root.is_dir() and any(
            not _is_marker_in_making(child.name) and child.name != META_DIR
            for child in root.iterdir()
        )
        if others and not marker.exists() and not (root / META_DIR / "store.json").exists():
            raise _not_a_store(root, "no store.json")
        if not create and not marker.exists():
            raise StoreError(f"no store at {root}: run `bounce-analyzer ingest` first")
        if (version or NEW_STORE_VERSION) != 1:
            return _open_delta(where, create=create)
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
    # `state`: the file in `state/` of each source's carried state
    _LOCAL.write_bytes(root / "catalogue.json", _catalogue_json(entries, state or {}))


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
    return _state_map(data, str(path))


def _state_map(data: object, path: str) -> dict[str, str]:
    """The state file of each source that the catalogue `data` (read from `path`) names."""
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


def _write_state(
    where: Location, folder: Path, run_id: str, state: Mapping[str, pl.DataFrame]
) -> dict[str, str]:
    """Write each source's state to a file of this run in `folder` (synced when local: the
    catalogue that names it comes after); their names."""
    where.mkdir(folder)
    files = {}
    for source, frame in state.items():
        name = f"{source}-{run_id}.parquet"
        path = folder / name
        if where.local:
            frame.write_parquet(path, compression="zstd")
            handle = os.open(path, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        else:
            frame.write_parquet(
                where.uri_of(path), compression="zstd", storage_options=where.options()
            )
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


def _scan_files(files: list[Path], table: Table, where: Location | None = None) -> pl.LazyFrame:
    """The stored files `files` of `table` (at `where`, default local), lazily, with the
    table's columns as stored (those missing from older files are null)."""
    where = where or _LOCAL
    return pl.scan_parquet(
        [where.uri_of(path) for path in files],
        storage_options=where.options(),
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


def _parquet_writer(
    path: Path, arrow_schema: pa.Schema, where: Location | None = None
) -> pq.ParquetWriter:
    """A Parquet writer with the store's settings: zstd, statistics on the columns readers
    filter on, dictionary strings, page checksums."""
    return pq.ParquetWriter(
        str(path),
        arrow_schema,
        filesystem=None if where is None else where.filesystem,
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
        where: Location | None = None,
    ) -> None:
        self._where = where or _LOCAL  # (`directory` is a path of its file system)
        self._written: set[Path] = set()
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
        self._where.mkdir(folder)
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
            day_file.writer = _parquet_writer(day_file.path, self._schema, self._where)
            self._written.add(day_file.path)
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
        return {
            day: kept
            for day, paths in self.files.items()
            if (kept := [p for p in paths if p in self._written])
        }

    def abort(self) -> None:
        """Close the open files without writing what waits (the caller removes them)."""
        for day_file in self._open.values():
            if day_file.writer is not None:
                with contextlib.suppress(Exception):
                    day_file.writer.close()
        self._open.clear()


# --- de-duplication ---------------------------------------------------------------------------


def _rewrite_keeping(path: Path, keep: pl.Series, arrow_schema: pa.Schema, where: Location) -> None:
    """Rewrite the staged file `path` with only the rows where `keep` is true (row group by
    row group, so memory stays at one group)."""
    rewritten = path.with_name(path.name + ".dedup")
    source = where.parquet(path)
    writer = _parquet_writer(rewritten, arrow_schema, where)
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
    where.replace(rewritten, path)


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
    where: Location | None = None,
    existing_where: Location | None = None,
) -> tuple[list[Path], int]:
    """Drop staged rows of `table` whose key is in `existing` files or earlier in `staged`.

    Reads only the key columns. Returns the staged files left (a file with no row left is
    removed) and the number of rows dropped; `counts` gets the kept rows by `event`.

    A day can hold millions of events, so the keys are compared as 64-bit hashes first (8
    bytes a row instead of the key text); only rows whose hash is already in the store or
    repeats within the run are compared by their text, so a hash collision drops nothing.
    """
    # A row without a key cannot be matched: it is kept (its hash stays null).
    where = where or _LOCAL
    existing_where = existing_where or where
    key = _KEYS[table]
    hashed = pl.when(key.is_not_null()).then(key.hash()).alias("hash")
    stored = (
        _collect(_scan_files(existing, table, existing_where).select(hashed))
        if existing
        else pl.DataFrame(schema={"hash": pl.UInt64()})
    )["hash"]
    run = (
        _collect(_scan_files(staged, table, where).select(hashed))
        if staged
        else stored.clear().to_frame()
    )["hash"]
    suspects = (
        run.filter((run.is_duplicated() | run.is_in(stored.implode())) & run.is_not_null())
        .unique()
        .implode()
    )
    del run, stored
    heights = [where.parquet(path).metadata.num_rows for path in staged]
    if suspects.list.len().item():
        drop = _rows_to_drop(staged, heights, existing, table, suspects, where, existing_where)
    else:
        drop = [pl.Series("row", [], dtype=pl.UInt32()) for _ in staged]
    kept_files: list[Path] = []
    dropped = 0
    for path, height, rows in zip(staged, heights, drop, strict=True):
        dropped += rows.len()
        if counts is not None and rows.len() < height:
            by_event = (
                _scan_files([path], table, where)
                .select("event")
                .with_row_index("row")
                .filter(~pl.col("row").is_in(rows.implode()))
                .group_by("event")
                .len()
            )
            for event, number in _collect(by_event).iter_rows():
                counts[str(event)] = counts.get(str(event), 0) + int(number)
        if rows.len() == height:
            where.unlink(path)
            continue
        if rows.len():
            keep = ~pl.int_range(height, dtype=pl.UInt32, eager=True).is_in(rows.implode())
            _rewrite_keeping(path, keep, _arrow_schema(table), where)
        kept_files.append(path)
    return kept_files, dropped


def _rows_to_drop(
    staged: list[Path],
    heights: list[int],
    existing: list[Path],
    table: Table,
    suspects: pl.Series,
    where: Location,
    existing_where: Location,
) -> list[pl.Series]:
    """For each staged file (of `heights` rows), the rows (indices) whose key is stored or came
    earlier in the run.

    Only rows whose key hash is in `suspects` (a one-row list column) can be dropped; their
    keys are read and compared as text.
    """
    key = _KEYS[table]
    suspect = pl.col("key").is_not_null() & pl.col("key").hash().is_in(suspects)
    candidates = (
        _scan_files(staged, table, where)
        .select(key.alias("key"))
        .with_row_index("row")
        .filter(suspect)
    )
    if existing:
        stored = (
            _scan_files(existing, table, existing_where)
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
    if not is_url(store) and not (Path(store) / META_DIR / "store.json").exists():
        start = _utc(since, "since")
        end = _utc(until, "until")
        files: list[Path] = []
        for text, folder in _partition_dirs(Path(store), table):
            if _day_in_window(text, start, end):
                files.extend(sorted(folder.glob("part-*.parquet")))
        return files
    opened = open_store(store, create=False)
    assert isinstance(opened, DeltaStore)
    return opened.window_files(table, since, until)


def _scan(
    store: str | Path | Store | DeltaStore,
    table: Table,
    column: str,
    since: datetime | None,
    until: datetime | None,
    seen: list[Path] | None = None,
    direction: DirectionSettings | None = None,
    snapshots: dict[Table, _Snapshot] | None = None,
) -> pl.LazyFrame:
    """The rows of `table` with `since <= column < until`; the files it reads go to `seen`.
    Events of files written by an older schema are read as the current one has them
    (`as_current`, with `direction`). A Delta store's files are those of one version of the
    table (`snapshots` keeps it for a reader's later scans)."""
    # (a clear error for a missing folder or a non-store)
    opened = store if isinstance(store, Store | DeltaStore) else open_store(store, create=False)
    columns = schema.EVENT_SCHEMA if table == "events" else QUARANTINE_SCHEMA
    where = _LOCAL
    if isinstance(opened, DeltaStore):
        where = opened.where
        files = opened.window_files(table, since, until, snapshots)
        older: list[Path] = []  # (a Delta store holds files of the current schema: migrated)
    else:
        files = partition_files(opened.path, since=since, until=until, table=table)
        older = [path for path in files if table == "events" and _schema_version(path) == 1]
    if seen is not None and where.local:
        seen.extend(files)
    if not files:
        return pl.LazyFrame(schema=columns)
    current = [path for path in files if path not in older] if older else files
    frames = []
    for group in (current, older):
        if not group:
            continue
        frame = pl.scan_parquet(
            group if where.local else [where.uri_of(path) for path in group],
            storage_options=where.options(),
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
    store: str | Path | Store | DeltaStore,
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
    store: str | Path | Store | DeltaStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.LazyFrame:
    """The malformed records set aside, read between `since` and `until` (by `read_at`)."""
    return _scan(store, "quarantine", "read_at", since, until)


def count_quarantined(
    store: str | Path | Store | DeltaStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
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

    def __init__(self, store: Store | DeltaStore) -> None:
        self.store = store
        #: The files the scans have listed so far.
        self.files: list[Path] = []
        #: The version of each Delta table the scans read (the first scan of a table sets it).
        self._snapshots: dict[Table, _Snapshot] = {}

    def scan_events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        direction: DirectionSettings | None = None,
    ) -> pl.LazyFrame:
        """As `scan_events`, for this reader."""
        return _scan(
            self.store,
            "events",
            "timestamp",
            since,
            until,
            self.files,
            direction=direction,
            snapshots=self._snapshots,
        )

    def scan_quarantine(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> pl.LazyFrame:
        """As `scan_quarantine`, for this reader."""
        return _scan(
            self.store, "quarantine", "read_at", since, until, self.files, snapshots=self._snapshots
        )

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
        if is_url(self.folder):  # a Delta store on S3: the worker writes into its tables
            where = locate(self.folder)
            return StagedWriter(
                where.root, self.run_id, self.read_at, prefix=self.name, where=where
            )
        return StagedWriter(Path(self.folder), self.run_id, self.read_at, prefix=self.name)


class StagedWriter:
    """Stages events (by the UTC day of their timestamp) and malformed records (by the day they
    are read) to Parquet files under one folder: what `Staging.add` does for the process that
    holds the store's lock, and what a worker does for its part of a run (`StagingTarget`)."""

    def __init__(
        self,
        folder: Path,
        run_id: str,
        read_at: datetime,
        *,
        prefix: str = "",
        where: Location | None = None,
    ) -> None:
        self.run_id = run_id
        self.read_at = read_at
        counter = [0]  # part numbers are unique in a writer, across both tables
        name = f"part-{run_id}-{prefix}" if prefix else f"part-{run_id}"
        (where or _LOCAL).mkdir(folder)
        self._events = DayWriter(
            folder / "events", _arrow_schema("events"), prefix=name, counter=counter, where=where
        )
        self._quarantine = DayWriter(
            folder / "quarantine",
            _arrow_schema("quarantine"),
            prefix=name,
            counter=counter,
            where=where,
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

    def paths(self) -> list[Path]:
        """Every file the writer started (written or not)."""
        return [
            path
            for days in (self._events.files, self._quarantine.files)
            for paths in days.values()
            for path in paths
        ]


def _check_target_name(name: str) -> None:
    """A worker's target name is letters, digits and `-` (it goes into file names)."""
    if not name or not all(c.isalnum() or c == "-" for c in name):
        raise ValueError(f"invalid staging target name {name!r}")


class Staging:
    """One writing run's files under `tmp/<run-id>/`, until `commit` moves them into place.

    `Store.staging` makes it and holds the store's lock while it is open. `catalogue` is the
    catalogue as it was when the lock was taken: where each input read before was left.
    Workers of other processes stage parts of the run under targets it gives (`target`), and
    it takes their files in (`adopt`) before `commit`.
    """

    store: Store | DeltaStore

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
        _check_target_name(name)
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
        assert isinstance(self.store, Store)
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
        assert isinstance(self.store, Store)
        root = self.store.path
        staged_events, staged_quarantine = self._staged()
        between_steps()

        # The safety net: drop what the store (or this run) already has.
        result = Committed(run_id=self.run_id)
        final = _new_rows(
            result,
            staged_events,
            staged_quarantine,
            stored=lambda day: _day_files(root, "events", day),
            quarantined=lambda: partition_files(root, table="quarantine"),
        )
        between_steps()

        # Commit: whole files into place, one rename each.
        for table, day, files in final:
            folder = root / table / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            for path in files:
                os.replace(path, folder / path.name)
                between_steps()
        written = _write_state(_LOCAL, root / STATE_DIR, self.run_id, state or {})
        state_files = {**_state_files(root), **written}
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


def _new_rows(
    result: Committed,
    events: Mapping[str, list[Path]],
    quarantine: Mapping[str, list[Path]],
    *,
    stored: Callable[[str], list[Path]],
    quarantined: Callable[[], list[Path]],
    where: Location = _LOCAL,
) -> list[tuple[Table, str, list[Path]]]:
    """The staged files of each table and day (`events`, `quarantine`) once the rows the
    store or the run already has are dropped (`_dedup_day`): the store's files of a day are
    `stored(day)`, every set-aside file `quarantined()`. The duplicates dropped, the kept
    events by type and the set-aside records kept are counted in `result`. A damaged stored
    file is named where the store is local."""
    kept_files: list[tuple[Table, str, list[Path]]] = []
    for day, files in events.items():
        existing = stored(day)
        with _naming_damage(existing if where.local else []):
            kept, dropped = _dedup_day(files, existing, "events", result.events_by_type, where)
        result.duplicates += dropped
        kept_files.append(("events", day, kept))
    if quarantine:
        every = quarantined()
        for day, files in quarantine.items():
            with _naming_damage(every if where.local else []):
                kept, _ = _dedup_day(files, every, "quarantine", None, where)
            result.malformed += sum(where.parquet(path).metadata.num_rows for path in kept)
            kept_files.append(("quarantine", day, kept))
    return kept_files


def _day_files(store: Path, table: Table, day: str) -> list[Path]:
    """The committed files of one day partition."""
    return sorted((store / table / f"date={day}").glob("part-*.parquet"))


# --- the Delta store (version 2) ----------------------------------------------------------------
#
#     <store>/_bounce_analyzer/store.json           {"format": ..., "version": 2, ...}
#     <store>/_bounce_analyzer/catalogue-<n>-<run-id>.json   the catalogue of version n
#     <store>/_bounce_analyzer/state/<source>-<run-id>.parquet
#     <store>/events/_delta_log/ ...  date=YYYY-MM-DD/part-<run-id>-<n>.parquet   (a Delta table)
#     <store>/quarantine/_delta_log/ ...  date=YYYY-MM-DD/part-...                 (a Delta table)
#
# docs/STORE.md gives the reasons. A run writes its files straight into the tables' folders
# (a file no commit names is invisible to every reader), then commits them in one Delta
# transaction of the events table that also carries the catalogue: the app transaction
# `CATALOGUE_APP` counts the catalogue's versions, and a run that read version n commits n + 1
# only if no other run did first (an optimistic lock; the loser goes again).

#: The store's own files, beside the tables.
META_DIR = "_bounce_analyzer"
#: The version of the Delta layout in its marker.
DELTA_STORE_VERSION = 2
#: The app transaction that counts the catalogue's versions in the events table.
CATALOGUE_APP = "bounce-analyzer/catalogue"
#: The app transaction that counts the days `store migrate` committed, in each table.
MIGRATE_APP = "bounce-analyzer/migrate"
#: The commit metadata key naming the catalogue file a commit made current.
CATALOGUE_KEY = "bounce_analyzer.catalogue"
#: How long a file a prune removed stays for readers still reading it (and how old a file no
#: commit names must be before it goes: a run still writing is younger).
VACUUM_RETENTION_HOURS = 24


class LostRace(StoreError):
    """Another ingest committed a new catalogue since this run read its own: the run's files
    were removed; `ingest.ingest_run` goes again from the new catalogue (a caller that does
    not reports it as this error). `malformed`: the records it had committed to the
    quarantine all the same (its own transaction, before)."""

    def __init__(self, run_id: str, malformed: int = 0) -> None:
        super().__init__(
            f"another ingest committed to the store while run {run_id} ran; nothing of this "
            "run's events was stored: run it again"
        )
        self.malformed = malformed


def _delta_marker() -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        "version": DELTA_STORE_VERSION,
        "table_format": "delta",
        "schema_version": schema.SCHEMA_VERSION,
    }


def _table_schema(table: Table) -> pa.Schema:
    """A table's Delta schema: the stored columns and the partition column `date`."""
    arrow = _arrow_schema(table)
    return pa.schema([*arrow, pa.field("date", pa.string())])


def _delta_errors() -> tuple[type[BaseException], ...]:
    from deltalake.exceptions import DeltaError

    return (OSError, DeltaError, pa.ArrowException)


def _open_delta(where: Location, *, create: bool) -> DeltaStore:
    store = DeltaStore(where)
    marker = where.path(META_DIR, "store.json")
    try:
        if where.exists(marker):
            _check_delta_marker(where, marker)
        elif not where.local and _bucket_missing(where):
            raise StoreError(f"cannot open the store {where.uri}: the bucket does not exist")
        elif not create:
            raise StoreError(f"no store at {where.uri}: run `bounce-analyzer ingest` first")
        else:
            if not where.local:
                others = [n for n in _top_names(where) if n != META_DIR]
                if others:
                    raise _not_a_store(Path(where.uri), "no _bounce_analyzer/store.json")
            where.write_bytes(marker, (json.dumps(_delta_marker(), indent=1) + "\n").encode())
        store._ensure_tables()
    except _delta_errors() as error:
        raise StoreError(f"cannot open the store {where.uri}: {describe(error)}") from None
    return store


def _bucket_missing(where: Location) -> bool:
    import pyarrow.fs as pafs

    assert where.filesystem is not None
    bucket = where.root.parts[0]
    return bool(where.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound)


def _top_names(where: Location) -> list[str]:
    assert where.filesystem is not None
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(str(where.root), allow_not_found=True)
    return [Path(info.path).name for info in where.filesystem.get_file_info(selector)]


def _check_delta_marker(where: Location, marker: Path) -> None:
    try:
        data = json.loads(where.read_bytes(marker))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _not_a_store(Path(where.uri), "unreadable _bounce_analyzer/store.json") from None
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
        raise _not_a_store(Path(where.uri), f"store.json is not of format {STORE_FORMAT}")
    if data.get("version") != DELTA_STORE_VERSION:
        raise _not_a_store(
            Path(where.uri),
            f"store.json says version {data.get('version')!r}, this program reads 1 and 2",
        )


def _millis(moment: datetime, *, up: bool) -> str:
    """A time for Delta's statistics, in whole milliseconds (readers may truncate to them):
    rounded down for a minimum, up for a maximum."""
    moment = moment.astimezone(UTC)
    rest = moment.microsecond % 1000
    if rest:
        moment -= timedelta(microseconds=rest)
        if up:
            moment += timedelta(milliseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _add_action(where: Location, table: Table, path: Path, day: str) -> Any:
    """The Delta add action of a file written into `table`, with its row count and the
    min/max/null count of its time column (from its footer), so that other engines skip files
    outside a window."""
    from deltalake.transaction import AddAction

    column = _TIME_COLUMN[table]
    with where.parquet(path) as parquet:
        metadata = parquet.metadata
        index = parquet.schema_arrow.get_field_index(column)
    low: datetime | None = None
    high: datetime | None = None
    nulls = 0
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None:
            continue
        nulls += stats.null_count or 0
        if stats.has_min_max:
            low = stats.min if low is None else min(low, stats.min)
            high = stats.max if high is None else max(high, stats.max)
    record: dict[str, Any] = {"numRecords": metadata.num_rows, "nullCount": {column: nulls}}
    if low is not None and high is not None:
        record["minValues"] = {column: _millis(low, up=False)}
        record["maxValues"] = {column: _millis(high, up=True)}
    size, modified = where.size_and_time(path)
    return AddAction(
        path.relative_to(where.path(table)).as_posix(),
        size,
        {"date": day},
        modified,
        True,
        json.dumps(record),
    )


#: The time column of each table (statistics, windows).
_TIME_COLUMN: dict[Table, str] = {"events": "timestamp", "quarantine": "read_at"}


@dataclass(frozen=True)
class _Snapshot:
    """One version of a Delta table: its committed files by day, with their rows."""

    table: Any  # deltalake.DeltaTable, at that version
    files: list[tuple[str, Path, int]]  # (day, path, rows)

    def by_day(self) -> dict[str, list[Path]]:
        days: dict[str, list[Path]] = {}
        for day, path, _ in self.files:
            days.setdefault(day, []).append(path)
        return days


class DeltaStore:
    """A bounce-analyzer store of two Delta tables (`events`, `quarantine`), local or on S3
    (open it with `open_store`). It has `Store`'s face: `catalogue`, `staging`, `reading`,
    `days`, `old_days`, `prune`."""

    def __init__(self, where: Location) -> None:
        self.where = where
        #: The store's place: a local folder's path, or its `s3://` URL.
        self.path: Path | str = where.root if where.local else where.uri

    def __repr__(self) -> str:
        return f"DeltaStore({self.where.uri!r})"

    @property
    def uri(self) -> str:
        return self.where.uri

    def table_uri(self, table: Table) -> str:
        """The URI of one of the store's Delta tables (for other engines: Spark, DuckDB)."""
        return self.where.uri_of(self.where.path(table))

    def _ensure_tables(self) -> None:
        from deltalake import DeltaTable

        for table in get_args(Table):
            uri = self.table_uri(table)
            log = self.where.path(table, "_delta_log")
            if self.where.names(log):  # (listed through pyarrow, which frees the GIL)
                continue
            try:
                DeltaTable.create(
                    uri,
                    _table_schema(table),
                    mode="ignore",
                    partition_by=["date"],
                    storage_options=self.where.options(),
                )
            except _delta_errors():
                if not self.where.names(log):
                    raise  # (another process made it meanwhile, or this is a real error)

    def _snapshot(self, table: Table, version: int | None = None) -> _Snapshot:
        from deltalake import DeltaTable

        delta = DeltaTable(
            self.table_uri(table), version=version, storage_options=self.where.options()
        )
        actions = pa.table(delta.get_add_actions(flatten=True))
        columns = actions.select(["path", "partition.date", "num_records"]).to_pydict()
        root = self.where.path(table)
        files = [
            (str(day), root / str(path), int(rows or 0))
            for path, day, rows in zip(
                columns["path"], columns["partition.date"], columns["num_records"], strict=True
            )
        ]
        files.sort(key=lambda item: (item[0], item[1].name))
        return _Snapshot(delta, files)

    def _guarded(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _store_errors(f"cannot {what} the store {self.where.uri}")

    # -- the catalogue

    def _catalogue_of(self, events: _Snapshot) -> tuple[int, dict[str, Any]]:
        """The catalogue version the events table is at, and that catalogue's content."""
        version = events.table.transaction_version(CATALOGUE_APP) or 0
        if not version:
            return 0, {"inputs": []}
        prefix = f"catalogue-{version:08d}-"
        folder = self.where.path(META_DIR)
        names = [name for name in self.where.names(folder) if name.startswith(prefix)]
        if len(names) != 1:  # a killed run's file of the same version: the log says which
            names = [
                str(commit[CATALOGUE_KEY])
                for commit in events.table.history()
                if str(commit.get(CATALOGUE_KEY, "")).startswith(prefix)
            ][:1]
        path = folder / (names[0] if names else f"{prefix}*.json")
        try:
            data = json.loads(self.where.read_bytes(path))
        except FileNotFoundError:
            raise StoreError(
                f"{self.where.uri_of(path)} is missing: the store's catalogue of version "
                f"{version} is lost; `store migrate` cannot help, re-ingest into a new store"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StoreError(f"{self.where.uri_of(path)} is damaged ({_detail(error)})") from None
        if not isinstance(data, dict):
            raise StoreError(f"{self.where.uri_of(path)} is damaged (not an object)")
        data["__file__"] = path.name
        return version, data

    def _entries(self, data: dict[str, Any]) -> list[CatalogueEntry]:
        try:
            return _catalogue_entries(data)
        except ValueError as error:
            name = data.get("__file__", "catalogue")
            raise StoreError(
                f"{self.where.uri_of(self.where.path(META_DIR, str(name)))} is damaged "
                f"({_detail(error)})"
            ) from None

    def catalogue(self) -> list[CatalogueEntry]:
        """The inputs read so far, and how far (the catalogue of the events table's version)."""
        with self._guarded("read"):
            _, data = self._catalogue_of(self._snapshot("events"))
        return self._entries(data)

    # -- writing

    @contextlib.contextmanager
    def staging(self, *, wait: bool = False, now: datetime | None = None) -> Iterator[DeltaStaging]:
        """One writing run (see `Store.staging`). No lock: the run reads the tables at their
        current version; `DeltaStaging.commit` raises `LostRace` when another run committed a
        catalogue first (`ingest.ingest_run` then goes again). `wait` is accepted for the
        same face as `Store.staging`: nothing is waited for."""
        del wait
        read_at = _utc(now, "now") or datetime.now(UTC)
        run_id = f"{read_at:%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"
        with self._guarded("read"):
            events = self._snapshot("events")
            quarantine = self._snapshot("quarantine")
            version, data = self._catalogue_of(events)
        staging = DeltaStaging(
            self, run_id, read_at, self._entries(data), events, quarantine, version, data
        )
        try:
            with self._guarded("write to"):
                yield staging
        except BaseException:
            staging.discard(sweep=True)
            raise

    # -- reading

    @contextlib.contextmanager
    def reading(self) -> Iterator[StoreReader]:
        """A consistent view for one reader: its scans read one version of each table, whatever
        commits and prunes happen meanwhile (a pruned file stays for
        `VACUUM_RETENTION_HOURS`). A damaged local file is named."""
        reader = StoreReader(self)
        with _naming_damage(reader.files):
            yield reader

    def window_files(
        self,
        table: Table,
        since: datetime | None,
        until: datetime | None,
        snapshots: dict[Table, _Snapshot] | None = None,
    ) -> list[Path]:
        """The committed files of the days a window touches (as `partition_files`)."""
        if snapshots is not None and table in snapshots:
            snapshot = snapshots[table]
        else:
            with self._guarded("read"):
                snapshot = self._snapshot(table)
            if snapshots is not None:
                snapshots[table] = snapshot
        start = _utc(since, "since")
        end = _utc(until, "until")
        return [path for day, path, _ in snapshot.files if _day_in_window(day, start, end)]

    def days(self) -> list[date]:
        """The UTC days the store holds events of, oldest first (from the table's log)."""
        with self._guarded("read"):
            snapshot = self._snapshot("events")
        found = {day for text, _, _ in snapshot.files if (day := _day(text)) is not None}
        return sorted(found)

    def old_days(self, older_than: timedelta, *, now: datetime) -> list[OldDay]:
        """The days `prune` would remove, with their events and set-aside records."""
        cutoff = _cutoff(now, older_than)
        counts: dict[date, dict[Table, int]] = {}
        with self._guarded("read"):
            for table in get_args(Table):
                for text, _, rows in self._snapshot(table).files:
                    day = _day(text)
                    if day is not None and day < cutoff.date():
                        counts.setdefault(day, {"events": 0, "quarantine": 0})[table] += rows
        return [
            OldDay(day, events=rows["events"], malformed=rows["quarantine"])
            for day, rows in sorted(counts.items())
        ]

    def prune(self, older_than: timedelta, *, now: datetime, wait: bool = False) -> int:
        """Remove the days wholly older than `now - older_than` (see `Store.prune`): one Delta
        `delete` of their partitions per table, then a `vacuum` of the files removed more than
        `VACUUM_RETENTION_HOURS` ago. A reader that read the table before the delete reads its
        files still. Returns the events removed (from the log's row counts)."""
        del wait
        from deltalake.exceptions import CommitFailedError

        cutoff = _cutoff(now, older_than)
        removed = 0
        with self._guarded("prune"):
            for table in get_args(Table):
                for attempt in range(5):
                    snapshot = self._snapshot(table)
                    old = sorted(
                        {
                            text
                            for text, _, _ in snapshot.files
                            if (day := _day(text)) is not None and day < cutoff.date()
                        }
                    )
                    if not old:
                        break
                    rows = sum(n for text, _, n in snapshot.files if text in set(old))
                    listed = ", ".join(f"'{day}'" for day in old)
                    try:
                        snapshot.table.delete(f"date IN ({listed})")
                    except CommitFailedError:
                        if attempt == 4:
                            raise
                        continue
                    if table == "events":
                        removed += rows
                    between_steps()
                    break
                self._vacuum(table)
        return removed

    def _vacuum(self, table: Table) -> None:
        from deltalake import DeltaTable

        delta = DeltaTable(self.table_uri(table), storage_options=self.where.options())
        delta.vacuum(
            retention_hours=VACUUM_RETENTION_HOURS,
            dry_run=False,
            enforce_retention_duration=False,
        )


@contextlib.contextmanager
def _store_errors(what: str) -> Iterator[None]:
    """OSErrors and Delta errors as one `StoreError` line: `<what>: <why>`."""
    try:
        yield
    except BounceAnalyzerError:  # (LostRace among them)
        raise
    except _delta_errors() as error:
        raise StoreError(f"{what}: {describe(error)}") from None


def _day_in_window(text: str, start: datetime | None, end: datetime | None) -> bool:
    """Whether the day partition `text` holds times of the window [start, end); `unknown`
    only when there is no window."""
    day = _day(text)
    if day is None:
        return text == UNKNOWN_DATE and start is None and end is None
    last = None if end is None else (end - timedelta(microseconds=1)).date()
    return not ((start is not None and day < start.date()) or (last is not None and day > last))


class DeltaStaging(Staging):
    """One writing run of a `DeltaStore`: files written straight into the tables' folders,
    invisible until `commit` names them in one transaction with the new catalogue."""

    def __init__(
        self,
        store: DeltaStore,
        run_id: str,
        read_at: datetime,
        catalogue: list[CatalogueEntry],
        events: _Snapshot,
        quarantine: _Snapshot,
        version: int,
        data: dict[str, Any],
    ) -> None:
        where = store.where
        self.store = store
        self.delta = store
        self.run_id = run_id
        self.read_at = read_at
        self.catalogue = catalogue
        self._folder = where.root
        self._where = where
        self._writer = StagedWriter(where.root, run_id, read_at, where=where)
        self._adopted: list[StagedFiles] = []
        self._events = events
        self._quarantine = quarantine
        self._version = version
        self._state = _state_map(data, where.uri_of(where.path(META_DIR, "catalogue")))
        self._mine: list[Path] = []  # what this run wrote outside the tables (state, catalogue)

    def target(self, name: str) -> StagingTarget:
        """A place for a worker to write a part of this run: the store itself (its files are
        named after the run and `name`, and are invisible until the run commits them)."""
        _check_target_name(name)
        return StagingTarget(self._where.uri, self.run_id, self.read_at, name)

    def adopt(self, files: StagedFiles) -> None:
        for paths in (*files.events.values(), *files.quarantine.values()):
            for path in paths:
                here = Path(path)
                if here.parent.parent.parent != self._folder or not here.name.startswith(
                    f"part-{self.run_id}-"
                ):
                    raise ValueError(f"{path} was not staged under this run's targets")
        self._adopted.append(files)

    def carried_state(self) -> dict[str, pl.DataFrame]:
        where = self._where
        state = {}
        for source, name in self._state.items():
            path = where.path(META_DIR, STATE_DIR, name)
            try:
                state[source] = pl.read_parquet(where.uri_of(path), storage_options=where.options())
            except FileNotFoundError:
                continue
            except (OSError, pl.exceptions.PolarsError) as error:
                if not where.exists(path):
                    continue
                raise StoreError(
                    f"{where.uri_of(path)}: unreadable state ({_detail(error)}); "
                    "remove it to go on without it"
                ) from None
        return state

    def discard(self, *, sweep: bool = False) -> None:
        """Remove every file the run wrote (none of them is committed); with `sweep`, also
        those its workers wrote and the run did not adopt (a failed run: the tables' folders
        are listed for the run's names)."""
        self._writer.abort()
        if sweep:
            self._sweep()
        for path in self._writer.paths():
            with contextlib.suppress(OSError):
                self._where.unlink(path)
        events, quarantine = _merge_staged(self._adopted)
        for paths in (*events.values(), *quarantine.values()):
            for path in paths:
                with contextlib.suppress(OSError):
                    self._where.unlink(path)
        for path in self._mine:
            with contextlib.suppress(OSError):
                self._where.unlink(path)

    def _sweep(self) -> None:
        """Remove the files named after this run in the tables' day folders."""
        import pyarrow.fs as pafs

        where = self._where
        prefix = f"part-{self.run_id}-"
        for table in get_args(Table):
            folder = where.path(table)
            if where.filesystem is None:
                found = list(folder.glob(f"date=*/{prefix}*"))
            else:
                selector = pafs.FileSelector(str(folder), recursive=True, allow_not_found=True)
                found = [
                    Path(info.path)
                    for info in where.filesystem.get_file_info(selector)
                    if Path(info.path).name.startswith(prefix)
                ]
            for path in found:
                with contextlib.suppress(OSError):
                    where.unlink(path)

    def commit(
        self,
        catalogue: list[CatalogueEntry],
        *,
        state: Mapping[str, pl.DataFrame] | None = None,
    ) -> Committed:
        """Commit what was written, each event once, with `catalogue`, in one transaction of
        the events table (the set-aside records first, in one of the quarantine's).

        Raises `LostRace` (having removed what the run wrote) when another run committed a
        catalogue since this run read its own."""
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import CommitProperties, Transaction

        where = self._where
        staged_events, staged_quarantine = self._staged()
        between_steps()
        result = Committed(run_id=self.run_id)
        stored = self._events.by_day()
        kept = _new_rows(
            result,
            staged_events,
            staged_quarantine,
            stored=lambda day: stored.get(day, []),
            quarantined=lambda: [path for _, path, _ in self._quarantine.files],
            where=where,
        )
        kept_events = [
            (day, path) for table, day, paths in kept if table == "events" for path in paths
        ]
        kept_quarantine = [
            (day, path) for table, day, paths in kept if table == "quarantine" for path in paths
        ]
        between_steps()

        if kept_quarantine:  # a blind append: set-aside records are de-duplicated by key
            actions = [_add_action(where, "quarantine", path, day) for day, path in kept_quarantine]
            self._quarantine.table.create_write_transaction(
                actions, "append", _table_schema("quarantine"), partition_by=["date"]
            )
            between_steps()

        written = _write_state(where, where.path(META_DIR, STATE_DIR), self.run_id, state or {})
        self._mine.extend(where.path(META_DIR, STATE_DIR, name) for name in written.values())
        state_files = {**self._state, **written}
        version = self._version + 1
        name = f"catalogue-{version:08d}-{self.run_id}.json"
        self._mine.append(where.path(META_DIR, name))
        where.write_bytes(where.path(META_DIR, name), _catalogue_json(catalogue, state_files))
        actions = [_add_action(where, "events", path, day) for day, path in kept_events]
        between_steps()
        try:
            self._events.table.create_write_transaction(
                actions,
                "append",
                _table_schema("events"),
                partition_by=["date"],
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(CATALOGUE_APP, version)],
                    custom_metadata={CATALOGUE_KEY: name},
                ),
            )
        except CommitFailedError:
            self.discard()  # (the kept files among them: each is the run's own or adopted)
            raise LostRace(self.run_id, result.malformed) from None
        self._mine.clear()
        between_steps()
        # What the new catalogue supersedes: the state files only the old one named, and
        # the catalogue before the old one (the old one stays for a run reading it now).
        for path in [
            *(
                where.path(META_DIR, STATE_DIR, old)
                for old in set(self._state.values()) - set(state_files.values())
            ),
            *(
                where.path(META_DIR, other)
                for other in where.names(where.path(META_DIR))
                if _catalogue_version(other) < self._version
            ),
        ]:
            with contextlib.suppress(OSError):
                where.unlink(path)
        return result


def _catalogue_version(name: str) -> float:
    """The version a file of the store's folder `META_DIR` is the catalogue of
    (`catalogue-<version>-<run>.json`); infinity for any other file."""
    number = name.removeprefix("catalogue-").split("-")[0]
    return int(number) if name.startswith("catalogue-") and number.isdigit() else math.inf


def _catalogue_json(entries: list[CatalogueEntry], state: Mapping[str, str]) -> bytes:
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
        data["state"] = dict(state)
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode()
