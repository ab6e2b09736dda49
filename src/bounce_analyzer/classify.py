"""The classification engine: a frame of events in, the same frame with categories out.

The decision order is docs/RULES.md's. Real traffic repeats a few thousand distinct messages
millions of times, so the engine works on distinct values and joins the answers back:

1. per distinct (diagnostic, given codes): codes found in the text, and the normalized text;
2. per distinct (recipient_domain, relay_host): the receiving mailbox provider;
3. per distinct key (reply code, enhanced code, hex code, normalized text, provider, source,
   class, the blocklist the text names, the help page its URL names: `_KEY`): the category,
   in the eight steps of the decision order, from the key's values alone (texts that differ
   only in what normalization masks or in the numbers of the host that answered,
   `mx3.shop41.example`, are one key, and the patterns read the key's text, not one of them);
4. per event: what depends on the event itself (delivered, complained, permanence, bounce type),
   and the provider a provider's own pattern names when step 2 found none.

Events whose category the event itself decides (delivered, complained) skip the text work of
steps 1 and 3. Every step is a polars expression over a whole frame; the only Python loops are
over rules (and over the few (provider, class) combinations of a call), and what depends
only on the rules is prepared once per `Rules` object (its tables also kept in the disk cache
between starts, its expressions built once): a call builds no expression of the rules. A
call's fixed cost is its count of polars steps, each a tenth of a millisecond or so whatever
its rows, so steps that cannot find anything (a join no key can match, a cross join of no
rows) are left out. The providers of step 2 and the decisions of step 3 are also remembered
with the `Rules` object (`_Memory`): the pipeline classifies a file in many calls, and
`explain -` a stream in chunks, and later calls look up the pairs and keys seen before.
Since a key's decision is a function of the key, an answer is the same whichever call, chunk
or order meets its event.

This module holds the decision order. What it builds on lives apart: the normalized text in
normalize.py (reports build their message keys on the same masks), the literals that spare
most regex runs in prefilter.py, and the categories the engine gives by itself in rules.py,
whose loader checks that categories.toml declares each of them.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import polars as pl

from bounce_analyzer import cache, native, normalize, prefilter
from bounce_analyzer.blocklists import blocklist_names, blocklist_of
from bounce_analyzer.direction import directions
from bounce_analyzer.extract import (
    code_class,
    extract_hex_code,
    found_codes,
    with_codes,
)
from bounce_analyzer.normalize import (
    HELP_PAGE_URL,
    grouped_texts,
    normalize_message,
    tokens,
    words,
)
from bounce_analyzer.prefilter import (
    CASE_TRAPS,
    is_plain,
    lowercase_equivalent,
    required_literals,
)
from bounce_analyzer.retry import ASKING_WORDS, retry_after_of
from bounce_analyzer.rules import (
    BLOCKED,
    EVENT_CATEGORIES,
    LIST_BACKED,
    NON_FAILURE_CATEGORIES,
    ON_HOLD,
    RECIPIENT_MISSING,
    UNDECIDED_CATEGORIES,
    UNDEFINED,
    WORDS_RULE,
    Rules,
    load_rules,
)

# The engine's plans are many small steps over a few thousand distinct values: the in-memory
# engine runs them with less CPU than the streaming one (the default of polars 2).
_ENGINE: Final = "in-memory"

#: The enhanced codes that name the sender's address as the bad one (RFC 3463 X.1.7, X.1.8).
_SENDER_ADDRESS_CODE: Final = r"^[45]\.1\.[78]$"

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

#: What a key is: `_grouped` is the normalized text with the numbers of the host that answered
#: masked (`numbered_hosts_alike`); `blocklist` the list the text names (step 3: an address
#: can name one, `delist@microsoft.com`, and the normalized text masks it); `_reason` the name
#: of the help page a URL of the text points to (`?p=DisabledUser`), which the normalized
#: text masks with the rest of the query string. A key's decision reads these values alone
#: (`_decide`), never the text of one of its events, so it is the same in any call.
_KEY = [
    "smtp_code",
    "enhanced_code",
    "hex_code",
    "_grouped",
    "provider",
    "source",
    "class",
    "blocklist",
    "_reason",
]
#: An id the normalized text masked and the number after its dot: Gmail signs each reply with
#: an id of its message, `d9443c01a7336-1f3a1ed8b6esi.298 - gsmtp`, whose mask leaves `.298`
#: (the digits start no word of five): the key takes it as part of the id, or each Gmail text
#: would be a hundred keys.
_DOTTED_ID = (r"<id>\.\d+\b", "<id>")
#: The masks' placeholders (normalize.py) as patterns read them: `<ip>` is `<_ip_>`, so that no
#: pattern's word finds the placeholder's (`\bip\b.{0,40}\brejected` must not read the IP of the
#: host that answered, `host mx.example[<ip>] said: 550 ... rejected`).
_MASKED = ("address", "ip", "id", "time", "date")
_PLACEHOLDERS = ([f"<{name}>" for name in _MASKED], [f"<_{name}_>" for name in _MASKED])
_TEXT = ["diagnostic", "smtp_code", "enhanced_code"]
_HOST = ["recipient_domain", "relay_host"]
_FINAL_EVENTS = ("bounced", "rejected", "dropped")
#: Events whose category the event decides: their text is not classified.
_EVENT_DECIDED = ("delivered", "complained")
#: What step 4 gives each event.
_ANSWERS = ["category", "category_group", "bounce_type", "permanent", "rule_id"]
_ADDED = ["provider", *_ANSWERS, "direction", "blocklist", "retry_after"]
_T = TypeVar("_T")


def provider_of(frame: pl.LazyFrame, rules: Rules) -> pl.LazyFrame:
    """Add `provider` to a frame with `recipient_domain` and `relay_host` columns.

    The recipient domain or its nearest parent in a provider's `domains`, else the first
    provider whose `hosts` pattern matches the relay host, else the first whose `hosts`
    pattern matches the recipient domain, else ``other``. (`classify` then lets a
    provider's own pattern name the provider of an ``other`` event; see docs/RULES.md.)
    """
    prepared = _prepared(rules)
    return frame.with_columns(
        pl.coalesce(
            prepared.by_domain,
            _by_hosts(_HOST_NAME, prepared),
            _by_hosts(_DOMAIN_NAME, prepared),
            pl.lit(OTHER),
        ).alias("provider")
    )


def _by_hosts(name: pl.Expr, prepared: _Prepared) -> pl.Expr:
    """The provider of the first `hosts` pattern matching `name`, or null."""
    found: pl.Expr = pl.lit(None, pl.String)
    for regex, provider in reversed(prepared.hosts.select("host_regex", "host_provider").rows()):
        found = pl.when(name.str.contains(regex)).then(pl.lit(provider)).otherwise(found)
    return found


#: The provider of events that nothing names.
OTHER: Final = "other"
#: The relay host and the recipient domain as the `hosts` patterns see them.
_HOST_NAME = pl.col("relay_host").str.to_lowercase().str.strip_chars(". ")
_DOMAIN_NAME = pl.col("recipient_domain").str.to_lowercase().str.strip_chars(". ")


def _by_domain(rules: Rules) -> pl.Expr:
    """The provider of the recipient domain or its nearest parent in `domains`, or null."""
    domain = _DOMAIN_NAME
    mapping = rules.provider_domains
    old, new = mapping["domain"].to_list(), mapping["provider"].to_list()

    def lookup(name: pl.Expr) -> pl.Expr:
        return name.replace_strict(old, new, default=None, return_dtype=pl.String)

    return pl.coalesce(
        lookup(domain),
        *(
            lookup(domain.str.extract(rf"((?:[^.]+\.){{{labels - 1}}}[^.]+)$", 1))
            for labels in range(7, 1, -1)
        ),
    )


# --- what depends only on the rules, prepared once per Rules object --------------------------


#: How many (recipient domain, relay host) pairs a `Rules` object remembers: oldest go first.
_REMEMBERED = 50_000
#: How many keys' decisions a `Rules` object remembers: oldest go first. (A generated 1M-line
#: Postfix log holds about 8,500 keys, which take 3 MiB.)
_DECISIONS_REMEMBERED = 20_000
#: What step 3 decides for a key.
_DECIDED = ["key_category", "key_rule", "key_of"]


@dataclass
class _Memory:
    """Answers already found with one `Rules` object, so that later calls look them up.

    The pipeline classifies a file in many calls, and `explain -` a stream in chunks: the same
    (recipient domain, relay host) pairs and the same keys come back in each. A key's decision
    is a function of the key alone (`_KEY`), so a later call decides only the keys it has not
    seen. An update replaces the whole frame, under `lock` for the keys (two calls remember
    them in turn), so a call running in another thread at the same time sees the old frame or
    the new one (at worst it works a pair or a key out again).
    """

    hosts: pl.DataFrame  # recipient_domain, relay_host, provider
    decisions: pl.DataFrame | None = None  # the _KEY columns and _DECIDED (None: none yet)
    # (provider, reply class) -> whether each pattern may decide its texts (`_eligible`)
    eligible: dict[tuple[str | None, int | None], pl.Series] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Prepared:
    table_rows: pl.DataFrame  # deciding code-table rows, with normalized message and its words
    # (rows, key columns, row columns, found by hex code): the joins that find a key's rows
    table_joins: list[tuple[pl.DataFrame, list[str], list[str], bool]]
    # pattern_index, pattern_id, regex, lower_regex (the regex without (?i) where that is the
    # same on a lower-case text), pattern_provider, pattern_of, ...
    patterns: pl.DataFrame
    literals: pl.DataFrame  # literal, pattern_index: the pattern is tried where its literal is
    literal_list: list[str]
    literal_targets: list[list[int]]  # the pattern_index of each of literal_list's patterns
    unfiltered: pl.DataFrame  # pattern_index of the patterns tried on every message
    enhanced: pl.DataFrame  # enhanced_code, exact_rule, exact_category
    x_codes: pl.DataFrame  # x_code, x_rule, x_category
    replies: pl.DataFrame  # smtp_code, reply_rule, reply_category
    categories: pl.DataFrame  # category, category_group, _hard
    by_domain: pl.Expr  # see provider_of
    hosts: pl.DataFrame  # host_index, host_regex, host_provider: the `hosts` patterns in order
    host_literals: pl.DataFrame  # literal, host_index: the pattern is tried where its literal is
    host_literal_list: list[str]
    host_unfiltered: pl.DataFrame  # host_index of the patterns tried on every host
    ip_lists: list[str]  # the blocklists of sending IP addresses (docs/RULES.md, step 2)
    # the blocklists' names and the words that ask for a wait: a text without any of them
    # names no list and asks for no wait (`_named_and_waits`)
    named_or_asking: list[str]
    # what a key's first matching pattern says (`_pattern_answers`) and what `_decide` selects
    # (`_decision`)
    pattern_answers: pl.DataFrame
    pattern_providers: frozenset[str]  # the providers some pattern is of (`_eligible`)
    decision: list[str | pl.Expr]
    memory: _Memory


#: What `_prepare` builds that the disk cache does not keep: expressions, built again from
#: the rules (a few milliseconds), and the memory of a run.
_NOT_KEPT = ("by_domain", "decision", "memory")
#: The fields of `_Prepared` the disk cache keeps (`_prepare_from_disk`).
_KEPT = {one.name for one in fields(_Prepared)} - set(_NOT_KEPT)
#: What the engine derived from each `Rules` object in use: an entry goes with its object.
_PREPARED: weakref.WeakKeyDictionary[Rules, _Prepared] = weakref.WeakKeyDictionary()
_PREPARING = threading.Lock()


def _prepared(rules: Rules) -> _Prepared:
    """What the engine derives from `rules` alone, worked out once per `Rules` object.

    It also holds the answers remembered with `rules` (`_Memory`), so another `Rules` object
    (other user rules) never sees them.
    """
    prepared = _PREPARED.get(rules)
    if prepared is None:
        # the pipeline classifies in a thread of its own: one preparation, one memory
        with _PREPARING:
            prepared = _PREPARED.get(rules)
            if prepared is None:
                prepared = _PREPARED[rules] = _prepare_from_disk(rules)
    return prepared


#: The rules' tables `_prepare` reads (besides `provider_domains`, which `_by_domain` reads).
_PREPARED_FROM = (
    "codes",
    "patterns",
    "providers",
    "provider_hosts",
    "categories",
    "blocklists",
)
#: The modules whose code `_prepare` runs (its answer is theirs as well as the tables').
_PREPARED_BY = ("classify", "prefilter", "normalize", "blocklists", "retry", "rules", "schema")


def _prepare_from_disk(rules: Rules) -> _Prepared:
    """`_prepare(rules)`, with its tables read back from the disk cache (cache.py) where an
    earlier start prepared the same tables with the same code: at a start the preparation took
    0.015-0.025 s of CPU, about 50 steps of polars over the rules' tables, and reading it back
    0.002 s. The key is the tables' own bytes (polars' serialization, 0.4 ms), not the files
    they came from, so it holds for user rules too, and for rules a program built itself."""
    tables = hashlib.sha256()
    for name in _PREPARED_FROM:
        tables.update(getattr(rules, name).serialize())
    modules = [sys.modules[f"bounce_analyzer.{name}"].__file__ for name in _PREPARED_BY]
    key = cache.fingerprint(
        [Path(module) for module in modules if module is not None],
        pl.__version__,
        tables.hexdigest(),
    )
    stored = cache.load("prepared", key)
    if isinstance(stored, dict) and stored.keys() == _KEPT:
        return _Prepared(
            **stored,
            by_domain=_by_domain(rules),
            decision=_decision(stored["categories"], stored["ip_lists"]),
            memory=_new_memory(),
        )
    prepared = _prepare(rules)
    cache.store("prepared", key, {name: getattr(prepared, name) for name in _KEPT})
    return prepared


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


def _table_joins(
    table_rows: pl.DataFrame,
) -> list[tuple[pl.DataFrame, list[str], list[str], bool]]:
    """The joins of step 1, less those that cannot find a row.

    A provider's or source's row with a reply code is found by that code and, if the row has
    one, the enhanced code; a row with an enhanced code only, by that code; any row with a hex
    code, by that code.
    """
    scoped = table_rows.filter(pl.col("kind") == "provider")
    with_reply = pl.col("row_smtp").is_not_null()
    with_enhanced = pl.col("row_enhanced").is_not_null()
    joins = []
    for by in ("provider", "source"):
        mine = scoped.filter(pl.col(f"row_{by}").is_not_null())
        row_by = f"row_{by}"
        joins += [
            (
                mine.filter(with_reply & ~with_enhanced),
                [by, "smtp_code"],
                [row_by, "row_smtp"],
                False,
            ),
            (
                mine.filter(with_reply & with_enhanced),
                [by, "smtp_code", "enhanced_code"],
                [row_by, "row_smtp", "row_enhanced"],
                False,
            ),
            (
                mine.filter(~with_reply & with_enhanced),
                [by, "enhanced_code"],
                [row_by, "row_enhanced"],
                False,
            ),
        ]
    hexed = table_rows.filter(pl.col("row_hex").is_not_null())
    joins.append((hexed, ["hex_code"], ["row_hex"], True))
    return [join for join in joins if join[0].height]


def _literal_frame(regexes: list[str], index: str, analysed: dict[str, _Analysis]) -> pl.DataFrame:
    """(`literal`, `index`): the required literals of each of `regexes` (`analysed`, as
    `_analysed` gives them), by its position."""
    return pl.DataFrame(
        [
            {"literal": literal, index: position}
            for position, regex in enumerate(regexes)
            for literal in sorted(analysed[regex].literals or ())
        ],
        schema={"literal": pl.String, index: pl.UInt32},
    ).unique()


class _Analysis(NamedTuple):
    """What the prefilter (prefilter.py) tells of a regex."""

    literals: frozenset[str] | None  # required_literals
    plain: bool  # is_plain
    lowercase: bool  # lowercase_equivalent


def _analysis(regex: str) -> _Analysis:
    return _Analysis(required_literals(regex), is_plain(regex), lowercase_equivalent(regex))


def _analysed(regexes: list[str]) -> dict[str, _Analysis]:
    """The prefilter's `_Analysis` of each of `regexes`, kept on disk between starts
    (cache.py): the analysis runs in Python, about a hundredth of a second for the built-in
    patterns at each start."""
    key = cache.fingerprint([Path(prefilter.__file__)], "analysis")
    stored = cache.load("prefilter", key)
    known = stored if isinstance(stored, dict) else {}
    found = {regex: known[regex] if regex in known else _analysis(regex) for regex in regexes}
    if found.keys() - known.keys():
        # the patterns and the host patterns of every rules folder in use are kept, up to a
        # bound: past it, only these
        kept = {**known, **found} if len(known) < _ANALYSES_KEPT else found
        cache.store("prefilter", key, kept)
    return found


#: How many regexes' analyses the disk cache keeps at most (the built-in rules have 400).
_ANALYSES_KEPT = 5000


def _normalized_messages(messages: pl.Series) -> list[pl.Series]:
    """`row_message` and `row_tokens`: `normalize_message` of each of `messages` (the code
    tables') and its `tokens`, kept on disk between starts (cache.py): the masks' regexes,
    compiled for them at each start, took 0.015 s."""
    values = messages.to_list()
    key = cache.fingerprint([Path(normalize.__file__)], "messages", values)
    stored = cache.load("messages", key)
    if isinstance(stored, tuple) and len(stored) == 2:
        normalized, found = stored
    else:
        frame = messages.to_frame("message").select(
            normalize_message(pl.col("message")).alias("normalized")
        )
        normalized = frame["normalized"].to_list()
        found = frame.select(tokens(pl.col("normalized")))["normalized"].to_list()
        cache.store("messages", key, (normalized, found))
    return [
        pl.Series("row_message", normalized, dtype=pl.String),
        pl.Series("row_tokens", found, dtype=pl.List(pl.String)),
    ]


def _prepare(rules: Rules) -> _Prepared:
    table_rows = (
        rules.codes.with_columns(_normalized_messages(rules.codes["message"]))
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
            "row_message",
            "row_tokens",
        )
    )
    regexes = rules.patterns["regex"].to_list()
    owned = (
        rules.providers.select("provider", pl.col("patterns").alias("id"))
        .explode("id")
        .drop_nulls()
    )
    host_regexes = rules.provider_hosts["regex"].to_list()
    analysed = _analysed([*regexes, *host_regexes])
    plain = [index for index, regex in enumerate(regexes) if analysed[regex].plain]
    lowercase = [regex for regex in regexes if analysed[regex].lowercase]
    literals = _literal_frame(regexes, "pattern_index", analysed)
    patterns = rules.patterns.with_row_index("pattern_index").select(
        "pattern_index",
        pl.col("id").alias("pattern_id"),
        pl.col("rule_id").alias("pattern_rule"),
        pl.col("rule_id").str.starts_with(WORDS_RULE).alias("pattern_words"),
        ("(?i)" + pl.col("regex")).alias("regex"),
        pl.when(pl.col("regex").is_in(pl.Series(lowercase, dtype=pl.String).implode()))
        .then(pl.col("regex"))
        .alias("lower_regex"),
        pl.col("provider").alias("pattern_provider"),
        # the provider whose `patterns` lists it (providers.toml)
        pl.col("id")
        .replace_strict(owned["id"], owned["provider"], default=None)
        .alias("pattern_of"),
        "classes",
        pl.col("category").alias("pattern_category"),
        pl.col("pattern_index").is_in(pl.Series(plain, dtype=pl.UInt32).implode()).alias("plain"),
    )
    filtered = set(literals["pattern_index"].to_list())
    hosts = rules.provider_hosts.with_row_index("host_index").select(
        "host_index", pl.col("regex").alias("host_regex"), pl.col("provider").alias("host_provider")
    )
    host_literals = _literal_frame(host_regexes, "host_index", analysed)
    enhanced = _first_rows(rules, "enhanced", "enhanced_code")
    owners: dict[str, list[int]] = {}
    for literal, index in literals.sort("pattern_index").iter_rows():
        owners.setdefault(literal, []).append(index)
    literal_list = sorted(owners)
    categories = rules.categories.select(
        "category", pl.col("group").alias("category_group"), pl.col("hard").alias("_hard")
    )
    ip_lists = rules.blocklists.filter(pl.col("lists").list.contains("ip"))["blocklist"].to_list()
    return _Prepared(
        table_rows=table_rows,
        table_joins=_table_joins(table_rows),
        patterns=patterns,
        literals=literals,
        literal_list=literal_list,
        literal_targets=[owners[literal] for literal in literal_list],
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
        categories=categories,
        by_domain=_by_domain(rules),
        hosts=hosts,
        host_literals=host_literals,
        host_literal_list=sorted(set(host_literals["literal"].to_list())),
        host_unfiltered=hosts.filter(
            ~pl.col("host_index").is_in(host_literals["host_index"].implode())
        ).select("host_index"),
        ip_lists=ip_lists,
        named_or_asking=[*blocklist_names(rules.blocklists)[0], *ASKING_WORDS],
        pattern_answers=_pattern_answers(patterns),
        pattern_providers=frozenset(patterns["pattern_provider"].drop_nulls().to_list()),
        decision=_decision(categories, ip_lists),
        memory=_new_memory(),
    )


def _new_memory() -> _Memory:
    """A `_Memory` that holds nothing yet."""
    return _Memory(
        hosts=pl.DataFrame(
            schema={"recipient_domain": pl.String, "relay_host": pl.String, "provider": pl.String}
        )
    )


def _pattern_answers(patterns: pl.DataFrame) -> pl.DataFrame:
    """What a key whose first matching pattern is a row of `patterns` gets, by
    `pattern_index`: its rule, category and providers (`pattern_*`), or, for a pattern of the
    words tier, its category and rule as `words_*`. The words tier (its patterns come last, so
    a key matches one only where no other pattern matched) is a step of its own: for steps 2
    and 3 no pattern matched."""
    return patterns.select(
        "pattern_index",
        pl.when("pattern_words").then("pattern_category").alias("words_category"),
        pl.when("pattern_words").then("pattern_rule").alias("words_rule"),
        *[
            pl.when(~pl.col("pattern_words")).then(name).alias(name)
            for name in ("pattern_rule", "pattern_category", "pattern_of", "pattern_provider")
        ],
    )


# --- the decision order, over distinct keys ---------------------------------------------------


def _step_tables(keys: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """Steps 1 and 4: the provider's or source's own table (and any table's Outlook hex codes).

    `keys` has `_key`, the codes, `provider`, `source` and `_grouped`; the answer has
    `_key`, `table_rule`, `table_category` and `table_by_text` for the keys a row decides.
    `table_by_text` is true where the row's words are in the text (or its hex code is): step
    1; false where the row is only the key's one row with both its codes: step 4, which
    comes after the patterns and the blocklists, since a code says a class, not what
    happened.

    A join is left out where a column of the keys holds none of the values its rows hold
    (most keys are of no provider with a table of its own, and have no hex code): it finds
    no row, and each join costs a few steps whatever it finds.
    """
    joins = [
        (table, left, right, via_hex)
        for table, left, right, via_hex in prepared.table_joins
        if all(
            keys[by].is_in(table[row].implode()).any() for by, row in zip(left, right, strict=True)
        )
    ]
    if not joins:
        return pl.DataFrame(
            schema={
                "_key": pl.UInt64,
                "table_rule": pl.String,
                "table_category": pl.String,
                "table_by_text": pl.Boolean,
            }
        )
    probe = keys.lazy().select(
        "_key", "smtp_code", "enhanced_code", "hex_code", "provider", "source"
    )
    candidates = pl.concat(
        [
            probe.join(table.lazy(), left_on=left, right_on=right, coalesce=False).with_columns(
                pl.lit(via_hex).alias("via_hex")
            )
            for table, left, right, via_hex in joins
        ],
        how="diagonal_relaxed",
    )
    # a row's tokens hold no stop word and set_intersection counts distinct words, so the key's
    # plain words give the same overlap as its tokens
    key_words = (
        keys.lazy()
        .join(candidates.select("_key").unique(), on="_key", how="semi")
        .select("_key", "_grouped", words(pl.col("_grouped")).alias("tokens"))
    )
    candidates = candidates.join(key_words, on="_key", how="left")
    contained = pl.col("row_message").is_not_null() & pl.col("_grouped").str.contains(
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
        (contained | (pl.col("score") >= 0.75) | pl.col("via_hex")).alias("by_text"),
    )
    return (
        scored.filter(pl.col("by_text") | (both_codes & sole))
        .sort(["score", "user", "order"], descending=[True, True, False])
        .unique(subset=["_key"], keep="first", maintain_order=True)
        .select(
            "_key",
            pl.col("rule_id").alias("table_rule"),
            pl.col("row_category").alias("table_category"),
            pl.col("by_text").alias("table_by_text"),
        )
        .collect(engine=_ENGINE)
    )


def _pattern_candidates(
    keys: pl.LazyFrame, prepared: _Prepared
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Step 2, without the regexes: (`_key`, `pattern_index`) of the first plain pattern found
    in each key's text, and the (`_key`, `pattern_index`, `text`, `regex`) pairs left to try,
    in pattern order.

    A pattern is only tried on the texts that hold one of its required literals (found for
    all patterns at once, Aho-Corasick), on texts that are not plain ASCII, and, for patterns
    without such literals, on every text; so each regex runs over a few texts, not all.
    A pair is a number (the pattern's index times the texts' count, plus the text's
    position): the pairs are made unique and put in pattern order as numbers, and what each
    pair reads is gathered by position, not joined.
    """
    ascii_only = pl.col("text").str.len_bytes() == pl.col("text").str.len_chars()
    texts = (
        keys.filter(pl.col("text").is_not_null())
        .select(
            "_key",
            "text",
            "provider",
            "class",
            ascii_only.alias("ascii"),
            pl.col("text").str.to_lowercase().alias("lower"),
            # whether a pattern's lower-case form may be matched against the lower-case text
            (~pl.col("text").str.contains_any(list(CASE_TRAPS))).alias("foldable"),
        )
        .collect(engine=_ENGINE)
        .with_row_index("_at")
    )
    count, patterns = texts.height, prepared.patterns
    plain_texts = texts.filter("ascii").select("_at", "lower")
    pairs = [_by_literals(plain_texts, prepared)]
    # (the pairs that cannot be, with no pattern tried on every text or no text that is not
    # plain ASCII, are not made: each step costs a call of its own, whatever its rows)
    if prepared.unfiltered.height and plain_texts.height:
        pairs.append(plain_texts.select("_at").join(prepared.unfiltered, how="cross"))
    if plain_texts.height < count:
        pairs.append(
            texts.filter(~pl.col("ascii"))
            .select("_at")
            .join(patterns.select("pattern_index"), how="cross")
        )
    # each pair once, in pattern order (then text order)
    numbers = pl.concat([_pair_number(pair, count) for pair in pairs]).unique().sort()
    at = (numbers % count).cast(pl.UInt32)
    index = (numbers // count).cast(pl.UInt32)
    # whether a pattern may decide a text: the pattern's provider and classes against each
    # distinct (provider, class) of the texts, worked out once per such combination
    # (a group-by that gives each combination its texts, put back by position: a join back
    # to the texts cost four times as much on a few texts)
    combinations = texts.group_by("provider", "class").agg("_at")
    spread = combinations.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_combination"), "_at"
    ).explode("_at")
    combination = pl.repeat(0, count, dtype=pl.UInt32, eager=True).scatter(
        spread["_at"], spread["_combination"]
    )
    eligible = pl.concat(
        [
            pl.Series(dtype=pl.Boolean),  # (no text, no combination)
            *(
                _eligible(prepared, provider, code_class)
                for provider, code_class in combinations.select("provider", "class").iter_rows()
            ),
        ]
    )
    kept = eligible.gather(
        combination.gather(at).cast(pl.UInt64) * patterns.height + index
    ).arg_true()
    at, index = at.gather(kept), index.gather(kept)
    # a plain pattern found by its literal in an ASCII text matches: no regex to run; a regex
    # only runs where no earlier pattern is already known to match
    matched = patterns["plain"].gather(index) & texts["ascii"].gather(at)
    sure = matched.arg_true()
    known = pl.DataFrame({"_at": at.gather(sure), "pattern_index": index.gather(sure)}).unique(
        "_at", keep="first", maintain_order=True
    )
    first_known = pl.repeat(None, count, dtype=pl.UInt32, eager=True).scatter(
        known["_at"], known["pattern_index"]
    )
    before = first_known.gather(at)
    left = ~matched & (before.is_null() | (index < before))
    rows = left.fill_null(False).arg_true()
    at, index = at.gather(rows), index.gather(rows)
    # a regex without (?i) against the lower-case text where that is the same (half the time
    # to compile: prefilter.lowercase_equivalent): each pair reads the text or its lower-case
    # form, the regex or its lower-case form (the second half of each pair of columns, in one
    # chunk: a gather from one chunk shares its strings, from two copies each of them)
    lowered = texts["foldable"].gather(at) & patterns["lower_regex"].gather(index).is_not_null()
    lowered = lowered.cast(pl.UInt32)
    tried = pl.DataFrame(
        [
            texts["_key"].gather(at),
            index.alias("pattern_index").set_sorted(),
            pl.concat([texts["text"], texts["lower"]])
            .rechunk()
            .gather(at + lowered * count)
            .alias("text"),
            pl.concat([patterns["regex"], patterns["lower_regex"]])
            .rechunk()
            .gather(index + lowered * patterns.height)
            .alias("regex"),
        ]
    )
    return (
        known.select(texts["_key"].gather(known["_at"]).alias("_key"), "pattern_index"),
        tried,
    )


def _by_literals(texts: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """(`_at`, `pattern_index`) of each of `texts` (`_at`, `lower`: ASCII texts lower-cased)
    and each pattern one of whose required literals it holds: in C where the helper is built
    (`native.literal_pairs`, each pair once), else by polars' Aho-Corasick."""
    found = native.literal_pairs(
        texts["lower"], prepared.literal_list, prepared.literal_targets, prepared.patterns.height
    )
    if found is not None:
        return found.select(
            texts["_at"].gather(found["_at"]), pl.col("target").alias("pattern_index")
        )
    return (
        texts.select(
            "_at",
            pl.col("lower")
            .str.extract_many(prepared.literal_list, overlapping=True)
            .alias("literal"),
        )
        .explode("literal")
        .join(prepared.literals, on="literal")
        .select("_at", "pattern_index")
    )


def _pair_number(pairs: pl.DataFrame, count: int) -> pl.Series:
    """Each (text position `_at`, `pattern_index`) pair of `pairs` as one number: the
    pattern's index times the texts' `count`, plus the position."""
    return (pairs["pattern_index"].cast(pl.UInt64) * count + pairs["_at"]).alias("_pair")


def _eligible(prepared: _Prepared, provider: str | None, code_class: int | None) -> pl.Series:
    """Whether each pattern may decide a text of `provider` and reply class `code_class`: a
    pattern of no provider or of that one, of no classes or of that class (or the text has
    none). Worked out once per (provider, class) with the same rules (`_Memory`); a provider
    no pattern is of is remembered as none, whose patterns are the same (a given `provider`
    column can hold any name: the remembered combinations stay few)."""
    if provider not in prepared.pattern_providers:
        provider = None
    known = prepared.memory.eligible.get((provider, code_class))
    if known is not None:
        return known
    patterns = prepared.patterns
    owner, classes = patterns["pattern_provider"], patterns["classes"]
    by_provider = owner.is_null() if provider is None else owner.is_null() | (owner == provider)
    by_class = (
        classes.is_null() | classes.list.contains(code_class)
        if code_class is not None
        else pl.repeat(True, patterns.height, dtype=pl.Boolean, eager=True)
    )
    found = by_provider & by_class
    prepared.memory.eligible[(provider, code_class)] = found
    return found


#: The bands `_first_matches` tries the (key, pattern) pairs in.
_BANDS = 8


def _first_matches(tried: pl.DataFrame) -> pl.DataFrame:
    """(`_key`, `pattern_index`) of the pairs of `tried` (in pattern order) whose regex matches
    the text, for at least the first pattern in order that matches each key.

    The pairs go in bands of about an eighth of them each, in pattern order, and a key that
    matched in a band is not tried in later ones: only its first match counts, and on
    bounce texts most keys match early, so about half the regex runs are spared.
    """
    # a band ends where a pattern ends: each regex is compiled once, in the one band that has it
    index = tried["pattern_index"]
    size = tried.height // _BANDS + 1
    ends = sorted(
        {
            int(index.search_sorted(index[end], side="right"))
            for end in range(size - 1, tried.height, size)
        }
        | {tried.height}
    )
    found: list[pl.DataFrame] = []
    done = pl.Series("_key", [], dtype=pl.UInt64)
    start = 0
    for end in ends:
        band = tried.slice(start, end - start)
        if done.len():
            band = band.filter(~pl.col("_key").is_in(done.implode()))
        # eager, in pattern order: each regex is compiled once, not once per text
        matches = band.filter(pl.col("text").str.contains(pl.col("regex"))).select(
            "_key", "pattern_index"
        )
        found.append(matches)
        done = pl.concat([done, matches["_key"]])
        start = end
    return pl.concat(found) if found else tried.select("_key", "pattern_index")


def _decisions(keys: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """`_key` and `_DECIDED` for each of `keys` (`_key` and the `_KEY` columns): looked up
    where an earlier call with the same rules decided the key, else decided (`_decide`) and
    remembered (`_Memory`)."""
    memory = prepared.memory
    known = memory.decisions
    if known is None:
        new, found = keys, None
    else:
        looked_up = keys.join(known, on=_KEY, how="left", nulls_equal=True)
        # (every decision has a rule: a null one is a key not seen before)
        seen = pl.col("key_rule").is_not_null()
        found = looked_up.filter(seen).select("_key", *_DECIDED)
        new = looked_up.filter(~seen).select(keys.columns)
        if new.height == 0:
            return found
    decided = _decide(new, prepared)
    remembered = new.join(decided, on="_key").select(*_KEY, *_DECIDED)
    with memory.lock:
        memory.decisions = _remember(
            memory.decisions, remembered, on=_KEY, bound=_DECISIONS_REMEMBERED
        )
    return decided if found is None else pl.concat([found, decided])


def _help_pages(texts: pl.Series) -> pl.Series:
    """`_help_page` of each of `texts` (named ``_reason``), in order: only the texts that hold
    ``p=`` (in any case), which each page's name starts with, are read."""
    named = texts.str.contains_any(["p="], ascii_case_insensitive=True)
    return _read_where(texts, named, _help_page, "_reason")


def _read_where(
    texts: pl.Series, marked: pl.Series, read: Callable[[pl.Expr], pl.Expr], name: str
) -> pl.Series:
    """`read` of each of `texts` that `marked` holds true for, null for the others (a text
    column named `name`, in order): the texts a cheap literal search rules out are not read."""
    at = marked.fill_null(False).arg_true()
    found = pl.repeat(None, len(texts), dtype=pl.String, eager=True).alias(name)
    if at.is_empty():
        return found
    read_texts = texts.gather(at).to_frame("text").select(read(pl.col("text")))
    return found.scatter(at, read_texts.to_series())


def _help_page(text: pl.Expr) -> pl.Expr:
    """The help page the first URL of `text` with a query string names, as report keys keep
    it (normalize.py): `p=nosuchuser` of Google's
    `https://support.google.com/mail/?p=NoSuchUser`, lower-cased; null where it names none."""
    return text.str.to_lowercase().str.extract(HELP_PAGE_URL, 2)


def _pattern_text(grouped: pl.Expr, reason: pl.Expr) -> pl.Expr:
    """What the patterns read of a key: its normalized text (`_grouped`), the masks'
    placeholders spelt as `_PLACEHOLDERS` says and the help page its first URL names put
    back (`https://support.google.com/mail/?p=disableduser`)."""
    # (as plain text, all at once: Aho-Corasick, no regex)
    spelt = grouped.str.replace_many(*_PLACEHOLDERS)
    # (a `$` of the page's name is itself, not a reference to a group of the match)
    page = reason.str.replace_all("$", "$$", literal=True)
    return spelt.str.replace(r"(https?://[^\s?#]*\?)", pl.lit("${1}") + page)


def _decide(keys: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """Category and rule_id for each distinct key (steps 1 to 8 of docs/RULES.md), from the
    key's values alone (`_KEY`): its normalized text, codes, provider, source, class, the
    blocklist its text names (step 3) and the help page its URL names."""
    keys = keys.with_columns(
        _pattern_text(pl.col("_grouped"), pl.col("_reason")).alias("text"),
        pl.col("blocklist").alias("named_list"),
    )
    lazy = keys.lazy()
    found = _step_tables(keys, prepared)
    if prepared.patterns.height:
        by_text = found.filter(pl.col("table_by_text"))
        undecided = keys.join(by_text, on="_key", how="anti").lazy()
        plain, tried = _pattern_candidates(undecided, prepared)
    else:
        plain = pl.DataFrame(schema={"_key": pl.UInt64, "pattern_index": pl.UInt32})
        tried = plain.with_columns(text=pl.lit(None, pl.String), regex=pl.lit(None, pl.String))
    matched = _first_matches(tried)
    patterns = (
        pl.concat([plain.lazy(), matched.lazy()])
        .group_by("_key")
        .agg(pl.col("pattern_index").min())
        .join(prepared.pattern_answers.lazy(), on="pattern_index")
    )
    decided = (
        # (the columns the decision reads: each join gathers every column it carries)
        lazy.select("_key", "smtp_code", "enhanced_code", "text", "named_list")
        .join(found.lazy(), on="_key", how="left")
        .join(patterns, on="_key", how="left")
        .join(prepared.enhanced.lazy(), on="enhanced_code", how="left")
        .join(prepared.x_codes.lazy(), left_on=_X_FORM, right_on="x_code", how="left")
        .join(prepared.replies.lazy(), on="smtp_code", how="left")
    )
    return decided.select(*prepared.decision).collect(engine=_ENGINE)


#: The X form of an enhanced code (`X.1.1` of `5.1.1`), as the code tables' X rows hold it.
_X_FORM = pl.lit("X") + pl.col("enhanced_code").str.slice(1)


def _decision(categories: pl.DataFrame, ip_lists: list[str]) -> list[str | pl.Expr]:
    """What `_decide` selects of its joined key rows (`_key` and `_DECIDED`): the steps of
    docs/RULES.md in order, as one `coalesce` each for the category and the rule. It depends
    on the rules alone (their categories and the lists of sending IPs), so `_prepare` builds
    it once: a call builds no expression of it."""
    has_text = pl.col("text").str.strip_chars().str.len_chars().fill_null(0) > 0
    default = pl.when(has_text).then(pl.lit(ON_HOLD)).otherwise(pl.lit(UNDEFINED))
    by_words = pl.col("table_by_text").fill_null(False)
    # step 3 needs the category (a user's categories.toml may lack it)
    named = pl.col("named_list").is_not_null() & pl.lit(
        categories["category"].is_in([BLOCKED]).any()
    )
    # a list of sending IPs says who is refused and why before a generic pattern's words
    # (`Mail refused - see cbl.abuseat.org` is a block, not a policy), except words about the
    # sender's address or the message's links (`mailfrom domain is listed in spamhaus`,
    # `URL listed at ...`), which a list's name backs; a provider's own text (its patterns,
    # `SC-001 ... on our block list`) and a pattern that says `blocked` keep their more exact
    # rule; lists of domains and links come after the patterns
    # (a key no pattern matched has no pattern provider either: `generic` holds)
    generic = pl.col("pattern_provider").is_null() & pl.col("pattern_of").is_null()
    named_ip = (
        named
        & pl.col("named_list").is_in(ip_lists)
        & generic
        & ~pl.col("pattern_category").fill_null("").is_in([BLOCKED, *LIST_BACKED])
    )
    by_list = (
        pl.when(named_ip).then(pl.lit(BLOCKED)),
        pl.when(named_ip).then(pl.lit("blocklist:") + pl.col("named_list")),
    )
    # an enhanced code of the sender's address (X.1.7, X.1.8) says whose address the generic
    # words of a missing address or domain are about (`550 5.1.7 Invalid address`): the code
    # table's sender row decides, not the recipient's pattern
    sender_code = pl.col("enhanced_code").str.contains(_SENDER_ADDRESS_CODE).fill_null(False)
    of_sender = generic & pl.col("pattern_category").is_in(RECIPIENT_MISSING) & sender_code
    of_sender_words = pl.col("words_category").is_in(RECIPIENT_MISSING) & sender_code
    by_pattern = (
        pl.when(~of_sender).then("pattern_category"),
        pl.when(~of_sender).then("pattern_rule"),
    )
    # the order of docs/RULES.md: what the words say, then what the codes alone say
    steps = [
        (pl.when(by_words).then("table_category"), pl.when(by_words).then("table_rule")),
        by_list,
        by_pattern,
        (
            pl.when(named).then(pl.lit(BLOCKED)),
            pl.when(named).then(pl.lit("blocklist:") + pl.col("named_list")),
        ),
        (pl.when(~by_words).then("table_category"), pl.when(~by_words).then("table_rule")),
        ("exact_category", "exact_rule"),
        ("x_category", "x_rule"),
        # the words tier: what the words say in general, before what the codes alone say (but
        # not a missing address against a code of the sender's address, as in step 2)
        (
            pl.when(~of_sender_words).then("words_category"),
            pl.when(~of_sender_words).then("words_rule"),
        ),
        ("reply_category", "reply_rule"),
        (default, pl.lit("default:") + default),
    ]
    return [
        "_key",
        pl.coalesce([category for category, _ in steps]).alias("key_category"),
        pl.coalesce([rule for _, rule in steps]).alias("key_rule"),
        # the provider the deciding rule is of: only a pattern (step 2) can decide for a key
        # whose provider is other, and then only if no table row's words decided before it
        pl.when(~by_words).then(pl.col("pattern_of")).alias("key_of"),
    ]


# --- distinct values --------------------------------------------------------------------------


def _remember(
    known: pl.DataFrame | None,
    new: pl.DataFrame,
    *,
    on: list[str],
    bound: int,
) -> pl.DataFrame:
    """`known` rows with the `new` ones appended (rows told apart by `on`), keeping the newest
    `bound` rows. The new rows' texts are copied: a column of events may point into their
    whole input batch (the C tokenizers' views), which a remembered row would keep alive for
    the rest of the run."""
    new = new.with_columns(pl.col(pl.String) + pl.lit(""))
    if known is None:
        both = new
    else:
        # another thread may have remembered some of them meanwhile: a row must be there once
        new = new.join(known, on=on, how="anti", nulls_equal=True)
        both = pl.concat([known, new])
    if both.height > bound:
        both = both.tail(bound)
    # concat appends chunks: a lookup into many small chunks is slower than into one
    return both.rechunk() if both.n_chunks() > 16 else both


def _providers(hosts: pl.DataFrame, prepared: _Prepared) -> pl.Series:
    """`provider` for each row of `hosts` (`recipient_domain`, `relay_host`), in order.

    Worked out once per distinct pair and joined back onto the rows: a chunk of events names
    a few dozen pairs (55 in 72k events of generated Exim lines), and the steps after this
    one cost per row (`_pair_providers`).
    """
    if hosts.height > 1 and all(hosts[name].null_count() == hosts.height for name in _HOST):
        # nothing names a provider (`explain` of bare texts): one pair, the same for every row
        (provider,) = _pair_providers(hosts.head(1), prepared)
        return pl.repeat(provider, hosts.height, dtype=pl.String, eager=True).alias("provider")
    pairs = hosts.select(_HOST).unique()
    if pairs.height == hosts.height:  # (every row its own pair: nothing to join back)
        return _pair_providers(hosts.select(_HOST), prepared)
    found = pairs.with_columns(_pair_providers(pairs, prepared))
    return hosts.join(found, on=_HOST, how="left", nulls_equal=True, maintain_order="left")[
        "provider"
    ]


def _pair_providers(hosts: pl.DataFrame, prepared: _Prepared) -> pl.Series:
    """`provider` for each row of `hosts` (`recipient_domain`, `relay_host`), in order.

    Pairs seen in an earlier call are looked up; for new ones, see `_new_providers`. Relay
    hosts that no `hosts` pattern can match are left out first (`_naming_host`).
    """
    hosts = hosts.with_columns(_naming_host(prepared))
    memory = prepared.memory
    found = hosts.join(memory.hosts, on=_HOST, how="left", nulls_equal=True, maintain_order="left")
    new = found.filter(pl.col("provider").is_null()).select(_HOST).unique()
    if new.height == 0:
        return found["provider"]
    worked_out = _new_providers(new, prepared)
    with memory.lock:  # (two calls remember their pairs in turn: neither update is lost)
        memory.hosts = _remember(memory.hosts, worked_out, on=_HOST, bound=_REMEMBERED)
    # The new pairs' providers are this call's own, not read back from the memory: a call in
    # another thread may have replaced it meanwhile, or its bound left some of them out.
    fresh = hosts.join(worked_out, on=_HOST, how="left", nulls_equal=True, maintain_order="left")
    return found["provider"].fill_null(fresh["provider"])


def _naming_host(prepared: _Prepared) -> pl.Expr:
    """`relay_host`, or null where no `hosts` pattern can match it: a plain ASCII name holding
    none of the patterns' required literals (in any case; the name `_HOST_NAME` makes of it
    is a part of it). Such a host names no provider, so its pair's provider is that of the
    recipient domain alone, and the pairs to work out are fewer (`explain -` reads a host out
    of most texts, and most of those hosts are no provider's)."""
    relay = pl.col("relay_host")
    if prepared.host_unfiltered.height or not prepared.host_literal_list:
        return relay
    named = relay.str.contains_any(prepared.host_literal_list, ascii_case_insensitive=True)
    return pl.when(named | (relay.str.len_bytes() != relay.str.len_chars())).then(relay)


def _new_providers(pairs: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """`pairs` (distinct `recipient_domain`, `relay_host`) with `provider`, as `provider_of`.

    The host patterns only run for the relay hosts the domain leaves open, and each only on
    the hosts holding one of its required literals (found for all patterns at once), on hosts
    that are not plain ASCII, and, for patterns without such literals, on every host.
    """
    if pairs.select(pl.all_horizontal(pl.col(_HOST).is_null()).all()).item():
        # nothing names a provider (`explain` of bare texts): no lookup to prepare
        return pairs.with_columns(pl.lit(OTHER).alias("provider"))
    named = pairs.with_columns(
        prepared.by_domain.alias("_by_domain"),
        _HOST_NAME.alias("_relay"),
        _DOMAIN_NAME.alias("_domain"),
    )
    asked = named.filter(pl.col("_by_domain").is_null())
    if asked.height == 0:
        # every domain names its provider: no host to try
        return named.select(*_HOST, pl.col("_by_domain").alias("provider"))
    # the relay host and, after it, the recipient domain: a domain that is itself a
    # provider's host name (exchangelabs.com, contoso.onmicrosoft.com) is that provider's
    hosts = (
        pl.concat([asked.select(pl.col(name).alias("_host")) for name in ("_relay", "_domain")])
        .drop_nulls()
        .unique()
        .lazy()
    )
    ascii_only = pl.col("_host").str.len_bytes() == pl.col("_host").str.len_chars()
    tried = [
        hosts.filter(ascii_only).join(prepared.host_unfiltered.lazy(), how="cross"),
        hosts.filter(~ascii_only).join(prepared.hosts.lazy().select("host_index"), how="cross"),
    ]
    if prepared.host_literal_list:
        tried.append(
            hosts.filter(ascii_only)
            .select(
                "_host",
                pl.col("_host")
                .str.extract_many(prepared.host_literal_list, overlapping=True)
                .alias("literal"),
            )
            .explode("literal")
            .join(prepared.host_literals.lazy(), on="literal")
            .select("_host", "host_index")
        )
    candidates = (
        pl.concat(tried)
        .unique()
        .join(prepared.hosts.lazy(), on="host_index")
        .collect(engine=_ENGINE)
    )
    # eager, in pattern order: each regex is compiled once, not once per host
    by_host = (
        candidates.sort("host_index")
        .filter(pl.col("_host").str.contains(pl.col("host_regex")))
        .group_by("_host")
        .agg(pl.col("host_provider").sort_by("host_index").first())
    )
    return (
        named.join(by_host, left_on="_relay", right_on="_host", how="left")
        .join(
            by_host.rename({"host_provider": "_domain_provider"}),
            left_on="_domain",
            right_on="_host",
            how="left",
        )
        .select(
            *_HOST,
            pl.coalesce("_by_domain", "host_provider", "_domain_provider", pl.lit(OTHER)).alias(
                "provider"
            ),
        )
    )


def _text_facts(texts: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Per distinct text: its codes (given ones kept), Outlook hex code, class, its
    normalized text with the answering host's digits masked (`_grouped`, what keys hold), and
    what it names and asks for: the blocklist, the wait (`retry_after`) and the help page its
    URL names (`_reason`, which the normalized text masks: `_KEY`).

    Only texts missing a code go through the extraction, only texts holding ``0x`` are
    searched for a hex code, and only texts an event is classified by are normalized; the
    rows keep their order. The codes, the blocklist and the wait are worked out in a thread of
    their own (`_aside`) while the normalized text is: the C helper and polars run without
    the interpreter's lock, so the two halves share the machine's cores.
    """
    missing = pl.col("smtp_code").is_null() | pl.col("enhanced_code").is_null()
    diagnostics = texts["diagnostic"]
    # (the codes in the texts missing one: extract.py, in C where it is built; a text with
    # both codes given finds none, and `with_codes` keeps what is given)
    unfound = texts.select(pl.when(missing).then("diagnostic")).to_series()
    aside = _aside(
        lambda: [
            *found_codes(unfound).get_columns(),
            *_named_and_waits(diagnostics, rules),
        ],
        alone=texts.height < _ASIDE_FROM,
    )
    # (the normalized text of the texts an event is classified by: normalize.py, in C where
    # it is built)
    textual = texts.select(pl.when("_textual").then("diagnostic")).to_series()
    grouped = grouped_texts(textual)
    hex_codes, reasons = _hex_codes(diagnostics), _help_pages(diagnostics)
    *found, blocklist, retry = aside()
    return with_codes(
        texts.with_columns(grouped.alias("_grouped"), *found),
        hex_code=False,
    ).with_columns(
        hex_codes,
        code_class(pl.col("smtp_code"), pl.col("enhanced_code")).alias("class"),
        blocklist,
        retry,
        reasons,
    )


#: Texts fewer than this are worked out in one thread (`_aside`): a thread costs more than
#: it spares on a few texts.
_ASIDE_FROM = 2000


def _aside(work: Callable[[], _T], *, alone: bool = False) -> Callable[[], _T]:
    """Start `work` in a thread of its own (or, if `alone`, run it now); the function returned
    waits for its result, or raises its error."""
    if alone:
        done = work()
        return lambda: done
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as error:  # (raised again in the caller's thread)
            box["error"] = error

    thread = threading.Thread(target=run, name="classify-aside", daemon=True)
    thread.start()

    def result() -> _T:
        thread.join()
        if "error" in box:
            raise box["error"]
        value: _T = box["value"]
        return value

    return result


def _hex_codes(texts: pl.Series) -> pl.Series:
    """`hex_code` of each of `texts`, in order: the texts that hold ``0x`` are searched."""
    return _read_where(texts, texts.str.contains("0[xX]"), extract_hex_code, "hex_code")


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


def _spread(part: pl.DataFrame, names: list[str], height: int) -> list[pl.Series]:
    """The `names` columns of `part` at each of `height` rows: `part` holds some of the rows
    (their `_row`, in any order); the others get nulls."""
    at = pl.repeat(None, height, dtype=pl.UInt32, eager=True).scatter(
        part["_row"], pl.int_range(part.height, dtype=pl.UInt32, eager=True)
    )
    return [part[name].gather(at) for name in names]


#: What step 4 reads of the facts of an event's text, at the event's row (`_in_work`: true
#: where the event's text was worked on).
_FROM_TEXT = ["smtp_code", "enhanced_code", "hex_code", "blocklist", "retry_after", "_in_work"]


def _by_event() -> tuple[pl.Expr, pl.Expr]:
    """The category and rule of an event: what its key decided (`key_category`, `key_rule`),
    but where the event itself decides."""
    event = pl.col("event")
    undecided = pl.col("key_category").is_in(UNDECIDED_CATEGORIES)
    # the event itself decides some events, and is the best evidence left when no rule decided
    by_event = {
        "delivered": event == "delivered",
        "complained": event == "complained",
        "expired": undecided & (event == "expired"),
        "dropped": undecided & (event == "dropped"),
    }
    category: pl.Expr = pl.col("key_category")
    rule: pl.Expr = pl.col("key_rule")
    for name, decides in reversed(by_event.items()):
        category = pl.when(decides).then(pl.lit(EVENT_CATEGORIES[name])).otherwise(category)
        rule = pl.when(decides).then(pl.lit(f"event:{name}")).otherwise(rule)
    return category, rule


#: What step 4 adds of each event (its permanence, its category and rule, its bounce type):
#: rule-independent expressions, built once.
_PERMANENT, (_CATEGORY, _RULE), _BOUNCE_TYPE = _permanent(), _by_event(), _bounce_type()
_IN_WORK = pl.col("_in_work").fill_null(False)


def _per_event(rows: pl.DataFrame, spread: pl.DataFrame, prepared: _Prepared) -> pl.DataFrame:
    """The answer columns of each of `rows`, in order, from the facts of its text (if it has
    some) and the category decided for its key (if it has one), `spread` at its row."""
    return (
        rows.select("event", "smtp_code", "enhanced_code")
        .with_columns(
            spread["smtp_code"].alias("_smtp"),
            spread["enhanced_code"].alias("_enhanced"),
            *spread.select("hex_code", "_in_work", "key_category", "key_rule").get_columns(),
        )
        .lazy()
        .with_columns(
            pl.when(_IN_WORK)
            .then(pl.col("_smtp"))
            .otherwise(pl.col("smtp_code"))
            .alias("smtp_code"),
            pl.when(_IN_WORK)
            .then(pl.col("_enhanced"))
            .otherwise(pl.col("enhanced_code"))
            .alias("enhanced_code"),
        )
        .with_columns(
            code_class(pl.col("smtp_code"), pl.col("enhanced_code")).alias("class"),
            _CATEGORY.alias("category"),
            _RULE.alias("rule_id"),
        )
        .join(prepared.categories.lazy(), on="category", how="left", maintain_order="left")
        .with_columns(_PERMANENT.alias("permanent"))
        .with_columns(_BOUNCE_TYPE.alias("bounce_type"))
        .select("smtp_code", "enhanced_code", "hex_code", *_ANSWERS)
        .collect(engine=_ENGINE)
    )


def _named_and_asked(
    rows: pl.DataFrame, spread: pl.DataFrame, rules: Rules
) -> tuple[pl.Series, pl.Series]:
    """`blocklist` and `retry_after` of each of `rows`, in order: from the facts of its text
    (`spread` at its row), or, for the events whose text was not worked on (delivered,
    complained), from their own text."""
    blocklist, retry = spread["blocklist"], spread["retry_after"]
    alone = spread["_in_work"].is_null().arg_true()
    if len(alone):
        named, asked = _named_and_waits(rows["diagnostic"].gather(alone), rules)
        blocklist = blocklist.scatter(alone, named)
        retry = retry.scatter(alone, asked)
    return blocklist, retry


def _named_and_waits(texts: pl.Series, rules: Rules) -> tuple[pl.Series, pl.Series]:
    """`blocklist` and `retry_after` of each of `texts`, in order (blocklists.py, retry.py).

    Only the texts that hold a list's name or a word that asks for a wait are read: one
    Aho-Corasick pass finds both, where the blocklists' search and the waits' prefilter
    would each scan every text (most texts, such as those of deliveries, hold neither).
    """
    blocklist = pl.repeat(None, len(texts), dtype=pl.String, eager=True).alias("blocklist")
    retry = pl.repeat(None, len(texts), dtype=pl.Int32, eager=True).alias("retry_after")
    at = (
        texts.str.contains_any(_prepared(rules).named_or_asking, ascii_case_insensitive=True)
        .fill_null(False)
        .arg_true()
    )
    if at.is_empty():
        return blocklist, retry
    read = texts.gather(at)
    named = read.to_frame("text").select(blocklist_of(pl.col("text"), rules.blocklists))
    return blocklist.scatter(at, named.to_series()), retry.scatter(at, retry_after_of(read))


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
    )

    # 2. per distinct domain and relay: the provider
    found = _providers(rows.select(_HOST), prepared)
    if "provider" in original:
        found = frame.select(pl.coalesce(pl.col("provider").cast(pl.String), found)).to_series()
    rows = rows.with_columns(found.alias("provider")).with_row_index("_row")

    # 1. per distinct text and given codes: found codes and normalized text (`_row`: its events)
    textual = pl.col("_textual")
    work = rows.filter(
        pl.lit(keep_hex)
        | textual
        | pl.col("smtp_code").is_null()
        | pl.col("enhanced_code").is_null()
    )
    # (a code column no event fills, as in `explain` of bare texts, is left out of the
    # group-by and put back as nulls: a group-by of one string column is the cheaper)
    empty = [name for name in _TEXT[1:] if work[name].null_count() == work.height]
    texts = _text_facts(
        work.group_by([name for name in _TEXT if name not in empty])
        .agg("_row", textual.any())
        .with_columns(pl.lit(None, rows.schema[name]).alias(name) for name in empty),
        rules,
    )
    facts = texts.select(
        "_row",
        "smtp_code",
        "enhanced_code",
        "hex_code",
        # (Google's message id, `<id>.298 - gsmtp`, is one id: the key holds no number of it)
        pl.col("_grouped").str.replace(*_DOTTED_ID),
        "class",
        # what the text names and asks for, whatever decides the category
        "blocklist",
        "retry_after",
        "_reason",
    ).explode("_row")
    del work, texts  # (what is left of them is in `facts`: their memory serves the next steps)

    # 3. per distinct key: category and rule, decided on the key's values alone (texts that
    # differ only in what the normalized text masks, or in the number of the host that
    # answered, are one key), or looked up where an earlier call decided the key
    at = facts["_row"]
    keyed = facts.with_columns(
        rows["provider"].gather(at), rows["source"].gather(at), rows["_textual"].gather(at)
    ).filter(textual)
    keys = (
        keyed.group_by(_KEY)
        .agg("_row")
        .with_row_index("_key")
        .with_columns(pl.col("_key").cast(pl.UInt64))
    )
    del keyed
    decided = (
        keys.select("_key", "_row")
        .join(_decisions(keys.drop("_row"), prepared), on="_key")
        .explode("_row")
        .select("_row", *_DECIDED)
    )
    del keys

    # 4. per event: the facts of its text and the decision of its key, at its row
    spread = pl.DataFrame(
        [
            *_spread(facts.with_columns(pl.lit(True).alias("_in_work")), _FROM_TEXT, rows.height),
            *_spread(decided, _DECIDED, rows.height),
        ]
    )
    del facts, decided
    answers = _per_event(rows, spread, prepared)
    keep = [c for c in original if c not in _ADDED]
    extra = [c for c in ("smtp_code", "enhanced_code") if c not in keep]
    if keep_hex:
        extra.append("hex_code")
    # which way the mail went: the facts and the rules' direction.toml decide (direction.py)
    verdicts = [directions(frame, rules.direction), *_named_and_asked(rows, spread, rules)]
    # a provider's own pattern names the provider when nothing else did (docs/RULES.md)
    provider = rows.select(
        pl.when(pl.col("provider") == OTHER)
        .then(pl.coalesce(spread["key_of"], pl.col("provider")))
        .otherwise(pl.col("provider"))
        .alias("provider")
    ).to_series()
    columns = {
        c.name: c for c in (*frame.get_columns(), *answers.get_columns(), provider, *verdicts)
    }
    return pl.DataFrame([columns[name] for name in (*keep, *extra, *_ADDED)])


def classify_lazy(
    lf: pl.LazyFrame, rules: Rules | None = None, *, keep_hex: bool = False
) -> pl.LazyFrame:
    """The lazy form of `classify`, run when the plan is collected.

    The engine works on the whole frame at once (distinct values, joined back), so the plan
    runs it as one batch function over the collected input.
    """
    rules = load_rules() if rules is None else rules
    schema = _classify_frame(
        pl.DataFrame(schema=lf.collect_schema()), rules, keep_hex=keep_hex
    ).schema
    return lf.map_batches(
        lambda frame: _classify_frame(frame, rules, keep_hex=keep_hex),
        schema=schema,
        streamable=False,
    )


def classify(
    frame: pl.DataFrame, rules: Rules | None = None, *, keep_hex: bool = False
) -> pl.DataFrame:
    """Return `frame` with the classification columns (schema.CLASSIFICATION_SCHEMA) filled.

    `frame` needs (at least) the fact columns the engine reads (`INPUT_COLUMNS`; missing ones
    count as null). Null reply and enhanced codes are filled from the diagnostic. A non-null
    `provider` column, if present, is kept; otherwise the provider comes from the recipient
    domain and relay host. Rows keep their order. With `keep_hex`, the Outlook hex code found
    in the diagnostic is kept too (`hex_code`, before the classification columns).
    """
    rules = load_rules() if rules is None else rules
    return _classify_frame(frame, rules, keep_hex=keep_hex)
