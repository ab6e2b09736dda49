"""`report --compare` through the real command line (issue 15): each rate beside the previous
period's and the change in points, in every format, from files and from a store; and the top
messages that a cut made look alike (Gmail's 5.7.26 replies), told apart.

The input is two weeks of a small Postfix log whose outcomes are known, written as Postfix
writes them (the replies are those of tests/_samples.py's bundled logs):

- the previous week (17 November 2026): 10 messages to gmail.com, 1 bounced (550 5.1.1
  user_unknown); 5 to umbrella.example, 1 refused by Spamhaus (blocked). 15 messages, 2 failed.
- this week (24 November 2026): 12 messages to gmail.com, 5 bounced by Gmail's 5.7.26
  "sender is unauthenticated" (3 for SPF of example.com, 1 of news.example.com, 1 of
  status.example.com: they differ only past the table's cut) and 1 of the 7 delivered after a
  deferral (452 4.2.2, mailbox_full); 4 to yahoo.com, a provider new this week, 1 bounced
  (user_unknown). 16 messages, 6 failed; 17 attempts.

Every expected figure below is computed by hand from these counts.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from _cli import invoke
from _samples import copy_sample_logs, date_files
from bounce_analyzer import cli
from bounce_analyzer.compare import distinguish

#: This week, and (implied by --compare) the week before: 2026-11-14 .. 2026-11-21.
WEEK = ["--since", "2026-11-21", "--until", "2026-11-28", "--tz", "UTC", "--quiet"]

_GMAIL = "gmail-smtp-in.l.google.com[142.250.27.26]:25"
_YAHOO = "mta5.am0.yahoodns.net[67.195.204.72]:25"
_UMBRELLA = "mail.umbrella.example[198.51.220.156]:25"

_SENT = "250 2.0.0 OK  1764000000 d4b8d713ee133-h2kakrff4nsi.1 - gsmtp"
_NO_SUCH_USER = (
    "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.1.1 The email account that "
    "you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's "
    "email address for typos or 550-5.1.1 unnecessary spaces. For more information, go to "
    "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser d4b8d713ee133-h2kakrff4nsi"
    "263787856sx.705 - gsmtp (in reply to RCPT TO command)"
)
_SPAMHAUS = (
    "host mail.umbrella.example[198.51.220.156] said: 554 5.7.1 Service unavailable; Client "
    "host [203.0.113.25] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/"
    "203.0.113.25 (in reply to RCPT TO command)"
)
_OVER_QUOTA = (
    "host gmail-smtp-in.l.google.com[142.250.27.26] said: 452-4.2.2 The recipient's inbox is "
    "out of storage space. Please direct the 452-4.2.2 recipient to 452 4.2.2  "
    "https://support.google.com/mail/?p=OverQuotaTemp 5a0e701c593b6-uqrzuxftrfsi05905289mmh"
    ".590 - gsmtp (in reply to RCPT TO command)"
)
_NO_YAHOO_ACCOUNT = (
    "host mta5.am0.yahoodns.net[67.195.204.72] said: 554 delivery error: dd This user "
    "doesn't have a yahoo.com account ({rcpt}) [0] - mta4021.mail.bf1.yahoo.com (in reply to "
    "end of DATA command)"
)


def _unauthenticated(domain: str, token: str) -> str:
    """Gmail's 5.7.26 for mail whose SPF for `domain` did not pass: the same words up to the
    ninetieth character and well past it."""
    return (
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.26 This mail has been "
        "blocked because the sender is unauthenticated. 550-5.7.26 Gmail requires all senders "
        "to authenticate with either SPF or DKIM. 550-5.7.26 550-5.7.26  Authentication "
        "results: 550-5.7.26  DKIM = did not pass 550-5.7.26  SPF [" + domain + "] with ip: "
        "[203.0.113.25] = did not pass 550-5.7.26 550-5.7.26  For instructions on setting up "
        "authentication, go to 550 5.7.26  https://support.google.com/mail/answer/81126"
        f"#authentication {token} - gsmtp (in reply to end of DATA command)"
    )


def _message(day: int, number: int, rcpt: str, relay: str, *tries: tuple[str, str]) -> list[str]:
    """The lines of one message to `rcpt`: queued, each try (dsn, status + reply), removed."""
    qid = f"{day:02d}{number:04d}A1B2"
    stamp = f"Nov {day} 10:{number:02d}"
    lines = [
        f"{stamp}:00 mx1 postfix/qmgr[1200]: {qid}: from=<news@example.com>, size=4200, "
        "nrcpt=1 (queue active)"
    ]
    for second, (dsn, outcome) in enumerate(tries, start=1):
        lines.append(
            f"{stamp}:{second:02d} mx1 postfix/smtp[4242]: {qid}: to=<{rcpt}>, relay={relay}, "
            f"delay=1.2, delays=0.1/0.1/0.5/0.5, dsn={dsn}, status={outcome}"
        )
    return [*lines, f"{stamp}:59 mx1 postfix/qmgr[1200]: {qid}: removed"]


def _sent(dsn: str = "2.0.0") -> tuple[str, str]:
    return dsn, f"sent ({_SENT})"


def _weeks() -> list[str]:
    """The two weeks' lines (see the module's docstring)."""
    lines: list[str] = []
    for n in range(10):  # the previous week: gmail.com
        outcome = ("5.1.1", f"bounced ({_NO_SUCH_USER})") if n == 0 else _sent()
        lines += _message(17, n, f"user{n}@gmail.com", _GMAIL, outcome)
    for n in range(5):  # and umbrella.example
        outcome = ("5.7.1", f"bounced ({_SPAMHAUS})") if n == 0 else _sent()
        lines += _message(17, 10 + n, f"user{n}@umbrella.example", _UMBRELLA, outcome)
    domains = ["example.com"] * 3 + ["news.example.com", "status.example.com"]
    for n in range(12):  # this week: gmail.com
        tries = [_sent()]
        if n < 5:
            reply = _unauthenticated(domains[n], f"1f75187350073-rq6eiabf3dsi0249000{n}kgt.444")
            tries = [("5.7.26", f"bounced ({reply})")]
        elif n == 5:
            tries = [("4.2.2", f"deferred ({_OVER_QUOTA})"), _sent()]
        lines += _message(24, n, f"user{n}@gmail.com", _GMAIL, *tries)
    for n in range(4):  # and yahoo.com
        rcpt = f"user{n}@yahoo.com"
        refused = ("5.0.0", f"bounced ({_NO_YAHOO_ACCOUNT.format(rcpt=rcpt)})")
        outcome = refused if n == 0 else _sent()
        lines += _message(24, 20 + n, rcpt, _YAHOO, outcome)
    return lines


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two weeks' log, dated 2026 (its stamps have no year)."""
    folder = tmp_path_factory.mktemp("compare")
    path = folder / "mail.log"
    path.write_text("\n".join(_weeks()) + "\n", encoding="utf-8")
    date_files(folder)
    return path


@pytest.fixture(scope="module")
def store(log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the two weeks (a day partition each)."""
    folder = tmp_path_factory.mktemp("compare-store") / "store"
    result = invoke("ingest", str(log), "--store", str(folder), "--tz", "UTC", "--quiet")
    assert result.exit_code == 0, result.output
    return folder


def _report(*args: str, fmt: str = "json") -> str:
    result = invoke("report", *args, "--format", fmt)
    assert result.exit_code == 0, result.output
    return result.stdout


def _json(*args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_report(*args))
    return document


def _row(rows: list[dict[str, Any]], **keys: Any) -> dict[str, Any]:
    found = [row for row in rows if all(row.get(k) == v for k, v in keys.items())]
    assert len(found) == 1, (keys, rows)
    return found[0]


#: The rates by hand: (this week's, the previous week's, the change) of each compared row.
FINAL = (round(6 / 16, 4), round(2 / 15, 4), round(6 / 16 - 2 / 15, 4))  # 37.5%, 13.3%, +24.2
ATTEMPTS = (round(6 / 17, 4), round(2 / 15, 4), round(6 / 17 - 2 / 15, 4))  # 35.3%, 13.3%, +22.0
GOOGLE = (round(5 / 12, 4), round(1 / 10, 4), round(5 / 12 - 1 / 10, 4))  # 41.7%, 10.0%, +31.7
#: The categories' shares of the failed and deferred attempts: 7 this week, 2 the week before.
USER_UNKNOWN = (round(1 / 7, 4), round(1 / 2, 4), round(1 / 7 - 1 / 2, 4))  # 14.3%, 50%, -35.7


def _compared(row: dict[str, Any], figure: str) -> tuple[Any, Any, Any]:
    return row[figure], row[f"previous_{figure}"], row[f"{figure}_change"]


@pytest.mark.parametrize("where", ["paths", "store"])
def test_json_sets_the_previous_week_beside_each_rate(where: str, log: Path, store: Path) -> None:
    """The same figures from the files and from a store (which reads the previous week's day
    partitions for it)."""
    inputs = [str(log)] if where == "paths" else ["--store", str(store)]
    document = _json(*inputs, *WEEK, "--compare", "--top", "100")
    assert document["previous"] == {
        "since": "2026-11-14T00:00:00+00:00",
        "until": "2026-11-21T00:00:00+00:00",
        "directions": {"outbound": 15},
        "totals": [
            {"view": "attempts", "total": 15, "delivered": 13, "deferred": 0, "failed": 2,
             "hard": 1, "soft": 1, "complained": 0, "failure_rate": round(2 / 15, 4)},
            {"view": "final outcomes", "total": 15, "delivered": 13, "deferred": 0, "failed": 2,
             "hard": 1, "soft": 1, "complained": 0, "failure_rate": round(2 / 15, 4)},
        ],
    }  # fmt: skip
    totals = document["totals"]
    assert _compared(_row(totals, view="final outcomes"), "failure_rate") == FINAL
    assert _compared(_row(totals, view="attempts"), "failure_rate") == ATTEMPTS
    groups = document["groups"]
    assert _compared(_row(groups, provider="google"), "failure_rate") == GOOGLE
    # a provider new this week has no previous figure; one of the previous week alone is not
    # among this week's rows (the --by table is this week's top)
    assert _compared(_row(groups, provider="yahoo"), "failure_rate") == (0.25, None, None)
    assert [row["provider"] for row in groups] == ["google", "yahoo"]
    domains = document["recipient_domains"]
    assert _compared(_row(domains, recipient_domain="gmail.com"), "failure_rate") == GOOGLE
    senders = document["sender_domains"]
    assert _compared(_row(senders, sender_domain="example.com"), "failure_rate") == FINAL
    categories = document["categories"]
    assert _compared(_row(categories, category="user_unknown"), "share") == USER_UNKNOWN
    assert _compared(_row(categories, category="auth_failure"), "share") == (
        round(5 / 7, 4),
        None,
        None,
    )
    # a category of the previous week alone: no attempt this week, a share of nought, its
    # previous share and the fall (as a list's attempts fall to 0 below)
    blocked = _row(categories, category="blocked")
    assert (blocked["count"], blocked["failed"], blocked["top_messages"]) == (0, 0, None)
    assert _compared(blocked, "share") == (0.0, 0.5, -0.5)
    # and the blocklist that refused us the week before, none this week: one fewer attempt
    spamhaus = _row(document["blocklists"], blocklist="spamhaus")
    assert _compared(spamhaus, "attempts") == (0, 1, -1)
    assert spamhaus["lookup"] == "https://check.spamhaus.org/"
    assert document["notes"] == [
        "compared with the previous period, 2026-11-14 00:00 UTC to 2026-11-21 00:00 UTC: prev "
        "is its figure, change the difference (points of a rate, attempts of a blocklist)"
    ]


def test_without_compare_the_report_is_as_before(log: Path) -> None:
    document = _json(str(log), *WEEK)
    assert document["previous"] is None and document["notes"] == []
    assert "previous_failure_rate" not in document["totals"][0]
    assert "previous_share" not in document["categories"][0]
    text = _report(str(log), *WEEK, fmt="table")
    assert " prev " not in text and " change" not in text


def _columns(text: str, title: str) -> tuple[list[str], list[list[str]]]:
    """The heading and the rows of the aligned table under `title` (cells split at two
    spaces or more)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    heads = re.split(r"\s{2,}", lines[start].strip())
    rows = []
    for line in lines[start + 1 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(heads):
            break
        rows.append(cells)
    return heads, rows


def test_table_shows_prev_and_change_beside_each_rate(log: Path) -> None:
    text = _report(str(log), *WEEK, "--compare", "--width", "160", fmt="table")
    heads, rows = _columns(text, "Totals")
    at = heads.index("fail %")
    assert heads[at : at + 3] == ["fail %", "prev", "change"]
    assert [row[at : at + 3] for row in rows] == [
        ["35.3%", "13.3%", "+22.0 pt"],  # attempts
        ["37.5%", "13.3%", "+24.2 pt"],  # final outcomes
    ]
    heads, rows = _columns(text, "By provider")
    at = heads.index("fail %")
    assert {row[0]: row[at : at + 3] for row in rows} == {
        "google": ["41.7%", "10.0%", "+31.7 pt"],
        "yahoo": ["25.0%", "-", "-"],
    }
    heads, rows = _columns(text, "Failure categories")
    at = heads.index("share")
    shares = {row[0]: row[at : at + 3] for row in rows}
    assert shares["user_unknown"] == ["14.3%", "50.0%", "-35.7 pt"]
    assert shares["auth_failure"] == ["71.4%", "-", "-"]
    assert shares["blocked"] == ["0.0%", "50.0%", "-50.0 pt"]
    heads, _ = _columns(text, "Blocks by list")
    assert heads[:4] == ["blocklist", "attempts", "prev", "change"]
    blocks = text.split("Blocks by list", 1)[1].splitlines()[2]
    assert blocks.split()[:4] == ["spamhaus", "0", "1", "-1"]  # (and no provider this week)
    assert "compared with the previous period, 2026-11-14 00:00 UTC to 2026-11-21 00:00 UTC" in (
        " ".join(text.split())
    )


def test_markdown_shows_the_same_columns_within_its_width(log: Path) -> None:
    text = _report(str(log), *WEEK, "--compare", fmt="markdown")
    assert max(len(line) for line in text.splitlines()) <= 100

    def table(title: str) -> list[list[str]]:
        lines = text.split(f"## {title}", 1)[1].split("\n\n")[1].splitlines()
        return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]

    totals = table("Totals")
    at = totals[0].index("fail %")
    assert totals[0][at : at + 3] == ["fail %", "prev", "change"]
    assert [row[at : at + 3] for row in totals[2:]] == [
        ["35.3%", "13.3%", "+22.0 pt"],
        ["37.5%", "13.3%", "+24.2 pt"],
    ]
    groups = table("By provider")
    assert {row[0]: row[at - 1 : at + 2] for row in groups[2:]} == {
        "google": ["41.7%", "10.0%", "+31.7 pt"],
        "yahoo": ["25.0%", "-", "-"],
    }


def test_csv_holds_the_previous_rate_and_the_change(log: Path) -> None:
    lines = _report(str(log), *WEEK, "--compare", fmt="csv").splitlines()
    heads = lines[0].split(",")
    google = dict(zip(heads, lines[1].split(","), strict=True))
    assert google["provider"] == "google"
    assert [float(google[c]) for c in ("failure_rate", "previous_failure_rate")] == [
        GOOGLE[0],
        GOOGLE[1],
    ]
    assert float(google["failure_rate_change"]) == GOOGLE[2]


class _Cells(HTMLParser):
    """The cells of an HTML report's tables: (table, column, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = ""
        self.column: str | None = None
        self.cells: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "table":
            self.table = named.get("data-table") or ""
        elif tag == "td":
            self.column = named.get("data-column")

    def handle_data(self, data: str) -> None:
        if self.column:
            self.cells.append((self.table, self.column, data))
            self.column = None


def test_html_shows_the_same_columns(log: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = invoke("report", str(log), *WEEK, "--compare", "--format", "html", "-o", str(page))
    assert result.exit_code == 0, result.output
    parser = _Cells()
    parser.feed(page.read_text(encoding="utf-8"))
    changes = [(table, text) for table, column, text in parser.cells if column.endswith("_change")]
    assert changes == [
        ("totals", "+22.0 pt"),
        ("totals", "+24.2 pt"),
        ("groups", "+31.7 pt"),
        ("groups", "-"),
        # auth_failure and mailbox_full are new, user_unknown fell, blocked is of the week
        # before alone: none of this week's
        *[("categories", text) for text in ("-", "-", "-35.7 pt", "-50.0 pt")],
        ("recipient_domains", "+31.7 pt"),
        ("recipient_domains", "-"),
        ("sender_domains", "+24.2 pt"),  # example.com: every message
        ("blocklists", "-1"),
    ]
    assert ("categories", "previous_share", "50.0%") in parser.cells


def test_default_until_is_now_and_the_previous_period_as_long(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--since 7d --compare` at noon on 28 November: this week from noon on the 21st, the
    previous one from noon on the 14th (the same figures: no event falls between)."""
    monkeypatch.setattr(cli, "_now", lambda: datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    document = _json(str(log), "--since", "7d", "--tz", "UTC", "--quiet", "--compare")
    assert (document["since"], document["until"]) == (
        "2026-11-21T12:00:00+00:00",
        "2026-11-28T12:00:00+00:00",
    )
    assert (document["previous"]["since"], document["previous"]["until"]) == (
        "2026-11-14T12:00:00+00:00",
        "2026-11-21T12:00:00+00:00",
    )
    assert _compared(_row(document["totals"], view="final outcomes"), "failure_rate") == FINAL


@pytest.mark.parametrize("where", ["paths", "store"])
def test_a_previous_period_without_events_is_one_note_and_no_columns(
    where: str, log: Path, store: Path
) -> None:
    """24 November compared with the 23rd, a day without mail: no column of zeros."""
    inputs = [str(log)] if where == "paths" else ["--store", str(store)]
    day = ["--since", "2026-11-24", "--until", "2026-11-25", "--tz", "UTC", "--quiet"]
    holder = "the input" if where == "paths" else "the store"
    note = (
        "previous period: no events between 2026-11-23 00:00 UTC and 2026-11-24 00:00 UTC; "
        f"{holder} holds 2026-11-17, 2026-11-24 (2 days); nothing to compare with"
    )
    document = _json(*inputs, *day, "--compare")
    assert document["notes"] == [note]
    assert document["previous"]["totals"] == []
    rows = [*document["totals"], *document["groups"], *document["categories"]]
    keys = {key for row in rows for key in row}
    assert not any(key.startswith("previous_") or key.endswith("_change") for key in keys)
    text = _report(*inputs, *day, "--compare", fmt="table")
    assert note in " ".join(text.split())
    heads, _ = _columns(text, "Totals")
    assert "prev" not in heads and "change" not in heads


def test_a_previous_period_without_events_of_the_direction_says_which(log: Path) -> None:
    """The previous week holds outbound mail, none inbound: an inbound report says so."""
    document = _json(str(log), *WEEK, "--compare", "--direction", "inbound")
    assert document["notes"] == [
        "previous period: no inbound events from 2026-11-14 00:00 UTC to 2026-11-21 00:00 UTC; "
        "nothing to compare with"
    ]
    assert document["previous"]["directions"] == {"outbound": 15}


#: What tells the rows of each compared table apart, and the figure compared.
_TABLES = {
    "totals": (["view"], "failure_rate"),
    "groups": (["provider"], "failure_rate"),
    "categories": (["category", "direction"], "share"),
    "recipient_domains": (["recipient_domain"], "failure_rate"),
    "sender_domains": (["sender_domain"], "failure_rate"),
    "blocklists": (["direction", "blocklist"], "attempts"),
}


def test_every_previous_figure_is_the_previous_reports_own(tmp_path: Path) -> None:
    """The bundled samples' second day compared with their first, in both directions: each
    row's previous figure is the figure of the first day's own report, the inbound section's
    rejects by reason included, and each change is this day's figure less it."""
    samples = copy_sample_logs(tmp_path)
    common = [str(samples), "--tz", "UTC", "--quiet", "--direction", "all", "--top", "1000"]
    compared = _json(*common, "--since", "2026-11-27", "--until", "2026-11-28", "--compare")
    before = _json(*common, "--since", "2026-11-26", "--until", "2026-11-27")
    tables = {name: (compared[name], before[name]) for name in _TABLES}
    tables["rejects"] = (compared["inbound"]["rejects"], before["inbound"]["rejects"])
    checked = 0
    for name, (rows, earlier) in tables.items():
        keys, figure = _TABLES.get(name, (["reject_reason", "blocklist"], "share"))
        figures = {tuple(row[k] for k in keys): row[figure] for row in earlier}
        assert len(figures) == len(earlier)
        for row in rows:
            key = tuple(row[k] for k in keys)
            previous, change = row[f"previous_{figure}"], row[f"{figure}_change"]
            assert previous == figures.get(key), (name, key)
            if previous is not None and row[figure] is not None:
                assert change == pytest.approx(row[figure] - previous, abs=1.5e-4), (name, key)
                checked += 1
    assert checked > 40
    assert compared["previous"]["totals"] == before["totals"]


# --- groups that differ only past the cut --------------------------------------------------------


def _auth_failures(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("  auth_failure")
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        if re.match(r" +\d[\d,]*  \[", line):  # (not the advice)
            found.append(line)
    return found


@pytest.mark.parametrize("width", ["80", "100", "132"])
def test_gmail_replies_that_differ_past_the_cut_read_differently(log: Path, width: str) -> None:
    """Issue 15: three groups read `[550 5.7.26] this mail has been blocked ... gmail r...`,
    counts 3, 1 and 1. Each now shows the SPF domain that did not pass, and keeps its count;
    the JSON keeps the three messages whole and apart."""
    text = _report(str(log), *WEEK, "--width", width, fmt="table")
    rows = _auth_failures(text)
    assert len(rows) == 3 and len(set(rows)) == 3, rows
    assert all(len(row) <= int(width) for row in rows)
    shown = {
        re.search(r"spf \[([a-z.]+)\]", row).group(1): int(row.split()[0])  # type: ignore[union-attr]
        for row in rows
    }
    assert shown == {"example.com": 3, "news.example.com": 1, "status.example.com": 1}
    assert all(row.split(None, 1)[1].startswith("[550 5.7.26] this mail ") for row in rows)
    document = _json(str(log), *WEEK)
    messages = _row(document["categories"], category="auth_failure")["top_messages"]
    assert [message["count"] for message in messages] == [3, 1, 1]
    assert all(len(message["message"]) > 300 for message in messages)


def test_distinguish_leaves_texts_that_differ_within_the_cut_alone() -> None:
    texts = ["a" * 50 + " one", "a" * 50 + " two", "short"]
    assert distinguish(texts, 60) == texts
    assert distinguish(["x" * 70, "y" * 70], 60) == ["x" * 59 + "…", "y" * 59 + "…"]


def test_distinguish_shows_where_texts_cut_alike_differ() -> None:
    start = "the same words for a long while, " * 4
    texts = [start + "then the first ends here", start + "then the second", start]
    shown = distinguish(texts, 60)
    assert all(len(text) <= 60 for text in shown)
    assert len(set(shown)) == 3
    assert "first" in shown[0] and "second" in shown[1]
    assert shown[0].startswith("the same words for a ") and "… " in shown[0]
    assert shown[2] == start[:59] + "…"  # (the start of the others: it differs where it ends)
    assert distinguish(texts, 30) == [text[:29] + "…" for text in texts]  # (too narrow)


def test_a_script_compares_through_the_package_names(store: Path) -> None:
    """`import bounce_analyzer as ba`: the same figures as `report --compare`; a report
    without an end to its window cannot be compared (its length is unknown)."""
    import bounce_analyzer as ba

    rules = ba.load_rules()
    since, until = datetime(2026, 11, 21, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
    events = ba.scan_events(str(store))
    report = ba.summarize(events, since=since, until=until, categories=rules.categories)
    previous = ba.summarize_previous(events, report, categories=rules.categories)
    compared = ba.with_previous(report, previous)
    final = compared.totals.filter(view="final outcomes").row(0, named=True)
    assert _compared(final, "failure_rate") == FINAL
    assert compared.previous is previous and previous.since == datetime(2026, 11, 14, tzinfo=UTC)
    open_ended = ba.summarize(events, since=since)
    with pytest.raises(ba.UsageError, match="needs since and until"):
        ba.summarize_previous(events, open_ended)


def test_distinguish_fills_the_row_when_the_texts_end_soon_after_they_differ() -> None:
    """The words before the place they differ are shown as far as the width allows: more
    than the few that lead to it when the texts end soon after."""
    start = "the same words for a long while, " * 4
    shown = distinguish([start + "zone alpha", start + "zone bravo"], 60)
    assert shown == [
        "the same words for a … words for a long while, zone alpha",
        "the same words for a … words for a long while, zone bravo",
    ]


def _chart_labels(page: str, chart: str) -> list[str]:
    """The texts of a chart (matplotlib writes each beside its glyphs as an SVG comment)."""
    start = page.index(f'<figure data-chart="{chart}">')
    return re.findall(r"<!-- (.*?) -->", page[start : page.index("</figure>", start)])


def test_html_categories_chart_leaves_out_the_previous_periods_alone(
    log: Path, tmp_path: Path
) -> None:
    """Issue 15: blocked, a category of the week before alone, drew an empty bar; its table
    row stays, with no attempt."""
    page = tmp_path / "report.html"
    result = invoke("report", str(log), *WEEK, "--compare", "--format", "html", "-o", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    labels = _chart_labels(text, "categories")
    assert {"auth_failure", "mailbox_full", "user_unknown"} <= set(labels)
    assert "blocked" not in labels
    parser = _Cells()
    parser.feed(text)
    categories = [cell for cell in parser.cells if cell[0] == "categories"]
    assert ("categories", "category", "blocked") in categories
    assert categories[categories.index(("categories", "category", "blocked")) + 2] == (
        "categories",
        "count",
        "0",
    )


def test_an_unchanged_rate_reads_as_no_change(tmp_path: Path) -> None:
    """The same week twice: every change is nought, shown `0.0 pt` (it read `+0.0 pt`, and a
    fall of less than 0.05 point `-0.0 pt`)."""
    lines: list[str] = []
    for day in (17, 24):
        for n in range(4):
            outcome = ("5.1.1", f"bounced ({_NO_SUCH_USER})") if n == 0 else _sent()
            lines += _message(day, n, f"user{n}@gmail.com", _GMAIL, outcome)
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    date_files(tmp_path)
    text = _report(str(log), *WEEK, "--compare", fmt="table")
    totals = text.split("Totals")[1].split("\n\n")[0].splitlines()[2:4]
    assert [row.split()[-4:] for row in totals] == [["25.0%", "25.0%", "0.0", "pt"]] * 2
    assert "+0.0 pt" not in text and "-0.0 pt" not in text
    markdown = _report(str(log), *WEEK, "--compare", fmt="markdown")
    assert "| 0.0 pt |" in markdown and "0.0 pt" in markdown.split("## By provider")[1]
