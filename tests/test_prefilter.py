"""The pattern prefilter: the literals every match of a regex contains, and when finding one is
finding a match."""

from __future__ import annotations

import pytest

from bounce_analyzer.prefilter import is_plain, required_literals

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
