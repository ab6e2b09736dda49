"""The console script and `python -m bounce_analyzer`.

`explain -` with no other option, the command line a pipeline runs most, runs here without
the command line's modules (typer, the options of every command: 0.06 s of CPU at each start,
and typer's validators of the command's options, 0.1 s more); its errors are reported as every
command reports them (`cli.exit_code_after`). Everything else is `cli.main`.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    """Console-script entry point."""
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
