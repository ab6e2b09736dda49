"""Report frames -> text: an aligned table for people, Markdown, CSV and JSON for scripts.

No I/O here: every function returns a string. The JSON and CSV layouts are documented in
docs/REPORTS.md and kept stable.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from dataclasses import replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from bounce_analyzer.compare import distinguish
from bounce_analyzer.delays import failure_rate, informative_hosts
from bounce_analyzer.options import ReportFormat as ReportFormat  # (defined there: see options)
from bounce_analyzer.report import BOUNCE_TYPES, Inbound, Report
from bounce_analyzer.writers import neutralize_formulas, printable, printable_frame

if TYPE_CHECKING:
    from bounce_analyzer.series import Series

REPORT_FORMAT_VERSION = 2


_RATE_COLUMNS = ("failure_rate", "share", "previous_failure_rate", "previous_share")
#: The columns a report compared with the previous period has (`compare.with_previous`): the
#: previous period's figure, and the change (of a rate in points, of attempts in attempts).
_PREVIOUS = ("previous_failure_rate", "previous_share", "previous_attempts")
_CHANGES = ("failure_rate_change", "share_change", "attempts_change")
_HEADINGS = {
    **dict.fromkeys(_PREVIOUS, "prev"),
    **dict.fromkeys(_CHANGES, "change"),
    "failure_rate": "fail %",
    "share": "share",
    "recipient_domain": "recipient domain",
    "sender_domain": "sender domain",
    "category_group": "group",
    "client_host": "client host",
    "client_ip": "client IP",
    "reject_reason": "reason",
    "rule_id": "rule",
    "median_wait_s": "median wait s",
    "max_wait_s": "max wait s",
}

#: How the header names the events of each direction that a report leaves out (one, several),
#: and the `--direction` that shows them.
_LEFT_OUT = {
    "outbound": ("outbound event", "outbound events", "outbound"),
    "inbound": ("inbound reject or delivery", "inbound rejects and deliveries", "inbound"),
    "internal": ("internal hop", "internal hops", "all"),
    "unknown": ("event of no direction", "events of no direction", "all"),
}


#: Hosts a log may not name (Exim's mainlog names no sending host, postscreen no client
#: host): `-` for none, where an empty cell would read as a row cut short.
_NAMELESS = ("host", "client_host")


def _cell(value: Any, column: str) -> str:
    if value is None:
        dashed = (*_RATE_COLUMNS, *_PREVIOUS, *_CHANGES, *DURATION_COLUMNS, *_NAMELESS)
        return "-" if column in dashed else ""
    if column in DURATION_COLUMNS:
        return duration(value)
    if column == "attempts_change":
        return f"{value:+,}"
    if column in _CHANGES:
        points = round(100 * value, 1)
        return f"{points:+.1f} pt" if points else "0.0 pt"  # (not -0.0, nor +0.0)
    if column in _RATE_COLUMNS:
        return f"{100 * value:.1f}%"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"  # (27,828: as the top messages' counts)
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


#: The columns a narrow table leaves out first, least useful first: each has its figure
#: elsewhere (attempts and deferrals in the totals, hard and soft sum to failed, the group in
#: the category's name) or matters less than the columns kept (failed, the rate, the name).
_LEAST_USEFUL = (
    "complained", "deferrals", "attempts", "providers", "category_group", "rule_id", "hard",
    "soft", "deferred", "delivered", "direction", "share",
)  # fmt: skip

#: The narrowest a cut text column gets.
_NARROWEST_TEXT = 12


def _text_table(frame: pl.DataFrame, *, width: int = 100, indent: str = "  ") -> list[str]:
    """Align a frame's cells; numbers right, text left; within `width` columns. A table too
    wide leaves out its least useful columns (`_LEAST_USEFUL`, said under it), then cuts its
    widest text columns with `…` (cells that the cut would make alike are told apart:
    `compare.distinguish`), then leaves out its last columns."""
    columns = frame.columns
    heads = {c: _HEADINGS.get(c, c.replace("_", " ")) for c in columns}
    cells = {c: [_cell(v, c) for v in frame.get_column(c)] for c in columns}
    widths = {c: max([len(heads[c]), *map(len, cells[c])]) for c in columns}

    def needed(shown: list[str]) -> int:
        return len(indent) + sum(widths[c] for c in shown) + 2 * (len(shown) - 1)

    whole = needed(columns)
    shown = list(columns)
    for column in _LEAST_USEFUL:
        if needed(shown) <= width:
            break
        if column in shown and len(shown) > 2:
            shown.remove(column)
    while needed(shown) > width:
        # cut the widest text column that can still give room; failing that, leave out the
        # last column (never the first two: the name and its first figure)
        floors = {c: max(len(heads[c]), _NARROWEST_TEXT) for c in shown}
        cuttable = [c for c in shown if not frame.schema[c].is_numeric() and widths[c] > floors[c]]
        if cuttable:
            widest = max(cuttable, key=lambda c: widths[c])
            widths[widest] = max(floors[widest], widths[widest] - (needed(shown) - width))
        elif len(shown) > 2:
            shown.pop()
        else:
            break
    for column in shown:
        if any(len(cell) > widths[column] for cell in cells[column]):
            # cells the cut would make alike (texts that differ past it) are told apart
            cells[column] = distinguish(cells[column], widths[column])

    def fmt(row: list[str]) -> str:
        parts = []
        for column, cell in zip(shown, row, strict=True):
            size = widths[column]
            numeric = frame.schema[column].is_numeric()
            parts.append(cell.rjust(size) if numeric else cell.ljust(size))
        return (indent + "  ".join(parts)).rstrip()

    out = [fmt([heads[c] for c in shown])]
    out.extend(fmt([cells[c][i] for c in shown]) for i in range(frame.height))
    left_out = [heads[c] for c in columns if c not in shown]
    if left_out:
        note = f"(left out at {width} columns: {', '.join(left_out)}; --width {whole} shows them)"
        out.append(_wrap(note, width=width, indent=indent))
    return out


def _direction(report: Report) -> str:
    """The header's second line: which mail the report shows, and what it left out."""
    counts = report.directions
    if report.direction == "all":
        held = [f"{counts[name]:,} {name}" for name in _LEFT_OUT if counts.get(name)]
        return f"all mail: {', '.join(held) if held else 'no'} events"
    left_out = [
        f"{count:,} {one if count == 1 else several}, --direction {option}"
        for name, (one, several, option) in _LEFT_OUT.items()
        if name != report.direction and (count := counts.get(name, 0))
    ]
    shown = f"{report.direction} mail"
    return f"{shown} (not counted: {'; '.join(left_out)})" if left_out else shown


def _window(report: Report) -> str:
    def stamp(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "the beginning"

    end = report.until.strftime("%Y-%m-%d %H:%M UTC") if report.until else "now"
    return f"{stamp(report.since)} to {end}"


#: The line under the totals that says what hard and soft mean (the same in every view).
_BOUNCE_TYPES = f"hard = {BOUNCE_TYPES['hard']}; soft = {BOUNCE_TYPES['soft']}."


def _is_empty(report: Report) -> bool:
    """Whether the window holds no event of the direction shown: the report is then its
    header, its notes (which say so, and what there is) and the empty totals, not a list of
    empty tables."""
    return bool(report.totals.get_column("total").sum() == 0)


def _sections(report: Report) -> list[tuple[str, pl.DataFrame, str | None]]:
    """(title, table, the key of `Report.omitted` when `--top` cuts the table); the totals
    alone for an empty report (`_is_empty`)."""
    by = ", ".join(report.by)
    directed = ["direction"] if report.direction == "all" else []
    inbound = [] if report.inbound is None else _inbound_sections(report.inbound)
    totals: tuple[str, pl.DataFrame, str | None] = (
        "Totals (attempts: every try; final outcomes: one per message and recipient)",
        report.totals.select(
            "view", pl.col("total").alias("events"), "delivered", "deferred", "failed",
            "hard", "soft", "complained", "failure_rate", *_compared(report.totals),
        ),
        None,
    )  # fmt: skip
    if _is_empty(report):
        return [totals]
    return [
        totals,
        (f"By {by} (final outcomes; attempts and deferrals count every try)",
         report.groups.select(
             *report.by, "messages", "delivered", "failed", "hard", "soft", "complained",
             "failure_rate", *_compared(report.groups), "attempts", "deferrals",
         ), "groups"),
        ("Failure categories (attempts: bounces and deferrals; hard and soft split the failed)",
         report.categories.select(
             "category", "category_group", *directed, "count", "share",
             *_compared(report.categories), "failed", "deferred", "hard", "soft",
         ), None),
        ("Advised waits (seconds the replies asked us to wait: failed and deferred attempts)",
         report.waits, None),
        ("Daily trend (attempts by UTC day)", _daily(report.daily), None),
        *_delay_sections(report),
        ("Top recipient domains (final outcomes)",
         report.recipient_domains.select(
             "recipient_domain", "messages", "delivered", "failed", "hard", "soft", "failure_rate",
             *_compared(report.recipient_domains),
         ), "recipient_domains"),
        ("Top sender domains (final outcomes)",
         report.sender_domains.select(
             "sender_domain", "messages", "delivered", "failed", "hard", "soft", "failure_rate",
             *_compared(report.sender_domains),
         ), "sender_domains"),
        ("Blocks by list (failures and deferrals whose reply names a blocklist; attempts)",
         report.blocklists.select(
             *directed, "blocklist", "attempts", *_compared(report.blocklists), "failed",
             "deferred", "providers", "lookup",
         ), None),
        (UNCLASSIFIED_TITLE, _unclassified_table(report.unclassified), "unclassified"),
        *inbound,
    ]  # fmt: skip


def _daily(daily: pl.DataFrame) -> pl.DataFrame:
    """The daily trend as the hourly traffic shows its hours: with each day's attempts and
    failure rate, so that days of unequal volume compare."""
    outcomes = ["delivered", "deferred", "failed", "complained"]
    return daily.with_columns(attempts=pl.sum_horizontal(outcomes)).select(
        "date", "attempts", *outcomes, failure_rate()
    )


#: The columns that hold seconds, shown as a duration (`duration`) to people, as numbers in
#: JSON.
DURATION_COLUMNS = frozenset(
    {"median_delay_s", "p95_delay_s", "max_delay_s", "median_to_delivery_s",
     "p95_to_delivery_s", "median_to_failure_s"}
)  # fmt: skip

_HEADINGS |= {
    "median_delay_s": "median",
    "p95_delay_s": "p95",
    "max_delay_s": "max",
    "median_to_delivery_s": "to delivery",
    "p95_to_delivery_s": "p95",
    "median_to_failure_s": "to failure",
    "queue_time": "queue time",
}


def duration(seconds: float) -> str:
    """Seconds as a person reads them: `0.4s`, `4.2s`, `42s`, `3m10s`, `2h05m`, `1d03h`."""
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3_600:
        return f"{whole // 60}m{whole % 60:02d}s"
    minutes = round(seconds / 60)
    if minutes < 1_440:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    hours = round(seconds / 3_600)
    return f"{hours // 24}d{hours % 24:02d}h"


#: What the delay sections count, in their titles: only Postfix and Exim log a delay, so a
#: provider has fewer deliveries there than in the `--by` table when an ESP sent for us too.
_DELAY_IS = "from our receipt; deliveries that log it: Postfix delay=, Exim QT="


def _delay_sections(report: Report) -> list[tuple[str, pl.DataFrame, str | None]]:
    """The delays, hourly traffic and sending hosts (`Report.delays`): (title, table, key).

    The text forms show only the hours with traffic (the JSON has all 24), and the sending
    hosts only when they say something (`delays.informative_hosts`)."""
    tables = report.delays
    hosts = printable_frame(tables.sending_hosts)
    sections: list[tuple[str, pl.DataFrame, str | None]] = [
        ("Hourly traffic (attempts by hour of the day, UTC; hours with traffic)",
         tables.hourly.filter(pl.col("attempts") > 0), "hourly"),
        (f"Delivery delay by provider ({_DELAY_IS})",
         printable_frame(tables.provider_delays), "provider_delays"),
        ("Delivery delay by recipient domain (the same)",
         printable_frame(tables.domain_delays), "domain_delays"),
        ("Queue time of delivered attempts (the same deliveries)", tables.queue_times,
         "queue_times"),
        ("Deferrals resolved (recipients deferred at least once; median time from the first "
         "deferral)", printable_frame(tables.resolutions), "resolutions"),
    ]  # fmt: skip
    if informative_hosts(hosts):
        sections.append(
            ("By sending host (attempts; Postfix: syslog host; SendGrid, Mailgun: sending IP; -: "
             "none logged)",
             hosts, "sending_hosts")
        )  # fmt: skip
    return sections


def _compared(frame: pl.DataFrame) -> list[str]:
    """The previous period's figure and the change, in a table compared with it (`--compare`,
    `compare.with_previous`); none in another."""
    return [c for c in frame.columns if c in (*_PREVIOUS, *_CHANGES)]


#: The title of the unclassified texts, in the report and in `explain --unclassified`.
UNCLASSIFIED_TITLE = (
    "Unclassified texts (decided by a code, the default or general words: rules to write)"
)


def _unclassified_table(texts: pl.DataFrame) -> pl.DataFrame:
    return texts.select("count", "provider", "rule_id", "message")


def render_unclassified(
    texts: pl.DataFrame,
    *,
    omitted: int,
    as_json: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    direction: str = "outbound",
    width: int = 100,
) -> str:
    """`explain --unclassified`: the texts that fell to a fallback rule
    (`report.unclassified_texts`), as an aligned table, or as one JSON document with each
    text's example (layout: docs/REPORTS.md)."""
    if as_json:
        document = {
            "format": "bounce-analyzer-unclassified",
            "version": 1,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "direction": direction,
            "texts": _records(texts),
            "omitted": omitted,
        }
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    shown = printable_frame(texts)
    out = [UNCLASSIFIED_TITLE]
    if shown.height == 0:
        out.append("  (none)")
    else:
        out.extend(_text_table(_unclassified_table(shown), width=width))
    if omitted:
        out.append(f"  ... and {omitted:,} more row{'s' if omitted != 1 else ''} (--top)")
    return "\n".join(out) + "\n"


def _inbound_sections(inbound: Inbound) -> list[tuple[str, pl.DataFrame, str | None]]:
    return [
        ("Inbound: our server's rejects by reason (the blocklist the reply names)",
         inbound.rejects, None),
        ("Inbound: clients refused most", inbound.clients, "clients"),
        ("Inbound: local recipients aimed at most (rejected for them, delivered to them)",
         inbound.recipients, "recipients"),
        ("Inbound: deliveries into our mailboxes by transport (attempts)",
         inbound.deliveries, None),
    ]  # fmt: skip


def _more(report: Report, key: str | None) -> str | None:
    """The line under a table that `--top` cut: how many rows it left out."""
    left_out = report.omitted.get(key, 0) if key else 0
    if not left_out:
        return None
    return f"... and {left_out:,} more row{'s' if left_out != 1 else ''} (--top)"


def _printable(report: Report) -> Report:
    """The report with every control and format character of its text escaped (`\x1b`,
    `\u202e`, `\n`): the renderings for people show text from remote servers, webhooks and
    logs, which must not reach a terminal as escape sequences or forge lines."""
    return replace(
        report,
        totals=printable_frame(report.totals),
        groups=printable_frame(report.groups),
        categories=printable_frame(report.categories),
        messages=printable_frame(report.messages),
        daily=printable_frame(report.daily),
        recipient_domains=printable_frame(report.recipient_domains),
        sender_domains=printable_frame(report.sender_domains),
        blocklists=printable_frame(report.blocklists),
        waits=printable_frame(report.waits),
        unclassified=printable_frame(report.unclassified),
        notes=[printable(note) for note in report.notes],
        inbound=None
        if report.inbound is None
        else Inbound(
            rejects=printable_frame(report.inbound.rejects),
            clients=printable_frame(report.inbound.clients),
            recipients=printable_frame(report.inbound.recipients),
            deliveries=printable_frame(report.inbound.deliveries),
        ),
    )


def render_table(report: Report, *, width: int = 100) -> str:
    """The report for a person at a terminal: aligned, plain, within `width` columns."""
    report = _printable(report)
    out = [
        f"bounce-analyzer report: {_window(report)}",
        textwrap.fill(_direction(report), width=width, subsequent_indent="  "),
        "",
    ]
    if report.notes:
        out.extend([*(_wrap(note, width=width, indent="") for note in report.notes), ""])
    for title, frame, key in _sections(report):
        out.append(_wrap(title, width=width, indent=""))
        if frame.height == 0:
            out.extend(["  (none)", ""])
            continue
        out.extend(_text_table(frame, width=width))
        more = _more(report, key)
        if more:
            out.append(f"  {more}")
        if title.startswith("Totals"):
            out.append(_wrap(_BOUNCE_TYPES, width=width, indent="  "))
        out.append("")
        if title.startswith("Failure categories"):
            out.extend(_category_details(report, width=width))
    out.append(f"Malformed records set aside: {report.malformed:,}")
    return "\n".join(out) + "\n"


_MESSAGES_TITLE = "Top messages by category (masked: addresses, ids and numbers as placeholders)"


def _category_details(report: Report, *, width: int) -> list[str]:
    out = [_wrap(_MESSAGES_TITLE, width=width, indent="")]
    advice = _advice(report)
    for (category, direction), group in report.messages.group_by(
        "category", "direction", maintain_order=True
    ):
        out.append(f"  {_category_name(report, category, direction)}")
        if advice.get((category, direction)):
            out.append(
                _wrap(f"advice: {advice[(category, direction)]}", width=width, indent="    ")
            )
        counts, messages = group.get_column("count"), group.get_column("message").to_list()
        room = width - 6 - max(7, *(len(f"{count:,}") for count in counts))  # (indent, count)
        for count, message in zip(counts, distinguish(messages, room), strict=True):
            out.append(f"    {count:>7,}  {message}")
    more = _more(report, "messages")
    if more:
        out.append(f"  {more}")
    out.append("")
    return out


def _advice(report: Report) -> dict[tuple[Any, Any], Any]:
    """Each (category, direction)'s advice, where the report has it."""
    if "advice" not in report.categories.columns:
        return {}
    rows = report.categories.select("category", "direction", "advice").rows()
    return {(category, direction): advice for category, direction, advice in rows}


def _category_name(report: Report, category: Any, direction: Any) -> str:
    """A category as the top messages name it: with its direction in a report of all mail."""
    return f"{category} ({direction})" if report.direction == "all" else str(category)


def _wrap(text: str, *, width: int, indent: str) -> str:
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ")


#: The widest line of the Markdown report: it is mailed, and a plain-text mail reader shows
#: it as it is, in monospace (RFC 5322 asks for lines of 78 characters, and allows 998).
MARKDOWN_WIDTH = 100

#: What starts a block when it begins a line (a list item, a quote, a heading, a fence, a
#: table row, a setext underline, HTML): a wrapped line must not begin with it, or the text
#: it continues would end there.
_BLOCK_START = re.compile(r"[-+*>#=|`~<]|\d{1,9}[.)](?:\s|$)")


def _markdown_lines(text: str, *, width: int = MARKDOWN_WIDTH, indent: str = "") -> list[str]:
    """`text` wrapped at spaces into lines of at most `width` characters, the lines after the
    first indented by `indent` (a list item's continuation). No wrapped line begins with what
    would start another block: the word before it moves down with it. A word longer than a
    line is broken."""
    room = width - len(indent)
    words: list[str] = []
    for word in text.split():
        words.extend(word[i : i + room] for i in range(0, len(word), room))
    lines: list[list[str]] = []
    for word in words:
        line = lines[-1] if lines else None
        if line is not None and len(" ".join([*line, word])) <= room:
            line.append(word)
        elif line is not None and _BLOCK_START.match(word) and len(line) > 1:
            carried = [word]  # with the words before it, until one that starts no block
            while len(line) > 1 and _BLOCK_START.match(carried[0]):
                carried.insert(0, line.pop())
            if len(" ".join(carried)) > room:  # pragma: no cover - long words: the width wins
                lines.extend([w] for w in carried)
            else:
                lines.append(carried)
        else:
            lines.append([word])
    return [(indent if i else "") + " ".join(line) for i, line in enumerate(lines)] or [""]


def _markdown_table(
    frame: pl.DataFrame, *, width: int = MARKDOWN_WIDTH, left_out: tuple[str, ...] = ()
) -> list[str]:
    """A GitHub-flavoured Markdown table whose pipes line up in monospace: each cell padded
    to its column, numbers right-aligned. Wider than `width`, the cells lose the space after
    the pipe before them; still wider (a report compared with the previous period), it leaves
    out its least useful columns (`_LEAST_USEFUL`; `left_out`: those left out so far), said
    in a paragraph under it; still wider, its widest text column is cut with `…`."""
    columns = frame.columns
    numeric = [frame.schema[c].is_numeric() for c in columns]
    heads = [_HEADINGS.get(c, c.replace("_", " ")) for c in columns]
    rows = [
        [_cell(v, c).replace("|", "\\|") for v, c in zip(row, columns, strict=True)]
        for row in frame.rows()
    ]
    widths = [max(3, len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    spare = [c for c in _LEAST_USEFUL if c in columns]
    if sum(widths) + 2 * len(widths) + 1 > width and spare and len(columns) > 2:
        heading = _HEADINGS.get(spare[0], spare[0].replace("_", " "))
        return _markdown_table(frame.drop(spare[0]), width=width, left_out=(*left_out, heading))
    before = " " if sum(widths) + 3 * len(widths) + 1 <= width else ""
    over = sum(widths) + (2 + len(before)) * len(widths) + 1 - width
    text = [i for i, is_number in enumerate(numeric) if not is_number]
    if over > 0 and text:
        widest = max(text, key=lambda i: widths[i])
        widths[widest] = max(len(heads[widest]), widths[widest] - over, _NARROWEST_TEXT)

    def line(cells: list[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            if len(cell) > widths[i]:
                cell = cell[: widths[i] - 1].removesuffix("\\") + "…"
            parts.append(cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]))
        return "|" + "|".join(f"{before}{part} " for part in parts) + "|"

    rule = [("-" * (w - 1) + ":") if n else "-" * w for w, n in zip(widths, numeric, strict=True)]
    table = [line(heads), line(rule), *(line(r) for r in rows)]
    if left_out:
        note = f"(left out at {width} columns: {', '.join(left_out)}; the JSON report has them)"
        table.extend(["", *_markdown_lines(note, width=width)])
    return table


def _markdown_unclassified(texts: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The unclassified texts as a table that numbers them, and the whole texts as a
    numbered list under it: a text is too long for a table cell within the width."""
    table = texts.select("count", "provider", "rule_id").with_columns(
        text=pl.int_range(1, texts.height + 1)  # the number of its text in the list
    )
    listed = [
        line
        for number, message in enumerate(texts.get_column("message"), start=1)
        for line in _markdown_lines(f"{number}. {_code(message)}", indent="   ")
    ]
    return table, listed


def _code(text: str) -> str:
    """`text` as an inline code span (its backquotes made quotes: the span has no escape)."""
    return f"`{text.replace('`', chr(39))}`"


def render_markdown(report: Report) -> str:
    """The report as Markdown (for mail, tickets, wikis and chat): tables that line up in
    monospace, the advice and the top messages whole, every line within `MARKDOWN_WIDTH`."""
    report = _printable(report)
    out = [f"# bounce-analyzer report: {_window(report)}", ""]
    out.extend([*_markdown_lines(_direction(report)), ""])
    for note in report.notes:
        out.extend([*_markdown_lines(note), ""])
    for title, frame, key in _sections(report):
        out.extend(_markdown_heading(title))
        if frame.height == 0:
            out.extend(["(none)", ""])
            continue
        listed: list[str] = []
        if title == UNCLASSIFIED_TITLE:
            frame, listed = _markdown_unclassified(report.unclassified)
        out.extend([*_markdown_table(frame), ""])
        if listed:
            out.extend([*listed, ""])
        more = _more(report, key)
        if more:
            out.extend([more, ""])
        if title.startswith("Totals"):
            out.extend([*_markdown_lines(_BOUNCE_TYPES), ""])
    if not _is_empty(report):
        out.extend(_markdown_messages(report))
    out.append(f"Malformed records set aside: {report.malformed:,}")
    return "\n".join(out) + "\n"


def _markdown_heading(title: str) -> list[str]:
    """A section's heading, and a blank line. A heading is one line, so one too long (a
    `--by` of several columns) keeps its name and gives the words in brackets a paragraph."""
    heading = f"## {title}"
    if len(heading) <= MARKDOWN_WIDTH or " (" not in title:
        return [heading, ""]
    name, said = title.split(" (", 1)
    return [f"## {name}", "", *_markdown_lines(f"({said}"), ""]


def _markdown_messages(report: Report) -> list[str]:
    """The top messages of each category, under its advice, as Markdown."""
    out = [f"## {_MESSAGES_TITLE}", ""]
    advice = _advice(report)
    for (category, direction), group in report.messages.group_by(
        "category", "direction", maintain_order=True
    ):
        out.extend([f"### {_category_name(report, category, direction)}", ""])
        if advice.get((category, direction)):
            out.extend([*_markdown_lines(f"Advice: {advice[(category, direction)]}"), ""])
        for count, message in group.select("count", "message").rows():
            out.extend(_markdown_lines(f"- {count:,} × {_code(message)}", indent="  "))
        out.append("")
    more = _more(report, "messages")
    if more:
        out.extend([more, ""])
    return out


def render_csv(report: Report) -> str:
    """The `--by` table (final outcomes with attempt counts), one row per group."""
    buffer = io.StringIO()
    neutralize_formulas(report.groups).write_csv(buffer)
    return buffer.getvalue()


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in row.items()}
        for row in frame.to_dicts()
    ]


def _previous(previous: Report | None) -> dict[str, Any] | None:
    """The JSON's `previous`: the period a compared report is compared with, and its totals."""
    if previous is None:
        return None
    return {
        "since": previous.since.isoformat() if previous.since else None,
        "until": previous.until.isoformat() if previous.until else None,
        "directions": previous.directions,
        "totals": _records(previous.totals),
    }


def render_json(report: Report) -> str:
    """The whole report as one JSON document (layout: docs/REPORTS.md)."""
    messages = report.messages.group_by("category", "direction", maintain_order=True).agg(
        pl.struct("message", "count", "example").alias("top_messages")
    )
    categories = report.categories.join(
        messages, on=["category", "direction"], how="left", nulls_equal=True
    )
    inbound = None
    if report.inbound is not None:
        inbound = {
            "rejects": _records(report.inbound.rejects),
            "clients": _records(report.inbound.clients),
            "recipients": _records(report.inbound.recipients),
            "deliveries": _records(report.inbound.deliveries),
        }
    document = {
        "format": "bounce-analyzer-report",
        "version": REPORT_FORMAT_VERSION,
        "since": report.since.isoformat() if report.since else None,
        "until": report.until.isoformat() if report.until else None,
        "by": report.by,
        "direction": report.direction,
        "directions": report.directions,
        "notes": report.notes,
        "bounce_types": BOUNCE_TYPES,
        "totals": _records(report.totals),
        "groups": _records(report.groups),
        "categories": _records(categories),
        "daily": _records(report.daily),
        "recipient_domains": _records(report.recipient_domains),
        "sender_domains": _records(report.sender_domains),
        "blocklists": _records(report.blocklists),
        "inbound": inbound,
        "previous": _previous(report.previous),
        "waits": _records(report.waits),
        "unclassified": _records(report.unclassified),
        **{name: _records(frame) for name, frame in _delay_records(report)},
        "omitted": report.omitted,
        "malformed": report.malformed,
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _delay_records(report: Report) -> list[tuple[str, pl.DataFrame]]:
    """The JSON report's keys of `Report.delays`, whole (24 hours, every sending host)."""
    tables = report.delays
    return [
        ("provider_delays", tables.provider_delays),
        ("domain_delays", tables.domain_delays),
        ("queue_times", tables.queue_times),
        ("resolutions", tables.resolutions),
        ("hourly", tables.hourly),
        ("sending_hosts", tables.sending_hosts),
    ]


#: The name (`data-table`) of each HTML table whose section `_sections` gives no key.
_TABLE_NAMES = {
    "Totals": "totals",
    "Failure categories": "categories",
    "Advised waits": "waits",
    "Daily trend": "daily",
    "Blocks by list": "blocklists",
    "Inbound: our server's rejects": "inbound_rejects",
    "Inbound: deliveries": "inbound_deliveries",
}


def render_html(report: Report, series: Series) -> str:
    """The report as one self-contained HTML page with charts (`html.py`), holding the
    tables of the text report."""
    from bounce_analyzer.html import render_html as page  # lazy: matplotlib

    report = _printable(report)
    tables = []
    for title, frame, key in _sections(report):
        name = key or next(n for p, n in _TABLE_NAMES.items() if title.startswith(p))
        more = _BOUNCE_TYPES if name == "totals" else _more(report, key)
        tables.append((title, name, frame, more))
    return page(
        report,
        series,
        header=[f"bounce-analyzer report: {_window(report)}", _direction(report)],
        tables=tables,
        notes=report.notes,
        cell=_cell,
        headings=lambda c: _HEADINGS.get(c, c.replace("_", " ")),
        advice=_advice(report),
        messages_more=_more(report, "messages"),
        footer=f"Malformed records set aside: {report.malformed:,}",
        charts=not _is_empty(report),
    )


def render_report(
    report: Report, fmt: ReportFormat, *, width: int = 100, series: Series | None = None
) -> str:
    """Render in one of the five formats; HTML draws `series` (`series.chart_series`)."""
    if fmt is ReportFormat.html:
        if series is None:
            raise ValueError("the HTML report needs the charts' series")
        return render_html(report, series)
    if fmt is ReportFormat.table:
        return render_table(report, width=width)
    if fmt is ReportFormat.markdown:
        return render_markdown(report)
    if fmt is ReportFormat.csv:
        return render_csv(report)
    return render_json(report)
