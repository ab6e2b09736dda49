"""The command line: options -> one library call -> render -> echo.

Errors the library raises on purpose (`BounceAnalyzerError`) become one `Error: ...` line on
stderr and a non-zero exit code; anything else is a bug and keeps its traceback (without
locals, which hold e-mail addresses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from bounce_analyzer import __version__
from bounce_analyzer.errors import BounceAnalyzerError

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


def main() -> None:
    """Console-script entry point."""
    app(prog_name="bounce-analyzer")


if __name__ == "__main__":  # pragma: no cover
    main()
