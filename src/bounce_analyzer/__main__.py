"""The console script and `python -m bounce_analyzer`.

The process is set up first for the command it runs (`startup.prepare`: the allocator, BLAS
threads and mmap threshold, read by their libraries once, when they start). Then `explain -`
with no other option, the command line a pipeline runs most, runs here without the command
line's modules (typer and the options of every command: 0.04-0.06 s of CPU at each start);
its errors are reported as every command reports them (`cli.exit_code_after`). Everything
else is `cli.main`.
"""

from __future__ import annotations

import sys

from bounce_analyzer import startup


def main() -> None:
    """Console-script entry point."""
    startup.prepare(sys.argv[1:])
    if sys.argv[1:] != ["explain", "-"]:
        from bounce_analyzer.cli import main as command_line

        command_line()
        return
    with startup.loading():
        from bounce_analyzer.explain import explain_bytes
        from bounce_analyzer.rules import load_rules, user_rules_dir
        from bounce_analyzer.writers import stdout_bytes

    try:
        explain_bytes(sys.stdin.buffer, stdout_bytes(), rules=load_rules(user_rules_dir(None)))
    except Exception as error:
        from bounce_analyzer.cli import exit_code_after

        raise SystemExit(exit_code_after("explain", error)) from None


if __name__ == "__main__":  # (not when a process Dask spawns imports it: `ingest --workers`)
    main()
