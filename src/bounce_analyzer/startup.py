"""What a command's process sets before its work starts: the one place of the settings that
libraries read once, when they start (polars' allocator, numpy's BLAS threads, glibc's mmap
threshold), and of the collector's pause over the engine's imports.

`__main__.main`, the console script, calls `prepare` with its command line before it imports
anything else; a process that runs a command as a library call (a test runner, a script)
keeps its own settings. A setting the environment already has is left as it is: the user's
wins. `bench/RESULTS.md` ("Start-up per command") has the measurements.

- **Allocator** (`ALLOCATOR_ENV`, read by polars' jemalloc when polars is imported, after its
  own defaults). `report` gives freed pages back at once (`REPORT_ALLOCATOR`): a report's
  streaming reads free as much as they allocate, and the pages jemalloc keeps after a free
  (polars' defaults: 0.5 s, then 1 s more as "muzzy" pages) count in the process's memory,
  more of them the longer the report runs. On issue 17's store of 33M events the 30-day
  report's peak fell from 488-551 MB to 322-339 MB, 1.09-1.14x the one-day report's (297 MB),
  for about twice the wall time (the system calls that give pages back). `explain` does the
  opposite (`EXPLAIN_ALLOCATOR`): one arena, and freed pages kept: a stream's chunk is
  classified in many short plans whose frames come and go, and each page given back and
  touched again is a page fault; the run is short. On 100k messages the page faults fell
  from 100,000-114,000 to 77,000-81,000, system time from 0.34-0.42 s to 0.25-0.27 s.
- **One BLAS thread** (`BLAS_THREADS_ENV`), for every command: pyarrow imports numpy, whose
  OpenBLAS starts a thread per core that spins for about 0.1 s of CPU after numpy's import,
  whether or not BLAS is ever used; no command does linear algebra.
- **glibc's mmap threshold** fixed at `MMAP_THRESHOLD` in `parse` and `ingest`: every
  allocation of 1 MiB or more (a batch's bytes, the C tokenizers' tables) is a mapping of its
  own, given back to the system when freed. Left to itself glibc raises the threshold to the
  size of the first such block freed, and later ones come from its heaps, which fragment as
  blocks of many sizes come and go in five threads: the peak RSS of `parse` over 5M Exim
  lines grew through the run to 881 MB (814 MB with the threshold fixed at 4 MiB; 1M lines:
  ~700 MB either way, and the same CPU time). At 4 MiB the tokenizers' tables of 1-4 MiB (a
  view of 16 bytes per line of a 16 MiB batch) still came from the heaps, made in one thread
  and freed in another: peak RSS still grew 1.21-1.28x from 1M to 5M lines; at 1 MiB
  1.10-1.17x, 30-125 MB lower, for 2-5% more system CPU (the mappings' page faults; 2 MiB was
  no better than 4 MiB). bench/RESULTS.md, "Parquet without hopeless dictionaries, and
  glibc's threshold".
- **The words of the command line** (`argument`): bytes that are not UTF-8 read as U+FFFD,
  for the command line's parser and for the quick paths of `__main__` alike.
- **The collector** (`loading`, around a command's imports of the engine): paused while the
  modules load (their objects are no garbage: 0.03 s of collections for polars, pyarrow and
  the engine), then told to leave those objects alone (`gc.freeze`), so that its passes
  during the run do not walk them again.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "ALLOCATOR_ENV",
    "BLAS_THREADS_ENV",
    "EXPLAIN_ALLOCATOR",
    "MMAP_THRESHOLD",
    "MMAP_THRESHOLD_ENV",
    "REPORT_ALLOCATOR",
    "argument",
    "command_of",
    "environment_for",
    "fix_mmap_threshold",
    "loading",
    "prepare",
]

#: The variable polars' jemalloc reads its settings from, when polars is imported.
ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"
#: Its settings for `report`: freed pages go back to the system at once. 100 ms measured
#: 1.21-1.22x the one-day peak at half the wall time; a user who prefers that sets
#: `_RJEM_MALLOC_CONF` (it wins).
REPORT_ALLOCATOR = "dirty_decay_ms:0,muzzy_decay_ms:0"
#: Its settings for `explain`: one arena (polars' threads share it; fewer fresh pages), and no
#: freed page given back before the process ends.
EXPLAIN_ALLOCATOR = "dirty_decay_ms:-1,muzzy_decay_ms:-1,narenas:1"
#: What numpy's OpenBLAS reads for its number of threads, when numpy is imported.
BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"
#: The variable that sets glibc's mmap threshold at a process's start (a user's own wins).
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
#: The mmap threshold of `parse` and `ingest`, in bytes.
MMAP_THRESHOLD = 2**20
#: glibc's `mallopt` parameter M_MMAP_THRESHOLD.
_M_MMAP_THRESHOLD = -3

#: The variables each command's process starts with (where the environment has none); the
#: empty name: every command, also none at all (`--help`).
_ENVIRONMENT: dict[str, dict[str, str]] = {
    "": {BLAS_THREADS_ENV: "1"},
    "report": {ALLOCATOR_ENV: REPORT_ALLOCATOR},
    "explain": {ALLOCATOR_ENV: EXPLAIN_ALLOCATOR},
}
#: The commands that run with glibc's mmap threshold fixed.
_MMAP_FIXED = {"parse", "ingest"}
#: The modules whose start reads the variables of `_ENVIRONMENT`: once one of them is
#: imported, setting its variable would change nothing.
_READ_BY = {ALLOCATOR_ENV: "polars", BLAS_THREADS_ENV: "numpy"}


def command_of(argv: list[str]) -> str | None:
    """The command the command line `argv` (without the program) runs: its first word that
    is not an option, or None (`--version`, `--help`, nothing)."""
    return next((word for word in argv if not word.startswith("-")), None)


def environment_for(argv: list[str]) -> dict[str, str]:
    """The variables the process of the command line `argv` starts with, where the
    environment has none."""
    return {**_ENVIRONMENT[""], **_ENVIRONMENT.get(command_of(argv) or "", {})}


def prepare(argv: list[str]) -> None:
    """Set up the process for the command line `argv` (without the program): its variables
    (`environment_for`) where the environment and the libraries that read them have none yet,
    and glibc's mmap threshold for `parse` and `ingest`."""
    for name, value in environment_for(argv).items():
        if _READ_BY[name] not in sys.modules:
            os.environ.setdefault(name, value)
    if command_of(argv) in _MMAP_FIXED:
        fix_mmap_threshold()


def fix_mmap_threshold() -> None:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD` (unless the environment sets it, or
    the C library is not glibc)."""
    if MMAP_THRESHOLD_ENV in os.environ:
        return
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # no such name on this system
        return
    if not libc.startswith("glibc"):
        return
    import ctypes

    ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def argument(word: str) -> str:
    """A word of the command line as given, with the bytes that were not UTF-8 (kept by
    Python as lone surrogates, which cannot be written) read as U+FFFD."""
    return word.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@contextmanager
def loading() -> Iterator[None]:
    """Around a command's imports of the engine: the collector paused while they run, then
    told to leave their objects alone (`gc.freeze`). Where the engine is loaded already (a
    test runner's process, which runs many commands) the collector is left as it is."""
    if "polars" in sys.modules:
        yield
        return
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if paused:
            gc.enable()
