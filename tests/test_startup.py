"""`--help` and `--version` start without the engine (issue 18, lazy imports): the command line
module imports neither polars nor pyarrow until a command runs, and the options it declares
are the enums the engine acts on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


STARTED = (
    "import gc, os, sys, runpy\n"
    "sys.argv = ['bounce-analyzer', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('bounce_analyzer', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "blas = os.environ.get('OPENBLAS_NUM_THREADS', '(none)')\n"
    "print(blas, gc.get_freeze_count() > 10000, gc.isenabled(), file=sys.stderr)\n"
)


def _started(*argv: str, env: dict[str, str] | None = None) -> list[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", STARTED, *argv],
        capture_output=True, text=True, check=True, env={**environ, **(env or {})},
    )  # fmt: skip
    return done.stderr.strip().splitlines()[-1].split()


def test_parse_and_ingest_start_with_one_blas_thread_and_the_modules_frozen(
    tmp_path: Path,
) -> None:
    """`parse` and `ingest` start numpy's BLAS (pyarrow imports numpy) with one thread, whose
    threads would spin for ~0.1 s of CPU, and leave the objects of their imports to the
    collector's permanent generation (`gc.freeze`), the collector running again after; a
    user's own BLAS setting wins, and other commands are left alone."""
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov 28 10:00:03 mx postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, "
        "relay=mx.example.com[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, "
        "status=bounced (host mx.example.com[192.0.2.1] said: 550 5.1.1 unknown user)\n"
    )
    out = str(tmp_path / "events.jsonl")
    assert _started("parse", str(log), "--tz", "UTC", "-q", "-o", out) == ["1", "True", "True"]
    store = str(tmp_path / "store")
    ingest = ["ingest", "--store", store, "--tz", "UTC", "--quiet", str(log)]
    assert _started(*ingest) == ["1", "True", "True"]
    mine = _started("parse", str(log), "-q", "-o", out, env={"OPENBLAS_NUM_THREADS": "2"})
    assert mine[0] == "2"
    assert _started("parse", "--help") == ["(none)", "False", "True"]


MMAPPED = (
    "import ctypes, sys\n"
    "class Info(ctypes.Structure):\n"
    "    _fields_ = [(name, ctypes.c_size_t) for name in\n"
    "                ('arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks '\n"
    "                 'keepcost').split()]\n"
    "libc = ctypes.CDLL(None)\n"
    "libc.mallinfo2.restype = Info\n"
    "if sys.argv[1] == 'fixed':\n"
    "    from bounce_analyzer.cli import _fixed_mmap_threshold\n"
    "    _fixed_mmap_threshold()\n"
    "first = bytearray(8 << 20)\n"
    "del first\n"
    "before = libc.mallinfo2().hblks\n"
    "later = [bytearray(size << 20) for size in (5, 6, 7)]\n"
    "print(libc.mallinfo2().hblks - before)\n"
)


def test_large_blocks_stay_mappings_of_their_own(tmp_path: Path) -> None:
    """glibc raises its mmap threshold to the size of the first large block freed, and later
    blocks under it come from its heaps (which fragment: `parse`'s peak grew through a long
    run); `parse` and `ingest` fix it, so that blocks of 5-7 MiB after an 8 MiB one freed
    are still mappings of their own (given back to the system when freed). (glibc's own way
    is counted as fewer mappings, not as none: where its heap cannot grow in place it maps
    memory too.)"""
    import os

    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    if not (libc or "").startswith("glibc 2.") or int((libc or "0.0").split(".")[1]) < 33:
        pytest.skip("glibc 2.33 or later (mallinfo2) only")
    # (glibc's settings from the environment turn its own way off: Dask sets
    # MALLOC_TRIM_THRESHOLD_ in this process's environment for the workers it starts)
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }

    def mappings(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", MMAPPED, mode],
            capture_output=True, text=True, check=True, env=environ,
        )  # fmt: skip
        return int(done.stdout)

    assert mappings("fixed") == 3
    assert mappings("glibc") < 3
