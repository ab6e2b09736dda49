"""A `Report` and its `Series` -> one self-contained HTML page with charts. No I/O.

The page needs nothing but itself: the style is inline, the charts are SVG drawn by matplotlib
and written into the page, with text as paths (it looks the same without our fonts), and there
is no script. So it survives being mailed and opened offline, and a mail client that runs no
JavaScript shows it whole. Every text from the logs is escaped (`html.escape`): remote servers
write those texts. The tables are the ones the text report shows (`render.py` hands them
over), with the same numbers; each cell carries its column's name (`data-column`) and each
table its name (`data-table`), for scripts and tests.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import polars as pl

from bounce_analyzer.report import Report
from bounce_analyzer.series import OUTCOMES, Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: One table of the page: its title, its name (`data-table`), its frame, and the line that
#: says how many rows `--top` left out (or None).
Table = tuple[str, str, pl.DataFrame, str | None]

#: The colours of the outcomes (delivered, deferred, failed, complained): told apart by
#: people who do not see red and green apart too (blue, orange, vermilion, purple).
_COLOURS = {
    "delivered": "#0072b2",
    "deferred": "#e69f00",
    "failed": "#d55e00",
    "complained": "#cc79a7",
}
_LINES = ("#0072b2", "#d55e00", "#009e73", "#e69f00", "#cc79a7", "#56b4e9", "#000000")

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#fff;line-height:1.4}
main{max-width:1100px;margin:0 auto;padding:12px}
h1{font-size:1.4em;margin:.4em 0}h2{font-size:1.15em;margin:1.4em 0 .4em}
h3{font-size:1em;margin:.8em 0 .3em}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,480px),1fr));gap:12px;
align-items:start}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
figure svg{display:block;max-width:100%;height:auto}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9em;margin:.2em 0}
th,td{border-bottom:1px solid #e3e3e3;padding:3px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f4f4f4;white-space:nowrap}
td.text{min-width:16em}
.note,.more{color:#555}
.advice{margin:.2em 0 .4em;padding:4px 8px;background:#f2f7fb;border-left:3px solid #0072b2}
code{font-size:.95em;word-break:break-word}
"""


def _table(
    name: str,
    frame: pl.DataFrame,
    *,
    headings: Callable[[str], str],
    cell: Callable[[Any, str], str],
) -> str:
    numeric = [frame.schema[c].is_numeric() for c in frame.columns]
    head = "".join(
        f"<th{' class=n' if n else ''} scope=col>{escape(headings(c))}</th>"
        for c, n in zip(frame.columns, numeric, strict=True)
    )
    rows = []
    for row in frame.rows():
        cells = "".join(
            f'<td class={"n" if n else "text"} data-column="{escape(c)}">{escape(cell(v, c))}</td>'
            for v, c, n in zip(row, frame.columns, numeric, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    body = "\n".join(rows)  # (a row a line: see `_fold`)
    return (
        f'<div class=scroll><table data-table="{escape(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


# --- charts -----------------------------------------------------------------------------------


def _svg(draw: Callable[[Axes], None], title: str, *, height: float = 3.2) -> str:
    """A chart as inline SVG: `draw` fills the axes; the SVG carries `title` for readers."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    settings: dict[str, Any] = {
        "svg.fonttype": "path",  # text as shapes: the same on every machine
        "svg.hashsalt": "bounce-analyzer",  # ids that do not change from run to run
        "font.family": "DejaVu Sans",  # matplotlib's own font, always there
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
    with rc_context(settings):  # type: ignore[arg-type]  # (its keys are typed as literals)
        figure = Figure(figsize=(6.4, height), layout="constrained")
        draw(figure.add_subplot())
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # no XML declaration or doctype inside HTML
    opening = text.index(">") + 1
    return (
        text[:opening].replace("<svg", '<svg role="img"', 1)
        + f"<title>{escape(title)}</title>"
        + text[opening:]
    )


def _nothing(axes: Axes, what: str = "no events in the window") -> None:
    axes.text(0.5, 0.5, what, ha="center", va="center", color="#555")
    axes.set_axis_off()


def _stacked(frame: pl.DataFrame, key: str, labels: list[str]) -> Callable[[Axes], None]:
    def draw(axes: Axes) -> None:
        if not any(frame.get_column(outcome).sum() for outcome in OUTCOMES):  # (24 empty hours)
            _nothing(axes)
            return
        bottom = [0] * frame.height
        positions = list(range(frame.height))
        for outcome in OUTCOMES:
            values = frame.get_column(outcome).to_list()
            if not any(values):
                continue
            axes.bar(positions, values, bottom=bottom, label=outcome, color=_COLOURS[outcome])
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        step = max(1, len(labels) // 12)
        axes.set_xticks(positions[::step], labels[::step], rotation=45 if step == 1 else 0)
        axes.set_xlabel(key)
        axes.set_ylabel("attempts")
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1), frameon=False, ncols=4, fontsize=8)

    return draw


def _rates(frame: pl.DataFrame) -> Callable[[Axes], None]:
    def draw(axes: Axes) -> None:
        if frame.height == 0:
            _nothing(axes)
            return
        days = sorted(set(frame.get_column("date").to_list()))
        for colour, (provider, rows) in zip(
            _LINES * 3, frame.group_by("provider", maintain_order=True), strict=False
        ):
            by_day = dict(zip(rows["date"].to_list(), rows["failure_rate"].to_list(), strict=True))
            axes.plot(
                [d.isoformat()[5:] for d in days],
                [100 * by_day[d] if d in by_day else float("nan") for d in days],
                marker="o",
                label=str(provider[0]),
                color=colour,
            )
        axes.set_ylabel("failed, % of attempts")
        axes.set_ylim(bottom=0)
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1), frameon=False, fontsize=8, ncols=4)
        step = max(1, len(days) // 12)
        axes.set_xticks(range(len(days))[::step])

    return draw


def _categories(frame: pl.DataFrame, *, with_direction: bool) -> Callable[[Axes], None]:
    def draw(axes: Axes) -> None:
        if frame.height == 0:
            _nothing(axes, "no failed or deferred attempts in the window")
            return
        names = [
            f"{category} ({direction})" if with_direction else str(category)
            for category, direction in frame.select("category", "direction").rows()
        ][::-1]
        failed = frame.get_column("failed").to_list()[::-1]
        deferred = frame.get_column("deferred").to_list()[::-1]
        axes.barh(names, failed, color=_COLOURS["failed"], label="failed")
        axes.barh(names, deferred, left=failed, color=_COLOURS["deferred"], label="deferred")
        axes.set_xlabel("attempts")
        axes.legend(loc="lower right", frameon=False, fontsize=8)

    return draw


#: The delay charts' ticks: (seconds, label).
_DELAY_TICKS = (
    (1, "1s"), (10, "10s"), (60, "1m"), (600, "10m"), (3_600, "1h"), (21_600, "6h"),
    (86_400, "1d"), (604_800, "1w"),
)  # fmt: skip


def _delays(frame: pl.DataFrame, key: str) -> Callable[[Axes], None]:
    def draw(axes: Axes) -> None:
        if frame.height == 0:
            _nothing(axes, "no delivered attempt with a delay in the window")
            return
        names = [str(name) for name in frame.get_column(key).to_list()][::-1]
        positions = list(range(len(names)))
        median = frame.get_column("median_delay_s").to_list()[::-1]
        p95 = frame.get_column("p95_delay_s").to_list()[::-1]
        axes.barh([p + 0.2 for p in positions], median, height=0.4, color="#0072b2", label="median")
        axes.barh([p - 0.2 for p in positions], p95, height=0.4, color="#e69f00", label="p95")
        axes.set_yticks(positions, names)
        # a logarithmic scale: a median of seconds beside a p95 of half an hour both show
        axes.set_xscale("log")
        longest = max([1.0, *(value for value in p95 if value is not None)])
        axes.set_xlim(0.1, longest * 2)
        ticks = [(tick, label) for tick, label in _DELAY_TICKS if tick <= longest * 2]
        axes.set_xticks([tick for tick, _ in ticks], [label for _, label in ticks])
        axes.minorticks_off()
        axes.set_xlabel("time from our receipt of the message to its delivery (log scale)")
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1), frameon=False, fontsize=8, ncols=2)

    return draw


def _queue_times(frame: pl.DataFrame) -> Callable[[Axes], None]:
    """The queue-time histogram (`delays.queue_times`): delivered attempts per bucket."""

    def draw(axes: Axes) -> None:
        if frame.height == 0:
            _nothing(axes, "no delivered attempt with a delay in the window")
            return
        names = [str(name) for name in frame.get_column("queue_time").to_list()]
        axes.bar(names, frame.get_column("delivered").to_list(), color=_COLOURS["delivered"])
        axes.set_xlabel("time from our receipt of the message to its delivery")
        axes.set_ylabel("delivered attempts")

    return draw


#: The charts: (name, title). docs/REPORTS.md says what each shows and how to read it.
CHARTS = (
    ("daily", "Daily outcomes (attempts, stacked)"),
    ("provider_rates", "Failure rate per provider over time"),
    ("categories", "Failure categories (failed and deferred attempts)"),
    ("hourly", "Volume by hour of the day (UTC, attempts, stacked)"),
    ("provider_delays", "Delivery delay by provider (median and p95)"),
    ("domain_delays", "Delivery delay by recipient domain (median and p95)"),
    ("queue_times", "Queue time of delivered attempts (histogram)"),
)


def _charts(report: Report, series: Series) -> str:
    daily = report.daily
    # a category of the previous period alone (`--compare`) stays in its table, at zero; it
    # has no bar to draw
    categories = report.categories.filter(pl.col("count") > 0)
    draws = {
        "daily": _stacked(daily, "date", [d.isoformat()[5:] for d in daily["date"].to_list()]),
        "provider_rates": _rates(series.provider_daily),
        "categories": _categories(categories, with_direction=report.direction == "all"),
        "hourly": _stacked(report.delays.hourly, "hour", [str(h) for h in range(24)]),
        "provider_delays": _delays(series.provider_delays, "provider"),
        "domain_delays": _delays(series.domain_delays, "recipient_domain"),
        "queue_times": _queue_times(report.delays.queue_times),
    }
    heights = {"categories": 0.3 * categories.height + 1.2}
    figures = []
    for name, title in CHARTS:
        svg = _svg(draws[name], title, height=max(3.2, heights.get(name, 0)))
        figures.append(
            f'<figure data-chart="{name}"><figcaption>{escape(title)}</figcaption>{svg}</figure>'
        )
    return f"<div class=charts>{''.join(figures)}</div>"


# --- the page ---------------------------------------------------------------------------------


def _messages(report: Report, advice: dict[tuple[Any, Any], Any]) -> str:
    out = []
    for (category, direction), group in report.messages.group_by(
        "category", "direction", maintain_order=True
    ):
        name = f"{category} ({direction})" if report.direction == "all" else str(category)
        out.append(f'<h3 data-category="{escape(str(category))}">{escape(name)}</h3>')
        if advice.get((category, direction)):
            out.append(f"<p class=advice>{escape(str(advice[(category, direction)]))}</p>")
        rows = "\n".join(
            f'<tr><td class=n data-column="count">{count:,}</td>'
            f"<td class=text><code>{escape(message)}</code></td></tr>"
            for count, message in group.select("count", "message").rows()
        )
        out.append(
            '<div class=scroll><table data-table="messages"><thead><tr><th class=n>count</th>'
            f"<th>message (masked)</th></tr></thead><tbody>\n{rows}\n</tbody></table></div>"
        )
    return "\n".join(out)


def render_html(
    report: Report,
    series: Series,
    *,
    header: Sequence[str],
    tables: Sequence[Table],
    notes: Sequence[str] = (),
    cell: Callable[[Any, str], str],
    headings: Callable[[str], str],
    advice: dict[tuple[Any, Any], Any] | None = None,
    messages_more: str | None = None,
    footer: str = "",
    charts: bool = True,
) -> str:
    """The page: `header` (the window and what it shows), the charts, then `tables` as the
    text report has them (each value shown as `cell(value, column)` under the heading
    `headings(column)`), the top messages of each category under `advice`, and `footer`;
    without the charts when `charts` is false.
    `report` and `tables` hold text as the logs wrote it (control characters already made
    printable); it is escaped here."""

    title = escape(header[0])
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # no request may leave the page: nothing to fetch, and nothing allowed to be fetched
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{title}</title><style>{_STYLE}</style></head><body><main>",
        f"<h1>{title}</h1>",
        *(f"<p>{escape(line)}</p>" for line in header[1:]),
        *(f"<p class=note>{escape(note)}</p>" for note in notes),
    ]
    if charts:  # (not for a window without events: seven charts of nothing)
        out.extend(["<h2>Charts</h2>", _charts(report, series)])
    for heading, name, frame, more in tables:
        out.append(f"<h2>{escape(heading)}</h2>")
        if frame.height == 0:
            out.append("<p class=more>(none)</p>")
        else:
            out.append(_table(name, frame, headings=headings, cell=cell))
        if more:
            out.append(f"<p class=more>{escape(more)}</p>")
        if name == "categories":
            out.append("<h2>Top messages by category, with advice</h2>")
            out.append(_messages(report, advice or {}))
            if messages_more:
                out.append(f"<p class=more>{escape(messages_more)}</p>")
    if footer:
        out.append(f"<p class=more>{escape(footer)}</p>")
    out.append("</main></body></html>")
    return _fold("\n".join(out)) + "\n"


#: The longest line of the page, in bytes of UTF-8. A mail's lines may not pass 998 octets
#: (RFC 5322), and an MTA breaks a longer one where it counts to its limit (Postfix's
#: smtp_line_length_limit), in the middle of a tag or a word: the cron line mails the page.
_LONGEST = 998


def _fold(page: str) -> str:
    """`page` with each line longer than `_LONGEST` bytes broken at its last space within
    them (a space and a line break are the same white space in HTML outside `pre`; a table
    row or a path of the charts is a line of its own, so only a message of about a thousand
    characters is broken, between two of its words). A line with no space to break at is
    left whole."""
    lines = []
    for line in page.split("\n"):
        while len(line.encode()) > _LONGEST:
            room = len(line.encode()[:_LONGEST].decode(errors="ignore"))  # (whole characters)
            space = line.rfind(" ", 0, room)
            if space <= 0:
                break
            lines.append(line[:space])
            line = line[space + 1 :]
        lines.append(line)
    return "\n".join(lines)


def structure(page: str) -> list[str]:
    """The page's outline: headings, table names and headers, chart names and titles (what
    the golden file pins; the SVG's bytes change with matplotlib's version)."""
    found = re.finditer(
        r"<(h[123])[^>]*>(.*?)</\1>|<table data-table=\"([^\"]+)\">|<th(?:\s[^>]*)?>(.*?)</th>"
        r"|<figure data-chart=\"([^\"]+)\">|<title>(.*?)</title>",
        page,
        flags=re.S,
    )
    out = []
    for match in found:
        heading, text, table, column, chart, title = match.groups()
        if heading:
            out.append(f"{heading} {text}")
        elif table:
            out.append(f"table {table}")
        elif column:
            out.append(f"  th {column}")
        elif chart:
            out.append(f"chart {chart}")
        else:
            out.append(f"  title {title}")
    return out
