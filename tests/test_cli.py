"""The command line as a user meets it: exit codes and exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _samples import BOUNCED, BROKEN
from bounce_analyzer import __version__
from bounce_analyzer.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    first, parser = result.output.strip().splitlines()
    assert first == f"bounce-analyzer {__version__}"
    assert parser.startswith("parser: ")


def test_version_says_when_the_environment_forces_the_polars_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOUNCE_ANALYZER_NATIVE", "0")
    result = runner.invoke(app, ["--version"])
    assert result.output.strip().splitlines()[1] == (
        "parser: polars path (BOUNCE_ANALYZER_NATIVE=0)"
    )


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


GMAIL_NO_SUCH_USER = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try "
    "double-checking the recipient's email address for typos or unnecessary spaces."
)


def test_explain_gmail_message_for_a_person() -> None:
    result = runner.invoke(app, ["explain", GMAIL_NO_SUCH_USER, "--recipient", "a@gmail.com"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:6] == [
        "category:     user_unknown",
        "group:        invalid_address",
        "bounce type:  hard, permanent",
        "provider:     google",
        "codes:        550 5.1.1",
        "rule:         gmail:gmail-035",
    ]
    assert lines[6] == "meaning:      The email account that you tried to reach does not exist"


def test_explain_json_has_the_documented_keys() -> None:
    result = runner.invoke(app, ["explain", "--json", "5.7.26"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["enhanced_code"] == "5.7.26"
    assert answer["category"] == "auth_failure"
    assert answer["permanent"] is True
    assert set(answer) >= {
        "input", "smtp_code", "enhanced_code", "category", "category_group", "bounce_type",
        "permanent", "provider", "rule_id", "meaning", "solution",
    }  # fmt: skip


def test_explain_hex_code_from_outlook_table() -> None:
    result = runner.invoke(app, ["explain", "--json", "0x800CCC0F"])
    answer = json.loads(result.output)
    assert answer["hex_code"] == "0x800CCC0F"
    assert answer["rule_id"].startswith("outlook:")
    assert answer["category"] == "network_error"


def test_explain_stdin_writes_one_json_line_per_input_in_order() -> None:
    lines = [
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
        json.dumps({"diagnostic": "452 4.2.2 The email account is over quota",
                    "recipient": "x@gmail.com"}),
        "421",
    ]  # fmt: skip
    result = runner.invoke(app, ["explain", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.splitlines()]
    assert [a["category"] for a in answers] == ["user_unknown", "mailbox_full", "system_error"]
    assert [a["permanent"] for a in answers] == [True, False, False]
    assert answers[1]["provider"] == "google"


def test_explain_stdin_bad_json_names_the_line() -> None:
    result = runner.invoke(app, ["explain", "-"], input='421\n{"diagnostic": \n')
    assert result.exit_code == 2
    assert result.output.strip().endswith('<stdin>:2: not a JSON object: {"diagnostic":')


def test_explain_without_anything_is_a_usage_error() -> None:
    result = runner.invoke(app, ["explain"])
    assert result.exit_code == 2
    assert "Error: give a message or a code to explain, or `-` for stdin" in result.output


def test_explain_with_missing_rules_folder() -> None:
    result = runner.invoke(app, ["explain", "421", "--rules", "/nonexistent/rules"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "/nonexistent/rules" in result.output
    assert "Traceback" not in result.output


def test_parse_missing_file_is_one_line() -> None:
    result = runner.invoke(app, ["parse", "/nonexistent/mail.log"])
    assert result.exit_code == 1
    assert result.output == "Error: /nonexistent/mail.log: no such file or directory\n"


def test_parse_unknown_format_is_one_line(tmp_path: Path) -> None:
    # `report` has a json format; `parse` writes JSON lines: "json" once raised a traceback.
    log = tmp_path / "mail.log"
    log.write_text(BOUNCED)
    result = runner.invoke(app, ["parse", str(log), "--format", "json"])
    assert result.exit_code == 2
    assert result.output == (
        "Error: unknown format 'json': choose one of jsonl, csv, parquet, table\n"
    )


def test_parse_unknown_source() -> None:
    result = runner.invoke(app, ["parse", "--source", "sendmail", "x.log"])
    assert result.exit_code == 2
    assert result.output == (
        "Error: unknown source 'sendmail': choose one of postfix, exim, sendgrid, mailgun\n"
    )


def test_parse_postfix_to_jsonl_with_summary(data_path: Path) -> None:
    log = data_path / "postfix" / "synthetic" / "providers.log"
    result = runner.invoke(app, ["parse", str(log), "--tz", "UTC"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 9
    first = events[0]
    assert (first["recipient"], first["category"], first["provider"], first["sender"]) == (
        "jane.doe@gmail.com", "user_unknown", "google", "news@shop.example.net",
    )  # fmt: skip
    assert first["timestamp"] == "2026-11-27T09:00:01+00:00"
    assert result.stderr == f"{log}: postfix, 16 read, 9 events, 7 skipped, 0 malformed\n"


def test_parse_writes_parquet_that_round_trips(data_path: Path, tmp_path: Path) -> None:
    import polars as pl
    import pyarrow.parquet as pq

    from bounce_analyzer.schema import EVENT_SCHEMA

    out = tmp_path / "events.parquet"
    log = data_path / "exim" / "realistic.log"
    result = runner.invoke(app, ["parse", str(log), "-o", str(out), "--tz", "UTC"])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert dict(frame.schema) == EVENT_SCHEMA
    assert frame.height == 11
    # min/max statistics on the timestamp only, the one column readers select rows by
    group = pq.read_metadata(out).row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert [name for name, chunk in chunks.items() if chunk.is_stats_set] == ["timestamp"]
    stamps = chunks["timestamp"].statistics
    assert (stamps.min, stamps.max) == (frame["timestamp"].min(), frame["timestamp"].max())


def test_parse_csv_neutralizes_formulas(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov 27 10:00:01 mx1 postfix/smtp[2]: 3F2A1B2C3D: to=<a@example.com>, "
        "relay=mx.example.com[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.0.0, "
        'status=bounced (=HYPERLINK("http://evil.example"))\n'
    )
    result = runner.invoke(app, ["parse", str(log), "--format", "csv", "--tz", "UTC"])
    assert result.exit_code == 0, result.output
    assert "'=HYPERLINK" in result.stdout
    assert ",=HYPERLINK" not in result.stdout and ',"=HYPERLINK' not in result.stdout


def test_parse_strict_stops_at_the_first_malformed_line(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(f"{BOUNCED}\n{BROKEN}\n")
    result = runner.invoke(app, ["parse", str(log), "--strict", "--tz", "UTC"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {log}:2: unreadable recipient status line\n"


def test_parse_sets_malformed_lines_aside_with_their_origin(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(f"{BOUNCED}\n{BROKEN}\n")
    aside = tmp_path / "malformed.jsonl"
    result = runner.invoke(app, ["parse", str(log), "--tz", "UTC", "--malformed", str(aside)])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == f"{log}: postfix, 2 read, 1 events, 0 skipped, 1 malformed\n"
    (record,) = [json.loads(line) for line in aside.read_text().splitlines()]
    assert record == {
        "origin": f"{log}:2",
        "reason": "unreadable recipient status line",
        "raw": BROKEN,
    }


def test_parse_truncated_gzip_keeps_what_came_before_and_says_partial(
    tmp_path: Path, sample_logs_path: Path
) -> None:
    import gzip

    whole = gzip.compress((sample_logs_path / "postfix" / "mail.log").read_bytes())
    broken = tmp_path / "mail.log.2.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    result = runner.invoke(app, ["parse", str(broken), "--tz", "UTC"])
    assert result.exit_code == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) > 10
    assert all(e["origin"].startswith(f"{broken}:") for e in events)
    summary = result.stderr.strip()
    assert summary.startswith(f"{broken}: postfix, ")
    assert summary.endswith(
        f"PARTIAL: {broken}: compressed data ends early (truncated) at byte {len(whole) // 2}"
    )


def test_parse_a_file_of_no_known_format(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\neggs\n")
    result = runner.invoke(app, ["parse", str(notes)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"{notes}: format not recognised (name it with --source); nothing read\n"
    )


def test_every_command_has_help_and_is_in_the_readme(repo_path: Path) -> None:
    readme = (repo_path / "README.md").read_text()
    names = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert sorted(names) == [
        "check",
        "explain",
        "export",
        "ingest",
        "metrics",
        "parse",
        "prune",
        "report",
        "serve",
    ]
    for name in names:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example:" in result.output
        assert f"bounce-analyzer {name}" in readme


def test_parse_reads_compressed_stdin(sample_logs_path: Path) -> None:
    import lzma

    data = lzma.compress((sample_logs_path / "exim" / "mainlog").read_bytes())
    result = runner.invoke(app, ["parse", "-", "--tz", "UTC"], input=data)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["source"] for e in events} == {"exim"}
    assert events[0]["origin"].startswith("<stdin>:")
    assert result.stderr == "<stdin>: exim, 625 read, 258 events, 367 skipped, 0 malformed\n"
