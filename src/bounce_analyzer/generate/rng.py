"""Random columns for the generator: splitmix64 of (seed, segment, stream, row) as polars
integer arithmetic, so that the same seed gives the same values on every machine and no Python
code runs per row.

Every draw takes the next stream of its `Rng`: the order of the draws is part of the bytes a
seed gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

#: Alphabets of the ids and tokens the logs show.
HEX = "0123456789ABCDEF"
HEX_LOWER = "0123456789abcdef"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def _splitmix_int(x: int) -> int:
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _splitmix(x: pl.Expr) -> pl.Expr:
    x = x + pl.lit(_GOLDEN, pl.UInt64)
    x = x.xor(x // (1 << 30)) * pl.lit(0xBF58476D1CE4E5B9, pl.UInt64)
    x = x.xor(x // (1 << 27)) * pl.lit(0x94D049BB133111EB, pl.UInt64)
    return x.xor(x // (1 << 31))


class Rng:
    """Independent streams of random columns; each call draws a new stream."""

    def __init__(self, seed: int, segment: int = 0) -> None:
        self._key = _splitmix_int(_splitmix_int(seed & _MASK) ^ (segment * 0x632BE59BD9B4E019))
        self._stream = 0

    def u64(self, n: int) -> pl.Expr:
        """`n` random UInt64 values (an expression of length n)."""
        self._stream += 1
        base = _splitmix_int(self._key ^ (self._stream * 0xD1B54A32D192ED03 & _MASK))
        values = pl.select(_splitmix(pl.int_range(0, n, dtype=pl.UInt64) + pl.lit(base, pl.UInt64)))
        # Computed once, here: expressions that use the values many times stay small.
        return pl.lit(values.to_series().alias("u64"))

    def floats(self, n: int) -> pl.Expr:
        """Uniform floats in [0, 1)."""
        return (self.u64(n) // (1 << 11)).cast(pl.Float64) / float(1 << 53)

    def ints(self, n: int, low: int, high: int) -> pl.Expr:
        """Uniform integers in [low, high)."""
        return ((self.u64(n) // (1 << 11)) % (high - low)).cast(pl.Int64) + low

    def choice(self, n: int, weights: Sequence[float]) -> pl.Expr:
        """Indices drawn with the given weights."""
        return weighted(self.floats(n), weights)

    def token(self, n: int, width: int, alphabet: str) -> pl.Expr:
        """Random strings of `width` characters from `alphabet`."""
        parts: list[pl.Expr] = []
        base = len(alphabet)
        per_draw = 1
        while base ** (per_draw + 1) < (1 << 53):
            per_draw += 1
        while width > 0:
            take = min(width, per_draw)
            parts.append(encode(self.u64(n) // (1 << 11), alphabet, take))
            width -= take
        return pl.concat_str(parts)


def weighted(uniform: pl.Expr, weights: Sequence[float]) -> pl.Expr:
    """The index each uniform value in [0, 1) falls on when the weights share that range."""
    total = 0.0
    cumulative = []
    for w in weights:
        total += w
        cumulative.append(total)
    edges = pl.Series(cumulative[:-1], dtype=pl.Float64)
    return pl.lit(edges).search_sorted(uniform * total, side="right").cast(pl.Int64)


def encode(value: pl.Expr, alphabet: str, width: int) -> pl.Expr:
    """`value` written in base len(alphabet), `width` digits, most significant first."""
    base = len(alphabet)
    table = pl.lit(pl.Series(list(alphabet)))
    digits = [table.gather((value // (base**i) % base).cast(pl.Int64)) for i in range(width)]
    return pl.concat_str(digits[::-1])
