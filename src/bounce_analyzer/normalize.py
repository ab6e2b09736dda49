"""Message normalization: what differs from one message to the next, masked, in one place.

Two rooms use it. The classification engine groups events by `normalize_message` of their
diagnostic and matches code-table rows against it (`normalized_for`, `words`, `tokens`).
Reports group failures by `message_key`: the same masking, then the MTA's wrapping and the
repeated reply codes taken out, so that one reason is one line whichever source logged it.
Everything is a polars expression over a whole column, or a frame of distinct texts: nothing
runs per message in Python.
"""

from __future__ import annotations

import polars as pl

from bounce_analyzer import native
from bounce_analyzer.smtp import COMPLETION_REPLY_CODE, ENHANCED_CODE

_STOPWORDS = ["that", "this", "with", "from", "have", "been", "your", "their", "please", "more"]
# A word of eight characters or more that starts with a letter and holds a digit is an id
# (queue ids, hashes, server names: d9443c01a7336, SN1PR0101MB1234, EURPRD04, abcdefgh12345)
# and is masked, except a provider's reason code: up to five letters (or `_`) and then one to
# four digits, nothing after (Cox's URLBL011 and IPBL0010, Outlook.com's S3140, Yahoo's TSS04,
# Orange's OFR_405). Patterns tell those codes apart (URLBL is a link list, IPBL an IP list),
# so two of them must not share a normalized text. Shorter words (SC-001, I1340) are kept too.
# Without look-around, the masked words are spelt out by the number of their leading letters
# (k) and of the digits that follow (m): six letters or more; five digits or more; or one to
# four digits and then a letter, with enough characters after it to make eight.
_LONG_MIXED_WORD = (
    r"\b(?:[a-z_]{6,}\d[a-z0-9_]+|[a-z_]{7,}\d"
    r"|[a-z_]\d{5,}[a-z0-9_]{2,}|[a-z_]{2}\d{5,}[a-z0-9_]+|[a-z_]{3,5}\d{5,}[a-z0-9_]*|"
    + "|".join(
        f"[a-z_]{{{k}}}\\d{{{m}}}[a-z_][a-z0-9_]{{{max(0, 7 - k - m)},}}"
        for k in range(1, 6)
        for m in range(1, 5)
    )
    + ")"
)
# a word of five characters or more that starts with a digit, other than 00 and six hex digits:
# one that starts 1-9; 0 and not 0; 00 and five to seven characters, or nine or more; or 00 and
# a letter past f (g-z, _) with enough characters to make five (the `\b` that ends the mask
# stops a shorter match inside a longer word)
_DIGIT_WORD = (
    r"\b(?:[1-9][a-z0-9_]{4,}|0[1-9a-z_][a-z0-9_]{3,}|00[a-z0-9_]{3,5}|00[a-z0-9_]{7,}"
    r"|00[g-z_][a-z0-9_]{2,}|00[0-9a-f][g-z_][a-z0-9_]+|00[0-9a-f]{2,}[g-z_][a-z0-9_]*)"
)
#: What every timestamp and date mask match holds.
_DATED = r"\d{4}-\d{2}-\d{2}"
# 2026-11-28T10:45:12.311Z ; 2026-11-28 10:45:12+01:00 (Outlook puts one in every reply); either
# case, as reports mask it before lower-casing
_TIMESTAMP = r"\b\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})?"
# https://support.google.com/mail/?p=NotAuthorizedError -> https://support.google.com/mail/?
_URL_QUERY = (r"(https?://[^\s?#]*)[?#][^\s)\]>\"']*", "$1?", "://")
#: An IPv4 address (192.0.2.1); IPv6 addresses and times (2001:db8::1, 10:45:12) come later.
_IPV4_ADDRESS = r"\b\d{1,3}(?:\.\d{1,3}){3}\b"
_IPV4 = (_IPV4_ADDRESS, "<ip>", None)
# (regex, replacement, needs): `needs` is None or a regex that every text the mask changes
# matches before any mask runs (no replacement makes one: they hold none of its characters).
# A call only runs the masks some text of it needs: most batches hold no IPv6 address.
_MASKS = (
    # a@b.example, <a@b.example>
    (r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+", "<address>", "@"),
    _URL_QUERY,
    (_TIMESTAMP, "<time>", _DATED),
    _IPV4,
    (r"\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{1,4}\b", "<ip>", r":[0-9a-f]{0,4}:"),
    # 2026-11-28
    (r"\b\d{4}-\d{2}-\d{2}\b", "<date>", _DATED),
    # queue ids and numbers: 4F3A21B5C, 201806281, d9443c01a7336-1f3a1ed8b6esi ; ids with letters
    (_LONG_MIXED_WORD + r"(?:-[a-z0-9_]+)*\b", "<id>", None),
    # ... and words of five or more that start with a digit, except Exchange 2003's error codes
    # (eight hex digits starting 00: "MSEXCH:IMS:... 0 (000C05A6) Unknown Recipient"), which
    # patterns tell apart: masked are those starting 1-9, 0 and not 0, or 00 and not eight hex
    (_DIGIT_WORD + r"(?:-[a-z0-9_]+)*\b", "<id>", None),
    # white space runs to one space: only runs of two or more, and single tabs or newlines, are
    # rewritten (the same result as replacing every \s+, five times faster: most gaps are " ")
    (r"\s{2,}|[^\S ]", " ", None),
)


def normalize_message(text: pl.Expr) -> pl.Expr:
    """`text` lower-cased, with per-message tokens masked and white space collapsed.

    Addresses become ``<address>``, timestamps ``<time>``, IP addresses and times ``<ip>``,
    dates ``<date>``, numbers of five or more characters and words of eight or more mixing
    letters and digits ``<id>``; a URL keeps its path but loses its query string. Codes
    (``550``, ``5.1.1``) are kept. Messages that differ only in those tokens normalize to the
    same text: the engine classifies it once, and reports build their `message_key` on it.
    """
    return _masked_with(text, _MASKS)


def _masked_with(
    text: pl.Expr,
    masks: tuple[tuple[str, str, str | None], ...],
    *,
    answering_ip_only: pl.Expr | bool = False,
) -> pl.Expr:
    """`text` lower-cased, with `masks` applied in order (`_applied`) and the ends stripped."""
    return _applied(
        text.str.to_lowercase(), masks, answering_ip_only=answering_ip_only
    ).str.strip_chars()


def _applied(
    masked: pl.Expr,
    masks: tuple[tuple[str, str, str | None], ...],
    *,
    answering_ip_only: pl.Expr | bool = False,
) -> pl.Expr:
    """`masked` (lower-cased) with `masks` applied in order: the one loop over the masks.

    Where `answering_ip_only` holds (a flag, or a boolean column), `_ANSWERING_IPV4` replaces
    `_IPV4`: the IPv4 addresses other than the answering host's stay. Only that mask differs
    between the rows: the others run once over every text.
    """
    for mask in masks:
        pattern, replacement, _ = mask
        if mask is _IPV4 and answering_ip_only is not False:
            kept = masked.str.replace_all(_ANSWERING_IPV4[0], _ANSWERING_IPV4[1])
            masked = (
                kept
                if answering_ip_only is True
                else pl.when(answering_ip_only)
                .then(kept)
                .otherwise(masked.str.replace_all(pattern, replacement))
            )
        else:
            masked = masked.str.replace_all(pattern, replacement)
    return masked


def normalized_for(texts: pl.Series) -> pl.Expr:
    """The classification's normalized text of a column `texts` is a part of (the first
    occurrence of them: `diagnostic`): `normalize_message` without the masks no text of `texts`
    needs (see `_MASKS`), and with `joined_lines`."""
    # (a `need` looked for in the text as written, regardless of case: whatever the lower-cased
    # text holds, the text holds in some case)
    present = texts.to_frame("text").select(
        pl.col("text").str.contains(f"(?i){need}").any().alias(need) for need in _NEEDS
    )
    needed = tuple(mask for mask in _MASKS if mask[2] is None or present[mask[2]].item())
    text = _applied(pl.col(texts.name).str.to_lowercase(), needed)
    return joined_lines(text).str.strip_chars()


#: What the masks need (`_MASKS`), each once.
_NEEDS = sorted({need for _, _, need in _MASKS if need is not None})


def grouped_texts(texts: pl.Series) -> pl.Series:
    """The classification's normalized text (`normalized_for`) of each of `texts` with the
    digits of the answering host masked (`numbered_hosts_alike`), in order; a null stays null.

    Where the C helper is built (native/normalize.c; `BOUNCE_ANALYZER_NATIVE=0` turns it off),
    it does the ASCII texts, one pass per mask instead of some twenty regex passes over every
    text; the other texts, and every text without it, go through the polars expressions, which
    stay the reference (tests/test_native_normalize.py holds the two to the same texts).
    """
    fast = native.helper("normalize")
    if fast is None:
        return _hosts_alike_by_polars(_by_polars(texts))
    found = native.arrow_series(texts.name, fast.grouped(texts.cast(pl.String)))
    left = (found.is_null() & texts.is_not_null()).arg_true()
    if left.len():
        found = found.scatter(left, _hosts_alike_by_polars(_by_polars(texts.gather(left))))
    return found


def _by_polars(texts: pl.Series) -> pl.Series:
    return texts.to_frame().select(normalized_for(texts)).to_series()


def _hosts_alike_by_polars(normalized: pl.Series) -> pl.Series:
    return normalized.to_frame().select(numbered_hosts_alike(pl.col(normalized.name))).to_series()


def joined_lines(text: pl.Expr) -> pl.Expr:
    """A multi-line reply as one run of words, for the classification's patterns: Exim's
    escaped line breaks (``rate of\\n421-4.7.28 unsolicited``) become spaces, and the code that
    starts each line but the last (``421-4.7.28 ``, ``550-``) goes, so that a phrase split
    across two lines reads as it does on one. The codes were found before (`extract`)."""
    return text.str.replace_all(r"\\n([245]\d\d[ -])", " $1").str.replace_all(
        r"(^|\s)[245]\d\d-(?:[245]\.\d{1,3}\.\d{1,3}(?:\s|$))?", "$1"
    )


#: The start of a normalized text that names the host that answered, up to the end of the
#: name: `host mx3.shop41.example[<ip>] said: ` (Postfix), `<<address>>: host mx1.<id>.example
#: [<ip>]: ` (Exim). (Anchored at the start, and ending where the name ends: a capture of the
#: rest of the text made the regex engine walk all of it.)
_ANSWERING_HOST = r"^((?:<?<address>>?: )?host [^\s\[]+) ?\["


def numbered_hosts_alike(normalized: pl.Expr) -> pl.Expr:
    """A normalized text with the digits in the name of the host that answered masked
    (``host mx#.shop#.example[<ip>] said: ...``), so that the replies of numbered servers of one
    site are one text.

    The classification groups texts by it: which host answered does not decide the category
    (the provider is found from the relay host apart), and the letters of the name are kept,
    so that a rule that reads a word of the wrapping reads the same words in each text of a
    group. A text holding a line break is left as it is (a normalized text holds none).
    """
    # the words before the name hold no digit: masking the digits of the whole start masks
    # those of the name
    start = normalized.str.extract(_ANSWERING_HOST, 1)
    return (
        pl.when(start.is_not_null() & ~normalized.str.contains("\n", literal=True))
        .then(
            pl.concat_str(
                start.str.replace_all(r"\d+", "#"), normalized.str.slice(start.str.len_chars())
            )
        )
        .otherwise(normalized)
    )


def words(text: pl.Expr) -> pl.Expr:
    """The words of four letters or more of a normalized text."""
    return text.str.extract_all(r"[a-z]{4,}")


def tokens(text: pl.Expr) -> pl.Expr:
    """The distinct `words`, less a few that carry no meaning."""
    return words(text).list.unique().list.set_difference(_STOPWORDS)


# --- message keys: what reports group failures by ---------------------------------------------

#: What MTAs wrap around the remote server's words; reports group by the words alone.
_WRAPPERS = (
    # host mx.example.com[192.0.2.1] said: 550 ...   (Postfix)
    r"^host \S+\[[^\]]*\] (?:said|refused to talk to me): ",
    # ... (in reply to RCPT TO command)   (Postfix)
    r"\s*\(in reply to [a-z /]+ command\)$",
    # SMTP error from remote mail server after RCPT TO:<a@b>: 550 ...   (Exim)
    r"^smtp error from remote mail server after [a-z ]+(?::<[^>]*>)?(?: size=\S+)?: ",
)


#: A URL's query string and fragment go, but for the name of the help page a provider points
#: to, which says why (https://support.google.com/mail/?p=NoSuchUser&hl=en ->
#: https://support.google.com/mail/?p=nosuchuser): Google writes the same reply text for
#: different reasons and tells them apart only there.
#: `HELP_PAGE_URL` matches a URL up to the end of that name: the URL without its query string
#: (group 1) and `p=` with the name (group 2), if the query string holds one.
HELP_PAGE_URL = r"(https?://[^\s?#]*)[?#](?:(?:[^\s)\]>\"'&;]*[&;])*?(p=[^\s&#;)\]>\"']+))?"
_URL_QUERY_BUT_REASON = (HELP_PAGE_URL + r"[^\s)\]>\"']*", "$1?$2", "://")
#: The address of the host the MTA talked to, written against its name
#: (`mx.example.com[192.0.2.1]`, `connect to mx.example.com[192.0.2.1]:25`): one of many.
_ANSWERING_IPV4 = (r"([\w.-])\[" + _IPV4_ADDRESS + r"\]", "$1[<ip>]", "[")
#: The masks of the report's keys: the query string of a URL keeps its `p=`; and in an
#: outbound failure an IPv4 address in the remote server's words is kept (the remote server
#: names ours, the sending IP that is blocked or limited, and there are few of them): only the
#: answering host's is masked (`_ANSWERING_IPV4` in place of `_IPV4`).
_REPORT_MASKS = tuple(_URL_QUERY_BUT_REASON if mask is _URL_QUERY else mask for mask in _MASKS)
# An IPv4 address kept in a key, spelt so that the masks of numbers in `_unwrapped` pass over
# it (192.0.2.1 -> _192._0._2._1: no digit starts a word), and spelt back at the end.
_IPV4_PARTS = r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b"
_SHIELDED_IPV4 = r"\b_(\d{1,3})\._(\d{1,3})\._(\d{1,3})\._(\d{1,3})\b"


def message_key(text: pl.Expr, *, outbound: bool = False) -> pl.Expr:
    """The remote server's words without the MTA's wrapping and without reply codes, normalized.

    Multi-line replies that the MTA or ESP joined (``550-5.1.1 The email ... 550-5.1.1
    double-checking ... 550 5.1.1 https://...``) lose their repeated codes, so that one reason
    is one line whichever source logged it; reports put the event's own codes in front.
    What a person acts on stays: a provider's reason code (``[TSS04]``, ``S3140``), the
    ``p=`` of a help page's URL, blocklist zones, and, with `outbound`, the IPv4 address that
    the remote server names (ours: ``messages from [203.0.113.25] weren't sent``).
    """
    return _unwrapped(_masked(text, outbound=outbound))


def _masked(text: pl.Expr, *, outbound: pl.Expr | bool = False) -> pl.Expr:
    """The first half of `message_key`: lower-cased, per-message tokens masked; `outbound`
    (a flag, or a boolean column) keeps the IPv4 addresses the remote server names.

    Most of the cost of `message_key` is here, and most distinct texts become one here (they
    differ by an address or an id), so `message_keys` runs the second half on distinct results.
    """
    # the two characters `\n` of newlines escaped in the log (as a pattern: twice as fast as
    # the literal replacement in polars)
    unwrapped = text.str.replace_all(r"\\n", " ").str.replace_all(_TIMESTAMP, "<time>")
    return _masked_with(unwrapped, _REPORT_MASKS, answering_ip_only=outbound)


def _unwrapped(masked: pl.Expr) -> pl.Expr:
    """The second half of `message_key`: the MTA's wrapping, codes and numbers taken out."""
    text = masked.str.replace_all("<<address>>", "<address>", literal=True).str.replace_all(
        _IPV4_PARTS, "_${1}._${2}._${3}._${4}"
    )
    for wrapper in _WRAPPERS:
        text = text.str.replace(wrapper, "")
    return (
        # leading "550-5.1.1 ", "550 5.1.1 ", "550 ", "5.1.1 "
        text.str.replace(rf"^(?:{COMPLETION_REPLY_CODE}[ -]?)?(?:{ENHANCED_CODE})?\s+", "")
        # continuation lines joined into one: " 550-5.1.1 ", " 550 5.1.1 ", " 550-", " 5.1.1 "
        # (repeated, for the empty lines of a reply: " 5.7.26 5.7.26  Authentication results")
        .str.replace_all(rf"(?:\s{COMPLETION_REPLY_CODE}[ -]{ENHANCED_CODE})+\s", " ")
        .str.replace_all(rf"\s{COMPLETION_REPLY_CODE}-", " ")
        .str.replace_all(rf"(?:\s{ENHANCED_CODE})+\s", " ")
        # numbered server names (mta1198.mail.bf1.yahoo.com -> mta#.mail.bf1.yahoo.com); two
        # letters at least, so that a reason code of one (Outlook.com's S3140) stays
        .str.replace_all(r"\b([a-z]{2,})\d{3,}\b", "$1#")
        # Google's per-message id before its " - gsmtp" signature
        .str.replace(r"\S*\d\S* - gsmtp", "<id> - gsmtp")
        # the answering server's name as a signature (" - mta#.mail.bf2.yahoo.com")
        .str.replace(r" - [a-z0-9#-]+(?:\.[a-z0-9#-]+)+$", " - <host>")
        # other numbers left in the words (retry delays, counters): "try again in # minute(s)"
        .str.replace_all(r"\b\d+\b", "#")
        .str.replace_all(r"\s+", " ")
        .str.replace_all(_SHIELDED_IPV4, "$1.$2.$3.$4")
        .str.strip_chars()
    )


def message_with_codes() -> pl.Expr:
    """`[550 5.1.1] words...`: the event's own codes, then `message_key` of its diagnostic."""
    return with_event_codes(message_key(pl.col("diagnostic")))


def with_event_codes(key: pl.Expr) -> pl.Expr:
    """`[550 5.1.1] words...`: the event's own codes in front of `key` (a message key)."""
    codes = pl.concat_str(
        [pl.col("smtp_code").cast(pl.String), pl.col("enhanced_code")],
        separator=" ",
        ignore_nulls=True,
    )
    key = key.fill_null("(no text)")
    return (
        pl.when(codes.str.len_chars() > 0)
        .then(pl.concat_str([pl.lit("["), codes, pl.lit("] "), key]))
        .otherwise(key)
    )


def message_keys(texts: pl.DataFrame) -> pl.DataFrame:
    """`texts` with `_key`, the `message_key` of its `diagnostic`, worked out once per text.

    Where `texts` has a `direction`, outbound texts are keyed as outbound (`message_key`).
    The masking (`_masked`) runs once per distinct diagnostic, the rest once per distinct
    masked text: a million failures hold a few hundred thousand distinct texts (addresses, ids,
    times) but only a few thousand masked ones.
    """
    outbound = pl.lit(False)
    if "direction" in texts.columns:
        outbound = (pl.col("direction") == "outbound").fill_null(False)
    texts = texts.with_columns(outbound.alias("_outbound"))
    # (streaming: the engine spreads the regular expressions over the cores)
    masked = (
        texts.select("diagnostic", "_outbound")
        .unique()
        .lazy()
        .with_columns(_masked(pl.col("diagnostic"), outbound=pl.col("_outbound")).alias("_masked"))
        .collect(engine="streaming")
    )
    unwrapped = (
        masked.select("_masked").unique().with_columns(_unwrapped(pl.col("_masked")).alias("_key"))
    )
    keys = masked.join(unwrapped, on="_masked", how="left", nulls_equal=True)
    # joined on the text alone, then the row of the text's own direction kept: a join on both
    # columns took 17 MB more at its peak on the 27,000 failure texts of a 1M-line Postfix log
    return (
        texts.join(
            keys.select("diagnostic", "_outbound", "_key"),
            on="diagnostic",
            how="left",
            nulls_equal=True,
        )
        .filter(pl.col("_outbound") == pl.col("_outbound_right"))
        .drop("_outbound", "_outbound_right")
    )
