"""The classification engine: a frame of events in, the same frame with categories out.

The decision order is docs/RULES.md's. Real traffic repeats a few thousand distinct messages
millions of times, so the engine works on distinct values and joins the answers back:

1. per distinct (diagnostic, given codes): codes found in the text, and the normalized text;
2. per distinct (recipient_domain, relay_host): the receiving mailbox provider;
3. per distinct (reply code, enhanced code, hex code, normalized text, provider, source,
   class): the category, in the five steps of the decision order;
4. per event: what depends on the event itself (delivered, complained, permanence, bounce type).

Events whose category the event itself decides (delivered, complained) skip the text work of
steps 1 and 3. Every step is a polars expression over a whole frame; the only Python loops are
over rules, and what depends only on the rules is prepared once per `Rules` object.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from bounce_analyzer.extract import code_class, extract_hex_code, with_codes
from bounce_analyzer.rules import Rules, load_rules

#: Categories that are not failures: they get no bounce_type and no permanence.
NON_FAILURE_CATEGORIES = ("delivered", "feedback", "vacation")

#: Categories a table row may name that do not decide: the row explains, later steps decide.
UNDECIDED_CATEGORIES = ("undefined", "on_hold")

#: The fact columns the engine reads (others pass through untouched).
INPUT_COLUMNS: dict[str, pl.DataType] = {
    "event": pl.String(),
    "smtp_code": pl.Int16(),
    "enhanced_code": pl.String(),
    "diagnostic": pl.String(),
    "recipient_domain": pl.String(),
    "relay_host": pl.String(),
    "source": pl.String(),
    "esp_classification": pl.String(),
}

_KEY = ["smtp_code", "enhanced_code", "hex_code", "_norm", "provider", "source", "class"]
_TEXT = ["diagnostic", "smtp_code", "enhanced_code"]
_HOST = ["recipient_domain", "relay_host"]
_FINAL_EVENTS = ("bounced", "rejected", "dropped")
#: Events whose category the event decides: their text is not classified.
_EVENT_DECIDED = ("delivered", "complained")
_ADDED = ["provider", "category", "category_group", "bounce_type", "permanent", "rule_id"]
_STOPWORDS = ["that", "this", "with", "from", "have", "been", "your", "their", "please", "more"]
# a word of eight characters or more that starts with a letter and holds a digit (short ones such
# as TSS04, I1340 or SC-001 are codes that patterns tell apart, so they are kept)
_LONG_MIXED_WORD = (
    r"\b(?:"
    + "|".join(f"[a-z_]{{{k}}}\\d[a-z0-9_]{{{7 - k},}}" for k in range(1, 7))
    + r"|[a-z_]{7,}\d[a-z0-9_]*)"
)
# (regex, replacement, literal every match holds or None): the engine only runs a mask over
# the texts holding its literal (few messages hold an address or a URL with a query)
_MASKS = (
    # a@b.example, <a@b.example>
    (r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+", "<address>", "@"),
    # https://support.google.com/mail/?p=NotAuthorizedError -> https://support.google.com/mail/?
    (r"(https?://[^\s?#]*)[?#][^\s)\]>\"']*", "$1?", "://"),
    # 2026-11-28t10:45:12.311z ; 2026-11-28 10:45:12+01:00 (Outlook puts one in every reply)
    (
        r"\b\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:z|[+-]\d{2}:?\d{2})?",
        "<time>",
        None,
    ),
    # 192.0.2.1 ; 2001:db8::1 ; 10:45:12
    (r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "<ip>", None),
    (r"\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{1,4}\b", "<ip>", None),
    # 2026-11-28
    (r"\b\d{4}-\d{2}-\d{2}\b", "<date>", None),
    # queue ids and numbers: 4F3A21B5C, 201806281, d9443c01a7336-1f3a1ed8b6esi ; ids with letters
    (_LONG_MIXED_WORD + r"(?:-[a-z0-9_]+)*\b", "<id>", None),
    (r"\b\d[a-z0-9_]{4,}(?:-[a-z0-9_]+)*\b", "<id>", None),
    # white space runs to one space: only runs of two or more, and single tabs or newlines, are
    # rewritten (the same result as replacing every \s+, five times faster: most gaps are " ")
    (r"\s{2,}|[^\S ]", " ", None),
)


def normalize_message(text: pl.Expr) -> pl.Expr:
    """`text` lower-cased, with per-message tokens masked and white space collapsed.

    Addresses become ``<address>``, timestamps ``<time>``, IP addresses and times ``<ip>``,
    dates ``<date>``, numbers
    of five or more characters and words of eight or more mixing letters and digits ``<id>``;
    a URL keeps its path but loses its query string. Codes (``550``, ``5.1.1``) are kept.
    Messages that differ only in those tokens normalize to the same text, which reports group by.
    """
    normalized = text.str.to_lowercase()
    for pattern, replacement, _ in _MASKS:
        normalized = normalized.str.replace_all(pattern, replacement)
    return normalized.str.strip_chars()


def _normalized(texts: pl.DataFrame) -> pl.DataFrame:
    """`texts` with `normalized`: `normalize_message` of `diagnostic`, each mask only run over
    the texts that hold its literal (the rows come back in another order)."""
    frame = texts.with_columns(pl.col("diagnostic").str.to_lowercase().alias("normalized"))
    text = pl.col("normalized")
    for pattern, replacement, literal in _MASKS:
        if literal is None:
            frame = frame.with_columns(text.str.replace_all(pattern, replacement))
            continue
        holds = text.str.contains(literal, literal=True).fill_null(False)
        frame = pl.concat(
            [
                frame.filter(holds).with_columns(text.str.replace_all(pattern, replacement)),
                frame.filter(~holds),
            ]
        )
    return frame.with_columns(text.str.strip_chars())


def _words(text: pl.Expr) -> pl.Expr:
    """The words of four letters or more."""
    return text.str.extract_all(r"[a-z]{4,}")


def _tokens(text: pl.Expr) -> pl.Expr:
    """The distinct words of four letters or more, less a few that carry no meaning."""
    return _words(text).list.unique().list.set_difference(_STOPWORDS)


def provider_of(frame: pl.LazyFrame, rules: Rules) -> pl.LazyFrame:
    """Add `provider` to a frame with `recipient_domain` and `relay_host` columns.

    The recipient domain or its nearest parent in a provider's `domains`, else the first
    provider whose `hosts` pattern matches the relay host, else ``other``.
    """
    domain = pl.col("recipient_domain").str.to_lowercase().str.strip_chars(". ")
    mapping = rules.provider_domains
    old, new = mapping["domain"].to_list(), mapping["provider"].to_list()

    def lookup(name: pl.Expr) -> pl.Expr:
        return name.replace_strict(old, new, default=None, return_dtype=pl.String)

    by_domain = [lookup(domain)] + [
        lookup(domain.str.extract(rf"((?:[^.]+\.){{{labels - 1}}}[^.]+)$", 1))
        for labels in range(7, 1, -1)
    ]
    host = pl.col("relay_host").str.to_lowercase().str.strip_chars(". ")
    by_host: pl.Expr = pl.lit(None, pl.String)
    for row in reversed(rules.provider_hosts.rows(named=True)):
        by_host = (
            pl.when(host.str.contains(row["regex"]))
            .then(pl.lit(row["provider"]))
            .otherwise(by_host)
        )
    return frame.with_columns(pl.coalesce(*by_domain, by_host, pl.lit("other")).alias("provider"))


# --- pattern prefilter: literals every match must contain ------------------------------------

#: Shorter literals select too many messages to be worth looking for.
_MIN_LITERAL = 3
_PLAIN = r"(?:[^\\|()\[\]{}.*+?^$]|\\[^A-Za-z0-9<>])+"
#: A regex that is only literal text and `|`: it matches exactly where one of its literals is.
_PLAIN_ALTERNATION = re.compile(rf"{_PLAIN}(?:\|{_PLAIN})*")


class _Unsupported(Exception):
    """Regex syntax the literal analysis does not follow (the pattern is then always tried)."""


def required_literals(regex: str) -> frozenset[str] | None:
    """Lower-cased literals one of which every match of `regex` contains, or None if unknown.

    ``account (is )?disabled|mailbox disabled`` gives ``{"account ", "mailbox disabled"}``.
    Only plain characters count; a construct the analysis does not follow (escapes such as
    ``\\x41`` or ``\\pL``, nested classes, verbose mode) gives None, which is always safe: the
    pattern is then tried on every message.
    """
    try:
        literals, end = _alternation(regex, 0)
    except _Unsupported:
        return None
    return literals if end == len(regex) else None


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
        if inner is not None and (least is None or least >= 1):
            found.append(inner)
    close_run()
    usable = [option for option in found if option and min(map(len, option)) >= _MIN_LITERAL]
    if not usable:
        return None, at
    return max(usable, key=lambda option: (min(map(len, option)), -len(option))), at


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


# --- what depends only on the rules, prepared once per Rules object --------------------------


@dataclass(frozen=True)
class _Prepared:
    table_rows: pl.DataFrame  # deciding code-table rows, with normalized message and its words
    by_reply: pl.DataFrame  # provider and source rows with a reply code
    by_enhanced: pl.DataFrame  # provider and source rows with an enhanced code only
    patterns: pl.DataFrame  # pattern_index, pattern_id, regex, pattern_provider, classes, ...
    literals: pl.DataFrame  # literal, pattern_index: the pattern is tried where its literal is
    literal_list: list[str]
    unfiltered: pl.DataFrame  # pattern_index of the patterns tried on every message
    enhanced: pl.DataFrame  # enhanced_code, exact_rule, exact_category
    x_codes: pl.DataFrame  # x_code, x_rule, x_category
    replies: pl.DataFrame  # smtp_code, reply_rule, reply_category
    categories: pl.DataFrame  # category, category_group, _hard


_PREPARED: dict[int, tuple[Rules, _Prepared]] = {}


def _prepared(rules: Rules) -> _Prepared:
    """What the engine derives from `rules` alone, cached (keyed by the object, kept alive)."""
    entry = _PREPARED.get(id(rules))
    if entry is None or entry[0] is not rules:
        if len(_PREPARED) >= 8:
            _PREPARED.clear()
        entry = (rules, _prepare(rules))
        _PREPARED[id(rules)] = entry
    return entry[1]


def _first_rows(rules: Rules, kind: str, by: str) -> pl.DataFrame:
    """The deciding row per value of `by` in the tables of `kind` (user rows first)."""
    return (
        rules.codes.filter(
            (pl.col("kind") == kind)
            & pl.col("category").is_not_null()
            & ~pl.col("category").is_in(UNDECIDED_CATEGORIES)
            & pl.col(by).is_not_null()
        )
        .sort(["user", "order"], descending=[True, False])
        .unique(subset=[by], keep="first", maintain_order=True)
        .select(by, "rule_id", "category")
    )


def _prepare(rules: Rules) -> _Prepared:
    table_rows = (
        rules.codes.filter(
            pl.col("category").is_not_null() & ~pl.col("category").is_in(UNDECIDED_CATEGORIES)
        )
        .select(
            "rule_id",
            "kind",
            "user",
            "order",
            pl.col("provider").alias("row_provider"),
            pl.col("source").alias("row_source"),
            pl.col("smtp_code").alias("row_smtp"),
            pl.col("enhanced_code").alias("row_enhanced"),
            pl.col("hex_code").alias("row_hex"),
            pl.col("category").alias("row_category"),
            normalize_message(pl.col("message")).alias("row_message"),
        )
        .with_columns(_tokens(pl.col("row_message")).alias("row_tokens"))
    )
    scoped = table_rows.filter(pl.col("kind") == "provider")
    regexes = rules.patterns["regex"].to_list()
    literal_rows = [
        {"literal": literal, "pattern_index": index}
        for index, regex in enumerate(regexes)
        for literal in sorted(required_literals(regex) or ())
    ]
    plain = [
        index
        for index, regex in enumerate(regexes)
        if regex.isascii()
        and _PLAIN_ALTERNATION.fullmatch(regex)
        and required_literals(regex) is not None
    ]
    literals = pl.DataFrame(
        literal_rows, schema={"literal": pl.String, "pattern_index": pl.UInt32}
    ).unique()
    patterns = rules.patterns.with_row_index("pattern_index").select(
        "pattern_index",
        pl.col("id").alias("pattern_id"),
        ("(?i)" + pl.col("regex")).alias("regex"),
        pl.col("provider").alias("pattern_provider"),
        "classes",
        pl.col("category").alias("pattern_category"),
        pl.col("pattern_index").is_in(pl.Series(plain, dtype=pl.UInt32).implode()).alias("plain"),
    )
    filtered = set(literals["pattern_index"].to_list())
    enhanced = _first_rows(rules, "enhanced", "enhanced_code")
    return _Prepared(
        table_rows=table_rows,
        by_reply=scoped.filter(pl.col("row_smtp").is_not_null()),
        by_enhanced=scoped.filter(
            pl.col("row_smtp").is_null() & pl.col("row_enhanced").is_not_null()
        ),
        patterns=patterns,
        literals=literals,
        literal_list=sorted(set(literals["literal"].to_list())),
        unfiltered=patterns.filter(~pl.col("pattern_index").is_in(sorted(filtered))).select(
            "pattern_index"
        ),
        enhanced=enhanced.rename({"rule_id": "exact_rule", "category": "exact_category"}),
        x_codes=enhanced.rename(
            {"enhanced_code": "x_code", "rule_id": "x_rule", "category": "x_category"}
        ),
        replies=_first_rows(rules, "reply", "smtp_code").rename(
            {"rule_id": "reply_rule", "category": "reply_category"}
        ),
        categories=rules.categories.select(
            "category", pl.col("group").alias("category_group"), pl.col("hard").alias("_hard")
        ),
    )


# --- the decision order, over distinct keys ---------------------------------------------------


def _step_tables(keys: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """Step 1: the provider's or source's own table (and any table's Outlook hex codes).

    `keys` has `_key`, the codes, `provider`, `source` and `normalized`; the answer has
    `_key`, `table_rule` and `table_category` for the keys a row decides.
    """
    probe = keys.select("_key", "smtp_code", "enhanced_code", "hex_code", "provider", "source")
    enhanced_agrees = pl.col("row_enhanced").is_null() | (
        pl.col("row_enhanced") == pl.col("enhanced_code")
    )
    candidates = pl.concat(
        [
            probe.join(
                prepared.by_reply,
                left_on=[by, "smtp_code"],
                right_on=[f"row_{by}", "row_smtp"],
                coalesce=False,
            ).filter(enhanced_agrees)
            for by in ("provider", "source")
        ]
        + [
            probe.join(
                prepared.by_enhanced,
                left_on=[by, "enhanced_code"],
                right_on=[f"row_{by}", "row_enhanced"],
                coalesce=False,
            )
            for by in ("provider", "source")
        ]
        + [
            probe.join(prepared.table_rows, left_on="hex_code", right_on="row_hex").with_columns(
                pl.lit(True).alias("via_hex")
            )
        ],
        how="diagonal_relaxed",
    )
    if candidates.height == 0:
        return pl.DataFrame(
            schema={"_key": pl.UInt64, "table_rule": pl.String, "table_category": pl.String}
        )
    # a row's tokens hold no stop word and set_intersection counts distinct words, so the key's
    # plain words give the same overlap as its tokens
    words = keys.join(candidates.select("_key").unique(), on="_key", how="semi").select(
        "_key", "normalized", _words(pl.col("normalized")).alias("tokens")
    )
    candidates = candidates.join(words, on="_key", how="left")
    contained = pl.col("row_message").is_not_null() & pl.col("normalized").str.contains(
        pl.col("row_message"), literal=True
    )
    overlap = pl.col("tokens").list.set_intersection(pl.col("row_tokens")).list.len() / pl.col(
        "row_tokens"
    ).list.len().clip(lower_bound=1)
    both_codes = pl.col("row_smtp").is_not_null() & pl.col("row_enhanced").is_not_null()
    sole = pl.len().over("_key") == 1
    scored = candidates.with_columns(
        pl.when(contained)
        .then(2.0 + pl.col("row_message").str.len_chars() / 100_000)
        .otherwise(overlap)
        .alias("score"),
    ).with_columns(
        (
            contained
            | (pl.col("score") >= 0.75)
            | (both_codes & sole)
            | pl.col("via_hex").fill_null(False)
        ).alias("accepted")
    )
    return (
        scored.filter(pl.col("accepted"))
        .sort(["score", "user", "order"], descending=[True, True, False])
        .unique(subset=["_key"], keep="first", maintain_order=True)
        .select(
            "_key",
            pl.col("rule_id").alias("table_rule"),
            pl.col("row_category").alias("table_category"),
        )
    )


def _step_patterns(keys: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """Step 2: the first pattern matching each key's text (`_key`, `pattern_index`).

    A pattern is only tried on the texts that hold one of its required literals (found for
    all patterns at once, Aho-Corasick), on texts that are not plain ASCII, and, for patterns
    without such literals, on every text; so each regex runs over a few texts, not all.
    """
    texts = keys.filter(pl.col("text").is_not_null()).select("_key", "text", "provider", "class")
    if texts.height == 0 or prepared.patterns.height == 0:
        return pl.DataFrame(schema={"_key": pl.UInt64, "pattern_index": pl.UInt32})
    ascii_only = pl.col("text").str.len_bytes() == pl.col("text").str.len_chars()
    pairs = [
        texts.filter(ascii_only)
        .select(
            "_key",
            pl.col("text")
            .str.to_lowercase()
            .str.extract_many(prepared.literal_list, overlapping=True)
            .alias("literal"),
        )
        .explode("literal")
        .unique()
        .join(prepared.literals, on="literal")
        .select("_key", "pattern_index"),
        texts.filter(ascii_only).select("_key").join(prepared.unfiltered, how="cross"),
        texts.filter(~ascii_only)
        .select("_key")
        .join(prepared.patterns.select("pattern_index"), how="cross"),
    ]
    eligible = (
        pl.col("pattern_provider").is_null() | (pl.col("pattern_provider") == pl.col("provider"))
    ) & (pl.col("classes").is_null() | pl.col("classes").list.contains(pl.col("class")))
    candidates = (
        pl.concat(pairs)
        .unique()
        .join(texts.with_columns(ascii_only.alias("ascii")), on="_key")
        .join(prepared.patterns, on="pattern_index")
        .filter(eligible)
    )
    # a plain pattern found by its literal in an ASCII text matches: no regex to run; a regex
    # only runs where no earlier pattern is already known to match
    sure = pl.col("plain") & pl.col("ascii")
    known = candidates.filter(sure).group_by("_key").agg(pl.col("pattern_index").min())
    tried = (
        candidates.filter(~sure)
        .join(known.rename({"pattern_index": "known"}), on="_key", how="left")
        .filter(pl.col("known").is_null() | (pl.col("pattern_index") < pl.col("known")))
        .sort("pattern_index")
        .filter(pl.col("text").str.contains(pl.col("regex")))
        .select("_key", "pattern_index")
    )
    return pl.concat([known, tried]).group_by("_key").agg(pl.col("pattern_index").min())


def _decide(keys: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """Category and rule_id for each distinct key (steps 1 to 5)."""
    tables = _step_tables(keys, prepared)
    undecided = keys.join(tables, on="_key", how="anti")
    patterns = _step_patterns(undecided, prepared).join(
        prepared.patterns.select("pattern_index", "pattern_id", "pattern_category"),
        on="pattern_index",
    )
    x_form = pl.lit("X") + pl.col("enhanced_code").str.slice(1)
    decided = (
        keys.join(tables, on="_key", how="left")
        .join(patterns, on="_key", how="left")
        .join(prepared.enhanced, on="enhanced_code", how="left")
        .join(prepared.x_codes, left_on=x_form, right_on="x_code", how="left")
        .join(prepared.replies, on="smtp_code", how="left")
    )
    has_text = pl.col("text").str.strip_chars().str.len_chars().fill_null(0) > 0
    default = pl.when(has_text).then(pl.lit("on_hold")).otherwise(pl.lit("undefined"))
    return decided.select(
        "_key",
        pl.coalesce(
            "table_category",
            "pattern_category",
            "exact_category",
            "x_category",
            "reply_category",
            default,
        ).alias("key_category"),
        pl.coalesce(
            "table_rule",
            pl.lit("pattern:") + pl.col("pattern_id"),
            "exact_rule",
            "x_rule",
            "reply_rule",
            pl.lit("default:") + default,
        ).alias("key_rule"),
    )


# --- distinct values --------------------------------------------------------------------------


def _with_ids(frame: pl.DataFrame, columns: list[str], name: str) -> pl.DataFrame:
    """`frame` with `name`: a UInt64 that is the same exactly when `columns` are the same.

    The id is a hash; every row is checked against its id's first row, and in the (vanishingly
    rare) case of a collision the ids are numbered exactly instead.
    """
    hashed = frame.with_columns(pl.struct(columns).hash().alias(name))
    firsts = hashed.select(name, *columns).unique(subset=[name], keep="any")
    checked = hashed.select(name, *columns).join(
        firsts, on=name, how="left", suffix="_first", maintain_order="left"
    )
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"{c}_first")) for c in columns)
    if checked.height == 0 or checked.select(same.all()).item():
        return hashed
    numbered = (
        frame.select(columns)
        .unique()
        .with_row_index(name)
        .with_columns(pl.col(name).cast(pl.UInt64))
    )
    return frame.join(numbered, on=columns, how="left", nulls_equal=True, maintain_order="left")


def _text_facts(texts: pl.DataFrame) -> pl.DataFrame:
    """Per distinct text: the codes found in it (given ones kept) and its Outlook hex code.

    Only texts missing a code go through the extraction, and only texts holding ``0x`` are
    searched for a hex code.
    """
    missing = pl.col("smtp_code").is_null() | pl.col("enhanced_code").is_null()
    complete = texts.filter(~missing)
    hexish = (
        pl.col("diagnostic").str.contains_any(["0x"], ascii_case_insensitive=True).fill_null(False)
    )
    return pl.concat(
        [
            with_codes(texts.filter(missing)),
            complete.filter(hexish).with_columns(
                extract_hex_code(pl.col("diagnostic")).alias("hex_code")
            ),
            complete.filter(~hexish).with_columns(pl.lit(None, pl.String).alias("hex_code")),
        ]
    )


# --- per event -------------------------------------------------------------------------------


def _with_inputs(frame: pl.DataFrame) -> pl.DataFrame:
    names = frame.columns
    return frame.with_columns(
        pl.col(name).cast(dtype) if name in names else pl.lit(None, dtype).alias(name)
        for name, dtype in INPUT_COLUMNS.items()
    )


def _permanent() -> pl.Expr:
    event = pl.col("event")
    return (
        pl.when(pl.col("category").is_in(NON_FAILURE_CATEGORIES) | (event == "delivered"))
        .then(None)
        .when(event == "deferred")
        .then(False)
        .when(pl.col("class") == 5)
        .then(True)
        .when(pl.col("class").is_in([2, 4]))
        .then(False)
        .when(event.is_in(_FINAL_EVENTS))
        .then(True)
        .when(event == "expired")
        .then(False)
        .otherwise(None)
        .cast(pl.Boolean)
    )


def _bounce_type() -> pl.Expr:
    hard = pl.col("_hard")
    return (
        pl.when(pl.col("category").is_in(NON_FAILURE_CATEGORIES))
        .then(None)
        .when(hard == "always")
        .then(pl.lit("hard"))
        .when(hard == "never")
        .then(pl.lit("soft"))
        .when(pl.col("permanent"))
        .then(pl.lit("hard"))
        .when(pl.col("permanent").not_())
        .then(pl.lit("soft"))
        .otherwise(None)
    )


def _classify_frame(frame: pl.DataFrame, rules: Rules, *, keep_hex: bool) -> pl.DataFrame:
    """The engine over one eager frame (see `classify`)."""
    prepared = _prepared(rules)
    original = frame.columns
    frame = _with_inputs(frame)
    event = pl.col("event")
    rows = frame.select(
        "event",
        "source",
        "diagnostic",
        "smtp_code",
        # a given enhanced code is used stripped, and an empty one counts as missing
        pl.col("enhanced_code").str.strip_chars().replace("", None),
        "recipient_domain",
        "relay_host",
        (~event.is_in(_EVENT_DECIDED)).fill_null(True).alias("_textual"),
    ).with_row_index("_row")

    # 2. per distinct domain and relay: the provider
    hosted = _with_ids(rows.select("recipient_domain", "relay_host"), _HOST, "_host")
    hosts = provider_of(hosted.unique(subset=["_host"], keep="any").lazy(), rules)
    found = hosted.join(
        hosts.select("_host", "provider").collect(), on="_host", how="left", maintain_order="left"
    )["provider"]
    if "provider" in original:
        found = frame.select(pl.coalesce(pl.col("provider").cast(pl.String), found)).to_series()
    rows = rows.with_columns(found.alias("provider"))

    # 1. per distinct text and given codes: found codes and normalized text
    textual = pl.col("_textual")
    work = rows.filter(
        pl.lit(keep_hex)
        | textual
        | pl.col("smtp_code").is_null()
        | pl.col("enhanced_code").is_null()
    )
    work = _with_ids(work, _TEXT, "_text")
    texts = _text_facts(work.group_by("_text").agg(pl.col(*_TEXT).first(), textual.any()))
    texts = pl.concat(
        [
            _normalized(texts.filter(textual)),
            texts.filter(~textual).with_columns(pl.lit(None, pl.String).alias("normalized")),
        ]
    )
    texts = _with_ids(texts, ["normalized"], "_norm")
    work = (
        work.drop("smtp_code", "enhanced_code")
        .join(
            texts.select("_text", "smtp_code", "enhanced_code", "hex_code", "_norm"),
            on="_text",
            how="left",
            maintain_order="left",
        )
        .with_columns(code_class(pl.col("smtp_code"), pl.col("enhanced_code")).alias("class"))
    )

    # 3. per distinct key: category and rule
    decided = work.filter(textual)
    decided = _with_ids(decided, _KEY, "_key")
    keys = (
        decided.unique(subset=["_key"], keep="first", maintain_order=True)
        .select("_key", *_KEY, pl.col("diagnostic").alias("text"))
        .join(texts.select("_norm", "normalized").unique("_norm"), on="_norm", how="left")
    )
    work = work.join(
        decided.select("_row", "_key").join(_decide(keys, prepared), on="_key", how="left"),
        on="_row",
        how="left",
    )

    # 4. per event
    per_event = rows.select("_row", "event", "smtp_code", "enhanced_code").join(
        work.select(
            "_row",
            pl.col("smtp_code").alias("_smtp"),
            pl.col("enhanced_code").alias("_enhanced"),
            "hex_code",
            "key_category",
            "key_rule",
            pl.lit(True).alias("_in_work"),
        ),
        on="_row",
        how="left",
        maintain_order="left",
    )
    in_work = pl.col("_in_work").fill_null(False)
    undecided = pl.col("key_category").is_in(UNDECIDED_CATEGORIES)
    per_event = (
        per_event.with_columns(
            pl.when(in_work)
            .then(pl.col("_smtp"))
            .otherwise(pl.col("smtp_code"))
            .alias("smtp_code"),
            pl.when(in_work)
            .then(pl.col("_enhanced"))
            .otherwise(pl.col("enhanced_code"))
            .alias("enhanced_code"),
        )
        .with_columns(
            code_class(pl.col("smtp_code"), pl.col("enhanced_code")).alias("class"),
            pl.when(event == "delivered")
            .then(pl.lit("delivered"))
            .when(event == "complained")
            .then(pl.lit("feedback"))
            # the event itself is the best evidence left when no rule decided
            .when(undecided & (event == "expired"))
            .then(pl.lit("expired"))
            .when(undecided & (event == "dropped"))
            .then(pl.lit("suppressed"))
            .otherwise(pl.col("key_category"))
            .alias("category"),
            pl.when(
                event.is_in(["delivered", "complained"])
                | (undecided & event.is_in(["expired", "dropped"]))
            )
            .then(pl.lit("event:") + event)
            .otherwise(pl.col("key_rule"))
            .alias("rule_id"),
        )
        .join(prepared.categories, on="category", how="left", maintain_order="left")
        .with_columns(_permanent().alias("permanent"))
        .with_columns(_bounce_type().alias("bounce_type"))
    )
    keep = [c for c in original if c not in _ADDED]
    extra = [c for c in ("smtp_code", "enhanced_code") if c not in keep]
    if keep_hex:
        extra.append("hex_code")
    answers = per_event.select(
        "smtp_code", "enhanced_code", "hex_code", *[c for c in _ADDED if c != "provider"]
    )
    return (
        frame.with_columns(answers.get_columns())
        .with_columns(rows["provider"])
        .select(*keep, *extra, *_ADDED)
    )


def _lazy(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame


def _collected(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.collect().lazy()


def classify_lazy(
    lf: pl.LazyFrame, rules: Rules | None = None, *, keep_hex: bool = False
) -> pl.LazyFrame:
    """The lazy form of `classify`. With `keep_hex`, also keep the found `hex_code` column."""
    return _classify(lf, load_rules() if rules is None else rules, keep_hex=keep_hex, stage=_lazy)


def _classify(
    lf: pl.LazyFrame,
    rules: Rules,
    *,
    keep_hex: bool,
    stage: Callable[[pl.LazyFrame], pl.LazyFrame],
) -> pl.LazyFrame:
    """The engine as a plan step: `stage` `_collected` runs it now, `_lazy` when collected.

    The engine works on the whole frame at once (distinct values, joined back), so the lazy
    form runs it as one batch function over the collected input.
    """
    if stage is _collected:
        return _classify_frame(lf.collect(), rules, keep_hex=keep_hex).lazy()
    schema = _classify_frame(
        pl.DataFrame(schema=lf.collect_schema()), rules, keep_hex=keep_hex
    ).schema
    return lf.map_batches(
        lambda frame: _classify_frame(frame, rules, keep_hex=keep_hex),
        schema=schema,
        streamable=False,
    )


def classify(frame: pl.DataFrame, rules: Rules | None = None) -> pl.DataFrame:
    """Return `frame` with the classification columns (schema.CLASSIFICATION_SCHEMA) filled.

    `frame` needs (at least) the fact columns the engine reads (`INPUT_COLUMNS`; missing ones
    count as null). Null reply and enhanced codes are filled from the diagnostic. A non-null
    `provider` column, if present, is kept; otherwise the provider comes from the recipient
    domain and relay host. Rows keep their order.
    """
    rules = load_rules() if rules is None else rules
    return _classify_frame(frame, rules, keep_hex=False)
