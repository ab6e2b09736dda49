"""A mutation fuzzer for the sources, the reading layer and the pipeline (issue 6).

Seeds are the repository's own inputs (tests/data/<source>/**, sample_logs/**) and a few
small logs from the seeded generator. Each iteration takes a seed, applies one to three
mutations (byte flips, truncation, duplicated or reordered lines, swapped or duplicated
fields, invalid UTF-8, NUL bytes, 1 MB lines, lines of another source spliced in, broken
timestamps, digits of other scripts (Arabic-Indic, fullwidth...) in place of ASCII ones,
JSON cut off, nested wrongly, of the wrong type, with huge arrays), optionally wraps the
result in gzip or zstd (whole or cut short), and then:

- runs every source's `parse` over it, once as one batch and once in random small batches;
- runs `pipeline.ParseRun` over it as a file (format detected, or `--source` forced to a
  random, usually wrong, source) with a small random batch size;
- for compressed inputs, reads it through `reading.read_batches`.

Checks: no exception other than a `BounceAnalyzerError` (a crash); for every SourceOutput and
per file `read == events + skipped + malformed`; line-based formats read exactly the lines of
the input; every event and malformed record has an origin naming the file and an existing
line; every enhanced status code an event carries is ASCII (`5.1.1`, not `5.1.٥`); cutting the
input into other batches changes no count and loses no record; damaged compressed data is
reported with its offset after exactly the lines before the damage.

    python tools/fuzz.py --seconds 600 --seed 1 --summary fuzz-summary.json
    python tools/fuzz.py --iterations 2000 --seed 7 --crash-dir fuzz-crashes
    python tools/fuzz.py --differential --seconds 600 --seed 1

`--differential` (issue 18) runs mutated Postfix and Exim logs, cut into random batches and
read in several zones, through both paths of their source (the C tokenizer and the polars
reference, `BOUNCE_ANALYZER_NATIVE=0`), in-process through the sources' public `parse`, and
requires identical frames: events, malformed records, counts and carried state. An input that
differs is saved (whole, shrunk, and its differences as JSON) to `--crash-dir`.

Crashing or violating inputs are saved (shrunk) to `--crash-dir`; the exit code is 1 if any
were found. `run()` is the core the test suite calls for a few hundred iterations.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import random
import re
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from bounce_analyzer import generate, native, reading
from bounce_analyzer.errors import BounceAnalyzerError
from bounce_analyzer.pipeline import ParseRun
from bounce_analyzer.reading import Batch
from bounce_analyzer.sources import SOURCES, get_source
from bounce_analyzer.sources.base import CarriesState, SourceOutput

REPO = Path(__file__).resolve().parents[1]
SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)
#: The modification time every input gets (the year of classic syslog stamps comes from it).
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
#: Batch sizes (bytes) for the split runs: small, so that records cross batch ends.
BATCH_SIZES = (1, 16, 100, 700, 4096, 65536)
#: At most about this many batches per run (each batch costs a few polars calls).
MAX_BATCHES = 12
#: Seeds larger than this are cut (at a line end) to keep an iteration fast.
MAX_SEED_BYTES = 16 * 1024
#: `journalctl -o export` records span lines: Postfix then counts records, not lines.
_EXPORT_START = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_ORIGIN_TAIL = re.compile(r"^([0-9]+)(?:#([0-9]+))?$")  # (`\d` and int() take "١" too)


# --- seeds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A starting input: where it came from, the source it is, its bytes."""

    name: str
    source: str
    data: bytes


def _cut_at_line(data: bytes, limit: int) -> bytes:
    if len(data) <= limit:
        return data
    end = data.rfind(b"\n", 0, limit)
    return data[: end + 1] if end > 0 else data[:limit]


def load_seeds(
    repo: Path = REPO, *, generated: bool = True, max_bytes: int = MAX_SEED_BYTES
) -> list[Seed]:
    """The seed corpus: test data and sample logs of each source, and generated logs."""
    seeds: list[Seed] = []
    for name in SOURCE_NAMES:
        for folder in (repo / "tests" / "data" / name, repo / "sample_logs" / name):
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix != ".md":
                    data = _cut_at_line(path.read_bytes(), max_bytes)
                    seeds.append(Seed(str(path.relative_to(repo)), name, data))
    if generated:
        start = datetime(2026, 11, 27, tzinfo=UTC)
        makers: dict[str, Callable[[io.BytesIO], object]] = {
            "postfix": lambda out: generate.generate_postfix(out, lines=150, seed=3, start=start),
            "exim": lambda out: generate.generate_exim(out, lines=150, seed=3, start=start),
            "sendgrid": lambda out: generate.generate_sendgrid(out, events=40, seed=3, start=start),
            "mailgun": lambda out: generate.generate_mailgun(out, events=30, seed=3, start=start),
        }
        for name, make in makers.items():
            buffer = io.BytesIO()
            make(buffer)
            seeds.append(Seed(f"generated:{name}", name, buffer.getvalue()))
    return seeds


# --- mutations ----------------------------------------------------------------------------------

Mutator = Callable[[random.Random, bytes, list[Seed]], bytes]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _pick_line(rng: random.Random, lines: list[bytes]) -> int:
    return rng.randrange(len(lines)) if lines else 0


def flip_bytes(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Set a few random bytes to random values."""
    if not data:
        return bytes([rng.randrange(256)])
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def truncate(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Cut the input at a random byte (mid-line, mid-JSON, mid-UTF-8 sequence)."""
    return data[: rng.randrange(len(data) + 1)]


def binary_garbage(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Insert a run of random bytes at a random place."""
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.randbytes(rng.randint(1, 400)) + data[at:]


def duplicate_lines(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Repeat a few lines in place."""
    lines = _lines(data)
    for _ in range(rng.randint(1, 5)):
        i = _pick_line(rng, lines)
        lines.insert(i, lines[i] if lines else b"")
    return b"\n".join(lines)


def reorder_lines(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Shuffle a window of lines (a recipient line before its sender line...)."""
    lines = _lines(data)
    if len(lines) > 1:
        start = rng.randrange(len(lines))
        window = lines[start : start + rng.randint(2, 40)]
        rng.shuffle(window)
        lines[start : start + len(window)] = window
    return b"\n".join(lines)


def swap_fields(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Reorder the `, `-separated fields of a few lines (relay= before to=<...>)."""
    lines = _lines(data)
    for _ in range(rng.randint(1, 4)):
        i = _pick_line(rng, lines)
        if not lines:
            break
        fields = lines[i].split(b", ")
        rng.shuffle(fields)
        lines[i] = b", ".join(fields)
    return b"\n".join(lines)


_FIELD = re.compile(rb"\b(?:to|from|relay|dsn|status|orig_to|R|T|H|C|U|P)=<?[^,\s>]*>?")


def duplicate_field(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Repeat a `key=value` field in a line, changed (`to=<a>, to=<b>`)."""
    lines = _lines(data)
    for _ in range(rng.randint(1, 4)):
        i = _pick_line(rng, lines)
        if not lines:
            break
        found = list(_FIELD.finditer(lines[i]))
        if not found:
            continue
        match = rng.choice(found)
        other = match.group().replace(b"@", b"x@", 1).replace(b"=", b"=z", 1)
        pieces = [match.group(), other] if rng.random() < 0.5 else [other, match.group()]
        lines[i] = lines[i][: match.start()] + b", ".join(pieces) + lines[i][match.end() :]
    return b"\n".join(lines)


_BAD_UTF8 = (b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf")


def invalid_utf8(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Insert invalid UTF-8 (lone lead bytes, surrogates, overlong forms)."""
    out = data
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(out) + 1)
        out = out[:at] + rng.choice(_BAD_UTF8) + out[at:]
    return out


def nul_bytes(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Insert runs of NUL bytes (what a crashed syslog daemon leaves)."""
    out = data
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out) + 1)
        out = out[:at] + b"\x00" * rng.choice((1, 7, 512, 5000)) + out[at:]
    return out


def long_line(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Make one line about 1 MB long (a repeated line, or a long diagnostic, or garbage)."""
    lines = _lines(data)
    i = _pick_line(rng, lines)
    base = lines[i] if lines and lines[i] else b"x"
    size = rng.choice((1 << 20, (1 << 20) + 17, 300_000))
    filler = (base + b" ") * (size // (len(base) + 1) + 1)
    if not lines:
        return filler[:size]
    lines[i] = (lines[i] + filler)[:size]
    return b"\n".join(lines)


def splice_other_source(rng: random.Random, data: bytes, seeds: list[Seed]) -> bytes:
    """Put lines of another seed (usually another source's format) into this input."""
    other = rng.choice(seeds).data
    theirs = _lines(other)
    ours = _lines(data)
    start = rng.randrange(len(theirs))
    taken = theirs[start : start + rng.randint(1, 30)]
    at = rng.randrange(len(ours) + 1)
    return b"\n".join(ours[:at] + taken + ours[at:])


_CLASSIC = re.compile(rb"^(<\d+>)?[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d", re.MULTILINE)
_RFC3339 = re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
_DATE_SWAPS = (
    b"Dec 31 23:59:59",  # after the file's mtime: the year before
    b"Feb 29 10:00:00",  # no such day in the year inferred
    b"Feb 30 10:00:00",
    b"Nov 27 25:61:61",
    b"Foo 27 10:00:00",
    b"2099-01-01T00:00:00",  # a date from the future
    b"-11-28T10:00:00",  # the year missing
    b"2026-13-45T99:99:99",
    b"1970-01-01 00:00:00",
    b"Nov 28",
)


def break_timestamps(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Replace a few timestamps: year missing, from the future, impossible dates."""
    found = list(_CLASSIC.finditer(data)) + list(_RFC3339.finditer(data))
    if not found:
        return data
    out = data
    chosen = rng.sample(found, min(len(found), rng.randint(1, 5)))
    for match in sorted(chosen, key=lambda m: m.start(), reverse=True):
        keep = (match.group(1) or b"") if match.re is _CLASSIC else b""
        out = out[: match.start()] + keep + rng.choice(_DATE_SWAPS) + out[match.end() :]
    return out


#: The zero of other scripts' decimal digits (Unicode category Nd). Regex `\d` matches them
#: all, and a "code" or "stamp" written with them once reached an Int16 cast and raised.
#: Arabic-Indic, Extended Arabic-Indic (Persian), Devanagari, Bengali, Thai, fullwidth and
#: mathematical bold (four bytes in UTF-8, beyond the Basic Multilingual Plane).
DIGIT_ZEROS = (0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0xFF10, 0x1D7CE)
_DIGIT_RUN = re.compile(rb"[0-9]+")


def _foreign_digits(rng: random.Random, run: bytes) -> bytes:
    """`run` (ASCII digits) with one of its digits, or all, in another script (one zero)."""
    zero = rng.choice(DIGIT_ZEROS)
    chosen = range(len(run)) if rng.random() < 0.5 else [rng.randrange(len(run))]
    text = run.decode("ascii")
    digits = [chr(zero + int(c)) if i in chosen else c for i, c in enumerate(text)]
    return "".join(digits).encode("utf-8")


def hostile_digits(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Write a few runs of ASCII digits (stamps, codes, delays, pids...) in other scripts."""
    runs = list(_DIGIT_RUN.finditer(data))
    if not runs:
        return data
    out = data
    chosen = rng.sample(runs, min(len(runs), rng.randint(1, 6)))
    for match in sorted(chosen, key=lambda m: m.start(), reverse=True):
        out = out[: match.start()] + _foreign_digits(rng, match.group()) + out[match.end() :]
    return out


_HOSTILE_VALUES: tuple[Callable[[random.Random], Any], ...] = (
    lambda rng: [1, 2, 3],  # an attempt as a list
    lambda rng: "yesterday at noon",  # a timestamp as text
    lambda rng: "2026-11-28T10:00:00Z",
    lambda rng: {"nested": {"value": 550}},  # a category as an object
    lambda rng: None,
    lambda rng: True,
    lambda rng: -1,
    lambda rng: 1e308,
    lambda rng: 2**70,
    lambda rng: "",
    lambda rng: "\u0000\ud7ff\ufffd",
    lambda rng: ["x"] * rng.choice((1000, 50_000)),  # a huge array
    lambda rng: '=HYPERLINK("http://evil.example")',
)
_KNOWN_KEYS = (
    "event", "email", "timestamp", "reason", "status", "type", "attempt", "category",
    "response", "smtp-id", "sg_event_id", "recipient", "event-data", "delivery-status",
    "code", "message", "description", "severity", "items", "log-level", "headers", "MESSAGE",
    "SYSLOG_IDENTIFIER", "__REALTIME_TIMESTAMP", "attempt-no",
)  # fmt: skip


def _containers(value: Any) -> Iterator[dict[str, Any] | list[Any]]:
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            yield current
            stack.extend(current.values())
        elif isinstance(current, list):
            yield current
            stack.extend(current[:50])


def mutate_json_value(rng: random.Random, value: Any) -> Any:
    """`value` with one node changed: a wrong type, a deleted key, wrong nesting."""
    nodes = list(_containers(value))
    if not nodes:
        return rng.choice(([value], {"event": value}, [[value]]))
    node = rng.choice(nodes)
    action = rng.randrange(5)
    if isinstance(node, dict):
        keys = list(node) or [rng.choice(_KNOWN_KEYS)]
        key = rng.choice(keys) if rng.random() < 0.8 else rng.choice(_KNOWN_KEYS)
        if action == 0 and key in node:
            del node[key]
        elif action == 1 and key in node:
            node[key] = [node[key]]  # nested wrongly: a list around the value
        elif action == 2 and key in node:
            node[key] = {"value": node[key]}
        else:
            node[key] = rng.choice(_HOSTILE_VALUES)(rng)
    elif node:
        i = rng.randrange(len(node))
        if action == 0:
            del node[i]
        elif action == 1:
            node[i] = [node[i]]
        else:
            node[i] = rng.choice(_HOSTILE_VALUES)(rng)
    else:
        node.append(rng.choice(_HOSTILE_VALUES)(rng))
    return value


def _dump(rng: random.Random, value: Any) -> bytes:
    return json.dumps(value, indent=rng.choice((None, None, 1, 2))).encode()


def mutate_json(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Change the JSON: of the whole document, or of a few one-line events."""
    try:
        whole = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than ~1000
        whole = None
    if whole is not None:
        for _ in range(rng.randint(1, 3)):
            whole = mutate_json_value(rng, whole)
        return _dump(rng, whole)
    lines = _lines(data)
    for _ in range(rng.randint(1, 4)):
        i = _pick_line(rng, lines)
        if not lines:
            break
        try:
            value = json.loads(lines[i])
        except (ValueError, RecursionError):
            continue
        lines[i] = json.dumps(mutate_json_value(rng, value)).encode()
    return b"\n".join(lines)


def cut_json(rng: random.Random, data: bytes, _seeds: list[Seed]) -> bytes:
    """Cut a few JSON lines short (a webhook body cut off), or wrap them wrongly or deeply."""
    lines = _lines(data)
    for _ in range(rng.randint(1, 4)):
        i = _pick_line(rng, lines)
        if not lines or not lines[i]:
            continue
        line = lines[i]
        choice = rng.randrange(5)
        if choice == 0:
            lines[i] = line[: rng.randrange(len(line))]
        elif choice == 1:
            lines[i] = b"[" + line  # an array never closed
        elif choice == 2:
            lines[i] = b'{"event-data": ' + line + b"}}"
        elif choice == 3:  # nested deeper than any parser's recursion limit
            depth = rng.choice((50, 999, 1000, 5000))
            lines[i] = b"[" * depth + line + b"]" * depth
        else:
            lines[i] = line + b"," + line[: len(line) // 2]
    return b"\n".join(lines)


MUTATORS: dict[str, Mutator] = {
    "flip_bytes": flip_bytes,
    "truncate": truncate,
    "binary_garbage": binary_garbage,
    "duplicate_lines": duplicate_lines,
    "reorder_lines": reorder_lines,
    "swap_fields": swap_fields,
    "duplicate_field": duplicate_field,
    "invalid_utf8": invalid_utf8,
    "nul_bytes": nul_bytes,
    "long_line": long_line,
    "splice_other_source": splice_other_source,
    "break_timestamps": break_timestamps,
    "hostile_digits": hostile_digits,
    "mutate_json": mutate_json,
    "cut_json": cut_json,
}
#: Relative weights: 1 MB lines are slow, so they are rarer.
_WEIGHTS = {name: (1 if name == "long_line" else 10) for name in MUTATORS}


# --- containers ---------------------------------------------------------------------------------

CONTAINERS = ("plain", "gzip", "zstd", "gzip-cut", "zstd-cut")


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    compressed: bytes = zstandard.ZstdCompressor().compress(data)
    return compressed


def wrap(rng: random.Random, data: bytes, container: str) -> bytes:
    """The file's bytes: `data` as is, compressed, or compressed and cut short."""
    if container == "plain":
        return data
    packed = gzip.compress(data, mtime=0) if container.startswith("gzip") else _zstd_compress(data)
    if container.endswith("-cut"):
        return packed[: rng.randrange(len(packed))]
    return packed


def decodable_prefix(raw: bytes) -> bytes | None:
    """What a decompressor makes of a cut gzip/zstd stream (None: could not tell).

    A cut stream decodes to the same bytes however it is fed; a corrupt one is not predicted.
    """
    kind = reading.detect_compression(raw)
    try:
        if kind == "gzip":
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(raw)
        if kind == "zstd":
            import zstandard

            prefix: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            return prefix
    except Exception:
        return None
    return raw if kind == "plain" else None  # bzip2, xz: not made by this fuzzer


# --- findings and checks ------------------------------------------------------------------------


@dataclass
class Finding:
    """A crash (an exception that is not a BounceAnalyzerError) or a broken promise."""

    kind: str  # "crash" or "violation"
    where: str  # "source:<name>", "pipeline:<name|detected>", "reading"
    check: str  # what failed: the exception type, or the promise
    detail: str


def _line_count(data: bytes) -> int:
    """Lines as `reading.batch_lines` counts them (a last line without newline counts)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _first_line_text(data: bytes) -> str:
    for line in data.replace(b"\x00", b"").split(b"\n"):
        text = line.decode("utf-8", "replace").removesuffix("\r")
        if text:
            return text
    return ""


def line_based(source: str, data: bytes) -> bool:
    """Whether `source` counts lines in `data` (Postfix counts records of `-o export`)."""
    if source == "exim":
        return True
    return source == "postfix" and not _EXPORT_START.match(_first_line_text(data))


def _batch_size(rng: random.Random, length: int, max_batches: int) -> int:
    """A random small batch size, large enough for at most about `max_batches` batches."""
    return max(rng.choice(BATCH_SIZES), length // max_batches)


def split_batches(
    data: bytes, size: int, *, path: str = "fuzz.log", mtime: float | None = MTIME
) -> list[Batch]:
    """`data` cut into whole-line batches of about `size` bytes, like `reading.read_batches`."""
    batches: list[Batch] = []
    position, line = 0, 1
    while position < len(data):
        end = data.rfind(b"\n", position, position + size)
        if end < 0:
            end = data.find(b"\n", position + size - 1)
        if end < 0:
            end = len(data) - 1
        chunk = data[position : end + 1]
        batches.append(Batch(chunk, path, line, position, False, mtime))
        line += chunk.count(b"\n")
        position = end + 1
    if batches:
        last = batches[-1]
        batches[-1] = Batch(last.data, path, last.first_line, last.offset, True, mtime)
    return batches


def _origin_problems(origins: Iterable[str], path: str, lines: int, what: str) -> list[str]:
    problems = []
    for origin in origins:
        tail = origin[len(path) + 1 :] if origin.startswith(path + ":") else None
        match = _ORIGIN_TAIL.match(tail) if tail is not None else None
        if match is None or not 1 <= int(match.group(1)) <= max(lines, 1):
            problems.append(f"{what} origin {origin!r} is not a line of {path} (1..{lines})")
    return problems


@dataclass
class _Totals:
    read: int = 0
    events: int = 0
    skipped: int = 0
    malformed: int = 0
    event_origins: list[str] = field(default_factory=list)
    malformed_origins: list[str] = field(default_factory=list)
    odd_codes: list[str] = field(default_factory=list)

    def key(self) -> tuple[Any, ...]:
        return (
            self.read, self.events, self.skipped, self.malformed,
            sorted(self.event_origins), sorted(self.malformed_origins),
        )  # fmt: skip


#: An enhanced status code as a source may give it (Postfix's dsn= takes any class digit).
_ENHANCED_CODE = r"^[0-9]\.[0-9]{1,3}\.[0-9]{1,3}$"


def _odd_codes(events: pl.DataFrame) -> list[str]:
    """`origin: code` of the events whose enhanced code is not ASCII `d.ddd.ddd`.

    (`\\d` in a pattern takes any script's digits: `5.1.٥` is no code a rule can match.)
    """
    odd = events.filter(~pl.col("enhanced_code").str.contains(_ENHANCED_CODE))
    return [f"{origin}: {code!r}" for origin, code in odd.select("origin", "enhanced_code").rows()]


def _run_source(name: str, batches: list[Batch], problems: list[str]) -> _Totals:
    totals = _Totals()
    outputs: Iterator[SourceOutput] = get_source(name, tz="UTC").parse(batches)
    for out in outputs:
        if out.read != out.events.height + out.skipped + out.malformed_count:
            problems.append(
                f"output: read {out.read} != {out.events.height} events + {out.skipped} "
                f"skipped + {out.malformed_count} malformed"
            )
        totals.read += out.read
        totals.events += out.events.height
        totals.skipped += out.skipped
        totals.malformed += out.malformed_count
        totals.event_origins.extend(out.events["origin"].cast(pl.String).to_list())
        totals.malformed_origins.extend(out.malformed["origin"].cast(pl.String).to_list())
        totals.odd_codes.extend(_odd_codes(out.events))
    return totals


def check_source(
    name: str, data: bytes, rng: random.Random, *, max_batches: int = MAX_BATCHES
) -> list[Finding]:
    """One source over `data`: as one batch, then in random small batches."""
    where = f"source:{name}"
    path = "fuzz.log"
    lines = _line_count(data)
    findings: list[Finding] = []
    results: list[_Totals] = []
    for size in (len(data) + 1, _batch_size(rng, len(data), max_batches)):
        problems: list[str] = []
        try:
            totals = _run_source(name, split_batches(data, size, path=path), problems)
        except BounceAnalyzerError:
            raise  # no source raises on purpose without --strict: the caller records it
        except Exception as error:
            detail = f"batch size {size}: {traceback.format_exception_only(error)[-1].strip()}"
            findings.append(Finding("crash", where, type(error).__name__, detail))
            return findings
        if line_based(name, data) and totals.read != lines:
            problems.append(f"read {totals.read} lines of {lines}")
        problems += _origin_problems(totals.event_origins, path, lines, "event")[:3]
        problems += _origin_problems(totals.malformed_origins, path, lines, "malformed")[:3]
        findings += [Finding("violation", where, "accounting", f"batch size {size}: {p}")
                     for p in problems]  # fmt: skip
        if totals.odd_codes:
            detail = f"batch size {size}: {totals.odd_codes[:3]}"
            findings.append(Finding("violation", where, "enhanced code not ASCII", detail))
        results.append(totals)
    whole, split = results
    if whole.key() != split.key():
        detail = (
            f"one batch: {whole.key()[:4]}, batches of {size}: {split.key()[:4]}; "
            f"origins only in one: "
            f"{sorted(set(whole.event_origins) ^ set(split.event_origins))[:5]} / "
            f"{sorted(set(whole.malformed_origins) ^ set(split.malformed_origins))[:5]}"
        )
        findings.append(Finding("violation", where, "batching changes the result", detail))
    return findings


def _drain_batches(item: reading.InputFile, size: int) -> tuple[list[Batch], str | None]:
    batches: list[Batch] = []
    try:
        for batch in reading.read_batches(item, batch_bytes=size):
            batches.append(batch)
    except reading.TruncatedInputError as error:
        return batches, str(error)
    return batches, None


def check_reading(
    path: Path,
    raw: bytes,
    content: bytes | None,
    full: bytes,
    rng: random.Random,
    *,
    max_batches: int = MAX_BATCHES,
) -> list[Finding]:
    """`read_batches` over a compressed file, maybe cut short: every line before the damage,
    in batches that follow each other, then the damage named with the file and an offset.

    `content`: what the file decompresses to (None: not known exactly); `full`: the content
    before any cut (what was read must be its start).
    """
    findings: list[Finding] = []

    def violation(detail: str) -> None:
        findings.append(Finding("violation", "reading", "damage", detail))

    size = _batch_size(rng, len(full), max_batches)
    item = reading.expand_inputs([str(path)])[0]
    try:
        batches, damage = _drain_batches(item, size)
    except BounceAnalyzerError as error:
        violation(f"unexpected error: {error}")
        return findings
    except Exception as error:
        detail = traceback.format_exception_only(error)[-1].strip()
        return [Finding("crash", "reading", type(error).__name__, detail)]
    line, offset = 1, 0
    for number, batch in enumerate(batches):
        last = number == len(batches) - 1
        for long in batch.long_lines:  # lines passed over as too long, just before the batch
            if (long.line, long.offset) != (line, offset) or long.length <= reading.MAX_LINE_BYTES:
                violation(f"long line {long.line}/{long.offset}, want {line}/{offset}")
            if not full.startswith(long.head, offset) or b"\n" in full[offset : long.end - 1]:
                violation(f"long line {long.line} is not the content at {offset}")
            line, offset = line + 1, long.end
        if (batch.first_line, batch.offset, batch.final) != (line, offset, last):
            violation(f"batch {number} at line {batch.first_line}/{batch.offset}, want {line}")
        if not last and not batch.data.endswith(b"\n"):
            violation(f"batch {number} does not end at a line end")
        if not full.startswith(batch.data, offset):
            violation(f"batch {number}: the bytes read are not the content at {offset}")
        line += batch.data.count(b"\n")
        offset += len(batch.data)
    if content is not None and offset != len(content):
        violation(f"{offset} bytes read, {len(content)} decodable")
    if damage is not None:
        match = re.search(r" at byte (\d+)$", damage)
        if not damage.startswith(f"{path}: ") or match is None or int(match[1]) > len(raw):
            violation(f"damage report without file and offset: {damage}")
    return findings


def check_pipeline(
    path: Path,
    content: bytes | None,
    forced: str | None,
    rng: random.Random,
    *,
    max_batches: int = MAX_BATCHES,
) -> list[Finding]:
    """The whole pipeline over the file at `path` (`forced`: the --source given).

    `content`: what the file decompresses to (None: not known exactly, as for corrupt data):
    line counts and origins are checked against it.
    """
    where = f"pipeline:{forced or 'detected'}"
    length = len(content) if content is not None else 4 * path.stat().st_size
    size = _batch_size(rng, length, max_batches)
    chunks_events: list[str] = []
    chunks_malformed: list[str] = []
    odd_codes: list[str] = []
    run = ParseRun([str(path)], source=forced, tz="UTC", batch_bytes=size)
    try:
        for chunk in run:
            chunks_events.extend(chunk.events["origin"].cast(pl.String).to_list())
            chunks_malformed.extend(chunk.malformed["origin"].cast(pl.String).to_list())
            odd_codes.extend(_odd_codes(chunk.events))
    except BounceAnalyzerError as error:
        detail = f"batch size {size}: {error}"
        return [Finding("violation", where, f"unexpected {type(error).__name__}", detail)]
    except Exception as error:
        detail = f"batch size {size}: {traceback.format_exception_only(error)[-1].strip()}"
        return [Finding("crash", where, type(error).__name__, detail)]
    (summary,) = run.summaries
    if summary.source is None:
        return []
    problems: list[str] = []
    if summary.read != summary.events + summary.skipped + summary.malformed:
        problems.append(
            f"file: read {summary.read} != {summary.events} events + {summary.skipped} "
            f"skipped + {summary.malformed} malformed"
        )
    if (len(chunks_events), len(chunks_malformed)) != (summary.events, summary.malformed):
        problems.append("the chunks do not hold the events and records the summary counts")
    if content is not None:
        lines = _line_count(content)
        if line_based(summary.source, content) and summary.read != lines:
            problems.append(f"read {summary.read} lines of {lines}")
        problems += _origin_problems(chunks_events, str(path), lines, "event")[:3]
        problems += _origin_problems(chunks_malformed, str(path), lines, "malformed")[:3]
    findings = [Finding("violation", where, "accounting", f"batch size {size}: {p}")
                for p in problems]  # fmt: skip
    if odd_codes:
        detail = f"batch size {size}: {odd_codes[:3]}"
        findings.append(Finding("violation", where, "enhanced code not ASCII", detail))
    return findings


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class Case:
    """One fuzz input: the seed, what was done to it, and how it is stored."""

    seed: str
    source: str
    mutations: list[str]
    container: str
    forced: str | None
    data: bytes


def make_case(rng: random.Random, seeds: list[Seed], *, long_lines: bool = True) -> Case:
    """A random seed, one to three mutations, a container and a --source (None: detect)."""
    seed = rng.choice(seeds)
    weights = [w if long_lines or name != "long_line" else 0 for name, w in _WEIGHTS.items()]
    names = rng.choices(list(MUTATORS), weights=weights, k=rng.randint(1, 3))
    data = seed.data
    for name in names:
        data = MUTATORS[name](rng, data, seeds)
    container = rng.choices(CONTAINERS, weights=(14, 1, 1, 2, 2))[0]
    forced = rng.choice((None, None, *SOURCE_NAMES))
    return Case(seed.name, seed.source, names, container, forced, data)


@dataclass
class Summary:
    """What a fuzz run did and found (`--summary` writes it as JSON)."""

    seed: int
    iterations: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    inputs_per_source: dict[str, int] = field(default_factory=dict)
    pipeline_runs: dict[str, int] = field(default_factory=dict)
    reading_runs: int = 0
    mutations: dict[str, int] = field(default_factory=dict)
    containers: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    violations: int = 0
    distinct: dict[str, int] = field(default_factory=dict)  # "kind where check" -> count
    saved: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.crashes or self.violations)

    def found(self) -> str:
        return f"{self.crashes} crashes, {self.violations} violations"

    def figures(self) -> str:
        per_source = ", ".join(f"{k} {v:,}" for k, v in sorted(self.inputs_per_source.items()))
        lines = [
            f"fuzz seed {self.seed}: {self.iterations:,} inputs in {self.seconds:.0f} s "
            f"({self.cpu_seconds:.0f} s CPU)",
            f"  source parses (each input, one batch and random batches): {per_source}",
            f"  pipeline runs: {sum(self.pipeline_runs.values()):,}, reading runs "
            f"(gzip/zstd): {self.reading_runs:,}",
            f"  crashes: {self.crashes}, violations: {self.violations}",
        ]
        lines += [f"  {count:>6} x {name}" for name, count in sorted(self.distinct.items())]
        return "\n".join(lines)


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fuzz_one(
    case: Case, rng: random.Random, workdir: Path, *, max_batches: int = MAX_BATCHES
) -> tuple[list[Finding], int]:
    """Every check over one case: (findings, reading runs made)."""
    findings: list[Finding] = []
    for name in SOURCE_NAMES:
        try:
            findings += check_source(name, case.data, rng, max_batches=max_batches)
        except BounceAnalyzerError as error:
            detail = f"{type(error).__name__}: {error}"
            findings.append(Finding("violation", f"source:{name}", "raised on bad input", detail))
    raw = wrap(rng, case.data, case.container)
    path = workdir / "input.log"
    path.write_bytes(raw)
    os.utime(path, (MTIME, MTIME))
    kind = reading.detect_compression(raw)
    content: bytes | None
    if kind == "plain":
        content = raw
    elif case.container in ("gzip", "zstd"):
        content = case.data
    else:  # cut short, or plain data that happens to start with a magic number
        content = decodable_prefix(raw)
    reading_runs = 0
    if kind != "plain":
        findings += check_reading(path, raw, content, case.data, rng, max_batches=max_batches)
        reading_runs = 1
        if case.container.endswith("-cut"):
            findings += _damage_reported(path, case.forced)
    findings += check_pipeline(path, content, case.forced, rng, max_batches=max_batches)
    return findings, reading_runs


def _damage_reported(path: Path, forced: str | None) -> list[Finding]:
    """A cut gzip/zstd file: the pipeline's summary says the run was partial."""
    try:
        run = ParseRun([str(path)], source=forced, tz="UTC")
        for _chunk in run:
            pass
    except Exception:
        return []  # check_pipeline reports it (the same run, with another batch size)
    (summary,) = run.summaries
    if summary.damage is None:
        detail = f"{path.stat().st_size} bytes of a cut stream, no damage reported"
        return [Finding("violation", f"pipeline:{forced or 'detected'}", "partial", detail)]
    return []


def shrink(data: bytes, fails: Callable[[bytes], bool], *, budget: float = 30.0) -> bytes:
    """A smaller input that still `fails`: drop runs of lines, then runs of bytes."""
    deadline = time.monotonic() + budget
    for unit in (b"\n", None):
        parts: list[bytes] = (
            [p + b"\n" for p in data.split(b"\n")] if unit else [bytes([b]) for b in data]
        )
        if unit and parts:
            parts[-1] = parts[-1][:-1]
        step = max(len(parts) // 2, 1)
        while step >= 1 and time.monotonic() < deadline:
            i, changed = 0, False
            while i < len(parts) and time.monotonic() < deadline:
                candidate = parts[:i] + parts[i + step :]
                if fails(b"".join(candidate)):
                    parts, changed = candidate, True
                else:
                    i += step
            if not changed:
                step //= 2
        data = b"".join(parts)
        if len(data) > 4096 and unit is None:
            break
    return data


def _reproduces(finding: Finding, case: Case, max_batches: int) -> Callable[[bytes], bool]:
    """Whether an input gives the same kind of finding in the same place (fixed randomness)."""

    def fails(data: bytes) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            for attempt in range(3):
                rng = random.Random(attempt)
                if finding.where.startswith("source:"):
                    name = finding.where.split(":", 1)[1]
                    try:
                        found = check_source(name, data, rng, max_batches=max_batches)
                    except BounceAnalyzerError:
                        found = [Finding("violation", finding.where, "raised on bad input", "")]
                else:
                    changed = replace_data(case, data)
                    found, _ = fuzz_one(changed, rng, Path(tmp), max_batches=max_batches)
                if any((f.kind, f.where, f.check) == (finding.kind, finding.where, finding.check)
                       for f in found):  # fmt: skip
                    return True
        return False

    return fails


def replace_data(case: Case, data: bytes) -> Case:
    return Case(case.seed, case.source, case.mutations, case.container, case.forced, data)


def _save(crash_dir: Path, number: int, case: Case, finding: Finding, shrunk: bytes) -> str:
    crash_dir.mkdir(parents=True, exist_ok=True)
    stem = crash_dir / f"{number:04d}-{finding.where.replace(':', '-')}-{finding.check}"
    stem = stem.with_name(re.sub(r"[^\w.-]+", "_", stem.name)[:80])
    stem.with_suffix(".input").write_bytes(case.data)
    stem.with_suffix(".min").write_bytes(shrunk)
    info = {"finding": asdict(finding)} | {k: v for k, v in asdict(case).items() if k != "data"}
    stem.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return str(stem)


def run(
    *,
    seed: int = 0,
    iterations: int | None = None,
    seconds: float | None = None,
    crash_dir: Path | None = None,
    seeds: list[Seed] | None = None,
    shrink_seconds: float = 30.0,
    max_batches: int = MAX_BATCHES,
    long_lines: bool = True,
    progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Fuzz until `iterations` inputs or `seconds` have passed; save each new kind of finding.

    Findings of a kind already saved (same kind, place and check) are counted, not saved again;
    known ones are counted only. `max_batches` bounds the batches of a split run, `long_lines`
    allows the (slow) 1 MB line mutation: the test suite turns both down.
    """
    if iterations is None and seconds is None:
        raise ValueError("give `iterations` or `seconds`")
    rng = random.Random(seed)
    corpus = seeds if seeds is not None else load_seeds()
    summary = Summary(seed=seed)
    distinct: Counter[str] = Counter()
    started, cpu_started = time.monotonic(), _cpu()
    with tempfile.TemporaryDirectory(prefix="bounce-fuzz-") as tmp:
        workdir = Path(tmp)
        while True:
            if iterations is not None and summary.iterations >= iterations:
                break
            if seconds is not None and time.monotonic() - started >= seconds:
                break
            case = make_case(rng, corpus, long_lines=long_lines)
            findings, reading_runs = fuzz_one(case, rng, workdir, max_batches=max_batches)
            summary.iterations += 1
            for name in SOURCE_NAMES:
                summary.inputs_per_source[name] = summary.inputs_per_source.get(name, 0) + 1
            runner = case.forced or "detected"
            summary.pipeline_runs[runner] = summary.pipeline_runs.get(runner, 0) + 1
            summary.reading_runs += reading_runs
            for name in case.mutations:
                summary.mutations[name] = summary.mutations.get(name, 0) + 1
            summary.containers[case.container] = summary.containers.get(case.container, 0) + 1
            for finding in findings:
                key = f"{finding.kind} {finding.where} {finding.check}"
                if finding.kind == "crash":
                    summary.crashes += 1
                else:
                    summary.violations += 1
                distinct[key] += 1
                if crash_dir is not None and distinct[key] == 1:
                    fails = _reproduces(finding, case, max_batches)
                    small = shrink(case.data, fails, budget=shrink_seconds)
                    summary.saved.append(_save(crash_dir, len(summary.saved), case, finding, small))
            if progress is not None and summary.iterations % 100 == 0:
                summary.seconds = time.monotonic() - started
                progress(summary)
    summary.distinct = dict(distinct)
    summary.seconds = time.monotonic() - started
    summary.cpu_seconds = _cpu() - cpu_started
    return summary


# --- differential: the C path against the polars path (issue 18) ---------------------------------

#: The sources with a C path (`native.module`), and the zones their stamps are read in.
DIFFERENTIAL_SOURCES: tuple[str, ...] = ("postfix", "exim")
DIFFERENTIAL_ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
#: Mutations that make sense for a line-based log (the JSON ones leave it unchanged).
_LINE_MUTATORS = tuple(name for name in MUTATORS if not name.endswith("json"))


@contextlib.contextmanager
def _path(c_path: bool) -> Iterator[None]:
    """The C path on (the environment does not turn it off) or off (`native.ENV=0`)."""
    before = os.environ.get(native.ENV)
    if c_path:
        os.environ.pop(native.ENV, None)
    else:
        os.environ[native.ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(native.ENV, None)
        else:
            os.environ[native.ENV] = before


@dataclass
class Parsed:
    """Everything one path made of a run of batches: frames joined, counts summed."""

    events: pl.DataFrame
    malformed: pl.DataFrame
    read: int
    skipped: int
    state: pl.DataFrame | None  # what the source carries to the next run, if it carries any


def parse_path(name: str, batches: list[Batch], *, c_path: bool, tz: str = "UTC") -> Parsed:
    """`name`'s public `parse` over `batches`, its instance made and run on one path."""
    with _path(c_path):
        source = get_source(name, tz=tz)
        outputs = list(source.parse(batches))
        state = source.export_state() if isinstance(source, CarriesState) else None
    events = [out.events for out in outputs]
    malformed = [out.malformed for out in outputs]
    return Parsed(
        events=pl.concat(events, how="vertical") if events else pl.DataFrame(),
        malformed=pl.concat(malformed, how="vertical") if malformed else pl.DataFrame(),
        read=sum(out.read for out in outputs),
        skipped=sum(out.skipped for out in outputs),
        state=state,
    )


def frame_difference(what: str, reference: pl.DataFrame, other: pl.DataFrame) -> str | None:
    """None when the two frames are identical (columns, types, rows in order, nulls where
    nulls are), else where they first differ."""
    if reference.schema != other.schema:
        return f"{what}: columns {dict(reference.schema)} != {dict(other.schema)}"
    if reference.height != other.height:
        return f"{what}: {reference.height} rows != {other.height} rows"
    if reference.equals(other, null_equal=True):
        return None
    for column in reference.columns:
        same = reference.get_column(column).eq_missing(other.get_column(column))
        if not same.all():
            row = int(same.arg_min() or 0)
            return (
                f"{what}: row {row}, column {column}: "
                f"{reference[row, column]!r} (polars) != {other[row, column]!r} (C)"
            )
    return f"{what}: frames differ"  # pragma: no cover - a difference is in some column


def compare_paths(name: str, batches: list[Batch], *, tz: str = "UTC") -> tuple[list[str], int]:
    """Both paths of `name` over the same batches: (their differences, rows compared)."""
    polars_path = parse_path(name, batches, c_path=False, tz=tz)
    c_path = parse_path(name, batches, c_path=True, tz=tz)
    differences = []
    for what in ("read", "skipped"):
        if getattr(polars_path, what) != getattr(c_path, what):
            found = f"{getattr(polars_path, what)} (polars) != {getattr(c_path, what)} (C)"
            differences.append(f"{what}: {found}")
    pairs = [("events", polars_path.events, c_path.events)]
    pairs.append(("malformed", polars_path.malformed, c_path.malformed))
    if polars_path.state is not None and c_path.state is not None:
        pairs.append(("carried state", polars_path.state, c_path.state))
    for what, reference, other in pairs:
        found = frame_difference(what, reference, other)
        if found is not None:
            differences.append(found)
    rows = polars_path.events.height + polars_path.malformed.height
    return differences, rows


def c_paths() -> dict[str, bool]:
    """Which sources have a C path here (else the differential mode compares polars with
    itself)."""
    with _path(True):
        return {name: native.module(name) is not None for name in DIFFERENTIAL_SOURCES}


@dataclass
class DiffCase:
    """One differential input: its seed, mutations, zone and batch size."""

    seed: str
    source: str
    mutations: list[str]
    tz: str
    batch_bytes: int
    data: bytes


def make_diff_case(rng: random.Random, seeds: list[Seed], *, long_lines: bool = False) -> DiffCase:
    """A Postfix or Exim seed, zero to three line mutations, a zone and a batch size."""
    seed = rng.choice([s for s in seeds if s.source in DIFFERENTIAL_SOURCES])
    names = [
        name
        for name in rng.choices(_LINE_MUTATORS, k=rng.randint(0, 3))
        if long_lines or name != "long_line"
    ]
    data = seed.data
    for name in names:
        data = MUTATORS[name](rng, data, seeds)
    tz = rng.choice(DIFFERENTIAL_ZONES)
    size = max(rng.choice(BATCH_SIZES), len(data) // MAX_BATCHES)
    return DiffCase(seed.name, seed.source, names, tz, size, data)


def _diff_batches(case: DiffCase, data: bytes) -> list[Batch]:
    return split_batches(data, case.batch_bytes if data else 1)


@dataclass
class DiffSummary:
    """What a differential run compared and found (`--summary` writes it as JSON)."""

    seed: int
    c_paths: dict[str, bool] = field(default_factory=dict)
    iterations: int = 0
    seconds: float = 0.0
    inputs_per_source: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    rows_compared: int = 0
    differences: int = 0
    crashes: int = 0
    saved: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.differences)

    def found(self) -> str:
        return f"{self.differences} differences"

    def figures(self) -> str:
        per_source = ", ".join(f"{k} {v:,}" for k, v in sorted(self.inputs_per_source.items()))
        paths = ", ".join(f"{k}: {'C' if v else 'no C path'}" for k, v in self.c_paths.items())
        return "\n".join(
            [
                f"differential fuzz seed {self.seed}: {self.iterations:,} inputs in "
                f"{self.seconds:.0f} s ({paths})",
                f"  inputs: {per_source}; lines {self.lines:,}; rows compared "
                f"{self.rows_compared:,}",
                f"  differences: {self.differences}, crashes: {self.crashes}",
            ]
        )


def _save_difference(crash_dir: Path, number: int, case: DiffCase, found: list[str],
                     shrunk: bytes) -> str:  # fmt: skip
    crash_dir.mkdir(parents=True, exist_ok=True)
    stem = crash_dir / f"{number:04d}-differential-{case.source}"
    stem.with_suffix(".input").write_bytes(case.data)
    stem.with_suffix(".min").write_bytes(shrunk)
    info = {"differences": found} | {k: v for k, v in asdict(case).items() if k != "data"}
    stem.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return str(stem)


def _differs(case: DiffCase) -> Callable[[bytes], bool]:
    def fails(data: bytes) -> bool:
        try:
            found, _ = compare_paths(case.source, _diff_batches(case, data), tz=case.tz)
        except Exception:  # noqa: BLE001 - a crash on a smaller input still reproduces
            return True
        return bool(found)

    return fails


@dataclass(frozen=True)
class Budget:
    """How long a differential run goes on: `iterations` inputs or `seconds`, the first
    reached."""

    iterations: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.iterations is None and self.seconds is None:
            raise ValueError("give `iterations` or `seconds`")

    def spent(self, inputs: int, started: float) -> bool:
        return (self.iterations is not None and inputs >= self.iterations) or (
            self.seconds is not None and time.monotonic() - started >= self.seconds
        )


def run_differential(
    budget: Budget,
    *,
    seed: int = 0,
    crash_dir: Path | None = None,
    seeds: list[Seed] | None = None,
    options: dict[str, Any] | None = None,
    progress: Callable[[DiffSummary], None] | None = None,
) -> DiffSummary:
    """Mutated Postfix and Exim logs through both paths of their source, frames compared
    exactly; each input that differs (or crashes one path) is saved, shrunk, to `crash_dir`.
    `options`: `shrink_seconds` (default 30), `long_lines` (allow 1 MB lines; default no)."""
    settings = {"shrink_seconds": 30.0, "long_lines": False} | (options or {})
    rng = random.Random(seed)
    corpus = seeds if seeds is not None else load_seeds()
    summary = DiffSummary(seed=seed, c_paths=c_paths())
    started = time.monotonic()
    while not budget.spent(summary.iterations, started):
        case = make_diff_case(rng, corpus, long_lines=settings["long_lines"])
        try:
            found, rows = compare_paths(case.source, _diff_batches(case, case.data), tz=case.tz)
        except Exception as error:  # noqa: BLE001 - a crash of either path is a finding
            found, rows = [f"crash: {traceback.format_exception_only(error)[-1].strip()}"], 0
            summary.crashes += 1
        summary.iterations += 1
        summary.inputs_per_source[case.source] = summary.inputs_per_source.get(case.source, 0) + 1
        summary.lines += _line_count(case.data)
        summary.rows_compared += rows
        if found:
            summary.differences += 1
            if crash_dir is not None:
                small = shrink(case.data, _differs(case), budget=settings["shrink_seconds"])
                number = len(summary.saved)
                summary.saved.append(_save_difference(crash_dir, number, case, found, small))
        if progress is not None and summary.iterations % 100 == 0:
            summary.seconds = time.monotonic() - started
            progress(summary)
    summary.seconds = time.monotonic() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    limit = parser.add_mutually_exclusive_group(required=True)
    limit.add_argument("--seconds", type=float, help="fuzz for this long")
    limit.add_argument("--iterations", type=int, help="fuzz this many inputs")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--crash-dir", type=Path, default=Path("fuzz-crashes"),
        help="where crashing inputs go (default ./fuzz-crashes)",
    )  # fmt: skip
    parser.add_argument("--summary", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--differential", action="store_true",
        help="compare the C path with the polars path on mutated Postfix and Exim logs",
    )  # fmt: skip
    args = parser.parse_args(argv)

    def report(summary: Summary | DiffSummary) -> None:
        print(f"{summary.iterations:,} inputs, {summary.seconds:.0f} s, {summary.found()}",
              file=sys.stderr)  # fmt: skip

    summary: Summary | DiffSummary
    if args.differential:
        budget = Budget(args.iterations, args.seconds)
        summary = run_differential(budget, seed=args.seed, crash_dir=args.crash_dir,
                                   progress=report)  # fmt: skip
    else:
        summary = run(
            seed=args.seed,
            iterations=args.iterations,
            seconds=args.seconds,
            crash_dir=args.crash_dir,
            progress=report,
        )
    if isinstance(summary, DiffSummary) and not all(summary.c_paths.values()):
        missing = [name for name, c in summary.c_paths.items() if not c]
        print(f"warning: no C path for {', '.join(missing)}: compared with itself", file=sys.stderr)
    print(summary.figures())
    if args.summary is not None:
        args.summary.write_text(json.dumps(asdict(summary), indent=1) + "\n")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
