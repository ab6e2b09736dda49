"""explain's library: input lines (text or JSON) in, decisions with their reasons out."""

from __future__ import annotations

import polars as pl
import pytest

from bounce_analyzer.errors import UsageError
from bounce_analyzer.explain import EXPLAIN_COLUMNS, explain_frame, read_explain_lines
from bounce_analyzer.rules import Rules, builtin_rules_dir, load_rules

REAL = ["categories.toml", "providers.toml", "patterns.toml", "codes/tables.toml"]
pytestmark = pytest.mark.skipif(
    not all((builtin_rules_dir() / name).is_file() for name in REAL),
    reason="built-in rules not all written yet",
)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def _row(rules: Rules, rule_id: str) -> dict[str, object]:
    return rules.codes.filter(pl.col("rule_id") == rule_id).row(0, named=True)


def test_read_explain_lines_text_and_json() -> None:
    frame = read_explain_lines(
        [
            "550 5.1.1 user unknown\n",
            "",
            '  {"diagnostic": "452 mailbox full", "smtp_code": 452, "recipient": "a@b.example"}',
            '{"diagnostic": "blocked", "provider": "google", '
            '"relay_host": "mx.google.com", "x": 0}',
            '{"enhanced_code": "5.7.26", "direction": "inbound"}',
        ]
    )
    assert frame.columns == [
        "input",
        "smtp_code",
        "enhanced_code",
        "recipient",
        "relay_host",
        "provider",
        "direction",
    ]
    assert frame.rows() == [
        ("550 5.1.1 user unknown", None, None, None, None, None, None),
        ("452 mailbox full", "452", None, "a@b.example", None, None, None),
        ("blocked", None, None, None, "mx.google.com", "google", None),
        ("", None, "5.7.26", None, None, None, "inbound"),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["ok", '{"diagnostic": '], '<stdin>:2: not a JSON object: {"diagnostic":'),
        (["{nope}"], "<stdin>:1: not a JSON object: {nope}"),
        (["", "", "{" + "x" * 80], "<stdin>:3: not a JSON object: {" + "x" * 56 + "..."),
    ],
)
def test_read_explain_lines_bad_json(lines: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        read_explain_lines(lines)
    assert str(caught.value) == message


def test_read_explain_lines_names_the_file() -> None:
    with pytest.raises(UsageError, match=r"^bounces.txt:1: not a JSON object: \{$"):
        read_explain_lines(["{"], name="bounces.txt")


def test_bare_enhanced_code(rules: Rules) -> None:
    result = explain_frame(pl.DataFrame({"input": ["5.7.26"]}), rules).row(0, named=True)
    assert list(result) == list(EXPLAIN_COLUMNS)
    assert (result["smtp_code"], result["enhanced_code"], result["permanent"]) == (
        None,
        "5.7.26",
        True,
    )
    assert result["rule_id"].startswith("enhanced:")
    row = _row(rules, result["rule_id"])
    assert (row["enhanced_code"], row["category"]) == ("X.7.26", result["category"])
    assert (result["meaning"], result["solution"]) == (row["meaning"], row["solution"])


def test_bare_hex_code_uses_the_outlook_table(rules: Rules) -> None:
    result = explain_frame(pl.DataFrame({"input": ["0x800CCC0F"]}), rules).row(0, named=True)
    row = rules.codes.filter(pl.col("hex_code") == "0x800CCC0F").row(0, named=True)
    assert result["hex_code"] == "0x800CCC0F"
    assert result["meaning"] == row["meaning"]
    assert result["solution"] == row["solution"]


def test_bare_reply_code(rules: Rules) -> None:
    result = explain_frame(pl.DataFrame({"input": ["421"]}), rules).row(0, named=True)
    row = _row(rules, "reply:421")
    assert (result["smtp_code"], result["rule_id"], result["category"]) == (
        421,
        "reply:421",
        row["category"],
    )
    assert (result["permanent"], result["meaning"]) == (False, row["meaning"])


def test_pattern_answer_uses_the_category_text(rules: Rules) -> None:
    pattern = rules.patterns.row(0, named=True)
    result = explain_frame(pl.DataFrame({"input": [pattern["example"]]}), rules).row(0, named=True)
    category = rules.categories.filter(pl.col("category") == result["category"]).row(0, named=True)
    if result["rule_id"].startswith("pattern:"):
        assert result["meaning"] == category["description"]
        assert result["solution"] == category["advice"]
    assert (result["description"], result["advice"]) == (
        category["description"],
        category["advice"],
    )


def test_given_fields_are_used(rules: Rules) -> None:
    inputs = pl.DataFrame(
        {
            "input": ["mailbox unavailable", "mailbox unavailable", "x", "x"],
            "smtp_code": ["550", None, None, None],
            "enhanced_code": [None, None, None, None],
            "recipient": [None, None, "someone@gmail.com", "outlook.com"],
            "relay_host": [None, None, None, None],
            "provider": [None, None, None, "yahoo"],
        }
    )
    result = explain_frame(inputs, rules).select("smtp_code", "provider", "rule_id").rows()
    assert result[0][:2] == (550, "other")
    # no code given or found: the words decide, a pattern for 5xx replies included
    assert result[1] == (None, "other", "pattern:generic.user_unknown.mailbox_unavailable")
    assert [row[1] for row in result[2:]] == ["google", "yahoo"]


def test_empty_input(rules: Rules) -> None:
    result = explain_frame(pl.DataFrame({"input": []}, schema={"input": pl.String}), rules)
    assert result.columns == list(EXPLAIN_COLUMNS)
    assert result.height == 0
