"""The report's figures through the real command line (issue 13): what hard and soft mean,
complaints in both views, Postfix's message-wide expiries, `--top`, the window.

The inputs are the bundled sample logs (copied and dated as the golden-file tests date them)
and logs of the seeded generator, which writes lines as Postfix writes them.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _cli import invoke
from _samples import copy_sample_logs, date_files

WINDOW = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]

#: Every log here is dated so: classic syslog stamps ("Nov 27") take its year.
_dated = date_files


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of sample_logs/ whose files are dated 2026-11-28."""
    return copy_sample_logs(tmp_path_factory.mktemp("report"))


def _json(*args: str) -> dict[str, Any]:
    result = invoke("report", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


# --- hard and soft ------------------------------------------------------------------------------


def test_hard_and_soft_split_the_failures_the_same_way_in_every_view(samples: Path) -> None:
    """hard + soft = failed in the totals, the --by table, the categories and the domains: a
    deferral is neither (the category table once counted deferrals as soft)."""
    document = _json(str(samples), *WINDOW, "--top", "100")
    rows = [
        *document["totals"],
        *document["groups"],
        *document["categories"],
        *document["recipient_domains"],
        *document["sender_domains"],
    ]
    assert all(row["hard"] + row["soft"] == row["failed"] for row in rows)
    blocked = next(row for row in document["categories"] if row["category"] == "blocked")
    assert blocked["deferred"] > 0 and blocked["count"] == blocked["failed"] + blocked["deferred"]
    assert (blocked["hard"], blocked["soft"]) == (0, blocked["failed"])  # a block of our IP
    attempts, final = document["totals"]
    assert (attempts["hard"], attempts["soft"]) == (final["hard"], final["soft"])
    assert attempts["hard"] > 0 and attempts["soft"] > 0
    assert document["bounce_types"] == {
        "hard": "the address itself is bad (suppress it)",
        "soft": "any other failure, a block of our IP or domain included however permanent "
        "(fix the cause, or let it retry)",
    }


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_the_report_says_what_hard_and_soft_mean(samples: Path, fmt: str) -> None:
    result = invoke("report", str(samples), *WINDOW, "--format", fmt)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "hard = the address itself is bad (suppress it); soft = any other failure, a block " in (
        text
    )


# --- complaints ---------------------------------------------------------------------------------


def test_complaints_are_counted_in_the_final_outcome_view_too(samples: Path) -> None:
    """The samples hold 3 complaints (a SendGrid spamreport, Mailgun complaints): each is
    counted beside the delivery it is about, not as a message of its own."""
    document = _json(str(samples), *WINDOW)
    attempts, final = document["totals"]
    assert attempts["complained"] == final["complained"] == 3
    assert sum(group["complained"] for group in document["groups"]) == 3
    assert final["total"] == final["delivered"] + final["deferred"] + final["failed"]
    assert sum(group["messages"] for group in document["groups"]) == final["total"]


# --- Postfix's message-wide expiry --------------------------------------------------------------


def _generated(folder: Path, seed: int) -> Path:
    log = folder / f"postfix-{seed}.log"
    if not log.exists():
        subprocess.run(
            [sys.executable, "-m", "bounce_analyzer.generate", "postfix", "--lines", "200000",
             "--seed", str(seed), "--days", "2", "--tz", "UTC", "-o", str(log)],
            check=True,
        )  # fmt: skip
        _dated(folder)
    return log


def _csv(*args: str) -> pl.DataFrame:
    result = invoke("report", *args, "--format", "csv")
    assert result.exit_code == 0, result.output
    return pl.read_csv(io.StringIO(result.stdout), infer_schema_length=None)


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(min_value=1, max_value=10_000))
def test_attempts_are_never_fewer_than_messages(seed: int, tmp_path: Path) -> None:
    """A qmgr `status=expired, returned to sender` line names no recipient: it is the final
    outcome of each recipient still deferred, and is counted as an attempt for each of them,
    so that no group has fewer attempts than messages, and no row without a recipient domain
    holds attempts without messages (once: 0 messages, 1,585 attempts)."""
    log = _generated(tmp_path, seed)
    window = ["--since", "2026-01-01", "--tz", "UTC", "--quiet", "--top", "100000"]
    groups = _csv(str(log), *window, "--by", "provider,category")
    assert groups.height > 20
    assert groups.filter(pl.col("attempts") < pl.col("messages")).is_empty()
    expired = groups.filter(pl.col("category") == "expired")
    assert expired["messages"].sum() > 0
    assert expired["attempts"].sum() >= expired["messages"].sum()
    domains = _csv(str(log), *window, "--by", "recipient_domain")
    assert domains.filter(pl.col("attempts") < pl.col("messages")).is_empty()
    # what has no recipient (an expiry that ends no recipient seen) is a message of its own
    without = domains.filter(pl.col("recipient_domain").is_null())
    assert without.filter(pl.col("attempts") != pl.col("messages")).is_empty()
    totals = {row["view"]: row for row in _json(str(log), *window)["totals"]}
    assert domains["messages"].sum() == totals["final outcomes"]["total"]
    assert domains["attempts"].sum() == totals["attempts"]["total"]


# --- --top --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_top_cuts_the_by_table_in_every_format(samples: Path, fmt: str) -> None:
    args = [str(samples), *WINDOW, "--by", "recipient_domain", "--top", "3"]
    whole = _json(str(samples), *WINDOW, "--by", "recipient_domain", "--top", "1000")
    domains = [group["recipient_domain"] for group in whole["groups"]]
    more = len(domains) - 3
    assert more > 10
    result = invoke("report", *args, "--format", fmt)
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        assert pl.read_csv(io.StringIO(result.stdout))["recipient_domain"].to_list() == domains[:3]
        return
    if fmt == "json":
        document = json.loads(result.stdout)
        assert [group["recipient_domain"] for group in document["groups"]] == domains[:3]
        assert document["omitted"]["groups"] == more
        assert len(document["recipient_domains"]) == 3
        assert all(len(c["top_messages"]) <= 3 for c in document["categories"])
        return
    by = result.stdout.split("By recipient_domain")[1].split("Failure categories")[0]
    rows = [line.strip("| ").split()[0] for line in by.splitlines() if re.search(r"\d%", line)]
    assert rows == domains[:3]
    assert f"... and {more} more rows (--top)" in by


def test_top_help_says_where_it_does_not_cut() -> None:
    result = invoke("report", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    assert (
        "The totals, the category table, the advised waits, the daily trend, the hourly "
        "traffic, the queue times and the inbound reasons and transports are always whole."
    ) in text
    assert (
        "the unclassified texts, the delivery delays, the deferrals resolved, the sending "
        "hosts, the inbound clients and recipients."
    ) in text
    assert "End of the window, exclusive: --since 2026-11-01 --until 2026-11-02 is 1 November" in (
        text
    )


# --- the window ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "store"
    result = invoke("ingest", "--store", str(path), "--tz", "UTC", "--quiet", str(samples))
    assert result.exit_code == 0, result.output
    return path


EMPTY = (
    "no events between 2026-12-01 00:00 UTC and 2026-12-02 00:00 UTC; the store holds "
    "2026-11-26 .. 2026-11-27 (2 days)"
)


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_an_empty_window_says_which_days_the_store_holds(store: Path, fmt: str) -> None:
    result = invoke(
        "report", "--store", str(store), "--since", "2026-12-01", "--until", "2026-12-02",
        "--format", fmt,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        assert result.stderr == EMPTY + "\n"
    elif fmt == "json":
        assert json.loads(result.stdout)["notes"] == [EMPTY]
    else:
        note = result.stdout.split("\n\n")[1 if fmt == "table" else 2]
        assert " ".join(note.split()) == EMPTY  # wrapped within the width (issue 15)


def test_an_empty_window_over_files_says_which_days_they_hold(samples: Path) -> None:
    result = invoke("report", str(samples / "postfix"), "--since", "2026-11-28", "--tz", "UTC")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n\n")[1].startswith(
        "no events between 2026-11-28 00:00 UTC and now; the input holds 2026-11-26 .. "
        "2026-11-27 (2 days)"
    )


# --- direction ----------------------------------------------------------------------------------

#: A Debian server's log of both directions (tests/data/direction/README.md says what it holds).
DIRECTION_LOGS = Path(__file__).resolve().parent / "data" / "direction"


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data/direction's logs, dated 2026-11-28 12:00 (their lines are of 28 November)."""
    folder = tmp_path_factory.mktemp("direction") / "logs"
    shutil.copytree(DIRECTION_LOGS, folder)
    (folder / "README.md").unlink()
    _dated(folder)
    return folder


BOTH = ["--since", "2026-11-28", "--until", "2026-11-29", "--tz", "UTC", "--quiet"]


def _events(logs: Path) -> pl.DataFrame:
    """The events of `logs` as `parse` gives them (with their direction and blocklist)."""
    result = invoke("parse", str(logs), "--tz", "UTC", "--quiet", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    return pl.read_ndjson(io.StringIO(result.stdout), infer_schema_length=None)


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_the_report_says_which_direction_it_shows_and_what_it_left_out(
    both: Path, fmt: str
) -> None:
    counts = _events(both).group_by("direction").len()
    held = dict(counts.iter_rows())
    assert held["inbound"] > 0 and held["internal"] > 0  # the amavis hop
    result = invoke("report", str(both), *BOTH, "--format", fmt)
    assert result.exit_code == 0, result.output
    if fmt == "json":
        document = json.loads(result.stdout)
        assert (document["direction"], document["directions"]) == ("outbound", held)
        assert document["inbound"] is None
        assert document["totals"][0]["total"] == held["outbound"]
        return
    header = " ".join(result.stdout.split("\n\n")[0 if fmt == "table" else 1].split())
    assert header.endswith(
        f"outbound mail (not counted: {held['inbound']} inbound rejects and deliveries, "
        f"--direction inbound; {held['internal']} internal hop"
        f"{'s' if held['internal'] > 1 else ''}, --direction all)"
    )
    assert "Inbound:" not in result.stdout


def test_outbound_inbound_and_all_add_up(both: Path) -> None:
    totals = {
        direction: _json(str(both), *BOTH, "--direction", direction)["totals"][0]
        for direction in ("outbound", "inbound", "all")
    }
    held = dict(_events(both).group_by("direction").len().iter_rows())
    assert totals["outbound"]["total"] == held["outbound"]
    assert totals["inbound"]["total"] == held["inbound"]
    assert totals["all"]["total"] == sum(held.values())  # internal hops only in all
    for column in ("delivered", "deferred", "failed", "hard", "soft"):
        assert totals["all"][column] >= totals["outbound"][column] + totals["inbound"][column]


def test_the_inbound_section_gives_rejects_clients_recipients_and_deliveries(both: Path) -> None:
    document = _json(str(both), *BOTH, "--direction", "inbound", "--top", "100")
    inbound = document["inbound"]
    events = _events(both).filter(pl.col("direction") == "inbound")
    rejects = events.filter(pl.col("event") == "rejected")
    reasons = {(r["reject_reason"], r["blocklist"]): r["rejects"] for r in inbound["rejects"]}
    assert sum(reasons.values()) == rejects.height
    # postscreen, smtpd and Exim refusing Spamhaus-listed clients: one reason, the list named
    # as the classification names it
    listed = rejects.filter(pl.col("diagnostic").str.contains("spamhaus")).group_by("blocklist")
    assert {("blocklist", name): n for name, n in listed.len().iter_rows()} == {
        key: n for key, n in reasons.items() if key[0] == "blocklist"
    }
    assert {reason for reason, _ in reasons} == {
        "blocklist", "relay access denied", "helo/ptr checks", "unknown user", "content/milter",
    }  # fmt: skip
    assert reasons[("relay access denied", None)] == 3  # Postfix smtpd, submission, Exim
    clients = {(c["client_host"], c["client_ip"]) for c in inbound["clients"]}
    assert (None, "203.0.113.45") in clients  # postscreen names no host
    assert ("mail.example.org", "192.0.2.25") in clients
    recipients = {r["recipient"]: r for r in inbound["recipients"]}
    assert recipients["bob@example.com"]["rejected"] == 2  # Postfix and Exim, one each
    assert "victim@example.net" not in recipients  # a relay attempt is not ours
    deliveries = {d["transport"]: d for d in inbound["deliveries"]}
    assert deliveries["lmtp"]["delivered"] >= 1 and deliveries["lmtp"]["failed"] == 1
    assert {"local", "virtual", "pipe", "maildir_home", "dovecot_lmtp"} <= set(deliveries)
    # the main tables count inbound mail only
    assert document["totals"][0]["total"] == events.height


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_the_inbound_section_is_shown_for_inbound_and_all(both: Path, fmt: str) -> None:
    for direction in ("inbound", "all"):
        result = invoke("report", str(both), *BOTH, "--direction", direction, "--format", fmt)
        assert result.exit_code == 0, result.output
        for title in (
            "Inbound: our server's rejects by reason",
            "Inbound: clients refused most",
            "Inbound: local recipients aimed at most",
            "Inbound: deliveries into our mailboxes by transport",
        ):
            assert title in result.stdout, (direction, title)


def test_csv_gives_the_inbound_tables_through_by(both: Path) -> None:
    reasons = _csv(str(both), *BOTH, "--direction", "inbound", "--by", "reject_reason,blocklist")
    document = _json(str(both), *BOTH, "--direction", "inbound")
    expected = {
        (r["reject_reason"], r["blocklist"]): r["rejects"] for r in document["inbound"]["rejects"]
    }
    rejected = reasons.filter(pl.col("reject_reason").is_not_null())
    assert {
        (r, b): n for r, b, n in rejected.select("reject_reason", "blocklist", "failed").rows()
    } == (expected)
    by_direction = _csv(str(both), *BOTH, "--direction", "all", "--by", "direction")
    assert set(by_direction["direction"]) == {"outbound", "inbound", "internal"}


def test_the_advice_is_that_of_the_direction(both: Path) -> None:
    """Our IP on Spamhaus (Outlook's bounce) and a client on Spamhaus (our refusal) are both
    `blocked`, with different advice: the rules' `advice` and `advice_inbound`."""
    from bounce_analyzer.rules import load_rules

    rules = load_rules().categories
    advice = dict(rules.select("category", "advice").iter_rows())
    inbound = (
        dict(rules.select("category", "advice_inbound").iter_rows())
        if "advice_inbound" in rules.columns
        else {}
    )
    document = _json(str(both), *BOTH, "--direction", "all")
    rows = {(c["category"], c["direction"]): c for c in document["categories"]}
    assert rows[("blocked", "outbound")]["advice"] == advice["blocked"]
    assert rows[("blocked", "inbound")]["advice"] == (inbound.get("blocked") or None)
    assert rows[("blocked", "outbound")]["advice"] != rows[("blocked", "inbound")]["advice"]
    table = invoke("report", str(both), *BOTH, "--direction", "all").stdout
    assert "  blocked (inbound)\n" in table and "  blocked (outbound)\n" in table


def test_our_domains_and_spammers_are_not_in_the_outbound_tables(tmp_path: Path) -> None:
    """On a generated day of a server of both directions: before issue 13 our own domain
    topped the recipient domains (100% failed) and spammers' HELO names were among our
    senders."""
    from bounce_analyzer.generate import world

    ours = {domain.name for domain in world.OWN_DOMAINS} | {world.MYHOSTNAME}
    spammers = set(world.HELOS)
    logs = tmp_path / "logs"
    logs.mkdir()
    for source, lines in (("postfix", 100_000), ("exim", 50_000)):
        subprocess.run(
            [sys.executable, "-m", "bounce_analyzer.generate", source, "--lines", str(lines),
             "--seed", "1", "--days", "1", "--tz", "UTC", "-o", str(logs / f"{source}.log")],
            check=True,
        )  # fmt: skip
    _dated(logs)
    window = ["--since", "2026-01-01", "--tz", "UTC", "--quiet", "--top", "100000"]
    outbound = _json(str(logs), *window, "--by", "recipient_domain")
    recipients = {g["recipient_domain"] for g in outbound["groups"]}
    senders = {s["sender_domain"] for s in outbound["sender_domains"]}
    assert not recipients & (ours | spammers)
    assert not senders & spammers
    assert outbound["directions"]["inbound"] > 0
    everything = _json(str(logs), *window, "--by", "recipient_domain", "--direction", "all")
    assert {g["recipient_domain"] for g in everything["groups"]} & ours  # they were there


def test_blocks_are_grouped_by_the_list_the_reply_names(samples: Path) -> None:
    # issue 14: the sample logs' outbound refusals that name Microsoft's block list, Proofpoint
    # and Spamhaus, counted by list with the providers refused and the page to look up
    events = _events(samples).filter(pl.col("timestamp").str.starts_with("2026-11-2"))
    outbound = events.filter(
        (pl.col("direction") == "outbound")
        & pl.col("blocklist").is_not_null()
        & pl.col("event").is_in(["bounced", "deferred", "rejected", "expired", "dropped"])
    )
    document = _json(str(samples), *WINDOW)
    rows = {row["blocklist"]: row for row in document["blocklists"]}
    assert set(rows) == set(outbound["blocklist"]) >= {"microsoft", "proofpoint", "spamhaus"}
    for name, count in outbound.group_by("blocklist").len().iter_rows():
        assert rows[name]["attempts"] == count
        assert rows[name]["failed"] + rows[name]["deferred"] == count
    assert rows["microsoft"]["providers"].split(", ")[0] == "microsoft"
    assert rows["spamhaus"]["lookup"] == "https://check.spamhaus.org/"
    assert [row["attempts"] for row in document["blocklists"]] == sorted(
        (row["attempts"] for row in document["blocklists"]), reverse=True
    )
    table = invoke("report", str(samples), *WINDOW)
    assert table.exit_code == 0, table.output
    section = table.stdout.split("Blocks by list")[1].split("\n\n")[0]
    assert "https://check.spamhaus.org/" in section and "microsoft" in section
    # an inbound report lists the clients' lists, a report of all mail names the direction
    inbound = _json(str(samples), *WINDOW, "--direction", "inbound")["blocklists"]
    assert {row["direction"] for row in inbound} == {"inbound"}
    every = _json(str(samples), *WINDOW, "--direction", "all")["blocklists"]
    assert {row["direction"] for row in every} == {"inbound", "outbound"}


# --- unclassified texts that differ past the cut -------------------------------------------------


def _refused(number: int, zone: str) -> str:
    """A Postfix bounce whose reply no rule reads (its 550 decides it), long enough that the
    table cuts it before the words that tell it from the others: the zone named at its end."""
    return (
        f"Nov 28 10:0{number}:11 mx1 postfix/smtp[510{number}]: {number}A2B3C4D5E: "
        f"to=<u{number}@example.net>, relay=mx.example.net[198.51.100.20]:25, delay=0.9, "
        f"delays=0.1/0/0.4/0.4, dsn=5.0.0, status=bounced (host mx.example.net[198.51.100.20] "
        f"said: 550 5.0.0 <u{number}@example.net>... Refused by the site rules of this system, "
        f"which the postmaster keeps in the file of zone {zone} (in reply to RCPT TO command))"
    )


@pytest.mark.parametrize("width", ["80", "100"])
def test_unclassified_texts_that_differ_past_the_cut_read_differently(
    tmp_path: Path, width: str
) -> None:
    """Issue 15: the unclassified texts, cut at the width as the top messages are, showed two
    identical rows; each now shows the zone its text names, and keeps its count."""
    log = tmp_path / "mail.log"
    lines = [_refused(1, "alpha"), _refused(2, "alpha"), _refused(3, "bravo")]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _dated(tmp_path)
    window = ["--since", "2026-11-28", "--until", "2026-11-29", "--tz", "UTC", "--quiet"]
    document = _json(str(log), *window)
    assert [(t["count"], t["rule_id"]) for t in document["unclassified"]] == [
        (2, "reply:550"),
        (1, "reply:550"),
    ]
    result = invoke("report", str(log), *window, "--width", width)
    assert result.exit_code == 0, result.output
    section = result.stdout.split("Unclassified texts")[1].split("\n\n")[0]
    rows = [line for line in section.splitlines() if re.match(r" +\d+  other ", line)]
    assert len(rows) == 2 and all(len(row) <= int(width) for row in rows), section
    assert [(row.split()[0], row.split()[-1]) for row in rows] == [("2", "alpha"), ("1", "bravo")]
    assert all("[550 5.0.0] <address>... " in row and "…" in row for row in rows)


# --- outputs that cannot be written ----------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["report"], ["report", "--format", "html", "--compare"], ["metrics"]]
)
def test_an_output_that_cannot_be_written_fails_before_any_reading(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Issue 15: `report -o DIR/missing/out.html` said so only after the whole report was
    computed. The output is now made first, as `parse -o` makes it: nothing is read (the
    inputs or the store are never opened) when it cannot be."""
    from bounce_analyzer import cli, report

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("read before the output was made")

    monkeypatch.setattr(cli, "_window_events", never)
    monkeypatch.setattr(report, "summarize", never)  # (cli imports it when a report runs)
    target = tmp_path / "missing" / "out.html"
    for inputs in ([str(samples)], ["--store", str(tmp_path / "no store")]):
        result = invoke(*command, *inputs, *WINDOW, "-o", str(target))
        assert result.exit_code == 1, result.output
        assert result.output == f"Error: cannot write {target}: no such file or directory\n"
    assert sorted(tmp_path.iterdir()) == []


def test_the_daily_trend_gives_each_days_attempts_and_failure_rate(samples: Path) -> None:
    """Days of unequal volume compare by their rate, as the hourly traffic's hours do: the
    text forms add each day's attempts and failure rate to the JSON's counts."""
    document = _json(str(samples), *WINDOW)
    expected = []
    for day in document["daily"]:
        attempts = day["delivered"] + day["deferred"] + day["failed"] + day["complained"]
        rate = f"{100 * day['failed'] / attempts:.1f}%"
        expected.append([day["date"], str(attempts), str(day["failed"]), rate])
    assert len(expected) == 2
    table = invoke("report", str(samples), *WINDOW).stdout
    section = table.split("Daily trend (attempts by UTC day)\n")[1].split("\n\n")[0]
    head, *rows = section.splitlines()
    assert head.split() == ["date", "attempts", "delivered", "deferred", "failed", "complained",
                            "fail", "%"]  # fmt: skip
    assert [[r.split()[i] for i in (0, 1, 4, 6)] for r in rows] == expected
    # and the sending hosts' rows of no host (Exim's mainlog names none) read `-`, not blank
    hosts = table.split("By sending host")[1].split("\n\n")[0].splitlines()
    assert [row.split()[:2] for row in hosts if row.split()[0] == "exim"] == [["exim", "-"]]
