"""Each command starts with what it needs and no more (issue 18, lazy imports; bench/RESULTS.md,
"Start-up per command"): which modules a command line loads, in a real process started as the
console script starts it; the process-wide settings of `startup`, in one place; and typer's
values of our options taken without its pydantic validators, the same as typer's own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from typer._click import Context
from typer._click.exceptions import BadParameter

from _samples import BOUNCED
from bounce_analyzer import cli, export, native, options, render, report, rules, startup
from bounce_analyzer.generate import generate_postfix

PACKAGE = Path(__file__).parent.parent / "src" / "bounce_analyzer"

#: Runs the console script's entry (`__main__.main`) with the command line given, then names
#: the modules of `HEAVY` it loaded, on stderr's last line.
LOADED = (
    "import sys, runpy\n"
    "heavy = sys.argv[1].split()\n"
    "sys.argv = ['bounce-analyzer', *sys.argv[2:]]\n"
    "try:\n"
    "    runpy.run_module('bounce_analyzer', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "loaded = [name for name in heavy if name in sys.modules]\n"
    "print('loaded:', *loaded, file=sys.stderr)\n"
)
#: What a start may do without: the engine's libraries, typer's validators (pydantic) and its
#: help (rich), the engine, the parse run, the report's modules.
HEAVY = (
    "polars pyarrow pyarrow.compute numpy pydantic rich bounce_analyzer.classify "
    "bounce_analyzer.pipeline bounce_analyzer.render"
)


def _loaded(*argv: str, stdin: str | None = None) -> tuple[str, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, HEAVY, *argv],
        capture_output=True, text=True, check=True, input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout, set(done.stderr.strip().splitlines()[-1].split()[1:])


def test_version_and_help_load_no_engine() -> None:
    out, loaded = _loaded("--version")
    assert out.startswith("bounce-analyzer ") and "parser: " in out
    assert loaded == set()
    out, loaded = _loaded("--help")
    assert "report" in out and "explain" in out
    assert loaded == {"rich"}  # (typer draws its help with rich)


def test_explain_loads_the_engine_and_nothing_else() -> None:
    out, loaded = _loaded("explain", "--json", "550 5.1.1 user unknown")
    assert '"category": "user_unknown"' in out
    # the engine on polars; not pyarrow, the parse run, the report's modules or pydantic
    assert loaded == {"polars", "bounce_analyzer.classify"}
    out, loaded = _loaded("explain", "-", stdin="550 5.1.1 user unknown\n")
    assert '"category":"user_unknown"' in out
    assert loaded == {"polars", "bounce_analyzer.classify"}


def test_parse_and_report_take_their_options_without_pydantic(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(BOUNCED + "\n")
    events = tmp_path / "events.jsonl"
    _, loaded = _loaded("parse", str(log), "--tz", "UTC", "-q", "-o", str(events))
    assert '"category":"user_unknown"' in events.read_text().replace(" ", "")
    assert "pydantic" not in loaded and "bounce_analyzer.pipeline" in loaded
    # the C tokenizer's columns are polars' through the Arrow C data interface, without the
    # pyarrow.compute that `pl.from_arrow` imports (sources/_views.py)
    assert "pyarrow" in loaded and "pyarrow.compute" not in loaded
    store = str(tmp_path / "store")
    _loaded("ingest", "--store", store, "--tz", "UTC", "-q", str(log))
    out, loaded = _loaded("report", "--store", store, "--since", "3650d", "--top", "5")
    assert "user_unknown" in out
    assert "pydantic" not in loaded and "bounce_analyzer.render" in loaded
    # (the store's events are classified: a report from it runs no parse)
    assert "bounce_analyzer.pipeline" not in loaded


@pytest.mark.skipif(
    getattr(native.built("postfix"), "compact", None) is None,
    reason="the Postfix C module (its `compact`) is not built",
)
def test_parse_copies_postfix_texts_without_pyarrow_compute(tmp_path: Path) -> None:
    # a generated log's events hold a small part of their batch, so `pipeline.own_texts`
    # copies their texts out of it in C (`_compacted`): the copy goes back to polars through
    # the Arrow C data interface too, not `pl.from_arrow` (which imports pyarrow.compute)
    log = tmp_path / "mail.log"
    generate_postfix(log, lines=2_000, seed=1, start=datetime(2026, 11, 20), tz="UTC")
    events = tmp_path / "events.parquet"
    _, loaded = _loaded("parse", str(log), "--tz", "UTC", "-q", "-o", str(events))
    made = pl.read_parquet(events)
    assert made.height > 100 and made["diagnostic"].is_not_null().any()
    assert "pyarrow" in loaded and "pyarrow.compute" not in loaded


def test_a_bad_option_value_is_named_as_typer_names_it() -> None:
    """A value `_plain` does not take goes to typer's own coercion, whose message it keeps."""
    done = subprocess.run(
        [sys.executable, "-m", "bounce_analyzer", "explain", "--top", "0", "x"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "Invalid value for '--top': Input should be greater than or equal to 1" in done.stderr


#: Command lines that the app of one command (`cli._app_for`) answers: help, usage errors.
ALONE = [
    *([name, "--help"] for name in ("explain", "parse", "ingest", "report", "export", "prune")),
    *([name, "--help"] for name in ("check", "metrics", "serve", "store")),
    ["store", "migrate", "--help"],
    ["explain", "--no-such-option", "x"],
    ["parse"],
    ["report", "--format", "nope"],
    ["check", "--no-such-option"],
    ["store"],
    ["store", "nope"],
]


@pytest.mark.parametrize("argv", ALONE, ids=" ".join)
def test_a_command_alone_answers_as_all_of_them_do(argv: list[str]) -> None:
    """The app built with the named command alone (fix10: typer builds each command it holds
    at each start) prints the same help, usage and errors with the same exit code."""
    from typer.testing import CliRunner

    alone = cli._app_for(argv)
    assert alone is not cli.app
    assert [*alone.registered_commands, *alone.registered_groups] != []
    runner = CliRunner()
    env = {"COLUMNS": "100"}
    full = runner.invoke(cli.app, argv, prog_name="bounce-analyzer", env=env)
    one = runner.invoke(alone, argv, prog_name="bounce-analyzer", env=env)
    assert (one.exit_code, one.output) == (full.exit_code, full.output)
    assert full.exit_code in (0, 2, 3) and full.output.strip()  # (3: `check`, a plugin)


@pytest.mark.parametrize("argv", [[], ["--help"], ["--version"], ["explian", "x"], ["-"]])
def test_other_command_lines_get_every_command(argv: list[str]) -> None:
    assert cli._app_for(argv) is cli.app


def test_the_engine_acts_on_the_options_the_command_line_declares() -> None:
    assert render.ReportFormat is options.ReportFormat
    assert report.ReportDirection is options.ReportDirection
    assert report.GROUPABLE is options.GROUPABLE
    assert export.ExportKind is options.ExportKind
    assert export.ExportFormat is options.ExportFormat
    assert rules.Direction is options.Direction


#: Runs the console script's entry with the command line given, then prints on stderr's last
#: line the settings the process ended with.
STARTED = (
    "import gc, os, sys, runpy\n"
    "sys.argv = ['bounce-analyzer', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('bounce_analyzer', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(os.environ.get('_RJEM_MALLOC_CONF', '-'), os.environ.get('OPENBLAS_NUM_THREADS', '-'),\n"
    "      gc.get_freeze_count() > 10000, gc.isenabled(), file=sys.stderr)\n"
)


def _started(*argv: str, env: dict[str, str] | None = None) -> list[str]:
    """The allocator's settings (after polars' own defaults, which polars puts first once it
    is imported), the BLAS threads, whether many objects are frozen and whether the collector
    runs, at the end of the command line `argv`."""
    mine = ("_RJEM_MALLOC_CONF", "OPENBLAS_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_")
    environ = {k: v for k, v in os.environ.items() if k not in mine}
    done = subprocess.run(
        [sys.executable, "-c", STARTED, *argv],
        capture_output=True, text=True, check=True, env={**environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    allocator, *rest = done.stderr.strip().splitlines()[-1].split()
    for setting in (startup.REPORT_ALLOCATOR, startup.EXPLAIN_ALLOCATOR, "narenas:2"):
        if allocator.endswith(setting):
            allocator = setting
    return [allocator, *rest]


def test_each_command_starts_with_its_settings(tmp_path: Path) -> None:
    """The process-wide settings, all set by `startup.prepare` from the console script before
    anything reads them: polars' allocator for `report` (freed pages given back) and `explain`
    (one arena, pages kept), else polars' defaults; one BLAS thread for every command; the
    collector paused over the engine's imports, then their objects frozen, where a command
    loads the engine (`startup.loading`), the collector running again after. A setting of the
    user's wins."""
    log = tmp_path / "mail.log"
    log.write_text(BOUNCED + "\n")
    out = str(tmp_path / "events.jsonl")
    report_, explain_ = startup.REPORT_ALLOCATOR, startup.EXPLAIN_ALLOCATOR
    assert _started("report", "--help") == [report_, "1", "False", "True"]
    assert _started("explain", "-") == [explain_, "1", "True", "True"]
    assert _started("explain", "550 5.1.1 user unknown") == [explain_, "1", "True", "True"]
    parse = ["parse", str(log), "--tz", "UTC", "-q", "-o", out]
    defaults = _started(*parse)
    assert report_ not in defaults[0] and explain_ not in defaults[0]
    assert defaults[1:] == ["1", "True", "True"]
    store = str(tmp_path / "store")
    ingest = ["ingest", "--store", store, "--tz", "UTC", "--quiet", str(log)]
    assert _started(*ingest)[1:] == ["1", "True", "True"]
    assert _started("--version") == ["-", "1", "False", "True"]
    mine = {"_RJEM_MALLOC_CONF": "narenas:2", "OPENBLAS_NUM_THREADS": "2"}
    assert _started("report", "--help", env=mine)[:2] == ["narenas:2", "2"]


def test_the_process_settings_have_one_place() -> None:
    """Only `startup` sets what a library reads at its start, or the collector's state."""
    settings = ("_RJEM_MALLOC_CONF", "OPENBLAS_NUM_THREADS", "MALLOC_", "mallopt")
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "startup.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not any(name in node.value for name in settings), path
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                called = f"{node.value.id}.{node.attr}"
                assert called not in {"gc.freeze", "gc.disable", "gc.set_threshold"}, path


MMAPPED = (
    "import ctypes, sys\n"
    "class Info(ctypes.Structure):\n"
    "    _fields_ = [(name, ctypes.c_size_t) for name in\n"
    "                ('arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks '\n"
    "                 'keepcost').split()]\n"
    "libc = ctypes.CDLL(None)\n"
    "libc.mallinfo2.restype = Info\n"
    "if sys.argv[1] == 'fixed':\n"
    "    from bounce_analyzer.startup import prepare\n"
    "    prepare(['parse', 'mail.log'])\n"
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


def _params() -> list[tuple[str, Any, Context]]:
    """Every option and argument of every command (their `--help` too), with its context."""
    found = []
    group = typer.main.get_command(cli.app)
    commands: list[tuple[str, Any]] = [("", group)]
    while commands:
        name, command = commands.pop()
        ctx = Context(command)
        found += [(f"{name} {param.name}", param, ctx) for param in command.get_params(ctx)]
        for sub, child in getattr(command, "commands", {}).items():
            commands.append((f"{name} {sub}".strip(), child))
    return found


#: Values a command line gives or a default is: words, numbers in and out of range, digits
#: typer reads and `_plain` leaves to it, choices in other cases, a byte that was not UTF-8
#: (a lone surrogate), lists of words.
VALUES: list[Any] = [
    None, "", "x", "0", "1", "5", "007", "65536", "-1", " 3", "1_0", "\uff15", "4.0", 7, True,
    False, "true", "table", "TABLE", "outbound", "inbound", "all", "parquet", "events",
    "a\udcffb", options.ReportFormat.html, options.Direction.inbound, (), ("a", "b"),
    ("a\udcffb",), ["c"], ("a", 1),
]  # fmt: skip


def _outcome(runtime: Any, value: Any, param: Any, ctx: Context) -> tuple[str, Any]:
    try:
        return "value", runtime.coerce(value, param=param, ctx=ctx)
    except BadParameter as error:
        return "error", error.format_message()


def test_plain_values_are_what_typer_makes_of_them() -> None:
    """Each option that `_PlainValue` coerces gives, for each value, what typer's own coercion
    (a pydantic validator) gives: the same value of the same type, or the same error."""
    from typer._coercion import build_runtime_param

    taken = 0
    for name, param, ctx in _params():
        cli._plain_values([param])
        plain = param._runtime_param
        if not isinstance(plain, cli._PlainValue):
            continue
        taken += 1
        own = build_runtime_param(param.type_descriptor)
        for value in VALUES:
            expected = _outcome(own, value, param, ctx)
            got = _outcome(plain, value, param, ctx)
            assert got == expected, (name, value)
            assert type(got[1]) is type(expected[1]), (name, value)
    assert taken > 100  # every command's options but `serve --spool` (a Path)
