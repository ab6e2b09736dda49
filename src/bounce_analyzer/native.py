"""Which path a log source runs: its optional C tokenizer or the polars reference path.

The C extensions (`native/*.c`, compiled at install by `hatch_build.py`; docs/NATIVE.md) are
optional: a machine without a compiler installs and runs the polars path, which stays the
reference that the differential tests hold the C path to. `BOUNCE_ANALYZER_NATIVE=0` forces
the polars path; `bounce-analyzer --version` says which path is active.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "ENV",
    "arrow_series",
    "built",
    "count_newlines",
    "describe",
    "disabled",
    "helper",
    "literal_pairs",
    "module",
]

#: The environment variable that turns the C path off (`0`).
ENV = "BOUNCE_ANALYZER_NATIVE"
#: Each source with a C tokenizer -> (its extension module, the interface version it must say).
_MODULES = {
    "postfix": ("bounce_analyzer._postfix_c", 4),
    "exim": ("bounce_analyzer._exim_c", 3),
}


def disabled() -> bool:
    """Whether the environment turns the C path off."""
    return os.environ.get(ENV, "").strip() == "0"


def built(source: str) -> ModuleType | None:
    """The C tokenizer of `source` if it is built and of the interface version this code
    expects, whatever the environment says (`module` is what the sources use)."""
    return _loaded(*_MODULES[source])


def _loaded(name: str, abi: int) -> ModuleType | None:
    """The extension module `name` if it is built and says interface version `abi`."""
    try:
        loaded = importlib.import_module(name)
    except ImportError:
        return None
    return loaded if getattr(loaded, "ABI_VERSION", 0) == abi else None


def count_newlines(data: bytes | bytearray) -> int:
    """The newline bytes of `data`: counted 16 bytes at a time by a C tokenizer's `newlines`
    (native/lines.h) where one runs, else by `bytes.count`, which looks at each byte (a third
    of a second per GB); the same number either way."""
    for source in _MODULES:
        tokenizer = module(source)
        if tokenizer is not None:
            return int(tokenizer.newlines(data))
    return data.count(b"\n")


def module(source: str) -> ModuleType | None:
    """The C tokenizer of `source` (a key of the sources' registry), or None: not built, of
    another interface version, not written for that source, or turned off by the environment."""
    if disabled() or source not in _MODULES:
        return None
    return built(source)


#: The C helpers of the classification (not a source's tokenizer) -> (module, interface version).
_HELPERS = {"normalize": ("bounce_analyzer._normalize_c", 6)}


def helper(name: str) -> ModuleType | None:
    """The C helper `name` (native/normalize.c: the normalized text and the codes of ASCII
    texts, for normalize.py and extract.py) if it is built, of the interface version this code
    expects, and not turned off by the environment; else None (the polars expressions run)."""
    return None if disabled() else _loaded(*_HELPERS[name])


class _Exported:
    """An Arrow array a C helper made: (schema capsule, array capsule), as the PyCapsule
    interface hands one to polars (which takes its buffers without a copy, and without
    pyarrow)."""

    def __init__(self, capsules: tuple[object, object]) -> None:
        self._capsules = capsules

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        return self._capsules


def arrow_series(name: str, capsules: tuple[object, object]) -> pl.Series:
    """The polars column `name` of an Arrow array a C helper made (native/normalize.c's
    `normalize` and `codes`: no Python object a row)."""
    import polars as pl  # (this module is imported where polars is not: `--version`)

    return pl.Series(values=_Exported(capsules)).alias(name)


def literal_pairs(
    texts: pl.Series, literals: list[str], targets: list[list[int]], target_count: int
) -> pl.DataFrame | None:
    """(`_at`, `target`): each row of `texts` (its position) and each target (an int from 0
    to `target_count` - 1) whose literals it holds, byte for byte, once, in row order:
    `targets[i]` are the targets of `literals[i]` (three bytes or more). A null or a text that
    is not ASCII holds none. None where the C helper does not run (native/normalize.c,
    `literal_pairs`: one pass a text, where polars' overlapping Aho-Corasick makes a string of
    each occurrence, to be joined to its targets)."""
    fast = helper("normalize")
    if fast is None:
        return None
    import polars as pl

    words = [literal.encode() for literal in literals]
    rows, found = fast.literal_pairs(texts, words, targets, target_count)
    return pl.DataFrame(
        [arrow_series("_at", rows).cast(pl.UInt32), arrow_series("target", found).cast(pl.UInt32)]
    )


def describe() -> str:
    """One line: which path the log sources and the classification's text work run, and why."""
    if disabled():
        return f"parser: polars path ({ENV}=0)"
    parts = [*_MODULES, *(_HELPED[name] for name in _HELPERS)]
    native = [source for source in _MODULES if built(source) is not None]
    native += [_HELPED[name] for name in _HELPERS if helper(name) is not None]
    if not native:
        return "parser: polars path (no C extension built)"
    rest = [part for part in parts if part not in native]
    line = f"parser: C path for {', '.join(native)}"
    if rest:
        line += f", polars path for {', '.join(rest)}"
    return line + f" ({ENV}=0 forces the polars path)"


#: What each C helper does, as the `--version` line names it.
_HELPED = {"normalize": "the classification's texts"}
