"""`--help` and `--version` start without the engine (issue 18, lazy imports): the command line
module imports neither polars nor pyarrow until a command runs, and the options it declares
are the enums the engine acts on."""

from __future__ import annotations

import subprocess
import sys

from bounce_analyzer import export, options, render, report, rules

LOADED = (
    "import sys, runpy\n"
    "sys.argv = ['bounce-analyzer', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('bounce_analyzer', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = ['polars', 'pyarrow', 'bounce_analyzer.classify', 'bounce_analyzer.pipeline']\n"
    "print(' '.join(name for name in heavy if name in sys.modules), file=sys.stderr)\n"
)


def _loaded(*argv: str) -> tuple[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, check=True
    )
    return done.stdout, done.stderr.split()


def test_version_and_help_load_no_engine() -> None:
    out, loaded = _loaded("--version")
    assert out.startswith("bounce-analyzer ") and "parser: " in out
    assert loaded == []
    out, loaded = _loaded("--help")
    assert "report" in out and "explain" in out
    assert loaded == []


def test_a_command_loads_what_it_needs() -> None:
    out, loaded = _loaded("explain", "--json", "550 5.1.1 user unknown")
    assert '"category"' in out
    assert "polars" in loaded and "bounce_analyzer.classify" in loaded
    assert "bounce_analyzer.pipeline" not in loaded  # explain reads no log


def test_the_engine_acts_on_the_options_the_command_line_declares() -> None:
    assert render.ReportFormat is options.ReportFormat
    assert report.ReportDirection is options.ReportDirection
    assert report.GROUPABLE is options.GROUPABLE
    assert export.ExportKind is options.ExportKind
    assert export.ExportFormat is options.ExportFormat
    assert rules.Direction is options.Direction


ALLOCATOR = (
    "import os, sys, runpy\n"
    "sys.argv = ['bounce-analyzer', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('bounce_analyzer', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(os.environ.get('_RJEM_MALLOC_CONF', '(none)'), file=sys.stderr)\n"
)


def _allocator(*argv: str, env: dict[str, str] | None = None) -> str:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    done = subprocess.run(
        [sys.executable, "-c", ALLOCATOR, *argv],
        capture_output=True, text=True, check=True, env={**environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stderr.strip().splitlines()[-1]


def test_a_report_runs_with_the_allocator_returning_freed_pages() -> None:
    """`report` sets polars' allocator to give freed pages back (set before polars starts, so
    that it reads it: polars puts its own defaults first and lets what is set win), `explain`
    to keep them in one arena; other commands keep polars' defaults, and a setting of the
    user's wins."""
    from bounce_analyzer.__main__ import EXPLAIN_ALLOCATOR, REPORT_ALLOCATOR

    assert _allocator("report", "--help").endswith(REPORT_ALLOCATOR)
    assert _allocator("explain", "--help").endswith(EXPLAIN_ALLOCATOR)
    # `explain -` runs without the command line's modules: set there too
    assert _allocator("explain", "-").endswith(EXPLAIN_ALLOCATOR)
    for argv in (["parse", "--help"], ["--version"]):
        setting = _allocator(*argv)
        assert REPORT_ALLOCATOR not in setting and EXPLAIN_ALLOCATOR not in setting
    mine = _allocator("report", "--help", env={"_RJEM_MALLOC_CONF": "narenas:2"})
    assert mine.endswith("narenas:2") and REPORT_ALLOCATOR not in mine
