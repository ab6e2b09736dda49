"""The classification engine: a frame of events in, the same frame with categories out.

The decision order is docs/RULES.md's. Real traffic repeats a few thousand distinct messages
millions of times, so the engine works on distinct keys and joins the answers back:

1. per distinct (diagnostic, given codes): codes found in the text, and the normalized text;
2. per distinct (recipient_domain, relay_host): the receiving mailbox provider;
3. per distinct (reply code, enhanced code, hex code, normalized text, provider, source,
   class): the category, in the five steps of the decision order;
4. per event: what depends on the event itself (delivered, complained, permanence, bounce type).

Every step is a polars expression over a whole frame; the only Python loops are over rules.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from bounce_analyzer.extract import code_class, with_codes
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

_KEY = ["smtp_code", "enhanced_code", "hex_code", "normalized", "provider", "source", "class"]
_FINAL_EVENTS = ("bounced", "rejected", "dropped")
_STOPWORDS = ["that", "this", "with", "from", "have", "been", "your", "their", "please", "more"]
# a word of eight characters or more that starts with a letter and holds a digit (short ones such
# as TSS04, I1340 or SC-001 are codes that patterns tell apart, so they are kept)
_LONG_MIXED_WORD = (
    r"\b(?:"
    + "|".join(f"[a-z_]{{{k}}}\\d[a-z0-9_]{{{7 - k},}}" for k in range(1, 7))
    + r"|[a-z_]{7,}\d[a-z0-9_]*)"
)
_MASKS = (
    # a@b.example, <a@b.example>
    (r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+", "<address>"),
    # https://support.google.com/mail/?p=NotAuthorizedError -> https://support.google.com/mail/?
    (r"(https?://[^\s?#]*)[?#][^\s)\]>\"']*", "$1?"),
    # 192.0.2.1 ; 2001:db8::1 ; 10:45:12
    (r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "<ip>"),
    (r"\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{1,4}\b", "<ip>"),
    # 2026-11-28
    (r"\b\d{4}-\d{2}-\d{2}\b", "<date>"),
    # queue ids and numbers: 4F3A21B5C, 201806281, d9443c01a7336-1f3a1ed8b6esi ; ids with letters
    (_LONG_MIXED_WORD + r"(?:-[a-z0-9_]+)*\b", "<id>"),
    (r"\b\d[a-z0-9_]{4,}(?:-[a-z0-9_]+)*\b", "<id>"),
    (r"\s+", " "),
)


def normalize_message(text: pl.Expr) -> pl.Expr:
    """`text` lower-cased, with per-message tokens masked and white space collapsed.

    Addresses become ``<address>``, IP addresses and times ``<ip>``, dates ``<date>``, numbers
    of five or more characters and words of eight or more mixing letters and digits ``<id>``;
    a URL keeps its path but loses its query string. Codes (``550``, ``5.1.1``) are kept.
    Messages that differ only in those tokens normalize to the same text, which reports group by.
    """
    normalized = text.str.to_lowercase()
    for pattern, replacement in _MASKS:
        normalized = normalized.str.replace_all(pattern, replacement)
    return normalized.str.strip_chars()


def _tokens(text: pl.Expr) -> pl.Expr:
    """The distinct words of four letters or more, less a few that carry no meaning."""
    return text.str.extract_all(r"[a-z]{4,}").list.unique().list.set_difference(_STOPWORDS)


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


# --- the decision order, over distinct keys ---------------------------------------------------


def _step_tables(keys: pl.LazyFrame, rules: Rules) -> pl.LazyFrame:
    """Step 1: the provider's or source's own table (and any table's Outlook hex codes)."""
    rows = (
        rules.codes.lazy()
        .filter(pl.col("category").is_not_null() & ~pl.col("category").is_in(UNDECIDED_CATEGORIES))
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
    scoped = rows.filter(
        (pl.col("kind") == "provider")
        & (pl.col("row_smtp").is_not_null() | pl.col("row_enhanced").is_not_null())
    )
    probe = keys.select(*_KEY, _tokens(pl.col("normalized")).alias("tokens"))
    codes_agree = (pl.col("row_smtp").is_null() | (pl.col("row_smtp") == pl.col("smtp_code"))) & (
        pl.col("row_enhanced").is_null() | (pl.col("row_enhanced") == pl.col("enhanced_code"))
    )
    candidates = pl.concat(
        [
            probe.join(scoped, left_on="provider", right_on="row_provider").filter(codes_agree),
            probe.join(scoped, left_on="source", right_on="row_source").filter(codes_agree),
            probe.join(rows, left_on="hex_code", right_on="row_hex").with_columns(
                pl.lit(True).alias("via_hex")
            ),
        ],
        how="diagonal_relaxed",
    )
    contained = pl.col("row_message").is_not_null() & pl.col("normalized").str.contains(
        pl.col("row_message"), literal=True
    )
    overlap = pl.col("tokens").list.set_intersection(pl.col("row_tokens")).list.len() / pl.col(
        "row_tokens"
    ).list.len().clip(lower_bound=1)
    both_codes = pl.col("row_smtp").is_not_null() & pl.col("row_enhanced").is_not_null()
    sole = pl.len().over(_KEY) == 1
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
        .group_by(_KEY, maintain_order=True)
        .first()
        .select(
            *_KEY,
            pl.col("rule_id").alias("table_rule"),
            pl.col("row_category").alias("table_category"),
        )
    )


def _pattern_expr(rules: Rules) -> pl.Expr:
    """Step 2: the id of the first pattern matching the key's text, or null."""
    text = pl.col("text")
    chosen: pl.Expr = pl.lit(None, pl.String)
    for row in reversed(rules.patterns.rows(named=True)):
        condition = text.str.contains("(?i)" + row["regex"])
        if row["provider"] is not None:
            condition = condition & (pl.col("provider") == row["provider"])
        if row["classes"] is not None:
            condition = condition & pl.col("class").is_in(list(row["classes"]))
        chosen = pl.when(condition).then(pl.lit(row["id"])).otherwise(chosen)
    return chosen


def _first_rows(rules: Rules, kind: str, by: str) -> pl.LazyFrame:
    """The deciding row per value of `by` in the tables of `kind` (user rows first)."""
    return (
        rules.codes.lazy()
        .filter(
            (pl.col("kind") == kind)
            & pl.col("category").is_not_null()
            & ~pl.col("category").is_in(UNDECIDED_CATEGORIES)
            & pl.col(by).is_not_null()
        )
        .sort(["user", "order"], descending=[True, False])
        .unique(subset=[by], keep="first", maintain_order=True)
        .select(by, "rule_id", "category")
    )


def _decide(keys: pl.LazyFrame, rules: Rules) -> pl.LazyFrame:
    """Category and rule_id for each distinct key (steps 1 to 5)."""
    patterns = rules.patterns.lazy().select(
        pl.col("id").alias("pattern_id"), pl.col("category").alias("pattern_category")
    )
    enhanced = _first_rows(rules, "enhanced", "enhanced_code")
    replies = _first_rows(rules, "reply", "smtp_code")
    x_form = pl.lit("X") + pl.col("enhanced_code").str.slice(1)
    decided = (
        keys.join(_step_tables(keys, rules), on=_KEY, how="left", nulls_equal=True)
        .with_columns(_pattern_expr(rules).alias("pattern_id"))
        .join(patterns, on="pattern_id", how="left")
        .join(
            enhanced.rename({"rule_id": "exact_rule", "category": "exact_category"}),
            on="enhanced_code",
            how="left",
        )
        .join(
            enhanced.rename(
                {"enhanced_code": "x_code", "rule_id": "x_rule", "category": "x_category"}
            ),
            left_on=x_form,
            right_on="x_code",
            how="left",
        )
        .join(
            replies.rename({"rule_id": "reply_rule", "category": "reply_category"}),
            on="smtp_code",
            how="left",
        )
    )
    has_text = pl.col("text").str.strip_chars().str.len_chars().fill_null(0) > 0
    default = pl.when(has_text).then(pl.lit("on_hold")).otherwise(pl.lit("undefined"))
    return decided.select(
        *_KEY,
        pl.coalesce(
            "table_category",
            "pattern_category",
            "exact_category",
            "x_category",
            "reply_category",
            default,
        ).alias("category"),
        pl.coalesce(
            "table_rule",
            pl.lit("pattern:") + pl.col("pattern_id"),
            "exact_rule",
            "x_rule",
            "reply_rule",
            pl.lit("default:") + default,
        ).alias("rule_id"),
    )


# --- per event -------------------------------------------------------------------------------


def _with_inputs(lf: pl.LazyFrame) -> pl.LazyFrame:
    names = lf.collect_schema().names()
    return lf.with_columns(
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
    """The engine's plan; `stage` runs at each stage boundary (identity, or collect)."""
    original = lf.collect_schema().names()
    lf = _with_inputs(lf).with_row_index("_row")
    given_provider = "provider" in original

    # 1. per distinct text and given codes: found codes and normalized text
    texts = (
        lf.select("diagnostic", "smtp_code", "enhanced_code")
        .unique()
        .with_columns(
            pl.col("smtp_code").alias("_given_smtp"),
            pl.col("enhanced_code").alias("_given_enhanced"),
        )
        .pipe(with_codes)
        .with_columns(normalize_message(pl.col("diagnostic")).alias("normalized"))
        .rename({"diagnostic": "_diagnostic"})
        .pipe(stage)
    )
    lf = (
        lf.join(
            texts,
            left_on=["diagnostic", "smtp_code", "enhanced_code"],
            right_on=["_diagnostic", "_given_smtp", "_given_enhanced"],
            how="left",
            nulls_equal=True,
            suffix="_found",
        )
        .with_columns(
            pl.col("smtp_code_found").alias("smtp_code"),
            pl.col("enhanced_code_found").alias("enhanced_code"),
            code_class(pl.col("smtp_code_found"), pl.col("enhanced_code_found")).alias("class"),
        )
        .drop("smtp_code_found", "enhanced_code_found")
        .pipe(stage)
    )

    # 2. per distinct domain and relay: the provider
    hosts = stage(provider_of(lf.select("recipient_domain", "relay_host").unique(), rules))
    lf = lf.join(
        hosts, on=["recipient_domain", "relay_host"], how="left", nulls_equal=True, suffix="_found"
    )
    if given_provider:
        lf = lf.with_columns(pl.coalesce("provider", "provider_found").alias("provider")).drop(
            "provider_found"
        )
    elif "provider_found" in lf.collect_schema().names():
        lf = lf.rename({"provider_found": "provider"})

    # 3. per distinct key: category and rule
    lf = stage(lf)
    keys = stage(lf.group_by(_KEY).agg(pl.col("diagnostic").first().alias("text")))
    lf = lf.join(stage(_decide(keys, rules)), on=_KEY, how="left", nulls_equal=True)

    # 4. per event
    event = pl.col("event")
    undecided = pl.col("category").is_in(UNDECIDED_CATEGORIES)
    categories = rules.categories.lazy().select(
        "category", pl.col("group").alias("category_group"), pl.col("hard").alias("_hard")
    )
    lf = (
        lf.with_columns(
            pl.when(event == "delivered")
            .then(pl.lit("delivered"))
            .when(event == "complained")
            .then(pl.lit("feedback"))
            # the event itself is the best evidence left when no rule decided
            .when(undecided & (event == "expired"))
            .then(pl.lit("expired"))
            .when(undecided & (event == "dropped"))
            .then(pl.lit("suppressed"))
            .otherwise(pl.col("category"))
            .alias("category"),
            pl.when(
                event.is_in(["delivered", "complained"])
                | (undecided & event.is_in(["expired", "dropped"]))
            )
            .then(pl.lit("event:") + event)
            .otherwise(pl.col("rule_id"))
            .alias("rule_id"),
        )
        .drop("category_group", "bounce_type", "permanent", strict=False)
        .join(categories, on="category", how="left")
        .with_columns(_permanent().alias("permanent"))
        .with_columns(_bounce_type().alias("bounce_type"))
        .sort("_row")
    )
    added = ["provider", "category", "category_group", "bounce_type", "permanent", "rule_id"]
    keep = [c for c in original if c not in added]
    extra = [c for c in INPUT_COLUMNS if c not in keep and c in ("smtp_code", "enhanced_code")]
    if keep_hex:
        extra.append("hex_code")
    return lf.select(*keep, *extra, *added)


def classify(frame: pl.DataFrame, rules: Rules | None = None) -> pl.DataFrame:
    """Return `frame` with the classification columns (schema.CLASSIFICATION_SCHEMA) filled.

    `frame` needs (at least) the fact columns the engine reads (`INPUT_COLUMNS`; missing ones
    count as null). Null reply and enhanced codes are filled from the diagnostic. A non-null
    `provider` column, if present, is kept; otherwise the provider comes from the recipient
    domain and relay host. Rows keep their order.
    """
    rules = load_rules() if rules is None else rules
    return _classify(frame.lazy(), rules, keep_hex=False, stage=_collected).collect()
