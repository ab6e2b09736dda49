"""The input layer: find the inputs, undo their compression, cut them into batches of lines.

`expand_inputs` turns the paths a user gives (files, globs, directories, `-` for stdin) into
`InputFile`s, rotated logs oldest first. `head` returns the decompressed start of an input (for
source detection); `read_batches` cuts the decompressed stream into `Batch`es of whole lines,
from the start or from the furthest place a `Resume` gives that the input still holds (the
bytes before it checked by their hash: docs/STORE.md, "Reading only what is new").
Compression is recognised by content (magic bytes), never by name: gzip (several members
too), bzip2, xz, zstd, or none. A plain regular file is read batch by batch, each batch with
one `os.pread` of exactly its bytes (`_cut_file`); compressed data and streams come in pieces
that `_cut` gathers into the same batches.

Damaged compressed data: `read_batches` first yields every line decoded before the damage
(the last, possibly cut, line included, in a batch marked `final`), then raises
`TruncatedInputError`, which names the file and the compressed byte offset. A caller that
wants to go on with the next input catches it; the CLI reports it as one `Error:` line.

Memory is bounded whatever the input: a line longer than `MAX_LINE_BYTES` is never held whole.
Its first `LONG_LINE_HEAD` bytes are kept as a `LongLine` on the next batch (which starts after
it), the rest is passed over up to the next newline, and the caller sets it aside as malformed.
One decompression step yields at most about `_OUT` bytes (a zstd frame of NULs that inflates
30000-fold streams through like any other input).

Streams: stdin, a named pipe, `<(command)` (a `/dev/fd/N` pipe), a character device or a
socket is read once, front to back, never seeked: the bytes `head` takes are kept and given
back first. Such an input, and a compressed file, is complete as read; a plain regular file
modified within `QUIET_SECONDS` may still be written (`may_grow`).
"""

from __future__ import annotations

import bz2
import contextlib
import glob
import hashlib
import io
import json
import lzma
import os
import re
import stat
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import BinaryIO, Protocol

import polars as pl

from bounce_analyzer import native
from bounce_analyzer.errors import InputError

__all__ = [
    "LONG_LINE_HEAD",
    "MAX_LINE_BYTES",
    "QUIET_SECONDS",
    "Batch",
    "InputFile",
    "LongLine",
    "TruncatedInputError",
    "batch_lines",
    "detect_compression",
    "ends_a_json_document",
    "expand_inputs",
    "head",
    "log_set",
    "may_grow",
    "read_batches",
]

#: A line (NUL bytes included, line end not) longer than this is set aside, never held whole.
MAX_LINE_BYTES = 1 << 20
#: How many bytes of a line set aside as too long are kept (to show where it came from).
LONG_LINE_HEAD = 4096
#: A plain file modified less than this many seconds before a run may still be written: its
#: final line without a newline waits for the next run (when the run holds partial lines).
QUIET_SECONDS = 60.0

#: How many bytes are read at a time.
_CHUNK = 1 << 16
#: How many bytes of an uncompressed input are read at a time.
_PLAIN_CHUNK = 1 << 20
#: How many compressed bytes are decompressed at a time: bounds what one step can produce,
#: and is the precision of the offset reported for corrupt data (the start of that block).
_FEED = 1 << 13
#: At most about this many decompressed bytes come out of one step (gzip, bzip2 and xz stop
#: there and go on from where they stopped; zstd, which cannot, is fed in smaller pieces).
_OUT = 1 << 20
#: zstd is fed at most this many compressed bytes at a time while its output stays small, and
#: down to `_ZSTD_MIN_FEED` once it grows: its blocks of one repeated byte inflate 32768-fold.
_ZSTD_FEED = 1 << 10
_ZSTD_MIN_FEED = 32

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)

_GLOB_CHARS = re.compile(r"[*?\[]")

#: `mail.log.2.gz` -> base `mail.log`, number 2; `mail.log-20261128.gz` -> date 20261128.
_ROTATED = re.compile(
    r"^(?P<base>.+?)(?:\.(?P<number>\d{1,6})|-(?P<date>\d{8}(?:\d{2,6})?))?"
    r"(?:\.(?:gz|bz2|xz|zst|zstd))?$"
)


class TruncatedInputError(InputError):
    """A compressed input ends early or is corrupt (the lines before the damage were read)."""

    def __init__(self, path: str, offset: int, detail: str = "truncated or corrupt") -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{path}: compressed data {detail} at byte {offset}")


@dataclass
class InputFile:
    """One input: a regular file, a stream (a pipe, a device), or stdin (`path == "-"`)."""

    path: str
    mtime: float | None = None
    #: Found by walking a directory (not named by the user): a file of no known format there
    #: is reported and passed over rather than an error.
    in_directory: bool = False
    #: Read front to back only (stdin, a pipe, a character device, a socket): never seeked.
    stream: bool = False
    #: Raw (still compressed) bytes already taken from a stream by `head`; read again first.
    _peeked: bytearray = field(default_factory=bytearray, repr=False, compare=False)
    #: The open stream of a named pipe or device (opened once: what was read is gone).
    _handle: BinaryIO | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.is_stdin:
            self.stream = True

    @property
    def is_stdin(self) -> bool:
        return self.path == "-"

    @property
    def display(self) -> str:
        """The name to show a person: the path, or `<stdin>`."""
        return "<stdin>" if self.is_stdin else self.path

    @property
    def size(self) -> int | None:
        """The size on disk (compressed), or None for stdin and other streams."""
        if self.stream:
            return None
        try:
            return os.path.getsize(self.path)
        except OSError:
            return None


@dataclass(frozen=True)
class LongLine:
    """A line longer than `MAX_LINE_BYTES`, passed over: where it was and how it started."""

    line: int  # its 1-based number
    offset: int  # its first byte in the decompressed stream
    length: int  # its bytes, without the line end
    head: bytes  # its first `LONG_LINE_HEAD` bytes
    ended: bool = True  # a newline ended it (False: the input ended, or broke, inside it)

    @property
    def end(self) -> int:
        """The offset after it (and after its newline)."""
        return self.offset + self.length + (1 if self.ended else 0)


@dataclass(frozen=True)
class Batch:
    """A run of whole lines from one input.

    `data` ends at a line boundary (the last line of a file may lack its newline). `first_line`
    is the 1-based number of the first line in `data`; `offset` the byte offset of `data` in the
    decompressed stream. `final` is true for the last batch of an input. `mtime` is the
    input's modification time (None for stdin): sources whose timestamps lack a year infer it
    from this. `newlines` is the number of line ends in `data` when the reader counted them
    (None: not counted; `line_ends` counts then). `raw_end` is how many bytes of the input as
    stored (compressed or not) had been read when the batch was cut (None for stdin): what a
    progress bar measured against the size on disk counts. `long_lines` are the lines longer
    than `MAX_LINE_BYTES` passed over just before `data` (which starts after them, and may then
    be empty): the caller sets them aside. A plain file's `data` is a bytearray that the
    reader fills again with a later batch once nothing refers to it any more (`_Buffers`):
    whatever holds it (the batch, a view, an Arrow buffer over it) keeps it; it is never to be
    changed in place.
    """

    data: bytes | bytearray
    path: str
    first_line: int = 1
    offset: int = 0
    final: bool = True
    mtime: float | None = None
    newlines: int | None = None
    raw_end: int | None = None
    long_lines: tuple[LongLine, ...] = ()

    def line_ends(self) -> int:
        """The number of newline bytes in `data`."""
        return self.newlines if self.newlines is not None else native.count_newlines(self.data)


def total_size(inputs: Sequence[InputFile]) -> int | None:
    """The size on disk of all `inputs`, or None when one of them is stdin."""
    sizes = [item.size for item in inputs]
    return None if any(size is None for size in sizes) else sum(s or 0 for s in sizes)


def detect_compression(start: bytes) -> str:
    """The compression of a stream from its first bytes: gzip, bzip2, xz, zstd or plain."""
    for magic, name in _MAGIC:
        if start.startswith(magic):
            return name
    return "plain"


# --- finding the inputs -----------------------------------------------------------------------


def _rotation_key(path: str) -> tuple[str, int, int, str]:
    """Sort key: by base name; rotated files first, the highest number (oldest) first."""
    directory, name = os.path.split(path)
    match = _ROTATED.match(name)
    if match is None:  # pragma: no cover - the pattern matches every non-empty name
        return (path, 1, 0, "")
    base = os.path.join(directory, match["base"])
    if match["number"] is not None:
        return (base, 0, -int(match["number"]), "")
    if match["date"] is not None:
        return (base, 0, 0, match["date"])
    return (base, 1, 0, "")


def _ordered(paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda p: (_rotation_key(p), p))


def log_set(path: str) -> str:
    """The log set an input belongs to: its folder and name without the rotation suffix
    (`mx1/mail.log` for `mx1/mail.log`, `mx1/mail.log.1`, `mx1/mail.log.2.gz` and
    `mx1/mail.log-20261120`), as the rotation order (`expand_inputs`) sorts it."""
    return _rotation_key(path)[0]


def _os_error(path: str, error: OSError) -> InputError:
    reason = (error.strerror or str(error)).lower()
    return InputError(f"{path}: {reason}")


def _check_readable(path: str) -> InputFile:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):  # pragma: no cover - directories are expanded earlier
            raise InputError(f"{path}: is a directory")
        if not stat.S_ISREG(info.st_mode):
            # A pipe, `<(command)`, a device, a socket: opened once, when it is read (opening
            # a named pipe waits for its writer; what is read from it is gone).
            if not os.access(path, os.R_OK):
                raise PermissionError(13, "permission denied")
            return InputFile(path=path, stream=True)
        with open(path, "rb"):
            pass
    except OSError as error:
        raise _os_error(path, error) from None
    return InputFile(path=path, mtime=info.st_mtime)


def _directory_files(path: str) -> list[str]:
    """The regular files below `path`, recursively (hidden ones left out), rotation-ordered."""
    found = []
    try:
        os.listdir(path)
    except OSError as error:
        raise _os_error(path, error) from None
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in names:
            full = os.path.join(folder, name)
            if not name.startswith(".") and os.path.isfile(full):
                found.append(full)
    return _ordered(found)


def expand_inputs(paths: Sequence[str | InputFile]) -> list[InputFile]:
    """The inputs named by `paths`: files, globs, directories (their files) and `-` (stdin).

    Rotated sets (`mail.log.2.gz`, `mail.log.1`, `mail.log`) come oldest first. A path that
    does not exist or cannot be read raises `InputError("<path>: <reason>")`. An `InputFile`
    (one this function gave: a cluster's worker is handed its part of the inputs so) is taken
    as it is.
    """
    inputs: list[InputFile] = []
    seen: set[str] = set()

    def add(candidate: InputFile) -> None:
        key = candidate.path if candidate.is_stdin else os.path.realpath(candidate.path)
        if key not in seen:
            seen.add(key)
            inputs.append(candidate)

    for path in paths:
        if isinstance(path, InputFile):
            add(path)
            continue
        if path == "-":
            add(InputFile(path="-"))
            continue
        if _GLOB_CHARS.search(path) and not os.path.exists(path):
            matches = [p for p in glob.glob(path) if os.path.isfile(p)]
            if not matches:
                raise InputError(f"{path}: no such file or directory")
            for match in _ordered(matches):
                add(_check_readable(match))
            continue
        if os.path.isdir(path):
            for file_path in _directory_files(path):
                found = _check_readable(file_path)
                found.in_directory = True
                add(found)
            continue
        add(_check_readable(path))
    return inputs


# --- decompression ----------------------------------------------------------------------------


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


def _zstd() -> _Decompressor:
    # A lazy import: zstandard takes about 35 ms to import, and only zstd inputs need it.
    import zstandard

    decompressor: _Decompressor = zstandard.ZstdDecompressor().decompressobj()
    return decompressor


_FACTORIES: dict[str, Callable[[], _Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS),
    "bzip2": bz2.BZ2Decompressor,
    "xz": lzma.LZMADecompressor,
    "zstd": _zstd,
}

#: What the standard library's decompressors raise on damaged data.
_DAMAGE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, OSError, lzma.LZMAError, EOFError)


def _decompressor_errors(kind: str) -> tuple[type[BaseException], ...]:
    """What a decompressor of `kind` raises on damaged data."""
    if kind != "zstd":
        return _DAMAGE_ERRORS
    # A lazy import, as in `_zstd`: only zstd inputs need zstandard.
    import zstandard

    return (*_DAMAGE_ERRORS, zstandard.ZstdError)


def _decompressed(raw: BinaryIO, path: str) -> Iterator[bytes]:
    """The decompressed content of `raw`, chunk by chunk; the compression read from its start.

    No chunk is much larger than `_OUT`, whatever the compression ratio.
    """
    first = raw.read(_CHUNK)
    kind = detect_compression(first)
    if kind == "plain":
        if first:
            yield first
            yield from _plain_chunks(raw)
        return
    factory = _FACTORIES[kind]
    errors = _decompressor_errors(kind)
    decompressor = factory()
    started = False  # the current member/stream/frame has been fed data
    consumed = 0  # compressed bytes fully used so far
    feed = _ZSTD_FEED if kind == "zstd" else _FEED
    pending = first
    while True:
        if not pending:
            pending = raw.read(_FEED)
        chunk, pending = pending[:feed], pending[feed:]
        if not chunk:
            if started and not decompressor.eof:
                raise TruncatedInputError(path, consumed, "ends early (truncated)")
            return
        if not started and kind == "gzip" and not chunk.strip(b"\x00"):
            consumed += len(chunk)  # NUL padding after the last gzip member (gzip skips it too)
            continue
        started = True
        produced = 0
        try:
            for out in _inflate(decompressor, chunk):
                produced += len(out)
                yield out
        except errors:
            raise TruncatedInputError(path, consumed, "is corrupt") from None
        if kind == "zstd":
            # Smaller pieces while one inflates to more than `_OUT`, larger again after.
            feed = (
                max(_ZSTD_MIN_FEED, feed // 4)
                if produced > _OUT // 4
                else min(_ZSTD_FEED, feed * 2)
            )
        if decompressor.eof:
            rest = decompressor.unused_data
            consumed += len(chunk) - len(rest)
            decompressor = factory()  # another member (gzip), stream (bzip2, xz) or frame
            started = False
            pending = rest + pending
        else:
            consumed += len(chunk)


def _plain_chunks(raw: BinaryIO) -> Iterator[bytes]:
    """The rest of an uncompressed `raw`, from where it stands."""
    while chunk := raw.read(_PLAIN_CHUNK):
        yield chunk


def _inflate(decompressor: _Decompressor, chunk: bytes) -> Iterator[bytes]:
    """What `decompressor` makes of `chunk`, in pieces of at most `_OUT` bytes where it can
    stop (zlib: `unconsumed_tail`; bzip2, xz: `needs_input`); zstd in one piece."""
    if isinstance(decompressor, _ZLIB_TYPE):
        out = decompressor.decompress(chunk, _OUT)
        while True:
            if out:
                yield out
            tail = decompressor.unconsumed_tail
            if decompressor.eof or not tail:
                return
            out = decompressor.decompress(tail, _OUT)
    if isinstance(decompressor, bz2.BZ2Decompressor | lzma.LZMADecompressor):
        out = decompressor.decompress(chunk, _OUT)
        while True:
            if out:
                yield out
            if decompressor.eof or decompressor.needs_input:
                return
            out = decompressor.decompress(b"", _OUT)
    out = decompressor.decompress(chunk)
    if out:
        yield out


_ZLIB_TYPE = type(zlib.decompressobj())


class _Prefixed(io.RawIOBase):
    """A raw stream that first returns `prefix`, then the rest of `stream`."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _stdin() -> BinaryIO:
    stream: BinaryIO = sys.stdin.buffer
    return stream


def _stream(source: InputFile) -> BinaryIO:
    """The open stream of a stream input (stdin, or its path opened once and kept)."""
    if source.is_stdin:
        return _stdin()
    if source._handle is None:
        try:
            source._handle = open(source.path, "rb", buffering=0)  # noqa: SIM115
        except OSError as error:
            raise _os_error(source.path, error) from None
    return source._handle


def _open_raw(source: InputFile) -> BinaryIO:
    if source.stream:
        return io.BufferedReader(_Prefixed(bytes(source._peeked), _stream(source)), _CHUNK)
    try:
        return open(source.path, "rb")
    except OSError as error:
        raise _os_error(source.path, error) from None


def head(source: InputFile, size: int = 65536) -> bytes:
    """The first `size` decompressed bytes of `source` (fewer if it is shorter).

    For a stream the bytes taken are kept on `source` and returned again by `read_batches`.
    """
    if source.stream:
        stream = _stream(source)
        while True:
            peeked = bytes(source._peeked)
            decoded = _decoded_prefix(peeked, size)
            if len(decoded) >= size or len(peeked) >= _MAX_PEEK:
                return decoded[:size]
            try:
                more = stream.read(_CHUNK)
            except OSError as error:
                raise _os_error(source.display, error) from None
            if not more:
                return decoded
            source._peeked.extend(more)
    with _open_raw(source) as raw:
        return _decoded_prefix_stream(raw, source.display, size)


#: Raw bytes `head` takes from a stream at most (compressed data that decodes to little).
_MAX_PEEK = 1 << 20


def _decoded_prefix(raw_bytes: bytes, size: int) -> bytes:
    return _decoded_prefix_stream(io.BytesIO(raw_bytes), "-", size)


def _decoded_prefix_stream(raw: BinaryIO, path: str, size: int) -> bytes:
    out = bytearray()
    try:
        for chunk in _decompressed(raw, path):
            out.extend(chunk[: size - len(out)])
            if len(out) >= size:
                break
    except TruncatedInputError:
        pass  # detection only needs what could be decoded; read_batches reports the damage
    return bytes(out)


# --- batches ----------------------------------------------------------------------------------


def read_batches(
    source: InputFile,
    *,
    batch_bytes: int = 32 * 2**20,
    max_line: int = MAX_LINE_BYTES,
    resume: Sequence[Resume] = (),
    resumed: Callable[[Resume, bytes], None] | None = None,
) -> Iterator[Batch]:
    """Cut the decompressed content of `source` into batches of whole lines.

    Each batch holds about `batch_bytes` bytes (more when one line is longer), ends at a line
    end (the last one may lack it), and says where it starts (`first_line`, 1-based, and
    `offset` in the decompressed stream). The last batch is `final`. Batches are `Batch`es
    carrying the file's `mtime` (None for streams). An empty input yields no batch. A line
    longer than `max_line` bytes is passed over (see `LongLine`): the batch after it says so.

    `resume`: places where the input may have been left (`ResumeFn`). The batches start at
    the furthest one the input reaches whose tail (`Resume.follows`) it holds, else at its
    start. A plain file is checked with a seek and a read per place, furthest first, and read
    from there; a compressed input or a stream is decompressed up to the places, the bytes
    before each kept as they pass (a stream's bytes since the last place it holds are kept
    too, in memory up to `_SPOOL_MEMORY` and then in a temporary file, since it cannot be
    read again). `resumed`, when given, is called once before the first batch with where
    reading starts and the bytes just before it (up to `TAIL_BYTES`).

    Raises `TruncatedInputError` after the last good batch when compressed data is damaged.
    """
    if batch_bytes < 1 or max_line < 1:
        raise ValueError("`batch_bytes` and `max_line` must be positive")
    mtime = source.mtime
    if mtime is None and not source.stream:
        try:
            mtime = os.stat(source.path).st_mtime
        except OSError as error:
            raise _os_error(source.path, error) from None
    previous: Batch | None = None
    try:
        with _open_raw(source) as raw, contextlib.ExitStack() as opened:

            def tell() -> int | None:
                return None if source.stream else raw.tell()

            position: Callable[[], int | None] | None = tell

            try:
                cut: Iterator[Batch]
                if not source.stream and _plain(raw):
                    # A plain file: each batch is read straight into its bytes (`_cut_file`).
                    start, before = _plain_start(raw, _places(resume)) if resume else (START, b"")
                    cut = _cut_file(
                        raw.fileno(), source.display, mtime, batch_bytes, max_line, start
                    )
                    position = None  # (each batch says where it ends)
                else:
                    chunks, start, before = _started(source, raw, resume, opened)
                    cut = _cut(
                        chunks,
                        source.display,
                        mtime,
                        batch_bytes,
                        max_line=max_line,
                        first_line=start.line + 1,
                        offset=start.offset,
                    )
                if resumed is not None:
                    resumed(start, before)
                for batch in cut:
                    if previous is not None:
                        yield previous
                    previous = batch if position is None else replace(batch, raw_end=position())
            except TruncatedInputError:
                if previous is not None:
                    yield replace(previous, final=True, raw_end=tell())
                raise
            except OSError as error:
                raise _os_error(source.display, error) from None
            end = tell() if position is not None or previous is None else previous.raw_end
    finally:
        if source._handle is not None:
            source._handle.close()
            source._handle = None
    if previous is not None:
        yield replace(previous, final=True, raw_end=end)


#: How many bytes of a stream passed over while looking for its resume point are held in
#: memory (more go to a temporary file): what is read again if the point is not the furthest.
_SPOOL_MEMORY = 16 * 2**20


def _started(
    source: InputFile, raw: BinaryIO, resume: Sequence[Resume], opened: contextlib.ExitStack
) -> tuple[Iterator[bytes], Resume, bytes]:
    """The decompressed chunks of `raw` from where reading resumes (`read_batches`), that
    place, and the bytes before it. Files opened on the way are closed with `opened`."""
    places = _places(resume)
    if not places:
        return _decompressed(raw, source.display), START, b""
    spool: _Spool | None = None
    if source.stream:
        spool = opened.enter_context(tempfile.SpooledTemporaryFile(_SPOOL_MEMORY))
    chunks, start, before, behind = _passed_over(_decompressed(raw, source.display), places, spool)
    if behind:
        # A compressed file resumed before where its check stopped (rare: a place it holds
        # before one it does not): decompress it again, up to there.
        again = opened.enter_context(_open_raw(source))
        chunks = _decompressed(again, source.display)
        if start.offset:
            chunks, *_ = _passed_over(chunks, [replace(start, tail_len=None)], None)
    return chunks, start, before


_Spool = tempfile.SpooledTemporaryFile[bytes]


def _places(resume: Sequence[Resume]) -> list[Resume]:
    """The places of `resume` past the start, nearest first."""
    return sorted((place for place in resume if place.offset > 0), key=lambda p: p.offset)


def is_plain_file(source: InputFile) -> bool:
    """Whether `source` is a file (not a stream) of uncompressed content: `read_batches`
    reads each of its batches with one `os.pread` (a copy by the kernel, ~1 ms a MiB), where
    a compressed input is decompressed as it is read. Unreadable: False (reading says why)."""
    if source.stream:
        return False
    try:
        with open(source.path, "rb") as raw:
            return _plain(raw)
    except OSError:
        return False


def _plain(raw: BinaryIO) -> bool:
    """Whether the regular file `raw` is uncompressed (its first bytes are no known magic)."""
    start = raw.read(8)
    raw.seek(0)
    return detect_compression(start) == "plain"


def _plain_start(raw: BinaryIO, places: Sequence[Resume]) -> tuple[Resume, bytes]:
    """The furthest of `places` (by offset) that the plain file `raw` holds, and the bytes
    before it: one seek and one read each, from the furthest; else the start."""
    size = os.fstat(raw.fileno()).st_size
    for place in reversed(places):
        if place.offset > size:
            continue
        length = min(place.offset, TAIL_BYTES)
        raw.seek(place.offset - length)
        before = raw.read(length)
        if place.follows(before):
            return place, before
    return START, b""


def _passed_over(
    chunks: Iterator[bytes], places: Sequence[Resume], spool: _Spool | None
) -> tuple[Iterator[bytes], Resume, bytes, bool]:
    """Pass over `chunks` up to the last of `places` (by offset), checking each place's tail
    on the way: the chunks from the last place held on (else from the start), that place, the
    bytes before it, and whether those chunks are lost (behind where the check stopped, and
    no `spool` kept them)."""
    start, before = START, b""
    window = b""  # the last `TAIL_BYTES` bytes before `position`
    position = 0
    waiting = list(reversed(places))  # the next place last
    try:
        for chunk in chunks:
            end = position + len(chunk)
            keep = 0  # where the bytes from `start` on begin in `chunk`
            while waiting and waiting[-1].offset <= end:
                place = waiting.pop()
                cut = place.offset - position
                seen = (window + chunk[max(0, cut - TAIL_BYTES) : cut])[-TAIL_BYTES:]
                if place.follows(seen):
                    start, before, keep = place, seen, cut
                    if spool is not None:
                        spool.seek(0)
                        spool.truncate()
            if not waiting:
                rest = _replayed(spool, chunk[keep:], chunks)
                return rest, start, before, spool is None and start.offset < position
            if spool is not None:
                spool.write(memoryview(chunk)[keep:])
            window = (window + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
            position = end
    except TruncatedInputError as error:
        # Damaged before the places left: as if it ended there (read what came before them,
        # then report the damage).
        rest = _replayed(spool, b"", (), damage=error)
    else:
        # The input ends before the places left: it is shorter than their offsets.
        rest = _replayed(spool, b"", chunks)
    return rest, start, before, spool is None and start.offset < position


def _replayed(
    spool: _Spool | None,
    first: bytes,
    chunks: Iterable[bytes],
    *,
    damage: TruncatedInputError | None = None,
) -> Iterator[bytes]:
    """What `spool` kept, then `first`, then `chunks`; then `damage` is raised, if given."""
    if spool is not None:
        spool.seek(0)
        while piece := spool.read(_PLAIN_CHUNK):
            yield piece
    if first:
        yield first
    yield from chunks
    if damage is not None:
        raise damage


def _line_cut(parts: list[bytes], limit: int) -> tuple[int, int] | None:
    """Where to end a batch in `parts`: (part, index) of the last newline before byte `limit`
    of their concatenation, else of the first one after it (a line longer than a batch);
    None when there is none."""
    start = 0
    found: tuple[int, int] | None = None
    for number, part in enumerate(parts):  # a batch holds a few dozen parts at most
        if start >= limit:
            break
        end = part.rfind(b"\n", 0, limit - start)
        if end >= 0:
            found = (number, end)
        start += len(part)
    if found is not None:
        return found
    start = 0
    for number, part in enumerate(parts):
        end = part.find(b"\n", max(0, limit - start))
        if end >= 0:
            return (number, end)
        start += len(part)
    return None


def _pieces(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """`chunks` cut so that none is longer than `size` (a line inside one is then short)."""
    for chunk in chunks:
        if len(chunk) <= size:
            yield chunk
            continue
        view = memoryview(chunk)
        for start in range(0, len(chunk), size):
            yield bytes(view[start : start + size])


@dataclass
class _Skipping:
    """A line found longer than the limit, being passed over up to its newline."""

    line: int
    offset: int
    length: int
    head: bytes

    def done(self, *, ended: bool) -> LongLine:
        return LongLine(self.line, self.offset, self.length, self.head, ended)


def _cut(
    chunks: Iterator[bytes],
    path: str,
    mtime: float | None,
    batch_bytes: int,
    *,
    max_line: int = MAX_LINE_BYTES,
    first_line: int = 1,
    offset: int = 0,
) -> Iterator[Batch]:
    """Batches (all marked not final) from decompressed chunks; a cut line waits for its end.
    The chunks start at line `first_line`, `offset` bytes into the input.

    Chunks are gathered until a batch's worth is there, then joined once, up to the last line
    end that fits: each byte is copied once, and its newlines are counted once. No chunk
    handled is longer than `max_line`, so that only the line that runs on from one chunk into
    the next can grow too long: then the lines before it become a batch, and it is passed over
    (its head kept) up to its newline.
    """
    parts: list[bytes] = []
    size = 0
    tail = 0  # bytes of the unfinished line at the end of `parts`
    line = first_line
    damage: TruncatedInputError | None = None
    waiting = False  # for the end of a line longer than a batch
    skipping: _Skipping | None = None
    long_lines: list[LongLine] = []  # passed over since the last batch

    def batch(data: bytes) -> Batch:
        nonlocal line, offset
        newlines = native.count_newlines(data)
        made = Batch(
            data=data,
            path=path,
            first_line=line,
            offset=offset,
            final=False,
            mtime=mtime,
            newlines=newlines,
            long_lines=tuple(long_lines),
        )
        long_lines.clear()
        line += newlines
        offset += len(data)
        return made

    def pass_over(line_end: int) -> None:
        """The line at `line` (its `skipping` record) ended at `line_end` bytes into it."""
        nonlocal line, offset, skipping
        assert skipping is not None
        skipping.length += line_end
        long_lines.append(skipping.done(ended=True))
        line += 1
        offset = skipping.offset + skipping.length + 1
        skipping = None

    try:
        for chunk in _pieces(chunks, max_line):
            first = chunk.find(b"\n")
            if skipping is None and tail + (first if first >= 0 else len(chunk)) > max_line:
                # The unfinished line grows too long: the whole lines before it are a batch.
                whole = b"".join(parts)
                if size > tail:
                    yield batch(whole[: size - tail])
                start = whole[size - tail :] + (chunk if first < 0 else chunk[:first])
                skipping = _Skipping(line, offset, tail, start[:LONG_LINE_HEAD])
                parts, size, tail, waiting = [], 0, 0, False
            if skipping is not None:
                if first < 0:
                    skipping.length += len(chunk)
                    continue
                pass_over(first)
                chunk = chunk[first + 1 :]
                if not chunk:
                    continue
                first = chunk.find(b"\n")
            parts.append(chunk)
            size += len(chunk)
            tail = tail + len(chunk) if first < 0 else len(chunk) - chunk.rfind(b"\n") - 1
            if waiting and first < 0:
                continue
            while size >= batch_bytes:
                cut = _line_cut(parts, batch_bytes)
                waiting = cut is None
                if cut is None:
                    break
                number, end = cut
                last = parts[number]
                data = b"".join([*parts[:number], memoryview(last)[: end + 1]])
                rest = last[end + 1 :]
                parts = ([rest] if rest else []) + parts[number + 1 :]
                size -= len(data)
                yield batch(data)
    except TruncatedInputError as error:
        damage = error
    if skipping is not None:
        long_lines.append(skipping.done(ended=False))
    if size or long_lines:
        # The rest: the last line without its newline, or what was decoded before damage; or
        # only the lines passed over since the last batch.
        yield batch(b"".join(parts))
    if damage is not None:
        raise damage


#: How many bytes before a batch's intended end are read first to find its last line end.
_PROBE = 1 << 16
#: How many buffers a plain file's batches are read into, over and over (`_Buffers`), at
#: most: a new one is made only while all of them are held, so the pool holds no more than
#: the batches in flight. Postfix's parse needs three (the batch being read, the one
#: `read_batches` holds back to mark the last, the one being parsed); Exim's events keep
#: their batch until written, seven in flight at 16 MiB.
_REUSED = 8


class _Buffers:
    """The bytearrays a plain file's batches are read into, reused once nothing refers to
    them any more: a batch read into fresh memory is a page fault for every 4 KiB the kernel
    copies into (40,000 for 160 MB of Postfix log; glibc maps every block of 1 MiB or more
    afresh, `startup.MMAP_THRESHOLD`), and the mapping is undone when the batch goes.

    A buffer is handed out again only when this pool alone refers to it: the sources keep
    views into their batch (the C tokenizers' columns, Arrow buffers, polars columns over
    them), each of which holds a reference to the bytearray (an exported buffer holds one
    too), so the count of references says whether anything still reads it. The count of a
    free buffer is measured, not assumed (`_free_count`: the interpreter's own references
    while it is asked differ between versions). Otherwise a batch is read into fresh bytes,
    as without the pool; so are batches longer than `size`. Where the count is no guide
    (another interpreter than CPython) or `os.preadv` is missing, there is no pool."""

    def __init__(self, size: int, count: int = _REUSED) -> None:
        self._size = size
        self._count = count
        self._kept: list[bytearray] = []
        self._free_count = self._references_of(bytearray(1))
        self.enabled = sys.implementation.name == "cpython" and hasattr(os, "preadv")

    def _references_of(self, buffer: bytearray) -> int:
        """The references to a buffer that the pool alone holds, as `_free` counts them."""
        self._kept.append(buffer)
        del buffer
        try:
            return self._references(len(self._kept) - 1)
        finally:
            self._kept.pop()

    def _references(self, index: int) -> int:
        return sys.getrefcount(self._kept[index])

    def read(self, fd: int, length: int, offset: int) -> bytes | bytearray:
        """Up to `length` bytes of `fd` from `offset` (fewer where the file ends first), in a
        free buffer of the pool when there is one."""
        buffer = self._buffer(length) if self.enabled and length <= self._size else None
        if buffer is None:
            return os.pread(fd, length, offset)
        with memoryview(buffer) as view:
            got = os.preadv(fd, [view], offset)
        if got < length:
            del buffer[got:]
        return buffer

    def _buffer(self, length: int) -> bytearray | None:
        """A free buffer of the pool made `length` bytes long (a new one while the pool has
        room), or None."""
        for index in range(len(self._kept)):
            if self._references(index) == self._free_count:
                buffer = self._kept[index]
                if len(buffer) > length:
                    del buffer[length:]  # (no copy: within its allocation)
                elif len(buffer) < length:
                    buffer.extend(bytes(length - len(buffer)))
                return buffer
        if len(self._kept) < self._count:
            self._kept.append(bytearray(length))
            return self._kept[-1]
        return None


def _cut_file(
    fd: int, path: str, mtime: float | None, batch_bytes: int, max_line: int, start: Resume
) -> Iterator[Batch]:
    """The batches `_cut` makes of a plain file from `start` (after its line), each read
    with one `os.pread` of exactly its bytes: no chunks gathered and joined, no copy of a
    batch but the kernel's (measured: a quarter of the CPU of reading in 1 MiB pieces; memory
    mapping costs the same but a file truncated while mapped kills the process with SIGBUS,
    and its pages count in the resident size). Each batch's `raw_end` is where it ends.

    Where a batch ends is found first, in the last `_PROBE` bytes before `batch_bytes`; a
    line longer than `max_line` is found in the batch read (a few `rfind`s of `max_line`
    each), and passed over through reads of `max_line` bytes, never held whole.
    """
    line, offset = start.line + 1, start.offset
    size = os.fstat(fd).st_size
    long_lines: list[LongLine] = []
    buffers = _Buffers(batch_bytes)
    while True:
        size = max(size, os.fstat(fd).st_size)  # (a file written to as it is read grows)
        if offset >= size:
            break
        end = _batch_end(fd, offset, size, batch_bytes, max_line)
        data = buffers.read(fd, end - offset, offset)
        if len(data) < end - offset:  # cut shorter while read: what it holds now is all
            size = offset + len(data)
            continue
        long_at = _long_line_at(data, max_line)
        if long_at is not None:
            data = data[:long_at]
        if data:
            newlines = native.count_newlines(data)
            length = len(data)
            yield Batch(data, path, line, offset, False, mtime, newlines, offset + length,
                        tuple(long_lines))  # fmt: skip
            data = b""  # (not held while the next batch is read: its buffer may serve again)
            long_lines = []
            line += newlines
            offset += length
        if long_at is not None:
            long = _pass_over(fd, offset, line, max_line)
            long_lines.append(long)
            if not long.ended:  # the file ends inside it
                break
            line += 1
            offset = long.end
    if long_lines:
        yield Batch(b"", path, line, offset, False, mtime, 0, offset, tuple(long_lines))


def _batch_end(fd: int, offset: int, size: int, batch_bytes: int, max_line: int) -> int:
    """Where the batch from `offset` ends: after its last line end before `batch_bytes`
    (all that is left when less than `batch_bytes` is), else at the end of its first line
    (longer than a batch; or `max_line` + 1 bytes on, where `_long_line_at` then finds it too
    long)."""
    if size - offset < batch_bytes:
        return size
    probe = min(_PROBE, batch_bytes)
    tail = os.pread(fd, probe, offset + batch_bytes - probe)
    found = tail.rfind(b"\n")
    if found >= 0:
        return offset + batch_bytes - probe + found + 1
    if batch_bytes > probe:  # a long line at the probe: look in the whole of the batch
        found = os.pread(fd, batch_bytes, offset).rfind(b"\n")
        if found >= 0:
            return offset + found + 1
    # The first line is longer than a batch: it is the batch, if not too long.
    reach = min(size, offset + max_line + 1)
    start = offset + batch_bytes
    while start < reach:
        piece = os.pread(fd, min(_PROBE, reach - start), start)
        if not piece:
            break
        found = piece.find(b"\n")
        if found >= 0:
            return start + found + 1
        start += len(piece)
    return reach


def _long_line_at(data: bytes | bytearray, max_line: int) -> int | None:
    """Where the first line longer than `max_line` (line end not counted) starts in `data`,
    which starts at a line start; None when none is. Every line inside `max_line` + 1 bytes
    from a line start is short, so one `rfind` a stretch of that length does."""
    start = 0
    while len(data) - start > max_line:
        found = data.rfind(b"\n", start, start + max_line + 1)
        if found < 0:
            return start
        start = found + 1
    return None


def _pass_over(fd: int, offset: int, line: int, max_line: int) -> LongLine:
    """The line at `offset` (number `line`), longer than `max_line`, read through to its end
    in pieces: where it was, how long, how it started, whether a newline ended it."""
    head = os.pread(fd, LONG_LINE_HEAD, offset)
    position = offset
    while piece := os.pread(fd, max_line, position):
        found = piece.find(b"\n")
        if found >= 0:
            length = position + found - offset
            return LongLine(line, offset, length, head[:length], True)
        position += len(piece)
    return LongLine(line, offset, position - offset, head, False)


def damage(source: InputFile) -> str | None:
    """Read a (short) input to the end: the damage report of a truncated or corrupt stream."""
    try:
        for _ in read_batches(source):
            pass
    except TruncatedInputError as error:
        return str(error)
    return None


#: What polars' CSV reader takes for compressed input (gzip, zstd) and zlib's second byte.
_READER_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")
_ZLIB_SECOND = (b"\x01", b"\x5e", b"\x9c", b"\xda")


def batch_lines(batch: Batch) -> pl.DataFrame:
    """The lines of `batch` as a frame: `line_no` (1-based, Int64) and `line` (String).

    Decodes UTF-8 with replacement characters (never raises), drops NUL bytes (a crashed
    syslog daemon leaves runs of them), strips the `\\r` of CRLF line ends, and does not count
    the empty string after the final newline as a line.
    """
    if not batch.data:
        return pl.DataFrame(schema={"line_no": pl.Int64(), "line": pl.String()})
    # (polars reads `bytes`; a batch read into a reused buffer is copied, never changed)
    data = bytes(batch.data) if isinstance(batch.data, bytearray) else batch.data
    # A last line without its newline counts even when nothing is left of it once the NUL
    # bytes are gone: give it back its newline, so that the reader sees it.
    open_end = not data.endswith(b"\n")
    if b"\x00" in data:
        data = data.replace(b"\x00", b"")
    if open_end:
        data += b"\n"
    if data.startswith(b"\xef\xbb\xbf"):
        # The CSV reader would drop a byte order mark: keep it, as part of the first line.
        data = b"\xef\xbb\xbf" + data
    if data.startswith(_READER_MAGIC) or (data[:1] == b"x" and data[1:2] in _ZLIB_SECOND):
        # The CSV reader would take these bytes for a compressed stream and try to inflate
        # them: cut this (rare, already decompressed) batch in Python instead.
        text = data.decode("utf-8", "replace").split("\n")[:-1]
        return pl.DataFrame(
            {
                "line_no": pl.int_range(len(text), dtype=pl.Int64(), eager=True) + batch.first_line,
                "line": [line[:-1] if line.endswith("\r") else line for line in text],
            },
            schema={"line_no": pl.Int64(), "line": pl.String()},
        )
    # The CSV reader cuts lines, drops the "\r" of CRLF and replaces invalid UTF-8 several
    # times faster than decode + split. A blank line comes out null; a separator that no line
    # holds (NUL bytes are gone) and no quoting keep each line whole.
    lines = pl.read_csv(
        data,
        has_header=False,
        new_columns=["line"],
        separator="\x00",
        quote_char=None,
        infer_schema=False,
        encoding="utf8-lossy",
    )
    # One chunk, as a decoded string gives: polars 2.1 can panic on string columns of several
    # chunks (the reader makes one per thread) further on.
    return lines.select(
        (pl.int_range(pl.len(), dtype=pl.Int64()) + batch.first_line).alias("line_no"),
        pl.col("line").fill_null(""),
    ).rechunk()


# --- resuming ---------------------------------------------------------------------------------


#: How many bytes before a resume point are checked: the end of what was read there.
TAIL_BYTES = 4096


@dataclass(frozen=True)
class Resume:
    """Where to pick an input up again: bytes and lines already read (a line boundary), and
    what the input held just before: the sha256 (hex) of its last `tail_len` bytes before
    `offset`. `tail_len` None: not known (an entry of an older catalogue): only an input
    shorter than `offset` is then taken for another."""

    offset: int
    line: int
    tail_len: int | None = None
    tail_hash: str = ""

    def follows(self, before: bytes) -> bool:
        """Whether an input whose bytes up to `offset` end with `before` is the one read."""
        if self.tail_len is None:
            return True
        if len(before) < self.tail_len:
            return False
        tail = before[len(before) - self.tail_len :]
        return hashlib.sha256(tail).hexdigest() == self.tail_hash


#: From the start: no resume point, nothing before it.
START = Resume(0, 0, 0, hashlib.sha256(b"").hexdigest())

#: Given an input and the first bytes of its decompressed content, the places where it may
#: have been left (furthest first; none: read it from the start). `read_batches` resumes at
#: the furthest whose tail the input holds. An ingest asks its store's catalogue.
ResumeFn = Callable[[InputFile, bytes], Sequence[Resume]]

__all__ += ["START", "TAIL_BYTES", "Resume", "ResumeFn"]


# --- complete or still written ----------------------------------------------------------------


def may_grow(source: InputFile, *, now: datetime) -> bool:
    """Whether `source` may still be written: a plain (uncompressed) regular file modified
    less than `QUIET_SECONDS` before `now`. Streams and compressed files are complete."""
    if source.stream:
        return False
    try:
        info = os.stat(source.path)
        with open(source.path, "rb") as raw:
            start = raw.read(8)
    except OSError:
        return False
    if detect_compression(start) != "plain":
        return False
    return info.st_mtime > now.timestamp() - QUIET_SECONDS


def ends_a_json_document(last_line: bytes | bytearray) -> bool:
    """Whether a final line without newline is the end of a JSON document: a closing bracket
    at the start of the line (a pretty-printed document's last line), or JSON by itself."""
    text = last_line.rstrip(b" \t\r")
    if text in (b"]", b"}"):
        return True
    if not text.lstrip().startswith((b"{", b"[")) or len(text) > MAX_LINE_BYTES:
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def long_line_rows(batch: Batch) -> pl.DataFrame:
    """The lines of `batch` passed over as too long, as malformed rows (origin, reason, raw)."""
    rows = [
        {
            "origin": f"{batch.path}:{long.line}",
            "reason": f"line too long ({long.length:,} bytes; the limit is {MAX_LINE_BYTES:,})",
            "raw": long.head.replace(b"\x00", b"").decode("utf-8", "replace"),
        }
        for long in batch.long_lines
    ]
    return pl.DataFrame(
        rows, schema={"origin": pl.String(), "reason": pl.String(), "raw": pl.String()}
    )


__all__ += ["long_line_rows"]
