"""What the JSON event sources (SendGrid, Mailgun) share: framing, decoding, timestamps.

Framing (`DocumentFramer`) cuts batches of lines into JSON documents without parsing them:
per line it counts the brackets outside strings (vectorized: a JSON string cannot span lines),
and a running depth says where each document starts and ends. NDJSON (one document per line)
and pretty-printed documents (an array POSTed by a webhook, spread over many lines and batches)
come out alike. A document still open at the end of a batch is carried into the next one. A
top-level array is streamed: once more than `FLUSH_BYTES` of it are held, its elements complete
so far go on (a piece, decoded as an array whose positions count on from the elements before
it) and only the element still open is kept; so an array of any size (a 1M-event export, 500 MB
pretty-printed) is read element by element in bounded memory. Anything else still open is
bounded by `MAX_DOCUMENT_BYTES`, past which it is set aside as malformed. An event whose JSON is
longer than `MAX_RECORD_BYTES` is set aside too (`record too long`), as is a line longer than
that (by the reading layer). A line written from the first column that is a balanced
object or array by itself always starts a new document, so that a truncated NDJSON line spoils
only itself; the price is that an array whose compact elements are written unindented on their
own lines (`[` / `{...},` / `{...}` / `]`) is cut apart and partly reported as malformed.

Decoding (`decode_documents`) turns the documents into one row per top-level element with
`str.json_decode` and an explicit schema, one call per batch. Only documents that call rejects
(invalid JSON, concatenated documents such as `[...][...]`, a field of an unexpected JSON type)
are looked at with Python's `json`, once per such document: concatenated documents are split
there, and the message of what is wrong is written there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from polars._typing import PolarsDataType

from bounce_analyzer import schema
from bounce_analyzer.reading import MAX_LINE_BYTES, Batch
from bounce_analyzer.smtp import ENHANCED_CODE, REPLY_CODE
from bounce_analyzer.sources.base import MALFORMED_SCHEMA, SourceOutput

#: A document (a JSON value, possibly spread over lines) longer than this is set aside; a
#: top-level array is streamed instead (see FLUSH_BYTES), so only an object or one element of
#: an array can reach it.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

#: The elements of a top-level array held are passed on once they are more than this.
FLUSH_BYTES = 4 * 1024 * 1024

#: An event (one JSON object) longer than this is set aside: the same bound as for a line.
MAX_RECORD_BYTES = MAX_LINE_BYTES

#: Bytes of JSON text decoded at once.
DECODE_CHUNK_BYTES = 4 * 1024 * 1024

#: Characters of a malformed record kept in `raw`.
RAW_LIMIT = 4096

#: Columns of the frame of documents the framer cuts.
DOCUMENT_SCHEMA: dict[str, pl.DataType] = {
    "doc": pl.Int64(),  # running document number within the run
    "line": pl.Int64(),  # 1-based line where the document starts
    "text": pl.String(),  # the document, stripped
    "base": pl.Int64(),  # the position of its first element (a piece of a streamed array)
}

# A JSON string (the lines are searched for brackets outside strings).
_STRING = r'"(?:[^"\\]|\\.)*"'
# How a line of a JSON document may start; other lines (form bodies, stray text) hold no
# bracket that counts.
_JSONISH_START = r"^(?:[\[\]{}\",:0-9-]|true\b|false\b|null\b)"
# Larger than any depth a bounded document can reach (see DocumentFramer.feed).
_RESET = 1 << 32


@dataclass
class _Pending:
    """A document still open at the end of a batch."""

    path: str = ""
    line: int = 0
    depth: int = 0
    parts: list[str] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)  # the depth after each of `parts`
    size: int = 0
    #: A streamed array: the number of the document its pieces carry (None: not streamed yet),
    #: and the position its next piece starts at.
    doc: int | None = None
    base: int = 0


class DocumentFramer:
    """Cuts batches of lines into JSON documents; keeps an open document across batches."""

    def __init__(
        self, *, max_document_bytes: int = MAX_DOCUMENT_BYTES, flush_bytes: int = FLUSH_BYTES
    ) -> None:
        self._max = max_document_bytes
        self._flush = flush_bytes
        self._pending = _Pending()
        self._next_doc = 0

    def advance(self, doc: int, count: int) -> None:
        """`count` elements of the piece of document `doc` were read: the next piece of that
        array (if it is still open) starts after them."""
        if self._pending.doc == doc:
            self._pending.base += count

    def feed(self, batch: Batch) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The documents complete in `batch` (DOCUMENT_SCHEMA) and overlong ones (malformed)."""
        malformed: list[dict[str, str]] = []
        carry = self._pending
        if carry.depth and carry.path != batch.path:
            # A document left open at the end of another input.
            malformed.append(_malformed_row(carry.path, carry.line, "unterminated JSON", carry))
            carry = self._pending = _Pending()
        text = batch.data.decode("utf-8", "replace")
        if text.endswith("\n"):
            text = text[:-1]
        lines = (
            pl.DataFrame({"raw": text.split("\n")}, schema={"raw": pl.String()})
            .with_row_index("n")
            .select(
                (pl.col("n").cast(pl.Int64) + batch.first_line).alias("line"),
                pl.col("raw").str.strip_chars().alias("text"),
                pl.col("raw").str.contains(r"^[\[{]").alias("flush"),
            )
        )
        # Bracket balance of each line. A line written from the first column that opens with
        # "{" or "[", closes with "}" or "]" and balances ('{"event":"bounce",...}') is a whole
        # document: it starts a new document even inside an open one, so that a line cut short
        # (a truncated NDJSON record) swallows no more than itself. Counting brackets inside
        # strings too is enough to tell such a line (a wrong guess makes a document that fails
        # to decode, reported as malformed); the other lines are counted outside strings.
        raw_delta = _count(pl.col("text"), "[{") - _count(pl.col("text"), "]}")
        lines = lines.with_columns(
            whole=pl.col("flush") & pl.col("text").str.contains(r"[\]}]$") & (raw_delta == 0)
        )
        others = lines.filter(~pl.col("whole"))
        if others.height:
            clean = pl.col("text").str.replace_all(_STRING, "")
            delta = (
                pl.when(pl.col("text").str.contains(_JSONISH_START))
                .then(_count(clean, "[{") - _count(clean, "]}"))
                .otherwise(0)
            )
            lines = pl.concat(
                [
                    lines.filter("whole").with_columns(delta=pl.lit(-_RESET, pl.Int64)),
                    others.with_columns(delta=delta),
                ]
            ).sort("line")
        else:
            lines = lines.with_columns(delta=pl.lit(-_RESET, pl.Int64))
        # The depth after each line: a running sum held at zero from below (a stray closing
        # bracket at depth 0 starts no document and leaves the depth at 0). A whole line's
        # delta is large and negative, so that the depth is 0 after it.
        running = pl.col("delta").cum_sum() + carry.depth
        lines = lines.with_columns(
            after=running - pl.min_horizontal(pl.lit(0, pl.Int64), running.cum_min())
        )
        lines = lines.with_columns(before=pl.col("after").shift(1, fill_value=carry.depth))
        lines = lines.filter((pl.col("before") > 0) | (pl.col("text") != "")).with_columns(
            start=(pl.col("before") == 0) | pl.col("whole")
        )
        lines = lines.with_columns(doc=pl.col("start").cum_sum().cast(pl.Int64))
        # doc 0: the rest of the document carried from the previous batch (if any).
        if lines.height == 0:
            return self._finish(batch, carry, pl.DataFrame(schema=DOCUMENT_SCHEMA), malformed)
        last_after = int(lines["after"][-1])
        open_doc = int(lines["doc"][-1]) if last_after > 0 and not batch.final else None
        if open_doc is not None:
            tail = lines.filter(pl.col("doc") == open_doc)
            lines = lines.filter(pl.col("doc") != open_doc)
        single = lines.filter(pl.col("start") & (pl.col("after") == 0))
        multi = (
            lines.filter(~(pl.col("start") & (pl.col("after") == 0)))
            .group_by("doc", maintain_order=True)
            .agg(pl.col("line").first(), pl.col("text").str.join("\n"))
        )
        multi = multi.with_columns(base=pl.lit(0, pl.Int64))
        streamed: tuple[int, int] | None = None  # the rest of a streamed array: (doc, base)
        if carry.depth and multi.height and int(multi["doc"][0]) == 0:
            start = "\n".join(carry.parts)
            if carry.doc is not None:
                # The rest of a streamed array: its elements after the pieces passed on.
                start = "[" + start.lstrip(", \t\r\n")
                streamed = (carry.doc, carry.base)
            head = multi.head(1).with_columns(
                line=pl.lit(carry.line, pl.Int64),
                text=pl.lit(start) + "\n" + pl.col("text"),
                base=pl.lit(carry.base, pl.Int64),
            )
            multi = pl.concat([head, multi.slice(1)])
            carry = self._pending = _Pending()
        elif carry.depth and open_doc != 0:
            # The document carried from the previous batch was cut short: the batch starts
            # with a new document ('{"event":"bou' then '{"event":"bounce",...}').
            malformed.append(_malformed_row(carry.path, carry.line, "unterminated JSON", carry))
            carry = self._pending = _Pending()
        docs = (
            pl.concat(
                [
                    single.select("doc", "line", "text", base=pl.lit(0, pl.Int64)),
                    multi.select("doc", "line", "text", "base"),
                ]
            )
            .sort("doc")
            .with_columns(pl.col("doc") + self._next_doc)
        )
        if streamed is not None:
            # (its pieces went on with the number it was given then)
            first = pl.int_range(pl.len()) == 0
            docs = docs.with_columns(
                doc=pl.when(first).then(pl.lit(streamed[0], pl.Int64)).otherwise("doc")
            )
        if docs.height:
            self._next_doc = max(self._next_doc, int(docs["doc"].max()) + 1)  # type: ignore[arg-type]
        new_pending = _Pending()
        if open_doc is not None:
            if open_doc == 0 and carry.depth:
                new_pending = carry
            else:
                new_pending = _Pending(path=batch.path, line=int(tail["line"][0]))
            new_pending.depth = last_after
            new_pending.parts.extend(tail["text"].to_list())
            new_pending.depths.extend(tail["after"].to_list())
            new_pending.size += int(tail["text"].str.len_bytes().sum()) + tail.height
            streaming = new_pending.doc is not None or new_pending.parts[0].startswith("[")
            if new_pending.size > self._flush and streaming:
                piece = self._piece(new_pending)
                if piece is not None:
                    docs = pl.concat([docs, pl.DataFrame([piece], schema=DOCUMENT_SCHEMA)])
            if new_pending.size > self._max:
                reason = f"JSON document longer than {self._max} bytes (unbalanced brackets?)"
                malformed.append(
                    _malformed_row(new_pending.path, new_pending.line, reason, new_pending)
                )
                new_pending = _Pending()
        self._pending = new_pending
        return self._finish(batch, new_pending, docs, malformed)

    def _piece(self, pending: _Pending) -> dict[str, object] | None:
        """Pass on the whole elements of the open top-level array `pending`: the document of
        them (None if there is none), and `pending` keeps only the element still open."""
        if pending.doc is None:
            pending.doc = self._next_doc
            self._next_doc += 1
        # The last line after which only the array is open (depth 1): "  }," or "  {...},".
        if 1 not in pending.depths:
            return None
        end = len(pending.depths) - 1 - pending.depths[::-1].index(1)
        lines = pending.parts[: end + 1]
        del pending.parts[: end + 1]
        del pending.depths[: end + 1]
        pending.size = len("\n".join(pending.parts).encode()) + 1 if pending.parts else 0
        text = "\n".join(lines)
        if pending.base == 0 and text.startswith("["):
            text = text[1:]
        text = text.strip(", \t\r\n")
        if not text:
            return None
        return {"doc": pending.doc, "line": pending.line, "text": f"[{text}]", "base": pending.base}

    def _finish(
        self,
        batch: Batch,
        pending: _Pending,
        docs: pl.DataFrame,
        malformed: list[dict[str, str]],
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        if docs.height:
            self._next_doc = int(docs["doc"].max()) + 1  # type: ignore[arg-type]
        if batch.final and pending.depth:
            malformed.append(
                _malformed_row(pending.path, pending.line, "unterminated JSON", pending)
            )
            self._pending = _Pending()
        return docs, pl.DataFrame(malformed, schema=MALFORMED_SCHEMA)


def _count(text: pl.Expr, characters: str) -> pl.Expr:
    """How many of `characters` `text` holds."""
    counts = [text.str.count_matches(c, literal=True).cast(pl.Int64) for c in characters]
    return pl.sum_horizontal(counts)


def _malformed_row(path: str, line: int, reason: str, pending: _Pending) -> dict[str, str]:
    raw = "\n".join(pending.parts)[:RAW_LIMIT]
    return {"origin": f"{path}:{line}", "reason": reason, "raw": raw}


def _split_values(text: str) -> list[Any]:
    """The JSON values in `text`, one after another (`[...][...]`); ValueError if invalid."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position == len(text):
            return values
        value, position = decoder.raw_decode(text, position)
        values.append(value)


def _type_problem(value: Any, dtype: PolarsDataType, where: str = "") -> str | None:
    """What in `value` does not fit `dtype` (as `str.json_decode` reads it), or None."""
    if value is None:
        return None
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            return f"{where or 'the event'} is not a JSON object"
        for fld in dtype.fields:
            problem = _type_problem(value.get(fld.name), fld.dtype, f'"{fld.name}"')
            if problem:
                return problem
        return None
    if isinstance(dtype, pl.List):
        if not isinstance(value, list):
            return f"{where} is not a JSON array"
        for item in value:
            problem = _type_problem(item, dtype.inner, where)
            if problem:
                return problem
        return None
    if isinstance(value, dict | list):
        return f"{where} is an object or array where a plain value is expected"
    return None


def _decode(texts: pl.DataFrame, dtype: pl.DataType) -> Iterator[tuple[pl.DataFrame, bool]]:
    """`texts` decoded by halves: (frame with an `element` column, True) or (rows, False)."""
    try:
        decoded = texts.with_columns(element=pl.col("text").str.json_decode(dtype)).drop("text")
    except pl.exceptions.PolarsError:
        if texts.height == 1:
            yield texts, False
            return
        half = texts.height // 2
        yield from _decode(texts.slice(0, half), dtype)
        yield from _decode(texts.slice(half), dtype)
        return
    yield decoded, True


def _decode_chunks(texts: pl.DataFrame, dtype: pl.DataType) -> Iterator[tuple[pl.DataFrame, bool]]:
    """`_decode` over slices of about `DECODE_CHUNK_BYTES` (json_decode's working memory is
    several times its input)."""
    size = int(texts["text"].str.len_bytes().sum() or 0)
    rows = max(1, texts.height * DECODE_CHUNK_BYTES // max(size, 1))
    for start in range(0, texts.height, rows):
        yield from _decode(texts.slice(start, rows), dtype)


def decode_documents(
    docs: pl.DataFrame,
    element: pl.Struct,
    path: str,
    *,
    counts: dict[int, int] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode `docs` into one row per top-level JSON object, and the malformed documents.

    The elements frame has `doc`, `line`, `multi` (the document holds an array or several
    values, so origins carry an index), `pos` (0-based index of the element in its document:
    the document's `base` on) and `element` (a struct of `element`'s fields; fields not named
    there are ignored). `counts`, when given, receives the positions each array document
    took (an undecodable one takes one): where the next piece of a streamed array starts.
    """
    if "base" not in docs.columns:
        docs = docs.with_columns(base=pl.lit(0, pl.Int64))
    as_list = pl.List(element)
    good: list[pl.DataFrame] = []
    bad: list[pl.DataFrame] = []
    # '{"event": ...}' -> one element; '[{"event": ...}, ...]' -> one element per item.
    is_array = pl.col("text").str.starts_with("[")
    for frame, ok in _decode_chunks(docs.filter(~is_array), element):
        (good if ok else bad).append(frame)
    elements = [
        frame.select(
            "doc", "line", pl.lit(False).alias("multi"), pl.lit(0, pl.Int64).alias("pos"), "element"
        )
        for frame in good
    ]
    good = []
    for frame, ok in _decode_chunks(docs.filter(is_array), as_list):
        (good if ok else bad).append(frame)
    elements += [
        frame.filter(pl.col("element").list.len() > 0)
        .with_columns(
            pos=pl.int_ranges(
                pl.col("base"), pl.col("base") + pl.col("element").list.len(), dtype=pl.Int64
            )
        )
        .explode("element", "pos")
        .select("doc", "line", pl.lit(True).alias("multi"), "pos", "element")
        for frame in good
    ]
    if counts is not None:
        for frame in good:
            sizes = frame.group_by("doc").agg(pl.col("element").list.len().sum())
            for doc, size in sizes.iter_rows():
                counts[doc] = counts.get(doc, 0) + size
    malformed: list[dict[str, str]] = []
    retry: list[dict[str, Any]] = []
    for frame in bad:
        # Python json, once per rejected document (not in the hot path).
        for doc, line, text, base in frame.select("doc", "line", "text", "base").iter_rows():
            if counts is not None and text.startswith("["):
                counts[doc] = counts.get(doc, 0) + 1  # (the items found replace this one)
            try:
                values = _split_values(text)
            except RecursionError:
                reason = "invalid JSON: nested too deeply"
                malformed.append({"origin": f"{path}:{line}", "reason": reason, "raw": text})
                continue
            except ValueError as error:
                reason = f"invalid JSON: {error}"
                malformed.append({"origin": f"{path}:{line}", "reason": reason, "raw": text})
                continue
            items: list[Any] = []
            for value in values:
                items.extend(value if isinstance(value, list) else [value])
            multi = len(values) > 1 or text.startswith("[")
            if counts is not None and text.startswith("["):
                counts[doc] += len(items) - 1
            for pos, item in enumerate(items, start=base):
                origin = f"{path}:{line}#{pos}" if multi else f"{path}:{line}"
                problem = _type_problem(item, element)
                if problem:
                    raw = json.dumps(item, ensure_ascii=False)
                    malformed.append({"origin": origin, "reason": problem, "raw": raw})
                    continue
                retry.append(
                    {
                        "doc": doc,
                        "line": line,
                        "multi": multi,
                        "pos": pos,
                        "text": json.dumps(item),
                    }
                )
    if retry:
        frame = pl.DataFrame(
            retry,
            schema={
                "doc": pl.Int64(),
                "line": pl.Int64(),
                "multi": pl.Boolean(),
                "pos": pl.Int64(),
                "text": pl.String(),
            },
        )
        for part, ok in _decode(frame, element):
            if ok:
                elements.append(part.select("doc", "line", "multi", "pos", "element"))
            else:  # pragma: no cover - _type_problem found nothing, json_decode still refused
                for line, multi, pos, text in part.select(
                    "line", "multi", "pos", "text"
                ).iter_rows():
                    origin = f"{path}:{line}#{pos}" if multi else f"{path}:{line}"
                    malformed.append({"origin": origin, "reason": "undecodable", "raw": text})
    schema = {
        "doc": pl.Int64(),
        "line": pl.Int64(),
        "multi": pl.Boolean(),
        "pos": pl.Int64(),
        "element": element,
    }
    parts = [frame for frame in elements if frame.height]
    if not parts:
        out = pl.DataFrame(schema=schema)
    elif len(parts) == 1:
        out = parts[0]
    else:
        out = pl.concat(parts).sort("doc", "pos")
    bad_frame = pl.DataFrame(malformed, schema=MALFORMED_SCHEMA).with_columns(
        pl.col("raw").str.slice(0, RAW_LIMIT)
    )
    return out, bad_frame


def origin(path: str) -> pl.Expr:
    """`path:line`, or `path:line#pos` for an element of an array or of several documents."""
    base = pl.concat_str(pl.lit(path + ":"), pl.col("line").cast(pl.String))
    return (
        pl.when(pl.col("multi"))
        .then(pl.concat_str(base, pl.lit("#"), pl.col("pos").cast(pl.String)))
        .otherwise(base)
        .alias("origin")
    )


def json_text(frame: pl.DataFrame, key: pl.Expr, column: str) -> pl.Expr:
    """`column` (a struct) re-encoded as JSON where `key` is null; skipped if it never is."""
    if frame.select(key.is_not_null().all()).item():
        return pl.lit(None, pl.String)
    return pl.col(column).struct.json_encode()


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    """`expr` stripped, with empty strings as null."""
    stripped = expr.str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped)


def epoch_seconds(expr: pl.Expr) -> pl.Expr:
    """Unix seconds (text of an int or float, as decoded) -> Datetime("us", "UTC"); else null.

    Plain decimals are converted exactly (no float rounding of the microseconds); other
    numeric forms (`1.5e9`) through Float64. Values outside 0..1e11 s are null.
    """
    text = expr.str.strip_chars()
    whole = text.str.extract(r"^([0-9]{1,11})(?:\.[0-9]*)?$", 1).cast(pl.Int64, strict=False)
    fraction = text.str.extract(r"^[0-9]{1,11}\.([0-9]{1,6})", 1).str.pad_end(6, "0").cast(pl.Int64)
    exact = whole * 1_000_000 + fraction.fill_null(0)
    number = text.cast(pl.Float64, strict=False)
    approximate = (
        pl.when((number >= 0) & (number < 1e11))
        .then((number * 1e6).round(0))
        .otherwise(None)
        .cast(pl.Int64, strict=False)
    )
    micros = pl.coalesce(exact, approximate)
    return micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def rfc2822(expr: pl.Expr) -> pl.Expr:
    """An RFC 2822 date ("Tue, 05 Mar 2024 10:00:00 +0000", zone names GMT/UT/UTC/Z) -> UTC."""
    text = (
        expr.str.strip_chars()
        .str.replace(r"^[A-Za-z]{3},\s*", "")
        .str.replace(r"\s+(?:GMT|UTC|UT|Z)$", " +0000")
    )
    return text.str.strptime(pl.Datetime("us", "UTC"), "%d %b %Y %H:%M:%S %z", strict=False)


def smtp_code(expr: pl.Expr) -> pl.Expr:
    """The reply code at the start of a text ("550 5.1.1 ..."), as Int16; else null."""
    return expr.str.extract(rf"^\s*({REPLY_CODE})(?:[\s-]|$)", 1).cast(pl.Int16)


def enhanced_code(expr: pl.Expr) -> pl.Expr:
    """The enhanced status code at the start of a text ("550 5.1.1 ...", "4.2.2 ...")."""
    return expr.str.extract(rf"^\s*(?:{REPLY_CODE}[\s-]+)?({ENHANCED_CODE})\b", 1)


def valid_enhanced(expr: pl.Expr) -> pl.Expr:
    """`expr` if it is an enhanced status code ("5.1.1"), else null."""
    return expr.str.extract(rf"^\s*({ENHANCED_CODE})\s*$", 1)


def looks_like_json(head: bytes) -> str | None:
    """`head` as text when it starts like a JSON document, else None."""
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    return text if text[:1] in ("[", "{") else None


def not_json_rows(docs: pl.DataFrame, path: str, reason: str) -> pl.DataFrame:
    """Malformed rows (origin, reason, raw) for documents that are not JSON."""
    return docs.select(
        pl.concat_str(pl.lit(path + ":"), pl.col("line").cast(pl.String)).alias("origin"),
        pl.lit(reason).alias("reason"),
        pl.col("text").str.slice(0, RAW_LIMIT).alias("raw"),
    )


def split_outcomes(
    frame: pl.DataFrame,
    *,
    raw: str,
    facts: Callable[[pl.DataFrame], pl.DataFrame],
    set_aside: Sequence[pl.DataFrame],
    check_size: bool = False,
) -> SourceOutput:
    """Decoded events -> SourceOutput.

    `frame` has `origin`, `problem` (why the event cannot be read, else null), `outcome` (the
    event kind, null for events that are not delivery outcomes) and the struct column `raw`;
    `set_aside` are malformed rows found before decoding. Every event is counted once: as an
    event, skipped, or malformed. `check_size`: some document was longer than
    `MAX_RECORD_BYTES`, so an event may be: one that is set aside (`record too long`).
    """
    if check_size:
        size = pl.col(raw).struct.json_encode().str.len_bytes()
        frame = frame.with_columns(
            problem=pl.when(pl.col("problem").is_null() & (size > MAX_RECORD_BYTES))
            .then(
                pl.format(f"record too long ({{}} bytes; the limit is {MAX_RECORD_BYTES:,})", size)
            )
            .otherwise("problem")
        )
    invalid = frame.filter(pl.col("problem").is_not_null()).select(
        "origin",
        pl.col("problem").alias("reason"),
        pl.col(raw).struct.json_encode().str.slice(0, RAW_LIMIT).alias("raw"),
    )
    readable = frame.filter(pl.col("problem").is_null())
    skipped = readable.filter(pl.col("outcome").is_null()).height
    events = schema.conform(facts(readable.filter(pl.col("outcome").is_not_null())))
    malformed = pl.concat([*set_aside, invalid]).select(list(MALFORMED_SCHEMA))
    return SourceOutput(
        events=events,
        malformed=malformed,
        read=events.height + skipped + malformed.height,
        skipped=skipped,
    )


class JsonSource:
    """What the JSON sources share: batches cut into documents, parsed one batch at a time.

    A subclass names itself and says how the documents complete in a batch become events
    (`_parse_documents`). Timestamps in ESP events are Unix seconds or carry their zone, so
    `tz` is accepted for the common interface and not used.
    """

    def __init__(self, *, tz: str | None = None, framer: DocumentFramer | None = None) -> None:
        self.tz = tz
        self._framer = framer or DocumentFramer()
        #: Positions each array document of the current batch took (see `decode_documents`).
        self._counts: dict[int, int] = {}

    def parse(self, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        """One output per batch: the events of the documents complete in it."""
        for batch in batches:
            docs, overlong = self._framer.feed(batch)
            output = self._parse_documents(docs, overlong, batch.path)
            for doc, count in self._counts.items():
                self._framer.advance(doc, count)
            self._counts.clear()
            yield output

    def _outcomes(
        self,
        frame: pl.DataFrame,
        docs: pl.DataFrame,
        *,
        raw: str,
        facts: Callable[[pl.DataFrame], pl.DataFrame],
        set_aside: Sequence[pl.DataFrame],
    ) -> SourceOutput:
        """`split_outcomes`, sizing the events when a document of `docs` is longer than an
        event may be."""
        longest = docs["text"].str.len_bytes().max() if docs.height else 0
        long = isinstance(longest, int) and longest > MAX_RECORD_BYTES
        return split_outcomes(frame, raw=raw, facts=facts, set_aside=set_aside, check_size=long)

    def _parse_documents(
        self, docs: pl.DataFrame, overlong: pl.DataFrame, path: str
    ) -> SourceOutput:
        raise NotImplementedError
