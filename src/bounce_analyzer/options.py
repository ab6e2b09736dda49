"""The closed sets of choices the command line offers: output formats, export kinds, the
directions a report or an answer is for, the columns a report groups by.

Plain enums and names, importable without polars, so that `cli.py` can declare its options
(and `--help` and `--version` answer) without loading the engine; the modules that act on a
choice import it from here (render: `ReportFormat`; report: `ReportDirection`, `GROUPABLE`;
export: `ExportKind`, `ExportFormat`; rules: `Direction`).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "GROUPABLE",
    "Direction",
    "ExportFormat",
    "ExportKind",
    "ReportDirection",
    "ReportFormat",
]


class ReportFormat(StrEnum):
    """Output formats of `report`."""

    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


class ReportDirection(StrEnum):
    """The directions a report shows (`--direction`): outbound or inbound mail, or all of it
    (internal hops between our own programs included)."""

    outbound = "outbound"
    inbound = "inbound"
    all = "all"


class Direction(StrEnum):
    """The directions a category has advice for (`advice_for`)."""

    outbound = "outbound"  # we (or an ESP for us) sent it: the receiver refused us
    inbound = "inbound"  # another server sent it to us: our server refused or received it


class ExportKind(StrEnum):
    """What `export` writes."""

    events = "events"
    daily = "daily"
    suppressions = "suppressions"


class ExportFormat(StrEnum):
    """The file format of an export."""

    parquet = "parquet"
    csv = "csv"


#: Columns `--by` may group by.
GROUPABLE = (
    "provider",
    "category",
    "category_group",
    "source",
    "recipient_domain",
    "sender_domain",
    "smtp_code",
    "enhanced_code",
    "date",
    "event",
    "bounce_type",
    "host",
    "direction",
    "blocklist",
    "transport",
    "client_host",
    "client_ip",
    "reject_reason",
)
