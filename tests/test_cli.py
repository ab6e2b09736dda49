"""The command line as a user meets it: exit codes and exact messages."""

from __future__ import annotations

from typer.testing import CliRunner

from bounce_analyzer import __version__
from bounce_analyzer.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"bounce-analyzer {__version__}"


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
