"""Delays, queue times, deferral resolutions, hourly traffic and sending hosts (issue 15):
small Postfix and Exim logs whose figures are worked out by hand below, through the real
command line in every format; and the library's quantiles against polars' own.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from _cli import invoke
from _samples import date_files
from bounce_analyzer.delays import delivery_delays, informative_hosts, sending_hosts
from bounce_analyzer.render import duration

WINDOW = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]

_SMTP = "postfix/smtp[4711]"
_GMAIL = "relay=gmail-smtp-in.l.google.com[142.250.153.26]:25"
_YAHOO = "relay=mta5.am0.yahoodns.net[67.195.182.175]:25"
_OUTLOOK = "relay=outlook-com.olc.protection.outlook.com[52.101.53.142]:25"
_SENT = "dsn=2.0.0, status=sent (250 2.0.0 OK)"
_DEFERRED = (
    "dsn=4.7.0, status=deferred (host mta5.am0.yahoodns.net[67.195.182.175] said: 421 4.7.0 "
    "[TSS04] Messages from 203.0.113.25 temporarily deferred (in reply to MAIL FROM command))"
)

#: Two hosts (mx1, mx2); eight messages. By hand:
#: - delivered with delay=: google 4.2, 901, 7500; yahoo 190; microsoft 0.5
#: - 2C0000000B to b@gmail.com deferred 10:00:03 and 10:05:03, delivered 10:15:03: 900 s
#: - 4E0000000D to d@yahoo.com deferred 10:30:00, expired (the whole message) 11:30:00: 3600 s
#: - 5F0000000E to e@outlook.com deferred 11:00:00 and never again: pending
POSTFIX = "\n".join(
    [
        f"Nov 27 10:00:03 mx1 {_SMTP}: 2C0000000B: to=<b@gmail.com>, {_GMAIL}, delay=1.1, "
        f"delays=0.1/0/1/0, {_DEFERRED}",
        f"Nov 27 10:00:05 mx1 {_SMTP}: 1B0000000A: to=<a@gmail.com>, {_GMAIL}, delay=4.2, "
        f"delays=0.1/0/2/2.1, {_SENT}",
        f"Nov 27 10:05:03 mx1 {_SMTP}: 2C0000000B: to=<b@gmail.com>, {_GMAIL}, delay=301, "
        f"delays=300/0/1/0, {_DEFERRED}",
        f"Nov 27 10:15:03 mx1 {_SMTP}: 2C0000000B: to=<b@gmail.com>, {_GMAIL}, delay=901, "
        f"delays=900/0/0.5/0.5, {_SENT}",
        f"Nov 27 10:20:00 mx1 {_SMTP}: 3D0000000C: to=<c@yahoo.com>, {_YAHOO}, delay=190, "
        f"delays=188/0/1/1, {_SENT}",
        f"Nov 27 10:30:00 mx1 {_SMTP}: 4E0000000D: to=<d@yahoo.com>, {_YAHOO}, delay=2.0, "
        f"delays=0.1/0/1/0.9, {_DEFERRED}",
        f"Nov 27 11:00:00 mx1 {_SMTP}: 5F0000000E: to=<e@outlook.com>, {_OUTLOOK}, delay=3.0, "
        f"delays=0.1/0/2/0.9, {_DEFERRED}",
        "Nov 27 11:10:00 mx2 postfix/smtp[99]: 6A0000000F: to=<f@gmail.com>, "
        f"{_GMAIL}, delay=7500, delays=7498/0/1/1, {_SENT}",
        f"Nov 27 11:20:00 mx1 {_SMTP}: 7B00000010: to=<g@gmail.com>, {_GMAIL}, delay=0.9, "
        "delays=0.1/0/0.4/0.4, dsn=5.7.1, status=bounced (host gmail-smtp-in.l.google.com"
        "[142.250.153.26] said: 554 5.7.1 Service unavailable; Client host [203.0.113.25] "
        "blocked using zen.spamhaus.org (in reply to RCPT TO command))",
        "Nov 27 11:25:00 mx2 postfix/smtp[99]: 8C00000011: to=<h@outlook.com>, "
        f"{_OUTLOOK}, delay=0.5, delays=0.1/0/0.2/0.2, {_SENT}",
        "Nov 27 11:30:00 mx1 postfix/qmgr[12]: 4E0000000D: from=<shop@example.com>, "
        "status=expired, returned to sender",
    ]
)

#: Exim logs QT= (log_selector = +queue_time) and names no host of ours. By hand: b@yahoo.com
#: deferred at 10:00:01, delivered at 10:25:00 after 25 minutes on the queue (QT=25m):
#: resolved after 1499 s; a@gmail.com delivered after 1.5 s.
_EXIM_ID = "1xWjOc-000OTv-Z4"
EXIM = "\n".join(
    [
        f"2026-11-27 10:00:00 {_EXIM_ID} <= shop@example.com H=app01.example.com [10.0.4.21] "
        "P=esmtpsa S=2391 id=1@shop.example.com",
        f"2026-11-27 10:00:01 {_EXIM_ID} == b@yahoo.com R=dnslookup T=remote_smtp defer (-45) "
        "H=mta5.am0.yahoodns.net [67.195.182.175]: SMTP error from remote mail server after "
        "MAIL FROM:<shop@example.com> SIZE=2391: 421 4.7.0 [TSS04] Messages from 203.0.113.25 "
        "temporarily deferred",
        f"2026-11-27 10:00:02 {_EXIM_ID} => a@gmail.com R=dnslookup T=remote_smtp "
        'H=gmail-smtp-in.l.google.com [142.250.153.196] C="250 2.0.0 OK" QT=1.5s',
        f"2026-11-27 10:25:00 {_EXIM_ID} => b@yahoo.com R=dnslookup T=remote_smtp "
        'H=mta5.am0.yahoodns.net [67.195.182.175] C="250 ok dirdel" QT=25m',
        f"2026-11-27 10:25:00 {_EXIM_ID} Completed",
    ]
)


def _log(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / ("mail.log" if name == "postfix" else "mainlog")).write_text(
        text + "\n", encoding="utf-8"
    )
    date_files(folder)  # classic syslog stamps take the file's year
    return folder


def _json(path: Path, *more: str) -> dict[str, Any]:
    result = invoke("report", str(path), *WINDOW, *more, "--format", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture
def postfix(tmp_path: Path) -> Path:
    return _log(tmp_path, "postfix", POSTFIX)


def test_delivery_delays_by_provider_and_domain_are_the_hand_computed_ones(
    postfix: Path,
) -> None:
    document = _json(postfix)
    # google: 4.2, 901, 7500: the median is 901; p95 at 0.95 * 2 = 1.9 of the way: 901 + 0.9
    # * (7500 - 901)
    assert document["provider_delays"] == [
        {"provider": "google", "delivered": 3, "median_delay_s": 901.0,
         "p95_delay_s": 6840.1, "max_delay_s": 7500.0},
        {"provider": "microsoft", "delivered": 1, "median_delay_s": 0.5,
         "p95_delay_s": 0.5, "max_delay_s": 0.5},
        {"provider": "yahoo", "delivered": 1, "median_delay_s": 190.0,
         "p95_delay_s": 190.0, "max_delay_s": 190.0},
    ]  # fmt: skip
    assert [(row["recipient_domain"], row["delivered"]) for row in document["domain_delays"]] == [
        ("gmail.com", 3), ("outlook.com", 1), ("yahoo.com", 1),
    ]  # fmt: skip
    # the bounce (delay=0.9) and the deferrals are no deliveries: <1m holds 0.5 and 4.2
    assert document["queue_times"] == [
        {"queue_time": "<1m", "delivered": 2, "share": 0.4},
        {"queue_time": "1-5m", "delivered": 1, "share": 0.2},
        {"queue_time": "5-15m", "delivered": 0, "share": 0.0},
        {"queue_time": "15-60m", "delivered": 1, "share": 0.2},
        {"queue_time": "1-4h", "delivered": 1, "share": 0.2},
        {"queue_time": "4-24h", "delivered": 0, "share": 0.0},
        {"queue_time": ">1d", "delivered": 0, "share": 0.0},
    ]


def test_deferrals_resolve_into_deliveries_failures_and_pending(postfix: Path) -> None:
    """The expiry of the whole message (no recipient) ends d@yahoo.com's deferral, as the
    report's final outcomes take it."""
    document = _json(postfix)
    assert document["resolutions"] == [
        {"provider": "google", "deferred": 1, "delivered": 1, "failed": 0, "pending": 0,
         "median_to_delivery_s": 900.0, "p95_to_delivery_s": 900.0,
         "median_to_failure_s": None},
        {"provider": "microsoft", "deferred": 1, "delivered": 0, "failed": 0, "pending": 1,
         "median_to_delivery_s": None, "p95_to_delivery_s": None,
         "median_to_failure_s": None},
        {"provider": "yahoo", "deferred": 1, "delivered": 0, "failed": 1, "pending": 0,
         "median_to_delivery_s": None, "p95_to_delivery_s": None,
         "median_to_failure_s": 3600.0},
    ]  # fmt: skip
    final = {row["view"]: row for row in document["totals"]}["final outcomes"]
    resolved = document["resolutions"]
    assert sum(row["failed"] for row in resolved) <= final["failed"]
    assert sum(row["pending"] for row in resolved) == final["deferred"]


def test_hourly_traffic_and_sending_hosts_add_up_to_the_attempts(postfix: Path) -> None:
    document = _json(postfix)
    hours = {row["hour"]: row for row in document["hourly"]}
    assert sorted(hours) == list(range(24))
    assert hours[10] == {"hour": 10, "attempts": 6, "delivered": 3, "deferred": 3, "failed": 0,
                         "complained": 0, "failure_rate": 0.0}  # fmt: skip
    assert hours[11] == {"hour": 11, "attempts": 5, "delivered": 2, "deferred": 1, "failed": 2,
                         "complained": 0, "failure_rate": 0.4}  # fmt: skip
    assert all(hours[h]["attempts"] == 0 for h in hours if h not in (10, 11))
    attempts = {row["view"]: row for row in document["totals"]}["attempts"]
    assert sum(row["attempts"] for row in document["hourly"]) == attempts["total"]
    assert document["sending_hosts"] == [
        {"source": "postfix", "host": "mx1", "attempts": 9, "delivered": 3, "deferred": 4,
         "failed": 2, "blocks": 1, "failure_rate": 0.2222},
        {"source": "postfix", "host": "mx2", "attempts": 2, "delivered": 2, "deferred": 0,
         "failed": 0, "blocks": 0, "failure_rate": 0.0},
    ]  # fmt: skip
    assert sum(row["blocks"] for row in document["sending_hosts"]) == sum(
        row["attempts"] for row in document["blocklists"]
    )


def test_the_text_report_shows_durations_and_the_hours_with_traffic(postfix: Path) -> None:
    result = invoke("report", str(postfix), *WINDOW, "--width", "80")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    title = next(i for i, line in enumerate(lines) if line.startswith("Delivery delay by prov"))
    head = lines.index("  provider   delivered  median    p95    max", title)
    assert lines[head + 1].split() == ["google", "3", "15m01s", "1h54m", "2h05m"]
    assert lines[head + 3].split() == ["yahoo", "1", "3m10s", "3m10s", "3m10s"]
    hourly = lines.index("Hourly traffic (attempts by hour of the day, UTC; hours with traffic)")
    assert [line.split()[:2] for line in lines[hourly + 2 : hourly + 4]] == [
        ["10", "6"], ["11", "5"],
    ]  # fmt: skip
    assert lines[hourly + 4] == ""  # the 22 hours without traffic are left out
    resolved = next(i for i, line in enumerate(lines) if line.startswith("Deferrals resolved"))
    head = lines.index("  provider   delivered  failed  pending  to delivery     p95  to failure")
    rows = {line.split()[0]: line.split() for line in lines[head + 1 : head + 4]}
    assert head > resolved
    assert lines[head + 4] == "  (left out at 80 columns: deferred; --width 82 shows them)"
    assert rows["google"][-3:] == ["15m00s", "15m00s", "-"]
    assert rows["yahoo"][-3:] == ["-", "-", "1h00m"]
    assert any(line.startswith("By sending host") for line in lines)  # two hosts: shown


def test_the_markdown_report_has_the_sections_aligned_within_100_columns(postfix: Path) -> None:
    result = invoke("report", str(postfix), *WINDOW, "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    start = lines.index("## Queue time of delivered attempts (the same deliveries)")
    table = lines[start + 2 : start + 11]
    assert table[0] == "| queue time | delivered | share |"
    assert table[1] == "| ---------- | --------: | ----: |"
    assert table[2] == "| <1m        |         2 | 40.0% |"
    assert len({len(line) for line in table}) == 1  # the pipes line up


def test_csv_keeps_the_by_table_and_by_host_gives_the_hosts(postfix: Path) -> None:
    result = invoke("report", str(postfix), *WINDOW, "--format", "csv", "--by", "host")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].startswith("host,messages,delivered")
    assert [row.split(",")[0] for row in rows[1:]] == ["mx1", "mx2"]


def test_html_has_the_tables_and_the_queue_time_chart(postfix: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    result = invoke("report", str(postfix), *WINDOW, "--format", "html", "-o", str(target))
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    for name in ("hourly", "provider_delays", "domain_delays", "queue_times", "resolutions",
                 "sending_hosts"):  # fmt: skip
        assert f'<table data-table="{name}">' in page
    assert '<figure data-chart="queue_times">' in page
    assert '<td class=n data-column="median_delay_s">15m01s</td>' in page


def test_exim_queue_time_and_deferral_and_no_host_table(tmp_path: Path) -> None:
    """Exim's QT= is the delay; its mainlog names no host of ours, so no host table."""
    folder = _log(tmp_path, "exim", EXIM)
    document = _json(folder)
    assert [(r["provider"], r["median_delay_s"]) for r in document["provider_delays"]] == [
        ("google", 1.5), ("yahoo", 1500.0),
    ]  # fmt: skip
    assert document["resolutions"][0] == {
        "provider": "yahoo", "deferred": 1, "delivered": 1, "failed": 0, "pending": 0,
        "median_to_delivery_s": 1499.0, "p95_to_delivery_s": 1499.0, "median_to_failure_s": None,
    }  # fmt: skip
    assert document["sending_hosts"] == [
        {"source": "exim", "host": None, "attempts": 3, "delivered": 2, "deferred": 1,
         "failed": 0, "blocks": 0, "failure_rate": 0.0},
    ]  # fmt: skip
    text = invoke("report", str(folder), *WINDOW).stdout
    assert "By sending host" not in text
    assert "  google            1    1.5s    1.5s    1.5s" in text
    assert "  yahoo             1  25m00s  25m00s  25m00s" in text


@pytest.mark.parametrize("fmt", ["table", "markdown", "json", "csv", "html"])
def test_an_empty_window_and_a_log_without_deliveries_give_empty_sections(
    postfix: Path, tmp_path: Path, fmt: str
) -> None:
    bounced = _log(tmp_path, "bounces", POSTFIX.splitlines()[8])  # the block alone
    for path, window in ((postfix, ["--since", "2026-11-28"]), (bounced, [])):
        result = invoke("report", str(path), *WINDOW, *window, "--format", fmt)
        assert result.exit_code == 0, result.output
        if fmt == "json":
            document = json.loads(result.stdout)
            assert document["provider_delays"] == document["queue_times"] == []
            assert document["resolutions"] == []
            assert len(document["hourly"]) == 24
        if fmt == "table" and path == bounced:
            lines = result.stdout.splitlines()
            title = next(i for i, line in enumerate(lines) if line.startswith("Queue time"))
            assert lines[title + 1] == "  (none)"
        if fmt == "table" and path == postfix:  # the window is empty: no empty tables
            assert "Queue time" not in result.stdout
        if fmt == "html":  # nor charts of nothing
            assert ("data-chart" in result.stdout) == (path == bounced)


def test_informative_hosts_names_more_than_one_host_or_an_address() -> None:
    def hosts(*names: str | None) -> pl.DataFrame:
        return pl.DataFrame({"host": list(names)}, schema={"host": pl.String()})

    assert not informative_hosts(hosts("mx1"))
    assert not informative_hosts(hosts("mx1", None))
    assert not informative_hosts(hosts(None))
    assert informative_hosts(hosts("mx1", "mx2"))
    assert informative_hosts(hosts("149.72.34.12"))  # an ESP's sending IP
    assert informative_hosts(hosts("2001:db8::25"))


def test_the_quantiles_from_counts_are_polars_own() -> None:
    """Counted per distinct delay, the median and p95 are those of the delays themselves."""
    chooser = random.Random(15)
    delays = [chooser.choice([0.3, 1.7, 2.2, 43.0, 301.0, 7200.0]) for _ in range(997)]
    delays += [chooser.uniform(0, 90_000) for _ in range(300)]
    providers = [chooser.choice(["google", "yahoo", "other"]) for _ in delays]
    events = pl.LazyFrame(
        {"event": "delivered", "provider": providers, "delay_s": delays},
    )
    table = delivery_delays(events, "provider", 10).collect()
    expected = (
        events.collect()
        .group_by("provider")
        .agg(
            pl.len().cast(pl.UInt32).alias("delivered"),
            pl.col("delay_s").median().round(2).alias("median_delay_s"),
            pl.col("delay_s").quantile(0.95, "linear").round(2).alias("p95_delay_s"),
            pl.col("delay_s").max().alias("max_delay_s"),
        )
        .sort(["delivered", "provider"], descending=[True, False])
    )
    assert table["provider"].to_list() == expected["provider"].to_list()
    for column in ("delivered", "median_delay_s", "p95_delay_s", "max_delay_s"):
        assert table[column].to_list() == pytest.approx(expected[column].to_list()), column


def test_sending_hosts_count_a_whole_message_event_for_each_recipient_it_ends() -> None:
    events = pl.LazyFrame(
        {"source": "postfix", "host": "mx1", "event": ["expired", "deferred"],
         "event_id": ["e1", "e2"], "blocklist": [None, None]},
        schema_overrides={"blocklist": pl.String()},
    )  # fmt: skip
    weights = pl.DataFrame({"event_id": ["e1"], "_weight": [3]}, schema_overrides={
        "_weight": pl.UInt32()})  # fmt: skip
    row = sending_hosts(events, weights).collect().row(0, named=True)
    assert (row["attempts"], row["failed"], row["deferred"]) == (4, 3, 1)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0.4s"), (4.24, "4.2s"), (42.4, "42s"), (190, "3m10s"), (3599.4, "59m59s"),
     (7500, "2h05m"), (86_399, "1d00h"), (97_200, "1d03h")],
)  # fmt: skip
def test_durations_read_as_a_person_reads_them(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_a_report_in_several_passes_has_the_same_delays(
    postfix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above `_PASS_EVENTS` events the resolutions split the messages into the report's
    passes: the tables stay the same."""
    from datetime import UTC, datetime

    from bounce_analyzer import report as report_module
    from bounce_analyzer.ingest import summarize_paths

    since = datetime(2026, 11, 20, tzinfo=UTC)
    whole, _ = summarize_paths([str(postfix)], since=since, tz="UTC")
    monkeypatch.setattr(report_module, "_PASS_EVENTS", 3)
    split, _ = summarize_paths([str(postfix)], since=since, tz="UTC")
    assert split.delays.resolutions.height == 3
    for name in ("resolutions", "hourly", "sending_hosts", "provider_delays", "queue_times"):
        assert getattr(split.delays, name).equals(getattr(whole.delays, name)), name


def test_resolutions_counted_by_distinct_time_give_the_medians_of_the_pairs() -> None:
    """The resolutions keep counts per provider, outcome and distinct time taken, share by
    share: their medians and 95th percentiles are those polars computes over the pairs
    themselves, with times to the microsecond and shares that split the providers' pairs."""
    from datetime import UTC, datetime, timedelta

    from bounce_analyzer.delays import resolutions
    from bounce_analyzer.report import _MESSAGE_KEYS, _message, _whole

    rng = random.Random(7)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    rows, pairs = [], []
    for n in range(3000):
        provider = rng.choice(["gmail", "microsoft", "yahoo", None])
        first = start + timedelta(seconds=rng.randrange(86_400))
        # whole seconds for most, microseconds for some: repeated and distinct times
        took = float(rng.randrange(1, 4000)) if n % 3 else round(rng.uniform(1, 4000), 6)
        end = rng.choice(["delivered", "bounced", "deferred"])
        message = {"source": "postfix", "host": "mx1", "message_ref": f"Q{n}",
                   "recipient": f"r{n}@example.com", "provider": provider}  # fmt: skip
        rows.append({**message, "event_id": f"e{n}a", "event": "deferred", "timestamp": first})
        rows.append({**message, "event_id": f"e{n}b", "event": end,
                     "timestamp": first + timedelta(seconds=took)})  # fmt: skip
        pairs.append({"provider": provider or "other", "event": end, "took": took})
    events = pl.DataFrame(rows).lazy().with_columns(_message())
    expected = (
        pl.DataFrame(pairs)
        .group_by("provider")
        .agg(
            pl.len().alias("deferred"),
            pl.col("took").filter(pl.col("event") == "delivered").median().round(2).alias("m"),
            pl.col("took")
            .filter(pl.col("event") == "delivered")
            .quantile(0.95, "linear")
            .round(2)
            .alias("p95"),
            pl.col("took").filter(pl.col("event") == "bounced").median().round(2).alias("f"),
        )
        .sort("provider")
    )
    shares = [events.filter(pl.col("_message").hash() % 4 == n) for n in range(4)]
    for found in (
        resolutions(events, message=_MESSAGE_KEYS, whole=_whole()),
        resolutions(events, message=_MESSAGE_KEYS, whole=_whole(), shares=shares),
    ):
        got = found.sort("provider")
        assert got["provider"].to_list() == expected["provider"].to_list()
        assert got["deferred"].to_list() == expected["deferred"].to_list()
        assert got["median_to_delivery_s"].to_list() == expected["m"].to_list()
        assert got["p95_to_delivery_s"].to_list() == expected["p95"].to_list()
        assert got["median_to_failure_s"].to_list() == expected["f"].to_list()
