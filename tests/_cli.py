"""The command line as a user meets it, for the tests that go through it."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from bounce_analyzer.cli import app

runner = CliRunner()


def invoke(*args: str, stdin: bytes | None = None) -> Result:
    """`bounce-analyzer *args` (`stdin` on its standard input): what it printed and its exit
    code, never a traceback."""
    result = runner.invoke(app, list(args), input=stdin)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result
