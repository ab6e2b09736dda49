"""The library's face: a script parses, ingests, summarizes and renders through the names the
package exports, without the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import bounce_analyzer as ba
from _samples import BOUNCED, BROKEN

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_a_script_parses_ingests_and_summarizes_through_the_package_names(
    tmp_path: Path,
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(f"{BOUNCED}\n{BROKEN}\n")
    os.utime(log, (NOW.timestamp(), NOW.timestamp()))  # syslog stamps take their year from it
    rules = ba.load_rules()

    parsed = list(ba.ParseRun([str(log)], tz="UTC", rules=rules))
    assert [chunk.events["category"].to_list() for chunk in parsed] == [["user_unknown"]]

    store = ba.open_store(tmp_path / "store", create=True)
    result = ba.ingest_paths(store, [str(log)], tz="UTC", rules=rules, now=NOW)
    assert (result.events, result.malformed, result.files[0].source) == (1, 1, "postfix")

    report = ba.summarize(
        ba.scan_events(store.path), malformed=result.malformed, categories=rules.categories
    )
    document = json.loads(ba.render_report(report, ba.ReportFormat.json))
    (category,) = document["categories"]
    assert (category["category"], category["failed"]) == ("user_unknown", 1)
    assert category["advice"] == rules.categories.filter(category="user_unknown")["advice"][0]
    assert document["malformed"] == 1

    assert ba.explain_one("550 5.1.1 User unknown")["category"] == "user_unknown"


def test_every_exported_name_resolves() -> None:
    for name in ba.__all__:
        assert getattr(ba, name) is not None, name
    with pytest.raises(AttributeError):
        ba.no_such_name  # noqa: B018


def test_importing_the_package_loads_neither_polars_nor_pyarrow() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, bounce_analyzer; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'polars'" not in loaded
    assert "'pyarrow'" not in loaded
