"""Write event frames as they stream by: JSON lines, CSV, Parquet, or a table for people.

Output files are written whole or not at all (`output_file`): beside the target, then moved
into place, so that a failed run leaves no partial file and keeps an older one.
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING

import polars as pl

from bounce_analyzer import schema
from bounce_analyzer.errors import OutputError, UsageError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

#: Characters that make a spreadsheet read a cell as a formula. Remote servers' words are
#: attacker-controlled, so CSV output prefixes such cells with a quote (OWASP's advice).
_FORMULA_START = r"^[=+\-@\t\r]"


class EventFormat(StrEnum):
    """Output formats of `parse`."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
    table = "table"


#: The format an output file's name suffix says, where no format is given.
_SUFFIXES = {
    ".parquet": EventFormat.parquet,
    ".csv": EventFormat.csv,
    ".jsonl": EventFormat.jsonl,
    ".ndjson": EventFormat.jsonl,
}


def event_format_for(output: str | None, fmt: str | None = None) -> EventFormat:
    """The format of events written to `output` (None: stdout): `fmt` when given (checked),
    else what the file's suffix says, else (no suffix) JSON lines. A suffix of no format we
    write (`x.xlsx`) is a usage error rather than JSON lines under that name."""
    if fmt is not None:
        if fmt not in EventFormat.__members__:
            choices = ", ".join(EventFormat.__members__)
            raise UsageError(f"unknown format {fmt!r}: choose one of {choices}")
        return EventFormat(fmt)
    suffix = PurePath(output).suffix.lower() if output else ""
    if suffix and suffix not in _SUFFIXES:
        raise UsageError(
            f"cannot tell the format of {output} from its suffix: name it "
            f"{_either(list(_SUFFIXES))}, or give --format ({_either(list(EventFormat))})"
        )
    return _SUFFIXES.get(suffix, EventFormat.jsonl)


def _either(names: list[str]) -> str:
    """`a, b, c or d`."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)


# --- output files -----------------------------------------------------------------------------

#: polars words an OS error as `Broken pipe (os error 32)`, without `errno`.
_OS_ERROR_NUMBER = re.compile(r"\(os error (\d+)\)$")


def stdout_bytes() -> IO[bytes]:
    """Standard output for bytes. Under PYTHONUNBUFFERED it is a raw file, whose `write` may
    write only a part (to a pipe closed meanwhile, silently): then a buffered writer of the
    same descriptor, which writes all or raises."""
    stream: IO[bytes] = sys.stdout.buffer
    if isinstance(stream, io.RawIOBase):
        return open(stream.fileno(), "wb", closefd=False)
    return stream


def os_error_number(error: OSError) -> int | None:
    """The errno of an OS error, also of one polars raised (its number is in its text)."""
    if error.errno is not None:
        return error.errno
    found = _OS_ERROR_NUMBER.search(str(error))
    return int(found[1]) if found else None


def _reason(error: OSError) -> str:
    number = os_error_number(error)
    text = os.strerror(number) if number is not None else (error.strerror or str(error))
    return text.lower()


def is_broken_pipe(error: BaseException) -> bool:
    """Whether `error` says the reader of our output went away (`parse ... | head -1`)."""
    return isinstance(error, OSError) and os_error_number(error) == errno.EPIPE


def refuse_inputs(outputs: dict[str, str | None], inputs: Sequence[str]) -> None:
    """Raise `UsageError` when an output (option name -> path) is one of `inputs` (the same
    file, by device and inode: through another name, a link, a glob or a directory) or the
    same file as another output. Checked before anything is opened for writing, so that
    `parse X -o X` cannot empty X."""
    seen: dict[tuple[int, int] | str, str | None] = {}
    for name in inputs:
        if name != "-":
            with _ignoring_os_errors():
                info = os.stat(name)
                seen[(info.st_dev, info.st_ino)] = None
    for option, path in outputs.items():
        if path is None:
            continue
        key: tuple[int, int] | str
        try:
            info = os.stat(path)
            key = (info.st_dev, info.st_ino)
        except OSError:
            key = os.path.realpath(path)  # not there yet: not an input, maybe another output
        else:
            if not stat.S_ISREG(info.st_mode):
                continue  # /dev/null, a pipe: nothing to lose
        if key in seen:
            other = seen[key]
            what = "an input" if other is None else f"also {other}"
            raise UsageError(f"{option} {path} is {what}: give {option} another file")
        seen[key] = option


@contextmanager
def _ignoring_os_errors() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


@contextmanager
def output_file(path: str | Path) -> Iterator[Path]:
    """The path to write `path`'s content to: a new file beside it, moved over `path` when
    the block ends, removed when it raises. So a failed run leaves no partial file (and an
    older `path` as it was). A target that is not a regular file (/dev/null, a pipe) is
    written directly. The file is made before the block runs, so that a folder that does
    not exist or refuses fails first, as `OutputError("cannot write <path>: <reason>")`; an
    OS error while the block writes is reported the same way (a full disk).
    """
    target = Path(os.path.realpath(path))  # through a link, its file is written
    try:
        info: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {_reason(error)}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputError(f"cannot write {path}: {os.strerror(errno.EISDIR).lower()}")
    if info is not None and not stat.S_ISREG(info.st_mode):
        with writing(path):
            yield target
        return
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        if info is not None:
            with open(target, "ab"):  # an existing file we may not write is refused now
                pass
        descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.close(descriptor)
        if info is not None:
            os.chmod(temporary, stat.S_IMODE(info.st_mode))
    except OSError as error:
        raise OutputError(f"cannot write {path}: {_reason(error)}") from None
    try:
        with writing(path):
            yield temporary
            os.replace(temporary, target)
    finally:
        with _ignoring_os_errors():
            temporary.unlink(missing_ok=True)


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """An OS error raised while writing `path` (not a broken pipe) -> `OutputError`."""
    try:
        yield
    except OSError as error:
        if is_broken_pipe(error):
            raise
        raise OutputError(f"cannot write {path}: {_reason(error)}") from None


def neutralize_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix string cells that a spreadsheet would run as a formula with `'`."""
    text_columns = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in text_columns
    )


# --- text for a terminal -----------------------------------------------------------------------

#: What a terminal acts on, or what changes how text reads: controls (C0, DEL and C1; ESC
#: starts the SGR, CSI and OSC sequences that colour text, move the cursor, set the window
#: title or make links), format characters (bidi overrides and isolates, zero-width ones) and
#: the line and paragraph separators. Remote servers' words, webhook JSON and file names carry
#: them; every text renderer shows them escaped, as visible text.
UNPRINTABLE = r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]"

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    """One character as Python writes it in a string literal: `\n`, `\x1b`, `\u202e`."""
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with each `UNPRINTABLE` character of its text columns escaped (`\x1b`,
    `\u202e`, `\n`), for a terminal. Vectorized: the distinct such characters are found by
    the character class, then all replaced in one pass. Data outputs (JSON, CSV, Parquet)
    keep the text exact and do not use this."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    found: set[str] = set()
    for name in text:
        column = frame.get_column(name).str.extract_all(UNPRINTABLE).explode().drop_nulls()
        found.update(column.unique().to_list())
    if not found:
        return frame
    chars = sorted(found)
    escaped = [_escape(char) for char in chars]
    return frame.with_columns(pl.col(text).str.replace_many(chars, escaped))


def printable(text: str) -> str:
    """`text` with each `UNPRINTABLE` character escaped, as `printable_frame` does; bytes that
    were not UTF-8 (a file name's, kept by Python as lone surrogates) as `\xe9`."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    frame = printable_frame(pl.DataFrame({"text": [text]}, schema={"text": pl.String}))
    return str(frame.item())


#: The indent of the lines under an event's row: the whole reply, and a recipient too long
#: for the row.
_UNDER = "    "
#: The widest event name: the column stays put from one batch to the next.
_EVENT_WIDTH = max(len(name) for name in schema.EVENTS)


def wrap_expr(text: pl.Expr, *, width: int, indent: str = "") -> pl.Expr:
    """`text` wrapped into lines of at most `width` characters, each after `indent`, joined
    by newlines; a word longer than a line is broken. Nothing is cut. Vectorized: one regex
    takes, from each point, the longest stretch that ends before a space (or at the end),
    else `width` characters."""
    room = max(width - len(indent), 1)
    pieces = text.str.extract_all(rf".{{1,{room}}}(?:\s|$)|.{{{room}}}")
    lines = pieces.list.eval(pl.element().str.strip_chars()).list.join("\n" + indent)
    return pl.lit(indent) + lines


def render_event_table(frame: pl.DataFrame, *, width: int = 100, header: bool = True) -> str:
    """Events for a person at a terminal, within `width` columns: a row per event (time,
    event, reply codes, category, recipient), and under it the remote server's whole reply,
    wrapped, never cut. A recipient that does not fit on the row gets a line of its own."""
    view = printable_frame(
        frame.select(
            pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S").fill_null(""),
            pl.col("event").fill_null(""),
            pl.concat_str(
                pl.col("smtp_code").cast(pl.String), pl.col("enhanced_code"), separator=" "
            )
            .fill_null(pl.coalesce(pl.col("smtp_code").cast(pl.String), "enhanced_code"))
            .fill_null("")
            .alias("code"),
            pl.col("category").fill_null(""),
            pl.col("recipient").fill_null(""),
            pl.col("diagnostic").fill_null(""),
        )
    )
    heads = {"timestamp": 19, "event": _EVENT_WIDTH, "code": 4, "category": 8}
    longest = view.select(pl.col(*heads).str.len_chars().max().fill_null(0)).row(0)
    widths = {
        name: max(least, int(most))
        for (name, least), most in zip(heads.items(), longest, strict=True)
    }
    row = pl.concat_str(
        [pl.col(name).str.pad_end(size) for name, size in widths.items()], separator="  "
    )
    fits = (row.str.len_chars() + 2 + pl.col("recipient").str.len_chars()) <= width
    lines = view.select(
        pl.when(fits)
        .then(pl.concat_str(row, pl.col("recipient"), separator="  "))
        .otherwise(
            pl.concat_str(
                row.str.strip_chars_end(),
                wrap_expr(pl.col("recipient"), width=width, indent=_UNDER),
                separator="\n",
            )
        )
        .str.strip_chars_end()
        .alias("row"),
        pl.when(pl.col("diagnostic") != "")
        .then(wrap_expr(pl.col("diagnostic"), width=width, indent=_UNDER))
        .alias("under"),
    ).select(pl.concat_str("row", "under", separator="\n", ignore_nulls=True))
    head = "  ".join(name.ljust(size) for name, size in widths.items())
    body = "".join(f"{line}\n" for line in lines.to_series().str.join("\n"))  # one string
    return f"{head}  recipient\n{_UNDER}diagnostic\n{body}" if header else body


class EventWriter:
    """Writes frames one after another to a binary stream in one format."""

    def __init__(self, stream: IO[bytes], fmt: EventFormat, *, width: int = 100) -> None:
        self._stream = stream
        self._fmt = fmt
        self._width = width  # the table's columns
        self._parquet: pq.ParquetWriter | None = None
        self._header_done = False
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Write the rows of `frame`. A frame without rows writes nothing: its columns may
        not be the event table's (a stretch of input with no event is not classified), and
        `close` writes the header or schema when no row came."""
        if frame.height:
            self._write(frame)

    def _write(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        if self._fmt is EventFormat.jsonl:
            frame.write_ndjson(self._stream)
        elif self._fmt is EventFormat.csv:
            buffer = io.BytesIO()
            neutralize_formulas(frame).write_csv(buffer, include_header=not self._header_done)
            self._header_done = True
            self._stream.write(buffer.getvalue())
        elif self._fmt is EventFormat.parquet:
            import pyarrow.parquet as pq  # lazy: pyarrow is heavy; JSON lines and CSV never load it

            # polars' own string layout (Arrow string views) is handed over without a copy;
            # the copy into classic Arrow strings cost a quarter of the writer's time. The file
            # does not record that layout (no stored Arrow schema): readers see plain UTF-8
            # strings and a UTC timestamp, as Parquet types them.
            table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(
                    self._stream,
                    table.schema,
                    compression="zstd",
                    use_dictionary=schema.dictionary_columns(table.schema),
                    write_statistics=schema.statistics_columns(table.schema),
                    store_schema=False,
                )
            self._parquet.write_table(table)
        elif self._fmt is EventFormat.table:
            text = render_event_table(frame, width=self._width, header=not self._header_done)
            self._header_done = True
            self._stream.write(text.encode("utf-8"))
        else:  # pragma: no cover - the enum is closed
            raise UsageError(f"unknown format {self._fmt}")

    def close(self, *, empty: pl.DataFrame) -> None:
        """Finish the stream; `empty` gives the columns when nothing was written."""
        if self._fmt is EventFormat.parquet:
            if self._parquet is None:
                self._write(empty)
            assert self._parquet is not None
            self._parquet.close()
        elif self._fmt is EventFormat.csv and not self._header_done:
            self._write(empty)
        self._stream.flush()
