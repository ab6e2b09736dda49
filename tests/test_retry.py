"""retry_after: the wait a server asks for in its own words, in seconds (docs/SCHEMA.md).

The texts are those of tests/data/retry (its README gives each line's origin) and phrasings
of the same families; each goes through the real commands (`parse`, `explain`) as well as the
expression, so that the column is what a user sees.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from _cli import invoke
from bounce_analyzer.retry import retry_after, retry_after_of

DATA = Path(__file__).resolve().parent / "data" / "retry"
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()

#: A text and the wait it asks for (None: it asks for none, or says no figure).
TEXTS = [
    # GMX, real (tests/data/retry/mainlog)
    ("450 4.3.2 Too many mails (mail bomb), try again in 1 hour(s) 25 minute(s) and see "
     "( http://portal.gmx.net/serverrules ) {mx-us011}", 5100),
    # NetEase, real (tests/data/retry/mail.log): the figure glued to its unit
    ("451 DT:SPM 163 mx40,WsCowAAnEhlCoEVa5GjcAA--.20089S3 1514512452, please try again 15min "
     "later", 900),
    ("450 4.2.0 <ann@example.org>: Recipient address rejected: Greylisted for 300 seconds", 300),
    ("451 4.7.1 Sending rate exceeded for this client, please retry in 60 s", 60),
    ("421 4.7.0 Too many connections from your host, try again after 300 seconds", 300),
    ("421 4.7.0 Rate limited, please try again in 5 minutes", 300),
    ("451 4.7.1 Please wait 30 sec before sending more messages", 30),
    ("451 Throttled for 2 hours and 30 minutes", 9000),
    ("450 4.7.1 Try again in 1.5 hours", 5400),
    ("421 4.7.0 IP blocked for 1 day", 86400),
    # no figure: no wait
    ("452 4.7.1 Try again later", None),
    ("451 4.7.1 Greylisting in action, please come back later", None),
    ("421 4.7.0 Try again later, closing connection.", None),
    # a figure that is not a wait
    ("554 4.4.7 Message expired: unable to deliver in 840 minutes.", None),
    ("The server will retry delivery for 2 days", None),
    ("retry timeout exceeded", None),
    ("451 4.3.0 Message delayed for 4 hours", None),
    ("550 5.1.1 The email account that you tried to reach does not exist", None),
    (None, None),
]  # fmt: skip


@pytest.mark.parametrize(("text", "wait"), TEXTS)
def test_retry_after(text: str | None, wait: int | None) -> None:
    column = pl.Series([text], dtype=pl.String)
    assert pl.select(retry_after(pl.lit(column))).item() == wait
    assert retry_after_of(column).to_list() == [wait]


def test_distinct_texts_are_read_once_and_spread_back_in_order() -> None:
    texts = [TEXTS[0][0], None, TEXTS[2][0], TEXTS[0][0], TEXTS[10][0]]
    waits = retry_after_of(pl.Series(texts, dtype=pl.String))
    assert waits.dtype == pl.Int32
    assert waits.to_list() == [5100, None, 300, 5100, None]


#: The waits of tests/data/retry, by line (its README says why).
WAITS = {
    "mail.log:1": 900,
    "mail.log:2": None,
    "mail.log:3": None,
    "mail.log:4": 300,
    "mail.log:5": 60,
    "mail.log:6": 300,
    "mainlog:1": 5100,
}


@pytest.fixture
def logs(tmp_path: Path) -> list[str]:
    """The logs of tests/data/retry, dated as its README says."""
    paths = []
    for name in ("mail.log", "mainlog"):
        path = tmp_path / name
        path.write_bytes((DATA / name).read_bytes())
        os.utime(path, (MTIME, MTIME))
        paths.append(str(path))
    return paths


def _by_line(origins: list[str], waits: list[int | None]) -> dict[str, int | None]:
    return {origin.rsplit("/", 1)[-1]: wait for origin, wait in zip(origins, waits, strict=True)}


def test_parse_gives_each_event_its_wait(logs: list[str]) -> None:
    result = invoke("parse", *logs, "--tz", "UTC", "--format", "jsonl", "--quiet")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert _by_line([e["origin"] for e in events], [e["retry_after"] for e in events]) == WAITS


def test_the_store_keeps_the_wait_and_export_gives_it(logs: list[str], tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    assert invoke("ingest", *logs, "--store", store, "--tz", "UTC", "--quiet").exit_code == 0
    output = tmp_path / "events.csv"
    args = ("--store", store, "--since", "2026-11-28", "--until", "2026-11-29", "-o", str(output))
    assert invoke("export", *args).exit_code == 0
    exported = pl.read_csv(output)
    assert exported.schema["retry_after"].is_integer()
    assert _by_line(exported["origin"].to_list(), exported["retry_after"].to_list()) == WAITS


def test_explain_says_the_wait() -> None:
    text = TEXTS[0][0]
    assert text is not None
    shown = invoke("explain", text)
    assert shown.exit_code == 0, shown.output
    assert "retry after:  5100 s (1 h 25 min)\n" in shown.stdout
    as_json = invoke("explain", "--json", text)
    assert json.loads(as_json.stdout)["retry_after"] == 5100
    later = invoke("explain", "452 4.7.1 Try again later")
    assert "retry after" not in later.stdout


def test_explain_stream_says_the_wait() -> None:
    from typer.testing import CliRunner

    from bounce_analyzer.cli import app

    lines = "451 4.7.1 Greylisted for 300 seconds\n452 4.7.1 Try again later\n"
    result = CliRunner().invoke(app, ["explain", "-"], input=lines)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["retry_after"] for line in result.stdout.splitlines()] == [300, None]
