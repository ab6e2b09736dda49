"""The C tokenizers on the inputs that break tokenizers, through the sources' public `parse`,
each compared with the polars path (issue 18; docs/NATIVE.md "Testing").

In the ordinary suite this is a differential test of the edges; `tools/sanitizers.py` (which
.ci/run calls) runs it again against a build with AddressSanitizer and UBSan, where a read one
byte past a batch, or an overflowing offset, stops the run. It goes through `parse` (not the
modules' own entry points) so that it holds whatever the tokenizers' internals are; until a
source has a C path (its module at interface version 1), both runs are the polars path.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
from datetime import UTC, datetime
from types import ModuleType

import pytest

import _samples as samples
import _scripts
from bounce_analyzer import native
from bounce_analyzer.generate import generate_exim, generate_postfix

MODULES = {"postfix": "bounce_analyzer._postfix_c", "exim": "bounce_analyzer._exim_c"}


fuzz = _scripts.load("fuzz", "tools/fuzz.py")

LINES = {"postfix": samples.BOUNCED.encode(), "exim": samples.EXIM_BOUNCED.encode()}


def _edges(line: bytes) -> dict[str, bytes]:
    """Inputs at a tokenizer's edges, made from one good line of the source."""
    stamp_end = line.index(b" ", 16)  # "Nov 27 10:00:01 " / "2026-11-27 10:00:01 "
    return {
        "empty": b"",
        "one newline": b"\n",
        "blank lines": b"\n\r\n\n",
        "no final newline": line,
        "crlf": line + b"\r\n" + line + b"\r\n",
        "cut in the stamp": line[:9],
        "cut after the stamp": line[: stamp_end + 1],
        "stamp only, newline": line[:stamp_end] + b"\n",
        "cut in every place": b"\n".join(line[:i] for i in range(0, len(line), 7)),
        "nul bytes": line.replace(b" ", b"\x00", 3) + b"\n" + b"\x00" * 40,
        "invalid utf-8": line.replace(b"example", b"ex\xff\xfeample") + b"\n",
        "valid utf-8": line.replace(b"example", "exämple".encode()) + b"\n",
        "utf-8 cut at the end": line + "é".encode()[:1],
        "a 70 kB line": line + b"x" * 70_000 + b"\n" + line + b"\n",
        "only spaces": b" " * 300 + b"\n",
        "key without value": line.rsplit(b"=", 1)[0] + b"=\n",
        "field repeated": line + b", " + line[stamp_end:] + b"\n",
    }


def _built(source: str) -> ModuleType:
    """The C tokenizer of `source`, whatever its interface version (a test without one is
    skipped: a machine without a compiler has no C path)."""
    try:
        return importlib.import_module(MODULES[source])
    except ImportError:
        pytest.skip(f"{MODULES[source]} is not built here (the polars path runs)")


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_the_module_imports_and_says_its_interface(source: str) -> None:
    module = _built(source)
    assert isinstance(module.ABI_VERSION, int)
    # native.module gives it exactly when it speaks the interface the source expects.
    with fuzz._path(True):
        expected = native._MODULES[source][1]
        assert (native.module(source) is module) == (module.ABI_VERSION == expected)


@pytest.mark.parametrize("source", ["postfix", "exim"])
@pytest.mark.parametrize("size", [1, 1 << 20])
def test_edges_give_the_same_frames_on_both_paths(source: str, size: int) -> None:
    for name, data in _edges(LINES[source]).items():
        batches = fuzz.split_batches(data, size) if data else []
        found, _ = fuzz.compare_paths(source, batches)
        assert found == [], f"{source}, {name!r}, batches of {size} bytes: {found}"


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_a_generated_log_gives_the_same_frames_on_both_paths(source: str) -> None:
    out = io.BytesIO()
    make = generate_postfix if source == "postfix" else generate_exim
    make(out, lines=600, seed=18, start=datetime(2026, 3, 28, 23, tzinfo=UTC))
    data = out.getvalue()
    for tz, size in (("Europe/Berlin", 4096), ("UTC", 1 << 20), ("America/New_York", 20_000)):
        found, rows = fuzz.compare_paths(source, fuzz.split_batches(data, size), tz=tz)
        assert found == [], f"{source}, {tz}, batches of {size} bytes: {found}"
        assert rows > 100


def test_a_small_differential_fuzz_run_finds_no_difference() -> None:
    seeds = fuzz.load_seeds(generated=False, max_bytes=4096)
    summary = fuzz.run_differential(fuzz.Budget(iterations=10), seed=18, seeds=seeds)
    assert summary.iterations == 10
    assert (summary.differences, summary.crashes) == (0, 0), summary.figures()


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_newlines_counts_what_bytes_count_counts(source: str) -> None:
    # native/lines.h: 16 bytes at a time, lanes summed every 255 vectors, the tail byte by
    # byte; every length and start (a memoryview of a larger buffer) up to and past those.
    module = _built(source)
    line = LINES[source] + b"\n"
    whole = bytearray((line * (16 * 300 // len(line) + 2))[: 16 * 300 + 40])
    whole[100:120] = b"\n" * 20
    whole[5000:5010] = bytes(range(250, 256)) + b"\r\n\x00\n"
    with memoryview(whole) as view:
        for start in (0, 1, 7, 15, 16, 33):
            for end in (*range(start, start + 70), 16 * 255 + 17, 16 * 256, len(whole)):
                assert module.newlines(view[start:end]) == whole[start:end].count(b"\n")
    assert module.newlines(b"\n" * 70_000) == 70_000
    # reading counts its batches with it where a C path runs, with bytes.count otherwise
    for turned_on in (True, False):
        with fuzz._path(turned_on):
            assert native.count_newlines(whole) == whole.count(b"\n")


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_a_count_of_newlines_that_is_not_the_batchs_is_refused(source: str) -> None:
    # The sources pass the reader's count (`Batch.line_ends`), which sizes the tables: a
    # wrong one is an error, never a row written past them or a row left unwritten.
    module = _built(source)
    data = _edges(LINES[source])["a 70 kB line"] + LINES[source]

    def cut(newlines: int) -> int:
        if source == "postfix":
            return int(module.tokenize(data, 1, b"", newlines)["lines"])
        return int(module.cut(data, newlines)[0])

    assert cut(data.count(b"\n")) == cut(-1) == data.count(b"\n") + 1
    for wrong in (0, data.count(b"\n") - 1, data.count(b"\n") + 1, len(data), 10**15):
        with pytest.raises(ValueError, match="`newlines` is not the batch's count"):
            cut(wrong)
