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

__all__ = ["string_column"]

#: Anything with the buffer protocol (bytes, bytearray, memoryview, mmap).
Buffer = Any


def string_column(
    name: str, count: int, views: Buffer, data: Buffer, validity: Buffer | None = None
) -> pl.Series:
    """The String column of `count` rows whose 16-byte `views` point into `data` (null rows
    where the `validity` bitmap, if given, has a 0 bit)."""
    array = pa.Array.from_buffers(
        pa.string_view(),
        count,
        [
            None if validity is None else pa.py_buffer(validity),
            pa.py_buffer(views),
            pa.py_buffer(data),
        ],
    )
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series.alias(name)
