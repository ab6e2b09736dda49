"""bounce-analyzer: why does your mail bounce?

The library API; the `bounce-analyzer` command is a thin layer over it. A script parses,
ingests, summarizes and renders with the names below, for example::

    import bounce_analyzer as ba

    rules = ba.load_rules()
    store = ba.open_store("bounces", create=True)
    ba.ingest_paths(store, ["/var/log/mail.log"], rules=rules)
    report = ba.summarize(ba.scan_events(store), categories=rules.categories)
    print(ba.render_report(report, ba.ReportFormat.table))

and compares a window with the one of equal length before it, as `report --compare` does::

    events = ba.scan_events(store)
    report = ba.summarize(events, since=since, until=until, categories=rules.categories)
    previous = ba.summarize_previous(events, report, categories=rules.categories)
    report = ba.with_previous(report, previous)

The names are imported when first used, so that `import bounce_analyzer` stays light. The
engine itself is `bounce_analyzer.classify.classify` (a package-level `classify` would be
hidden by the module of that name once it is imported).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from bounce_analyzer.errors import (
    BounceAnalyzerError,
    InputError,
    ParseError,
    RulesError,
    StoreError,
    UnknownSourceError,
    UsageError,
)

# `typing.TYPE_CHECKING` without importing typing (a tenth of this package's import time):
# type checkers take any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from bounce_analyzer.compare import summarize_previous, with_previous
    from bounce_analyzer.explain import explain_frame, explain_one, explain_stream
    from bounce_analyzer.export import ExportFormat, ExportKind, export_events
    from bounce_analyzer.ingest import IngestResult, ingest_paths, summarize_paths
    from bounce_analyzer.pipeline import Chunk, FileSummary, ParseRun
    from bounce_analyzer.render import ReportFormat, render_report
    from bounce_analyzer.report import Report, summarize
    from bounce_analyzer.rules import Rules, load_rules
    from bounce_analyzer.store import (
        DeltaStore,
        Store,
        open_store,
        scan_events,
        scan_quarantine,
    )
    from bounce_analyzer.timewindow import parse_since, parse_until
    from bounce_analyzer.writers import EventFormat, EventWriter

#: Each public name and the module it comes from.
_HOMES = {
    "summarize_previous": "compare",
    "with_previous": "compare",
    "explain_frame": "explain",
    "explain_one": "explain",
    "explain_stream": "explain",
    "ExportFormat": "export",
    "ExportKind": "export",
    "export_events": "export",
    "IngestResult": "ingest",
    "ingest_paths": "ingest",
    "summarize_paths": "ingest",
    "Chunk": "pipeline",
    "FileSummary": "pipeline",
    "ParseRun": "pipeline",
    "ReportFormat": "render",
    "render_report": "render",
    "Report": "report",
    "summarize": "report",
    "Rules": "rules",
    "load_rules": "rules",
    "Store": "store",
    "DeltaStore": "store",
    "open_store": "store",
    "scan_events": "store",
    "scan_quarantine": "store",
    "parse_since": "timewindow",
    "parse_until": "timewindow",
    "EventFormat": "writers",
    "EventWriter": "writers",
}

__all__ = [
    "BounceAnalyzerError",
    "Chunk",
    "EventFormat",
    "EventWriter",
    "ExportFormat",
    "ExportKind",
    "FileSummary",
    "IngestResult",
    "InputError",
    "ParseError",
    "ParseRun",
    "Report",
    "ReportFormat",
    "Rules",
    "RulesError",
    "Store",
    "DeltaStore",
    "StoreError",
    "UnknownSourceError",
    "UsageError",
    "__version__",
    "explain_frame",
    "explain_one",
    "explain_stream",
    "export_events",
    "ingest_paths",
    "load_rules",
    "open_store",
    "parse_since",
    "parse_until",
    "render_report",
    "scan_events",
    "scan_quarantine",
    "summarize",
    "summarize_paths",
    "summarize_previous",
    "with_previous",
]


def __getattr__(name: str) -> object:
    """A public name, imported from its module when first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
