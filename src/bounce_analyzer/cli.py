"""The command line: options -> one library call -> render -> echo.

Errors the library raises on purpose (`BounceAnalyzerError`) become one `Error: ...` line on
stderr and the error's exit code, in one place (`_reported`, around every command); anything
else is a bug and keeps its traceback (without locals, which hold e-mail addresses).
`explain -` and `explain TEXT...` with no option, the command lines run most, skip this module
and its option parser (`__main__.main`).

What a command does not need is not imported (docs/ARCHITECTURE.md, "Start-up"): this module
loads typer and the options' enums, not polars; the store and ingest modules load pyarrow,
and the explain module the classification engine: the commands that need them import them
when they run, inside `startup.loading()` (the collector paused), so that `--help`,
`--version` and `explain` start without pyarrow. typer's values of our options (strings,
numbers, the enums of options.py, lists of strings) are taken without the pydantic
validators typer builds for each option (`_PlainValue`: 0.1 s of CPU at every start).
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, get_args, get_origin, overload

import typer
from typer.core import TyperGroup
from typer.main import get_command_name
from typer.models import TyperInfo

from bounce_analyzer import __version__, startup
from bounce_analyzer.errors import BounceAnalyzerError, UsageError
from bounce_analyzer.options import (
    GROUPABLE,
    Direction,
    ExportFormat,
    ExportKind,
    ReportDirection,
    ReportFormat,
)
from bounce_analyzer.timewindow import parse_duration, parse_since, parse_until, previous_start

if TYPE_CHECKING:
    import polars as pl

    from bounce_analyzer.ingest import IngestResult
    from bounce_analyzer.pipeline import FileSummary
    from bounce_analyzer.report import Report
    from bounce_analyzer.rules import Rules

try:  # a command line the parser refuses (an unknown option): typer carries its own click now
    from typer._click.exceptions import UsageError as CommandLineError
except ImportError:  # pragma: no cover (a typer that runs on click itself)
    from click.exceptions import (  # type: ignore[no-redef, assignment, unused-ignore]
        UsageError as CommandLineError,
    )


try:  # typer's own coercion of a value, through a pydantic validator it builds per option
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # pragma: no cover (a typer that converts values with click's types)
    RuntimeParam = None  # type: ignore[assignment, misc, unused-ignore]
else:  # (typer's private interface, as tests/test_startup.py knows it; else typer's own way)
    if {field.name for field in fields(RuntimeParam)} != {"parameter_info", "annotation"}:
        RuntimeParam = None  # type: ignore[assignment, misc, unused-ignore]  # pragma: no cover

#: `_plain` could not take a value: typer's own coercion does.
_NOT_PLAIN = object()


def _plain(annotation: Any, minimum: Any, maximum: Any, value: Any) -> Any:
    """The value typer gives an option of type `annotation` (str, bool, int within [`minimum`,
    `maximum`], an enum, list[str]) for `value` (a command-line word or the default), where
    it is plain: a string; a bool; digits within the bounds; an enum member or the exact value
    of one; strings. Else `_NOT_PLAIN` (typer's pydantic validator then coerces it, or names
    what is wrong with it, as always)."""
    if annotation in (str, bool):  # (a str of a subclass, such as an enum's, becomes a str)
        return value if type(value) is annotation else _NOT_PLAIN
    if annotation is int:
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if type(value) is not int:  # (not a bool)
            return _NOT_PLAIN
        low = minimum is None or value >= minimum
        return value if low and (maximum is None or value <= maximum) else _NOT_PLAIN
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        if isinstance(value, annotation):
            return value
        return next((one for one in annotation if one.value == value), _NOT_PLAIN)
    if isinstance(value, (list, tuple)) and all(type(item) is str for item in value):
        return list(value)  # (list[str]: the only other kind `_plain_kind` lets through)
    return _NOT_PLAIN


def _plain_kind(annotation: Any) -> bool:
    """Whether `_plain` knows the values of an option of type `annotation`."""
    if annotation in (str, int, bool) or (
        isinstance(annotation, type) and issubclass(annotation, Enum)
    ):
        return True
    return get_origin(annotation) is list and get_args(annotation) == (str,)


if RuntimeParam is not None:

    class _PlainValue(RuntimeParam):
        """typer's coercion of an option's value without its pydantic validator where the
        value is plain (`_plain`); typer's own for any other (its error, for a bad one)."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            info = self.parameter_info
            plain = _plain(self.annotation, info.min, info.max, value)
            if plain is _NOT_PLAIN:
                own = build_runtime_param(param.type_descriptor)
                return own._coerce_value(value, param=param, ctx=ctx)
            return plain


def _plain_values(params: list[Any]) -> None:
    """Give the options among `params` whose values `_plain` knows the coercion `_PlainValue`,
    before typer builds them its own (pydantic's import and validators: 0.1 s of CPU)."""
    if RuntimeParam is None:  # pragma: no cover
        return
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", False) is not None:
            continue
        info = descriptor.parameter_info
        if descriptor.is_file or info.parser is not None or info.clamp:
            continue
        if _plain_kind(descriptor.annotation):
            param._runtime_param = _PlainValue(
                parameter_info=info, annotation=descriptor.annotation
            )


class _PlainGroup(TyperGroup):
    """A group whose options and commands take plain values without pydantic
    (`_plain_values`; `--help` included)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _plain_values(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:  # (its `--help` made here takes the names `ctx` gives its child)
            _plain_values(command.get_params(ctx))
        return name, command, rest


class _Commands(_PlainGroup):
    """The commands, run so that a `BounceAnalyzerError` becomes `Error: ...` on stderr and the
    error's exit code."""

    def invoke(self, ctx: Any) -> Any:
        # (the command is known once the group has read its name: asked for when needed)
        with _reported(lambda: ctx.invoked_subcommand):
            return super().invoke(ctx)


@contextmanager
def _reported(command: Callable[[], str | None]) -> Iterator[None]:
    """Run a command (`command()` names it), turning the errors it stops on into their message
    and exit code."""
    try:
        yield
    except BounceAnalyzerError as error:
        from bounce_analyzer.writers import printable  # (lazy: it loads polars)

        typer.echo(f"Error: {printable(str(error))}", err=True)
        raise typer.Exit(_exit_code(command(), error.exit_code, str(error))) from None
    except CommandLineError as error:
        if command() not in _PLUGINS:
            raise
        error.show()  # as click shows it, then the plugin's verdict
        raise typer.Exit(_exit_code(command(), error.exit_code, error.format_message())) from None
    except OSError as error:
        from bounce_analyzer.writers import is_broken_pipe

        if not is_broken_pipe(error):
            raise
        # The reader of our output went away (`parse big.log | head -1`): stop quietly,
        # with the exit code a shell gives a command that a closed pipe stopped.
        _silence_output()
        raise typer.Exit(_BROKEN_PIPE) from None


#: The commands that monitoring systems run as plugins: whatever stops them (a bad option, a
#: missing store, a bad thresholds file) is UNKNOWN, exit code 3, with a status line on stdout,
#: instead of the usage (2) or failure (1) codes of the other commands, since a plugin's 1 and
#: 2 mean WARNING and CRITICAL (docs/MONITORING.md).
_PLUGINS = {"check"}


def _exit_code(command: str | None, code: int, message: str) -> int:
    """The exit code of `command` stopped by an error of exit code `code`."""
    from bounce_analyzer.writers import printable

    if command not in _PLUGINS:
        return code
    from bounce_analyzer.check import Status

    typer.echo(f"BOUNCE UNKNOWN - {printable(message)}")
    return int(Status.UNKNOWN)


#: 128 + SIGPIPE: what a shell reports for a command stopped by a closed pipe (`yes | head`).
_BROKEN_PIPE = 141


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so that nothing more (a flush at exit) fails."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass  # not a real file (a test runner's capture)
    os.close(devnull)


app = typer.Typer(
    name="bounce-analyzer",
    help="Why does your mail bounce? Classify Postfix, Exim, SendGrid and Mailgun failures.",
    cls=_Commands,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from bounce_analyzer import native

        typer.echo(f"bounce-analyzer {__version__}\n{native.describe()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Why does your mail bounce? Classify Postfix, Exim, SendGrid and Mailgun failures."""


RulesOption = Annotated[
    str | None,
    typer.Option(
        "--rules",
        help="A folder of your own rules, laid over the built-in ones "
        "(default: $BOUNCE_ANALYZER_RULES).",
        show_default=False,
    ),
]


LocalDomainsOption = Annotated[
    str | None,
    typer.Option(
        "--local-domains",
        help="Our own domains, comma-separated (.example.com: its subdomains): mail to them is "
        "inbound whatever carried it. Added to the local_domains of the rules' direction.toml.",
        show_default=False,
    ),
]


def _rules(option: str | None, *, local_domains: str | None = None) -> Rules:
    """The built-in rules with the `--rules` folder (else $BOUNCE_ANALYZER_RULES) laid over,
    and the `--local-domains` added to their direction settings."""
    from bounce_analyzer.rules import load_rules, user_rules_dir

    loaded = load_rules(user_rules_dir(Path(option) if option else None))
    if local_domains is not None:
        loaded = loaded.with_local_domains(local_domains.split(","))
    return loaded


@overload
def _utf8(argument: str) -> str: ...
@overload
def _utf8(argument: None) -> None: ...
def _utf8(argument: str | None) -> str | None:
    """An argument as given, with the bytes that were not UTF-8 read as U+FFFD
    (`startup.argument`)."""
    return None if argument is None else startup.argument(argument)


@app.command()
def explain(
    text: Annotated[
        list[str] | None,
        typer.Argument(
            help="A diagnostic message or a bare code (550, 5.7.26, 0x800CCC0F); "
            "`-` reads one per line from stdin and writes JSON lines. With --unclassified: "
            "log or event files, globs or folders (none: the store).",
            show_default=False,
        ),
    ] = None,
    *,
    code: Annotated[int | None, typer.Option("--code", help="The SMTP reply code.")] = None,
    enhanced: Annotated[
        str | None, typer.Option("--enhanced", help="The enhanced status code (5.1.1).")
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="The receiving provider (google ...).")
    ] = None,
    recipient: Annotated[
        str | None, typer.Option("--recipient", help="The recipient address or domain.")
    ] = None,
    relay_host: Annotated[
        str | None, typer.Option("--relay-host", help="The remote server's host name.")
    ] = None,
    direction: Annotated[
        Direction,
        typer.Option(
            "--direction",
            help="Whose refusal it is, for the advice: outbound (mail we sent, refused by the "
            "receiver) or inbound (mail sent to us, refused or delivered by our server; a "
            "listed IP is then the client's). A JSON line's own `direction` wins.",
        ),
    ] = Direction.outbound,
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON instead of text.")] = False,
    rules: RulesOption = None,
    unclassified: Annotated[
        bool,
        typer.Option(
            "--unclassified",
            help="Instead of explaining a message, list the texts of failures and deferrals "
            "that no rule read (decided by a code alone or the default), masked, most frequent "
            "first: from the files, globs or folders given, else from the store.",
        ),
    ] = False,
    store: StoreOption = None,
    since: Annotated[
        str, typer.Option("--since", help="With --unclassified: start of the window (7d, 24h).")
    ] = "7d",
    until: Annotated[
        str | None,
        typer.Option("--until", help="With --unclassified: end of the window (default: now)."),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", min=1, help="With --unclassified: the texts to list.")
    ] = 10,
    source: SourceOption = None,
    tz: TzOption = None,
) -> None:
    """Explain a bounce message: category, hard/soft, provider, the rule and what to do.

    Example: bounce-analyzer explain "550-5.1.1 The email account that you tried to reach
    does not exist"   (or: bounce-analyzer explain --unclassified --since 30d)
    """
    words = text or []
    if unclassified:
        with startup.loading():
            from bounce_analyzer.render import render_unclassified  # (the report's modules)

        given = {"--code": code, "--enhanced": enhanced, "--provider": provider,
                 "--recipient": recipient, "--relay-host": relay_host}  # fmt: skip
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise UsageError(f"--unclassified lists texts; it takes no {', '.join(named)}")
        start, end = _window(since, until)
        found, left_out, failed = _unclassified(
            words, store=store, since=start, until=end, top=top, direction=direction,
            source=source, tz=tz, rules=_rules(rules),
        )  # fmt: skip
        typer.echo(
            render_unclassified(
                found,
                omitted=left_out,
                as_json=as_json,
                since=start,
                until=end,
                direction=direction.value,
            ),  # fmt: skip
            nl=False,
        )
        if failed:
            raise typer.Exit(1)
        return
    with startup.loading():
        from bounce_analyzer import explain as explaining  # the engine, for this command only

    if words == ["-"]:
        _explain_stdin(rules, direction)
        return
    if not words and code is None and enhanced is None:
        raise UsageError("give a message or a code to explain, or `-` for stdin")
    result = explaining.explain_one(
        _utf8(" ".join(words)),
        smtp_code=code,
        enhanced_code=_utf8(enhanced),
        provider=_utf8(provider),
        recipient=_utf8(recipient),
        relay_host=_utf8(relay_host),
        direction=direction,
        rules=_rules(rules),
    )
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        typer.echo(explaining.render_explanation(result), nl=False)


def _unclassified(
    paths: list[str],
    *,
    store: str | None,
    since: datetime,
    until: datetime | None,
    top: int,
    direction: Direction,
    source: str | None,
    tz: str | None,
    rules: Rules,
) -> tuple[pl.DataFrame, int, bool]:
    """The unclassified texts of `paths` (else of the store), the rows `top` left out, and
    whether an input failed (its summary is on stderr)."""
    from bounce_analyzer.pipeline import run_failed
    from bounce_analyzer.report import unclassified_texts

    if paths:
        from bounce_analyzer.ingest import summarize_paths  # lazy: pyarrow

        summary, files = summarize_paths(
            paths, since=since, until=until, top=top, source=source, tz=tz, rules=rules,
            direction=direction.value,
        )  # fmt: skip
        _echo_summaries(files, all_of_them=False)
        return summary.unclassified, summary.omitted["unclassified"], run_failed(files)
    from bounce_analyzer.store import open_store, store_location  # lazy: pyarrow

    with open_store(store_location(store), create=False).reading() as view:
        found = unclassified_texts(
            view.scan_events(since=since, until=until, direction=rules.direction),
            direction=direction.value,
        )
    return found.head(top), max(0, found.height - top), False


PathsArgument = Annotated[
    list[str],
    typer.Argument(
        help="Log or event files, globs, directories, or - for stdin; "
        "compressed (gzip, bzip2, xz, zstd) or not.",
        show_default=False,
    ),
]
SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source", help="postfix, exim, sendgrid or mailgun (default: detected per file)."
    ),
]
TzOption = Annotated[
    str | None,
    typer.Option(
        "--tz",
        help="Time zone of log timestamps without an offset, e.g. Europe/Berlin "
        "(default: this machine's zone, as syslog writes).",
    ),
]
StrictOption = Annotated[
    bool, typer.Option("--strict", help="Stop at the first malformed record, naming it.")
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bar and no summary: only problems, on stderr."),
]

WidthOption = Annotated[
    int | None,
    typer.Option(
        "--width",
        min=1,
        help="Columns of the table (default: $COLUMNS, else the terminal's, else 100 when "
        "the output is not a terminal; 80 at least).",
        show_default=False,
    ),
]

#: The table's width when nothing says one (a pipe, a file, cron): stable output.
DEFAULT_WIDTH = 100
#: The narrowest table drawn: below it, columns would be cut to nothing.
MIN_WIDTH = 80


def _width(option: int | None) -> int:
    """The columns a table may use: `--width`, else `$COLUMNS`, else the terminal's when
    stdout is one, else `DEFAULT_WIDTH`; never under `MIN_WIDTH`."""
    if option is None:
        columns = os.environ.get("COLUMNS", "").strip()
        if columns.isdigit() and int(columns) > 0:
            option = int(columns)
        elif sys.stdout.isatty():
            option = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
        else:
            option = DEFAULT_WIDTH
    return max(option, MIN_WIDTH)


@contextmanager
def _progress(total: int | None, *, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A tqdm byte counter on stderr when it is a terminal (its `update`), else None."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm  # lazy: only a terminal shows a bar

    with tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, leave=False) as bar:
        yield bar.update


def _echo_summaries(summaries: list[FileSummary], *, all_of_them: bool) -> None:
    """On stderr, the summary line of each input (`all_of_them`), or only of each input that
    was damaged, not read or misread: quiet means silent unless something is wrong. A
    misread input is followed by a warning that names the format it looks like."""
    from bounce_analyzer.writers import printable

    for summary in summaries:
        problem = (
            summary.partial or summary.misread or (summary.source is None and not summary.empty)
        )
        if all_of_them or problem:
            typer.echo(printable(_summary_line(summary)), err=True)
        if summary.misread:
            typer.echo(printable(_misread_warning(summary)), err=True)


def _misread_warning(summary: FileSummary) -> str:
    from bounce_analyzer.sources import detect as detect_source

    looks_like = detect_source(summary.head)
    text = (
        f"warning: {summary.path}: {summary.malformed:,} of {summary.read:,} records malformed "
        f"as {summary.source} and none an event"
    )
    if looks_like is not None and looks_like != summary.source:
        return f"{text}: it looks like {looks_like} (leave out --source, or name the right one)"
    if looks_like is None:
        return f"{text}: its format was not recognised"
    return f"{text}: is it a {summary.source} log?"


def _summary_line(summary: FileSummary) -> str:
    if summary.empty:
        return f"{summary.path}: empty, 0 read, 0 events, 0 skipped, 0 malformed"
    if summary.source is None and summary.damage:
        return f"{summary.path}: nothing readable; PARTIAL: {summary.damage}"
    if summary.source is None:
        if summary.in_directory:
            return f"{summary.path}: not a log or event file we read; passed over"
        return f"{summary.path}: format not recognised (name it with --source); nothing read"
    text = (
        f"{summary.path}: {summary.source}, {summary.read:,} read, {summary.events:,} events, "
        f"{summary.skipped:,} skipped, {summary.malformed:,} malformed"
    )
    if summary.damage:
        text += f"; PARTIAL: {summary.damage}"
    return text


def _stdout() -> IO[bytes]:
    """Standard output for bytes (`writers.stdout_bytes`)."""
    from bounce_analyzer.writers import stdout_bytes

    return stdout_bytes()


def _open_output(outputs: ExitStack, path: str) -> IO[bytes]:
    """`path` opened for writing, whole or not at all (`writers.output_file`), until
    `outputs` closes."""
    from bounce_analyzer.writers import output_file

    return outputs.enter_context(open(outputs.enter_context(output_file(path)), "wb"))


@app.command()
def parse(
    paths: PathsArgument,
    *,
    source: SourceOption = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="jsonl, csv, parquet or table (default: from the -o suffix, else jsonl).",
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    tz: TzOption = None,
    strict: StrictOption = False,
    malformed: Annotated[
        str | None,
        typer.Option(
            "--malformed",
            help="Write the records set aside as malformed here (JSON lines: origin, reason, raw).",
        ),
    ] = None,
    rules: RulesOption = None,
    local_domains: LocalDomainsOption = None,
    width: WidthOption = None,
    quiet: QuietOption = False,
) -> None:
    """Read logs or ESP events and write one classified event per recipient and attempt.

    Example: bounce-analyzer parse /var/log/mail.log --format csv -o bounces.csv
    """
    with startup.loading():
        import polars as pl

        from bounce_analyzer.pipeline import ParseRun, run_failed
        from bounce_analyzer.reading import expand_inputs
        from bounce_analyzer.schema import EVENT_SCHEMA
        from bounce_analyzer.writers import EventWriter, event_format_for, refuse_inputs

        event_format = event_format_for(output, fmt)
        loaded = _rules(rules, local_domains=local_domains)
        run = ParseRun(paths, source=source, tz=tz, strict=strict, rules=loaded)
    inputs = [item.path for item in expand_inputs(paths)]
    refuse_inputs({"--output": output, "--malformed": malformed}, inputs)
    with ExitStack() as outputs:
        stream = _open_output(outputs, output) if output else _stdout()
        set_aside = _open_output(outputs, malformed) if malformed else None
        writer = EventWriter(stream, event_format, width=_width(width))
        with _progress(run.total_bytes(), quiet=quiet) as update:
            run.progress = update
            for chunk in run:
                writer.write(chunk.events)
                if set_aside is not None and chunk.malformed.height:
                    chunk.malformed.write_ndjson(set_aside)
        writer.close(empty=pl.DataFrame(schema=EVENT_SCHEMA))
    _echo_summaries(run.summaries, all_of_them=not quiet)
    if run_failed(run.summaries):
        raise typer.Exit(1)


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The store: a folder, or s3://bucket/prefix (default: $BOUNCE_ANALYZER_STORE, "
        "else the user data directory).",
        show_default=False,
    ),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _window(since: str, until: str | None) -> tuple[datetime, datetime | None]:
    """`--since` and `--until` as instants (until: None, now); a window that ends before it
    starts (or where it starts) is a usage error rather than an empty report."""
    now = _now()
    start = parse_since(since, now=now)
    end = parse_until(until, now=now) if until else None
    if start >= (now if end is None else end):
        shown = f"--until {until}" if until else "now"
        raise UsageError(f"empty window: --since {since} is not before {shown}")
    return start, end


def _ingest_line(result: IngestResult) -> str:
    from bounce_analyzer.schema import EVENTS

    kinds = ", ".join(
        f"{result.events_by_type[name]:,} {name}"
        for name in EVENTS
        if result.events_by_type.get(name)
    )
    files = sum(1 for summary in result.files if summary.source is not None or summary.empty)
    passed_over = len(result.files) - files
    also = f" ({passed_over} passed over)" if passed_over else ""
    # A live log's last line without newline, read next time (pipeline.FileSummary.held_back).
    held = "".join(
        f"{summary.path}: held back 1 partial line until it is complete\n"
        for summary in result.files
        if summary.held_back
    )
    return held + (
        f"ingested {files} file{'s' if files != 1 else ''}{also}: {result.events:,} new events"
        f"{f' ({kinds})' if kinds else ''}, {result.malformed:,} malformed set aside, "
        f"{result.duplicates:,} duplicates dropped"
    )


@app.command()
def ingest(
    paths: PathsArgument,
    *,
    source: SourceOption = None,
    store: StoreOption = None,
    tz: TzOption = None,
    strict: StrictOption = False,
    rules: RulesOption = None,
    local_domains: LocalDomainsOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for another run's lock instead of stopping.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Parse each log set (a log and its rotated files) on a local Dask cluster of "
            "this many processes (the `cluster` extra).",
            show_default=False,
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Or on the workers of the Dask scheduler at this address (tcp://host:8786), "
            "which must see the inputs and the store at the same paths (docs/SCALE.md).",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Parse, classify and add new events to the store; each event is stored once.

    Example: bounce-analyzer ingest --quiet /var/log/mail.log*   (nightly, from cron)
    """
    with startup.loading():
        from bounce_analyzer.ingest import ingest_paths  # lazy: pyarrow
        from bounce_analyzer.pipeline import run_failed
        from bounce_analyzer.reading import expand_inputs, total_size
        from bounce_analyzer.store import store_location  # lazy: pyarrow

    run = ingest_paths
    if workers is not None or cluster is not None:
        from functools import partial

        from bounce_analyzer.cluster import ingest_on_cluster  # Dask only when asked for

        run = partial(ingest_on_cluster, workers=workers, address=cluster)
    inputs = expand_inputs(paths)
    with _progress(total_size(inputs), quiet=quiet) as update:
        result = run(
            store_location(store),  # made once the options and inputs are checked
            paths,
            source=source,
            tz=tz,
            strict=strict,
            rules=_rules(rules, local_domains=local_domains),
            progress=update,
            wait=wait,
            now=_now(),
        )
    _echo_summaries(result.files, all_of_them=False)
    failed = run_failed(result.files)
    if failed or not quiet:
        typer.echo(_ingest_line(result), err=True)
    if failed:
        raise typer.Exit(1)


def _report_text(summary: Report, events: pl.LazyFrame, fmt: ReportFormat, *, width: int) -> str:
    """`summary` rendered as `fmt` (a table within `width` columns); the HTML page also
    draws the charts of `events`."""
    from bounce_analyzer.render import render_report

    series = None
    if fmt is ReportFormat.html:
        from bounce_analyzer.series import chart_series

        series = chart_series(
            events, since=summary.since, until=summary.until, direction=summary.direction
        )
    return render_report(summary, fmt, width=width, series=series)


def _with_previous(
    summary: Report, events: pl.LazyFrame, loaded: Rules, *, held: list[date] | None = None
) -> Report:
    """`summary` compared with the previous period of `events` (`report --compare`)."""
    from bounce_analyzer.compare import summarize_previous, with_previous

    previous = summarize_previous(
        events, summary, categories=loaded.categories, blocklists=loaded.blocklists,
        held=held, holder="the input" if held is None else "the store",
    )  # fmt: skip
    return with_previous(summary, previous)


@app.command()
def report(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Report on these inputs directly, without a store.", show_default=False
        ),
    ] = None,
    *,
    since: Annotated[
        str, typer.Option("--since", help="Start of the window: 7d, 24h, 2w or 2026-11-01.")
    ] = "7d",
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="End of the window, exclusive: --since 2026-11-01 --until 2026-11-02 is "
            "1 November (default: now).",
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help=f"Group by any of {', '.join(GROUPABLE)} (comma-separated).",
        ),
    ] = None,
    fmt: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            help="table, markdown, csv, json, or html (one self-contained page with charts: "
            "use -o).",
        ),
    ] = ReportFormat.table,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the report here (whole, by a rename) instead of stdout.",
        ),
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            "--top",
            min=1,
            help="Rows of each table that grows with the data, in every format: the --by "
            "table, the top messages of each category, the recipient and sender domains, the "
            "unclassified texts, the delivery delays, the deferrals resolved, the sending "
            "hosts, the inbound clients and recipients. The totals, the category table, the "
            "advised waits, the daily trend, the hourly traffic, the queue times and the "
            "inbound reasons and transports are always whole.",
        ),
    ] = 10,
    direction: Annotated[
        ReportDirection,
        typer.Option(
            "--direction",
            help="outbound: mail we (or an ESP for us) sent to other servers; inbound: our "
            "server's refusals of other servers and deliveries into our mailboxes, with a "
            "section of their own; all: both, and the internal hops between our programs.",
        ),
    ] = ReportDirection.outbound,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Show each rate beside the previous period's (the window of equal length "
            "before --since) and the change in points.",
        ),
    ] = False,
    store: StoreOption = None,
    source: SourceOption = None,
    tz: TzOption = None,
    rules: RulesOption = None,
    local_domains: LocalDomainsOption = None,
    width: WidthOption = None,
    quiet: QuietOption = False,
) -> None:
    """Summarise bounces by provider and category: counts, rates, top messages, advice.

    Example: bounce-analyzer report --since 7d
    """
    with startup.loading():
        from bounce_analyzer.reading import expand_inputs
        from bounce_analyzer.report import parse_by, summarize
        from bounce_analyzer.writers import printable, refuse_inputs

    start, end = _window(since, until)
    earlier = None  # the previous period's window, with --compare
    if compare:  # (its length needs an end to this one)
        end = end or _now()
        earlier = (previous_start(start, end), start)
    groups = parse_by(by)
    loaded = _rules(rules, local_domains=local_domains)
    if output:
        refuse_inputs({"--output": output}, [item.path for item in expand_inputs(paths or [])])
    columns = _width(width)
    failed = False
    with ExitStack() as outputs:
        # the output is made first: a path that cannot be written fails before any reading
        target = _open_output(outputs, output) if output else None
        if paths:
            from bounce_analyzer.pipeline import run_failed  # (inputs, not the store: parsed)

            with _window_events(
                paths, store=store, since=start, until=end, source=source, tz=tz,
                loaded=loaded, quiet=quiet,
            ) as (events, files, _):  # fmt: skip
                summary = summarize(
                    events, since=start, until=end, by=groups, top=top,
                    malformed=sum(file.malformed for file in files),
                    categories=loaded.categories, blocklists=loaded.blocklists,
                    direction=direction,
                )  # fmt: skip
                if compare:  # the same files: their events of the previous period
                    summary = _with_previous(summary, events, loaded)
                text = _report_text(summary, events, fmt, width=columns)
            _echo_summaries(files, all_of_them=False)
            failed = run_failed(files)
        else:
            from bounce_analyzer.store import open_store, store_location  # lazy: pyarrow

            opened = open_store(store_location(store), create=False)
            with opened.reading() as view:  # a consistent view; a damaged file is named
                # (the rules' direction.toml decides the direction of events of schema 1)
                events = view.scan_events(since=start, until=end, direction=loaded.direction)
                summary = summarize(
                    events, since=start, until=end, by=groups, top=top,
                    malformed=view.count_quarantined(since=start, until=end),
                    categories=loaded.categories, blocklists=loaded.blocklists,
                    held=opened.days(), holder="the store",
                    direction=direction,
                )  # fmt: skip
                if earlier:  # a scan of the previous period's days alone
                    before = view.scan_events(
                        since=earlier[0], until=earlier[1], direction=loaded.direction
                    )
                    summary = _with_previous(summary, before, loaded, held=opened.days())
                text = _report_text(summary, events, fmt, width=columns)  # (reads values too)
        if target is not None:
            target.write(text.encode("utf-8"))
        else:
            typer.echo(text, nl=False)
    if fmt is ReportFormat.csv:  # the other formats show the notes; a CSV holds only its rows
        for note in summary.notes:
            typer.echo(printable(note), err=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def export(
    *,
    output: Annotated[
        str, typer.Option("--output", "-o", help="The file (or folder, with --partition-by).")
    ],
    since: Annotated[str, typer.Option("--since", help="Start: 7d, 24h, 2026-11-01.")] = "7d",
    until: Annotated[str | None, typer.Option("--until", help="End (default: now).")] = None,
    what: Annotated[
        ExportKind,
        typer.Option("--what", help="events (with meaning and solution), daily or suppressions."),
    ] = ExportKind.events,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="parquet or csv (default: from the -o suffix)."),
    ] = None,
    partition_by: Annotated[
        str | None, typer.Option("--partition-by", help="date: a hive-style folder per day.")
    ] = None,
    store: StoreOption = None,
    rules: RulesOption = None,
) -> None:
    """Export stored events, daily aggregates or a suppression list for BI tools.

    Example: bounce-analyzer export --since 30d --what suppressions -o suppressions.csv
    """
    with startup.loading():
        from bounce_analyzer.export import export_events, export_format_for, parse_partition_by
        from bounce_analyzer.store import open_store, store_location  # lazy: pyarrow

    start, end = _window(since, until)
    by_date = parse_partition_by(partition_by)
    opened = open_store(store_location(store), create=False)
    loaded = _rules(rules)
    with opened.reading() as view:  # a consistent view; a damaged file is named
        rows = export_events(
            view.scan_events(since=start, until=end, direction=loaded.direction), Path(output),
            what=what, fmt=export_format_for(output, fmt), partition_by_date=by_date,
            rules=loaded if what is ExportKind.events else None,  # rule text: events only
        )  # fmt: skip
    typer.echo(f"exported {rows:,} rows to {output}", err=True)


@app.command()
def prune(
    *,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Remove days older than this: 90d, 12w.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the days that would go; remove nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm an --older-than of less than a day.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Remove whole days of events (and set-aside records) older than a duration.

    Example: bounce-analyzer prune --older-than 90d
    """
    with startup.loading():
        from bounce_analyzer.store import open_store, store_location  # lazy: pyarrow

    now = _now()
    age = parse_duration(older_than, now=now)
    if age < timedelta(days=1) and not (yes or dry_run):
        raise UsageError(
            f"--older-than {older_than} is less than a day, which prunes nearly the whole "
            "store: add --yes if you mean it (--dry-run lists the days it would remove)"
        )
    opened = open_store(store_location(store), create=False)
    if dry_run:
        days = opened.old_days(age, now=now)
        for day in days:
            typer.echo(f"{day.day}: {day.events:,} events, {day.malformed:,} malformed")
        typer.echo(
            f"would remove {sum(day.events for day in days):,} events ({len(days)} days) "
            f"older than {older_than}; nothing removed (--dry-run)",
            err=True,
        )
        return
    removed = opened.prune(age, now=now)
    typer.echo(f"removed {removed:,} events older than {older_than}", err=True)


store_app = typer.Typer(
    name="store",
    help="Look after the store itself.",
    cls=_PlainGroup,
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(store_app)


@store_app.command("migrate")
def store_migrate(
    source: Annotated[str, typer.Argument(help="The store of version 1 (a folder).")],
    target: Annotated[
        str, typer.Argument(help="The new Delta store: a new folder, or s3://bucket/prefix.")
    ],
    *,
    rules: RulesOption = None,
    local_domains: LocalDomainsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Move a store of the version-1 folder layout into a new Delta store (resumable; the old
    store is only read).

    Example: bounce-analyzer store migrate ~/.local/share/bounce-analyzer/store s3://mail/bounces
    """
    with startup.loading():
        from bounce_analyzer.migrate import migrate_store  # lazy: pyarrow, deltalake

    loaded = _rules(rules, local_domains=local_domains)
    done = migrate_store(
        source,
        target,
        direction=loaded.direction,
        progress=None if quiet else (lambda step: typer.echo(f"migrated {step}", err=True)),
    )
    typer.echo(
        f"migrated {sum(done.events.values()):,} events over {done.days:,} "
        f"{'day' if done.days == 1 else 'days'}, "
        f"{done.malformed:,} set-aside records and {done.catalogue_inputs:,} catalogue inputs "
        f"into {target}; the counts of every day match",
        err=True,
    )


@contextmanager
def _window_events(
    paths: list[str] | None,
    *,
    store: str | None,
    since: datetime | None,
    until: datetime | None,
    source: str | None,
    tz: str | None,
    loaded: Rules,
    quiet: bool,
) -> Iterator[tuple[pl.LazyFrame, list[FileSummary], list[date] | None]]:
    """The events `report` would read, as a scan valid while the block runs: those of `paths`
    (staged in a temporary file), else of the store's days in [since, until); what each
    input gave (nothing, for a store); and the store's days (None for paths), for the note
    on an empty window (`report.summarize`'s `held`)."""
    if paths:
        from bounce_analyzer.ingest import staged_events  # lazy: pyarrow

        with (
            _progress(None, quiet=quiet) as update,
            staged_events(paths, source=source, tz=tz, rules=loaded, progress=update) as (
                events,
                run,
            ),
        ):
            yield events, run.summaries, None
        return
    from bounce_analyzer.store import open_store, store_location  # lazy: pyarrow

    opened = open_store(store_location(store), create=False)
    with opened.reading() as view:  # a consistent view; a damaged file is named
        scan = view.scan_events(since=since, until=until, direction=loaded.direction)
        yield scan, [], opened.days()


InputsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Read these inputs directly, without a store.", show_default=False),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="End of the window, exclusive (default: now)."),
]
ReportDirectionOption = Annotated[
    ReportDirection,
    ReportDirection,
    typer.Option("--direction", help="outbound, inbound or all, as for `report`."),
]


def _rate_option(value: str | None, option: str) -> float | None:
    from bounce_analyzer.check import parse_rate

    return None if value is None else parse_rate(value, name=option)


@app.command()
def check(
    paths: InputsArgument = None,
    *,
    warn: Annotated[
        str | None,
        typer.Option("--warn", help="Warn at this failure rate (final outcomes): 5% or 0.05."),
    ] = None,
    crit: Annotated[
        str | None, typer.Option("--crit", help="Critical at this failure rate: 10% or 0.1.")
    ] = None,
    thresholds: Annotated[
        str | None,
        typer.Option(
            "--thresholds",
            help="A TOML file of thresholds: overall, per provider, per category, blocklists, "
            "a rise against the previous window (docs/MONITORING.md).",
            show_default=False,
        ),
    ] = None,
    min_messages: Annotated[
        int | None,
        typer.Option(
            "--min-messages",
            min=0,
            help="Judge no failure rate of fewer messages than this (default: the file's, "
            "else 20).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str, typer.Option("--since", help="Start of the window: 24h, 7d or 2026-11-01.")
    ] = "24h",
    until: UntilOption = None,
    direction: ReportDirectionOption = ReportDirection.outbound,
    store: StoreOption = None,
    source: SourceOption = None,
    tz: TzOption = None,
    rules: RulesOption = None,
    local_domains: LocalDomainsOption = None,
) -> None:
    """Judge the failure rates against thresholds, for cron and monitoring (a Nagios plugin).

    Exit code 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (no messages in the window, or an error).
    Example: bounce-analyzer check --since 24h --warn 5% --crit 10%
    """
    with startup.loading():
        from bounce_analyzer import check as checking
        from bounce_analyzer.pipeline import run_failed

    limits = checking.load_thresholds(Path(thresholds)) if thresholds else checking.Thresholds()
    limits = limits.with_overall(
        warn=_rate_option(warn, "--warn"),
        crit=_rate_option(crit, "--crit"),
        min_messages=min_messages,
    )
    if limits.is_empty():
        raise UsageError("nothing to check: give --warn and/or --crit, or --thresholds FILE")
    start, end = _window(since, until)
    end = end or _now()
    loaded = _rules(rules, local_domains=local_domains)
    unknown = limits.unknown_names(
        providers=set(loaded.providers["provider"]),
        categories=loaded.category_names(),
        blocklists=set(loaded.blocklists["blocklist"]),
    )
    if unknown:
        raise UsageError(f"{thresholds}: {', '.join(unknown)}: not named in the rules")
    with _window_events(
        paths, store=store, since=checking.first_instant(limits, start, end), until=end,
        source=source, tz=tz, loaded=loaded, quiet=True,
    ) as (events, files, held):  # fmt: skip
        result = checking.check(
            events, limits, since=start, until=end, direction=direction,
            held=held, holder="the input" if held is None else "the store",
        )  # fmt: skip
    if run_failed(files):
        _echo_summaries(files, all_of_them=False)
        if result.status is checking.Status.OK:
            result.status = checking.Status.UNKNOWN
            result.summary += "; an input could not be read whole (see stderr)"
    typer.echo(result.text(), nl=False)
    raise typer.Exit(int(result.status))


@app.command()
def metrics(
    paths: InputsArgument = None,
    *,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here (whole, by a rename, as node_exporter's textfile collector needs) "
            "instead of stdout.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Count from here: 7d, 2026-11-01 (default: every event there is)."
        ),
    ] = None,
    until: UntilOption = None,
    store: StoreOption = None,
    source: SourceOption = None,
    tz: TzOption = None,
    rules: RulesOption = None,
    local_domains: LocalDomainsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Write counts of events as Prometheus text exposition (node_exporter textfile collector).

    Example: bounce-analyzer metrics -o /var/lib/node_exporter/textfile/bounces.prom
    """
    with startup.loading():
        from bounce_analyzer.metrics import known_codes, render_metrics
        from bounce_analyzer.pipeline import run_failed
        from bounce_analyzer.reading import expand_inputs
        from bounce_analyzer.writers import refuse_inputs

    now = _now()
    start = None
    if since is not None:
        start, _ = _window(since, until)
    end = parse_until(until, now=now) if until else now
    loaded = _rules(rules, local_domains=local_domains)
    if output:
        refuse_inputs({"--output": output}, [item.path for item in expand_inputs(paths or [])])
    with ExitStack() as outputs:
        # the output is made first: a path that cannot be written fails before any reading
        stream = _open_output(outputs, output) if output else _stdout()
        with _window_events(
            paths, store=store, since=start, until=end, source=source, tz=tz, loaded=loaded,
            quiet=quiet,
        ) as (events, files, _):  # fmt: skip
            text = render_metrics(
                events, since=start, until=end, codes=known_codes(loaded.codes["enhanced_code"])
            )
        stream.write(text.encode("utf-8"))
        stream.flush()
    _echo_summaries(files, all_of_them=False)
    if run_failed(files):
        raise typer.Exit(1)


@app.command()
def serve(
    *,
    spool: Annotated[
        Path,
        typer.Option(
            "--spool",
            help="The spool folder: every event is written and synced here before the 2xx.",
        ),
    ],
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port.")] = 8025,
    sendgrid_path: Annotated[
        str, typer.Option("--sendgrid-path", help="Where SendGrid's Event Webhook posts.")
    ] = "/webhooks/sendgrid",
    mailgun_path: Annotated[
        str, typer.Option("--mailgun-path", help="Where Mailgun's webhooks post.")
    ] = "/webhooks/mailgun",
    max_body: Annotated[
        str, typer.Option("--max-body", help="The largest body accepted (413 above): 5M, 500k.")
    ] = "5M",
    spool_max: Annotated[
        str,
        typer.Option(
            "--spool-max", help="Refuse events (429, the ESP retries) once the spool holds this."
        ),
    ] = "1G",
    rotate_size: Annotated[
        str, typer.Option("--rotate-size", help="Start a new spool file past this size.")
    ] = "64M",
    rotate_every: Annotated[
        str, typer.Option("--rotate-every", help="Start a new spool file this often (1h, 30m).")
    ] = "1h",
    ingest_every: Annotated[
        str | None,
        typer.Option(
            "--ingest-every",
            help="Move the spool into the store (--store) at start, this often "
            "(30s, 5m, 1h), and at stop; spool files read to their end are then deleted.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    rules: RulesOption = None,
    local_domains: LocalDomainsOption = None,
    insecure_no_verify: Annotated[
        bool,
        typer.Option(
            "--insecure-no-verify",
            help="Start without webhook keys, accepting unsigned posts (for a trial only).",
        ),
    ] = False,
) -> None:
    """Receive SendGrid and Mailgun webhooks: verify, spool to disk, acknowledge.

    Keys come from the environment only: BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY and
    BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY, or their _FILE variants (docs/WEBHOOKS.md).
    Example: bounce-analyzer serve --spool /var/spool/bounce-analyzer --ingest-every 5m
    """
    with startup.loading():
        from bounce_analyzer.store import store_path  # lazy: pyarrow
        from bounce_analyzer.webhooks.server import ServeOptions, parse_interval, parse_size
        from bounce_analyzer.webhooks.server import serve as run_server

    every = None
    if ingest_every is not None:
        every = parse_interval(ingest_every, option="--ingest-every")
    options = ServeOptions(
        spool=spool,
        host=host,
        port=port,
        sendgrid_path=sendgrid_path,
        mailgun_path=mailgun_path,
        max_body=parse_size(max_body, option="--max-body"),
        spool_max=parse_size(spool_max, option="--spool-max"),
        rotate_bytes=parse_size(rotate_size, option="--rotate-size"),
        rotate_s=parse_interval(rotate_every, option="--rotate-every"),
        ingest_every=every,
        store=store_path(store) if every is not None else None,
        rules=_rules(rules, local_domains=local_domains) if every is not None else None,
        insecure_no_verify=insecure_no_verify,
    )
    run_server(options, os.environ)


def _explain_stdin(rules: str | None, direction: Direction) -> None:
    """`explain -`: the answers to the lines of stdin, as JSON lines on stdout."""
    from bounce_analyzer.explain import explain_bytes

    explain_bytes(sys.stdin.buffer, _stdout(), rules=_rules(rules), direction=direction)


def exit_code_after(command: str, error: Exception) -> int:
    """The exit code of `command` stopped by `error`, reported as every command reports it
    (`_reported`); an error that is a bug is raised again, with its traceback. For the quick
    path of `explain -` (`__main__.main`), which runs without this module until it fails."""
    try:
        with _reported(lambda: command):
            raise error
    except typer.Exit as stopped:
        return stopped.exit_code
    raise AssertionError("unreachable: _reported stops every error")  # pragma: no cover


def main() -> None:
    """The command line, parsed (`__main__.main` runs `explain -` and `explain TEXT...`
    without it)."""
    _app_for(sys.argv[1:])(prog_name="bounce-analyzer")


def _app_for(argv: list[str]) -> typer.Typer:
    """`app`, or, where the command line `argv` starts with the name of one of its commands, a
    copy that holds that command alone.

    typer builds every command an app holds before it reads the command line (each option,
    from the function's signature: 0.04 s of CPU at each start for all of them), and a
    command line that starts with a command's name shows and runs that command alone: its
    help, its errors and its usage line are the same either way. Any other (`--help`,
    `--version`, a misspelt name, which the full app answers with its suggestions) gets them
    all."""
    name = argv[0] if argv else None
    commands = [
        command
        for command in app.registered_commands
        if command.callback is not None
        and (command.name or get_command_name(command.callback.__name__)) == name
    ]
    groups = [group for group in app.registered_groups if _group_name(group) == name]
    if not commands and not groups:
        return app
    alone = copy.copy(app)
    alone.registered_commands, alone.registered_groups = commands, groups
    return alone


def _group_name(group: TyperInfo) -> str | None:
    """The name a group of commands (`store`) has on the command line."""
    own = group.name if isinstance(group.name, str) else None
    if own is None and group.typer_instance is not None:
        named = group.typer_instance.info.name
        own = named if isinstance(named, str) else None
    return own


if __name__ == "__main__":  # pragma: no cover
    main()
