"""A seeded, deterministic generator of realistic mail logs and ESP events, with the true counts.

Used by end-to-end tests (parse a generated file, compare with its `Truth`) and by benchmarks
(1M and 5M lines). Everything is built column-wise with polars: random numbers come from a
counter-based generator (splitmix64 over the row index, written as polars integer arithmetic),
so the same seed gives the same bytes on every machine, and no Python code runs per line.

One loop serves every source (`output.write`): the plan of messages and their delivery
attempts is made the same way for all (`plan`), and each source's `Format` writes it
(`postfix`, `exim`, `sendgrid`, `mailgun`; `mta` and `esp` hold what two of them share). What
the world says is data beside the code: domains and people (world.toml), the replies of their
servers (replies.toml), how our server delivers into our own mailboxes (mailboxes.toml), the
lines between messages (noise.toml).

The Postfix and Exim logs are a mid-size server's, in both directions (the shares of their
lines are in the command's help, `cli`).

Example: ``python -m bounce_analyzer.generate postfix --lines 1000000 --seed 1 -o /tmp/x.log
--truth /tmp/x.truth.json``
"""

from __future__ import annotations

from bounce_analyzer.generate.cli import main
from bounce_analyzer.generate.exim import generate_exim
from bounce_analyzer.generate.mailgun import generate_mailgun
from bounce_analyzer.generate.postfix import generate_postfix
from bounce_analyzer.generate.sendgrid import generate_sendgrid
from bounce_analyzer.generate.truth import Truth

__all__ = [
    "Truth",
    "generate_exim",
    "generate_mailgun",
    "generate_postfix",
    "generate_sendgrid",
    "main",
]
