"""The engine decides once for texts that differ only in the numbers of the host that answered
(issue 14, speed of `explain -`), and the answers are those of each text alone."""

from __future__ import annotations

import polars as pl

from bounce_analyzer.classify import classify
from bounce_analyzer.normalize import normalize_message, numbered_hosts_alike

# the wrapping as Postfix and Exim write it (sample_logs/postfix, sample_logs/exim)
TEXTS = [
    "host mx3.shop41.example[198.51.100.7] said: 552 5.2.2 <anna@shop41.example>: Recipient "
    "address rejected: Mailbox full (in reply to RCPT TO command)",
    "host mx7.shop12.example[198.51.100.23] said: 552 5.2.2 <bert@shop12.example>: Recipient "
    "address rejected: Mailbox full (in reply to RCPT TO command)",
    "host alt2.gmail-smtp-in.l.google.com[142.250.153.27] said: 550-5.1.1 The email account "
    "that you tried to reach does not exist. (in reply to RCPT TO command)",
    "anna@shop41.example: host mx1.shop41.example [198.51.100.7]: 421 4.7.0 Try again later, "
    "closing connection.",
]


def test_numbers_of_the_answering_host_are_masked_and_its_letters_kept() -> None:
    masked = pl.select(
        numbered_hosts_alike(normalize_message(pl.Series(TEXTS))).alias("key")
    ).to_series()
    assert masked[0] == masked[1]
    assert masked[0].startswith("host mx#.shop#.example[<ip>] said: 552 5.2.2 ")
    assert masked[2].startswith("host alt#.gmail-smtp-in.l.google.com[<ip>] said: ")
    assert masked[3].startswith("<address>: host mx#.shop#.example [<ip>]: 421 ")
    # a text without an answering host is left as it was
    plain = pl.select(numbered_hosts_alike(pl.lit("550 5.1.1 user unknown"))).item()
    assert plain == "550 5.1.1 user unknown"


def test_texts_grouped_by_host_get_the_answers_they_get_alone() -> None:
    events = pl.DataFrame(
        {
            "event": ["bounced"] * len(TEXTS),
            "diagnostic": TEXTS,
            "recipient_domain": ["shop41.example", "shop12.example", "gmail.com", "shop41.example"],
            "source": ["postfix", "postfix", "postfix", "exim"],
        }
    )
    together = classify(events)
    for index in range(events.height):
        alone = classify(events.slice(index, 1))
        assert together.row(index, named=True) == alone.row(0, named=True)
    assert together["category"].to_list()[:2] == ["mailbox_full", "mailbox_full"]
