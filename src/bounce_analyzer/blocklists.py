"""Which DNS blocklist or reputation list a text names: `zen.spamhaus.org` -> ``spamhaus``.

The names are the zones and texts of rules/blocklists.toml (docs/RULES.md), found as plain
text without regard to case, all at once (Aho-Corasick over the whole column, no regex and
no Python step per text). The first name in the text decides; of names starting at the same
place, the longer one (`dbl.spamhaus.org` is found before `spamhaus`, and `spamhaus dbl`
before `spamhaus`). A text that names no list gets null.
"""

from __future__ import annotations

import polars as pl


def blocklist_names(blocklists: pl.DataFrame) -> tuple[list[str], list[str]]:
    """The names to look for, in the order that settles ties, and the list each one names.

    `blocklists` is `Rules.blocklists` (user lists first: where a user list and a built-in
    one share a name, the user's wins).
    """
    names = (
        blocklists.select("blocklist", "names")
        .explode("names")
        .drop_nulls("names")
        .unique("names", keep="first", maintain_order=True)
        .sort(pl.col("names").str.len_bytes(), descending=True, maintain_order=True)
    )
    return names["names"].to_list(), names["blocklist"].to_list()


def blocklist_of(text: pl.Expr, blocklists: pl.DataFrame) -> pl.Expr:
    """The canonical name of the list `text` names first, or null (see the module's doc)."""
    names, lists = blocklist_names(blocklists)
    found = text.cast(pl.String)
    if names:  # else every text names nothing
        found = (
            found.str.extract_many(names, ascii_case_insensitive=True, leftmost=True)
            .list.first()
            .str.to_lowercase()
        )
    return found.replace_strict(names, lists, default=None, return_dtype=pl.String)
