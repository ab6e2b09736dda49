"""Find the SMTP reply code, the enhanced status code and Outlook hex codes in free text.

Everything here is a polars expression over a whole column: no Python runs per message.

What counts as a code (docs/RULES.md, "Codes in text"):

- a reply code is ``2xx``, ``4xx`` or ``5xx`` with a second digit 0-5, followed by a space, a
  dash or the end, and standing at the start of the text, after ``said:``, after a colon and
  a space, or after a quote or opening bracket::

      550 5.1.1 <a@b.example>: Recipient address rejected
      host mx.b.example[192.0.2.1] said: 550-5.1.1 The email account ... (in reply to RCPT TO)
      SMTP error from remote mail server after RCPT TO:<a@b.example>: 550 5.1.1 Unknown user
      Remote server returned '554 5.7.1 Access denied'

- an enhanced status code is ``class.subject.detail`` with class 2, 4 or 5, subject 0-7 and
  a detail of 1-3 digits (RFC 3463), after the start, a space or one of ``#([=-"':<;,``, and
  not followed by a digit or by a dot and a digit: ``#5.1.1``, ``(5.1.1)``, ``dsn=5.1.1``.
  So the tails of IP addresses (``192.168.5.1.1``, ``10.4.4.5``), dates, times and queue ids
  give no code; version numbers written ``v2.4.1`` or ``version 2.4.1`` are removed first.
- an Outlook hex code is ``0x`` and 4 to 8 hex digits (``0x800CCC0F``), returned upper-cased.
"""

from __future__ import annotations

from typing import TypeVar

import polars as pl

from bounce_analyzer import native
from bounce_analyzer.smtp import COMPLETION_REPLY_CODE, ENHANCED_CODE_KNOWN

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

_VERSION = r"(?i)\b(?:version|release|ver\.?|v)\s*\d+(?:\.\d+)+"
_REPLY = rf"(?:^\s*|said:\s*|:\s+|[\"'(\[]\s*)({COMPLETION_REPLY_CODE})(?:[\s\-]|$)"
_ENHANCED_CANDIDATE = rf"(?:^|[\s#(\[=\-\"':<;,]){ENHANCED_CODE_KNOWN}(?:$|[^0-9.]|\.(?:$|[^0-9]))"
_ENHANCED = f"({ENHANCED_CODE_KNOWN})"
_HEX = r"(?:^|[^0-9A-Za-z])0[xX]([0-9A-Fa-f]{4,8})(?:$|[^0-9A-Za-z])"


def _without_versions(text: pl.Expr) -> pl.Expr:
    return text.str.replace_all(_VERSION, " ")


def extract_smtp_code(text: pl.Expr) -> pl.Expr:
    """The first reply code in `text` (Int16), or null."""
    return _reply_code(_without_versions(text))


def _reply_code(versionless: pl.Expr) -> pl.Expr:
    return versionless.str.extract(_REPLY, 1).cast(pl.Int16)


def _enhanced_candidates(versionless: pl.Expr) -> pl.Expr:
    return versionless.str.extract_all(_ENHANCED_CANDIDATE).list.eval(
        pl.element().str.extract(_ENHANCED, 1)
    )


def _first_of_class(candidates: pl.Expr, reply_class: pl.Expr) -> pl.Expr:
    """The first candidate whose class digit is `reply_class`; the first of all if that is null."""
    chosen: pl.Expr = pl.lit(None, pl.String)
    for digit in ("2", "4", "5"):
        matching = candidates.list.eval(pl.element().filter(pl.element().str.starts_with(digit)))
        chosen = pl.when(reply_class == int(digit)).then(matching.list.first()).otherwise(chosen)
    return pl.when(reply_class.is_null()).then(candidates.list.first()).otherwise(chosen)


def extract_enhanced_code(text: pl.Expr, *, reply_code: pl.Expr | None = None) -> pl.Expr:
    """The first enhanced status code in `text`, or null.

    With `reply_code`, the first one of the same class (``550`` -> ``5.x.x``), or null.
    """
    candidates = _enhanced_candidates(_without_versions(text))
    if reply_code is None:
        return candidates.list.first()
    return _first_of_class(candidates, reply_code.cast(pl.Int16) // 100)


def extract_codes(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(reply code as Int16, enhanced status code as String) found in `text`.

    The enhanced code agrees in class with the reply code when both are found: one of
    another class is dropped.
    """
    smtp = extract_smtp_code(text)
    return smtp, extract_enhanced_code(text, reply_code=smtp)


def extract_hex_code(text: pl.Expr) -> pl.Expr:
    """The first Outlook hex error code in `text` (``0x800CCC0F``), or null."""
    return pl.lit("0x") + text.str.extract(_HEX, 1).str.to_uppercase()


def code_class(smtp_code: pl.Expr, enhanced_code: pl.Expr) -> pl.Expr:
    """The reply class (2, 4 or 5, Int8) of the reply code, else of the enhanced code, or null."""
    return pl.coalesce(
        (smtp_code.cast(pl.Int16) // 100).cast(pl.Int8),
        enhanced_code.str.slice(0, 1).cast(pl.Int8, strict=False),
    )


#: What `found_codes` gives each text, before the given codes are weighed: the reply code in
#: its text without versions, and the first enhanced code in it, of all and of each class.
FOUND_CODES = ("_found_smtp", "_found_enhanced", "_found_2", "_found_4", "_found_5")


def _found_in(versionless: pl.Expr) -> list[pl.Expr]:
    """The `FOUND_CODES` of a text without versions, as polars expressions (the reference)."""
    candidates = _enhanced_candidates(versionless)
    return [
        _reply_code(versionless).alias("_found_smtp"),
        candidates.list.first().alias("_found_enhanced"),
        *(
            candidates.list.eval(pl.element().filter(pl.element().str.starts_with(digit)))
            .list.first()
            .alias(f"_found_{digit}")
            for digit in "245"
        ),
    ]


def found_codes(texts: pl.Series) -> pl.DataFrame:
    """The `FOUND_CODES` of each of `texts`, in order (nothing found in a null).

    Where the C helper is built (native/normalize.c; `BOUNCE_ANALYZER_NATIVE=0` turns it off)
    it reads the ASCII texts, one pass each instead of the regex passes; the polars
    expressions read the others, and all of them without it (tests/test_native_normalize.py
    holds the two to the same codes).
    """
    fast = native.helper("normalize")
    if fast is None:
        return _found_by_polars(texts)
    found = pl.DataFrame(
        [
            native.arrow_series(name, pair)
            for name, pair in zip(FOUND_CODES, fast.codes(texts.cast(pl.String)), strict=True)
        ]
    )
    # -1: a text the C helper leaves (None, or not ASCII)
    unread = found["_found_smtp"] == -1
    found = found.with_columns(pl.when(~unread).then("_found_smtp").alias("_found_smtp"))
    left = (unread & texts.is_not_null()).arg_true()
    if left.len():
        rest = _found_by_polars(texts.gather(left))
        found = found.with_columns(found[name].scatter(left, rest[name]) for name in FOUND_CODES)
    return found


def _found_by_polars(texts: pl.Series) -> pl.DataFrame:
    versionless = texts.to_frame("text").select(_without_versions(pl.col("text")))
    return versionless.select(_found_in(pl.col("text")))


def with_codes(frame: FrameT, *, text: str = "diagnostic", hex_code: bool = True) -> FrameT:
    """Fill null `smtp_code` / `enhanced_code` (and add `hex_code`) from the `text` column.

    Explicit values are kept. An extracted value whose class disagrees with an explicit one is
    dropped; when both are extracted, the enhanced code follows the reply code's class. Without
    `hex_code`, the texts are known to hold none (no ``0x``): `hex_code` is null. Where `frame`
    already has the `FOUND_CODES` columns (`found_codes` of the texts), they are used.
    """
    columns = frame.collect_schema().names()
    body = pl.col(text).cast(pl.String)
    given_smtp = (
        pl.col("smtp_code").cast(pl.Int16) if "smtp_code" in columns else pl.lit(None, pl.Int16)
    )
    given_enhanced = (
        pl.col("enhanced_code").cast(pl.String).str.strip_chars()
        if "enhanced_code" in columns
        else pl.lit(None, pl.String)
    )
    if FOUND_CODES[0] not in columns:
        # the text without versions, in a working column: found once for every code
        working = "_versionless"
        while working in columns:
            working += "_"
        frame = (
            frame.with_columns(_without_versions(body).alias(working))
            .with_columns(_found_in(pl.col(working)))
            .drop(working)
        )
    found_smtp = pl.col("_found_smtp")
    given_class = given_enhanced.str.slice(0, 1).cast(pl.Int16, strict=False)
    smtp = pl.coalesce(
        given_smtp,
        pl.when(given_class.is_null() | (found_smtp // 100 == given_class)).then(found_smtp),
    )
    reply_class = pl.col("smtp_code").cast(pl.Int16) // 100
    chosen: pl.Expr = pl.lit(None, pl.String)
    for digit in "245":
        chosen = pl.when(reply_class == int(digit)).then(f"_found_{digit}").otherwise(chosen)
    of_class = pl.when(reply_class.is_null()).then("_found_enhanced").otherwise(chosen)
    enhanced = pl.coalesce(given_enhanced.replace("", None), of_class)
    return (
        frame.with_columns(smtp.alias("smtp_code"))
        .with_columns(
            enhanced.alias("enhanced_code"),
            (extract_hex_code(body) if hex_code else pl.lit(None, pl.String)).alias("hex_code"),
        )
        .drop(FOUND_CODES)
    )
