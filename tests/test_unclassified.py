"""The texts no rule read (issue 14): the report's "Unclassified texts" and `explain
--unclassified`, through the real command line, on tests/data/unclassified (its README gives
each line's origin), from files and from a store.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from _cli import invoke
from bounce_analyzer.report import fell_through, summarize, unclassified_texts
from bounce_analyzer.schema import EVENT_SCHEMA, conform

DATA = Path(__file__).resolve().parent / "data"
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
WINDOW = ("--since", "2026-11-28", "--until", "2026-11-29")

#: What falls through in tests/data/unclassified, most frequent first (ties by message):
#: (count, provider, rule, masked message).
EXPECTED = [
    (3, "other", "reply:550", "[550 5.0.0] <address>... refused by site rule x9"),
    (2, "other", "enhanced:enhanced-017", "[451 4.3.0] <address>: please come back in the morning"),
    (2, "other", "default:on_hold", "router bydns found no verdict for this address yet"),
    (1, "microsoft", "reply:554",
     "[554 5.0.0] your message could not be processed for 198.51.100.7 (ref <id>)"),
]  # fmt: skip


@pytest.fixture
def logs(tmp_path: Path) -> list[str]:
    """The logs of tests/data/unclassified, dated as their README says."""
    paths = []
    for name in ("mail.log", "mainlog"):
        path = tmp_path / name
        shutil.copy(DATA / "unclassified" / name, path)
        os.utime(path, (MTIME, MTIME))
        paths.append(str(path))
    return paths


def _rows(texts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(t["count"], t["provider"], t["rule_id"], t["message"]) for t in texts]


def test_explain_unclassified_lists_the_files_texts(logs: list[str]) -> None:
    result = invoke("explain", "--unclassified", *logs, *WINDOW, "--tz", "UTC", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert _rows(document["texts"]) == EXPECTED
    assert document["omitted"] == 0
    assert document["direction"] == "outbound"
    # one original text of each, as the server wrote it
    assert document["texts"][3]["example"] == (
        "host outlook-com.olc.protection.outlook.com[192.0.2.44] said: 554 5.0.0 Your message "
        "could not be processed for 198.51.100.7 (ref 20261128100616) (in reply to end of DATA "
        "command)"
    )
    # the unknown user a rule read, and the delivery, are not listed
    assert not any("user unknown" in t["message"] for t in document["texts"])


def test_explain_unclassified_as_text_with_top(logs: list[str]) -> None:
    result = invoke("explain", "--unclassified", *logs, *WINDOW, "--tz", "UTC", "--top", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Unclassified texts (decided by a code, the default")
    assert lines[1].split() == ["count", "provider", "rule", "message"]
    assert lines[2].split(maxsplit=3) == ["3", "other", "reply:550", EXPECTED[0][3]]
    assert lines[3].split(maxsplit=3)[:3] == ["2", "other", "enhanced:enhanced-017"]
    assert lines[4:] == ["  ... and 2 more rows (--top)"]


def test_explain_unclassified_from_the_store(logs: list[str], tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    ingested = invoke("ingest", *logs, "--store", store, "--tz", "UTC", "--quiet")
    assert ingested.exit_code == 0, ingested.output
    result = invoke("explain", "--unclassified", "--store", store, *WINDOW, "--json")
    assert result.exit_code == 0, result.output
    assert _rows(json.loads(result.stdout)["texts"]) == EXPECTED
    inbound = invoke(
        "explain", "--unclassified", "--store", store, *WINDOW, "--direction", "inbound"
    )
    assert inbound.stdout.splitlines()[1:] == ["  (none)"]


def test_explain_unclassified_usage_errors(logs: list[str], tmp_path: Path) -> None:
    result = invoke("explain", "--unclassified", "--recipient", "a@gmail.com", *logs)
    assert (result.exit_code, result.output) == (
        2,
        "Error: --unclassified lists texts; it takes no --recipient\n",
    )
    missing = invoke("explain", "--unclassified", "--store", str(tmp_path / "none"))
    assert missing.exit_code == 1
    assert (
        missing.output
        == f"Error: no store at {tmp_path / 'none'}: run `bounce-analyzer ingest` first\n"
    )


def test_the_report_has_the_unclassified_texts_and_the_waits(logs: list[str]) -> None:
    retry = [str(Path(logs[0]).with_name("retry.log"))]
    shutil.copy(DATA / "retry" / "mail.log", retry[0])
    os.utime(retry[0], (MTIME, MTIME))
    result = invoke("report", *logs, *retry, *WINDOW, "--tz", "UTC", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    texts = _rows(document["unclassified"])
    # the retry log adds none: rules read its words (its "Sending rate exceeded" too, which
    # its 4.7.1 alone once decided)
    assert texts == EXPECTED
    assert document["omitted"]["unclassified"] == 0
    assert document["waits"] == [
        {"provider": "other", "category": "rate_limited", "attempts": 3, "median_wait_s": 300,
         "max_wait_s": 300},
        {"provider": "netease", "category": "spam_detected", "attempts": 1,
         "median_wait_s": 900, "max_wait_s": 900},
    ]  # fmt: skip
    table = invoke("report", *logs, *retry, *WINDOW, "--tz", "UTC", "--top", "1").stdout
    assert "Unclassified texts (decided by a code, the default" in table
    assert "  ... and 3 more rows (--top)" in table
    assert "Advised waits (seconds the replies asked us to wait" in table


def test_fell_through_names_the_fallback_rules() -> None:
    rules = ["default:on_hold", "default:undefined", "reply:421", "enhanced:enhanced-046",
             "pattern:generic.user_unknown.user_unknown", "gmail:gmail-017", None,
             "words:words.rate"]  # fmt: skip
    frame = pl.DataFrame({"rule_id": rules}, schema={"rule_id": pl.String})
    assert frame.select(fell_through()).to_series().to_list() == [
        True, True, True, True, False, False, False, True,
    ]  # fmt: skip


def test_summarize_and_unclassified_texts_agree_on_a_frame() -> None:
    events = pl.DataFrame(
        {
            "timestamp": [datetime(2026, 11, 28, h, tzinfo=UTC) for h in (1, 2, 3, 4)],
            "event": ["bounced", "deferred", "delivered", "bounced"],
            "direction": ["outbound"] * 4,
            "rule_id": ["reply:550", "reply:550", "event:delivered", "reply:550"],
            "smtp_code": [550, 550, 250, 550],
            "enhanced_code": [None, None, None, None],
            "diagnostic": ["550 no <a@example.com>", "550 no <b@example.com>", "ok", "550 no"],
            "provider": ["other", "google", "other", "google"],
        }
    )
    lf = conform(events, EVENT_SCHEMA).lazy()
    texts = unclassified_texts(lf)
    assert texts.select("message", "count", "provider").rows() == [
        ("[550] no <address>", 2, "google"),  # google's texts are the first by value
        ("[550] no", 1, "google"),
    ]
    assert summarize(lf).unclassified.equals(texts)
