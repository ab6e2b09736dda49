"""A seeded, deterministic generator of realistic mail logs and ESP events, with the true counts.

Used by end-to-end tests (parse a generated file, compare with its `Truth`) and by benchmarks
(1M and 5M lines). Everything is built column-wise with polars: random numbers come from a
counter-based generator (splitmix64 over the row index, written as polars integer arithmetic),
so the same seed gives the same bytes on every machine, and no Python code runs per line.

The Postfix and Exim logs are a mid-size server's, in both directions: 78% of the lines are our
outbound messages (with, in Postfix, the amavis content filter's hop for mail that people send,
about 10% of all lines, and each bounce notice delivered into its sender's mailbox, about 3%),
10% are other servers' messages delivered into our mailboxes (Postfix: lmtp to Dovecot,
virtual, pipe, local; Exim: dovecot_lmtp, local_delivery), and 12% are the lines between
messages (connections, scanners, and our refusals of other servers' clients). The truth counts
events by direction too (outbound, inbound, internal: the filter's hop).

Example: ``python -m bounce_analyzer.generate postfix --lines 1000000 --seed 1 -o /tmp/x.log
--truth /tmp/x.truth.json``
"""

# This module's docstring is the command's --help text.

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bounce_analyzer.generate.exim import generate_exim
from bounce_analyzer.generate.mailgun import generate_mailgun
from bounce_analyzer.generate.output import Options
from bounce_analyzer.generate.postfix import generate_postfix
from bounce_analyzer.generate.sendgrid import generate_sendgrid


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bounce_analyzer.generate postfix --lines N --seed S -o FILE --truth FILE`."""
    parser = argparse.ArgumentParser(prog="python -m bounce_analyzer.generate", description=__doc__)
    parser.add_argument("source", choices=["postfix", "exim", "sendgrid", "mailgun"])
    parser.add_argument("--lines", type=int, default=10_000, help="lines (or JSON events) to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="2026-11-27T00:00:00+00:00", help="ISO 8601 start")
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--tz", default="UTC", help="zone of log timestamps (postfix, exim)")
    parser.add_argument("--rfc3339", action="store_true", help="postfix: RFC 3339 timestamps")
    parser.add_argument("--long-queue-ids", action="store_true", help="postfix: long queue ids")
    parser.add_argument(
        "--postscreen-enforce",
        action="store_true",
        help="postfix: postscreen rejects what its DNSBL and pregreet tests catch",
    )
    parser.add_argument("--new-ids", action="store_true", help="exim: 4.97 message ids")
    parser.add_argument("--array", action="store_true", help="sendgrid: one JSON array")
    parser.add_argument("--events-api", action="store_true", help="mailgun: Events API items")
    parser.add_argument("--cover", action="store_true", help="every failure text at least once")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--truth", type=Path, help="where to write the true counts (JSON)")
    args = parser.parse_args(argv)
    common: Options = {
        "seed": args.seed,
        "start": datetime.fromisoformat(args.start),
        "days": args.days,
        "cover": args.cover,
    }
    if args.source == "postfix":
        truth = generate_postfix(
            args.output,
            lines=args.lines,
            tz=args.tz,
            classic_timestamps=not args.rfc3339,
            long_queue_ids=args.long_queue_ids,
            postscreen_enforce=args.postscreen_enforce,
            **common,
        )
    elif args.source == "exim":
        truth = generate_exim(
            args.output, lines=args.lines, tz=args.tz, new_ids=args.new_ids, **common
        )
    elif args.source == "sendgrid":
        truth = generate_sendgrid(args.output, events=args.lines, ndjson=not args.array, **common)
    else:
        truth = generate_mailgun(
            args.output, events=args.lines, webhooks=not args.events_api, **common
        )
    if args.truth is not None:
        args.truth.write_text(truth.to_json() + "\n", encoding="utf-8")
    return 0
