"""`bounce-analyzer check` through the real command line (issue 15): the Nagios verdict and
its exit codes, thresholds from options and from a TOML file, and figures equal to the
report's on the same input.

The inputs are the bundled sample logs (copied and dated as tests/test_report_cli.py dates
them: 26 and 27 November 2026, written as Postfix, Exim, SendGrid and Mailgun write them) and
a day of the seeded generator's Postfix log ingested into a store.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _cli import invoke
from _samples import copy_sample_logs
from _stores import generated_store

#: Both days of the samples, and the second alone (whose previous day is the first).
WINDOW = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC"]
DAY = ["--since", "2026-11-27", "--until", "2026-11-28", "--tz", "UTC"]
#: `BOUNCE <STATUS> - <summary> | <perfdata>`, as a Nagios plugin's first line.
STATUS_LINE = re.compile(r"BOUNCE (OK|WARNING|CRITICAL|UNKNOWN) - (.*?)(?: \| (.*))?")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of sample_logs/ whose files are dated 2026-11-28."""
    return copy_sample_logs(tmp_path_factory.mktemp("check"))


def _report(*args: str) -> dict[str, Any]:
    result = invoke("report", *args, "--quiet", "--format", "json", "--top", "1000")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _perfdata(line: str) -> dict[str, list[str]]:
    match = STATUS_LINE.fullmatch(line)
    assert match, line
    return {
        name: value.split(";")
        for name, value in (item.split("=") for item in (match.group(3) or "").split())
    }


def _final(document: dict[str, Any]) -> dict[str, Any]:
    final: dict[str, Any] = next(
        row for row in document["totals"] if row["view"] == "final outcomes"
    )
    return final


# --- exit codes, as a monitoring system runs the command ----------------------------------------


@pytest.mark.parametrize(
    ("levels", "code", "status"),
    [
        (["--warn", "40%", "--crit", "50%"], 0, "OK"),
        (["--warn", "5%", "--crit", "50%"], 1, "WARNING"),
        (["--warn", "0.05", "--crit", "0.1"], 2, "CRITICAL"),
    ],
)
def test_exit_code_is_the_nagios_status(
    samples: Path, levels: list[str], code: int, status: str
) -> None:
    """27.7% of the samples' 787 outbound messages failed: OK under 40%, WARNING at 5%,
    CRITICAL at 10% (given as a fraction), in a real process as cron or NRPE runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "bounce_analyzer", "check", str(samples), *WINDOW, *levels],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"BOUNCE {status} - ")
    window = "218 of 787 messages, 2026-11-20 to 2026-11-28 12:00 UTC"
    if status == "OK":
        assert lines == [
            f"BOUNCE OK - outbound failure rate 27.7% ({window}) "
            "| failure_rate=0.277;0.4;0.5 messages=787 failed=218"
        ]
    else:
        level = "5.0%" if status == "WARNING" else "10.0%"
        assert lines[0].startswith(f"BOUNCE {status} - 1 breach | failure_rate=0.277;0.05;")
        assert lines[1:] == [f"{status}: outbound failure rate 27.7% >= {level} ({window})"]
    assert done.stderr == ""


def test_unknown_is_exit_code_3_in_a_real_process(samples: Path) -> None:
    """A window without messages, and a command line the parser refuses, are UNKNOWN (3)."""
    for args, first in [
        (["--since", "2026-10-01", "--until", "2026-10-02", "--tz", "UTC", "--warn", "5%"],
         "BOUNCE UNKNOWN - no outbound messages to judge: no events between 2026-10-01 00:00 "
         "UTC and 2026-10-02 00:00 UTC; the input holds 2026-11-26 .. 2026-11-27 (2 days) "
         "| messages=0 failed=0"),
        ([*WINDOW, "--warn", "5%", "--critical", "10%"],
         "BOUNCE UNKNOWN - No such option: --critical"),
    ]:  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "bounce_analyzer", "check", str(samples), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 3, done.stdout + done.stderr
        assert done.stdout.splitlines()[0].startswith(first), done.stdout
        assert "Traceback" not in done.stderr


def test_a_usage_error_is_unknown_not_critical(samples: Path) -> None:
    """A plugin's exit code 2 means CRITICAL, so a bad option is UNKNOWN (3), with its reason
    on stdout for the monitoring system and the usual `Error:` line on stderr."""
    for args, reason in [
        (["--warn", "five"], "--warn: 'five' is not a rate"),
        (["--warn", "150%"], "--warn: '150%' is not a rate"),
        (["--no-such-option"], "No such option: --no-such-option"),
        ([], "nothing to check: give --warn and/or --crit, or --thresholds FILE"),
    ]:
        result = invoke("check", str(samples), *WINDOW, *args)
        assert result.exit_code == 3, (args, result.output)
        assert result.stdout.startswith(f"BOUNCE UNKNOWN - {reason}"), result.stdout
        assert f"Error: {reason}" in result.stderr


def test_a_missing_store_is_unknown(tmp_path: Path) -> None:
    result = invoke("check", "--store", str(tmp_path / "none"), "--warn", "5%")
    assert result.exit_code == 3, result.output
    assert result.stdout.startswith("BOUNCE UNKNOWN - ")
    assert result.stderr.startswith("Error: ") and str(tmp_path / "none") in result.stderr


# --- the same figures as the report -------------------------------------------------------------


def test_check_and_report_agree_on_the_same_input(samples: Path) -> None:
    """The overall figures (final outcomes) and each provider's are the report's."""
    thresholds = samples.parent / "every-provider.toml"
    thresholds.write_text('min_messages = 1\n[provider."*"]\nwarn = "0%"\n', encoding="utf-8")
    result = invoke("check", str(samples), *WINDOW, "--thresholds", str(thresholds))
    assert result.exit_code == 1, result.output
    document = _report(str(samples), *WINDOW, "--by", "provider")
    final = _final(document)
    perfdata = _perfdata(result.stdout.splitlines()[0])
    assert float(perfdata["failure_rate"][0]) == final["failure_rate"]
    assert int(perfdata["messages"][0]) == final["total"]
    assert int(perfdata["failed"][0]) == final["failed"]
    shown = {
        match.group(1): (int(match.group(3).replace(",", "")), int(match.group(2).replace(",", "")))
        for match in re.finditer(
            r"WARNING: outbound failure rate at (\S+) [\d.]+% >= 0\.0% \(([\d,]+) of ([\d,]+)",
            result.stdout,
        )
    }
    expected = {
        (row["provider"] or "other"): (row["messages"], row["failed"]) for row in document["groups"]
    }
    assert shown == expected and len(shown) > 5


def test_the_direction_is_the_reports(samples: Path) -> None:
    result = invoke("check", str(samples), *WINDOW, "--direction", "inbound", "--warn", "1%")
    final = _final(_report(str(samples), *WINDOW, "--direction", "inbound"))
    assert result.exit_code == 1, result.output
    perfdata = _perfdata(result.stdout.splitlines()[0])
    assert (int(perfdata["messages"][0]), int(perfdata["failed"][0])) == (
        final["total"],
        final["failed"],
    )
    assert "WARNING: inbound failure rate " in result.stdout


# --- a thresholds file ------------------------------------------------------------------------


THRESHOLDS = """\
# the day's outbound mail, as docs/MONITORING.md shows it
min_messages = 50

[overall]
warn = "25%"
crit = "40%"

[provider.google]
warn = "20%"
crit = "30%"
min_messages = 100

[category.user_unknown]
warn = "5%"
crit = "20%"

[blocklist]
any = { warn = 1, crit = 100 }
microsoft = { warn = 2, crit = 3 }

[rise]
warn = "2%"
crit = "10%"
"""


def test_a_thresholds_file(samples: Path, tmp_path: Path) -> None:
    """27 November against the 26th: every kind of threshold, one line per breach, the worst
    first; the rise of 4.8 points is the report's rate of each day."""
    path = tmp_path / "thresholds.toml"
    path.write_text(THRESHOLDS, encoding="utf-8")
    result = invoke("check", str(samples), *DAY, "--thresholds", str(path))
    today = _final(_report(str(samples), *DAY))
    before = _final(
        _report(str(samples), "--since", "2026-11-26", "--until", "2026-11-27", "--tz", "UTC")
    )
    assert (today["failed"], today["total"], before["failed"], before["total"]) == (
        102,
        335,
        116,
        452,
    )
    day = "2026-11-27 to 2026-11-28 UTC"
    lists = _report(str(samples), *DAY)["blocklists"]
    named = sum(row["attempts"] for row in lists)
    microsoft = next(row["attempts"] for row in lists if row["blocklist"] == "microsoft")
    assert microsoft >= 3
    assert result.exit_code == 2, result.output
    assert result.stdout.splitlines() == [
        "BOUNCE CRITICAL - 6 breaches | failure_rate=0.3045;0.25;0.4 messages=335 failed=102 "
        "failure_rate_rise=0.0478;0.02;0.1",
        f"CRITICAL: outbound refusals naming microsoft {microsoft} >= 3 (failures and "
        f"deferrals, {day})",
        f"WARNING: outbound failure rate 30.4% >= 25.0% (102 of 335 messages, {day})",
        f"WARNING: outbound failure rate at google 23.2% >= 20.0% (26 of 112 messages, {day})",
        f"WARNING: outbound messages failed as user_unknown 8.7% >= 5.0% (29 of 335 messages, "
        f"{day})",
        f"WARNING: outbound refusals naming a blocklist {named} >= 1 (failures and deferrals, "
        f"{day})",
        "WARNING: outbound failure rate rose 4.8 points >= 2.0 points (30.4% against 25.7%: "
        "116 of 452 messages, 2026-11-26 to 2026-11-27 UTC)",
    ]


def test_the_options_win_over_the_file(samples: Path, tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text('[overall]\nwarn = "5%"\ncrit = "10%"\n', encoding="utf-8")
    result = invoke("check", str(samples), *DAY, "--thresholds", str(path), "--crit", "90%")
    assert result.exit_code == 1, result.output
    assert "failure_rate=0.3045;0.05;0.9 " in result.stdout


def test_a_table_has_its_own_minimum(samples: Path, tmp_path: Path) -> None:
    """A provider's own min_messages (0 included) wins over the file's."""
    path = tmp_path / "thresholds.toml"
    path.write_text(
        'min_messages = 1000\n[provider.gmx]\nwarn = "10%"\nmin_messages = 0\n'
        '[provider.google]\nwarn = "10%"\n',
        encoding="utf-8",
    )
    result = invoke("check", str(samples), *DAY, "--thresholds", str(path))
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[1:] == [
        "WARNING: outbound failure rate at gmx 31.6% >= 10.0% (6 of 19 messages, 2026-11-27 to "
        "2026-11-28 UTC)"
    ]


def test_few_messages_page_no_one(samples: Path) -> None:
    """Under min_messages a rate is not judged: 102 failures of 335 are no alarm when 1,000
    messages are the least worth judging."""
    result = invoke("check", str(samples), *DAY, "--warn", "1%", "--min-messages", "1000")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "BOUNCE OK - outbound failure rate 30.4% (102 of 335 messages, 2026-11-27 to "
        "2026-11-28 UTC); too few messages to judge (fewer than 1,000) |"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[overall\nwarn = 5%\n", "not valid TOML: "),
        ('[overall]\nwarn = "lots"\n', "overall.warn: 'lots' is not a rate"),
        ("[overall]\nwarning = 0.05\n", "overall: unknown key 'warning'"),
        ("[blocklist]\nspamhaus = { warn = 0.5 }\n", "blocklist.spamhaus.warn: 0.5 is not a count"),
        ("[providers.google]\nwarn = 0.05\n", "unknown key 'providers'"),
        ("[provider.gogle]\nwarn = 0.05\n", "provider.gogle: not named in the rules"),
        ("[blocklist]\nspamhouse = { warn = 1 }\n", "blocklist.spamhouse: not named in the rules"),
    ],
)
def test_a_bad_thresholds_file_is_one_error_line_naming_it(
    samples: Path, tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = invoke("check", str(samples), *DAY, "--thresholds", str(path))
    assert result.exit_code == 3, result.output
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"Error: {path}: {reason}"), result.stderr
    assert result.stdout.startswith(f"BOUNCE UNKNOWN - {path}: {reason}")


# --- nothing to judge -------------------------------------------------------------------------


def test_an_empty_log_is_unknown(tmp_path: Path) -> None:
    """No message in the window: nothing to judge, and perhaps the logs stopped coming."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    result = invoke("check", str(log), *DAY, "--warn", "5%")
    assert result.exit_code == 3, result.output
    assert result.stdout == (
        "BOUNCE UNKNOWN - no outbound messages to judge: no events between 2026-11-27 00:00 UTC "
        "and 2026-11-28 00:00 UTC; the input holds none | messages=0 failed=0\n"
    )


def test_a_window_without_messages_names_the_days_there_are(samples: Path) -> None:
    args = ["--since", "2026-10-01", "--until", "2026-10-02", "--tz", "UTC", "--warn", "5%"]
    result = invoke("check", str(samples), *args)
    assert result.exit_code == 3, result.output
    assert "the input holds 2026-11-26 .. 2026-11-27 (2 days)" in result.stdout


# --- a store of a generated day -----------------------------------------------------------------


def test_check_on_a_store_of_a_generated_log(tmp_path: Path) -> None:
    """A generated Postfix day (50,000 lines) ingested into a store: the check reads the
    store's days as `report --store` does, and agrees with it."""
    store = generated_store(tmp_path, seed=1, lines=50_000, start="2026-12-05")
    window = ["--store", str(store), "--since", "2026-12-05", "--until", "2026-12-06"]
    final = _final(_report(*window))
    assert final["total"] > 1000 and final["failed"] > 0
    rate = final["failure_rate"]
    result = invoke("check", *window, "--warn", str(rate / 2), "--crit", str(rate * 2))
    assert result.exit_code == 1, result.output
    perfdata = _perfdata(result.stdout.splitlines()[0])
    assert float(perfdata["failure_rate"][0]) == rate
    assert (int(perfdata["messages"][0]), int(perfdata["failed"][0])) == (
        final["total"],
        final["failed"],
    )
    assert (
        f"({final['failed']:,} of {final['total']:,} messages, 2026-12-05 to 2026-12-06 UTC)"
        in (result.stdout)
    )
    empty = invoke("check", "--store", str(store), "--since", "2026-10-01", "--until",
                   "2026-10-02", "--warn", "5%")  # fmt: skip
    assert empty.exit_code == 3, empty.output
    note = "no events between 2026-10-01 00:00 UTC and 2026-10-02 00:00 UTC; the store holds "
    assert f"{note}2026-12-05" in empty.stdout
