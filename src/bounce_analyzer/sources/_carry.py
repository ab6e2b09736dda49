"""What a log source carries from one batch to the next.

`Repeats` numbers identical records of one input, so that each gets its own event id (a
record repeated in a log is an event that happened again), and carries the counts it needs
across batches.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from bounce_analyzer import schema

__all__ = ["MAX_REPEAT_ROWS", "REPEATS_SCHEMA", "REPEAT_WINDOW", "Repeats"]

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
    starts). Only the counts of records within the window are carried, at most
    `MAX_REPEAT_ROWS` of them, so the numbers do not depend on where batches were cut.
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
        still = _still_counting(carried, counted, end)
        self._counts = (
            pl.concat([counts.filter(pl.col("offset") != start), still])
            .sort("timestamp", maintain_order=True)
            .tail(MAX_REPEAT_ROWS)
        )
        return events.with_columns(numbered)


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
