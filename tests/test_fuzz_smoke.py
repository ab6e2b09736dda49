"""The mutation fuzzer (tools/fuzz.py) in the suite: its checks catch what they should, and a
short run over every source finds no crash and no broken promise (docs/RELIABILITY.md).

The long run (`python tools/fuzz.py --seconds 600 --seed 1`) is described in the note.
"""

from __future__ import annotations

import json
import random
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import pytest

import _samples as samples
import _scripts
from bounce_analyzer import native
from bounce_analyzer.reading import Batch
from bounce_analyzer.sources.base import SourceOutput
from bounce_analyzer.sources.exim import Exim
from bounce_analyzer.sources.postfix import Postfix

fuzz = _scripts.load("fuzz", "tools/fuzz.py")

BOUNCED = samples.BOUNCED.encode()


def test_split_batches_cuts_at_line_ends_with_their_numbers() -> None:
    batches = fuzz.split_batches(b"aa\nb\ncccc\nd", 3)
    assert [(b.data, b.first_line, b.offset, b.final) for b in batches] == [
        (b"aa\n", 1, 0, False),
        (b"b\n", 2, 3, False),
        (b"cccc\n", 3, 5, False),
        (b"d", 4, 10, True),
    ]


def test_line_count_is_the_reading_layers() -> None:
    assert [fuzz._line_count(d) for d in (b"", b"a", b"a\n", b"a\n\nb")] == [0, 1, 1, 3]


def test_a_clean_log_gives_no_finding() -> None:
    data = BOUNCED + b"\n" + BOUNCED.replace(b"a@example", b"b@example") + b"\n"
    for name in fuzz.SOURCE_NAMES:
        assert fuzz.check_source(name, data, random.Random(1)) == []


def test_a_source_that_crashes_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Postfix, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        raise KeyError("line_no")
        yield  # pragma: no cover

    monkeypatch.setattr(Postfix, "parse", broken)
    (finding,) = fuzz.check_source("postfix", BOUNCED + b"\n", random.Random(1))
    assert (finding.kind, finding.where, finding.check) == ("crash", "source:postfix", "KeyError")


def test_a_line_not_accounted_for_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Exim.parse

    def forgetful(self: Exim, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        for out in real(self, batches):
            if out.skipped:  # one skipped line is neither counted read nor skipped
                out.read -= 1
                out.skipped -= 1
            yield out

    monkeypatch.setattr(Exim, "parse", forgetful)
    findings = fuzz.check_source("exim", b"hello\n\n\n", random.Random(1))
    assert {(f.kind, f.check) for f in findings} == {("violation", "accounting")}
    assert findings[0].detail == "batch size 9: read 2 lines of 3"  # the one-batch run


def test_a_record_lost_only_when_split_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Exim.parse

    def loses_the_second_batch(self: Exim, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        yield from real(self, [b for b in batches if b.first_line == 1])

    monkeypatch.setattr(Exim, "parse", loses_the_second_batch)
    monkeypatch.setattr(fuzz, "BATCH_SIZES", (1,))
    findings = fuzz.check_source("exim", b"x\ny\n", random.Random(1))
    assert [(f.kind, f.check) for f in findings] == [
        ("violation", "accounting"),
        ("violation", "batching changes the result"),
    ]


def test_a_cut_gzip_file_is_checked_through_the_reading_layer(tmp_path: Path) -> None:
    content = b"".join(BOUNCED.replace(b"a@", b"%d@" % i) + b"\n" for i in range(300))
    raw = fuzz.wrap(random.Random(3), content, "gzip-cut")
    path = tmp_path / "cut.log.gz"
    path.write_bytes(raw)
    prefix = fuzz.decodable_prefix(raw)
    assert prefix is not None and content.startswith(prefix)
    assert fuzz.check_reading(path, raw, prefix, content, random.Random(1)) == []
    # A wrong expectation is caught: the check does look at the bytes read.
    (finding,) = fuzz.check_reading(path, raw, prefix + b"x", content, random.Random(1))
    assert finding.check == "damage"


def test_a_short_fuzz_run_finds_no_crash_and_no_violation(tmp_path: Path) -> None:
    seeds = fuzz.load_seeds(generated=False, max_bytes=2048)
    assert {seed.source for seed in seeds} == set(fuzz.SOURCE_NAMES)
    summary = fuzz.run(seed=20261128, iterations=40, seeds=seeds, max_batches=3, long_lines=False)
    assert summary.iterations == 40
    assert summary.inputs_per_source == dict.fromkeys(fuzz.SOURCE_NAMES, 40)
    assert sum(summary.pipeline_runs.values()) == 40
    assert summary.crashes == 0, summary.figures()
    assert summary.violations == 0, summary.figures()


def _in_ascii(text: str) -> str:
    """`text` with every decimal digit, of whatever script, written as an ASCII digit."""
    return "".join(str(unicodedata.digit(c)) if c.isdecimal() else c for c in text)


def test_hostile_digits_writes_the_same_digits_in_other_scripts() -> None:
    outputs = [fuzz.hostile_digits(random.Random(n), BOUNCED, []).decode() for n in range(40)]
    assert all(text != samples.BOUNCED for text in outputs)
    assert all(_in_ascii(text) == samples.BOUNCED for text in outputs)
    zeros = {ord(c) - unicodedata.digit(c) for text in outputs for c in text if c > "\x7f"}
    assert zeros == set(fuzz.DIGIT_ZEROS)


@pytest.mark.parametrize("zero", [0x0660, 0xFF10, 0x1D7CE])
def test_a_log_in_other_digits_gives_no_finding(zero: int) -> None:
    """Every digit of a Postfix and an Exim line in another script: lines set aside, none lost."""
    digits = str.maketrans({str(n): chr(zero + n) for n in range(10)})
    data = f"{samples.BOUNCED}\n{samples.EXIM_BOUNCED}\n".translate(digits).encode()
    for name in ("postfix", "exim"):
        assert fuzz.check_source(name, data, random.Random(1), max_batches=2) == []


def test_an_enhanced_code_in_other_digits_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Postfix.parse

    def odd_digit(self: Postfix, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        for out in real(self, batches):
            out.events = out.events.with_columns(
                pl.col("enhanced_code").str.replace("1$", "\u0661")
            )
            yield out

    monkeypatch.setattr(Postfix, "parse", odd_digit)
    findings = fuzz.check_source("postfix", BOUNCED + b"\n", random.Random(1))
    assert [(f.kind, f.check) for f in findings] == [("violation", "enhanced code not ASCII")] * 2
    assert findings[0].detail.endswith("[\"fuzz.log:1: '5.1.\u0661'\"]")


# --- the differential mode (issue 18): the C path against the polars path ----------------------


def test_a_short_differential_run_finds_no_difference() -> None:
    seeds = fuzz.load_seeds(generated=False, max_bytes=2048)
    summary = fuzz.run_differential(fuzz.Budget(iterations=12), seed=20261207, seeds=seeds)
    assert summary.iterations == 12
    assert set(summary.inputs_per_source) <= set(fuzz.DIFFERENTIAL_SOURCES)
    assert sum(summary.inputs_per_source.values()) == 12
    assert summary.rows_compared > 0 and summary.lines > 0
    assert summary.c_paths.keys() == {"postfix", "exim"}
    assert (summary.differences, summary.crashes) == (0, 0), summary.figures()


def _c_path_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Postfix's parse made to give another recipient when the C path is on."""
    real = Postfix.parse

    def wrong_when_native(self: Postfix, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        for out in real(self, batches):
            if not native.disabled():
                out.events = out.events.with_columns(pl.col("recipient").str.to_uppercase())
            yield out

    monkeypatch.setattr(Postfix, "parse", wrong_when_native)


def test_a_c_path_that_differs_is_found_and_saved(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _c_path_differs(monkeypatch)
    found, rows = fuzz.compare_paths("postfix", fuzz.split_batches(BOUNCED + b"\n", 100))
    assert rows == 1
    assert found == [
        "events: row 0, column recipient: 'a@example.com' (polars) != 'A@EXAMPLE.COM' (C)"
    ]
    seeds = [fuzz.Seed("bounced", "postfix", BOUNCED + b"\n" + samples.EXIM_BOUNCED.encode())]
    summary = fuzz.run_differential(
        fuzz.Budget(iterations=2), seed=1, seeds=seeds, crash_dir=tmp_path,
        options={"shrink_seconds": 3},
    )  # fmt: skip
    assert summary.differences == 2
    assert len(summary.saved) == 2
    saved = json.loads(Path(summary.saved[0] + ".json").read_text())
    assert saved["source"] == "postfix" and saved["differences"][0].startswith("events: row")
    # The shrunk input is shorter and still differs.
    shrunk = Path(summary.saved[0] + ".min").read_bytes()
    assert len(shrunk) < len(Path(summary.saved[0] + ".input").read_bytes())
    assert fuzz.compare_paths("postfix", fuzz.split_batches(shrunk, 100))[0] != []
    # The Exim source, untouched, still agrees with itself on the same input.
    assert fuzz.compare_paths("exim", fuzz.split_batches(seeds[0].data, 50))[0] == []


def test_frame_difference_names_counts_columns_and_nulls() -> None:
    a = pl.DataFrame({"x": [1, None], "y": ["p", "q"]})
    assert fuzz.frame_difference("f", a, a.clone()) is None
    assert fuzz.frame_difference("f", a, a.head(1)) == "f: 2 rows != 1 rows"
    assert fuzz.frame_difference("f", a, a.with_columns(pl.col("x").fill_null(0))) == (
        "f: row 1, column x: None (polars) != 0 (C)"
    )
    assert fuzz.frame_difference("f", a, a.cast({"x": pl.Int32})).startswith("f: columns")


def test_the_environment_chooses_the_path_while_a_source_runs() -> None:
    seen = []
    with fuzz._path(False):
        seen.append(native.disabled())
        with fuzz._path(True):
            seen.append(native.disabled())
        seen.append(native.disabled())
    assert seen == [True, False, True]
