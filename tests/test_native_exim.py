"""The C tokenizer of the Exim source (native/exim.c) against the polars path, the reference.

Differential runs: the same inputs through both paths (`BOUNCE_ANALYZER_NATIVE=0` and the C
path) give the same frames, batch by batch (events, malformed rows, counts) and the same state
carried to the next run: every Exim log of sample_logs/ and tests/data, generated logs (several
seeds, a run across a DST change, batches down to one line), and mutated lines. Then the
tokenizer itself on hand-written lines of each kind.

Without the extension the tests skip, saying so; under CI=true (which builds it) they fail.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from _cli import invoke
from _native import extension_or_skip
from bounce_analyzer import native
from bounce_analyzer.generate import generate_exim
from bounce_analyzer.reading import expand_inputs, read_batches
from bounce_analyzer.sources import exim
from bounce_analyzer.sources.base import SourceOutput

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

#: Every Exim log in the repository: the bundled sample, the corpus copies, the tests' own.
EXIM_LOGS = sorted(
    [
        REPO / "sample_logs" / "exim" / "mainlog",
        *(DATA / "exim").glob("*.log"),
        DATA / "direction" / "exim-debian.log",
        DATA / "retry" / "mainlog",
    ]
)


@pytest.fixture
def tokenizer(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The C tokenizer; the test skips without it (fails under CI, which builds it)."""
    monkeypatch.delenv(native.ENV, raising=False)
    return extension_or_skip("exim")


# --- running both paths -----------------------------------------------------------------------


def _parse(
    path: Path, *, native_path: bool, batch_bytes: int, tz: str
) -> tuple[list[SourceOutput], pl.DataFrame]:
    previous = os.environ.get(native.ENV)
    os.environ[native.ENV] = "1" if native_path else "0"
    try:
        source = exim.Exim(tz=tz)
        batches = read_batches(expand_inputs([str(path)])[0], batch_bytes=batch_bytes)
        outputs = list(source.parse(batches))
        return outputs, source.export_state()
    finally:
        if previous is None:
            del os.environ[native.ENV]
        else:
            os.environ[native.ENV] = previous


def assert_same_on_both_paths(
    path: Path, *, batch_bytes: int = 32 * 2**20, tz: str = "UTC"
) -> list[SourceOutput]:
    """Parse `path` on each path; every batch's frames and counts and the final state equal."""
    reference = _parse(path, native_path=False, batch_bytes=batch_bytes, tz=tz)
    fast = _parse(path, native_path=True, batch_bytes=batch_bytes, tz=tz)
    assert_alike(reference, fast, f"{path.name}, batch")
    return reference[0]


def assert_alike(
    reference: tuple[list[SourceOutput], pl.DataFrame],
    fast: tuple[list[SourceOutput], pl.DataFrame],
    where: str,
) -> None:
    """The outputs and state of the polars path (`reference`) and the C path (`fast`) are
    equal: every output's frames and counts (the first that differs is named), the state."""
    assert len(fast[0]) == len(reference[0])
    for number, (want, got) in enumerate(zip(reference[0], fast[0], strict=True)):
        try:
            assert_frame_equal(got.events, want.events)
            assert_frame_equal(got.malformed, want.malformed)
        except AssertionError as error:
            raise AssertionError(f"{where} {number}: {error}") from None
        assert (got.read, got.skipped) == (want.read, want.skipped), f"{where} {number}"
    assert_frame_equal(fast[1], reference[1])


def claimed(tokenizer: ModuleType, data: bytes) -> dict[str, int]:
    """How many lines of `data` the C tokenizer cut itself, by what it did with them."""
    tokens = tokenizer.cut(data)
    if tokens is None:
        return {"declined": data.count(b"\n")}
    kinds = bytes(tokens[3])
    return {
        "deliveries": kinds.count(exim._K_CUT),
        "arrivals": kinds.count(exim._K_ARRIVED),
        "rejects": kinds.count(exim._K_REJECTED),
        "left": sum(
            kinds.count(k)
            for k in (exim._K_FALLBACK, exim._K_DELIVERY, exim._K_ARRIVAL, exim._K_CLIENT)
        ),
        "lines": len(kinds),
    }


def generated(lines: int, *, seed: int, tz: str = "UTC", **options: Any) -> bytes:
    out = io.BytesIO()
    generate_exim(
        out,
        lines=lines,
        tz=tz,
        seed=seed,
        start=options.pop("start", datetime(2026, 11, 27, tzinfo=UTC)),
        **options,
    )
    return out.getvalue()


# --- the repository's logs --------------------------------------------------------------------


@pytest.mark.parametrize("path", EXIM_LOGS, ids=lambda path: path.name)
def test_every_exim_log_gives_the_same_frames(tokenizer: ModuleType, path: Path) -> None:
    outputs = assert_same_on_both_paths(path)
    assert sum(out.read for out in outputs) == path.read_bytes().count(b"\n")


def test_the_sample_log_is_mostly_cut_in_c(tokenizer: ModuleType, sample_logs_path: Path) -> None:
    """(so that the differential runs above compare the C path, not the polars path twice)"""
    counts = claimed(tokenizer, (sample_logs_path / "exim" / "mainlog").read_bytes())
    assert counts["deliveries"] > 200
    assert counts["left"] < counts["lines"] // 20


@pytest.mark.parametrize("batch_bytes", [1, 700, 5000])
def test_small_batches_give_the_same_frames(
    tokenizer: ModuleType, tmp_path: Path, batch_bytes: int
) -> None:
    """Batches of one line (1 byte asked), of a few lines, of a few dozen: senders and repeats
    carried across each cut alike."""
    lines = (REPO / "sample_logs" / "exim" / "mainlog").read_bytes().splitlines(keepends=True)
    path = tmp_path / "mainlog"
    path.write_bytes(b"".join(lines[: {1: 25, 700: 80}.get(batch_bytes, 300)]))
    assert len(assert_same_on_both_paths(path, batch_bytes=batch_bytes)) > 10


# --- generated logs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "tz", "options"),
    [
        (1, "UTC", {}),
        (2, "Europe/Berlin", {"new_ids": True}),
        # autumn and spring changes of Paris time: an hour that comes twice, one that never comes
        (3, "Europe/Paris", {"start": datetime(2026, 10, 24, 22, tzinfo=UTC), "days": 2}),
        (4, "Europe/Paris", {"start": datetime(2026, 3, 28, 22, tzinfo=UTC), "days": 2}),
        (5, "America/New_York", {"days": 3}),
    ],
)
def test_generated_logs_give_the_same_frames(
    tokenizer: ModuleType, tmp_path: Path, seed: int, tz: str, options: dict[str, Any]
) -> None:
    path = tmp_path / "mainlog"
    data = generated(3000, seed=seed, tz=tz, **options)
    path.write_bytes(data)
    counts = claimed(tokenizer, data)
    assert counts["deliveries"] > 800 and counts["arrivals"] > 400 and counts["left"] == 0
    outputs = assert_same_on_both_paths(path, batch_bytes=131072 if seed == 3 else 2**25, tz=tz)
    assert sum(out.events.height for out in outputs) > 800


# --- mutated lines ----------------------------------------------------------------------------

#: Hand-written lines at the edges of the shapes the C tokenizer cuts (each kind, and what
#: sends a line to the polars path).
EDGES = [
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b H=x [192.0.2.1]",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r H=x [192.0.2.1]",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b ",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b: ",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => ",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd =>",
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 OK" QT=1d2h3m4s',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 OK" QT=1.25s',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 OK" QT=1m0.5s',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 OK" QT=12345678901s',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 OK" QT=3.x QT=4s',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 OK" QT=',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="OK: 250 queued"',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="OK queued"',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250-2.0.0x"',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 2.123.123 ok"',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 2.1234.1 ok"',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="2500"',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250"',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 \\"quoted\\""',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="250 unclosed',
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t C="see: host x [192.0.2.3]: 250"',
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => jana <jana@example.com> R=local_user T=mail_spool",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => |/bin/x (bob@example.com) <b@example.com> R=p",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => :blackhole: <a@b> R=null",
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd -> A@B.EXAMPLE R=r T=t H=mx.b [192.0.2.1]:25 C="250"',
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t H=(helo) [192.0.2.1]",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t H=[192.0.2.1]",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t H=mx []",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t H=mx [192.0.2.1",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t H=mx",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r:x T=t H=mx [192.0.2.1]",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R= T=t H=mx [192.0.2.1]",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T= H=mx [192.0.2.1]",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b R=" + "r" * 200 + " T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b> R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@B>> R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@ R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@> R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => a@b>c R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => A R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => A@B@C.EXAMPLE R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => Firstname.Lastname@Mail.Example.COM R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => firstname.lastname@mail.example.com R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** X@Y.EXAMPLE: 550 5.1.1 unknown",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b: Unrouteable address",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b: retry timeout exceeded",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b: RETRY TIME NOT REACHED for any host after a "
    "long failure period",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b R=r T=t: all hosts for 'b' have been failing "
    "for a long time (and retry time not reached)",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b R=r T=t: all hosts for  have been failing for "
    "a long time",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b R=r T=t H=mx.b [192.0.2.1]: SMTP error from "
    "remote mail server after RCPT TO:<a@b>: 550-5.1.1 no\\n550 5.1.1 such user",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b R=r T=t: SMTP error after RCPT TO:<a@b>: host "
    "mx.b [192.0.2.1]: 550 5.1.1 unknown",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b: : 550 x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b: 550",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b: 650 5.1.1 x: 452-4.2.2 full",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** a@b R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd == a@b R=r T=t defer (-53): retry time not yet reached",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd == a@b R=r T=t defer (-54): Retry time not reached "
    "for any host",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd == a@b R=r defer (-1): 451 4.7.1 greylisted",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd == a@b <c@d> R=r defer (-1): x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd == a@b (p@q) R=r defer (-1): x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= s@example.org H=h [192.0.2.1] S=1 id=m@x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= <> R=1tE3xX-0001Ab-Cd U=mailnull P=local S=1",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= s@example.org id=<>",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd Completed",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd Completed QT=1s",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd Com",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd *> a@b R=r T=t",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=(c) [192.0.2.88] F=<w@x> rejected after DATA: spam",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=(c) [192.0.2.88] F=<w@x> rejected after DATA",
    "2026-11-28 10:00:00 H=(c) [192.0.2.9]:4711 F=<s@x> rejected RCPT <a@y>: relay not permitted",
    "2026-11-28 10:00:00 H=(c) [192.0.2.9] F=<s@x> temporarily rejected RCPT <a@y>: greylisted",
    "2026-11-28 10:00:00 H=(c) [192.0.2.9] F=<s@x> rejected RCPT <a@y>: rejected after DATA",
    "2026-11-28 10:00:00 H=(c) [192.0.2.9] F=<s@x> rejected RCPT",
    "2026-11-28 10:00:00 H=c [192.0.2.9] rejected after DATA: x",
    # rejects the C tokenizer cuts, and those at the edges of what it cuts
    "2026-11-28 10:00:00 H=mx.c.example (helo) [192.0.2.9]:25 F=<S@X.Example> rejected RCPT "
    "<A.B@Y.EXAMPLE>: 550 5.7.1 relay not permitted",
    "2026-11-28 10:00:00 H=mx.c.example [192.0.2.9] F=<> rejected RCPT <>: no",
    "2026-11-28 10:00:00 H=[192.0.2.9] F=<s@x> rejected RCPT <a b@y z>: spaces",
    "2026-11-28 10:00:00 H=[192.0.2.9] F=<s@x > rejected RCPT <a@y >: spaces at the end",
    "2026-11-28 10:00:00 H=[192.0.2.9] F=<s@ x> rejected RCPT <a@>: nothing after the @",
    "2026-11-28 10:00:00 H=(helo)[192.0.2.9] F=<s@x> rejected RCPT <a@y>: no space",
    "2026-11-28 10:00:00 H=name(x) [192.0.2.9] F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=name (x [192.0.2.9] F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=name [] F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=name F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H= F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=a H=[192.0.2.7] F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=a [192.0.2.9] I=[192.0.2.1]:25 F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=a rejected RCPT <b> [192.0.2.9] F=<s@x> rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=a [192.0.2.9] F=<s@x rejected RCPT <a@y>: x",
    "2026-11-28 10:00:00 H=a [192.0.2.9] F=<s@x> rejected RCPT <a@y",
    "2026-11-28 10:00:00 H=a [192.0.2.9] F=<s@x> temporarily rejected RCPT <a@y>: 451-4.7.1 "
    "greylisted",
    "2026-11-28 10:00:00 H=a [192.0.2.9] F=<s@x> X=y rejected RCPT <a@y>: a field",
    "2026-11-28 10:00:00 H=a [192.0.2.9] F=<s@x> rejected RCPT <a@y>: and rejected after DATA",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<S@X> temporarily rejected after "
    "DATA: 451 4.7.1 try later",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x> rejected after DATA:x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x> rejected after DATA more",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x> rejected after DATAx",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x> rejected after DATA:",
    '2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x> X="a b" rejected after DATA',
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x>rejected after DATA: x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a rejected after DATA [1.2.3.4] F=<s@x> rejected "
    "after DATA: x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x> temporarily x",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd H=a [192.0.2.9] F=<s@x> temporarily rejected after",
    "2026-11-28 10:00:00 SMTP connection from [192.0.2.9]:4711 (TCP/IP connection count = 1)",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd",
    "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ",
    '2026-11-28 10:00:00 1tE3xY-000000001Ab-Cdef => a@b R=r T=t H=mx [192.0.2.1] C="250 ok"',
    "2026-11-28 10:00:00 1tE3xY-0000000001Ab-Cdef => a@b R=r T=t",
    "2026-11-28 10:00:00 +0100 1tE3xY-0001Ab-Cd => a@b R=r T=t",
    "2026-11-28 10:00:00.123 1tE3xY-0001Ab-Cd => a@b R=r T=t",
    "2026-11-28 10:00:00.1234567890 1tE3xY-0001Ab-Cd => a@b R=r T=t",
    "2026-11-28 10:00:00 [4242] 1tE3xY-0001Ab-Cd => a@b R=r T=t",
    "2026-11-28 10:00:00 [4242:1] 1tE3xY-0001Ab-Cd ** a@b: x",
    "2026-11-28 10:00:00 -1tE3xY-0001Ab-Cd",
    "2026-11-28 10:00:00 +01000 x",
    "2026-11-28 10:00:00 ",
    "2026-11-28 10:00:00",
    "2026-11-28 10:00:00x",
    "2026-13-45 10:00:00 1tE3xY-0001Ab-Cd => a@b R=r T=t",
    "2026-02-30 10:00:00 1tE3xY-0001Ab-Cd <= s@x id=m",
    "2026-03-29 02:30:00 1tE3xY-0001Ab-Cd => a@b R=r T=t",
    "2026-10-25 02:30:00 1tE3xY-0001Ab-Cd => a@b R=r T=t",
    "no stamp at all",
    "",
    "   ",
]


def mutations(line: str) -> Iterator[str]:
    """`line` cut short at every length, with a character beyond ASCII, with a tab, long."""
    for end in range(len(line)):
        yield line[:end]
    for at in (20, 25, 40, len(line) // 2, len(line) - 1):
        yield line[:at] + "é" + line[at + 1 :]
        yield line[:at] + "\t" + line[at:]
        yield line[:at] + "\x0b" + line[at:]
    yield line + " " + "x" * 70_000


def test_mutated_lines_give_the_same_frames(
    tokenizer: ModuleType, tmp_path: Path, sample_logs_path: Path
) -> None:
    """Every edge line, and lines of each kind cut short at every length or given odd
    characters, in a log the C path reads (tz Europe/Paris: a stamp in the hour that never
    comes is invalid)."""
    sample = (sample_logs_path / "exim" / "mainlog").read_text(encoding="utf-8").splitlines()
    kinds = ["<=", "=>", "->", "**", "==", "Completed", "rejected RCPT", "rejected after DATA"]
    bases = [next(line for line in sample if f" {kind}" in line) for kind in kinds]
    realistic = (DATA / "exim" / "realistic.log").read_text(encoding="utf-8").splitlines()
    lines = [*sample[:40], *EDGES, *realistic]
    rejects = [line for line in EDGES if "F=<S@X" in line]  # (cut by the C tokenizer)
    for base in bases + EDGES[:10] + realistic[:8] + rejects:
        lines += mutations(base)
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "mainlog"
    path.write_bytes(data)
    counts = claimed(tokenizer, data)
    assert counts["deliveries"] > 500 and counts["left"] > 500 and counts["rejects"] > 100
    for tz in ("UTC", "Europe/Paris"):
        (out,) = assert_same_on_both_paths(path, tz=tz)
        assert out.events.height > 500 and out.malformed.height > 50


@pytest.mark.parametrize(
    "odd",
    [
        b"\x00",
        b"\r",
        b"\xff\xfe",
        b"\xc3",  # a sequence cut short
        b"\xed\xa0\x80",  # a surrogate
        b"\xef\xbb\xbf",  # a byte order mark
    ],
    ids=["NUL", "CR", "invalid", "truncated", "surrogate", "BOM"],
)
def test_odd_bytes_give_the_same_frames(
    tokenizer: ModuleType, tmp_path: Path, sample_logs_path: Path, odd: bytes
) -> None:
    """A batch with a NUL, a carriage return or bytes that are not UTF-8 is the polars path's
    whole; either way the frames are those of the polars path. (CRLF line ends too.)"""
    lines = (sample_logs_path / "exim" / "mainlog").read_bytes().splitlines()[:45]
    mutated = []
    for number, line in enumerate(lines):
        at = (number * 7) % max(len(line), 1)
        mutated.append(line[:at] + odd + line[at:] if number % 3 == 0 else line)
    ends = b"\r\n" if odd == b"\r" else b"\n"
    path = tmp_path / "mainlog"
    path.write_bytes((odd if odd == b"\xef\xbb\xbf" else b"") + ends.join(mutated) + ends)
    assert_same_on_both_paths(path, batch_bytes=4000, tz="Europe/Paris")


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["sample_logs/exim/mainlog", "tests/data/exim/realistic.log", "generated"]
)
def test_parse_prints_the_same_on_both_paths(
    tokenizer: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = REPO / name
    if name == "generated":
        path = tmp_path / "generated.log"
        path.write_bytes(generated(2000, seed=9, tz="Europe/Berlin") + b"\x01 odd line\n")
    printed = {}
    for setting in ("0", "1"):
        monkeypatch.setenv(native.ENV, setting)
        aside = tmp_path / f"malformed-{setting}.jsonl"
        result = invoke(
            "parse", str(path), "--source", "exim", "--tz", "Europe/Berlin", "-q",
            "--malformed", str(aside),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        printed[setting] = (result.output, aside.read_text(encoding="utf-8"))
    assert printed["1"] == printed["0"]
    assert printed["1"][0].count("\n") > 5
    assert json.loads(printed["1"][0].splitlines()[0])["source"] == "exim"


# --- the tokenizer on hand-written lines ------------------------------------------------------


def tokens(tokenizer: ModuleType, *lines: str) -> tuple[list[int], list[dict[str, Any]]]:
    """The kind of each line, and the deliveries the tokenizer cut (their `_cut` columns)."""
    data = ("\n".join(lines) + "\n").encode()
    cut = tokenizer.cut(data)
    assert cut is not None
    deliveries = exim._tokenized(cut, data, "UTC").events
    columns = ["index", "event", "recipient", "relay_host", "relay_ip", "transport"]
    columns += ["smtp_code", "enhanced_code", "diagnostic", "delay_s"]
    return list(bytes(cut[3])), deliveries.sort("index").select(columns).to_dicts()


STAMP = "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd"


def test_kinds_of_lines(tokenizer: ModuleType) -> None:
    kinds, _ = tokens(
        tokenizer,
        f"{STAMP} <= s@example.org H=h [192.0.2.1] S=1 id=m@x",
        f"{STAMP} <= s@example.org H=h [192.0.2.1] S=1 id=<>",
        f"{STAMP} Completed",
        f"{STAMP} Completed QT=1s",
        f"{STAMP} => a@b R=r T=t H=mx [192.0.2.1]",
        f"{STAMP} => jana <jana@example.com> R=local_user T=mail_spool",
        f"{STAMP} == a@b R=r T=t defer (-53): retry time not yet reached",
        "2026-11-28 10:00:00 H=(c) [192.0.2.9] F=<s@x> rejected RCPT <a@y>: relay not permitted",
        f"{STAMP} H=(c) [192.0.2.88] F=<w@x> rejected after DATA: spam",
        "2026-11-28 10:00:00 SMTP connection from [192.0.2.9]:4711",
        "not a log line",
        "",
        "2026-11-28 10:00:00 [4242] 1tE3xY-0001Ab-Cd => a@b R=r T=t",
        "2026-11-28 10:00:00.1234567890 1tE3xY-0001Ab-Cd => a@b R=r T=t",
        f"{STAMP} => andré@example.com R=r T=t",
    )
    assert kinds == [
        exim._K_ARRIVED,
        exim._K_ARRIVAL,  # an empty Message-ID: the polars path looks further
        exim._K_COMPLETED,
        exim._K_SKIP,  # only `Completed` itself completes a message
        exim._K_CUT,
        exim._K_DELIVERY,  # a local part and its top-level address: the polars path
        exim._K_SKIP,  # no attempt was made
        exim._K_REJECTED,
        exim._K_REJECTED,
        exim._K_SKIP,
        exim._K_UNDATED,
        exim._K_UNDATED,
        exim._K_CUT,  # with a pid
        exim._K_UNDATED,  # a fraction of ten digits: no Exim head
        exim._K_FALLBACK,  # beyond ASCII: the polars path
    ]


def test_deliveries_cut(tokenizer: ModuleType) -> None:
    _, cut = tokens(
        tokenizer,
        f"{STAMP} => A@B.example R=dnslookup T=remote_smtp H=mx.b.example [192.0.2.1]:25 X=TLS1.3 "
        f'CV=yes C="250 2.0.0 OK 1732788006 - gsmtp" QT=1h2m3s',
        f"{STAMP} ** a@b R=r T=t H=mx [192.0.2.2]: SMTP error from remote mail server after RCPT "
        "TO:<a@b>: 550-5.1.1 The email account does not exist",
        f"{STAMP} ** a@b: retry timeout exceeded",
        f"{STAMP} == a@b R=bydns defer (-1): 451 4.7.1 greylisted QT=2.5s",
        f"{STAMP} -> c@d R=system_aliases",
    )
    assert cut == [
        {
            "index": 0,
            "event": "delivered",
            "recipient": "a@b.example",
            "relay_host": "mx.b.example",
            "relay_ip": "192.0.2.1",
            "transport": "remote_smtp",
            "smtp_code": 250,
            "enhanced_code": "2.0.0",
            "diagnostic": "250 2.0.0 OK 1732788006 - gsmtp",
            "delay_s": 3723.0,
        },
        {
            "index": 1,
            "event": "bounced",
            "recipient": "a@b",
            "relay_host": "mx",
            "relay_ip": "192.0.2.2",
            "transport": "t",
            "smtp_code": 550,
            "enhanced_code": "5.1.1",
            "diagnostic": "SMTP error from remote mail server after RCPT TO:<a@b>: 550-5.1.1 The "
            "email account does not exist",
            "delay_s": None,
        },
        {
            "index": 2,
            "event": "expired",
            "recipient": "a@b",
            "relay_host": None,
            "relay_ip": None,
            "transport": None,
            "smtp_code": None,
            "enhanced_code": None,
            "diagnostic": "retry timeout exceeded",
            "delay_s": None,
        },
        {
            "index": 3,
            "event": "deferred",
            "recipient": "a@b",
            "relay_host": None,
            "relay_ip": None,
            "transport": "bydns",
            "smtp_code": 451,
            "enhanced_code": "4.7.1",
            "diagnostic": "451 4.7.1 greylisted QT=2.5s",
            "delay_s": 2.5,
        },
        {
            "index": 4,
            "event": "delivered",
            "recipient": "c@d",
            "relay_host": None,
            "relay_ip": None,
            "transport": "system_aliases",
            "smtp_code": None,
            "enhanced_code": None,
            "diagnostic": None,
            "delay_s": None,
        },
    ]


def test_heads_with_a_fraction_zone_or_pid(tokenizer: ModuleType) -> None:
    """(log_selector +millisec and +pid, log_timezone)"""
    data = "\n".join(
        [
            "2026-11-28 10:00:00.250 +0100 [4242] 1tE3xY-0001Ab-Cd => a@b R=r T=t",
            "2026-11-28 10:00:01 [4242:7] 1tE3xY-0001Ab-Cd ** a@b: x",
            "2026-11-28 10:00:02 -0500 1tE3xY-0001Ab-Cd == a@b R=r defer (-1): y",
            "2026-11-28 10:00:03 +01000 1tE3xY-0001Ab-Cd => a@b R=r T=t",
            "2026-11-28 10:00:04 [x] 1tE3xY-0001Ab-Cd => a@b R=r T=t",
        ]
    ).encode()
    cut = tokenizer.cut(data)
    assert cut[2] == 5
    deliveries = exim._tokenized(cut, data, "UTC").events.sort("index")
    assert deliveries["timestamp"].to_list()[:3] == [
        datetime(2026, 11, 28, 9, 0, 0, 250000, tzinfo=UTC),
        datetime(2026, 11, 28, 10, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 28, 15, 0, 2, tzinfo=UTC),
    ]
    assert deliveries["event"].to_list() == ["delivered", "bounced", "deferred"]
    # ` +01000` and ` [x]` are no zone and no pid: the text starts there, with no message id
    assert bytes(cut[3])[3:] == bytes([exim._K_SKIP, exim._K_SKIP])


def test_arrivals_cut(tokenizer: ModuleType) -> None:
    data = "\n".join(
        [
            f"{STAMP} <= S@Example.org H=h [192.0.2.1] P=esmtp S=1 id=<20261128.1@example.org>",
            "2026-11-28 10:00:01 1tE3xZ-0001Ab-Cd <= <> R=1tE3xY-0001Ab-Cd U=mailnull P=local",
            "2026-11-28 10:00:02 1tE3y0-0001Ab-Cd <= a@b id=m@x",
            "2026-11-28 10:00:03 1tE3y1-0001Ab-Cd <=  id=m2@x",
            f"{STAMP} <= a@b id=<>",
        ]
    ).encode()
    cut = tokenizer.cut(data)
    arrivals = exim._tokenized(cut, data, "UTC").arrivals
    assert arrivals.to_dicts() == [
        {"index": 0, "arrived": "1tE3xY-0001Ab-Cd", "sender": "S@Example.org",
         "message_id": "20261128.1@example.org", "sender_domain": "example.org"},
        {"index": 1, "arrived": "1tE3xZ-0001Ab-Cd", "sender": "", "message_id": None,
         "sender_domain": None},
        {"index": 2, "arrived": "1tE3y0-0001Ab-Cd", "sender": "a@b", "message_id": "m@x",
         "sender_domain": "b"},
        {"index": 3, "arrived": "1tE3y1-0001Ab-Cd", "sender": None, "message_id": "m2@x",
         "sender_domain": None},
    ]  # fmt: skip
    assert bytes(cut[3])[4] == exim._K_ARRIVAL  # `id=<>`: the polars path reads it


@pytest.mark.parametrize(
    "data",
    [b"a\x00b\n", b"a\r\nb\n", b"caf\xe9\n", b"\xed\xa0\x80\n"],
    ids=["NUL", "CR", "latin-1", "surrogate"],
)
def test_batches_left_to_the_polars_path(tokenizer: ModuleType, data: bytes) -> None:
    assert tokenizer.cut(STAMP.encode() + b" Completed\n" + data) is None


def test_lines_and_views(tokenizer: ModuleType) -> None:
    """Line ends, an unended last line, an empty batch; views point into the batch."""
    assert tokenizer.cut(b"")[0] == 0
    data = f"{STAMP} Completed\n\n{STAMP} => a@b.example R=r T=transport_name".encode()
    cut = tokenizer.cut(data)
    assert cut[:3] == (3, 1, 0)
    kinds, deliveries = tokens(tokenizer, *data.decode().split("\n"))
    assert kinds == [exim._K_COMPLETED, exim._K_UNDATED, exim._K_CUT]
    assert deliveries[0]["transport"] == "transport_name"
    with pytest.raises(TypeError):
        tokenizer.cut("not bytes")


def test_rejects_cut(tokenizer: ModuleType) -> None:
    """A client refused at RCPT (its recipient lower-cased) and after DATA (no recipient)."""
    data = "\n".join(
        [
            "2026-11-28 10:00:00 H=mx.c.example (helo) [192.0.2.9]:25 F=<S@X.Example> rejected "
            "RCPT <A.B@Y.EXAMPLE>: 550 5.7.1 relay not permitted",
            f"{STAMP} H=(c) [192.0.2.88] F=<> temporarily rejected after DATA: 451 try later",
            "2026-11-28 10:00:00 H=a X=1 F=<s@x> rejected RCPT <a@y>: a field: the polars path",
        ]
    ).encode()
    cut = tokenizer.cut(data)
    assert list(bytes(cut[3])) == [exim._K_REJECTED, exim._K_REJECTED, exim._K_CLIENT]
    events = exim._tokenized(cut, data, "UTC").events.drop("line", "timestamp")
    assert events.to_dicts() == [
        {"index": 0, "event": "rejected", "message_ref": None, "arrived": None,
         "sender": "S@X.Example", "sender_domain": "x.example", "message_id": None,
         "recipient": "a.b@y.example", "recipient_domain": "y.example",
         "original_recipient": None, "relay_host": None, "relay_ip": None,
         "client_host": "mx.c.example", "client_ip": "192.0.2.9", "transport": None,
         "smtp_code": 550, "enhanced_code": "5.7.1",
         "diagnostic": "rejected RCPT <A.B@Y.EXAMPLE>: 550 5.7.1 relay not permitted",
         "delay_s": None},
        {"index": 1, "event": "rejected", "message_ref": "1tE3xY-0001Ab-Cd", "arrived": None,
         "sender": "", "sender_domain": None, "message_id": None, "recipient": None,
         "recipient_domain": None, "original_recipient": None, "relay_host": None,
         "relay_ip": None, "client_host": None, "client_ip": "192.0.2.88", "transport": None,
         "smtp_code": 451, "enhanced_code": None,
         "diagnostic": "temporarily rejected after DATA: 451 try later", "delay_s": None},
    ]  # fmt: skip


# --- the join of a message's lines, within a batch and across batches, files and runs ---------


def _parse_runs(
    runs: list[list[Path]], *, native_path: bool, tz: str, batch_bytes: int
) -> tuple[list[SourceOutput], pl.DataFrame]:
    """Each run's files read in order by a source of its own, which carries on from the state
    the run before it exported (as `ingest` does between runs)."""
    previous = os.environ.get(native.ENV)
    os.environ[native.ENV] = "1" if native_path else "0"
    outputs: list[SourceOutput] = []
    state = None
    try:
        for paths in runs:
            source = exim.Exim(tz=tz)
            if state is not None:
                source.import_state(state)
            for path in paths:
                batches = read_batches(expand_inputs([str(path)])[0], batch_bytes=batch_bytes)
                outputs += source.parse(batches)
            state = source.export_state()
    finally:
        if previous is None:
            del os.environ[native.ENV]
        else:
            os.environ[native.ENV] = previous
    assert state is not None
    return outputs, state


def assert_runs_alike(
    runs: list[list[Path]], *, tz: str = "UTC", batch_bytes: int = 4096
) -> list[SourceOutput]:
    """Both paths read `runs` (`_parse_runs`): the same frames, counts and state."""
    reference = _parse_runs(runs, native_path=False, tz=tz, batch_bytes=batch_bytes)
    fast = _parse_runs(runs, native_path=True, tz=tz, batch_bytes=batch_bytes)
    assert_alike(reference, fast, "output")
    return reference[0]


def test_senders_joined_within_and_across_files_and_runs(
    tokenizer: ModuleType, tmp_path: Path
) -> None:
    """A message's last arrival in a batch wins over one carried (even where it comes after
    the delivery), a message completed in a batch is forgotten (even where it arrives again
    after its `Completed` line), and the others are carried to the next file and run."""
    a, b, c, d = "1tE3xA-0001Ab-Cd", "1tE3xB-0001Ab-Cd", "1tE3xC-0001Ab-Cd", "1tE3xD-0001Ab-Cd"
    t = "2026-11-28 10:00:0"
    files = [
        [f"{t}0 {a} <= s1@one.example id=m1@x", f"{t}0 {c} <= S3@Three.Example id=m3@x"],
        [
            f"{t}1 {a} ** r@y.example: 550 5.1.1 unknown",
            f"{t}1 {a} <= s2@two.example id=m2@x",
            f"{t}1 {a} <= <> id=m2b@x",
            f"{t}1 {b} Completed",
            f"{t}1 {b} <= sb@b.example id=mb@x",
            f"{t}1 {c} == r@y.example R=r T=t defer (-1): 451 4.7.1 later",
            f"{t}1 {d} <= sd@d.example id=md@x",
        ],
        [f"{t}2 {a} => r@y.example R=r T=t", f"{t}2 {b} => r@y.example R=r T=t"],
        [f"{t}3 {c} => r@y.example R=r T=t", f"{t}3 {d} => r@y.example R=r T=t"],
    ]
    paths = []
    for number, lines in enumerate(files):
        path = tmp_path / f"mainlog.{number}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    # (every file's arrivals are the C path's: its senders are found in C)
    assert all(claimed(tokenizer, path.read_bytes())["left"] == 0 for path in paths)
    outputs = assert_runs_alike([paths[:2], paths[2:3], paths[3:]])
    events = pl.concat([out.events for out in outputs])
    assert events.select("message_ref", "sender", "message_id").rows() == [
        (a, "", "m2b@x"),  # the batch's last arrival, which follows the bounce
        (c, "S3@Three.Example", "m3@x"),  # carried from the file before
        (a, "", "m2b@x"),  # carried to the next run
        (b, None, None),  # completed in its batch: forgotten
        (c, "S3@Three.Example", "m3@x"),
        (d, "sd@d.example", "md@x"),
    ]
    assert events["sender_domain"].to_list() == [None, "three.example", None, None,
                                                 "three.example", "d.example"]  # fmt: skip


@pytest.mark.parametrize("batch_bytes", [4096, 65536])
def test_several_hosts_logs_carried_across_files_and_runs(
    tokenizer: ModuleType, tmp_path: Path, batch_bytes: int
) -> None:
    """Two hosts' generated logs (other seeds, one with 4.97's ids, one Europe/Paris across
    the autumn change), each cut in two files, read in runs that carry the state on; a line
    the polars path reads in some batches, so that both ways of joining meet."""
    paths = []
    for seed, options in ((11, {}), (12, {"new_ids": True})):
        data = generated(1500, seed=seed, tz="Europe/Paris", start=datetime(2026, 10, 24, 23,
                         tzinfo=UTC), days=2, **options).splitlines(keepends=True)  # fmt: skip
        if seed == 12:
            data.insert(700, "2026-10-25 02:30:00 1tE3xY-0001Ab-Cd <= andré@example.org\n".encode())
        for half, lines in enumerate((data[:800], data[800:])):
            path = tmp_path / f"host{seed}.log.{half}"
            path.write_bytes(b"".join(lines))
            paths.append(path)
    runs = [paths[:1], paths[1:3], paths[3:]]
    outputs = assert_runs_alike(runs, tz="Europe/Paris", batch_bytes=batch_bytes)
    events = pl.concat([out.events for out in outputs])
    assert events.height > 800
    assert events["sender"].null_count() < events.height // 2
