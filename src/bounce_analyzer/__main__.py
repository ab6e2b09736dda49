"""The console script and `python -m bounce_analyzer`.

`explain -` with no other option, the command line a pipeline runs most, runs here without
the command line's modules (typer, the options of every command: 0.06 s of CPU at each start,
and typer's validators of the command's options, 0.1 s more); its errors are reported as every
command reports them (`cli.exit_code_after`). Everything else is `cli.main`.

`report` runs with polars' allocator (jemalloc) told to give freed pages back at once
(`REPORT_ALLOCATOR`), set before polars is imported (polars reads `_RJEM_MALLOC_CONF` then,
after its own defaults), unless the environment already says something: a report's
streaming reads free as much as they allocate, and the pages jemalloc keeps after a free
(polars' defaults: 0.5 s, then 1 s more as "muzzy" pages) count in the process's memory, more
of them the longer the report runs. On issue 17's store of 33M events (bench/RESULTS.md) the
30-day report's peak fell from 488-551 MB to 322-339 MB, 1.09-1.14x the one-day report's
(297 MB), for about twice the wall time (the system calls that give pages back).

`explain` runs with the opposite settings (`EXPLAIN_ALLOCATOR`): one arena, and freed pages
kept: a stream's chunk is classified in many short plans whose frames come and go, and each
page given back and touched again is a page fault; the run is short. On 100k messages
(bench/explain_speed.py) the page faults fell from 100,000-114,000 to 77,000-81,000, system
time from 0.34-0.42 s to 0.25-0.27 s and the peak from 320-370 MB to 300-320 MB.
"""

from __future__ import annotations

import gc
import os
import sys

#: The variable polars' jemalloc reads its settings from, when it starts.
ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"
#: Its settings for `report`: freed pages go back to the system at once (polars' defaults:
#: after 500 ms, then 1 s as muzzy pages). 100 ms measured 1.21-1.22x the one-day peak at
#: half the wall time; a user who prefers that sets `_RJEM_MALLOC_CONF` (it wins).
REPORT_ALLOCATOR = "dirty_decay_ms:0,muzzy_decay_ms:0"
#: Its settings for `explain`: one arena (polars' threads share it; fewer fresh pages), and no
#: freed page given back before the process ends.
EXPLAIN_ALLOCATOR = "dirty_decay_ms:-1,muzzy_decay_ms:-1,narenas:1"
#: The settings of each command that has some.
_ALLOCATORS = {"report": REPORT_ALLOCATOR, "explain": EXPLAIN_ALLOCATOR}


def allocator_settings(argv: list[str]) -> str | None:
    """The allocator settings the command line `argv` (without the program) runs with, where
    the environment has none: `REPORT_ALLOCATOR` for `report`, `EXPLAIN_ALLOCATOR` for
    `explain`, else None."""
    command = next((word for word in argv if not word.startswith("-")), None)
    return _ALLOCATORS.get(command or "")


def set_allocator(argv: list[str]) -> None:
    """Put `allocator_settings(argv)` in the environment where it has none and polars has
    not started yet (it reads them once, when it is imported)."""
    settings = allocator_settings(argv)
    if settings is not None and "polars" not in sys.modules:
        os.environ.setdefault(ALLOCATOR_ENV, settings)


def main() -> None:
    """Console-script entry point."""
    set_allocator(sys.argv[1:])
    if sys.argv[1:] != ["explain", "-"]:
        from bounce_analyzer.cli import main as command_line

        command_line()
        return
    from bounce_analyzer.explain import explain_bytes
    from bounce_analyzer.rules import load_rules, user_rules_dir
    from bounce_analyzer.writers import stdout_bytes

    # The objects of the imports live as long as the run: the collector need not walk them
    # again at each of its passes.
    gc.freeze()
    try:
        explain_bytes(sys.stdin.buffer, stdout_bytes(), rules=load_rules(user_rules_dir(None)))
    except Exception as error:
        from bounce_analyzer.cli import exit_code_after

        raise SystemExit(exit_code_after("explain", error)) from None


if __name__ == "__main__":  # (not when a process Dask spawns imports it: `ingest --workers`)
    main()
