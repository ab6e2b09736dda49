"""The pattern prefilter: the literals every match of a regex contains, and when finding one is
finding a match."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bounce_analyzer.explain import explain_frame
from bounce_analyzer.prefilter import (
    CASE_TRAPS,
    is_plain,
    lowercase_equivalent,
    required_literals,
)
from bounce_analyzer.rules import load_rules

DIAGNOSTICS = Path(__file__).parent / "data" / "diagnostics"

# regex -> required literals (None: unknown, the regex is tried on every text), plain
LITERALS = [
    ("user unknown", {"user unknown"}, True),
    ("over quota|quota exceeded", {"over quota", "quota exceeded"}, True),
    (r"5\.7\.1", {"5.7.1"}, True),
    ("User Unknown", {"user unknown"}, True),
    # an optional group is left out; the longest sure literal of each branch is kept
    ("account (is )?disabled|mailbox disabled", {"account ", "mailbox disabled"}, False),
    ("no such (user|mailbox)", {"no such "}, False),
    ("rate limit(ed)?", {"rate limit"}, False),
    ("[a-z]+ full", {" full"}, False),
    ("mailbox full.*later", {"mailbox full"}, False),
    (r"yahoodns\.net$", {"yahoodns.net"}, False),
    ("(?i)blocked", {"blocked"}, False),
    # a branch that needs a character no ASCII text holds needs no literal (the engine tries
    # every pattern on texts that are not ASCII); the Kelvin sign matches an ASCII k
    ("annuaire domino|ディレクトリのリストにありません", {"annuaire domino"}, False),
    ("\u212aelvin|abcd", {"elvin", "abcd"}, False),
    # unknown: a branch too short to look for, an escape or a mode the analysis does not follow
    ("ab|cde", None, False),
    (r"\x41bc", None, False),
    ("(?x)a b c", None, False),
    (r"^mx[0-9]+\.y[a-z]+\.", None, False),
]


@pytest.mark.parametrize(("regex", "literals", "plain"), LITERALS)
def test_required_literals(regex: str, literals: set[str] | None, plain: bool) -> None:
    assert required_literals(regex) == (None if literals is None else frozenset(literals))
    assert is_plain(regex) is plain


# regex -> whether `(?i)regex` on a text can be replaced by `regex` on its lower case
LOWERCASE = [
    ("user unknown", True),
    (r"\bno such (user|mailbox)\b", True),
    (r"[^a-z]+quota", True),
    (r"5\.7\.1|[0-9]{3}-\d", True),
    (r"[\w.-]+@", True),
    ("[]a]|[-a]|[a-]", True),
    # upper-case letters, or a range holding some that its lower case does not
    ("User Unknown", False),
    ("[ -a]", False),
    (r"[\.-z]", False),
    # escapes and classes that read case, modes, set operations, other scripts
    (r"\x41bc", False),
    (r"\p{Lu}", False),
    ("[[:upper:]]", False),
    ("(?-i)abc", False),
    ("(?P<name>abc)", False),
    ("[a-z--b]", False),
    ("ディレクトリ", False),
    ("[a-z", False),
]


@pytest.mark.parametrize(("regex", "equivalent"), LOWERCASE)
def test_lowercase_equivalent(regex: str, equivalent: bool) -> None:
    assert lowercase_equivalent(regex) is equivalent


def test_lowercase_equivalent_patterns_match_as_before() -> None:
    """Every built-in pattern the engine runs on lower-case texts matches there exactly where
    it matches the text case-insensitively, on real replies and on texts in other scripts and
    cases (the characters of CASE_TRAPS aside, which the engine matches as written)."""
    rules = load_rules()
    regexes = [r for r in rules.patterns["regex"].to_list() if lowercase_equivalent(r)]
    assert len(regexes) > 0.9 * rules.patterns.height
    texts = [
        text
        for path in sorted(DIAGNOSTICS.glob("*.tsv"))
        for text in pl.read_csv(
            path, separator="\t", quote_char=None, infer_schema=False, columns=["diagnostic"]
        )["diagnostic"].drop_nulls()
    ]
    texts += [text.upper() for text in texts[:300]] + [
        "550 USER UNKNOWN ΣΊΣΥΦΟΣ straße STRASSE ẞ ı İstanbul",
        "Mailbox unavailable: ÜBER QUOTA, Disk Space Limit Exceeded µ μ Μ",
        "NO SUCH USER ǅ ǆ Ǆ ﬀ Ω Ω",
    ]
    frame = pl.DataFrame({"text": texts}).filter(~pl.col("text").str.contains_any(list(CASE_TRAPS)))
    for regex in regexes:
        as_before = frame.select(pl.col("text").str.contains("(?i)" + regex)).to_series()
        lowered = frame.select(pl.col("text").str.to_lowercase().str.contains(regex)).to_series()
        assert as_before.equals(lowered), regex


def test_case_traps_are_matched_as_written() -> None:
    """A long s, a Kelvin sign or a dotted capital I keeps a text on the case-insensitive
    regexes: `(?i)user` matches `uſer`, which lower-cases to itself."""
    answers = explain_frame(
        pl.DataFrame({"input": ["550 uſer unknown", "550 Mailbox unavailable: \u212aEY"]}),
        load_rules(),
    )
    assert answers["rule_id"].to_list() == [
        "pattern:generic.user_unknown.user_unknown",
        "pattern:generic.user_unknown.mailbox_unavailable",
    ]
