"""How long a server asks us to wait before trying again, from its own words, in seconds.

``try again in 1 hour(s) 25 minute(s)`` (GMX) -> 5100, ``please try again 15min later``
(NetEase) -> 900, ``Greylisted for 300 seconds`` (postgrey with a greylist text that says
it), ``please retry in 60 s``, ``try again after 300 seconds``, ``wait 10 minutes``. A text
that says "later" without a figure (``Try again later``, ``please come back later``) gets
null, and so does a figure that is not a wait: a retry period (``will be retried for 2
days``), an age (``unable to deliver in 840 minutes``).

A wait is a figure with a unit (s, sec, second(s), min, minute(s), h, hr, hour(s), d,
day(s); ``hour(s)`` as GMX writes it), or several joined by spaces, commas or ``and``,
right after words that ask for a wait: try / send / come back / check back (again), retry
or retried (in, after), resend, or wait, greylisted, blocked or throttled (for). Not
"deferred for" or "delayed for": those say how long a message has waited already. The
figures are read from the original text: the masking of the engine's normalized text turns
numbers into placeholders. Each distinct text is read once, with a few regular expressions
over the whole column (no Python step per text).
"""

from __future__ import annotations

import polars as pl

_UNITS = {
    "second": r"seconds?|secs?|s",
    "minute": r"minutes?|mins?|m",
    "hour": r"hours?|hrs?|h",
    "day": r"days?|d",
}
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

#: One figure and its unit: `15min`, `1 hour(s)`, `300 seconds`, `60 s`.
_PART = r"\d+(?:\.\d+)?\s*(?:" + "|".join(_UNITS.values()) + r")(?:\(s\)|\b)"

#: Words that ask for a wait, and the words that may stand between them and the figure.
_ASK = (
    r"(?:(?:try|send|come\s+back|check\s+back)(?:\s+again)?|retr(?:y|ied)|resend)"
    r"(?:\s+(?:again|in|after|at\s+least|another|about|approximately))*"
    r"|(?:wait|greylisted|graylisted|blocked|throttled)"
    r"(?:\s+(?:for|at\s+least|another|about|approximately))+"
    r"|wait"
)

#: The wait a text asks for: the figures after the asking words (group 1).
WAIT = r"(?i)\b(?:" + _ASK + r")\s*(" + _PART + r"(?:(?:\s*,\s*|\s+and\s+|\s+)" + _PART + r")*)"


def _seconds(span: pl.Expr) -> pl.Expr:
    """The seconds of a span of figures and units (null when there is none)."""
    parts = [
        span.str.extract(r"(?i)(\d+(?:\.\d+)?)\s*(?:" + pattern + r")(?:\(s\)|\b)")
        .cast(pl.Float64)
        .mul(_SECONDS[unit])
        for unit, pattern in _UNITS.items()
    ]
    total = pl.sum_horizontal(parts)  # nulls count as 0
    return pl.when(span.is_not_null()).then(total.round(0).cast(pl.Int32))


def _span(text: pl.Expr) -> pl.Expr:
    """The figures and units of the wait `text` asks for (`1 hour(s) 25 minute(s)`), or null."""
    return text.cast(pl.String).str.extract(WAIT, 1)


def retry_after(text: pl.Expr) -> pl.Expr:
    """The wait in seconds that `text` asks for (Int32), or null (see the module's doc)."""
    return _seconds(_span(text))


#: Words one of which every text that asks for a wait holds (`_ASK`): a text without any is
#: not run through the regular expressions (one Aho-Corasick pass finds them all; the
#: classification looks for them in the same pass as the blocklists' names).
ASKING_WORDS = ["try", "again", "retr", "resend", "come", "check", "wait", "greyl", "grayl",
                 "blocked", "throttled"]  # fmt: skip


def retry_after_of(diagnostics: pl.Series) -> pl.Series:
    """`retry_after` of each of `diagnostics` (named ``retry_after``), in order.

    The regular expressions only run on the texts that hold one of the asking words (one
    Aho-Corasick pass finds them); the classification passes its distinct texts.
    """
    texts = diagnostics.cast(pl.String)
    asking = (
        texts.str.contains_any(ASKING_WORDS, ascii_case_insensitive=True)
        .fill_null(False)
        .arg_true()
    )
    # the span apart first: each unit's figure is read from it, not from the whole text again
    waits = (
        texts.gather(asking)
        .to_frame("text")
        .select(_span(pl.col("text")).alias("span"))
        .select(_seconds(pl.col("span")))
        .to_series()
    )
    found = pl.Series("retry_after", dtype=pl.Int32).extend_constant(None, len(texts))
    return found.scatter(asking, waits) if len(asking) else found
