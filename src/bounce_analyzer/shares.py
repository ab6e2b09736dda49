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
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import polars as pl

from bounce_analyzer.errors import OutputError

#: Rows of a record batch of the window's file: a batch is what the split holds at once (a
#: few tens of MB of a report's narrow columns), and each share gets a row group of about
#: `_BATCH_ROWS / shares` rows from it (larger batches cost more memory, and no less time).
_BATCH_ROWS = 65_536

#: The shares' compression: fast to write and read, and the texts compress well.
_COMPRESSION = "lz4"

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
    file, in the order of the shares, for the caller to read one at a time. (Arrow IPC files
    would be memory-mapped by polars' scan, and the pages read would count as the process's
    memory.)"""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[pl.LazyFrame]:
        for path in self._paths:
            yield pl.scan_parquet(path, glob=False)


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
        paths = [Path(folder) / f"share-{index}.parquet" for index in range(shares)]
        try:
            _write_shares(frame.with_columns(share_of(key, shares).alias(_SHARE)), paths)
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


def _write_shares(frame: pl.LazyFrame, paths: list[Path]) -> None:
    """Write the rows of `frame` (with `_SHARE`) to `paths[share]`, each a Parquet file (an
    empty one for a share without rows).

    The streaming engine first writes every row to one file (a native sink: the read is held
    back when the write lags); that file is then read a record batch at a time, each batch
    sorted by share (stable: rows keep their order) and cut into one slice per share.
    Splitting while the engine reads (`collect_batches`) would let the read run ahead of the
    writes and hold the whole window in memory.
    """
    import pyarrow.ipc  # lazy: only a split report needs it
    import pyarrow.parquet

    whole = paths[0].with_name("all.arrow")
    frame.sink_ipc(whole, compression="lz4", record_batch_size=_BATCH_ROWS, engine="streaming")
    with ExitStack() as files:
        source = files.enter_context(pyarrow.OSFile(str(whole)))
        reader = pyarrow.ipc.open_file(source)
        schema = pl.DataFrame(schema=frame.drop(_SHARE).collect_schema()).to_arrow().schema
        writers = [
            files.enter_context(
                pyarrow.parquet.ParquetWriter(
                    str(path), schema, compression=_COMPRESSION, write_statistics=False
                )
            )
            for path in paths
        ]
        for index in range(reader.num_record_batches):
            chunk = pl.from_arrow(reader.get_batch(index))
            assert isinstance(chunk, pl.DataFrame)
            ordered = chunk.sort(_SHARE, maintain_order=True)
            counts = ordered.group_by(_SHARE, maintain_order=True).len().rows()
            table = ordered.drop(_SHARE).to_arrow()
            if table.schema != schema:
                table = table.cast(schema)
            start = 0
            for share, rows in counts:
                writers[share].write_table(table.slice(start, rows))
                start += rows
    whole.unlink()
