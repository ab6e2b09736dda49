"""Columns that point into a batch's bytes: the C tokenizers' output made polars columns.

A tokenizer (native/*.c, native/views.h) cuts each field of a line as an Arrow string view
into the batch; `string_column` wraps its views as a polars String column without copying the
batch (the column keeps it alive until it is dropped). The tokenizer has checked the bytes:
polars does not validate UTF-8 on this import.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa

from bounce_analyzer import native

__all__ = ["arrow_column", "number_column", "string_column"]

#: Anything with the buffer protocol (bytes, bytearray, memoryview, mmap).
Buffer = Any


def arrow_column(
    name: str, kind: pa.DataType, count: int, buffers: list[Buffer | None]
) -> pl.Series:
    """The polars column `name` of the Arrow array of `kind` and `count` rows laid over
    `buffers` (Arrow's buffer order for `kind`; None for an absent validity bitmap): no copy."""
    array = pa.Array.from_buffers(
        kind, count, [None if buffer is None else pa.py_buffer(buffer) for buffer in buffers]
    )
    # (through the Arrow C data interface: `pl.from_arrow` would import pyarrow.compute,
    # 0.03 s of every start, for what it does to chunked dictionary arrays)
    return native.arrow_series(name, array.__arrow_c_array__())


def string_column(
    name: str,
    count: int,
    views: Buffer,
    data: Buffer,
    validity: Buffer | None = None,
    *,
    second: Buffer | None = None,
) -> pl.Series:
    """The String column of `count` rows whose 16-byte `views` point into `data` (buffer 0)
    and, if given, into a `second` data buffer (buffer 1); null rows where the `validity`
    bitmap, if given, has a 0 bit."""
    buffers = [validity, views, data] + ([] if second is None else [second])
    return arrow_column(name, pa.string_view(), count, buffers)


def number_column(
    name: str, kind: pa.DataType, count: int, values: Buffer, validity: Buffer | None = None
) -> pl.Series:
    """The column of the first `count` fixed-width `values` of `kind` (native byte order),
    null where the `validity` bitmap, if given, has a 0 bit."""
    return arrow_column(name, kind, count, [validity, values])
