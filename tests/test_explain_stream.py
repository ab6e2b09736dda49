"""`explain -` streams its answers in chunks (issue 14, speed): the chunk size, the way they
are written (bytes for the command, str for library callers) and the line a text is on
change no answer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest

from _cli import runner
from bounce_analyzer import explain, native
from bounce_analyzer.cli import app
from bounce_analyzer.errors import UsageError
from bounce_analyzer.explain import explain_bytes, explain_frame, explain_stream, read_explain_lines
from bounce_analyzer.generate.cli import main as generate
from bounce_analyzer.rules import Rules, load_rules

LABELLED = Path(__file__).parent / "data" / "diagnostics" / "messages.tsv"


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def _lines() -> list[str]:
    """The labelled messages (real texts, tests/data/diagnostics/README.md), plain and as JSON
    lines with their recipient and relay host, three times over, with blank lines between."""
    rows = pl.read_csv(LABELLED, separator="\t", quote_char=None, infer_schema=False)
    plain = [" ".join(text.split()) for text in rows["diagnostic"].drop_nulls()]
    framed = [
        json.dumps(
            {
                "diagnostic": row["diagnostic"],
                "recipient": row["recipient"],
                "relay_host": row["relay_host"],
                "direction": "inbound" if number % 5 == 0 else None,
            }
        )
        for number, row in enumerate(rows.iter_rows(named=True))
    ]
    once = [*plain, "", *framed]
    return once * 3


def _written(lines: list[str], rules: Rules, **options: int) -> bytes:
    """What `explain -` writes for `lines` (`explain_bytes`)."""
    out = io.BytesIO()
    data = ("\n".join(lines) + "\n").encode("utf-8")
    explain_bytes(io.BytesIO(data), out, rules=rules, **options)
    return out.getvalue()


def test_chunks_change_no_answer(rules: Rules) -> None:
    lines = _lines()
    whole = _written(lines, rules)
    assert _written(lines, rules, lines_per_chunk=7) == whole
    assert _written(lines, rules, lines_per_chunk=len(lines) - 1) == whole
    answers = [json.loads(line) for line in whole.decode("utf-8").splitlines()]
    assert len(answers) == len(lines) - 3  # blank lines give no answer
    # one answer per input, in order; a repeated text gets the same answer each time
    third = len(answers) // 3
    assert answers[:third] == answers[third : 2 * third] == answers[2 * third :]
    assert answers[0]["input"] == " ".join(lines[0].split())


def test_the_stream_and_the_writer_give_the_same_lines(rules: Rules) -> None:
    lines = _lines()
    streamed = "".join(
        explain_stream(io.StringIO("\n".join(lines) + "\n"), rules=rules, lines_per_chunk=100)
    )
    assert streamed.encode("utf-8") == _written(lines, rules)


def test_the_written_lines_are_explain_frame_answers(rules: Rules) -> None:
    texts = ["550-5.1.1 The email account that you tried to reach does not exist", "421"]
    answers = _written(texts, rules)
    frame = explain_frame(pl.DataFrame({"input": texts}), rules)
    assert [json.loads(line) for line in answers.decode("utf-8").splitlines()] == frame.to_dicts()


def test_explain_stdin_writes_what_the_library_writes(rules: Rules) -> None:
    lines = _lines()
    result = runner.invoke(app, ["explain", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == _written(lines, rules)


def _reference(lines: list[str], rules: Rules, lines_per_chunk: int) -> bytes:
    """What polars writes for the answers of `lines`, whole rows at once, chunk by chunk (the
    reference of the writer that joins each answer from its two halves)."""
    out = io.BytesIO()
    for start in range(0, len(lines), lines_per_chunk):
        chunk = read_explain_lines(lines[start : start + lines_per_chunk])
        if chunk.height:
            explain_frame(chunk, rules).write_ndjson(out)
    return out.getvalue()


def _generated_lines(tmp_path: Path) -> list[str]:
    """The lines of small generated Postfix and Exim logs: the texts servers write, with
    their addresses, IPs and ids, inside the lines the MTAs log."""
    found = []
    for seed, source in enumerate(("postfix", "exim")):
        log = tmp_path / f"{source}.log"
        generate([source, "--lines", "3000", "--seed", str(seed), "-o", str(log)])
        found += log.read_text(encoding="utf-8").splitlines()
    return found


def test_the_joined_halves_are_the_rows_polars_writes(rules: Rules, tmp_path: Path) -> None:
    """Where the C helper joins each answer line from the part polars writes per row and the
    part it writes once per rule and category, the bytes are those of the whole rows: on
    labelled and generated texts, JSON inputs with their own fields and direction, texts JSON
    must escape (quotes, backslashes, control characters, U+2028, non-ASCII), a line longer
    than the writer's buffer, and chunks of a few lines (slices of a chunk and chunks alike)."""
    if native.helper("normalize") is None:
        pytest.skip("the C helper is not built here (polars writes the answers itself)")
    long_line = "550 5.1.1 " + 'no such user \\ "x" ' * 60_000
    lines = [
        *_lines(),
        *_generated_lines(tmp_path),
        '550 5.7.1 "quoted" \\ back\tslash \x01\x1f control \u2028 sep',
        "421 4.7.0 Überlastung, später erneut versuchen / 稍后再试",
        json.dumps({"diagnostic": "452 4.2.2 mailbox full", "smtp_code": "452",
                    "enhanced_code": "4.2.2", "provider": "gmail", "direction": "inbound"}),
        json.dumps({"diagnostic": "0x800CCC0F", "recipient": "<a@contoso.onmicrosoft.com>"}),
        long_line,
        "5.7.26",
    ]  # fmt: skip
    whole = _reference(lines, rules, len(lines))
    assert _written(lines, rules) == whole
    assert _written(lines, rules, lines_per_chunk=333) == _reference(lines, rules, 333)
    # a head line longer than the buffer of joined answers (1 MiB) makes it grow
    assert len(long_line) > 1 << 20
    assert whole.count(b"\n") == len([line for line in lines if line.strip()])


def _read_as_python_reads(data: bytes, rules: Rules) -> bytes:
    """The answers to `data` with its lines cut and decoded by Python's text reading
    (`explain_stream`, the reference of `explain_bytes`, which has polars cut them)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace")
    return "".join(explain_stream(text, rules=rules)).encode("utf-8")


def test_the_bytes_read_are_the_lines_python_reads(
    rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`explain -` has polars cut its input's bytes into lines (no Python string a line): the
    lines and their text are those Python's text reading makes, whatever ends the lines
    (``\\n``, ``\\r\\n``, a lone ``\\r``), bytes that are not UTF-8 (read as U+FFFD, also a
    character cut short by the end of the input), a byte-order mark, blank lines and a last
    line without its end; and a read that ends inside a line, or holds more lines than a
    chunk, changes no answer."""
    lines = [*_lines()[:40], "550 5.1.1 Benutzer unbekannt: Müller", "421 稍后再试"]
    plain = "\n".join(lines).encode("utf-8") + b"\n"
    inputs = {
        "plain": plain,
        "crlf": plain.replace(b"\n", b"\r\n"),
        "lone cr and crlf": plain.replace(b"\n", b"\r", 7).replace(b"\n", b"\r\n", 5),
        "not utf-8": b"550 5.1.1 user \xff unknown\n\xc3\n" + plain + b"421 \xe7\xa8",
        "bom and blanks": b"\xef\xbb\xbf" + plain.replace(b"\n", b"\n\n  \n", 3),
        "no last end": plain.rstrip(b"\n"),
    }
    for name, data in inputs.items():
        expected = _read_as_python_reads(data, rules)
        assert expected.count(b"\n") >= len(lines), name
        out = io.BytesIO()
        explain_bytes(io.BytesIO(data), out, rules=rules)
        assert out.getvalue() == expected, name
    # reads of 100 bytes, most ending inside a line (and inside a character), chunks of 3
    monkeypatch.setattr(explain, "_READ_AT_ONCE", 100)
    for name, data in inputs.items():
        out = io.BytesIO()
        explain_bytes(io.BytesIO(data), out, rules=rules, lines_per_chunk=3)
        assert out.getvalue() == _read_as_python_reads(data, rules), name


def test_the_bytes_read_name_the_line_of_an_error(
    rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line that is not a JSON object is named by its number, counted over blank lines and
    over the reads and chunks before it, as Python's reading counts it (`\\r` ends a line)."""
    data = b"550 5.1.1 user unknown\r\n\n421 try later\r" * 40 + b'{"diagnostic": 1\n'
    monkeypatch.setattr(explain, "_READ_AT_ONCE", 64)
    with pytest.raises(UsageError, match=r"^<stdin>:121: not a JSON object: "):
        explain_bytes(io.BytesIO(data), io.BytesIO(), rules=rules, lines_per_chunk=7)
