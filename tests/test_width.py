"""The table fits the terminal (issue 15): `report` and `parse --format table` through the real
command line at 80, 100, 132 and 200 columns, on the bundled sample logs (copied and dated as
the golden-file tests date them).

The width is `--width`, else `$COLUMNS`, else the terminal's; 100 when the output is not a
terminal, 80 at least. `parse --format table` shows each event's whole reply at any width.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from _cli import runner
from _samples import copy_sample_logs
from bounce_analyzer.cli import app
from bounce_analyzer.writers import printable

WINDOW = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]
WIDTHS = [80, 100, 132, 200]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of sample_logs/ whose files are dated 2026-11-28."""
    return copy_sample_logs(tmp_path_factory.mktemp("width"))


def _run(*args: str, columns: str | None = None) -> str:
    """`bounce-analyzer *args` with `$COLUMNS` set (or unset): what it wrote on stdout."""
    result = runner.invoke(app, list(args), env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("direction", ["outbound", "all"])
def test_the_report_table_fits_the_width(samples: Path, width: int, direction: str) -> None:
    """No line is wider than the width, and every table keeps its name column and counts."""
    text = _run("report", str(samples), *WINDOW, "--direction", direction, "--width", str(width))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[0] == "bounce-analyzer report: 2026-11-20 00:00 UTC to 2026-11-28 12:00 UTC"
    by_provider = lines.index(
        "By provider (final outcomes; attempts and deferrals count every try)"
    )
    head = lines[by_provider + 1].split()
    assert head[:3] == ["provider", "messages", "delivered"] and "failed" in head
    first = ["google", "282"] if direction == "outbound" else ["other", "183"]
    assert lines[by_provider + 2].split()[:2] == first


@pytest.mark.parametrize("width", WIDTHS)
def test_a_by_table_of_four_text_columns_fits_too(samples: Path, width: int) -> None:
    """Four text columns (a client's host and IP, the reason, the list) leave too little room
    for the counts at 80: the widest text columns are cut (marked …), the counts stay."""
    by = "client_host,client_ip,reject_reason,blocklist"
    text = _run("report", str(samples), *WINDOW, "--direction", "all", "--by", by,
                "--width", str(width))  # fmt: skip
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    head = next(line for line in lines if line.startswith("  client host"))
    assert {"messages", "failed", "fail", "%"} <= set(head.split())
    rows = lines[lines.index(head) + 1 :]
    assert any("…" in row for row in rows[:10]) == (width < 132)


def test_narrow_tables_say_which_columns_they_left_out(samples: Path) -> None:
    """At 80 columns the --by table leaves out its least useful columns and says so; at 132
    it shows them all, as the JSON report has them."""
    narrow = _run("report", str(samples), *WINDOW, "--width", "80").splitlines()
    wide = _run("report", str(samples), *WINDOW, "--width", "132").splitlines()
    title = "By provider (final outcomes; attempts and deferrals count every try)"
    assert "complained" not in narrow[narrow.index(title) + 1]
    assert "  (left out at 80 columns: complained, deferrals; --width 94 shows them)" in narrow
    assert wide[wide.index(title) + 1].split() == [
        "provider", "messages", "delivered", "failed", "hard", "soft", "complained", "fail",
        "%", "attempts", "deferrals",
    ]  # fmt: skip
    assert not any(line.lstrip().startswith("(left out") for line in wide)


def test_columns_sets_the_width_and_80_is_the_least(samples: Path) -> None:
    """`$COLUMNS` (as a shell exports it) chooses the width where `--width` is not given;
    `--width` wins over it; under 80 the table is drawn at 80; a pipe without either gets
    100 (the golden files' width)."""
    at_132 = _run("report", str(samples), *WINDOW, columns="132")
    assert at_132 == _run("report", str(samples), *WINDOW, "--width", "132")
    assert max(map(len, at_132.splitlines())) > 100
    assert _run("report", str(samples), *WINDOW, "--width", "80", columns="132") == _run(
        "report", str(samples), *WINDOW, "--width", "80"
    )
    assert _run("report", str(samples), *WINDOW, columns="40") == _run(
        "report", str(samples), *WINDOW, "--width", "80"
    )
    piped = _run("report", str(samples), *WINDOW)
    assert piped == _run("report", str(samples), *WINDOW, "--width", "100")


def _events(samples: Path) -> list[dict[str, object]]:
    text = _run("parse", str(samples), "--tz", "UTC", "--quiet", "--format", "jsonl")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("width", WIDTHS)
def test_parse_table_shows_the_whole_reply_at_any_width(samples: Path, width: int) -> None:
    """Every line fits; every event's whole diagnostic is there, wrapped under its row (the
    wrapped lines hold every character of it, in order), and its recipient too."""
    text = _run("parse", str(samples), "--tz", "UTC", "--quiet", "--format", "table",
                "--width", str(width))  # fmt: skip
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[:2] == [lines[0], "    diagnostic"] and lines[0].split()[0] == "timestamp"
    events = _events(samples)
    rows = [i for i, line in enumerate(lines) if line[:4].isdigit()]
    assert len(rows) == len(events)
    for start, end, event in zip(rows, [*rows[1:], len(lines)], events, strict=True):
        under = [line.removeprefix("    ") for line in lines[start + 1 : end]]
        assert all(line.startswith("    ") for line in lines[start + 1 : end])
        recipient = printable(str(event["recipient"] or ""))
        if recipient and not lines[start].endswith(recipient):
            assert under.pop(0) == recipient  # too long for the row: a line of its own
        diagnostic = printable(str(event["diagnostic"] or ""))  # a newline shows as \n
        assert "".join("".join(under).split()) == "".join(diagnostic.split())


# --- Markdown: the report the README mails ------------------------------------------------------


def _blocks(tokens: list[Token], kind: str) -> list[list[Token]]:
    """The tokens of each `kind` block (`table`, `bullet_list`), opening to closing."""
    blocks: list[list[Token]] = []
    for token in tokens:
        if token.type == f"{kind}_open" and token.level == 0:
            blocks.append([])
        if blocks and (blocks[-1] == [] or blocks[-1][-1].type != f"{kind}_close"):
            blocks[-1].append(token)
    return blocks


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("direction", ["outbound", "all"])
def test_markdown_mails_well(samples: Path, direction: str) -> None:
    """Every line within 100 characters; the tables' pipes line up in monospace and parse as
    GitHub-flavoured Markdown tables with the JSON report's figures; each category's advice and
    its top messages, whole, as the JSON report has them."""
    args = [str(samples), *WINDOW, "--direction", direction, "--top", "100"]
    text = _run("report", *args, "--format", "markdown")
    document = json.loads(_run("report", *args, "--format", "json"))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    # monospace: in each table, every line has its pipes in the same columns
    tables: list[list[str]] = []
    for previous, line in zip(["", *lines], lines, strict=False):
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
    assert len(tables) >= 8
    for table in tables:
        pipes = {tuple(i for i, c in enumerate(line) if c == "|" and line[i - 1] != "\\")
                 for line in table}  # fmt: skip
        assert len(pipes) == 1, table
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    parsed = _blocks(tokens, "table")
    assert len(parsed) == len(tables)
    # the --by table: a header row, then a row per provider with its figures
    cells = [
        [t.content for t in row if t.type == "inline"]
        for row in _split_rows(next(t for t in parsed if _header(t)[0] == "provider"))
    ]
    assert cells[0][:3] == ["provider", "messages", "delivered"]
    assert [(row[0], int(row[1]), int(row[3])) for row in cells[1:]] == [
        (g["provider"], g["messages"], g["failed"]) for g in document["groups"]
    ]
    # each category's advice, then its top messages whole
    starts = [i for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h3"]
    shown = [c for c in document["categories"] if c["top_messages"]]
    assert len(starts) == len(shown)
    for start, end in zip(starts, [*starts[1:], len(tokens)], strict=True):
        name = tokens[start + 1].content  # "user_unknown", or "user_unknown (inbound)"
        category, _, named = name.partition(" (")
        key = (category, named.rstrip(")") or direction)
        row = next(c for c in shown if (c["category"], c["direction"]) == key)
        assert _words(tokens[start + 4].content) == _words(f"Advice: {row['advice']}")
        items = [
            _words(child.content)
            for t in tokens[start:end]
            if t.type == "inline" and t.children and t.level > 1  # in the list
            for child in t.children
            if child.type == "code_inline"
        ]
        assert items == [_words(m["message"]).replace("`", "'") for m in row["top_messages"]]


def _header(table: list[Token]) -> list[str]:
    return [t.content for t in _split_rows(table)[0] if t.type == "inline"]


def _split_rows(table: list[Token]) -> list[list[Token]]:
    rows: list[list[Token]] = []
    for token in table:
        if token.type == "tr_open":
            rows.append([])
        elif rows:
            rows[-1].append(token)
    return rows
