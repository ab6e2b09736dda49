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
from bounce_analyzer.cli import app
from bounce_analyzer.explain import explain_frame, explain_stream, write_explanations
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
    out = io.BytesIO()
    write_explanations(io.StringIO("\n".join(lines) + "\n"), out, rules=rules, **options)
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
