"""Period over period (`report --compare`), and texts that a cut would make look alike.

A compared report is two reports of the same length, the window shown and the one just before
it (`timewindow.previous_start`), each summarized on its own: the previous period's events are
read by a summarize of their own, so the two periods' events are never held at once, and a
store reads only the previous period's days for it. `with_previous` then sets, beside each
figure a person compares, the previous period's and the change:

- the failure rate of each view of the totals, of each row of the `--by` table and of each top
  recipient and sender domain: `previous_failure_rate` and `failure_rate_change`;
- each category's share of the failed and deferred attempts, and (inbound) each reason's share
  of our server's refusals: `previous_share`, `share_change`;
- each blocklist's attempts: `previous_attempts`, `attempts_change`.

A change of a rate is a difference of rates (0.012 is 1.2 points, shown `+1.2 pt`); a change of
attempts is a difference of counts. A row of one period alone shows what it has: a provider new
in this period has no previous figure and no change (`-`); a category, blocklist or reject
reason of the previous period alone (the totals, the categories, the blocks by list and the
rejects by reason are whole tables) is added with no event in this one (a share of nought, and
the change to it). The tables that
`--top` cuts (the `--by` table, the domains) show this period's top rows only. A previous
period of no event of the direction shown adds one note and no column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import polars as pl

from bounce_analyzer.errors import UsageError
from bounce_analyzer.report import Report, summarize
from bounce_analyzer.schema import failed_share
from bounce_analyzer.timewindow import previous_start

__all__ = ["distinguish", "summarize_previous", "with_previous"]

#: Every row of a previous period's cut tables: a row of this period's top may be anywhere in
#: the previous period's order.
_EVERY_ROW = 2**31


#: The compared tables of a `Report`: (attribute, the figure compared, whole, the figure
#: unrounded when it is a rate: a change is the difference of the exact rates, rounded once).
#: A whole table takes the rows of the previous period alone too; a cut one (`--top`) keeps
#: its own rows.
_COMPARED: tuple[tuple[str, str, bool, pl.Expr | None], ...] = (
    ("totals", "failure_rate", True, failed_share("total")),
    ("groups", "failure_rate", False, failed_share("messages")),
    ("categories", "share", True, pl.col("count") / pl.col("count").sum()),
    ("recipient_domains", "failure_rate", False, failed_share("messages")),
    ("sender_domains", "failure_rate", False, failed_share("messages")),
    ("blocklists", "attempts", True, None),
)

#: The inbound section's rejects by reason: each reason's share of our server's refusals.
_REJECTS = ("share", pl.col("rejects") / pl.col("rejects").sum())


#: The columns that describe a row's key (the rules' words for a category or a blocklist): a
#: row of the previous period alone takes them from there.
_DESCRIBED = ("description", "advice", "label", "lookup")


def summarize_previous(
    events: pl.LazyFrame,
    report: Report,
    *,
    categories: pl.DataFrame | None = None,
    blocklists: pl.DataFrame | None = None,
    held: Sequence[date] | None = None,
    holder: str = "the input",
) -> Report:
    """The report of the period before `report`'s, of equal length: the same grouping and
    direction over [since - (until - since), since), every row of every table.

    `events` must hold that period (a store's scan of its days, or the same files); the other
    arguments are `summarize`'s. `report` needs a window with both ends, else `UsageError`
    (the command line gives `until` the current time).
    """
    if report.since is None or report.until is None:
        raise UsageError("a report compared with its previous period needs since and until")
    return summarize(
        events,
        since=previous_start(report.since, report.until),
        until=report.since,
        by=report.by,
        top=_EVERY_ROW,
        categories=categories,
        blocklists=blocklists,
        held=held,
        holder=holder,
        direction=report.direction,
    )


def _stamp(since: datetime, until: datetime) -> str:
    return f"{since:%Y-%m-%d %H:%M} UTC to {until:%Y-%m-%d %H:%M} UTC"


def _events(report: Report) -> int:
    """The events of the direction `report` shows."""
    return int(report.totals.filter(pl.col("view") == "attempts").get_column("total").sum())


def _beside(
    current: pl.DataFrame,
    previous: pl.DataFrame,
    keys: list[str],
    figure: str,
    *,
    whole: bool,
    exact: pl.Expr | None,
) -> pl.DataFrame:
    """`current` with the previous period's `figure` and the change beside it, by `keys`;
    `exact` is the figure unrounded, for a rate."""
    before, change = f"previous_{figure}", f"{figure}_change"
    exactly = [] if exact is None else [exact.alias("_before")]
    described = [c for c in _DESCRIBED if c in current.columns and c in previous.columns]
    earlier = previous.select(
        *keys,
        pl.col(figure).alias(before),
        *exactly,
        *(pl.col(c).alias(f"_previous_{c}") for c in described),
    )
    if exact is not None:
        current = current.with_columns(exact.alias("_now"))
    joined = current.join(
        earlier,
        on=keys,
        how="full" if whole else "left",
        coalesce=True,
        nulls_equal=True,
        maintain_order="left_right",
    )
    if whole:
        # a row of the previous period alone: no event in this one
        counts = [c for c in current.columns if c not in keys and current.schema[c].is_integer()]
        joined = joined.with_columns(
            pl.col(counts).fill_null(0),
            *(pl.coalesce(c, f"_previous_{c}").alias(c) for c in described),
        )
        if figure == "share" and current.height:  # none of this period's whole: a share of 0
            joined = joined.with_columns(pl.col(figure, "_now").fill_null(0.0))
    if exact is not None:
        difference = (pl.col("_now") - pl.col("_before")).round(4)
    else:
        difference = pl.col(figure).cast(pl.Int64) - pl.col(before).cast(pl.Int64)
    joined = joined.with_columns(difference.alias(change))
    # the two columns right after the figure they compare
    order = [c for c in current.columns if c != "_now"]
    at = order.index(figure) + 1
    return joined.select(*order[:at], before, change, *order[at:])


def with_previous(report: Report, previous: Report) -> Report:
    """`report` with the figures of `previous` (`summarize_previous`) beside its own, and the
    change: the module's docstring lists them. A `previous` of no event of the direction shown
    adds a note instead."""
    if previous.since is None or previous.until is None:
        raise UsageError("the previous period needs since and until (`summarize_previous`)")
    window = _stamp(previous.since, previous.until)
    if _events(previous) == 0:
        shown = "events" if report.direction == "all" else f"{report.direction} events"
        found = previous.notes[0] if previous.notes else f"no {shown} from {window}"
        note = f"previous period: {found}; nothing to compare with"
        return replace(report, previous=previous, notes=[*report.notes, note])
    tables: dict[str, Any] = {
        name: _beside(
            getattr(report, name),
            getattr(previous, name),
            _keys(report, name),
            figure,
            whole=whole,
            exact=exact,
        )
        for name, figure, whole, exact in _COMPARED
    }
    if report.inbound is not None and previous.inbound is not None:
        figure, exact = _REJECTS
        rejects = _beside(
            report.inbound.rejects,
            previous.inbound.rejects,
            ["reject_reason", "blocklist"],
            figure,
            whole=True,
            exact=exact,
        )
        tables["inbound"] = replace(report.inbound, rejects=rejects)
    note = (
        f"compared with the previous period, {window}: prev is its figure, change "
        "the difference (points of a rate, attempts of a blocklist)"
    )
    return replace(report, **tables, previous=previous, notes=[*report.notes, note])


def _keys(report: Report, table: str) -> list[str]:
    """The columns that tell one row of `table` from another."""
    return {
        "totals": ["view"],
        "groups": report.by,
        "categories": ["category", "category_group", "direction"],
        "recipient_domains": ["recipient_domain"],
        "sender_domains": ["sender_domain"],
        "blocklists": ["direction", "blocklist"],
    }[table]


# --- texts a cut would make look alike -----------------------------------------------------------

#: Characters shown, at most, before the place where a text differs from those cut alike.
_CONTEXT = 16

#: The narrowest width at which texts cut alike are told apart (narrower, they are only cut).
_NARROWEST = 40


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _common(a: str, b: str) -> int:
    """The length of the longest common start of `a` and `b`."""
    size = min(len(a), len(b))
    return next((i for i in range(size) if a[i] != b[i]), size)


def _around(text: str, at: int, width: int) -> str:
    """`text` within `width`: its start, `…`, and the words from shortly before `at` (where it
    differs from another text), or from earlier when the rest of the text leaves room."""
    head = text[: width * 2 // 5]
    if " " in head[len(head) // 2 :]:
        head = head[: head.rindex(" ") + 1]  # (whole words)
    gap = "… " if head.endswith(" ") else " … "
    room = width - len(head) - len(gap)
    start = max(len(head), min(at - _CONTEXT, len(text) - room))
    space = text.find(" ", start - 1, at)
    if space >= 0:
        start = space + 1  # (from the first whole word)
    return head + gap + _cut(text[start:], room)


def distinguish(texts: Sequence[str], width: int) -> list[str]:
    """Each of `texts` within `width` characters, told apart from the others.

    A text too long is cut with `…`. Texts that would be cut alike (the Gmail 5.7.26 replies
    that name the failing sender domain after the ninetieth character) show instead their
    start, `…`, and the words where each differs from the others cut alike, so that every row
    reads differently and keeps its own count. Below `_NARROWEST` characters they are only
    cut (the table report's messages have 67 at least).
    """
    cuts = [_cut(text, width) for text in texts]
    if width < _NARROWEST:
        return cuts
    alike: dict[str, list[int]] = {}
    for index, cut in enumerate(cuts):
        alike.setdefault(cut, []).append(index)
    for members in alike.values():
        if len(members) < 2:
            continue
        # in sorted order, the text sharing the longest start with a text is next to it
        ordered = sorted(members, key=lambda index: texts[index])
        shared = [_common(texts[a], texts[b]) for a, b in zip(ordered, ordered[1:], strict=False)]
        for place, index in enumerate(ordered):
            text = texts[index]
            at = max(shared[max(0, place - 1) : place + 1])
            if at >= len(text):  # (a start of another text: the cut shows all it has)
                continue
            cuts[index] = _around(text, at, width)
    return cuts
