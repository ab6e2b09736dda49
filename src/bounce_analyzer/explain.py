"""The library behind `bounce-analyzer explain`: classify free text and bare codes, with reasons.

An input is a diagnostic as a server wrote it (``550-5.1.1 The email account ...``) or a bare
code (``5.7.26``, ``421``, ``0x800CCC0F``), optionally with the reply code, enhanced code,
recipient, relay host or provider given apart, and the direction of the mail (outbound by
default). The answer is the engine's decision plus what the deciding rule says: a code table
row's meaning and solution, else the category's description and advice. For inbound mail (our
server refused a client, or failed at one of our mailboxes) the solution is the category's
`advice_inbound`: a row's solution, like the category's `advice`, is written for a sender.
Where the text names a DNS blocklist or reputation list (rules/blocklists.toml), the answer
names it too, with the page to look an address up on; where it says how long to wait before
trying again (``try again in 5 minutes``), the wait in seconds (`retry_after`).
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from types import ModuleType
from typing import IO, TextIO

import polars as pl

from bounce_analyzer import native
from bounce_analyzer.classify import classify
from bounce_analyzer.errors import UsageError
from bounce_analyzer.rules import Direction, Rules, load_rules, solution_for
from bounce_analyzer.schema import advice_for
from bounce_analyzer.smtp import domain_of
from bounce_analyzer.writers import printable

#: The columns of `explain_frame`'s answer, in order.
EXPLAIN_COLUMNS = (
    "input",
    "direction",
    "smtp_code",
    "enhanced_code",
    "hex_code",
    "category",
    "category_group",
    "bounce_type",
    "permanent",
    "retry_after",
    "provider",
    "rule_id",
    "meaning",
    "solution",
    "description",
    "advice",
    "blocklist",
    "blocklist_label",
    "blocklist_lookup",
    "blocklist_note",
)

#: The keys a JSON input line may have (others are ignored).
JSON_FIELDS: dict[str, pl.DataType] = {
    "diagnostic": pl.String(),
    "smtp_code": pl.String(),
    "enhanced_code": pl.String(),
    "recipient": pl.String(),
    "relay_host": pl.String(),
    "provider": pl.String(),
    "direction": pl.String(),
}

_OPTIONAL = ("smtp_code", "enhanced_code", "recipient", "relay_host", "provider", "direction")

#: The host a text says answered, where no relay host is given apart: its provider is the
#: receiver's (docs/RULES.md, Providers), as for the relay host a log names. At the start of
#: the text, as Postfix writes it (`host mx.example.com[192.0.2.1] said: 550 ...`, `connect to
#: mx.example.com[192.0.2.1]:25: Connection refused`) and Exim (`a@b.example: host
#: mx.example.com [192.0.2.1]: 550 ...`).
_ANSWERING_HOST = r"^\s*(?:\S+@\S+: )?(?:host|connect to) ([^\s\[\]]+) ?\["


#: The texts of the answers to some classified rows (`_answer_texts`).
_Texts = Callable[[pl.LazyFrame], pl.LazyFrame]


def _classified(
    inputs: pl.DataFrame, rules: Rules, *, direction: Direction
) -> tuple[pl.LazyFrame, _Texts]:
    """`explain_frame` in two halves: the classified rows of `inputs` (with `_asked`, the
    direction asked for), and what makes the texts of their answers."""
    names = inputs.columns
    column = {
        name: (pl.col(name) if name in names else pl.lit(None)).cast(pl.String)
        for name in _OPTIONAL
    }
    recipient = column["recipient"].str.strip_chars(" <>")
    facts = (
        inputs.lazy()
        .select(
            pl.col("input").cast(pl.String),
            pl.col("input").cast(pl.String).alias("diagnostic"),
            column["smtp_code"].str.strip_chars().cast(pl.Int16, strict=False).alias("smtp_code"),
            column["enhanced_code"].str.strip_chars().replace("", None).alias("enhanced_code"),
            pl.when(recipient.str.contains("@"))
            .then(domain_of(recipient))
            .otherwise(recipient)
            .alias("recipient_domain"),
            pl.coalesce(
                column["relay_host"],
                pl.col("input").cast(pl.String).str.extract(_ANSWERING_HOST, 1),
            ).alias("relay_host"),
            column["provider"].str.strip_chars().replace("", None).alias("provider"),
            # asked for, not derived: the engine's own `direction` (from log facts) is not used
            _directions(column["direction"], direction).alias("_asked"),
        )
        .collect()
    )
    bad = _bad_direction(facts["_asked"])
    if bad is not None:
        raise UsageError(_BAD_DIRECTION.format(bad[1]))
    return classify(facts, rules, keep_hex=True).lazy(), _answer_texts(rules)


def _answer_texts(rules: Rules) -> _Texts:
    """The texts of an answer (meaning, solution, advice, the list's page) of each distinct
    combination of what they depend on (`_ANSWER_KEY`), as a function of the classified rows."""
    row_text = rules.codes.lazy().select(
        "rule_id", pl.coalesce("meaning", "message").alias("meaning"), "solution"
    )
    hex_text = (
        rules.codes.lazy()
        .filter(pl.col("hex_code").is_not_null())
        .unique(subset=["hex_code"], keep="first", maintain_order=True)
        .select(
            "hex_code",
            pl.col("meaning").alias("hex_meaning"),
            pl.col("solution").alias("hex_solution"),
        )
    )
    categories = rules.categories.lazy().select(
        "category", "description", "advice", "advice_inbound"
    )
    blocklists = rules.blocklists.lazy().select(
        "blocklist",
        pl.col("label").alias("blocklist_label"),
        pl.col("lookup").alias("blocklist_lookup"),
        pl.col("note").alias("blocklist_note"),
    )
    advice = advice_for(pl.col("direction"))

    def texts(classified: pl.LazyFrame) -> pl.LazyFrame:
        # worked out once per distinct combination (a few hundred in a large input)
        return (
            classified.select(_ANSWER_KEY)
            .unique()
            .join(row_text, on="rule_id", how="left")
            .join(hex_text, on="hex_code", how="left")
            .join(categories, on="category", how="left")
            .join(blocklists, on="blocklist", how="left")
            .with_columns(pl.col("_asked").alias("direction"))
            .select(
                *_ANSWER_KEY,
                pl.coalesce("meaning", "hex_meaning", "description").alias("meaning"),
                solution_for(pl.col("direction"), pl.coalesce("solution", "hex_solution")).alias(
                    "solution"
                ),
                "description",
                advice.alias("advice"),
                "blocklist_label",
                "blocklist_lookup",
                "blocklist_note",
            )
        )

    return texts


def explain_frame(
    inputs: pl.DataFrame, rules: Rules, *, direction: Direction = Direction.outbound
) -> pl.DataFrame:
    """Classify each row of `inputs` and say why (columns `EXPLAIN_COLUMNS`, in input order).

    `inputs` has an `input` column (the text) and optionally `smtp_code`, `enhanced_code`,
    `recipient` (an address or a bare domain), `relay_host`, `provider` and `direction`; a
    given provider wins over the one found from the recipient and relay host, and a row's
    direction over `direction`. A direction other than ``inbound`` or ``outbound`` raises
    `UsageError`.
    """
    classified, texts = _classified(inputs, rules, direction=direction)
    return (
        classified.join(
            texts(classified), on=_ANSWER_KEY, how="left", nulls_equal=True, maintain_order="left"
        )
        .with_columns(pl.col("_asked").alias("direction"))
        .select(EXPLAIN_COLUMNS)
        .collect()
    )


#: What the texts of an answer (meaning, solution, advice, the list's page) depend on.
_ANSWER_KEY = ["rule_id", "hex_code", "category", "blocklist", "_asked"]


def _directions(given: pl.Expr, default: Direction) -> pl.Expr:
    """The direction each input asks for: its own, else `default` (blank counts as none)."""
    own = given.str.strip_chars().str.to_lowercase().replace("", None)
    return pl.coalesce(own, pl.lit(Direction(default).value))


#: What a direction other than inbound or outbound is told.
_BAD_DIRECTION = "direction must be inbound or outbound, not {!r}"


def _bad_direction(directions: pl.Series) -> tuple[int, str] | None:
    """The position and value of the first of `directions` that is not a `Direction`."""
    bad = (~directions.is_in([d.value for d in Direction])).arg_true()
    return None if bad.is_empty() else (int(bad[0]), directions[int(bad[0])])


def read_explain_lines(
    lines: list[str], *, name: str = "<stdin>", first_line: int = 1
) -> pl.DataFrame:
    """Turn input lines into `explain_frame`'s input; blank lines are skipped.

    A line is either plain diagnostic text, or (when it starts with ``{``) a JSON object with
    `diagnostic` and any of `JSON_FIELDS`. A line that starts with ``{`` but is not a JSON
    object raises `UsageError`: ``<stdin>:3: not a JSON object: {"diagnostic": ...``.
    """
    frame = pl.DataFrame({"line": lines}, schema={"line": pl.String})
    return _inputs_of(frame.select(pl.col("line").str.strip_chars_end("\r\n")), name, first_line)


def _inputs_of(lines: pl.DataFrame, name: str, first_line: int) -> pl.DataFrame:
    """`read_explain_lines` of the `line` column of `lines`, each line without its end."""
    # (regexes, not stripped copies of the lines: a test that allocates nothing)
    frame = lines.with_row_index("line_number", offset=first_line).filter(
        pl.col("line").str.contains(r"\S")
    )
    is_json = pl.col("line").str.contains(r"^\s*\{")
    objects = frame.filter(is_json)
    try:
        decoded = objects.select(
            "line_number",
            pl.col("line").str.json_decode(pl.Struct(JSON_FIELDS)).alias("fields"),
        ).unnest("fields")
    except pl.exceptions.PolarsError:
        _raise_first_bad_line(objects, name)
        raise  # pragma: no cover - polars refused a line that Python's json accepts
    texts = frame.filter(~is_json).select("line_number", pl.col("line").alias("diagnostic"))
    merged = (
        pl.concat([texts, decoded], how="diagonal_relaxed").sort("line_number")
        if decoded.height
        else texts
    )
    if "direction" in merged.columns:
        asked = merged.select(_directions(pl.col("direction"), Direction.outbound)).to_series()
        bad = _bad_direction(asked)
        if bad is not None:
            number = merged["line_number"][bad[0]]
            raise UsageError(f"{name}:{number}: " + _BAD_DIRECTION.format(bad[1]))
    return merged.select(
        pl.col("diagnostic").fill_null("").alias("input"),
        *[
            pl.col(field) if field in merged.columns else pl.lit(None, pl.String).alias(field)
            for field in _OPTIONAL
        ],
    )


def _raise_first_bad_line(objects: pl.DataFrame, name: str) -> None:
    """Raise UsageError naming the first line that is not a JSON object (error path only)."""
    for number, line in objects.iter_rows():
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            shown = line.strip()
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise UsageError(f"{name}:{number}: not a JSON object: {shown}")


def explain_one(
    text: str,
    *,
    smtp_code: int | None = None,
    enhanced_code: str | None = None,
    provider: str | None = None,
    recipient: str | None = None,
    relay_host: str | None = None,
    direction: Direction = Direction.outbound,
    rules: Rules | None = None,
) -> dict[str, object]:
    """Explain one message (or bare code), with any context given apart, as a dict, by
    `rules` (default: the built-in rules), with the advice for mail going `direction`."""
    inputs = pl.DataFrame(
        {
            "input": [text],
            "smtp_code": [None if smtp_code is None else str(smtp_code)],
            "enhanced_code": [enhanced_code],
            "recipient": [recipient],
            "relay_host": [relay_host],
            "provider": [provider],
            "direction": [Direction(direction).value],
        },
        schema=dict.fromkeys(("input", *_OPTIONAL), pl.String),
    )
    return explain_frame(inputs, load_rules() if rules is None else rules).row(0, named=True)


#: Lines `explain_stream` classifies at a time. Each chunk is classified on its own, so a text
#: that comes back in a later chunk is worked out again, and each chunk has a fixed cost of
#: its own: on 300k bounce messages, chunks of 100k take about 20% less CPU than chunks of
#: 50k, for a peak of about 450 MiB instead of 340 (bench/explain_speed.py's messages).
LINES_PER_CHUNK = 100_000


def explain_stream(
    stream: TextIO,
    *,
    rules: Rules | None = None,
    direction: Direction = Direction.outbound,
    lines_per_chunk: int = LINES_PER_CHUNK,
) -> Iterator[str]:
    """Explain a stream of input lines in chunks; yield JSON lines, in input order. A JSON
    line's own `direction` wins over `direction`."""
    for answers in _explained_chunks(
        stream, rules=rules, direction=direction, lines_per_chunk=lines_per_chunk
    ):
        yield answers.write_ndjson()


def _write_answers(
    chunks: Iterable[pl.DataFrame],
    out: IO[bytes],
    *,
    rules: Rules | None,
    direction: Direction,
) -> None:
    """The answers to the inputs of `chunks` (`read_explain_lines` frames) as JSON lines on
    `out`, in order: the lines `explain_stream` yields, as UTF-8.

    Most of an answer's bytes are the texts of its rule and category (`_answer_texts`), and an
    answer's fields other than its input take few distinct combinations (706 in 100k answers
    to bounce messages): where the C helper is built, polars writes each combination once, and
    the helper writes each line as its input, escaped as polars escapes JSON, then its
    combination, into a buffer of `_WRITTEN_AT_ONCE` bytes that is written and used again
    (native/normalize.c, `answer_lines`). Without it, polars writes each chunk's
    `explain_frame` to `out` itself. The bytes are the same (tests/test_explain_stream.py).
    """
    rules = load_rules() if rules is None else rules
    fast = native.helper("normalize")
    for inputs in chunks:
        # what `out` holds goes first: polars may write to the file `out` is
        out.flush()
        if fast is None:
            # polars writing to the file is the cheapest way (a str would be encoded again, a
            # buffer of the chunk's 100 MB of JSON mapped afresh)
            explain_frame(inputs, rules, direction=direction).write_ndjson(out)
            continue
        classified, texts = _classified(inputs, rules, direction=direction)
        keyed = classified.with_columns(pl.col("_asked").alias("direction"))
        # each distinct combination of an answer's fields but its input, once (the codes, rule,
        # provider, wait and list: hundreds in a large input), with its texts
        # (grouped with the lines of each: the lines' combinations are put in place by
        # position, not joined back on the dozen columns)
        grouped = (
            keyed.with_row_index("_line")
            .group_by(_REST_KEY)
            .agg("_line")
            .collect()
            .with_row_index("_rest")
        )
        combinations = grouped.drop("_line")
        rests = (
            combinations.lazy()
            .join(
                texts(combinations.lazy()),
                on=_ANSWER_KEY,
                how="left",
                nulls_equal=True,
                maintain_order="left",
            )
            .select(_REST)
            .collect()
        )
        at = grouped.select("_rest", "_line").explode("_line")
        rest = pl.repeat(0, inputs.height, dtype=pl.UInt32, eager=True).scatter(
            at["_line"], at["_rest"]
        )
        rows = pl.DataFrame([classified.select("input").collect().to_series(), rest.alias("_rest")])
        _write_lines(fast, rows, rests, out)


#: The columns of an answer but its input, written once per distinct combination of the
#: classified columns among them (and of the direction asked for, which decides the advice).
_REST = EXPLAIN_COLUMNS[1:]
_REST_KEY = [*EXPLAIN_COLUMNS[1 : EXPLAIN_COLUMNS.index("meaning")], "blocklist", "_asked"]
#: The bytes `_write_answers` writes at once (more for a longer line): the memory of a few
#: rows, used again.
_WRITTEN_AT_ONCE = 1 << 20


def _write_lines(fast: ModuleType, rows: pl.DataFrame, rests: pl.DataFrame, out: IO[bytes]) -> None:
    """Write the answer lines of `rows` (`input`, and `_rest`: its row of `rests`) to `out`:
    each input as JSON, then the `_REST` columns of its row of `rests` as polars writes them
    (native/normalize.c's `answer_lines`): the bytes polars writes for the whole rows."""
    written = io.BytesIO()
    rests.write_ndjson(written)
    # `{"direction":...}` -> `,"direction":...}`: what follows an answer's input (a line
    # break is escaped inside a JSON string: each line is one object)
    ends = [b"," + line[1:] + b"\n" for line in written.getvalue().split(b"\n")[:-1]]
    buffer = bytearray(_WRITTEN_AT_ONCE)
    # (the helper reads the columns' Arrow arrays: one chunk each)
    inputs, index = rows["input"].rechunk(), rows["_rest"].cast(pl.UInt32).rechunk()
    line = 0
    while line < len(inputs):
        size, line = fast.answer_lines(inputs, ends, index, buffer, line)
        if size == 0:  # one line longer than the buffer: a buffer twice as long
            buffer = bytearray(2 * len(buffer))
            continue
        out.write(memoryview(buffer)[:size])


def explain_bytes(
    source: IO[bytes],
    out: IO[bytes],
    *,
    rules: Rules | None = None,
    direction: Direction = Direction.outbound,
    lines_per_chunk: int = LINES_PER_CHUNK,
) -> None:
    r"""`explain -`: the answers to the lines of `source` as JSON lines on `out`, flushed: the
    lines `explain_stream` yields for the text Python reads from `source` (`_write_answers`).
    Bytes that are not UTF-8 are read as U+FFFD; a line ends at ``\n``, ``\r\n`` or ``\r``,
    as Python reads text (`_lines_of`)."""
    _write_answers(_byte_chunks(source, lines_per_chunk), out, rules=rules, direction=direction)
    out.flush()


#: The bytes `explain_bytes` reads at a time (and then to the end of the line they end in):
#: about `LINES_PER_CHUNK` lines of bounce messages (100k of the speed bench's are 15.8 MB).
_READ_AT_ONCE = 16 << 20


def _byte_chunks(source: IO[bytes], lines_per_chunk: int) -> Iterator[pl.DataFrame]:
    """`_input_chunks` of the bytes of `source`: what `_READ_AT_ONCE` bytes (to the end of a
    line) hold, cut into pieces of at most `lines_per_chunk` lines of the same size.

    The lines are cut by polars from the bytes read (`_lines_of`): no Python string a line.
    """
    offset = 0
    while block := source.read(_READ_AT_ONCE):
        if not block.endswith(b"\n"):
            block += source.readline()
        lines = _lines_of(block)
        del block  # (the frame holds its own copy)
        pieces = -(-lines.height // lines_per_chunk)
        size = -(-lines.height // pieces) if pieces else 0
        for start in range(0, lines.height, size or 1):
            piece = lines.slice(start, size)
            try:
                inputs = _inputs_of(piece, "<stdin>", offset + 1)
            finally:
                offset += piece.height
            if inputs.height:
                yield inputs


def _lines_of(block: bytes) -> pl.DataFrame:
    r"""The lines of `block` (whole lines of UTF-8 text) in a `line` column, without their
    ends, as Python's text reading cuts and decodes them (`io.TextIOWrapper` with
    ``errors="replace"``): bytes that are not UTF-8 read as U+FFFD, and ``\r\n`` and a lone
    ``\r`` end a line as ``\n`` does.

    polars cuts lines at ``\n`` (dropping a ``\r`` before it) and refuses bytes that are not
    UTF-8: a block that holds a ``\r`` or such bytes is decoded by Python first, and its
    line ends made ``\n``.
    """
    if b"\r" not in block:
        try:
            return pl.read_lines(block).rechunk()
        except pl.exceptions.PolarsError:  # not UTF-8
            pass
    text = block.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return pl.read_lines(text.encode("utf-8")).rechunk()


def _input_chunks(stream: TextIO, lines_per_chunk: int) -> Iterator[pl.DataFrame]:
    """`read_explain_lines` of each chunk of `lines_per_chunk` lines that holds an input."""
    offset = 0
    while True:
        lines = list(islice(stream, lines_per_chunk))
        if not lines:
            return
        try:
            inputs = read_explain_lines(lines, name="<stdin>", first_line=offset + 1)
        finally:
            offset += len(lines)
        del lines  # (the frame holds the texts: the strings go before the classification)
        if inputs.height:
            yield inputs


def _explained_chunks(
    stream: TextIO, *, rules: Rules | None, direction: Direction, lines_per_chunk: int
) -> Iterator[pl.DataFrame]:
    """`explain_frame` of each chunk of `lines_per_chunk` lines that holds an input."""
    rules = load_rules() if rules is None else rules
    for inputs in _input_chunks(stream, lines_per_chunk):
        yield explain_frame(inputs, rules, direction=direction)


_LABELS = (
    ("category", "category"),
    ("category_group", "group"),
    ("bounce", "bounce type"),
    ("provider", "provider"),
    ("codes", "codes"),
    ("wait", "retry after"),
    ("rule_id", "rule"),
    ("meaning", "meaning"),
    ("direction", "advice for"),
    ("solution", "solution"),
    ("advice", "advice"),
    ("blocklist_named", "blocklist"),
    ("blocklist_lookup", "look up"),
    ("blocklist_note", "list note"),
)


#: What the advice is for, in the words of a person's explanation.
_FOR = {
    Direction.outbound.value: "mail we sent (outbound: the receiver refused us)",
    Direction.inbound.value: "mail sent to us (inbound: our server refused or received it)",
}


def _wait(seconds: object) -> str | None:
    """`5100` -> ``5100 s (1 h 25 min)``: the wait the server asked for, for a person."""
    if not isinstance(seconds, int):
        return None
    parts, left = [], seconds
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if left >= size:
            parts.append(f"{left // size} {unit}")
            left %= size
    shown = " ".join(parts) or "0 s"
    return f"{seconds} s" if shown == f"{seconds} s" else f"{seconds} s ({shown})"


def render_explanation(result: dict[str, object], *, width: int = 100) -> str:
    """An explanation for a person: one labelled line each, long text wrapped."""
    permanent = result.get("permanent")
    retry = {True: "permanent", False: "temporary (retried)"}.get(permanent)  # type: ignore[call-overload]
    bounce = ", ".join(str(part) for part in (result.get("bounce_type"), retry) if part)
    codes = " ".join(
        str(result[key]) for key in ("smtp_code", "enhanced_code", "hex_code") if result.get(key)
    )
    named = None
    if result.get("blocklist"):
        named = f"{result['blocklist']}: {result.get('blocklist_label') or result['blocklist']}"
    values = {
        **result,
        "bounce": bounce or "-",
        "codes": codes or "-",
        "wait": _wait(result.get("retry_after")),
        "blocklist_named": named,
        "direction": _FOR.get(str(result.get("direction"))),
    }
    if values.get("advice") == values.get("solution"):
        values["advice"] = None
    out = []
    for key, label in _LABELS:
        value = values.get(key)
        if value in (None, ""):
            continue
        out.append(
            textwrap.fill(
                printable(str(value)),
                width=width,
                initial_indent=f"{label + ':':<14}",
                subsequent_indent=" " * 14,
            )
        )
    return "\n".join(out) + "\n"
