"""The store against damage, races and careless options, through the real CLI (issue 12).

Set-aside records counted once, damaged or unreadable part files named, readers that never see
half a prune, first ingests that race, `prune` that asks before it empties a store, and
timestamps no clock could have written.
"""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import Result

from _samples import BOUNCED, BROKEN
from bounce_analyzer.pipeline import set_aside_implausible
from bounce_analyzer.store import scan_quarantine
from test_faults import invoke, snapshot, write_log

#: These tests look into the version-1 folder layout (catalogue.json, state/, tmp/, flock):
#: the stores they make are of that layout (tests/test_store_delta.py tests the Delta store).
pytestmark = pytest.mark.usefixtures("folder_layout")


def quarantined(root: Path) -> list[tuple[str, str]]:
    """(origin, raw) of each record the store set aside, sorted."""
    frame = scan_quarantine(root).select("origin", "raw").collect()
    return sorted(frame.iter_rows())


# --- the quarantine counts each record once ---------------------------------------------------


def test_identical_files_in_one_run_set_a_record_aside_once(tmp_path: Path) -> None:
    content = f"{BOUNCED}\n{BROKEN}\n".encode()
    first = write_log(tmp_path / "mail.log", content)
    copy = write_log(tmp_path / "copy.log", content)
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(first), str(copy))
    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "ingested 2 files: 1 new events (1 bounced), 1 malformed set aside, 1 duplicates dropped\n"
    )
    assert quarantined(root) == [(f"{first}:2", BROKEN)]
    report = invoke("report", "--store", str(root), "--since", "1d", "--format", "json")
    assert json.loads(report.stdout)["malformed"] == 1


def test_a_rotated_copy_read_again_sets_nothing_aside_twice(tmp_path: Path) -> None:
    """The catalogue lost (a run killed before writing it): the rotated, compressed copy is
    read again from its start, and its malformed line is known by its place in the input."""
    content = f"{BOUNCED}\n{BROKEN}\n".encode()
    live = write_log(tmp_path / "mail.log", content)
    root = tmp_path / "store"
    assert invoke("ingest", "--store", str(root), "--tz", "UTC", str(live)).exit_code == 0
    (root / "catalogue.json").unlink()
    rotated = write_log(tmp_path / "mail.log.1.gz", gzip.compress(content))
    live.unlink()
    again = invoke("ingest", "--store", str(root), "--tz", "UTC", str(rotated))
    assert again.exit_code == 0, again.output
    assert again.output.endswith("0 new events, 0 malformed set aside, 1 duplicates dropped\n")
    assert quarantined(root) == [(f"{live}:2", BROKEN)]


def test_identical_records_in_different_places_all_count(tmp_path: Path) -> None:
    """The same broken line twice in one log, and once in another log: three records."""
    one = write_log(tmp_path / "one.log", f"{BOUNCED}\n{BROKEN}\n{BROKEN}\n".encode())
    other = write_log(tmp_path / "other.log", f"{BROKEN}\n".encode())
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(one), str(other))
    assert result.exit_code == 0, result.output
    assert "3 malformed set aside" in result.output
    assert quarantined(root) == [(f"{one}:2", BROKEN), (f"{one}:3", BROKEN), (f"{other}:1", BROKEN)]
    # Both read again: nothing more.
    (root / "catalogue.json").unlink()
    again = invoke("ingest", "--store", str(root), "--tz", "UTC", str(one), str(other))
    assert "0 malformed set aside" in again.output
    assert len(quarantined(root)) == 3


# --- damaged, unreadable and racing store files -----------------------------------------------

#: What a damaged part file's error ends with: what to do.
ADVICE = "; move it out of the store, or prune its day (docs/STORE.md, Damage)\n"


def postfix_days(path: Path, days: range, per_day: int = 3) -> Path:
    """A Postfix log with `per_day` bounces on each November day of `days` (2026, UTC)."""
    lines = [
        BOUNCED.replace("Nov 27", f"Nov {day:2d}")
        .replace("3F2A1B2C3D", f"{day:02d}{number:08X}")
        .replace("a@example.com", f"u{day}.{number}@example.com")
        for day in days
        for number in range(per_day)
    ]
    return write_log(path, ("\n".join(lines) + "\n").encode())


@pytest.fixture
def day_store(tmp_path: Path) -> Path:
    """A store of 3 bounces a day from 20 to 27 November 2026: one part file a day."""
    root = tmp_path / "store"
    log = postfix_days(tmp_path / "days.log", range(20, 28))
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(log))
    assert result.exit_code == 0, result.output
    return root


def part_file(root: Path, day: str) -> Path:
    (found,) = (root / "events" / f"date={day}").glob("part-*.parquet")
    return found


def report_total(root: Path, *, since: str = "2026-11-01") -> int:
    result = invoke("report", "--store", str(root), "--since", since, "--format", "json")
    assert result.exit_code == 0, result.output
    totals = json.loads(result.stdout)["totals"]
    return int(totals[0]["total"]) if totals else 0


def stored_files(root: Path) -> dict[str, bytes]:
    """The store's data files and their bytes (not its locks and catalogue)."""
    return {
        name: data
        for name, data in snapshot(root).items()
        if not name.endswith("lock") and name != "catalogue.json"
    }


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_page_headers(path: Path) -> None:
    """Set the first bytes of the header of the first data page of `timestamp` and `event_id`
    (what reports and exports read, and what ingest's de-duplication reads)."""
    metadata = pq.read_metadata(path).row_group(0)
    data = bytearray(path.read_bytes())
    for i in range(metadata.num_columns):
        column = metadata.column(i)
        if column.path_in_schema in ("timestamp", "event_id"):
            start = column.data_page_offset
            data[start : start + 4] = b"\xff" * 4
    path.write_bytes(bytes(data))


def run_on_damage(command: str, root: Path, tmp_path: Path) -> Result:
    """`command` over a store with a damaged day: report, export, or an ingest that stages
    events of that day (the log read again after its catalogue entry was lost)."""
    if command == "ingest":
        (root / "catalogue.json").unlink()
        args = ["--tz", "UTC", str(tmp_path / "days.log")]
    elif command == "export":
        args = ["--since", "2026-11-01", "-o", str(tmp_path / "out.parquet")]
    else:
        args = ["--since", "2026-11-01"]
    return invoke(command, "--store", str(root), *args)


@pytest.mark.parametrize("command", ["report", "export", "ingest"])
def test_a_truncated_part_file_is_named_with_what_to_do(
    command: str, day_store: Path, tmp_path: Path
) -> None:
    damaged = part_file(day_store, "2026-11-24")
    truncate(damaged)
    before = stored_files(day_store)
    result = run_on_damage(command, day_store, tmp_path)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {damaged} is damaged (parquet: File out of specification: The file must end "
        f"with PAR1 or PARE){ADVICE}"
    )
    assert stored_files(day_store) == before
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("command", ["report", "export", "ingest"])
def test_a_bit_flipped_part_file_is_named(command: str, day_store: Path, tmp_path: Path) -> None:
    damaged = part_file(day_store, "2026-11-24")
    flip_page_headers(damaged)
    result = run_on_damage(command, day_store, tmp_path)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {damaged} is damaged (")
    assert result.output.endswith(ADVICE)
    assert result.output.count("\n") == 1


def test_prune_removes_a_damaged_day_without_reading_it(day_store: Path) -> None:
    truncate(part_file(day_store, "2026-11-20"))
    flip_page_headers(part_file(day_store, "2026-11-21"))
    result = invoke("prune", "--store", str(day_store), "--older-than", "1d")
    assert result.exit_code == 0, result.output
    # The truncated file's footer is gone: its 3 events are not counted, but it goes.
    assert result.output == "removed 21 events older than 1d\n"
    assert not (day_store / "events").exists() or not any((day_store / "events").iterdir())
    assert report_total(day_store) == 0


def drop_file_access() -> None:
    """In a child process before it runs (as root): give up reading what one may not read.
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH leave the bounding set, so the program run next
    has neither, and a file of mode 000 is as unreadable to it as to anyone else."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_part_file_without_read_permission_is_named(day_store: Path) -> None:
    """Runs as root too: the CLI runs in a process without root's right to read anything."""
    unreadable = part_file(day_store, "2026-11-22")
    unreadable.chmod(0)
    command = [sys.executable, "-m", "bounce_analyzer", "report", "--store", str(day_store)]
    result = subprocess.run(
        [*command, "--since", "2026-11-01"],
        capture_output=True,
        text=True,
        preexec_fn=drop_file_access if os.geteuid() == 0 else None,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"Error: cannot read the store file {unreadable}: Permission denied\n"


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"prefix_len": "4096"}, "input 1: prefix_len is not a whole number >= 0"),
        ({"offset": -5}, "input 1: offset is not a whole number >= 0"),
        ({"line": True}, "input 1: line is not a whole number >= 0"),
        ({"source": 7}, "input 1: source is not text or null"),
        ({"prefix_hash": None}, "input 1: prefix_hash is not text"),
    ],
)
def test_a_catalogue_entry_of_the_wrong_type_is_named(
    entry: dict[str, object], why: str, day_store: Path, tmp_path: Path
) -> None:
    catalogue = day_store / "catalogue.json"
    data = json.loads(catalogue.read_text())
    data["inputs"][0].update(entry)
    catalogue.write_text(json.dumps(data))
    result = invoke("ingest", "--store", str(day_store), "--tz", "UTC", str(tmp_path / "days.log"))
    assert result.exit_code == 1
    assert result.output == f"Error: {catalogue} is damaged ({why}); remove it to re-read\n"


@pytest.mark.parametrize(
    ("data", "why"),
    [({"inputs": {}}, "no list of inputs"), ({"inputs": [3]}, "input 1 is not an object")],
)
def test_a_catalogue_that_is_not_a_list_of_objects_is_named(
    data: object, why: str, day_store: Path, tmp_path: Path
) -> None:
    catalogue = day_store / "catalogue.json"
    catalogue.write_text(json.dumps(data))
    result = invoke("ingest", "--store", str(day_store), str(tmp_path / "days.log"))
    assert result.exit_code == 1
    assert result.output == f"Error: {catalogue} is damaged ({why}); remove it to re-read\n"


#: Run the CLI in a process of its own (argv after the script), after `{setup}`.
CLI_SCRIPT = """
import sys, time
from pathlib import Path
from bounce_analyzer import store
store.NEW_STORE_VERSION = 1  # (the folder layout's internals: see `_folder_layout`)
{setup}
from bounce_analyzer.cli import main
sys.argv = ["bounce-analyzer", *sys.argv[1:]]
main()
"""

#: A report that sleeps once it has listed its files, and says so in the file `{flag}`.
SLOW_LISTING = """
listing = store.partition_files
def partition_files(*args, **kwargs):
    files = listing(*args, **kwargs)
    Path({flag!r}).touch()
    time.sleep(1.5)
    return files
store.partition_files = partition_files
"""

#: A prune that sleeps after each day it moves out.
SLOW_PRUNE = "store.between_steps = lambda: time.sleep(0.4)"


def cli_process(*args: str, setup: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLI_SCRIPT.format(setup=setup), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out, err


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_report_sees_the_store_before_a_prune_that_comes_while_it_reads(
    day_store: Path, tmp_path: Path
) -> None:
    """The report has listed its files when the prune starts: the prune waits for it."""
    before = report_total(day_store)
    flag = tmp_path / "listed"
    report = cli_process(
        "report", "--store", str(day_store), "--since", "2026-11-01", "--format", "json",
        setup=SLOW_LISTING.format(flag=str(flag)),
    )  # fmt: skip
    wait_for(flag.exists)
    prune = cli_process("prune", "--store", str(day_store), "--older-than", "1d")
    out, _ = finish(report)
    assert json.loads(out)["totals"][0]["total"] == before == 24
    assert finish(prune)[1] == "removed 24 events older than 1d\n"
    assert report_total(day_store) == 0


def test_a_report_that_comes_during_a_prune_sees_the_store_after_it(day_store: Path) -> None:
    """The prune has moved some days out when the report starts: the report waits for it."""
    prune = cli_process("prune", "--store", str(day_store), "--older-than", "1d", setup=SLOW_PRUNE)
    wait_for(lambda: not (day_store / "events" / "date=2026-11-20").exists())
    assert prune.poll() is None  # seven days still to go
    assert report_total(day_store) == 0
    assert finish(prune)[1] == "removed 24 events older than 1d\n"


#: Open the store only once the file `{go}` exists, so that all processes open it at once.
AT_ONCE = """
from bounce_analyzer import ingest
number = sys.argv.pop()
def open_store(*args, **kwargs):
    Path({go!r} + "-" + number).touch()
    while not Path({go!r}).exists():
        time.sleep(0.0002)
    return store.open_store(*args, **kwargs)
ingest.open_store = open_store
"""


def test_first_ingests_into_a_new_folder_at_once_all_succeed(tmp_path: Path) -> None:
    """Four ingests start together into a folder that does not exist yet: each opens (or makes)
    the same store, and the log's events are stored once."""
    log = postfix_days(tmp_path / "days.log", range(26, 28))
    root = tmp_path / "new" / "store"
    go = tmp_path / "go"
    processes = [
        cli_process(
            "ingest",
            "--wait",
            "--store",
            str(root),
            "--tz",
            "UTC",
            str(log),
            str(number),
            setup=AT_ONCE.format(go=str(go)),
        )  # fmt: skip
        for number in range(4)
    ]
    wait_for(lambda: len(list(tmp_path.glob("go-*"))) == 4)
    go.touch()
    outputs = [finish(process)[1] for process in processes]
    assert sorted(outputs)[-1] == (
        "ingested 1 file: 6 new events (6 bounced), 0 malformed set aside, 0 duplicates dropped\n"
    )
    assert sorted(outputs)[:-1] == ["ingested 1 file: 0 new events, 0 malformed set aside, "
                                    "0 duplicates dropped\n"] * 3  # fmt: skip
    assert report_total(root) == 6


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "--source", "sendmail", "LOG"],
        ["ingest", "--tz", "Mars/Olympus", "LOG"],
        ["ingest", "--rules", "NOWHERE", "LOG"],
        ["ingest", "NOWHERE"],
        ["report", "--since", "banana"],
        ["report", "--by", "planet"],
        ["export", "--since", "-7d", "-o", "OUT"],
        ["export", "--partition-by", "month", "-o", "OUT"],
        ["prune", "--older-than", "soon"],
    ],
)
def test_a_usage_error_makes_no_store(args: list[str], tmp_path: Path) -> None:
    log = write_log(tmp_path / "mail.log", f"{BOUNCED}\n".encode())
    root = tmp_path / "store"
    where = {"LOG": str(log), "NOWHERE": str(tmp_path / "nowhere"), "OUT": str(tmp_path / "o")}
    result = invoke(*[where.get(a, a) for a in args], "--store", str(root))
    assert result.exit_code in (1, 2), result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1
    assert not root.exists()


# --- prune asks before it empties a store -----------------------------------------------------


def test_an_age_before_the_year_1_is_a_usage_error(day_store: Path) -> None:
    before = stored_files(day_store)
    result = invoke("prune", "--store", str(day_store), "--older-than", "9999999w")
    assert result.exit_code == 2
    assert result.output == (
        "Error: invalid --older-than value '9999999w': it reaches back before the year 1\n"
    )
    assert stored_files(day_store) == before


def test_a_dry_run_lists_the_days_and_removes_nothing(day_store: Path, tmp_path: Path) -> None:
    broken = write_log(tmp_path / "broken.log", f"{BROKEN}\n".encode())
    # set aside in the quarantine; a log of which nothing was an event fails the run (exit 1)
    assert invoke("ingest", "--store", str(day_store), str(broken)).exit_code == 1
    # The malformed record is filed under the day it was read (today): give it an old day.
    (quarantined_day,) = (day_store / "quarantine").iterdir()
    quarantined_day.rename(quarantined_day.with_name("date=2026-11-21"))
    before = stored_files(day_store)
    result = invoke("prune", "--store", str(day_store), "--older-than", "1d", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(
        f"2026-11-{day}: 3 events, {1 if day == 21 else 0} malformed\n" for day in range(20, 28)
    )
    assert result.stderr == (
        "would remove 24 events (8 days) older than 1d; nothing removed (--dry-run)\n"
    )
    assert stored_files(day_store) == before


@pytest.mark.parametrize("age", ["0d", "23h", "90m", "0m"])
def test_an_age_under_a_day_needs_yes(age: str, day_store: Path) -> None:
    before = stored_files(day_store)
    refused = invoke("prune", "--store", str(day_store), "--older-than", age)
    assert refused.exit_code == 2
    assert refused.output == (
        f"Error: --older-than {age} is less than a day, which prunes nearly the whole store: "
        "add --yes if you mean it (--dry-run lists the days it would remove)\n"
    )
    assert stored_files(day_store) == before
    listed = invoke("prune", "--store", str(day_store), "--older-than", age, "--dry-run")
    assert listed.exit_code == 0
    assert listed.stderr.startswith("would remove 24 events (8 days)")
    assert stored_files(day_store) == before
    done = invoke("prune", "--store", str(day_store), "--older-than", age, "--yes")
    assert done.exit_code == 0
    assert done.output == f"removed 24 events older than {age}\n"
    assert report_total(day_store) == 0


def test_an_age_of_a_day_or_more_needs_no_yes(day_store: Path) -> None:
    result = invoke("prune", "--store", str(day_store), "--older-than", "24h")
    assert result.exit_code == 0
    assert result.output == "removed 24 events older than 24h\n"


# --- timestamps no clock could have written ---------------------------------------------------


def sendgrid_bounce(number: int, timestamp: int) -> str:
    return json.dumps(
        {
            "email": f"u{number}@example.com",
            "timestamp": timestamp,
            "event": "bounce",
            "sg_event_id": f"event-{number}",
            "sg_message_id": f"message-{number}",
            "reason": "550 5.1.1 no such user",
            "status": "5.1.1",
            "type": "bounce",
        }
    )


def journal_bounce(number: int, realtime_us: str) -> str:
    """A `journalctl -o json` record of a Postfix bounce, stamped `realtime_us`."""
    message = BOUNCED.split(": ", 1)[1].replace("a@example.com", f"u{number}@example.com")
    return json.dumps(
        {
            "__REALTIME_TIMESTAMP": realtime_us,
            "_HOSTNAME": "mx1",
            "SYSLOG_IDENTIFIER": "postfix/smtp",
            "SYSLOG_PID": "2",
            "MESSAGE": message,
        }
    )


def store_days(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "events").iterdir())


def test_a_sendgrid_event_of_year_5138_is_set_aside(tmp_path: Path) -> None:
    good = 1795651448  # 2026-11-26
    events = tmp_path / "events.ndjson"
    events.write_text(f"{sendgrid_bounce(1, 99999999999)}\n{sendgrid_bounce(2, good)}\n")
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), str(events))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "ingested 1 file: 1 new events (1 bounced), 1 malformed set aside, 0 duplicates dropped\n"
    )
    assert store_days(root) == ["date=2026-11-26"]
    assert quarantined(root) == [
        (f"{events}:1", "5138-11-16 09:46:39.000000+00:00 bounced u1@example.com")
    ]
    reasons = scan_quarantine(root).select("reason").collect()["reason"].to_list()
    assert reasons == ["implausible timestamp: more than a day after the run"]
    assert report_total(root, since="2026-01-01") == 1


def test_a_postfix_journal_line_of_1969_is_set_aside(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    lines = [
        journal_bounce(1, "-1000000"),  # 1969-12-31 23:59:59 UTC
        journal_bounce(2, "-62135596800000001"),  # 0000-12-31 23:59:59.999999 UTC
        journal_bounce(3, "1795767129000137"),  # 2026-11-27 05:32:09 UTC
    ]
    journal.write_text("\n".join(lines) + "\n")
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), str(journal))
    assert result.exit_code == 0, result.output
    assert result.output.endswith("1 new events (1 bounced), 2 malformed set aside, "
                                  "0 duplicates dropped\n")  # fmt: skip
    assert store_days(root) == ["date=2026-11-27"]
    assert scan_quarantine(root).select("origin", "reason", "raw").collect().sort(
        "origin"
    ).rows() == [
        (f"{journal}:1", "implausible timestamp: before 1970-01-01 UTC",
         "1969-12-31 23:59:59.000000+00:00 bounced u1@example.com"),
        (f"{journal}:2", "implausible timestamp: before 1970-01-01 UTC",
         "0000-12-31 23:59:59.999999+00:00 bounced u2@example.com"),
    ]  # fmt: skip


def test_the_latest_plausible_time_is_a_day_after_the_run(tmp_path: Path) -> None:
    """Measured against the clock of the run (the CLI passes it): 12 hours ahead is a host's
    clock that drifts or a zone set wrong, 2 days ahead is not a time the event happened."""
    now = int(time.time())
    events = tmp_path / "events.ndjson"
    events.write_text(
        f"{sendgrid_bounce(1, now + 12 * 3600)}\n{sendgrid_bounce(2, now + 2 * 86400)}\n"
    )
    result = invoke("parse", str(events))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["recipient"] for line in result.stdout.splitlines()] == [
        "u1@example.com"
    ]
    assert result.stderr == f"{events}: sendgrid, 2 read, 1 events, 0 skipped, 1 malformed\n"


def test_the_syslog_year_is_still_inferred_from_the_file(tmp_path: Path) -> None:
    """Classic stamps have no year: a log written on 2 January holds the last lines of the
    old year and the first of the new one, each in its own year."""
    december = BOUNCED.replace("Nov 27 10:00:01", "Dec 31 23:59:59")
    january = BOUNCED.replace("Nov 27 10:00:01", "Jan  1 00:00:01").replace("a@", "b@")
    log = tmp_path / "mail.log.1"
    log.write_text(f"{december}\n{january}\n")
    written = datetime(2026, 1, 2, 6, 25, tzinfo=UTC).timestamp()
    os.utime(log, (written, written))
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(log))
    assert result.exit_code == 0, result.output
    assert "2 new events" in result.output
    assert store_days(root) == ["date=2025-12-31", "date=2026-01-01"]


@pytest.mark.parametrize(
    ("stamp", "kept"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), True),
        (datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), False),
        (datetime(2026, 11, 29, 12, tzinfo=UTC), True),  # now + 1 day
        (datetime(2026, 11, 29, 12, 0, 0, 1, tzinfo=UTC), False),
        (None, True),  # no timestamp: the `date=unknown` partition
    ],
)
def test_the_bounds_of_a_plausible_time(stamp: datetime | None, kept: bool) -> None:
    events = pl.DataFrame(
        {"timestamp": [stamp], "event": ["bounced"], "recipient": ["a@example.com"],
         "origin": ["x.log:1"]},
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )  # fmt: skip
    plausible, aside = set_aside_implausible(events, now=datetime(2026, 11, 28, 12, tzinfo=UTC))
    assert (plausible.height, aside.height) == ((1, 0) if kept else (0, 1))
