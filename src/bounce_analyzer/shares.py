"""A LazyFrame's rows split into shares on disk by a hash of a key, in one streaming read.

What a report uses when its window holds more events than one pass should hold in memory
(docs/STORE.md, "Reports in bounded memory"): the rows that must be seen together (a
message's, for its final outcome) land in the same share, and each share is then read alone,
so that what a pass holds (its messages' keys) depends on the size of a share, not on the
size of the window. The shares are Parquet files (LZ4) in a temporary folder (`TMPDIR`),
removed when the block ends; they hold only the columns the caller selected.
"""

from __future__ import annotations

import errno
import io
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import polars as pl

from bounce_analyzer.errors import OutputError

if TYPE_CHECKING:
    from polars.io.partition import FileProviderArgs

#: Rows of a row group of a share's file. The split writes every share at once, each
#: through a writer that holds a row group in the making: this many rows of a report's narrow
#: columns times the shares is what the writers hold. Measured on a 30-day window of 25M
#: events split in 50 shares: 480 MB peak with 4,096 rows, 700 MB with 16,384; 2,048 rows
#: cost 1.4x the CPU.
_GROUP_ROWS = 4_096

#: Rows of a file of a share: a share is written as files of at most this many rows. A
#: writer left open holds more with every row group it writes: the same 25M events split
#: into one file per share grew from 450 to 790 MB (and took 1.7x the time); files of 65,536
#: rows peaked at 549 MB, of 16,384 rows at 489 MB, for the same CPU.
_FILE_ROWS = 16_384

#: The shares' compression: fast to write and read, and the texts compress well.
_COMPRESSION: Final = "lz4"

#: The column that holds a row's share while it is split (never written).
_SHARE = "__share"


def detached(frame: pl.DataFrame) -> pl.DataFrame:
    """A copy of `frame` whose columns own their bytes.

    A string that polars takes from a frame (a group-by's key, a `first()`) may be a view into
    that frame's buffers and keep them all alive; what a pass keeps of a share must not keep
    the share. Copied through Arrow IPC in memory (small: counts, not events).
    """
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    buffer.seek(0)
    return pl.read_ipc(buffer)


def share_of(key: pl.Expr, shares: int) -> pl.Expr:
    """The share (0 .. `shares` - 1) of a row whose key is `key`: its hash modulo `shares`."""
    return (key.hash() % shares).cast(pl.UInt32)


class Shares:
    """The shares of a split frame (`split_by_hash`): iterating gives a scan of each share's
    files, in the order of the shares, for the caller to read one at a time. (Arrow IPC files
    would be memory-mapped by polars' scan, and the pages read would count as the process's
    memory.)"""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[pl.LazyFrame]:
        for path in self._paths:  # (a share's folder: its files in the order written)
            yield pl.scan_parquet(sorted(path.glob("*.parquet")), glob=False)


@contextmanager
def split_by_hash(frame: pl.LazyFrame, key: pl.Expr, shares: int) -> Iterator[Shares]:
    """`frame` split into `shares` frames by `share_of(key, shares)`, each in a file of its
    own: the rows of a share keep their order in `frame`. `frame` is read once, by the
    streaming engine. The files go when the block ends.

    Raises `OutputError` when the temporary folder cannot be made or is full (set `TMPDIR` to
    a folder with room).
    """
    with ExitStack() as stack:
        try:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix=_PREFIX))
        except OSError as error:
            raise _no_room(tempfile.gettempdir(), error) from None
        try:
            paths = _write_shares(
                frame.with_columns(share_of(key, shares).alias(_SHARE)), Path(folder), shares
            )
        except (OSError, pl.exceptions.PolarsError) as error:
            # a full disk; any other error (a damaged input file) is the reader's to name
            if not _is_full(error):
                raise
            raise _no_room(folder, error) from None
        yield Shares(paths)


#: The temporary folder's name starts with this.
_PREFIX = "bounce-analyzer-shares-"


def _is_full(error: BaseException) -> bool:
    """Whether `error` says that the disk (or the user's quota) is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "no space left on device" in str(error).lower()


def _no_room(folder: str, error: BaseException) -> OutputError:
    why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return OutputError(
        f"cannot write a report's working files in {folder}: {why}; "
        "set TMPDIR to a folder with room"
    )


def _write_shares(frame: pl.LazyFrame, folder: Path, shares: int) -> list[Path]:
    """Write the rows of `frame` (with `_SHARE`) to Parquet files, a folder per share in
    `folder` (files of `_FILE_ROWS` rows at most, numbered in the order written; an empty file
    for a share without rows); the folders, in the order of the shares.

    Each write is one native streaming sink partitioned by a column (polars' `PartitionBy`):
    the read is held back when the writes lag, and rows keep their order within a partition.
    A sink holds a row group in the making for each of its partitions, so no sink writes more
    than `_FAN_OUT`: more shares than that are written in rounds, the window first into parts
    of neighbouring shares, then each part (read back in order, then removed) into its shares
    (`_write_range`). The one sink it replaced held 51 partitions on a 30-day window: each
    row is now written and read twice, for a peak that no longer grows with the shares.
    """
    paths = [folder / f"share-{index}" for index in range(shares)]
    for path in paths:
        path.mkdir()
    _write_range(frame, folder, 0, shares)
    schema = frame.drop(_SHARE).collect_schema()
    for path in paths:
        if not any(path.iterdir()):
            pl.DataFrame(schema=schema).write_parquet(path / f"{0:08d}.parquet")
    return paths


#: At most this many partitions in one sink. Measured on one day of 1.1M events: split into
#: 2, 8 and 51 shares by one sink, peaks of 290, 302 and 398 MB; 30 days (25M events) into 8
#: shares, 392 MB, against 480 MB into 51.
_FAN_OUT = 8

#: The column that holds a row's part while a round writes parts (never written).
_PART = "__part"


def _write_range(frame: pl.LazyFrame, folder: Path, first: int, end: int) -> None:
    """Write the rows of `frame`, all of shares `first` .. `end` - 1, into their shares'
    folders in `folder`: in one sink when they are `_FAN_OUT` shares at most, else first into
    at most `_FAN_OUT` parts, each a run of neighbouring shares, then each part alone."""
    count = end - first
    if count <= _FAN_OUT:
        _sink(frame, _SHARE, folder, lambda share: folder / f"share-{share}")
        return
    width = -(-count // _FAN_OUT)  # shares of a part
    parts = -(-count // width)
    round_folder = folder / f"parts-{first}-{end}"
    for part in range(parts):
        (round_folder / f"{part}").mkdir(parents=True)
    part_of = ((pl.col(_SHARE) - first) // width).alias(_PART)
    _sink(frame.with_columns(part_of), _PART, round_folder, lambda part: round_folder / f"{part}")
    for part in range(parts):
        files = sorted((round_folder / f"{part}").glob("*.parquet"))
        if files:  # (a part without rows has no file)
            low = first + part * width
            scan = pl.scan_parquet(files, glob=False)
            _write_range(scan, folder, low, min(end, low + width))
            for file in files:
                file.unlink()


def _sink(frame: pl.LazyFrame, key: str, folder: Path, folder_of: Callable[[int], Path]) -> None:
    """Write `frame` partitioned by its integer column `key` (not written) into `folder`:
    the rows of key k as files numbered in the order written in `folder_of(k)` (made
    beforehand)."""

    def path_of(args: FileProviderArgs) -> Path:
        value = int(args.partition_keys.item(0, key))
        return folder_of(value) / f"{args.index_in_partition:08d}.parquet"

    frame.sink_parquet(
        pl.PartitionBy(
            folder,
            key=key,
            include_key=False,
            file_path_provider=path_of,
            max_rows_per_file=_FILE_ROWS,
            approximate_bytes_per_file=None,
        ),
        compression=_COMPRESSION,
        statistics=False,
        row_group_size=_GROUP_ROWS,
        engine="streaming",
    )
