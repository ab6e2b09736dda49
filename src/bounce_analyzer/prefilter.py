"""The pattern prefilter: the literal text every match of a regex must contain.

The classification engine has every pattern of the rules (and every relay-host pattern of the
providers) to try on thousands of distinct texts. It looks for the required literals of all of
them at once (Aho-Corasick, polars' `extract_many`) and tries each regex only on the texts that
hold one of its literals; a regex whose literals this module cannot tell is tried on every text.
The analysis reads the regex text itself; syntax it does not follow makes it answer "unknown"
(None), never a wrong set.
"""

from __future__ import annotations

import re

#: Shorter literals select too many messages to be worth looking for.
_MIN_LITERAL = 3
_PLAIN = r"(?:[^\\|()\[\]{}.*+?^$]|\\[^A-Za-z0-9<>])+"
_PLAIN_ALTERNATION = re.compile(rf"{_PLAIN}(?:\|{_PLAIN})*")


class _Unsupported(Exception):
    """Regex syntax the literal analysis does not follow (the pattern is then always tried)."""


def required_literals(regex: str) -> frozenset[str] | None:
    """Lower-cased literals one of which every match of `regex` in an ASCII text contains, or
    None if unknown.

    ``account (is )?disabled|mailbox disabled`` gives ``{"account ", "mailbox disabled"}``.
    A branch that needs a character no ASCII text holds, whatever the case
    (``ディレクトリのリストにありません``), needs no literal: it never matches a text the
    literals are looked for in (the engine tries every pattern on the other texts).
    Only plain characters count; a construct the analysis does not follow (escapes such as
    ``\\x41`` or ``\\pL``, nested classes, verbose mode) gives None, which is always safe: the
    pattern is then tried on every message.
    """
    try:
        literals, end = _alternation(regex, 0)
    except _Unsupported:
        return None
    return literals if end == len(regex) else None


def is_plain(regex: str) -> bool:
    """Whether finding one of the `required_literals` of `regex` in a text is finding a match:
    ASCII literal text and `|` only, each branch long enough to be looked for
    (``over quota|quota exceeded``)."""
    return (
        regex.isascii()
        and _PLAIN_ALTERNATION.fullmatch(regex) is not None
        and required_literals(regex) is not None
    )


def _alternation(regex: str, at: int) -> tuple[frozenset[str] | None, int]:
    branches = []
    literals, at = _concatenation(regex, at)
    branches.append(literals)
    while at < len(regex) and regex[at] == "|":
        literals, at = _concatenation(regex, at + 1)
        branches.append(literals)
    if any(branch is None for branch in branches):
        return None, at
    return frozenset().union(*(branch for branch in branches if branch is not None)), at


def _concatenation(regex: str, at: int) -> tuple[frozenset[str] | None, int]:
    found: list[frozenset[str]] = []
    run: list[str] = []

    def close_run() -> None:
        if len(run) >= _MIN_LITERAL:
            found.append(frozenset(["".join(run)]))
        run.clear()

    never_ascii = False  # the branch needs a character that no ASCII text holds
    while at < len(regex) and regex[at] not in "|)":
        char = regex[at]
        literal: str | None = None
        inner: frozenset[str] | None = None
        if char == "(":
            inner, at = _group(regex, at)
        elif char == "[":
            at = _skip_class(regex, at)
        elif char == "\\":
            literal, at = _escape(regex, at)
        elif char in "*+?{":
            raise _Unsupported(regex)
        else:
            literal = None if char in ".^$" else char
            at += 1
        least, at = _quantifier(regex, at)
        if least is None and literal is not None and literal.isascii():
            run.append(literal.lower())
            continue
        close_run()
        needed = least is None or least >= 1
        if needed and (inner == frozenset() or (literal is not None and _never_ascii(literal))):
            never_ascii = True
        if inner is not None and needed:
            found.append(inner)
    close_run()
    if never_ascii:
        return frozenset(), at
    usable = [option for option in found if option and min(map(len, option)) >= _MIN_LITERAL]
    if not usable:
        return None, at
    # a literal the MTA's wrapping holds is found in most texts, and so spares no regex run
    return max(
        usable,
        key=lambda option: (not _in_wrapping(option), min(map(len, option)), -len(option)),
    ), at


#: What Postfix and Exim write around every remote reply, lower-cased: a literal found in it
#: is in nearly every logged text (``reply`` of ``auto-reply``).
_WRAPPING = (
    "host mx.example[192.0.2.1] said: ",
    "host mx.example[192.0.2.1] refused to talk to me: ",
    " (in reply to rcpt to command)",
    " (in reply to mail from command)",
    " (in reply to end of data command)",
    "smtp error from remote mail server after rcpt to:<a@b.example>: ",
    "smtp error from remote mail server after mail from:<a@b.example> size=1234: ",
    "smtp error from remote mail server after end of data: ",
)


def _in_wrapping(option: frozenset[str]) -> bool:
    """Whether one of the literals `option` is made of is in `_WRAPPING`."""
    return any(literal in wrapping for literal in option for wrapping in _WRAPPING)


def _never_ascii(char: str) -> bool:
    """Whether no ASCII character matches `char` without regard to case (``K``, the Kelvin
    sign, matches ``k``)."""
    return not any(
        folded.isascii() or any(part.isascii() for part in folded)
        for folded in (char, char.lower(), char.upper(), char.casefold())
    )


def _group(regex: str, at: int) -> tuple[frozenset[str] | None, int]:
    inside = at + 1
    if regex.startswith("(?", at):
        named = re.match(r"\(\?P?<[A-Za-z_][A-Za-z0-9_]*>", regex[at:])
        flags = re.match(r"\(\?([imsuUxR-]*)([:)])", regex[at:])
        if named is not None:
            inside = at + named.end()
        elif flags is not None and "x" not in flags.group(1):
            if flags.group(2) == ")":
                return None, at + flags.end()
            inside = at + flags.end()
        else:
            raise _Unsupported(regex)
    literals, end = _alternation(regex, inside)
    if end >= len(regex) or regex[end] != ")":
        raise _Unsupported(regex)
    return literals, end + 1


def _skip_class(regex: str, at: int) -> int:
    at += 1
    if regex.startswith("^", at):
        at += 1
    if regex.startswith("]", at):
        at += 1
    while at < len(regex):
        if regex[at] == "\\":
            at += 2
        elif regex[at] == "[":
            raise _Unsupported(regex)
        elif regex[at] == "]":
            return at + 1
        else:
            at += 1
    raise _Unsupported(regex)


def _escape(regex: str, at: int) -> tuple[str | None, int]:
    if at + 1 >= len(regex):
        raise _Unsupported(regex)
    char = regex[at + 1]
    if char in "bB" and regex.startswith("{", at + 2):
        raise _Unsupported(regex)
    if char in "dDsSwWbBAz<>ntrfv":
        return None, at + 2
    if char.isascii() and not char.isalnum():
        return char, at + 2
    raise _Unsupported(regex)


def _quantifier(regex: str, at: int) -> tuple[int | None, int]:
    if at >= len(regex) or regex[at] not in "*+?{":
        return None, at
    if regex[at] == "{":
        counted = re.match(r"\{(\d+)(?:,\d*)?\}", regex[at:])
        if counted is None:
            raise _Unsupported(regex)
        least, at = int(counted.group(1)), at + counted.end()
    else:
        least, at = (1 if regex[at] == "+" else 0), at + 1
    if regex.startswith("?", at):
        at += 1
    return least, at


#: Characters a text may hold that case-insensitive matching and lower-casing treat apart: the
#: long s and the Kelvin sign fold to ASCII letters (``(?i)s`` matches ``ſ``, whose lower case
#: is itself), and the lower case of the dotted capital I is two characters.
CASE_TRAPS = ("\u017f", "\u212a", "\u0130")

#: The escapes `lowercase_equivalent` accepts: they read no case (word boundaries and the
#: Perl classes, which case folding maps onto themselves).
_CASELESS_ESCAPES = frozenset("bBdDsSwW")


def lowercase_equivalent(regex: str) -> bool:
    """Whether ``(?i)`` + `regex` matches a text that holds none of `CASE_TRAPS` exactly where
    `regex` matches the text's lower case.

    Compiling a regex without ``(?i)`` takes about half the time (the classification compiles
    a few hundred at each start). True for ASCII regexes without upper-case letters, whose
    escapes are ``\\b \\B \\d \\D \\s \\S \\w \\W`` or escaped punctuation, whose groups are
    plain or ``(?:``, and whose classes hold no range but of lower-case letters or of digits
    (``[^a-z]``, ``[0-9]``; not ``[ -a]``, which holds upper-case letters and only one lower-case
    one), no POSIX class, no nested class and no set operation. Whatever else answers False,
    which is always safe: the regex is then matched case-insensitively against the text as
    written.
    """
    if not regex.isascii():
        return False
    at, in_class, class_start = 0, False, 0
    previous: str | None = None  # the last character of a class, if a range may start at it
    while at < len(regex):
        char = regex[at]
        if char == "\\":
            escaped = regex[at + 1 : at + 2]
            caseless = escaped in _CASELESS_ESCAPES and not (in_class and escaped in "bB")
            if not (caseless or (escaped and not escaped.isalnum())):
                return False
            # (a range from an escape, `[\.-z]`, is no range of letters or digits)
            at, previous = at + 2, "\\"
            continue
        if char.isupper():
            return False
        if in_class:
            if char == "[" or regex.startswith(("--", "&&", "~~"), at):
                return False
            if char == "]" and at > class_start:
                in_class = False
            elif char == "-" and previous is not None and regex[at + 1 : at + 2] not in ("", "]"):
                end = regex[at + 1]
                same_kind = (previous.islower() and end.islower()) or (
                    previous.isdigit() and end.isdigit()
                )
                if not same_kind:
                    return False
                at, previous = at + 2, None
                continue
            previous = char
        elif char == "[":
            in_class, previous = True, None
            # a leading ^ negates, and a ] right after the opening (or after ^) is literal
            class_start = at + (2 if regex.startswith("^", at + 1) else 1)
            at = class_start
            continue
        elif char == "(" and regex.startswith("(?", at) and not regex.startswith("(?:", at):
            return False
        at += 1
    return not in_class
