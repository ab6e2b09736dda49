"""What a log source carries from one batch to the next, and from one run to the next.

`Repeats` numbers identical records of one input, so that each gets its own event id (a
record repeated in a log is an event that happened again), and carries the counts it needs
across batches and runs. `newest_within` bounds a carried table by rows and by bytes, the
oldest rows going first; `compact` makes a carried table's bytes its own. `state_frame` and
`state_part` put the tables a source carries into the one frame `Source.export_state` gives
(and take them out of it again). `merged_table` joins what the parts of one run carried out
(a cluster's log sets, each read by a source of its own: `bounce_analyzer.cluster`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

import polars as pl

from bounce_analyzer import schema
from bounce_analyzer.sources.base import CarriesState

__all__ = [
    "MAX_REPEAT_ROWS",
    "REPEATS_SCHEMA",
    "REPEAT_WINDOW",
    "Repeats",
    "compact",
    "merged_state",
    "merged_table",
    "named_in",
    "newest_within",
    "state_bytes",
    "state_frame",
    "state_part",
]

#: Identical records have the same stamp, so a record can only repeat while its stamp is about
#: the latest one read: the counts of records this much older than the latest are forgotten.
#: (A minute, not a second: a log's stamps are not always in order.)
REPEAT_WINDOW = timedelta(minutes=1)

#: At most this many counts are carried (every input together), the oldest forgotten first.
MAX_REPEAT_ROWS = 1 << 16

#: The counts `Repeats` carries: how often the record of each first-occurrence id was read,
#: in the stretch of an input that ends at byte `offset`.
REPEATS_SCHEMA: dict[str, pl.DataType] = {
    "offset": pl.Int64(),
    "event_id": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "count": pl.Int64(),
}

#: The column of a state frame that names the table each row belongs to.
_PART = "part"

#: What polars holds per value beyond a string's bytes: a 16-byte view per string, 8 bytes
#: per other value.
_VIEW_BYTES = 16
_VALUE_BYTES = 8


class Repeats:
    """Numbers the identical records of each input read by one source.

    The first occurrence of a record keeps the id `schema.event_id` gives it; its n-th repeat
    in the same input gets the id of the record and n. So the same input read again, from the
    start or as a rotated or compressed copy, gives the same ids (and the store drops them),
    while a record written twice is two events.

    Identical records have the same stamp, so only the records of the latest stamps can still
    repeat: a record is counted while its stamp is within `REPEAT_WINDOW` of the latest stamp
    read before it in its input; one further behind (a log whose clock went back) keeps the
    id of a first occurrence, as every record did before repeats were counted. Counting is
    vectorized: a batch's identical records are numbered among themselves, after the counts
    carried from the stretch of the input read before it (the batch that ended where this one
    starts, in this run or an earlier one: `export_state`). Only the counts of records within
    the window are carried, at most `MAX_REPEAT_ROWS` of them, so the numbers do not depend on
    where batches or runs were cut.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._counts = pl.DataFrame(schema=REPEATS_SCHEMA)

    def number(self, events: pl.DataFrame, record: str, *, start: int, end: int) -> pl.DataFrame:
        """`events` with the ids of repeated records made distinct.

        `events` are the events of the records read from byte `start` to byte `end` of one
        input, in the input's order, with the `event_id` of a first occurrence, a `timestamp`,
        and the record itself in the column `record`.
        """
        counts = self._counts
        carried = counts.filter(pl.col("offset") == start) if start else counts.clear()
        stamp = pl.col("timestamp")
        carried_latest = pl.lit(carried["timestamp"].max(), REPEATS_SCHEMA["timestamp"])
        latest = pl.max_horizontal(stamp.cum_max(), carried_latest)
        counted = (
            events.select("event_id", "timestamp", record)
            .with_row_index("row")
            .filter(stamp >= latest - REPEAT_WINDOW)
        )
        ids = counted["event_id"]
        repeated = ids.is_duplicated() | ids.is_in(carried["event_id"].implode())
        numbered = events["event_id"]
        if repeated.any():
            renamed = (
                counted.filter(repeated)
                .with_columns(before=pl.int_range(pl.len(), dtype=pl.Int64()).over("event_id"))
                .join(
                    carried.select("event_id", "count"),
                    on="event_id",
                    how="left",
                    maintain_order="left",
                )
                .with_columns(occurrence=pl.col("before") + pl.col("count").fill_null(0))
                .filter(pl.col("occurrence") > 0)
                .select("row", schema.event_id(self._source, pl.col(record), pl.col("occurrence")))
            )
            numbered = numbered.scatter(renamed["row"], renamed["event_id"])
        still = compact(_still_counting(carried, counted, end))
        self._counts = (
            pl.concat([counts.filter(pl.col("offset") != start), still])
            .sort("timestamp", maintain_order=True)
            .tail(MAX_REPEAT_ROWS)
        )
        return events.with_columns(numbered)

    def export_state(self) -> pl.DataFrame:
        """The counts carried (`REPEATS_SCHEMA`): the table `repeats` of a source's state."""
        return self._counts

    def import_state(self, state: pl.DataFrame) -> None:
        """Carry the counts of the table `repeats` of `state` (a source's `state_frame`)."""
        counts = state_part(state, "repeats", REPEATS_SCHEMA)
        self._counts = counts.sort("timestamp", maintain_order=True).tail(MAX_REPEAT_ROWS)

    @staticmethod
    def merged(before: pl.DataFrame, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
        """The counts of the table `repeats` that the parts of a run carry out together, each
        part having started from the state `before` (`merged_table`)."""
        return merged_table(
            state_part(before, "repeats", REPEATS_SCHEMA),
            [state_part(part, "repeats", REPEATS_SCHEMA) for part in parts],
        )


def _still_counting(carried: pl.DataFrame, counted: pl.DataFrame, end: int) -> pl.DataFrame:
    """The counts to carry to the stretch of the input that starts at byte `end`: those of
    `carried` and of the records `counted` that are within the window of the latest stamp."""
    latest = pl.concat([carried["timestamp"], counted["timestamp"]]).max()
    if latest is None:
        return carried.clear()
    within = pl.col("timestamp") >= pl.lit(latest) - REPEAT_WINDOW
    new = (
        counted.filter(within)
        .group_by("event_id", maintain_order=True)
        .agg(pl.col("timestamp").first(), count=pl.len().cast(pl.Int64()))
    )
    return (
        pl.concat([carried.drop("offset").filter(within), new])
        .group_by("event_id", maintain_order=True)
        .agg(pl.col("timestamp").first(), pl.col("count").sum())
        .select(pl.lit(end, pl.Int64()).alias("offset"), "event_id", "timestamp", "count")
    )


def _row_bytes(columns: pl.Schema) -> pl.Expr:
    """About how many bytes polars holds for each row of a frame of `columns`."""
    strings = [name for name, dtype in columns.items() if dtype == pl.String()]
    fixed = _VIEW_BYTES * len(strings) + _VALUE_BYTES * (len(columns) - len(strings))
    if not strings:
        return pl.lit(fixed, pl.Int64())
    return pl.sum_horizontal(pl.col(strings).str.len_bytes().fill_null(0)) + fixed


def state_bytes(frame: pl.DataFrame) -> int:
    """About how many bytes polars holds for `frame` (strings: their bytes and a view each)."""
    if not frame.height:
        return 0
    return int(frame.select(_row_bytes(frame.schema).sum()).item())


def newest_within(frame: pl.DataFrame, *, rows: int, size: int) -> pl.DataFrame:
    """The last rows of `frame` (ordered oldest first) that fit in `rows` rows and `size` bytes,
    counted as `state_bytes` counts them."""
    frame = frame.tail(rows)
    if state_bytes(frame) <= size:
        return frame
    return frame.filter(_row_bytes(frame.schema).reverse().cum_sum().reverse() <= size)


def compact(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its strings copied out of the buffers they share: a value cut from a line
    (`str.slice`) keeps the whole buffer of the batch's lines alive, and a carried table
    outlives its batch."""
    return frame.with_columns(
        pl.concat_str([pl.col(name), pl.lit("")]).alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String()
    )


def named_in(table: pl.DataFrame, column: str, names: pl.Series) -> pl.Series:
    """Whether the `column` of each row of a carried `table` (no nulls) is one of `names`:
    `is_in`, with the set made of the smaller side (a batch names thousands of messages, of
    which a carried table most often holds a few; or the table is the larger)."""
    if table.height < names.len():
        names = names.filter(names.is_in(table[column].implode()))
    return table[column].is_in(names.implode())


def state_frame(**parts: pl.DataFrame) -> pl.DataFrame:
    """The tables a source carries as one frame: their columns side by side (null where a row's
    table has no such column) and `part`, the name of each row's table."""
    return pl.concat(
        [frame.with_columns(pl.lit(name).alias(_PART)) for name, frame in parts.items()],
        how="diagonal_relaxed",
    )


def merged_table(before: pl.DataFrame, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """One table of the state that the parts of one run carry out together, each part read by
    a source of its own that started from `before` (as it imported it).

    A part leaves the rows it did not touch as they were, and changes, adds or drops (or
    forgets, over its bounds) the others: the rows of `before` that every part left, in their
    order, then the rows each part changed or added, part after part. That is the table one
    source reading the parts one after the other ends with, when no two parts touch the same
    row (their inputs are other hosts' logs: other queue ids, other message ids, other lines).
    """
    columns = before.columns
    kept = before
    for part in parts:
        kept = kept.join(part, on=columns, how="semi", nulls_equal=True, maintain_order="left")
    added = [
        part.select(columns).join(
            before, on=columns, how="anti", nulls_equal=True, maintain_order="left"
        )
        for part in parts
    ]
    return pl.concat([kept, *added])


def merged_state(
    make: Callable[[], CarriesState],
    carried: pl.DataFrame | None,
    parts: Sequence[pl.DataFrame],
    *,
    table: str,
    columns: dict[str, pl.DataType],
    order: str | None = None,
) -> pl.DataFrame:
    """A source's `merge_state`: the state of a run read in parts, each part by an instance
    (`make()`) that imported `carried` (None: nothing), from what each part exported. The
    source's own table `table` (of `columns`) and the counts of repeated lines are each merged
    by `merged_table`; `order`, a column that numbers the table's rows in their order (each
    part numbered its own from the same start), is numbered again in the merged order. The
    result is within the source's bounds (it is imported once more)."""
    before = make()
    if carried is not None:
        before.import_state(carried)
    start = before.export_state()
    rows = merged_table(
        state_part(start, table, columns), [state_part(part, table, columns) for part in parts]
    )
    if order is not None:
        rows = rows.with_columns(pl.int_range(pl.len(), dtype=pl.Int64()).alias(order))
    merged = make()
    merged.import_state(state_frame(**{table: rows}, repeats=Repeats.merged(start, parts)))
    return merged.export_state()


def state_part(state: pl.DataFrame, name: str, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """The table `name` of a `state_frame`, with `columns` (missing ones null; values of another
    type null too: a state written by another version is taken as far as it fits)."""
    if _PART not in state.columns:
        return pl.DataFrame(schema=columns)
    rows = state.filter(pl.col(_PART).cast(pl.String(), strict=False) == name)
    return rows.select(
        pl.col(column).cast(dtype, strict=False)
        if column in rows.columns
        else pl.lit(None, dtype).alias(column)
        for column, dtype in columns.items()
    )
