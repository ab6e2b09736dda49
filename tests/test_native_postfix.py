"""The C tokenizer of the Postfix source (native/postfix.c) against the polars path (issue 18).

The polars path is the reference: the same inputs read with `BOUNCE_ANALYZER_NATIVE=0` and
with the C path must give identical outputs, batch by batch (events, malformed records,
counts) and the same state carried to the next run. Inputs: every Postfix file of
sample_logs/ and tests/data/postfix/, generated logs (several seeds, a week crossing the
clock changes of Europe/Paris), and generated lines mutated in the ways real logs are
damaged. Then the tokenizer itself on hand-written lines of each kind.

Without the extension (no compiler at install) these tests are skipped; under CI=true, whose
build always compiles it, they fail instead.
"""

from __future__ import annotations

import heapq
import os
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from _cli import invoke
from _native import extension_or_skip
from bounce_analyzer import native
from bounce_analyzer.generate import generate_postfix
from bounce_analyzer.reading import expand_inputs, read_batches
from bounce_analyzer.sources._views import number_column, string_column
from bounce_analyzer.sources.base import SourceOutput
from bounce_analyzer.sources.postfix import (
    _CARRIED,
    _KIND,
    _NATIVE_EVENTS,
    _NATIVE_REASONS,
    Postfix,
)

REPO = Path(__file__).resolve().parent.parent
#: Every Postfix file the repository holds (sample logs, corpus copies, synthetic logs).
POSTFIX_FILES = sorted(
    [
        *(REPO / "sample_logs" / "postfix").iterdir(),
        *(REPO / "tests" / "data" / "postfix" / "corpus").glob("*.log"),
        *(REPO / "tests" / "data" / "postfix" / "synthetic").iterdir(),
    ]
)
#: The night after the generated logs: classic stamps take their year from the file's date.
MTIME = datetime(2026, 11, 5, 3, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def tokenizer() -> ModuleType:
    """The extension; skipped when it is not built, a failure under CI (which builds it)."""
    return extension_or_skip("postfix")


# --- running both paths -------------------------------------------------------------------


def _run(
    path: Path, *, tz: str, batch_bytes: int, use_c: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[SourceOutput], pl.DataFrame]:
    """The source's outputs over `path` (and the state it would carry to the next run)."""
    with monkeypatch.context() as patch:
        patch.setenv(native.ENV, "1" if use_c else "0")
        source = Postfix(tz=tz)
    assert (source._tokenizer is not None) == use_c
    batches = read_batches(expand_inputs([str(path)])[0], batch_bytes=batch_bytes)
    outputs = list(source.parse(batches))
    return outputs, source.export_state()


def assert_same(
    path: Path, monkeypatch: pytest.MonkeyPatch, *, tz: str = "UTC", batch_bytes: int = 2**20
) -> int:
    """Both paths over `path` give identical outputs; returns the lines compared."""
    polars_outputs, polars_state = _run(
        path, tz=tz, batch_bytes=batch_bytes, use_c=False, monkeypatch=monkeypatch
    )
    c_outputs, c_state = _run(
        path, tz=tz, batch_bytes=batch_bytes, use_c=True, monkeypatch=monkeypatch
    )
    assert len(c_outputs) == len(polars_outputs)
    for number, (expected, got) in enumerate(zip(polars_outputs, c_outputs, strict=True)):
        where = f"{path.name}, output {number}"
        assert_frame_equal(got.events, expected.events, check_exact=True)
        assert_frame_equal(got.malformed, expected.malformed, check_exact=True)
        assert (got.read, got.skipped) == (expected.read, expected.skipped), where
    assert_frame_equal(c_state, polars_state, check_exact=True)
    return sum(out.read for out in polars_outputs)


def _in_two(log: Path, first: Path, second: Path) -> tuple[Path, Path]:
    """`log` cut at the line end nearest its middle, written to `first` and `second`."""
    data = log.read_bytes()
    middle = data.index(b"\n", len(data) // 2) + 1
    first.write_bytes(data[:middle])
    second.write_bytes(data[middle:])
    return first, second


def _with_mtime(path: Path) -> Path:
    os.utime(path, (MTIME, MTIME))
    return path


# --- differential: files, generated logs, batch sizes -------------------------------------


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize("path", POSTFIX_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_postfix_file_reads_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert assert_same(path, monkeypatch) > 0


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize(("batch_bytes", "count"), [(1, 30), (333, 60), (4096, 2000)])
def test_sample_logs_in_small_batches(
    batch_bytes: int, count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 byte: every batch is one line; 333 and 4096 bytes end batches all over the lines.
    # (A batch has a fixed cost of some milliseconds: `count` lines of each file.)
    for name in ("mail.log", "mail.log.1", "journal.json"):
        lines = (REPO / "sample_logs" / "postfix" / name).read_bytes().split(b"\n")
        path = tmp_path / name
        path.write_bytes(b"\n".join(lines[100 : 100 + count]))
        _with_mtime(path)
        assert_same(path, monkeypatch, tz="Europe/Paris", batch_bytes=batch_bytes)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated logs: three seeds in UTC, and a week crossing Europe/Paris' spring change
    (with long queue ids and postscreen rejects)."""
    folder = tmp_path_factory.mktemp("generated")
    logs = {}
    for seed in (1, 2, 3):
        path = folder / f"seed{seed}.log"
        generate_postfix(
            path, lines=20_000, seed=seed, start=datetime(2026, 11, 3, tzinfo=UTC), days=2
        )
        logs[f"seed{seed}"] = _with_mtime(path)
    paris = folder / "paris.log"
    generate_postfix(
        paris,
        lines=20_000,
        seed=7,
        tz="Europe/Paris",
        start=datetime(2026, 3, 26, tzinfo=UTC),
        days=7,
        long_queue_ids=True,
        postscreen_enforce=True,
    )
    os.utime(paris, (datetime(2026, 4, 3, tzinfo=UTC).timestamp(),) * 2)
    logs["paris"] = paris
    return logs


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize("name", ["seed1", "seed2", "seed3", "paris"])
@pytest.mark.parametrize("batch_bytes", [300_000, 2**22])
def test_generated_logs_read_the_same(
    generated: dict[str, Path], name: str, batch_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    tz = "Europe/Paris" if name == "paris" else "UTC"
    assert assert_same(generated[name], monkeypatch, tz=tz, batch_bytes=batch_bytes) == 20_000


@pytest.mark.usefixtures("tokenizer")
def test_the_c_path_takes_almost_every_generated_line(
    tokenizer: ModuleType, generated: dict[str, Path]
) -> None:
    # The differential tests would pass just as well if every line went down the polars
    # path: the lines the C path leaves must be the odd ones only.
    data = generated["seed1"].read_bytes()
    cut = tokenizer.tokenize(data, 1, b"")
    assert cut["lines"] == 20_000
    assert cut["others"] == 0
    assert cut["kept"] > 3_000 and cut["state"] > 5_000


# --- differential: mutated lines ----------------------------------------------------------

#: Lines a syslog file holds beside the generated ones, and shapes the C path leaves.
ODD_LINES = [
    "",
    "   ",
    "\t",
    "Nov  4 10:00:00 mx1 dovecot: lmtp(a@example.com)<5><X>: saved mail to INBOX",
    "Nov  4 10:00:00 mx1 postfix/smtp: 3F2A1B2C3D: to=<a@example.com>, relay=none, delay=1,"
    " status=deferred (connect to mx.example.com[192.0.2.7]:25: Connection timed out)",
    "Nov 04 10:00:00 mx1 postfix/qmgr[9]: 3F2A1B2C3D: removed",
    "Nov  4 10:00:00  mx1 postfix/qmgr[9]: 3F2A1B2C3D: removed",
    "Feb 30 10:00:00 mx1 postfix/qmgr[9]: 3F2A1B2C3D: removed",
    "Mar 29 02:30:00 mx1 postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=none, delay=1,"
    " status=bounced (host said: 550 5.1.1 no)",
    "Mar 29 02:30:00 mx1 dovecot: in an hour Europe/Paris skips",
    "Nov  4 24:00:00 mx1 postfix/qmgr[9]: 3F2A1B2C3D: removed",
    "2026-11-04T10:00:00.123456+01:00 mx1 postfix/qmgr[9]: 3F2A1B2C3D: removed",
    "<22>Nov  4 10:00:00 mx1 postfix/qmgr[9]: 3F2A1B2C3D: removed",
    "Nov  4 10:00:00 mx1 postfix/smtp[5]: 3F2A1B2C3D: tox=<a@example.com>, status=sent (x)",
    "Nov  4 10:00:00 mx1 postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=local,"
    " delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (delivered to maildir)",
    "Nov  4 10:00:00 mx1 postfix/smtp[5]: 3F2A1B2C3D: to=<>, orig_to=<b@example.com>,"
    " relay=[192.0.2.7]:25, conn_use=3, delay=1, dsn=4.4.1, status=deferred (lost (x)) y",
    "Nov  4 10:00:00 mx1 postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=x, delay=1,"
    " delays=1/2/3/4, dsn=5.1234.1, status=bounced (x)",
    "Nov  4 10:00:00 mx1 postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=x, delay=1,"
    " dsn=5.1.1, status=undeliverable (probe)",
    "Nov  4 10:00:00 mx1 postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=x, delay=1,"
    " status=weird (x)",
    "Nov  4 10:00:00 mx1 postfix/qmgr[9]: 3F2A1B2C3D: from=<s@example.org>, status=expired,"
    " returned to sender",
    "Nov  4 10:00:00 mx1 postfix/cleanup[8]: 3F2A1B2C3D: message-id=<<>",
    "Nov  4 10:00:00 mx1 postfix/cleanup[8]: 3F2A1B2C3D: message-id=plain@id tail",
    "Nov  4 10:00:00 mx1 postfix/smtpd[7]: NOQUEUE: reject: RCPT from [192.0.2.1]:4711: 550"
    " 5.7.1 Service unavailable; from=<s@example.org>, to=<a@example.com>, proto=ESMTP",
    "Nov  4 10:00:00 mx1 postfix/cleanup[8]: 3F2A1B2C3D: reject: header Subject: win from"
    " c[192.0.2.1]; from=<s@example.org> to=<a@example.com> proto=ESMTP helo=<c>: 5.7.1 Spam",
    "Nov  4 10:00:00 mx1 postfix/: 3F2A1B2C3D: removed",
    "Nov  4 10:00:00 mx1 postfix/[9]: 3F2A1B2C3D: removed",
    "Nov  4 10:00:00 mx1 mail/qmgr[9]: ABCDE: removed",
    "Nov  4 10:00:00 mx1 mail/qmgr[9]: abcde: removed",
    "Nov  4 10:00:00 mx1 postfix-out/smtp[5]:    NOQUEUE: reject: x",
    "Nov  4 10:00:00 mx1 postfix/smtp[5]:3F2A1B2C3D: removed",
]


def _mutations(lines: list[bytes], seed: int) -> Iterator[bytes]:
    """Each of `lines`, damaged one way or another (or not at all)."""
    rng = random.Random(seed)
    for line in lines:
        how = rng.randrange(12)
        cut = rng.randrange(len(line) + 1)
        if how == 0:
            yield line[:cut]  # truncated anywhere
        elif how == 1:
            yield line[:cut] + "é".encode() + line[cut:]  # non-ASCII (valid UTF-8)
        elif how == 2:
            yield line[:cut] + b"\xff\xfe" + line[cut:]  # invalid UTF-8
        elif how == 3:
            yield line[:cut] + b"\x00\x00" + line[cut:]  # NUL bytes (a crashed syslogd)
        elif how == 4:
            yield line + b"\r"  # CRLF
        elif how == 5:
            yield line[:cut] + b"\r" + line[cut:]  # a stray CR
        elif how == 6:
            yield line[:cut] + b"\t" + line[cut:]
        elif how == 7 and rng.random() < 0.05:
            yield line + b" " + b"x" * 70_000  # very long
        elif how == 8:
            yield line[:cut] + b" " + line[cut:]
        else:
            yield line


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize(("batch_bytes", "count"), [(1, 30), (65536, 1500), (2**20, 1500)])
def test_mutated_lines_read_the_same(
    generated: dict[str, Path],
    seed: int,
    batch_bytes: int,
    count: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = generated[f"seed{seed - 10}"].read_bytes().split(b"\n")[:count]
    lines = [*_mutations(taken, seed), *(line.encode() for line in ODD_LINES)]
    random.Random(seed).shuffle(lines)
    # (no newline after the last line, as a log cut while written ends)
    lines.append(b"Nov  4 10:00:00 mx1 postfix/qmgr[9]: 3F2A1B2C3D: removed")
    path = tmp_path / "mutated.log"
    path.write_bytes(b"\n".join(lines))
    _with_mtime(path)
    for tz in ("Europe/Paris",) if batch_bytes == 1 else ("UTC", "Europe/Paris"):
        assert assert_same(path, monkeypatch, tz=tz, batch_bytes=batch_bytes) == len(lines)


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize("batch_bytes", [4096, 2**20])
def test_batches_with_lines_of_both_paths_join_alike(
    generated: dict[str, Path], batch_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A header check's reject names no stage: the C path leaves it to the polars path, and
    # the batch's events of both paths are joined with its state lines (and the map's) as
    # the polars path joins them. Each such line here names the queue id of a line near it.
    lines = generated["seed1"].read_text(encoding="utf-8").split("\n")[:6000]
    mixed = []
    for number, line in enumerate(lines):
        mixed.append(line)
        queued = re.search(r"\]: ([0-9A-F]{6,}): ", line)
        if number % 40 == 7 and queued:
            queue_id = queued.group(1)
            mixed.append(
                f"{line[:15]} mx1 postfix/cleanup[8]: {queue_id}: reject: header Subject: win"
                " from c[192.0.2.1]; from=<s@Example.org> to=<A@example.com> proto=ESMTP: 5.7.1"
                " Spam"
            )
    path = tmp_path / "mixed.log"
    path.write_text("\n".join(mixed), encoding="utf-8")
    _with_mtime(path)
    assert assert_same(path, monkeypatch, batch_bytes=batch_bytes) == len(mixed)
    outputs, _ = _run(path, tz="UTC", batch_bytes=batch_bytes, use_c=True, monkeypatch=monkeypatch)
    events = pl.concat([out.events for out in outputs])
    rejected = events.filter(pl.col("diagnostic") == "5.7.1 Spam")
    assert rejected.height == len(mixed) - len(lines)
    # (some of them found their message's sender in the state lines of the C path)
    assert rejected["sender"].is_not_null().sum() > rejected.height // 2


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize(
    "start",
    [b"", b"\n\n", b"\r\n", b"\x00\n", b"\xef\xbb\xbf", b"   \n"],
    ids=["plain", "blank", "crlf", "nul", "bom", "spaces"],
)
def test_how_an_input_starts(
    generated: dict[str, Path], start: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C path decides an input's format from its first line's bytes; the polars path from
    # its first line that is not blank.
    path = tmp_path / "start.log"
    path.write_bytes(start + b"\n".join(generated["seed2"].read_bytes().split(b"\n")[:12]))
    _with_mtime(path)
    for batch_bytes in (1, 2**20):
        assert_same(path, monkeypatch, batch_bytes=batch_bytes)


@pytest.mark.usefixtures("tokenizer")
def test_state_carried_from_run_to_run(
    generated: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A log read in two runs (the second resumes with the first's state) reads the same.
    first, second = _in_two(generated["seed3"], tmp_path / "first.log", tmp_path / "second.log")
    events = {}
    for use_c in (False, True):
        with monkeypatch.context() as patch:
            patch.setenv(native.ENV, "1" if use_c else "0")
            one, two = Postfix(tz="UTC"), Postfix(tz="UTC")
        runs = []
        for source, path in ((one, first), (two, second)):
            if source is two:
                two.import_state(one.export_state())
            batches = read_batches(expand_inputs([str(_with_mtime(path))])[0])
            runs.extend(out.events for out in source.parse(batches))
        events[use_c] = pl.concat(runs)
    assert events[True]["sender"].null_count() < events[True].height  # (the join did join)
    assert_frame_equal(events[True], events[False], check_exact=True)


def _run_inputs(
    paths: list[Path], *, tz: str, batch_bytes: int, use_c: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[SourceOutput], pl.DataFrame]:
    """One source over several inputs, one after the other (as `ParseRun` reads them)."""
    with monkeypatch.context() as patch:
        patch.setenv(native.ENV, "1" if use_c else "0")
        source = Postfix(tz=tz)
    outputs = []
    for path in paths:
        batches = read_batches(expand_inputs([str(path)])[0], batch_bytes=batch_bytes)
        outputs.extend(source.parse(batches))
    return outputs, source.export_state()


def assert_inputs_same(
    paths: list[Path], monkeypatch: pytest.MonkeyPatch, *, tz: str = "UTC", batch_bytes: int
) -> list[SourceOutput]:
    """Both paths over `paths` in one run give identical outputs and state; the C path's."""
    expected, expected_state = _run_inputs(
        paths, tz=tz, batch_bytes=batch_bytes, use_c=False, monkeypatch=monkeypatch
    )
    got, got_state = _run_inputs(
        paths, tz=tz, batch_bytes=batch_bytes, use_c=True, monkeypatch=monkeypatch
    )
    assert len(got) == len(expected)
    for one, other in zip(got, expected, strict=True):
        assert_frame_equal(one.events, other.events, check_exact=True)
        assert_frame_equal(one.malformed, other.malformed, check_exact=True)
        assert (one.read, one.skipped) == (other.read, other.skipped)
    assert_frame_equal(got_state, expected_state, check_exact=True)
    return got


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize("batch_bytes", [2500, 2**20])
def test_a_queue_id_split_by_batches_and_files(
    generated: dict[str, Path], batch_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A log rotated in the middle of messages, read in one run: a queue id's cleanup and qmgr
    # lines in one file or batch, its recipient and `removed` lines in the next (the C path
    # joins a batch's own lines; what came before, the map of open ids, is joined after).
    lines = generated["seed1"].read_bytes().split(b"\n")[:1500]
    paths = []
    for number, part in enumerate((lines[:500], lines[500:1100], lines[1100:])):
        path = tmp_path / f"mail.log.{number}"
        path.write_bytes(b"\n".join(part) + b"\n")
        paths.append(_with_mtime(path))
    got = assert_inputs_same(paths, monkeypatch, batch_bytes=batch_bytes)
    events = pl.concat([out.events for out in got])
    # The join did join, across batches and files: events with a sender and a Message-ID.
    assert events["message_id"].null_count() < events.height // 2
    assert events["sender"].null_count() < events.height // 2


@pytest.mark.usefixtures("tokenizer")
def test_several_hosts_in_one_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Three servers logging to one file (a central syslog): their lines interleaved by time,
    # each with its own queue ids, hosts and Message-IDs.
    logs = []
    for seed, host in ((21, "mx1"), (22, "mx2"), (23, "relay.example.net")):
        path = tmp_path / f"{host}.log"
        generate_postfix(
            path, lines=3000, seed=seed, start=datetime(2026, 11, 3, tzinfo=UTC), days=1, host=host
        )
        logs.append(path.read_bytes().splitlines(keepends=True))
    path = tmp_path / "central.log"
    path.write_bytes(b"".join(heapq.merge(*logs, key=lambda line: line[:15])))
    _with_mtime(path)
    for batch_bytes in (60_000, 2**20):
        assert assert_same(path, monkeypatch, batch_bytes=batch_bytes) == 9000
    outputs, _ = _run(path, tz="UTC", batch_bytes=2**20, use_c=True, monkeypatch=monkeypatch)
    assert set(pl.concat([out.events for out in outputs])["host"]) == {
        "mx1",
        "mx2",
        "relay.example.net",
    }


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York"])
def test_state_across_files_over_clock_changes(
    generated: dict[str, Path], tz: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The week over Europe/Paris' spring change, cut in two files read in one run, read in
    # its own zone and in another (stamps in an hour the clocks skip go the polars way).
    first, second = _in_two(generated["paris"], tmp_path / "mail.log.1", tmp_path / "mail.log")
    for path in (first, second):
        os.utime(path, (datetime(2026, 4, 3, tzinfo=UTC).timestamp(),) * 2)
    assert_inputs_same([first, second], monkeypatch, tz=tz, batch_bytes=200_000)


# --- end to end: parse through the command line --------------------------------------------


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize(
    "path",
    [
        REPO / "sample_logs" / "postfix" / "mail.log",
        REPO
        / "tests"
        / "data"
        / "postfix"
        / "corpus"
        / "vignemail1-pflogsumm-go__testdata_sample.log",
    ],
    ids=lambda p: p.name,
)
def test_parse_writes_the_same(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = {}
    for flag in ("0", "1"):
        monkeypatch.setenv(native.ENV, flag)
        out = tmp_path / f"events-{flag}.parquet"
        bad = tmp_path / f"malformed-{flag}.jsonl"
        result = invoke(
            "parse",
            "--source",
            "postfix",
            "--tz",
            "UTC",
            "-q",
            str(path),
            "-o",
            str(out),
            "--malformed",
            str(bad),
        )
        assert result.exit_code == 0, result.output
        written[flag] = (pl.read_parquet(out), bad.read_text(encoding="utf-8"))
    assert written["1"][0].height > 0
    assert_frame_equal(written["1"][0], written["0"][0], check_exact=True)
    assert written["1"][1] == written["0"][1]


@pytest.mark.usefixtures("tokenizer")
def test_parse_of_a_generated_log_writes_the_same(
    generated: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = {}
    for flag in ("0", "1"):
        monkeypatch.setenv(native.ENV, flag)
        out = tmp_path / f"events-{flag}.parquet"
        path = str(generated["paris"])
        result = invoke(
            "parse", "--source", "postfix", "--tz", "Europe/Paris", "-q", path, "-o", str(out)
        )
        assert result.exit_code == 0, result.output
        written[flag] = pl.read_parquet(out)
    assert_frame_equal(written["1"], written["0"], check_exact=True)


# --- the tokenizer itself ------------------------------------------------------------------


#: The integer columns of `tokenize`'s tables (the others ending in `_valid` are bitmaps of
#: string views).
_NUMBERS = {
    "smtp_code": pa.int16(),
    "known_seq": pa.int64(),
    "known_removed": pa.int64(),
    "id_seq": pa.int64(),
    "id_removed": pa.int64(),
}
#: The prefixes of the columns of the tables other than the events'.
_OTHER_TABLES = ("state_", "id_", "bad_")


def _table(cut: dict[str, Any], data: bytes, prefix: str, count: int) -> list[dict[str, Any]]:
    """The rows of one of `tokenize`'s tables (its columns start with `prefix`) as dicts,
    without their nulls; strings and numbers by name (less `id_` or `bad_`), a state line's `kind`
    and an event's `event` by name."""
    columns: dict[str, list[Any]] = {}
    for name in cut:
        base = name.removesuffix("_valid")
        if base == name or base not in cut or not base.startswith(prefix):
            continue
        if prefix == "" and base.startswith(_OTHER_TABLES):
            continue
        if base in _NUMBERS:
            column = number_column(base, _NUMBERS[base], count, cut[base], cut[name])
        else:
            # (views into the batch, or into its lower-cased copies)
            second = cut["lower"] if prefix == "" else None
            column = string_column(base, count, cut[base], data, cut[name], second=second)
        # (a state line's fields keep their names: `state_sender`, as `_state_fields` says)
        columns[base.removeprefix("id_").removeprefix("bad_")] = column.to_list()
    named: dict[str, list[Any]] = {}
    if prefix == "state_":
        named["kind"] = [_KIND.categories[kind] for kind in bytes(cut["state_kind"])]
        columns["qid"] = string_column("qid", count, cut["state_qid"], data).to_list()
        columns["line_no"] = list(memoryview(cut["state_line_no"]).cast("q"))
    elif prefix == "":
        named["event"] = [_NATIVE_EVENTS[event] for event in bytes(cut["event"])]
        for flag in _CARRIED:
            named[flag] = list(bytes(cut[flag]))
        columns["line_no"] = list(memoryview(cut["line_no"]).cast("q"))
    elif prefix == "bad_":
        named["reason"] = [_NATIVE_REASONS[reason] for reason in bytes(cut["bad_reason"])]
        columns["raw"] = string_column("raw", count, cut["bad_raw"], data).to_list()
        columns["line_no"] = list(memoryview(cut["bad_line_no"]).cast("q"))
    else:
        columns = {
            "qid": string_column("qid", count, cut["id_qid"], data).to_list(),
            **columns,
            "state": list(bytes(cut["id_state"])),
            "open": list(bytes(cut["id_open"])),
        }
    return [
        {
            **{k: v[i] for k, v in named.items()},
            **{k: v[i] for k, v in columns.items() if v[i] is not None},
        }
        for i in range(count)
    ]


def _cut(tokenizer: ModuleType, text: str, gaps: bytes = b"") -> dict[str, Any]:
    """`tokenize` over `text`: its rows as dicts, in line order (events by `event`, state
    lines by `kind`, malformed lines by `reason`), the queue ids, the lines left."""
    data = text.encode()
    cut = tokenizer.tokenize(data, 1, gaps)
    events = _table(cut, data, "", cut["kept"])
    state = _table(cut, data, "state_", cut["state"])
    bad = _table(cut, data, "bad_", cut["bad"])
    rows = sorted(events + state + bad, key=lambda row: row.pop("line_no"))
    return {
        "rows": rows,
        "ids": _table(cut, data, "id_", cut["ids"]),
        "lines": cut["lines"],
        "others": cut["other_data"].decode("utf-8", "replace"),
    }


def test_a_recipient_status_line_is_cut_into_its_event(tokenizer: ModuleType) -> None:
    line = (
        "Nov 28 10:00:03 mx postfix-out/smtp[5]: 3F2A1B2C3D: to=<A@Example.com>,"
        " orig_to=<b@example.com>, relay=mx.example.com[192.0.2.7]:25, conn_use=2, delay=1.2,"
        " delays=0.1/0/0.5/0.6, dsn=5.1.1, status=bounced (host mx.example.com[192.0.2.7]"
        " said: 550 5.1.1 <a@example.com>: User unknown (in reply to RCPT TO command))"
    )
    got = _cut(tokenizer, line + "\n")
    assert got["lines"] == 1 and got["others"] == ""
    [row] = got["rows"]
    assert row == {
        "event": "bounced",
        "raw": line,
        "host": "mx",
        "transport": "smtp",
        "message_ref": "3F2A1B2C3D",
        "recipient": "a@example.com",
        "recipient_domain": "example.com",
        "original_recipient": "b@example.com",
        "relay_host": "mx.example.com",
        "relay_ip": "192.0.2.7",
        "delay": "1.2",
        "enhanced_code": "5.1.1",
        "diagnostic": line[line.index("(host") + 1 : -1],
        "smtp_code": 550,
        # (no state line of the batch names its queue id: the map of open ids may)
        "sender_own": 0,
        "sender_open": 1,
        "message_id_open": 1,
    }
    # relay=none: the host is the one the text names; the codes may lead the text.
    line = (
        "Nov 28 10:00:03 mx postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=none,"
        " delay=30, delays=0/0/30/0, dsn=4.4.1, status=deferred (connect to"
        " mx.example.com[192.0.2.7]:25: Connection timed out)"
    )
    [row] = _cut(tokenizer, line)["rows"]
    assert (row["event"], row["relay_host"], row["relay_ip"]) == (
        "deferred",
        "mx.example.com",
        "192.0.2.7",
    )
    assert "smtp_code" not in row
    line = line.replace("(connect to", "(451-4.7.1 greylisted (try later), see host x[y]")
    [row] = _cut(tokenizer, line)["rows"]
    assert row["diagnostic"].endswith("Connection timed out")
    # (the dsn is the status Postfix recorded: it wins over the text's enhanced code)
    assert (row["smtp_code"], row["enhanced_code"], row["relay_host"]) == (451, "4.4.1", "x")
    # Postfix before 2.3: no dsn, the text's codes.
    line = line.replace(" dsn=4.4.1,", "").replace("delays=0/0/30/0, ", "")
    [row] = _cut(tokenizer, line)["rows"]
    assert (row["smtp_code"], row["enhanced_code"]) == (451, "4.7.1")


def test_a_status_line_of_another_shape_is_malformed_or_skipped(tokenizer: ModuleType) -> None:
    # ...dsn=5.1234.1 is no enhanced code: the line is unreadable.
    line = (
        "Nov 28 10:00:03 mx postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=none,"
        " delay=1, dsn=5.1234.1, status=bounced (x)"
    )
    [row] = _cut(tokenizer, line)["rows"]
    assert row == {"reason": "unreadable recipient status line", "raw": line}
    unknown = line.replace("dsn=5.1234.1", "dsn=5.1.1").replace("bounced", "frobbed")
    assert _cut(tokenizer, unknown)["rows"] == [
        {"reason": "unknown status={}", "raw": unknown, "status": "frobbed"}
    ]
    # ...status=undeliverable: an address verification probe, read and skipped.
    probe = unknown.replace("frobbed", "undeliverable")
    assert _cut(tokenizer, probe)["rows"] == []
    # Postfix before 2.3: a dsn without delays=, and relay=none names no host of its own.
    line = (
        "Nov 28 10:00:03 mx postfix/smtp[5]: 3F2A1B2C3D: to=<>, relay=none, delay=1,"
        " dsn=4.4.1, status=deferred"
    )
    [row] = _cut(tokenizer, line)["rows"]
    assert {key: row.get(key) for key in ("event", "recipient", "relay_host", "enhanced_code")} == {
        "event": "deferred",
        "recipient": None,
        "relay_host": None,
        "enhanced_code": "4.4.1",
    }


@pytest.mark.parametrize(
    ("body", "kind", "fields"),
    [
        (
            "from=<s@example.org>, size=4303, nrcpt=1 (queue active)",
            "from",
            {"state_sender": "s@example.org"},
        ),
        ("from=<>, size=4303, nrcpt=1 (queue active)", "from", {"state_sender": ""}),
        (
            "from=<s@Example.org>, status=expired, returned to sender",
            "expired",
            {
                "transport": "qmgr",
                "sender": "s@Example.org",
                "sender_domain": "example.org",
                "diagnostic": "returned to sender",
            },
        ),
        (
            "message-id=<20261128.abc@example.org>",
            "message_id",
            {"state_message_id": "20261128.abc@example.org"},
        ),
        ("message-id=<>", "message_id", {}),
        ("removed", "removed", {}),
        (
            "reject: RCPT from c.example[192.0.2.1]: 554 5.7.1 Relay access denied",
            "rejected",
            {
                "transport": "qmgr",
                "diagnostic": "554 5.7.1 Relay access denied",
                "smtp_code": 554,
                "enhanced_code": "5.7.1",
                "client_host": "c.example",
                "client_ip": "192.0.2.1",
            },
        ),
        (
            "milter-reject: END-OF-MESSAGE from [192.0.2.1]: 4.7.1 Greylisting",
            "rejected",
            {"diagnostic": "4.7.1 Greylisting", "enhanced_code": "4.7.1", "client_ip": "192.0.2.1"},
        ),
        (
            "tox=<a@example.com>, relay=x, status=sent (ok)",
            "status line without to=<...> or relay=",
            {},
        ),
    ],
)
def test_each_kind_of_line(
    tokenizer: ModuleType, body: str, kind: str, fields: dict[str, str]
) -> None:
    line = f"Nov 28 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D: {body}"
    [row] = _cut(tokenizer, line)["rows"]
    assert kind in (row.get("kind"), row.get("event"), row.get("reason"))
    for name, value in fields.items():
        assert row[name] == value
    if "kind" in row:  # (a state line: its queue id and what it says)
        assert row["qid"] == "3F2A1B2C3D"
    elif "event" in row:  # (an event: its queue id, host and transport; no client of its own)
        assert (row["message_ref"], row["host"]) == ("3F2A1B2C3D", "mx")
        assert ("client_host" in row) == ("client_host" in fields)
    else:  # (a malformed line)
        assert row == {"reason": kind, "raw": line}


#: Lines read and skipped, and (True) lines left to the polars path, every one of its bytes.
SKIPPED_OR_LEFT = [
    ("Nov 28 10:00:03 mx postfix/smtpd[7]: connect from c.example[192.0.2.1]", False),
    ("Nov 28 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D: from=<s@example.org>, nrcpt=1", False),
    ("Nov 28 10:00:03 mx dovecot: lmtp(a@example.com): saved mail to INBOX", False),
    ("Nov 28 10:00:03 mx amavis[12]: (12345-01) Passed CLEAN, <s@example.org> -> <a@b.c>", False),
    ("Nov 28 10:00:03 mx postfix/qmgr[9]: queue: removed", False),
    ("   ", False),
    ("", False),
    ("2026-11-28T10:00:03.123+01:00 mx postfix/qmgr[9]: 3F2A1B2C3D: removed", True),
    ("<22>Nov 28 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D: removed", True),
    ("Nov 31 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D: removed", True),
    ("Nov 28 10:00:03 mx postfix/qmgr: 3F2A1B2C3D: removed", True),
    ("Nov 28 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D: removed \u00e9", True),
    ("Nov 28 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D: rem\x00oved", True),
    ("Nov 28 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D:\rremoved", True),
    ("not a syslog line", True),
    # (a reject with no stage text: the polars path reads its diagnostic)
    (
        "Nov 28 10:00:03 mx postfix/cleanup[8]: 3F2A1B2C3D: reject: header Subject: win from"
        " c[192.0.2.1]; from=<s@example.org> to=<a@example.com> proto=ESMTP: 5.7.1 Spam",
        True,
    ),
]


@pytest.mark.parametrize(("line", "left"), SKIPPED_OR_LEFT)
def test_lines_skipped_or_left_to_the_polars_path(
    tokenizer: ModuleType, line: str, *, left: bool
) -> None:
    got = _cut(tokenizer, line + "\n")
    assert (got["rows"], got["lines"]) == ([], 1)
    assert got["others"] == (line + "\n" if left else "")


def test_a_stamp_in_a_skipped_hour_is_left_to_the_polars_path(tokenizer: ModuleType) -> None:
    line = "Mar 29 02:30:00 mx postfix/qmgr[9]: 3F2A1B2C3D: removed"
    assert _cut(tokenizer, line, gaps=b"Mar 29 02:Mar 29 03:")["others"] == line + "\n"
    assert [row["kind"] for row in _cut(tokenizer, line)["rows"]] == ["removed"]


def test_line_numbers_crlf_and_a_last_line_without_newline(tokenizer: ModuleType) -> None:
    removed = "Nov 28 10:00:03 mx postfix/qmgr[9]: 3F2A1B2C3D: removed"
    data = f"{removed}\r\n\nnot syslog\r\n{removed}".encode()
    cut = tokenizer.tokenize(data, 41, b"")
    assert (cut["lines"], cut["kept"], cut["state"], cut["others"]) == (4, 0, 2, 1)
    assert list(memoryview(cut["state_line_no"]).cast("q")) == [41, 44]
    assert list(memoryview(cut["other_line_no"]).cast("q")) == [43]
    assert cut["other_data"] == b"not syslog\r\n"
    bounced = removed.replace("qmgr[9]", "smtp[5]").replace(
        "removed", "to=<a@b.c>, relay=none, delay=1, status=bounced (x)"
    )
    data = f"{bounced}\r\n\nnot syslog\r\n{bounced}".encode()
    cut = tokenizer.tokenize(data, 41, b"")
    assert (cut["lines"], cut["kept"], cut["state"], cut["others"]) == (4, 2, 0, 1)
    assert list(memoryview(cut["line_no"]).cast("q")) == [41, 44]
    raw = string_column("raw", 2, cut["raw"], data, cut["raw_valid"]).to_list()
    assert raw == [bounced, bounced]


def test_the_batch_joins_its_own_state_lines(tokenizer: ModuleType) -> None:
    # What a batch's state lines say of each event's queue id, as `_join_open_ids` reads
    # them: the last sender (`from=<>` is the null sender, ""), the last Message-ID that is
    # not empty; nothing for a line after the last `removed`; and where the map of open ids
    # (carried from earlier batches) is to be asked instead. Then each queue id the batch
    # names: the last of each, the line of the last of them, of the last `removed`.
    head = "Nov 28 10:00:0{} mx postfix/{}: {}: {}"
    sent = "to=<a@b.c>, relay=none, delay=1, status=sent (x)"
    lines = [
        head.format(1, "cleanup[8]", "3F2A1B2C3D", "message-id=<m1@example.org>"),
        head.format(1, "qmgr[9]", "3F2A1B2C3D", "from=<s@Example.org>, size=1, nrcpt=1 (x)"),
        head.format(2, "smtp[5]", "3F2A1B2C3D", sent),
        head.format(3, "cleanup[8]", "3F2A1B2C3D", "message-id=<>"),
        head.format(3, "qmgr[9]", "3F2A1B2C3D", "removed"),
        head.format(4, "qmgr[9]", "4B4B4B4B4B", "from=<>, size=1, nrcpt=1 (x)"),
        head.format(5, "smtp[5]", "9C9C9C9C9C", sent),
        head.format(6, "smtpd[7]", "NOQUEUE", "reject: RCPT from c[192.0.2.1]: 550 no; from=<x@y>"),
        head.format(7, "smtp[5]", "3F2A1B2C3D", sent),
    ]
    got = _cut(tokenizer, "\n".join(lines))
    events = [row for row in got["rows"] if "event" in row]
    joined = ("sender", "sender_domain", "message_id", "sender_own", "sender_open")
    assert [
        {key: row[key] for key in (*joined, "message_id_open") if key in row} for row in events
    ] == [
        {
            "sender": "s@Example.org",
            "sender_domain": "example.org",
            "message_id": "m1@example.org",
            "sender_own": 0,
            "sender_open": 0,
            "message_id_open": 0,
        },
        # a queue id no state line of the batch names: the map's, if it has it
        {"sender_own": 0, "sender_open": 1, "message_id_open": 1},
        # NOQUEUE names none; the reject names its sender
        {
            "sender": "x@y",
            "sender_domain": "y",
            "sender_own": 1,
            "sender_open": 0,
            "message_id_open": 1,
        },
        # after qmgr's "removed": nothing, not even the map's
        {"sender_own": 0, "sender_open": 0, "message_id_open": 0},
    ]
    assert got["ids"] == [
        {
            "qid": "3F2A1B2C3D",
            "sender": "s@Example.org",
            "message_id": "m1@example.org",
            "seq": 4,  # (line numbers: the empty Message-ID's line counts)
            "removed": 5,
            "state": 1,
            "open": 0,
        },
        {"qid": "4B4B4B4B4B", "sender": "", "seq": 6, "state": 1, "open": 1},
        {"qid": "9C9C9C9C9C", "state": 0, "open": 0},
    ]


#: Queue ids' lines whose addresses have capitals, and domains of every shape `domain_of`
#: reads: the recipient and the domains come lower-cased from the C path.
CAPITALS = [
    "Nov  4 10:00:0{s} mx1 postfix/cleanup[8]: {q}: message-id=<M.{q}@Example.ORG>",
    "Nov  4 10:00:0{s} mx1 postfix/qmgr[9]: {q}: from=<{sender}>, size=1, nrcpt=2 (queue active)",
    "Nov  4 10:00:0{s} mx1 postfix/smtp[5]: {q}: to=<{recipient}>, relay=none, delay=1,"
    " delays=0/0/1/0, dsn=5.1.1, status=bounced (host x[192.0.2.7] said: 550 5.1.1 no)",
    "Nov  4 10:00:0{s} mx1 postfix/qmgr[9]: {q}: from=<{sender}>, status=expired, returned to"
    " sender",
    "Nov  4 10:00:0{s} mx1 postfix/smtpd[7]: NOQUEUE: reject: RCPT from c[192.0.2.1]: 554 5.7.1"
    " <{recipient}>: Relay access denied; from=<{sender}> to=<{recipient}> proto=ESMTP helo=<c>",
    "Nov  4 10:00:0{s} mx1 postfix/qmgr[9]: {q}: removed",
]
ADDRESSES = [
    "Bob.Smith@Example.COM",
    "bob@example.com",
    "MAILER-DAEMON",
    "",
    "a@@Example.com",
    "a@",
    "@B.C",
    "a b@Ex ample.com",
    "x@Y.Z ",
    "ALL@CAPS.EXAMPLE.NET",
    "a@b@C.D",
    "tab\t@Example.COM",
    "x" * 20 + "@" + "Y" * 20 + ".com",
]


@pytest.mark.usefixtures("tokenizer")
@pytest.mark.parametrize("batch_bytes", [1, 700, 2**20])
def test_capitals_and_domains_read_the_same(
    batch_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    lines = []
    for number, sender in enumerate(ADDRESSES):
        queue_id = f"{number + 0xA0000:X}"
        for recipient in rng.sample(ADDRESSES, 2):
            for second, line in enumerate(CAPITALS):
                lines.append(line.format(s=second, q=queue_id, sender=sender, recipient=recipient))
    path = tmp_path / "capitals.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _with_mtime(path)
    assert assert_same(path, monkeypatch, batch_bytes=batch_bytes) == len(lines)
    outputs, _ = _run(path, tz="UTC", batch_bytes=batch_bytes, use_c=True, monkeypatch=monkeypatch)
    events = pl.concat([out.events for out in outputs])
    # (the C path did lower-case: capitals were read, none is left)
    assert "example.com" in set(events["recipient_domain"])
    assert "example.com" in set(events["sender_domain"])
    assert not events["recipient"].drop_nulls().str.contains("[A-Z]").any()


def test_the_recipient_and_the_domains_come_lower_cased(tokenizer: ModuleType) -> None:
    line = (
        "Nov 28 10:00:03 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from c[192.0.2.1]: 554"
        " 5.7.1 Denied; from=<Bob@Sender.Example.ORG> to=<Carol.Jones@Example.COM> proto=SMTP"
    )
    [row] = _cut(tokenizer, line)["rows"]
    assert (row["recipient"], row["recipient_domain"], row["sender"], row["sender_domain"]) == (
        "carol.jones@example.com",
        "example.com",
        "Bob@Sender.Example.ORG",
        "sender.example.org",
    )
    # Already lower-case: views into the batch, no copy.
    cut = tokenizer.tokenize(line.lower().replace("nov", "Nov").encode(), 1, b"")
    assert cut["lower"] == b""
