"""The command line: options -> one library call -> render -> echo.

Errors the library raises on purpose (`BounceAnalyzerError`) become one `Error: ...` line on
stderr and a non-zero exit code; anything else is a bug and keeps its traceback (without
locals, which hold e-mail addresses).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import typer

from bounce_analyzer import __version__
from bounce_analyzer.errors import BounceAnalyzerError, UsageError
from bounce_analyzer.pipeline import FileSummary, ParseRun
from bounce_analyzer.schema import EVENT_SCHEMA
from bounce_analyzer.writers import EventFormat, EventWriter

app = typer.Typer(
    name="bounce-analyzer",
    help="Why does your mail bounce? Classify Postfix, Exim, SendGrid and Mailgun failures.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

T = TypeVar("T")


def _fail(error: BounceAnalyzerError) -> typer.Exit:
    typer.echo(f"Error: {error}", err=True)
    return typer.Exit(error.exit_code)


def _run(call: Callable[[], T]) -> T:
    """Run a library call; turn its errors into `Error: ...` and an exit code."""
    try:
        return call()
    except BounceAnalyzerError as error:
        raise _fail(error) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bounce-analyzer {__version__}")
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


@app.command()
def explain(
    text: Annotated[
        list[str] | None,
        typer.Argument(
            help="A diagnostic message or a bare code (550, 5.7.26, 0x800CCC0F); "
            "`-` reads one per line from stdin and writes JSON lines.",
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
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON instead of text.")] = False,
    rules: RulesOption = None,
) -> None:
    """Explain a bounce message: category, hard/soft, provider, the rule and what to do.

    Example: bounce-analyzer explain "550-5.1.1 The email account that you tried to reach
    does not exist"
    """
    from bounce_analyzer import explain as explaining

    words = text or []
    if words == ["-"]:
        try:
            for chunk in explaining.explain_stream(sys.stdin, rules_dir=rules):
                sys.stdout.write(chunk)
        except BounceAnalyzerError as error:
            raise _fail(error) from None
        return
    if not words and code is None and enhanced is None:
        raise _fail(UsageError("give a message or a code to explain, or `-` for stdin"))
    result = _run(
        lambda: explaining.explain_one(
            " ".join(words),
            smtp_code=code,
            enhanced_code=enhanced,
            provider=provider,
            recipient=recipient,
            relay_host=relay_host,
            rules_dir=rules,
        )
    )
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        typer.echo(explaining.render_explanation(result), nl=False)


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
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _progress(total: int | None, *, quiet: bool) -> tuple[Callable[[int], None] | None, Any]:
    """A tqdm byte counter on stderr when it is a terminal, else nothing."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, leave=False)
    return bar.update, bar


def _format_for(output: str | None, fmt: str | None) -> EventFormat:
    if fmt is not None:
        return EventFormat(fmt)
    suffix = Path(output).suffix.lower() if output else ""
    by_suffix = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    return EventFormat(by_suffix.get(suffix, "jsonl"))


def _summary_line(summary: FileSummary) -> str:
    if summary.source is None:
        return f"{summary.path}: format not recognised (name it with --source); nothing read"
    text = (
        f"{summary.path}: {summary.source}, {summary.read:,} read, {summary.events:,} events, "
        f"{summary.skipped:,} skipped, {summary.malformed:,} malformed"
    )
    if summary.damage:
        text += f"; PARTIAL: {summary.damage}"
    return text


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
    rules: RulesOption = None,
    quiet: QuietOption = False,
) -> None:
    """Read logs or ESP events and write one classified event per recipient and attempt.

    Example: bounce-analyzer parse /var/log/mail.log --format csv -o bounces.csv
    """
    event_format = _run(lambda: _format_for(output, fmt))
    run = _run(lambda: ParseRun(paths, source=source, tz=tz, strict=strict, rules_dir=rules))
    update, bar = _progress(run.total_bytes(), quiet=quiet)
    run.progress = update
    stream = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
    writer = EventWriter(stream, event_format)
    try:
        for chunk in _run(lambda: iter(run)):
            writer.write(chunk.events)
        writer.close(empty=pl.DataFrame(schema=EVENT_SCHEMA))
    except BounceAnalyzerError as error:
        raise _fail(error) from None
    finally:
        if bar is not None:
            bar.close()
        if output:
            stream.close()
    for summary in run.summaries:
        typer.echo(_summary_line(summary), err=True)
    if any(s.partial or s.source is None for s in run.summaries):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="bounce-analyzer")


if __name__ == "__main__":  # pragma: no cover
    main()
