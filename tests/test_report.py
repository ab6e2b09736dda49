"""Report behaviour on small, hand-made event tables: views, groupings, windows, masking."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from _stores import report_store
from bounce_analyzer import report as report_module
from bounce_analyzer.errors import UsageError
from bounce_analyzer.normalize import message_key, message_keys
from bounce_analyzer.report import (
    GROUPABLE,
    Report,
    final_outcomes,
    parse_by,
    reject_reason,
    summarize,
)
from bounce_analyzer.schema import EVENT_SCHEMA, conform
from bounce_analyzer.store import Store, open_store, partition_files

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

_DEFAULTS: dict[str, Any] = {
    "source": "postfix",
    "host": "mx1",
    "direction": "outbound",
    "sender": "news@shop.example.com",
    "sender_domain": "shop.example.com",
    "provider": "google",
    "smtp_code": None,
    "enhanced_code": None,
    "diagnostic": None,
    "category": None,
    "category_group": None,
    "bounce_type": None,
}


def _events(*rows: dict[str, Any]) -> pl.DataFrame:
    """Events with sensible defaults: ids e0, e1, ...; recipient domain from the recipient."""
    full = []
    for i, row in enumerate(rows):
        item = {**_DEFAULTS, "event_id": f"e{i:03d}", **row}
        if item.get("recipient") and "recipient_domain" not in row:
            item["recipient_domain"] = item["recipient"].rsplit("@", 1)[1]
        full.append(item)
    frame = pl.DataFrame(full, schema_overrides={"timestamp": pl.Datetime("us", "UTC")})
    return conform(frame, EVENT_SCHEMA)


_QUOTA = {"smtp_code": 452, "enhanced_code": "4.2.2", "category": "mailbox_full",
          "category_group": "mailbox_unavailable", "bounce_type": "soft"}  # fmt: skip
_UNKNOWN = {"smtp_code": 550, "enhanced_code": "5.1.1", "category": "user_unknown",
            "category_group": "invalid_address", "bounce_type": "hard"}  # fmt: skip


def _deferred_three_times_then_delivered() -> pl.DataFrame:
    return _events(
        *[
            {"timestamp": T0 + timedelta(minutes=10 * i), "event": "deferred",
             "message_ref": "Q1", "recipient": "ann@gmail.com", **_QUOTA,
             "diagnostic": "452 4.2.2 The recipient's inbox is out of storage space."}
            for i in range(3)
        ],
        {"timestamp": T0 + timedelta(minutes=30), "event": "delivered", "message_ref": "Q1",
         "recipient": "ann@gmail.com", "smtp_code": 250, "category": "delivered"},
        {"timestamp": T0 + timedelta(minutes=1), "event": "bounced", "message_ref": "Q2",
         "recipient": "bob@gmail.com", **_UNKNOWN,
         "diagnostic": "550 5.1.1 The email account that you tried to reach does not exist."},
        {"timestamp": T0 + timedelta(hours=2), "event": "complained", "message_ref": "Q1",
         "recipient": "ann@gmail.com", "source": "postfix", "category": "feedback"},
    )  # fmt: skip


def _totals(report: Any) -> dict[str, dict[str, Any]]:
    return {row["view"]: row for row in report.totals.to_dicts()}


def test_attempts_count_every_try_final_outcomes_one_per_recipient() -> None:
    report = summarize(_deferred_three_times_then_delivered().lazy())
    totals = _totals(report)
    assert totals["attempts"] == {
        "view": "attempts", "total": 6, "delivered": 1, "deferred": 3, "failed": 1, "hard": 1,
        "soft": 0, "complained": 1, "failure_rate": 0.1667,
    }  # fmt: skip
    assert totals["final outcomes"] == {
        "view": "final outcomes", "total": 2, "delivered": 1, "deferred": 0, "failed": 1,
        "hard": 1, "soft": 0, "complained": 1, "failure_rate": 0.5,
    }  # fmt: skip
    # the complaint is counted beside the delivery it is about, not as a message
    assert report.groups.to_dicts() == [
        {"provider": "google", "messages": 2, "delivered": 1, "deferred": 0, "failed": 1,
         "hard": 1, "soft": 0, "complained": 1, "attempts": 6, "deferrals": 3,
         "failure_rate": 0.5},
    ]  # fmt: skip


def test_a_final_event_in_the_same_second_as_a_deferral_is_the_outcome() -> None:
    """Exim logs its last `==` and `** retry timeout exceeded` in the same second."""
    same = T0 + timedelta(minutes=5)
    events = _events(
        {"timestamp": T0, "event": "deferred", "message_ref": "1xA", "recipient": "c@web.de",
         **_QUOTA},
        {"timestamp": same, "event": "deferred", "message_ref": "1xA", "recipient": "c@web.de",
         "event_id": "zzz", **_QUOTA},
        {"timestamp": same, "event": "expired", "message_ref": "1xA", "recipient": "c@web.de",
         "event_id": "aaa", "category": "expired", "bounce_type": "soft"},
    )  # fmt: skip
    final = final_outcomes(events.lazy()).collect()
    assert final.select("event", "event_id").rows() == [("expired", "aaa")]


def test_a_message_wide_expiry_ends_each_recipient_still_deferred() -> None:
    """Postfix: `Q3: from=<...>, status=expired, returned to sender` names no recipient."""
    events = _events(
        {"timestamp": T0, "event": "deferred", "message_ref": "Q3", "recipient": "d@gmail.com",
         **_QUOTA},
        {"timestamp": T0, "event": "deferred", "message_ref": "Q3", "recipient": "e@yahoo.com",
         "provider": "yahoo", **_QUOTA},
        {"timestamp": T0 + timedelta(minutes=1), "event": "delivered", "message_ref": "Q3",
         "recipient": "f@gmail.com"},
        {"timestamp": T0 + timedelta(days=5), "event": "expired", "message_ref": "Q3",
         "provider": "other", "category": "expired", "bounce_type": "soft",
         "diagnostic": "returned to sender"},
        # an expiry of a message whose recipients are unknown stays as it is
        {"timestamp": T0 + timedelta(days=5), "event": "expired", "message_ref": "Q4",
         "provider": "other", "category": "expired", "bounce_type": "soft"},
    )  # fmt: skip
    final = final_outcomes(events.lazy()).collect().sort("message_ref", "recipient")
    assert final.select(
        "message_ref", "recipient", "recipient_domain", "provider", "event", "diagnostic",
        "timestamp",
    ).rows() == [
        ("Q3", "d@gmail.com", "gmail.com", "google", "expired", "returned to sender",
         T0 + timedelta(days=5)),
        ("Q3", "e@yahoo.com", "yahoo.com", "yahoo", "expired", "returned to sender",
         T0 + timedelta(days=5)),
        ("Q3", "f@gmail.com", "gmail.com", "google", "delivered", None,
         T0 + timedelta(minutes=1)),
        ("Q4", None, None, "other", "expired", None, T0 + timedelta(days=5)),
    ]  # fmt: skip
    assert final.columns == list(EVENT_SCHEMA)


def test_a_message_wide_expiry_is_an_attempt_of_each_recipient_it_ends() -> None:
    """Counted once per recipient in both views, so no group has fewer attempts than messages;
    the failure texts count it as often as the categories do."""
    events = _events(
        *[
            {"timestamp": T0, "event": "deferred", "message_ref": "Q3", "recipient": r,
             "provider": p, **_QUOTA, "diagnostic": "452 4.2.2 mailbox full"}
            for r, p in (("d@gmail.com", "google"), ("e@yahoo.com", "yahoo"))
        ],
        {"timestamp": T0 + timedelta(days=5), "event": "expired", "message_ref": "Q3",
         "provider": "other", "category": "expired", "bounce_type": "soft",
         "diagnostic": "returned to sender"},
    )  # fmt: skip
    report = summarize(events.lazy(), by=["provider", "category"])
    rows = report.groups.select("provider", "category", "messages", "attempts").sort("provider")
    assert rows.rows() == [
        ("google", "expired", 1, 1),
        ("google", "mailbox_full", 0, 1),
        ("yahoo", "expired", 1, 1),
        ("yahoo", "mailbox_full", 0, 1),
    ]
    expired = report.categories.filter(pl.col("category") == "expired").row(0, named=True)
    assert (expired["count"], expired["failed"], expired["soft"]) == (2, 2, 2)
    assert report.messages.filter(pl.col("category") == "expired")["count"].to_list() == [2]


def test_a_failure_without_bounce_type_is_soft_in_every_view() -> None:
    """hard is what the classification calls hard; every other failure is soft, so that hard
    and soft always add up to failed, and a deferral is neither."""
    events = _events(
        {"timestamp": T0, "event": "rejected", "message_ref": "Q1", "recipient": "a@gmail.com",
         "category": "on_hold", "diagnostic": "554 go away"},
        {"timestamp": T0, "event": "deferred", "message_ref": "Q2", "recipient": "b@gmail.com",
         **_QUOTA},
    )  # fmt: skip
    report = summarize(events.lazy())
    for frame in (report.totals, report.groups, report.categories, report.recipient_domains,
                  report.sender_domains):  # fmt: skip
        assert (frame["hard"] + frame["soft"] == frame["failed"]).all()
        assert (
            frame.filter(pl.col("failed") > 0)["soft"].to_list()
            == [1] * frame.filter(pl.col("failed") > 0).height
        )


def test_a_recipient_who_complains_twice_is_one_complaint_of_the_final_view() -> None:
    events = _deferred_three_times_then_delivered()
    again = events.tail(1).with_columns(pl.lit("e999").alias("event_id"))
    report = summarize(pl.concat([events, again]).lazy())
    totals = _totals(report)
    assert (totals["attempts"]["complained"], totals["final outcomes"]["complained"]) == (2, 1)
    assert totals["final outcomes"]["total"] == 2


def test_top_cuts_the_growing_tables_and_says_how_much() -> None:
    report = summarize(_mixed().lazy(), by=["recipient_domain", "event"], top=2)
    assert report.groups.height == 2
    assert report.recipient_domains.height == 2
    assert report.omitted == {
        "groups": summarize(
            _mixed().lazy(), by=["recipient_domain", "event"], top=100
        ).groups.height
        - 2,
        "messages": 1,
        "recipient_domains": 1,
        "sender_domains": 0,
        "unclassified": 0,  # (issue 14: the texts no rule read, none here)
        # (issue 15: the delay tables, deferral resolutions and sending hosts: none cut here)
        "provider_delays": 0,
        "domain_delays": 0,
        "resolutions": 0,
        "sending_hosts": 0,
    }
    assert report.categories.height == 3  # a closed set: never cut


def test_an_empty_window_says_which_days_there_are() -> None:
    events = _deferred_three_times_then_delivered().lazy()
    later = T0 + timedelta(days=3)
    report = summarize(events, since=later)
    assert report.notes == [
        "no events between 2026-11-30 09:00 UTC and now; the input holds 2026-11-27 (1 day)"
    ]
    held = [date(2026, 11, 2), date(2026, 11, 30), date(2026, 11, 3)]
    report = summarize(events, since=later, until=later, held=held, holder="the store")
    assert report.notes == [
        "no events between 2026-11-30 09:00 UTC and 2026-11-30 09:00 UTC; the store holds "
        "2026-11-02 .. 2026-11-03, 2026-11-30 (3 days)"
    ]
    # runs of days, not a span that reads as a month of them; more than three runs, a span
    held = [date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16), date(2026, 11, 23)]
    report = summarize(events, since=later, held=held, holder="the store")
    assert report.notes[0].endswith("the store holds 2026-11-02 .. 2026-11-23 (4 days)")
    held = [date(2025, 12, 8), date(2025, 12, 9), date(2026, 11, 27), date(2026, 11, 28)]
    report = summarize(events, since=later, held=held, holder="the input")
    assert report.notes[0].endswith(
        "the input holds 2025-12-08 .. 2025-12-09, 2026-11-27 .. 2026-11-28 (4 days)"
    )
    assert summarize(events.clear(), since=later, held=[]).notes == [
        "no events between 2026-11-30 09:00 UTC and now; the input holds none"
    ]
    assert summarize(events, since=T0).notes == []


@pytest.mark.parametrize("column", GROUPABLE)
def test_every_by_column_groups(column: str) -> None:
    events = _deferred_three_times_then_delivered()
    report = summarize(events.lazy(), by=[column])
    assert report.by == [column]
    assert report.groups.columns[0] == column
    assert int(report.groups["attempts"].sum()) == 6
    assert int(report.groups["messages"].sum()) == 2


def test_by_two_columns() -> None:
    report = summarize(
        _deferred_three_times_then_delivered().lazy(), by=["category", "recipient_domain"]
    )
    rows = report.groups.select("category", "recipient_domain", "messages", "attempts").rows()
    assert rows == [
        ("user_unknown", "gmail.com", 1, 1),
        ("mailbox_full", "gmail.com", 0, 3),
        ("delivered", "gmail.com", 1, 1),
        ("feedback", "gmail.com", 0, 1),
    ]


def test_parse_by() -> None:
    assert parse_by(None) == ["provider"]
    assert parse_by(" provider, smtp_code ,date") == ["provider", "smtp_code", "date"]
    with pytest.raises(UsageError) as raised:
        parse_by("provider,colour")
    assert str(raised.value) == (
        "cannot group by colour: choose from provider, category, category_group, source, "
        "recipient_domain, sender_domain, smtp_code, enhanced_code, date, event, bounce_type, "
        "host, direction, blocklist, transport, client_host, client_ip, reject_reason"
    )
    with pytest.raises(UsageError, match=r"^cannot group by ',': choose from provider, "):
        parse_by(",")


def test_since_and_until_make_a_half_open_window() -> None:
    events = _events(
        *[
            {"timestamp": T0 + timedelta(days=d), "event": "delivered", "message_ref": f"Q{d}",
             "recipient": "g@gmail.com"}
            for d in range(5)
        ]
    )  # fmt: skip
    report = summarize(events.lazy(), since=T0 + timedelta(days=1), until=T0 + timedelta(days=3))
    assert _totals(report)["attempts"]["delivered"] == 2
    assert report.daily["date"].cast(pl.String).to_list() == ["2026-11-28", "2026-11-29"]
    assert report.since == T0 + timedelta(days=1)
    assert report.until == T0 + timedelta(days=3)
    everything = summarize(events.lazy())
    assert _totals(everything)["attempts"]["delivered"] == 5


GMAIL = (
    "host gmail-smtp-in.l.google.com[142.250.102.27] said: 550-5.1.1 The email account that "
    "you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's "
    "email address for typos or 550-5.1.1 unnecessary spaces. For more information, go to "
    "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser {id} - gsmtp (in reply to RCPT "
    "TO command)"
)
GMX = (
    "450 4.3.2 Too many mails (mail bomb), try again in 1 hour(s) {minutes} minute(s) and see "
    "( http://portal.gmx.net/serverrules ) {{mx-eu{n}}}"
)
YAHOO = (
    "554 delivery error: dd Sorry your message to {address} cannot be delivered. This mailbox "
    "is disabled (554.30). - mta{n}.mail.{cluster}.yahoo.com"
)
MAILGUN_GMAIL = (
    "5.7.26 This mail has been blocked because the sender is unauthenticated.\n5.7.26 Gmail "
    "requires all senders to authenticate with either SPF or DKIM.\n5.7.26 \n5.7.26  "
    "Authentication results:\n5.7.26  DKIM = did not pass\n5.7.26 \n5.7.26  For instructions, "
    "go to\n5.7.26  https://support.google.com/mail/answer/81126 {id} - gsmtp"
)


def _keys(texts: list[str]) -> list[str]:
    return pl.select(message_key(pl.Series(texts))).to_series().unique().to_list()


def test_message_key_masks_per_message_tokens() -> None:
    gmail = [GMAIL.format(id=i) for i in ("a1b2c3d4e5-9si1234567abc.12", "5e8f0c1d2a-1si7.3")]
    assert _keys(gmail) == [
        "the email account that you tried to reach does not exist. please try double-checking "
        "the recipient's email address for typos or unnecessary spaces. for more information, "
        "go to https://support.google.com/mail/?p=nosuchuser <id> - gsmtp"
    ]
    gmx = [GMX.format(minutes=m, n=n) for m, n in ((38, 101), (2, 114), (17, 205))]
    assert _keys(gmx) == [
        "too many mails (mail bomb), try again in # hour(s) # minute(s) and see "
        "( http://portal.gmx.net/serverrules ) {mx-eu#}"
    ]
    yahoo = [
        YAHOO.format(address="h@yahoo.com", n=1198, cluster="bf1"),
        YAHOO.format(address="i.j@yahoo.com", n=2011, cluster="gq1"),
    ]
    assert _keys(yahoo) == [
        "delivery error: dd sorry your message to <address> cannot be delivered. this mailbox "
        "is disabled (#.#). - <host>"
    ]
    mailgun = [MAILGUN_GMAIL.format(id=i) for i in ("a1b2c3-4si5.6", "9z8y7x-6si5.4")]
    assert _keys(mailgun) == [
        "this mail has been blocked because the sender is unauthenticated. gmail requires all "
        "senders to authenticate with either spf or dkim. authentication results: dkim = did "
        "not pass for instructions, go to https://support.google.com/mail/answer/<id> <id> - "
        "gsmtp"
    ]


def test_distinct_texts_of_one_reason_are_one_line_with_its_count() -> None:
    ids = [f"{n:08x}-{n % 7}si{n * 31}.{n % 13}" for n in range(40)]
    events = _events(
        *[
            {"timestamp": T0 + timedelta(seconds=i), "event": "bounced", "message_ref": f"Q{i}",
             "recipient": f"user{i}@gmail.com", **_UNKNOWN, "diagnostic": GMAIL.format(id=gid)}
            for i, gid in enumerate(ids)
        ]
    )  # fmt: skip
    report = summarize(events.lazy())
    assert report.messages.select("category", "count").rows() == [("user_unknown", 40)]
    assert (
        report.messages["message"]
        .item()
        .startswith("[550 5.1.1] the email account that you tried to reach does not exist.")
    )
    assert report.messages["example"].item() == GMAIL.format(id=ids[0])


def _mixed() -> pl.DataFrame:
    """Retries, message-wide expiries, complaints, ties and repeated texts in one table."""
    gmx = {"smtp_code": 450, "enhanced_code": "4.3.2", "category": "rate_limited",
           "category_group": "frequency_or_volume", "bounce_type": "soft"}  # fmt: skip
    rows: list[dict[str, Any]] = []
    for m in range(12):
        ref, at = f"Q{m}", T0 + timedelta(minutes=7 * m)
        for r, domain in enumerate(("gmail.com", "gmx.de", "web.de")[: 1 + m % 3]):
            recipient = f"u{m}.{r}@{domain}"
            for i in range(m % 4):
                rows.append(
                    {"timestamp": at + timedelta(minutes=i), "event": "deferred",
                     "message_ref": ref, "recipient": recipient, **gmx,
                     "diagnostic": GMX.format(minutes=(m * 7 + i) % 60, n=100 + m + r)}
                )  # fmt: skip
            outcome = ("delivered", "bounced", None)[(m + r) % 3]
            if outcome == "delivered":
                rows.append({"timestamp": at + timedelta(hours=1), "event": "delivered",
                             "message_ref": ref, "recipient": recipient, "smtp_code": 250,
                             "category": "delivered"})  # fmt: skip
            elif outcome == "bounced":
                rows.append({"timestamp": at + timedelta(hours=1), "event": "bounced",
                             "message_ref": ref, "recipient": recipient, **_UNKNOWN,
                             "diagnostic": GMAIL.format(id=f"{m}x{r}si{m * r}.{m}")})  # fmt: skip
        if m % 4 == 3:  # Postfix's qmgr gives up on the whole message
            rows.append({"timestamp": at + timedelta(days=1), "event": "expired",
                         "message_ref": ref, "provider": "other", "category": "expired",
                         "bounce_type": "soft", "diagnostic": "returned to sender"})  # fmt: skip
    rows.append({"timestamp": T0 + timedelta(days=2), "event": "complained", "message_ref": "Q1",
                 "recipient": "u1.0@gmail.com", "category": "feedback"})  # fmt: skip
    # the last deferral and the expiry in the same second; then two events tied on time
    rows.append({"timestamp": T0, "event": "deferred", "message_ref": "1xA",
                 "recipient": "c@web.de", **gmx, "event_id": "zzz"})  # fmt: skip
    rows.append({"timestamp": T0, "event": "expired", "message_ref": "1xA",
                 "recipient": "c@web.de", "event_id": "aaa", "category": "expired",
                 "bounce_type": "soft"})  # fmt: skip
    rows.append({"timestamp": T0, "event": "bounced", "message_ref": "1xB",
                 "recipient": "d@web.de", **_UNKNOWN, "event_id": "b2"})  # fmt: skip
    rows.append({"timestamp": T0, "event": "delivered", "message_ref": "1xB",
                 "recipient": "d@web.de", "category": "delivered", "event_id": "b1"})  # fmt: skip
    # events without a message id: each is a message of its own
    rows.extend({"timestamp": T0 + timedelta(hours=h), "event": "rejected",
                 "recipient": "e@gmx.de", **_UNKNOWN, "diagnostic": "550 5.1.1 unknown user"}
                for h in range(3))  # fmt: skip
    return _events(*rows)


def _assert_same_report(left: Report, right: Report) -> None:
    for name in ("totals", "groups", "categories", "messages", "daily", "recipient_domains",
                 "sender_domains"):  # fmt: skip
        assert_frame_equal(getattr(left, name), getattr(right, name))


@pytest.mark.parametrize("by", [["provider"], ["recipient_domain", "event"], ["date", "category"]])
def test_final_outcome_counts_are_the_rows_of_final_outcomes(by: list[str]) -> None:
    """The report counts final outcomes without building them, but counts the same rows."""
    events = _mixed().lazy()
    report = summarize(events, by=by, top=1000)
    dated = events.with_columns(pl.col("timestamp").dt.date().alias("date"))
    expected = final_outcomes(dated).group_by(by).agg(pl.len().alias("messages")).collect()
    counted = report.groups.filter(pl.col("messages") > 0).select(*by, "messages")
    assert_frame_equal(counted, expected, check_row_order=False, check_dtypes=False)
    assert _totals(report)["final outcomes"]["total"] == expected["messages"].sum()


def test_a_report_in_several_passes_is_the_same_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above `_PASS_EVENTS` events the report reads the input once per group of messages."""
    events = _mixed().lazy()
    whole = summarize(events, by=["provider", "event"], top=3)
    monkeypatch.setattr(report_module, "_PASS_EVENTS", 7)
    _assert_same_report(summarize(events, by=["provider", "event"], top=3), whole)


def test_the_example_of_a_message_is_its_first_text() -> None:
    later = GMAIL.format(id="0a1-sorts-first-but-read-last")
    events = _events(
        {"timestamp": T0, "event": "bounced", "message_ref": "Q1", "recipient": "a@gmail.com",
         **_UNKNOWN, "diagnostic": GMAIL.format(id="z9-read-first")},
        {"timestamp": T0, "event": "deferred", "message_ref": "Q2", "recipient": "b@gmx.de",
         **_QUOTA, "diagnostic": "452 4.2.2 mailbox full"},
        {"timestamp": T0 - timedelta(days=1), "event": "bounced", "message_ref": "Q3",
         "recipient": "c@gmail.com", **_UNKNOWN, "diagnostic": later},
    )  # fmt: skip
    report = summarize(events.lazy())
    rows = report.messages.select("category", "count", "example").rows()
    assert rows == [
        ("mailbox_full", 1, "452 4.2.2 mailbox full"),
        ("user_unknown", 2, GMAIL.format(id="z9-read-first")),
    ]


def test_message_keys_are_worked_out_once_per_text() -> None:
    texts = [
        *(GMAIL.format(id=i) for i in ("a1b2c3d4e5-9si1234567abc.12", "5e8f0c1d2a-1si7.3")),
        *(GMX.format(minutes=m, n=n) for m, n in ((38, 101), (2, 114))),
        YAHOO.format(address="h@yahoo.com", n=1198, cluster="bf1"),
        MAILGUN_GMAIL.format(id="a1b2c3-4si5.6"),
        "SMTP error from remote mail server after RCPT TO:<x@y.example>: 550 5.1.1 No such user",
        None,
    ]
    frame = pl.DataFrame({"diagnostic": texts * 2}, schema={"diagnostic": pl.String})
    keyed = message_keys(frame)
    expected = frame.with_columns(message_key(pl.col("diagnostic")).alias("_key"))
    assert_frame_equal(keyed, expected, check_row_order=False)


# --- on a store ----------------------------------------------------------------------------------


def _store_with_days(tmp_path: Path) -> Store:
    """A store with one delivery on each of 25-29 November 2026 (of the version-1 folder layout,
    whose day folders the tests write files into)."""
    store = open_store(tmp_path / "store", create=True, version=1)
    assert isinstance(store, Store)
    for day in range(25, 30):
        folder = store.path / "events" / f"date=2026-11-{day}"
        folder.mkdir(parents=True)
        events = _events(
            {"timestamp": datetime(2026, 11, day, 12, tzinfo=UTC), "event": "delivered",
             "message_ref": f"Q{day}", "recipient": "k@gmail.com", "event_id": f"d{day}"}
        )  # fmt: skip
        events.write_parquet(folder / "part-test-0.parquet")
    return store


def test_report_on_a_store_reads_only_the_partitions_of_its_window(tmp_path: Path) -> None:
    store = _store_with_days(tmp_path)
    # a damaged day outside the window: reading it would fail
    (store.path / "events" / "date=2026-11-25" / "part-test-0.parquet").write_bytes(b"not parquet")
    since, until = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)
    assert [p.parent.name for p in partition_files(store.path, since=since, until=until)] == [
        "date=2026-11-27",
        "date=2026-11-28",
    ]
    report = report_store(str(store.path), since=since, until=until)
    assert _totals(report)["attempts"]["delivered"] == 2
    assert report.daily["date"].cast(pl.String).to_list() == ["2026-11-27", "2026-11-28"]
    with pytest.raises(pl.exceptions.ComputeError):
        report_store(str(store.path), since=None)


def test_report_on_a_store_joins_the_category_advice(tmp_path: Path) -> None:
    store = _store_with_days(tmp_path)
    folder = store.path / "events" / "date=2026-11-28"
    _events(
        {"timestamp": datetime(2026, 11, 28, 13, tzinfo=UTC), "event": "bounced",
         "message_ref": "Q99", "recipient": "l@gmail.com", **_UNKNOWN, "event_id": "b1",
         "diagnostic": GMAIL.format(id="x1y2z3-4si5.6")},
    ).write_parquet(folder / "part-test-1.parquet")  # fmt: skip
    report = report_store(str(store.path), since=datetime(2026, 11, 28, tzinfo=UTC))
    row = report.categories.row(0, named=True)
    assert (row["category"], row["count"], row["hard"], row["share"]) == (
        "user_unknown", 1, 1, 1.0,
    )  # fmt: skip
    assert row["advice"].startswith("Remove the address from your list now")
    assert report.malformed == 0


# --- direction -----------------------------------------------------------------------------------

#: What the sources and the classification make of the lines of a Debian server that sends
#: its users' mail and receives mail for example.com (tests/data/direction/postfix-debian.log).
_SPAMHAUS = {"category": "blocked", "category_group": "reputation", "bounce_type": "soft",
             "blocklist": "spamhaus"}  # fmt: skip


def _both_directions() -> pl.DataFrame:
    at = T0
    inbound = {"direction": "inbound", "provider": "other"}
    rejected = {**inbound, "event": "rejected", "transport": "smtpd"}
    return _events(
        # outbound: delivered, bounced at Gmail, blocked at Outlook (our IP on Spamhaus)
        {"timestamp": at, "event": "delivered", "message_ref": "1A2B3C4D5E",
         "recipient": "jane.doe@gmail.com", "category": "delivered", "transport": "smtp"},
        {"timestamp": at, "event": "bounced", "message_ref": "1A2B3C4D5E",
         "recipient": "nobody@example.org", "provider": "other", **_UNKNOWN, "transport": "smtp",
         "diagnostic": "550 5.1.1 <nobody@example.org>: Recipient address rejected: User "
         "unknown in virtual mailbox table"},
        {"timestamp": at, "event": "bounced", "message_ref": "1A2B3C4D5E",
         "recipient": "john.roe@outlook.com", "provider": "microsoft", **_SPAMHAUS,
         "transport": "smtp", "diagnostic": "550 5.7.1 Service unavailable, Client host "
         "[198.51.100.7] blocked using Spamhaus."},
        # inbound: postscreen and smtpd rejects, a local delivery, a full mailbox
        {"timestamp": at, **rejected, "transport": "postscreen", **_SPAMHAUS,
         "client_ip": "203.0.113.45", "sender_domain": "offers.example.net",
         "diagnostic": "550 5.7.1 Service unavailable; client [203.0.113.45] blocked using "
         "zen.spamhaus.org"},
        {"timestamp": at, **rejected, **_SPAMHAUS, "recipient": "bob@example.com",
         "client_host": "unknown", "client_ip": "203.0.113.77",
         "sender_domain": "bulk.example.net", "diagnostic": "554 5.7.1 Service unavailable; "
         "Client host [203.0.113.77] blocked using zen.spamhaus.org"},
        {"timestamp": at + timedelta(seconds=1), **rejected, **_SPAMHAUS,
         "recipient": "bob@example.com", "client_host": "unknown", "client_ip": "203.0.113.77",
         "sender_domain": "bulk.example.net", "diagnostic": "554 5.7.1 Service unavailable; "
         "Client host [203.0.113.77] blocked using zen.spamhaus.org"},
        {"timestamp": at, **rejected, **_UNKNOWN, "recipient": "nobody@example.com",
         "client_host": "mail.example.org", "client_ip": "192.0.2.25",
         "sender_domain": "example.org", "diagnostic": "550 5.1.1 <nobody@example.com>: "
         "Recipient address rejected: User unknown in local recipient table"},
        {"timestamp": at, **rejected, "recipient": "victim@example.net", "category":
         "no_relaying", "bounce_type": "soft", "client_host": "unknown",
         "client_ip": "203.0.113.9", "sender_domain": "example.net",
         "diagnostic": "454 4.7.1 <victim@example.net>: Relay access denied"},
        {"timestamp": at, **rejected, "recipient": "carol@example.com", "category": "blocked",
         "category_group": "reputation", "bounce_type": "soft", "client_host": "unknown",
         "client_ip": "203.0.113.12",
         "diagnostic": "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified "
         "hostname"},
        {"timestamp": at, **rejected, "transport": "cleanup", "recipient": "frank@example.com",
         "category": "spam_detected", "bounce_type": "soft", "client_host": "unknown",
         "client_ip": "203.0.113.88", "diagnostic": "5.7.1 Spam message rejected"},
        {"timestamp": at, **inbound, "event": "delivered", "message_ref": "2B3C4D5E6F",
         "recipient": "news@example.com", "transport": "local", "category": "delivered"},
        {"timestamp": at, **inbound, "event": "bounced", "message_ref": "6D7E8F9A0B",
         "recipient": "dave@example.com", "transport": "lmtp", **_QUOTA, "bounce_type": "soft",
         "smtp_code": 552, "enhanced_code": "5.2.2",
         "diagnostic": "552 5.2.2 <dave@example.com> Quota exceeded"},
        # internal: to the content filter, whose mail comes back
        {"timestamp": at, "direction": "internal", "event": "delivered",
         "message_ref": "4B1C2D3E4F", "recipient": "alice@example.com", "transport": "smtp",
         "category": "delivered"},
    )  # fmt: skip


def test_an_outbound_report_leaves_out_inbound_rejects_and_says_so() -> None:
    report = summarize(_both_directions().lazy(), by=["recipient_domain"])
    assert (report.direction, report.inbound) == ("outbound", None)
    assert report.directions == {"outbound": 3, "inbound": 9, "internal": 1}
    attempts = _totals(report)["attempts"]
    assert (attempts["total"], attempts["failed"]) == (3, 2)
    # our own domain and the spammers' are not "our" recipients or senders
    assert set(report.groups["recipient_domain"]) == {"gmail.com", "example.org", "outlook.com"}
    assert "bulk.example.net" not in set(report.sender_domains["sender_domain"])


def test_an_inbound_report_has_its_own_section() -> None:
    report = summarize(_both_directions().lazy(), direction="inbound", top=2)
    assert _totals(report)["attempts"]["failed"] == 8
    assert report.inbound is not None
    assert report.inbound.rejects.rows() == [
        ("blocklist", "spamhaus", 3, 0.4286),
        ("relay access denied", None, 1, 0.1429),
        ("helo/ptr checks", None, 1, 0.1429),
        ("unknown user", None, 1, 0.1429),
        ("content/milter", None, 1, 0.1429),
    ]
    assert report.inbound.clients.rows() == [
        ("unknown", "203.0.113.77", 2),
        ("mail.example.org", "192.0.2.25", 1),
    ]
    assert report.omitted["clients"] == 4
    assert report.inbound.recipients.rows(named=True)[0] == {
        "recipient": "bob@example.com", "rejected": 2, "delivered": 0, "deferred": 0,
        "failed": 0,
    }  # fmt: skip
    assert report.inbound.deliveries.rows() == [("local", 1, 0, 0), ("lmtp", 0, 0, 1)]


def test_all_counts_every_direction_and_keeps_the_inbound_section() -> None:
    report = summarize(_both_directions().lazy(), direction="all")
    assert _totals(report)["attempts"]["total"] == 13
    assert report.inbound is not None
    blocked = report.categories.filter(pl.col("category") == "blocked")
    assert sorted(blocked.select("direction", "count").rows()) == [
        ("inbound", 4),
        ("outbound", 1),
    ]


def test_the_advice_is_written_for_the_direction() -> None:
    """A client on Spamhaus is not our IP: an inbound block gets the inbound advice."""
    categories = pl.DataFrame(
        {
            "category": ["blocked", "user_unknown"],
            "description": ["blocked", "unknown"],
            "advice": ["Delist your IP.", "Remove the address."],
            "advice_inbound": ["Nothing to delist: the client is listed.", ""],
        }
    )
    report = summarize(_both_directions().lazy(), direction="all", categories=categories)
    advice = {
        (c, d): a for c, d, a in report.categories.select("category", "direction", "advice").rows()
    }
    assert advice[("blocked", "outbound")] == "Delist your IP."
    assert advice[("blocked", "inbound")] == "Nothing to delist: the client is listed."
    assert advice[("user_unknown", "outbound")] == "Remove the address."
    assert advice[("user_unknown", "inbound")] is None
    without = summarize(
        _both_directions().lazy(), direction="inbound", categories=categories.drop("advice_inbound")
    )
    assert without.categories["advice"].to_list() == [None] * without.categories.height


def test_an_unknown_direction_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match=r"^invalid direction 'sideways': choose from outbound, inbound, all$"
    ):
        summarize(_both_directions().lazy(), direction="sideways")


def test_reject_reasons_over_real_reject_texts() -> None:
    """Texts of Postfix and Exim rejects as servers log them (tests/data/direction/, and the
    corpus's fail2ban, pflogsumm and postfix_exporter test logs)."""
    texts = {
        "554 5.7.1 <spam@example.com>: Relay access denied": "relay access denied",
        "rejected RCPT <victim@example.net>: relay not permitted": "relay access denied",
        "450 4.2.0 <a@example.com>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.com.html": "greylisting",
        "4.7.1 Greylisting in action, try again later": "greylisting",
        "450 4.7.1 : Helo command rejected: Host not found": "helo/ptr checks",
        "450 4.7.1 Client host rejected: cannot find your hostname, [93.184.216.34]":
            "helo/ptr checks",
        "450 4.1.8 <some@nonexistant.tld>: Sender address rejected: Domain not found":
            "sender/domain checks",
        "550 5.1.1 : Recipient address rejected: User unknown in local recipient table":
            "unknown user",
        "rejected RCPT <nobody@example.com>: Unrouteable address": "unknown user",
        "rejected after DATA: Your message scored 15.2 SpamAssassin points. Report follows:":
            "content/milter",
        "rejected RCPT <bob@example.com>: 203.0.113.77 is listed at zen.spamhaus.org":
            "blocklist",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
        "dnsbl.private.example": "blocklist",
        "550 5.7.1 Client host rejected: Access denied": "other",
    }  # fmt: skip
    frame = pl.DataFrame(
        {"diagnostic": list(texts), "event": "rejected", "direction": "inbound",
         "transport": "smtpd", "blocklist": None},
        schema_overrides={"blocklist": pl.String()},
    )  # fmt: skip
    reasons = frame.select(reject_reason()).to_series().to_list()
    assert dict(zip(texts, reasons, strict=True)) == texts
    # postscreen's own tests, and a milter at the cleanup stage
    frame = frame.head(1).with_columns(diagnostic=pl.lit("550 5.5.1 Protocol error"))
    assert frame.with_columns(transport=pl.lit("postscreen")).select(reject_reason()).item() == (
        "postscreen"
    )
    assert frame.with_columns(transport=pl.lit("cleanup")).select(reject_reason()).item() == (
        "content/milter"
    )
    # other events have no reason
    assert frame.with_columns(direction=pl.lit("outbound")).select(reject_reason()).item() is None
