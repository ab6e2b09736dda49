"""`bounce-analyzer metrics` (issue 15): Prometheus text exposition, read back with
prometheus_client's own parser and checked against `parse` and `report --format json`.

The inputs are the bundled sample logs (copied and dated as tests/test_report_cli.py dates
them) and a day of the seeded generator's Postfix log ingested into a store.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from _cli import invoke
from _samples import copy_sample_logs
from _stores import generated_store
from bounce_analyzer.metrics import known_codes, render_metrics
from bounce_analyzer.schema import EVENT_SCHEMA

UNTIL = ["--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of sample_logs/ whose files are dated 2026-11-28."""
    return copy_sample_logs(tmp_path_factory.mktemp("metrics"))


def _samples_of(text: str) -> dict[str, list[Sample]]:
    """The samples of each metric family, as Prometheus' own client parses the text."""
    return {
        family.name: family.samples
        for family in text_string_to_metric_families(text)  # raises on a malformed line
    }


def _summed(samples: list[Sample], *labels: str) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for sample in samples:
        counts[tuple(sample.labels[label] for label in labels)] += int(sample.value)
    return counts


def _report(*args: str) -> dict[str, Any]:
    result = invoke("report", *args, "--format", "json", "--top", "1000")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_every_event_of_parse_is_counted_once(samples: Path) -> None:
    """The events counter, by direction and event, is what `parse` writes of the same logs;
    HELP and TYPE name every family, and each sample's labels are the documented ones."""
    result = invoke("metrics", str(samples), *UNTIL)
    assert result.exit_code == 0, result.output
    families = {family.name: family for family in text_string_to_metric_families(result.stdout)}
    assert {name: family.type for name, family in families.items()} == {
        "bounce_analyzer_events": "counter",
        "bounce_analyzer_enhanced_code_events": "counter",
        "bounce_analyzer_blocklist_events": "counter",
        "bounce_analyzer_window_end_timestamp_seconds": "gauge",
        "bounce_analyzer_last_event_timestamp_seconds": "gauge",
    }
    assert all(family.documentation for family in families.values())
    events = families["bounce_analyzer_events"].samples
    assert {sample.name for sample in events} == {"bounce_analyzer_events_total"}
    assert {tuple(sorted(sample.labels)) for sample in events} == {
        ("category", "direction", "event", "provider")
    }
    parsed = invoke("parse", str(samples), "--tz", "UTC", "--quiet", "--format", "jsonl")
    rows = [json.loads(line) for line in parsed.stdout.splitlines()]
    expected = Counter((row["direction"], row["event"]) for row in rows)
    assert _summed(events, "direction", "event") == expected
    assert sum(expected.values()) == len(rows) > 1000
    end = families["bounce_analyzer_window_end_timestamp_seconds"].samples[0].value
    assert end == datetime(2026, 11, 28, 12, tzinfo=UTC).timestamp()
    newest = max(datetime.fromisoformat(row["timestamp"]) for row in rows)
    last = families["bounce_analyzer_last_event_timestamp_seconds"].samples[0].value
    assert last == int(newest.timestamp())


def test_the_counts_are_the_reports_attempts(samples: Path) -> None:
    """Outbound attempts by event, failures by category, and blocks by list equal the
    report's (its attempts view counts every event, as the counters do)."""
    window = ["--since", "2026-11-20", *UNTIL]
    result = invoke("metrics", str(samples), *window)
    families = _samples_of(result.stdout)
    events = families["bounce_analyzer_events"]
    document = _report(str(samples), *window)
    attempts = next(row for row in document["totals"] if row["view"] == "attempts")
    outbound = _summed(events, "direction", "event")
    assert outbound[("outbound", "delivered")] == attempts["delivered"]
    assert outbound[("outbound", "deferred")] == attempts["deferred"]
    failed = sum(
        count
        for (direction, event), count in outbound.items()
        if direction == "outbound" and event not in ("delivered", "deferred", "complained")
    )
    assert failed == attempts["failed"]
    outbound_events = [s for s in events if s.labels["direction"] == "outbound"]
    by_category = _summed(outbound_events, "category", "event")
    for row in document["categories"]:
        failures = sum(
            count
            for (category, event), count in by_category.items()
            if category == row["category"] and event not in ("delivered", "deferred", "complained")
        )
        deferrals = by_category[(row["category"], "deferred")]
        assert (failures, deferrals) == (row["failed"], row["deferred"]), row["category"]
    everything = _report(str(samples), *window, "--direction", "all")
    lists = _summed(families["bounce_analyzer_blocklist_events"], "direction", "blocklist")
    assert lists == {
        (row["direction"], row["blocklist"]): row["attempts"] for row in everything["blocklists"]
    }
    assert len(lists) >= 4


def test_enhanced_codes_are_bounded_by_the_rules_tables(samples: Path) -> None:
    """Every code label is a code of the rules' tables or `other`; the counts by event add up
    to the events that carry a code."""
    result = invoke("metrics", str(samples), *UNTIL)
    codes = _samples_of(result.stdout)["bounce_analyzer_enhanced_code_events"]
    from bounce_analyzer.rules import load_rules

    known = known_codes(load_rules().codes["enhanced_code"])
    shown = {sample.labels["enhanced_code"] for sample in codes}
    assert "other" in shown and "5.7.26" in shown and "4.2.2" in shown
    assert shown - {"other"} <= known
    parsed = invoke("parse", str(samples), "--tz", "UTC", "--quiet", "--format", "jsonl")
    rows = [json.loads(line) for line in parsed.stdout.splitlines()]
    assert sum(int(sample.value) for sample in codes) == sum(
        1 for row in rows if row["enhanced_code"]
    )


def test_label_values_are_escaped() -> None:
    """A backslash, a double quote and a newline in a label value (a list named in a user's
    rules, a provider) survive the round trip through the format."""
    odd = 'zone "a"\\b\nc'
    events = pl.DataFrame(
        {
            "timestamp": [datetime(2026, 12, 5, 10, tzinfo=UTC)] * 2,
            "direction": ["outbound"] * 2,
            "event": ["bounced", "deferred"],
            "provider": [odd, None],
            "category": ["blocked"] * 2,
            "enhanced_code": ["5.7.1", "4.7.999"],
            "blocklist": [odd, odd],
        }
    ).cast({name: EVENT_SCHEMA[name] for name in ("timestamp", "enhanced_code")})
    text = render_metrics(
        events.lazy(), until=datetime(2026, 12, 6, tzinfo=UTC), codes=known_codes(["X.7.1"])
    )
    assert 'blocklist="zone \\"a\\"\\\\b\\nc"' in text
    families = _samples_of(text)
    assert _summed(families["bounce_analyzer_blocklist_events"], "blocklist") == {(odd,): 2}
    assert _summed(families["bounce_analyzer_events"], "provider") == {(odd,): 1, ("none",): 1}
    assert _summed(families["bounce_analyzer_enhanced_code_events"], "enhanced_code") == {
        ("5.7.1",): 1,
        ("other",): 1,
    }


def test_the_output_file_is_replaced_whole(samples: Path, tmp_path: Path) -> None:
    """`-o` replaces the file by a rename (the textfile collector never sees half of it) and
    leaves no temporary file beside it."""
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "bounces.prom"
    target.write_text("# an older run's metrics\n", encoding="utf-8")
    before = target.stat().st_ino
    result = invoke("metrics", str(samples), *UNTIL, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert [path.name for path in folder.iterdir()] == ["bounces.prom"]
    assert target.stat().st_ino != before  # a new file, renamed into place
    assert target.read_text(encoding="utf-8") == invoke("metrics", str(samples), *UNTIL).stdout


def test_metrics_of_a_store_of_a_generated_log(tmp_path: Path) -> None:
    """A generated Postfix day in a store: the counters equal `report --store`'s attempts."""
    store = generated_store(tmp_path, seed=2, lines=50_000, start="2026-12-05")
    result = invoke("metrics", "--store", str(store))
    assert result.exit_code == 0, result.output
    families = _samples_of(result.stdout)
    counted = _summed(families["bounce_analyzer_events"], "direction")
    document = _report("--store", str(store), "--since", "2026-12-01", "--direction", "all")
    assert dict(counted) == {(name,): count for name, count in document["directions"].items()}
    attempts = next(row for row in document["totals"] if row["view"] == "attempts")
    assert sum(counted.values()) == attempts["total"] > 5_000
    since = invoke("metrics", "--store", str(store), "--since", "2026-12-06")
    starts = _samples_of(since.stdout)["bounce_analyzer_window_start_timestamp_seconds"]
    assert starts[0].value == datetime(2026, 12, 6, tzinfo=UTC).timestamp()
    assert not _samples_of(since.stdout)["bounce_analyzer_events"]
