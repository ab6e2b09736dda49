"""Sample log lines that several test modules write into their logs, and the bundled
sample_logs/ copied for the tests that read them through the command line.

A classic Postfix stamp has no year: it comes from the log file's modification time.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

#: The modification time given to copied logs: classic syslog stamps ("Nov 27") take its year.
DATED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def date_files(folder: Path, moment: datetime = DATED) -> None:
    """`folder` and everything in it modified at `moment`."""
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (moment.timestamp(), moment.timestamp()))


def copy_sample_logs(folder: Path) -> Path:
    """A copy of sample_logs/ (without its README) in `folder`, its files dated `DATED`."""
    copy = folder / "sample_logs"
    shutil.copytree(Path(__file__).resolve().parents[1] / "sample_logs", copy)
    (copy / "README.md").unlink()
    date_files(copy)
    return copy


#: A Postfix bounce: one event (bounced, 550 5.1.1, user_unknown).
BOUNCED = (
    "Nov 27 10:00:01 mx1 postfix/smtp[2]: 3F2A1B2C3D: to=<a@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, "
    "status=bounced (host mx.example.com[192.0.2.1] said: 550 5.1.1 User unknown "
    "(in reply to RCPT TO command))"
)
#: A Postfix status line cut short: malformed, "unreadable recipient status line".
BROKEN = "Nov 27 10:00:02 mx1 postfix/smtp[2]: 3F2A1B2C3D: to=<, status=bounced"
#: An Exim bounce of a remote 550 5.1.1: one event.
EXIM_BOUNCED = (
    "2026-11-27 10:00:01 1tE3xY-0001Ab-Cd ** a@example.com R=dnslookup T=remote_smtp "
    "H=mx.example.com [192.0.2.7]: SMTP error from remote mail server after RCPT "
    "TO:<a@example.com>: 550 5.1.1 no such user"
)
