"""`store migrate`: a store of the version-1 folder layout moved into a Delta store.

Day by day and table by table, the old store's files are read a row group at a time (events of
schema version 1 through `store.as_current`, as every reader reads them), written into the new
tables with the store's writer, and committed with the app transaction `MIGRATE_APP` set to the
day's number: a migration killed at any point goes on, run again, after the last day it
committed. Then the catalogue and the sources' carried state are committed as the Delta store's
catalogue version 1, and the events and set-aside records of each day are counted on both
sides. The old store is only read. docs/STORE.md, "Migration", says why.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import polars as pl
import pyarrow.parquet as pq

from bounce_analyzer import schema
from bounce_analyzer.direction import DirectionSettings
from bounce_analyzer.errors import StoreError
from bounce_analyzer.store import (
    CATALOGUE_APP,
    CATALOGUE_KEY,
    META_DIR,
    MIGRATE_APP,
    ROW_GROUP_ROWS,
    STATE_DIR,
    DayWriter,
    DeltaStore,
    Store,
    Table,
    _add_action,
    _arrow_schema,
    _catalogue_json,
    _day_files,
    _footer_rows,
    _partition_dirs,
    _schema_version,
    _state_files,
    _store_errors,
    _stored_columns,
    _table_schema,
    as_current,
    open_store,
)

__all__ = ["Migrated", "migrate_store"]


@dataclass
class Migrated:
    """What a migration did."""

    days: int = 0  # days of the old store (events or set-aside records)
    committed: int = 0  # day-tables committed by this run (the rest were there already)
    events: dict[str, int] = field(default_factory=dict)  # events per day, as both stores count
    malformed: int = 0
    catalogue_inputs: int = 0


def migrate_store(
    source: str | Path,
    target: str | Path,
    *,
    direction: DirectionSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> Migrated:
    """Move the version-1 store at `source` into the Delta store at `target` (made there, or
    one that an earlier, killed migration of it began). `direction`: the settings that give
    events of schema version 1 their direction. Raises `StoreError` when `source` is not a
    version-1 store, when `target` holds events of its own, or when a day's counts differ."""
    old = open_store(source, create=False)
    if not isinstance(old, Store):
        raise StoreError(f"{source} is already a Delta store: nothing to migrate")
    new = open_store(target, create=True)
    if not isinstance(new, DeltaStore):
        raise StoreError(f"{target} is a store of version 1: migrate into a new folder")
    days = sorted(
        {text for table in get_args(Table) for text, _ in _partition_dirs(old.path, table)}
    )
    result = Migrated(days=len(days))
    with _store_errors(f"cannot migrate into {new.uri}"):
        _refuse_foreign(new)
        token = secrets.token_hex(4)
        for table in get_args(Table):
            done = _progress_of(new, table, MIGRATE_APP)
            for number, day in enumerate(days, 1):
                if number <= done:
                    continue
                _migrate_day(old, new, table, day, number, token, direction)
                result.committed += 1
                if progress is not None:
                    progress(f"{table} {day}")
        result.catalogue_inputs = _migrate_catalogue(old, new, token)
        _check_counts(old, new, days, result)
    return result


def _progress_of(store: DeltaStore, table: Table, app: str) -> int:
    from deltalake import DeltaTable

    delta = DeltaTable(store.table_uri(table), storage_options=store.where.options())
    return delta.transaction_version(app) or 0


def _refuse_foreign(new: DeltaStore) -> None:
    """A target that was ingested into (a catalogue but no migration, or a catalogue newer
    than the migrated one) is not migrated into."""
    catalogue = _progress_of(new, "events", CATALOGUE_APP)
    if catalogue > 1 or (catalogue and not _progress_of(new, "events", MIGRATE_APP)):
        raise StoreError(f"{new.uri} holds events of its own: migrate into a new store")


def _migrate_day(
    old: Store,
    new: DeltaStore,
    table: Table,
    day: str,
    number: int,
    token: str,
    direction: DirectionSettings | None,
) -> None:
    """Write one day of one table into the Delta store, and commit it as day `number`."""
    from deltalake import DeltaTable
    from deltalake.transaction import CommitProperties, Transaction

    where = new.where
    folder = where.path(table)
    writer = DayWriter(folder, _arrow_schema(table), prefix=f"part-migrate-{token}", where=where)
    columns = _stored_columns(table)
    for path in _day_files(old.path, table, day):
        older = table == "events" and _schema_version(path) == 1
        with pq.ParquetFile(str(path)) as parquet:
            for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS):
                frame = schema.conform(pl.from_arrow(batch), columns)  # type: ignore[arg-type]
                if older:
                    frame = as_current(frame.lazy(), direction).collect()
                writer.add(frame, pl.lit(day))
    written = writer.finish()
    actions = [
        _add_action(where, table, path, text) for text, paths in written.items() for path in paths
    ]
    delta = DeltaTable(new.table_uri(table), storage_options=where.options())
    delta.create_write_transaction(
        actions,
        "append",
        _table_schema(table),
        partition_by=["date"],
        commit_properties=CommitProperties(app_transactions=[Transaction(MIGRATE_APP, number)]),
    )


def _migrate_catalogue(old: Store, new: DeltaStore, token: str) -> int:
    """Commit the old catalogue and state files as the Delta store's catalogue version 1
    (once); the number of inputs it knows."""
    from deltalake import DeltaTable
    from deltalake.transaction import CommitProperties, Transaction

    entries = old.catalogue()
    if _progress_of(new, "events", CATALOGUE_APP):
        return len(entries)  # (committed by the run that was killed after it)
    where = new.where
    state = _state_files(old.path)
    for name in state.values():
        path = old.path / STATE_DIR / name
        if path.exists():
            where.mkdir(where.path(META_DIR, STATE_DIR))
            where.write_bytes(where.path(META_DIR, STATE_DIR, name), path.read_bytes())
    name = f"catalogue-{1:08d}-migrate-{token}.json"
    where.write_bytes(where.path(META_DIR, name), _catalogue_json(entries, state))
    delta = DeltaTable(new.table_uri("events"), storage_options=where.options())
    delta.create_write_transaction(
        [],
        "append",
        _table_schema("events"),
        partition_by=["date"],
        commit_properties=CommitProperties(
            app_transactions=[Transaction(CATALOGUE_APP, 1)],
            custom_metadata={CATALOGUE_KEY: name},
        ),
    )
    return len(entries)


def _check_counts(old: Store, new: DeltaStore, days: list[str], result: Migrated) -> None:
    """Each day's events and set-aside records, from the old footers and the new log, equal."""
    for table in get_args(Table):
        counted: dict[str, int] = {}
        for text, _, rows in new._snapshot(table).files:
            counted[text] = counted.get(text, 0) + rows
        for day in days:
            before = sum(_footer_rows(path) for path in _day_files(old.path, table, day))
            after = counted.get(day, 0)
            if before != after:
                what = "events" if table == "events" else "set-aside records"
                raise StoreError(
                    f"migration of {old.path} into {new.uri}: {day} holds {before:,} {what} "
                    f"before and {after:,} after; the old store is untouched"
                )
            if table == "events":
                result.events[day] = after
            else:
                result.malformed += after
