"""The report's message keys keep what a person acts on (issue 15): our sending IP in an
outbound block, a provider's reason token (Google's `?p=` help page, Yahoo's `[TSS04]`,
Outlook.com's `S3150`), the blocklist's zone; and still mask recipients, ids and timestamps,
and the client IPs of inbound rejects.

The replies are lines of sample_logs/postfix/mail.log, copied to tests/data/masking (its
README says which).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from _cli import invoke
from _samples import date_files
from bounce_analyzer.normalize import message_key, message_keys

LOG = Path(__file__).parent / "data" / "masking" / "mail.log"
WINDOW = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]

#: The key of each reply of the log, in its order (the two NoSuchUser replies share one).
NO_SUCH_USER = (
    "the email account that you tried to reach does not exist. please try double-checking the "
    "recipient's email address for typos or unnecessary spaces. for more information, go to "
    "https://support.google.com/mail/?p=nosuchuser <id> - gsmtp"
)
EXPECTED = [
    ("outbound", NO_SUCH_USER),
    ("outbound", NO_SUCH_USER),
    ("outbound", "the email account that you tried to reach is disabled. learn more at "
     "https://support.google.com/mail/?p=disableduser <id> - gsmtp"),
    ("outbound", "the user you are trying to contact is receiving mail at a rate that prevents "
     "additional messages from being delivered. please resend your message at a later time. if "
     "the user is able to receive mail at that time, your message will be delivered. for more "
     "information, go to https://support.google.com/mail/?p=receivingrate <id> - gsmtp"),
    ("outbound", "[203.0.113.25 #] our system has detected an unusual rate of unsolicited mail "
     "originating from your ip address. to protect our users from spam, mail sent from your ip "
     "address has been temporarily rate limited. for more information, go to "
     "https://support.google.com/mail/?p=unsolicitedratelimiterror to review our bulk email "
     "senders guidelines. <id> - gsmtp"),
    ("outbound", "service unavailable; client host [203.0.113.25] blocked using "
     "zen.spamhaus.org; https://www.spamhaus.org/query/ip/203.0.113.25"),
    ("outbound", "[tss04] messages from 203.0.113.25 temporarily deferred due to unexpected "
     "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"),
    ("outbound", "unfortunately, messages from [203.0.113.25] weren't sent. please contact your "
     "internet service provider since part of their network is on our block list (s3150). you "
     "can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx? "
     "[<id>.<id>.prod.outlook.com <time> <id>]"),
    ("outbound", "delivery error: dd this user doesn't have a yahoo.com account (<address>) "
     "[#] - <host>"),
    ("inbound", "service unavailable; client host [<ip>] blocked using zen.spamhaus.org; "
     "https://www.spamhaus.org/query/ip/<ip>"),
]  # fmt: skip


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tests/data/masking dated 2026-11-28 (its stamps have no year)."""
    folder = tmp_path_factory.mktemp("masking")
    shutil.copy(LOG, folder / "mail.log")
    date_files(folder)
    return folder


@pytest.fixture(scope="module")
def events(logs: Path) -> pl.DataFrame:
    """The failures of the log, parsed by the real command line, in the log's order."""
    result = invoke("parse", str(logs / "mail.log"), "--tz", "UTC", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    failures = [r for r in rows if r["event"] in ("bounced", "deferred", "rejected")]
    return pl.DataFrame(failures).select("direction", "diagnostic")


def test_each_reply_keeps_what_a_person_acts_on(events: pl.DataFrame) -> None:
    keyed = message_keys(events)
    assert keyed.select("direction", "_key").rows() == EXPECTED


def test_recipients_ids_and_timestamps_are_still_masked(events: pl.DataFrame) -> None:
    keys = "\n".join(message_keys(events)["_key"])
    for kept_out in (
        "ivansantos67@gmail.com",  # recipients
        "quentin.horvat@yahoo.com",
        "d4b8d713ee133-h2kakrff4nsi263787856sx.705",  # Gmail's message id
        "am4pepf00028ffe",  # Outlook's server
        "2026-11-27",  # and timestamp
        "2039ffdb0656a071",
        "mta4021",  # Yahoo's numbered server
        "142.250.",  # the answering hosts' addresses
        "67.195.",
        "198.51.100.195",  # the client an inbound reject names
    ):
        assert kept_out not in keys


def test_the_key_of_one_text_depends_on_its_direction_only_by_the_ip(
    events: pl.DataFrame,
) -> None:
    spamhaus = events["diagnostic"][5]
    outbound, inbound = pl.select(
        message_key(pl.lit(spamhaus), outbound=True).alias("out"),
        message_key(pl.lit(spamhaus)).alias("in"),
    ).row(0)
    assert outbound == EXPECTED[5][1]
    assert inbound == outbound.replace("203.0.113.25", "<ip>")


def test_a_help_page_keeps_its_name_and_drops_the_other_parameters() -> None:
    # Google's links as its support pages write them, with a language and a tracking parameter
    texts = [
        "see https://support.google.com/mail/?p=NoSuchUser&hl=en",
        "see https://support.google.com/mail/?hl=de&p=NoSuchUser",
        "see https://support.google.com/mail/?p=BlockedMessage#topic=7279058",
        "see https://support.google.com/mail/?hl=en",
    ]
    keys = pl.select(message_key(pl.Series(texts))).to_series().to_list()
    assert keys == [
        "see https://support.google.com/mail/?p=nosuchuser",
        "see https://support.google.com/mail/?p=nosuchuser",
        "see https://support.google.com/mail/?p=blockedmessage",
        "see https://support.google.com/mail/?",
    ]


def test_the_report_shows_each_help_page_and_our_blocked_ip(logs: Path) -> None:
    result = invoke("report", str(logs), *WINDOW, "--direction", "all", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    messages = {
        top["message"]: top["count"]
        for category in document["categories"]
        for top in category["top_messages"] or []
    }
    gmail = {
        name: count
        for message, count in messages.items()
        for name in ("nosuchuser", "disableduser", "receivingrate", "unsolicitedratelimiterror")
        if f"?p={name} " in message
    }
    assert gmail == {
        "nosuchuser": 2,
        "disableduser": 1,
        "receivingrate": 1,
        "unsolicitedratelimiterror": 1,
    }
    assert messages[f"[554 5.7.1] {EXPECTED[5][1]}"] == 1
    assert messages[f"[421 4.7.0] {EXPECTED[6][1]}"] == 1
    assert messages[f"[550 5.7.1] {EXPECTED[7][1]}"] == 1
    assert messages[f"[554 5.7.1] {EXPECTED[9][1]}"] == 1
