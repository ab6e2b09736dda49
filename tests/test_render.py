"""Golden files: the report over the bundled sample logs, with a fixed clock, in every format.

After an intended change of output, rewrite them with `pytest tests/test_render.py
--update-golden` and review the diff of tests/golden/ before committing.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from bounce_analyzer.ingest import summarize_paths
from bounce_analyzer.render import ReportFormat, render_report
from bounce_analyzer.report import Report, summarize
from bounce_analyzer.schema import EVENT_SCHEMA

GOLDEN = Path(__file__).resolve().parent / "golden"
SINCE = datetime(2026, 11, 20, tzinfo=UTC)

FILES = {
    ReportFormat.table: "report.txt",
    ReportFormat.markdown: "report.md",
    ReportFormat.csv: "report.csv",
    ReportFormat.json: "report.json",
}


#: The fixed `now` of the golden reports, and the sample logs' file date.
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

#: The golden files of the report of every direction (with the inbound section).
ALL_FILES = {
    ReportFormat.table: "report-all.txt",
    ReportFormat.markdown: "report-all.md",
    ReportFormat.json: "report-all.json",
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory, sample_logs_path: Path) -> Path:
    """A copy of sample_logs/ whose files are dated the fixed `now`."""
    folder = tmp_path_factory.mktemp("samples") / "sample_logs"
    shutil.copytree(sample_logs_path, folder)
    for path in folder.rglob("*"):
        # classic syslog stamps take their year from the file's date
        os.utime(path, (NOW.timestamp(), NOW.timestamp()))
    return folder


@pytest.fixture(scope="module")
def sample_report(samples: Path) -> Report:
    """The report on the sample logs (outbound, the default)."""
    report, files = summarize_paths([str(samples)], since=SINCE, until=NOW, tz="UTC")
    assert sum(f.malformed for f in files) == 0
    assert sorted(f.source for f in files if f.source) == [
        "exim", "mailgun", "mailgun", "postfix", "postfix", "postfix", "sendgrid", "sendgrid",
    ]  # fmt: skip
    return report


@pytest.fixture(scope="module")
def sample_logs_path() -> Path:
    return Path(__file__).resolve().parents[1] / "sample_logs"


@pytest.fixture(scope="module")
def all_report(samples: Path) -> Report:
    """The report of every direction on the sample logs, with the inbound section."""
    report, _ = summarize_paths([str(samples)], since=SINCE, until=NOW, tz="UTC", direction="all")
    return report


def _check_golden(text: str, name: str, update_golden: bool) -> None:
    """`text` is the golden file `name`'s (which `--update-golden` rewrites instead)."""
    golden = GOLDEN / name
    if update_golden:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", list(FILES))
def test_report_matches_its_golden_file(
    fmt: ReportFormat, sample_report: Report, update_golden: bool
) -> None:
    _check_golden(render_report(sample_report, fmt), FILES[fmt], update_golden)


@pytest.mark.parametrize("fmt", list(ALL_FILES))
def test_the_report_of_every_direction_matches_its_golden_file(
    fmt: ReportFormat, all_report: Report, update_golden: bool
) -> None:
    _check_golden(render_report(all_report, fmt), ALL_FILES[fmt], update_golden)


def test_table_fits_in_100_columns(sample_report: Report, all_report: Report) -> None:
    lines = render_report(all_report, ReportFormat.table).splitlines()
    assert max(len(line) for line in lines) <= 100
    lines = render_report(sample_report, ReportFormat.table).splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0] == "bounce-analyzer report: 2026-11-20 00:00 UTC to 2026-11-28 12:00 UTC"


def test_json_and_csv_agree(sample_report: Report) -> None:
    document = json.loads(render_report(sample_report, ReportFormat.json))
    csv = pl.read_csv(render_report(sample_report, ReportFormat.csv).encode())
    assert csv.to_dicts() == document["groups"]
    attempts, final = document["totals"]
    assert (attempts["view"], final["view"]) == ("attempts", "final outcomes")
    assert sum(g["messages"] for g in document["groups"]) == final["total"]
    assert sum(g["attempts"] for g in document["groups"]) == attempts["total"]
    assert sum(c["count"] for c in document["categories"]) == (
        attempts["failed"] + attempts["deferred"]
    )


def test_an_empty_report_renders_in_every_format() -> None:
    report = summarize(pl.LazyFrame(schema=EVENT_SCHEMA), since=SINCE)
    # the header, the note that says the window is empty, the empty totals: no list of empty
    # tables (a nightly mail of a quiet day once held fifteen `(none)`)
    table = render_report(report, ReportFormat.table)
    assert table.splitlines()[2:] == [
        "",
        "no events between 2026-11-20 00:00 UTC and now; the input holds none",
        "",
        "Totals (attempts: every try; final outcomes: one per message and recipient)",
        "  (none)",
        "",
        "Malformed records set aside: 0",
    ]
    markdown = render_report(report, ReportFormat.markdown)
    assert [line for line in markdown.splitlines() if line.startswith("#")] == [
        "# bounce-analyzer report: 2026-11-20 00:00 UTC to now",
        "## Totals (attempts: every try; final outcomes: one per message and recipient)",
    ]
    assert markdown.endswith("(none)\n\nMalformed records set aside: 0\n")
    assert render_report(report, ReportFormat.csv) == (
        "provider,messages,delivered,deferred,failed,hard,soft,complained,attempts,deferrals,"
        "failure_rate\n"
    )
    document = json.loads(render_report(report, ReportFormat.json))
    assert (document["groups"], document["categories"], document["daily"]) == ([], [], [])
    assert document["since"] == "2026-11-20T00:00:00+00:00"


def test_printable_escapes_every_control_and_format_character() -> None:
    """C0, DEL, C1, format characters (bidi, zero-width, tags) and line separators become
    visible escapes; other text, wide or accented, stays as it is."""
    from bounce_analyzer.writers import printable, printable_frame

    assert printable("a\x00\t\r\n\x1b[31m\x7f\x85\x9b") == "a\\x00\\t\\r\\n\\x1b[31m\\x7f\\x85\\x9b"
    assert printable("\u202a\u202e\u2066\u2069\u200b\u00ad\ufeff\U000e0041") == (
        "\\u202a\\u202e\\u2066\\u2069\\u200b\\xad\\ufeff\\U000e0041"
    )
    assert printable("\u2028\u2029") == "\\u2028\\u2029"
    assert printable("caf\u00e9 \u65e5\u672c | `x`") == "caf\u00e9 \u65e5\u672c | `x`"
    assert printable("bad\udce9byte") == "bad\\xe9byte"  # a file name that is not UTF-8
    frame = pl.DataFrame({"text": ["ok", None, "x\ny"], "number": [1, 2, 3]})
    assert printable_frame(frame).to_dict(as_series=False) == {
        "text": ["ok", None, "x\\ny"],
        "number": [1, 2, 3],
    }


def test_a_markdown_heading_too_long_gives_its_brackets_a_paragraph(samples: Path) -> None:
    """Every line within 100 characters: the title of a `--by` of three columns was a
    heading of 109."""
    from _cli import invoke

    window = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]
    by = ["--by", "recipient_domain,sender_domain,enhanced_code"]
    result = invoke("report", str(samples), *window, *by, "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    at = lines.index("## By recipient_domain, sender_domain, enhanced_code")
    assert lines[at + 1 : at + 4] == [
        "",
        "(final outcomes; attempts and deferrals count every try)",
        "",
    ]
    assert lines[at + 4].startswith("|recipient domain")
