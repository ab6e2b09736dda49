#!/usr/bin/env python3
"""Peak memory of the state a log source carries across lines: many open Postfix queue ids
or Exim messages with long senders (issue 12). Not run in CI.

Writes a log in which `--ids` messages arrive (Postfix: a qmgr `from=<...>` line and a cleanup
`message-id=<...>` line per queue id; Exim: a `<=` line) with senders of `--sender-bytes`
bytes and are never removed, then one bounce for every 1000th message, and measures
`bounce-analyzer ingest` of it into an empty store, and `parse` of it, each under
`/usr/bin/time -v` (Maximum resident set size):

    python bench/open_ids.py --source postfix --ids 1200000 --sender-bytes 600

Prints each command's peak RSS, CPU time, and how many of the bounces still found their
sender (the others' messages were evicted from the bounded state).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

#: One bounce for every this many messages (the lines at the end of the log).
BOUNCE_EVERY = 1000


def _messages(ids: int, sender_bytes: int, day: str) -> pl.DataFrame:
    """`n`, the `stamp` (`day` and a time of day) and the `sender` of `ids` messages."""
    n = pl.int_range(ids, dtype=pl.Int64, eager=True).alias("n")
    parts = [(n // 3600 % 24), (n // 60 % 60), (n % 60)]
    return n.to_frame().with_columns(
        stamp=pl.format(f"{day} {{}}:{{}}:{{}}", *(p.cast(pl.String).str.zfill(2) for p in parts)),
        sender=pl.format("{}{}@example.org", pl.lit("s" * max(1, sender_bytes - 12)), n),
    )


#: Per source: the lines each message arrives with, then its bounce (every BOUNCE_EVERY-th
#: message, at the end of the log), as `pl.format` templates and the columns they take.
TEMPLATES: dict[str, tuple[list[tuple[str, list[str]]], tuple[str, list[str]]]] = {
    "postfix": (
        [
            # Nov 27 10:00:00 mx postfix/cleanup[7]: 10000000: message-id=<10000000@example.org>
            ("{} mx postfix/cleanup[7]: {}: message-id=<{}@example.org>", ["stamp", "id", "id"]),
            # Nov 27 10:00:00 mx postfix/qmgr[9]: 10000000: from=<sss...0@example.org>, size=1, ..
            (
                "{} mx postfix/qmgr[9]: {}: from=<{}>, size=4303, nrcpt=1 (queue active)",
                ["stamp", "id", "sender"],
            ),
        ],
        (
            "Nov 27 23:59:59 mx postfix/smtp[5]: {}: to=<r{}@example.com>, relay=none, "
            "delay=1, delays=0/0/1/0, dsn=5.1.1, status=bounced (host mx.example.com"
            "[192.0.2.1] said: 550 5.1.1 User unknown (in reply to RCPT TO command))",
            ["id", "n"],
        ),
    ),
    "exim": (
        [
            # 2026-11-27 10:00:00 000042-000000-Cd <= s...@example.org H=... P=esmtp S=1 id=<x>
            (
                "{} {} <= {} H=app.example.org [10.0.0.1] P=esmtp S=4303 id={}@example.org",
                ["stamp", "id", "sender", "id"],
            ),
        ],
        (
            "2026-11-27 23:59:59 {} ** r{}@example.com R=dnslookup T=remote_smtp "
            "H=mx.example.com [192.0.2.1]: SMTP error from remote mail server after "
            "RCPT TO:<r@example.com>: 550 5.1.1 User unknown",
            ["id", "n"],
        ),
    ),
}


def _log(source: str, ids: int, sender_bytes: int) -> pl.DataFrame:
    """The lines of a `source` log where `ids` messages arrive and stay open, then bounces."""
    n = pl.col("n")
    if source == "postfix":
        # 10000000: a queue id of decimal digits (which are hex digits)
        frame = _messages(ids, sender_bytes, "Nov 27").with_columns(
            id=(n + 10_000_000).cast(pl.String)
        )
    else:
        # 000042-000000-Cd: an Exim message id of digits, 6-6-2 characters
        number = [(n % 1_000_000), (n // 1_000_000)]
        frame = _messages(ids, sender_bytes, "2026-11-27").with_columns(
            id=pl.format("{}-{}-Cd", *(p.cast(pl.String).str.zfill(6) for p in number))
        )
    arrivals, (bounce, columns) = TEMPLATES[source]
    parts = [
        frame.select("n", order=pl.lit(order), line=pl.format(template, *names))
        for order, (template, names) in enumerate(arrivals)
    ]
    bounced = frame.filter(n % BOUNCE_EVERY == 0).select(
        n=n + ids, order=pl.lit(len(parts)), line=pl.format(bounce, *columns)
    )
    return pl.concat([*parts, bounced]).sort("n", "order").select("line")


def _measure(command: list[str]) -> tuple[int, float]:
    """Run `command` under /usr/bin/time -v: (peak RSS in bytes, CPU seconds)."""
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")

    def number(label: str) -> float:
        found = re.search(rf"{re.escape(label)}: ([0-9.]+)", done.stderr)
        if found is None:
            sys.exit(f"/usr/bin/time -v did not say {label!r}:\n{done.stderr}")
        return float(found[1])

    rss = number("Maximum resident set size (kbytes)") * 1024
    return int(rss), number("User time (seconds)") + number("System time (seconds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("postfix", "exim"), default="postfix")
    parser.add_argument("--ids", type=int, default=1_200_000)
    parser.add_argument("--sender-bytes", type=int, default=600)
    parser.add_argument("--keep", help="write the log and the store here and keep them")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="open-ids-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        log = folder / f"{args.source}.log"
        lines = _log(args.source, args.ids, args.sender_bytes)
        lines.write_csv(log, include_header=False, quote_style="never")
        print(f"{log}: {log.stat().st_size / 2**20:.0f} MiB, {args.ids:,} open messages")
        store = folder / "store"
        shutil.rmtree(store, ignore_errors=True)
        run = [sys.executable, "-m", "bounce_analyzer"]
        common = ["--tz", "UTC", "--source", args.source, "--quiet"]
        commands = {
            "ingest": [*run, "ingest", "--store", str(store), *common, str(log)],
            "parse": [*run, "parse", *common, "-o", str(folder / "out.parquet"), str(log)],
        }
        for name, command in commands.items():
            rss, cpu = _measure(command)
            print(f"{name}: peak RSS {rss / 2**20:,.0f} MiB, CPU {cpu:.1f} s")
        bounces = pl.read_parquet(folder / "out.parquet").filter(pl.col("event") == "bounced")
        print(
            f"bounces with their sender: {bounces['sender'].is_not_null().sum():,} "
            f"of {bounces.height:,}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
