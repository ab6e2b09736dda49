"""A store written by schema version 1 read by version 2, in place (issue 13, docs/STORE.md).

tests/data/store_v1 was written by `bounce-analyzer ingest` as it was before issue 13 (its
README gives the command and commit), from the two logs of tests/data/direction. Read now, its
events have what version 2 gives: a direction, the refused client in client_*, relay_* only
for servers we handed mail to; and as many of each as were stored.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from _cli import invoke
from bounce_analyzer.rules import DirectionSettings
from bounce_analyzer.store import open_store, scan_events

DATA = Path(__file__).resolve().parent / "data"
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
#: What the version-1 store holds, as its ingest said: 33 events.
STORED = {"delivered": 12, "deferred": 5, "bounced": 5, "expired": 1, "rejected": 10}
#: The events version 1 read whose direction its facts cannot tell as version 2's can: lmtp to
#: 127.0.0.1 (no transport: taken for the content filter's hop) and an Exim deferral into a
#: full maildir (no transport, no host: a failure, which may be remote).
UNTOLD = {"postfix-debian.log:43": "internal", "exim-debian.log:15": "outbound"}


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    """A copy of the version-1 store (a reader takes a lock file in the store's folder)."""
    return Path(shutil.copytree(DATA / "store_v1", tmp_path / "store"))


@pytest.fixture
def v2_events(tmp_path: Path) -> pl.DataFrame:
    """The same logs ingested now, into a store of their own: version 2 as written."""
    logs = []
    for name in ("postfix-debian.log", "exim-debian.log"):
        log = tmp_path / name
        log.write_bytes((DATA / "direction" / name).read_bytes())
        os.utime(log, (MTIME, MTIME))
        logs.append(str(log))
    store = tmp_path / "v2"
    result = invoke("ingest", *logs, "--store", str(store), "--tz", "UTC", "--quiet")
    assert result.exit_code == 0, result.output
    return scan_events(store).collect()


def by_origin(frame: pl.DataFrame) -> dict[str, dict[str, object]]:
    return {row["origin"].rsplit("/", 1)[-1]: row for row in frame.to_dicts()}


def test_the_store_is_of_version_1() -> None:
    [path] = (DATA / "store_v1" / "events").rglob("*.parquet")
    metadata = pq.read_schema(path).metadata
    assert metadata[b"bounce_analyzer.schema_version"] == b"1"
    assert "direction" not in pq.read_schema(path).names


def test_export_of_a_version_1_store_has_version_2_columns(
    v1_store: Path, v2_events: pl.DataFrame, tmp_path: Path
) -> None:
    output = tmp_path / "events.parquet"
    result = invoke(
        "export", "--store", str(v1_store), "--since", "2026-11-28", "--until", "2026-11-29",
        "-o", str(output),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == f"exported 33 rows to {output}\n"
    read = pl.read_parquet(output)
    # counts unchanged
    assert dict(read.group_by("event").len().iter_rows()) == STORED
    # the refused clients moved out of relay_*
    rejects = read.filter(pl.col("event") == "rejected")
    assert rejects.select(pl.col("relay_host", "relay_ip").null_count()).row(0) == (10, 10)
    assert rejects["client_ip"].null_count() == 0
    postscreen = by_origin(read)["postfix-debian.log:5"]
    assert (postscreen["client_host"], postscreen["client_ip"]) == (None, "203.0.113.45")
    # what version 2 gives the same events when it reads the logs itself
    written = by_origin(v2_events)
    for origin, row in by_origin(read).items():
        expected = written[origin]
        if origin not in UNTOLD:
            assert row["direction"] == expected["direction"], origin
        for name in ("client_host", "client_ip", "relay_host", "relay_ip", "event_id"):
            assert row[name] == expected[name], (origin, name)
        assert row["transport"] is None  # version 1 did not keep it
    assert {origin: by_origin(read)[origin]["direction"] for origin in UNTOLD} == UNTOLD
    assert dict(read.group_by("direction").len().iter_rows()) == {
        "outbound": 10,
        "inbound": 20,
        "internal": 3,
    }


def test_the_readers_settings_decide_the_direction_of_version_1_events(v1_store: Path) -> None:
    settings = DirectionSettings(local_domains=("example.com",))
    events = by_origin(scan_events(v1_store, direction=settings).collect())
    assert events["exim-debian.log:15"]["direction"] == "inbound"  # dave@example.com
    assert events["postfix-debian.log:50"]["direction"] == "outbound"  # sales@example.net


def test_export_and_report_read_version_1_events_with_the_rules_settings(
    v1_store: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "direction.toml").write_text('local_domains = ["example.com"]\n')
    output = tmp_path / "events.csv"
    args = ("export", "--store", str(v1_store), "--since", "2026-11-28", "-o", str(output))
    assert invoke(*args, "--rules", str(rules)).exit_code == 0
    exported = by_origin(pl.read_csv(output))
    assert exported["exim-debian.log:15"]["direction"] == "inbound"
    result = invoke("report", "--store", str(v1_store), "--since", "2026-11-28", "--format", "json")
    assert result.exit_code == 0, result.output


NEXT_DAY = (
    "Nov 29 09:00:00 mx1 postfix/smtp[4101]: 4F5A6B7C8D: to=<jane.doe@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[192.0.2.27]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=2.0.0, "
    "status=sent (250 2.0.0 OK  1795942800 a1si1234567wrx.100 - gsmtp)\n"
    "Nov 29 09:01:00 mx1 postfix/smtpd[4102]: NOQUEUE: reject: RCPT from unknown[203.0.113.77]: "
    "554 5.7.1 Service unavailable; Client host [203.0.113.77] blocked using zen.spamhaus.org; "
    "from=<promo@bulk.example.net> to=<bob@example.com> proto=ESMTP helo=<bulk.example.net>\n"
)


def test_a_store_of_both_versions(v1_store: Path, tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(NEXT_DAY)
    os.utime(log, (MTIME + 86400, MTIME + 86400))
    result = invoke("ingest", str(log), "--store", str(v1_store), "--tz", "UTC", "--quiet")
    assert result.exit_code == 0, result.output
    versions = {
        path.parent.name: pq.read_schema(path).metadata[b"bounce_analyzer.schema_version"]
        for path in (v1_store / "events").rglob("*.parquet")
    }
    # (version 3 since retry_after: the new day is written by the current schema)
    assert versions == {"date=2026-11-28": b"1", "date=2026-11-29": b"3"}
    with open_store(v1_store, create=False).reading() as view:
        events = view.scan_events(since=datetime(2026, 11, 28, tzinfo=UTC)).collect()
    assert events.height == 35
    assert events["direction"].null_count() == 0
    rejects = events.filter(pl.col("event") == "rejected")
    assert rejects.height == 11
    assert rejects["relay_ip"].null_count() == 11
    assert rejects.filter(pl.col("client_ip") == "203.0.113.77").height == 3
    new = by_origin(events)["mail.log:2"]
    assert (new["direction"], new["transport"], new["client_host"]) == (
        "inbound",
        "smtpd",
        "unknown",
    )
    output = tmp_path / "suppressions.csv"
    args = ("export", "--store", str(v1_store), "--since", "2026-11-28", "--what", "suppressions")
    assert invoke(*args, "-o", str(output)).exit_code == 0


# --- version 2: before retry_after ----------------------------------------------------------


@pytest.fixture
def v2_store(tmp_path: Path) -> Path:
    """A copy of the version-2 store (tests/data/store_v2, written before retry_after)."""
    return Path(shutil.copytree(DATA / "store_v2", tmp_path / "store"))


def test_the_store_is_of_version_2() -> None:
    [path] = (DATA / "store_v2" / "events").rglob("*.parquet")
    assert pq.read_schema(path).metadata[b"bounce_analyzer.schema_version"] == b"2"
    assert "retry_after" not in pq.read_schema(path).names


def test_export_of_a_version_2_store_has_a_null_retry_after(v2_store: Path, tmp_path: Path) -> None:
    output = tmp_path / "events.parquet"
    args = ("export", "--store", str(v2_store), "--since", "2026-11-28", "--until", "2026-11-29")
    result = invoke(*args, "-o", str(output))
    assert result.exit_code == 0, result.output
    assert result.output == f"exported 7 rows to {output}\n"
    read = pl.read_parquet(output)
    assert read.schema["retry_after"] == pl.Int32
    assert read["retry_after"].null_count() == 7
    # every column version 2 wrote is read as written
    [path] = (v2_store / "events").rglob("*.parquet")
    written = pl.read_parquet(path)
    assert read.select(written.columns).sort("event_id").equals(written.sort("event_id"))
    report = invoke("report", "--store", str(v2_store), "--since", "2026-11-28", "--format", "json")
    assert report.exit_code == 0, report.output
