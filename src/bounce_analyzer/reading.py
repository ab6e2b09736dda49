"""The input layer: find the inputs, undo their compression, cut them into batches of lines.

`expand_inputs` turns the paths a user gives (files, globs, directories, `-` for stdin) into
`InputFile`s, rotated logs oldest first. `head` returns the decompressed start of an input (for
source detection); `read_batches` cuts the decompressed stream into `Batch`es of whole lines.
Compression is recognised by content (magic bytes), never by name: gzip (several members
too), bzip2, xz, zstd, or none.

Damaged compressed data: `read_batches` first yields every line decoded before the damage
(the last, possibly cut, line included, in a batch marked `final`), then raises
`TruncatedInputError`, which names the file and the compressed byte offset. A caller that
wants to go on with the next input catches it; the CLI reports it as one `Error:` line.
"""

from __future__ import annotations

import bz2
import glob
import io
import lzma
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Protocol

import polars as pl

from bounce_analyzer.errors import InputError

__all__ = [
    "Batch",
    "InputFile",
    "TruncatedInputError",
    "batch_lines",
    "detect_compression",
    "expand_inputs",
    "head",
    "read_batches",
]

#: How many bytes are read at a time.
_CHUNK = 1 << 16
#: How many bytes of an uncompressed input are read at a time.
_PLAIN_CHUNK = 1 << 20
#: How many compressed bytes are decompressed at a time: bounds what one step can produce,
#: and is the precision of the offset reported for corrupt data (the start of that block).
_FEED = 1 << 13

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
    """One input: a regular file, or standard input (`path == "-"`)."""

    path: str
    mtime: float | None = None
    #: Found by walking a directory (not named by the user): a file of no known format there
    #: is reported and passed over rather than an error.
    in_directory: bool = False
    #: Raw (still compressed) bytes already taken from stdin by `head`; read again first.
    _peeked: bytearray = field(default_factory=bytearray, repr=False, compare=False)

    @property
    def is_stdin(self) -> bool:
        return self.path == "-"

    @property
    def display(self) -> str:
        """The name to show a person: the path, or `<stdin>`."""
        return "<stdin>" if self.is_stdin else self.path

    @property
    def size(self) -> int | None:
        """The size on disk (compressed), or None for stdin."""
        if self.is_stdin:
            return None
        try:
            return os.path.getsize(self.path)
        except OSError:
            return None


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
    progress bar measured against the size on disk counts.
    """

    data: bytes
    path: str
    first_line: int = 1
    offset: int = 0
    final: bool = True
    mtime: float | None = None
    newlines: int | None = None
    raw_end: int | None = None

    def line_ends(self) -> int:
        """The number of newline bytes in `data`."""
        return self.newlines if self.newlines is not None else self.data.count(b"\n")


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


def _os_error(path: str, error: OSError) -> InputError:
    reason = (error.strerror or str(error)).lower()
    return InputError(f"{path}: {reason}")


def _check_readable(path: str) -> InputFile:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):  # pragma: no cover - directories are expanded earlier
            raise InputError(f"{path}: is a directory")
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


def expand_inputs(paths: Sequence[str]) -> list[InputFile]:
    """The inputs named by `paths`: files, globs, directories (their files) and `-` (stdin).

    Rotated sets (`mail.log.2.gz`, `mail.log.1`, `mail.log`) come oldest first. A path that
    does not exist or cannot be read raises `InputError("<path>: <reason>")`.
    """
    inputs: list[InputFile] = []
    seen: set[str] = set()

    def add(candidate: InputFile) -> None:
        key = candidate.path if candidate.is_stdin else os.path.realpath(candidate.path)
        if key not in seen:
            seen.add(key)
            inputs.append(candidate)

    for path in paths:
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
    """The decompressed content of `raw`, chunk by chunk; the compression read from its start."""
    first = raw.read(_CHUNK)
    kind = detect_compression(first)
    if kind == "plain":
        chunk = first
        while chunk:
            yield chunk
            chunk = raw.read(_PLAIN_CHUNK)
        return
    factory = _FACTORIES[kind]
    errors = _decompressor_errors(kind)
    decompressor = factory()
    started = False  # the current member/stream/frame has been fed data
    consumed = 0  # compressed bytes fully used so far
    pending = first
    while True:
        if not pending:
            pending = raw.read(_FEED)
        chunk, pending = pending[:_FEED], pending[_FEED:]
        if not chunk:
            if started and not decompressor.eof:
                raise TruncatedInputError(path, consumed, "ends early (truncated)")
            return
        if not started and kind == "gzip" and not chunk.strip(b"\x00"):
            consumed += len(chunk)  # NUL padding after the last gzip member (gzip skips it too)
            continue
        started = True
        try:
            out = decompressor.decompress(chunk)
        except errors:
            raise TruncatedInputError(path, consumed, "is corrupt") from None
        if out:
            yield out
        if decompressor.eof:
            rest = decompressor.unused_data
            consumed += len(chunk) - len(rest)
            decompressor = factory()  # another member (gzip), stream (bzip2, xz) or frame
            started = False
            pending = rest + pending
        else:
            consumed += len(chunk)


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


def _open_raw(source: InputFile) -> BinaryIO:
    if source.is_stdin:
        return io.BufferedReader(_Prefixed(bytes(source._peeked), _stdin()), _CHUNK)
    try:
        return open(source.path, "rb")
    except OSError as error:
        raise _os_error(source.path, error) from None


def head(source: InputFile, size: int = 65536) -> bytes:
    """The first `size` decompressed bytes of `source` (fewer if it is shorter).

    For stdin the bytes taken are kept on `source` and returned again by `read_batches`.
    """
    if source.is_stdin:
        stdin = _stdin()
        while True:
            peeked = bytes(source._peeked)
            decoded = _decoded_prefix(peeked, size)
            if len(decoded) >= size:
                return decoded[:size]
            more = stdin.read(_CHUNK)
            if not more:
                return decoded
            source._peeked.extend(more)
    with _open_raw(source) as raw:
        return _decoded_prefix_stream(raw, source.display, size)


def _decoded_prefix(raw_bytes: bytes, size: int) -> bytes:
    return _decoded_prefix_stream(io.BytesIO(raw_bytes), "-", size)


def _decoded_prefix_stream(raw: BinaryIO, path: str, size: int) -> bytes:
    out = bytearray()
    try:
        for chunk in _decompressed(raw, path):
            out.extend(chunk)
            if len(out) >= size:
                break
    except TruncatedInputError:
        pass  # detection only needs what could be decoded; read_batches reports the damage
    return bytes(out[:size])


# --- batches ----------------------------------------------------------------------------------


def read_batches(source: InputFile, *, batch_bytes: int = 32 * 2**20) -> Iterator[Batch]:
    """Cut the decompressed content of `source` into batches of whole lines.

    Each batch holds about `batch_bytes` bytes (more when one line is longer), ends at a line
    end (the last one may lack it), and says where it starts (`first_line`, 1-based, and
    `offset` in the decompressed stream). The last batch is `final`. Batches are `Batch`es
    carrying the file's `mtime` (None for stdin). An empty input yields no batch.

    Raises `TruncatedInputError` after the last good batch when compressed data is damaged.
    """
    if batch_bytes < 1:
        raise ValueError("`batch_bytes` must be positive")
    mtime = source.mtime
    if mtime is None and not source.is_stdin:
        try:
            mtime = os.stat(source.path).st_mtime
        except OSError as error:
            raise _os_error(source.path, error) from None
    previous: Batch | None = None
    with _open_raw(source) as raw:

        def position() -> int | None:
            return None if source.is_stdin else raw.tell()

        try:
            for batch in _cut(
                _decompressed(raw, source.display), source.display, mtime, batch_bytes
            ):
                if previous is not None:
                    yield previous
                previous = replace(batch, raw_end=position())
        except TruncatedInputError:
            if previous is not None:
                yield replace(previous, final=True, raw_end=position())
            raise
        except OSError as error:
            raise _os_error(source.path, error) from None
        end = position()
    if previous is not None:
        yield replace(previous, final=True, raw_end=end)


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


def _cut(
    chunks: Iterator[bytes], path: str, mtime: float | None, batch_bytes: int
) -> Iterator[Batch]:
    """Batches (all marked not final) from decompressed chunks; a cut line waits for its end.

    Chunks are gathered until a batch's worth is there, then joined once, up to the last line
    end that fits: each byte is copied once, and its newlines are counted once.
    """
    parts: list[bytes] = []
    size = 0
    line = 1
    offset = 0
    damage: TruncatedInputError | None = None
    waiting = False  # for the end of a line longer than a batch

    def batch(data: bytes) -> Batch:
        nonlocal line, offset
        newlines = data.count(b"\n")
        made = Batch(
            data=data,
            path=path,
            first_line=line,
            offset=offset,
            final=False,
            mtime=mtime,
            newlines=newlines,
        )
        line += newlines
        offset += len(data)
        return made

    try:
        for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if waiting and b"\n" not in chunk:
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
    if size:
        # The rest: the last line without its newline, or what was decoded before damage.
        yield batch(b"".join(parts))
    if damage is not None:
        raise damage


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
    data = batch.data
    if not data:
        return pl.DataFrame(schema={"line_no": pl.Int64(), "line": pl.String()})
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


@dataclass(frozen=True)
class Resume:
    """Where to pick an input up again: bytes and lines already read (a line boundary)."""

    offset: int
    line: int


#: Given an input and the first bytes of its decompressed content, where to start reading
#: (None: from the beginning). An ingest asks its store's catalogue, to read only what is new.
ResumeFn = Callable[[InputFile, bytes], Resume | None]

__all__ += ["Resume", "ResumeFn"]
