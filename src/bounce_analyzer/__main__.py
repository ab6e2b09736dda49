"""The console script and `python -m bounce_analyzer`.

The process is set up first for the command it runs (`startup.prepare`: the allocator, BLAS
threads and mmap threshold, read by their libraries once, when they start). Then `explain -`
and `explain TEXT...` with no option, the command lines a pipeline and a person run most, run
here without the command line's modules (typer and its command: 0.05-0.07 s of CPU at each
start), as the command would run them; their errors are reported as every command reports
them (`cli.exit_code_after`). Everything else is `cli.main`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bounce_analyzer import startup


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    startup.prepare(argv)
    if argv == ["explain", "-"]:
        _quick(_explain_stdin)
    elif _plain_explain(argv):
        _quick(lambda: _explain_words(argv[1:]))
    else:
        from bounce_analyzer.cli import main as command_line

        command_line()


def _plain_explain(argv: list[str]) -> bool:
    """Whether `argv` is `explain` and words of a message, none an option (`-...`): the
    command line's `explain` would join them into the one message it explains."""
    return len(argv) > 1 and argv[0] == "explain" and not any(w.startswith("-") for w in argv)


def _quick(run: Callable[[], None]) -> None:
    """Run `run()`, an `explain` without the command line's modules; its errors are reported
    as the command reports them."""
    try:
        run()
    except Exception as error:
        from bounce_analyzer.cli import exit_code_after

        raise SystemExit(exit_code_after("explain", error)) from None


def _explain_stdin() -> None:
    """`explain -`: the answers to the lines of stdin, as JSON lines on stdout."""
    with startup.loading():
        from bounce_analyzer.explain import explain_bytes
        from bounce_analyzer.rules import load_rules, user_rules_dir
        from bounce_analyzer.writers import stdout_bytes

    explain_bytes(sys.stdin.buffer, stdout_bytes(), rules=load_rules(user_rules_dir(None)))


def _explain_words(words: list[str]) -> None:
    """`explain TEXT...`: the explanation of the message the words make, for a person."""
    with startup.loading():
        from bounce_analyzer.explain import explain_one, render_explanation
        from bounce_analyzer.rules import load_rules, user_rules_dir

    result = explain_one(startup.argument(" ".join(words)), rules=load_rules(user_rules_dir(None)))
    sys.stdout.write(render_explanation(result))
    sys.stdout.flush()


if __name__ == "__main__":  # (not when a process Dask spawns imports it: `ingest --workers`)
    main()
