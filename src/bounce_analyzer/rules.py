"""Load and check the rules: the built-in `rules/` folder with an optional user folder over it.

docs/RULES.md describes the format. Every problem found at load time raises `RulesError` with
one line naming the file, the entry and what is wrong; a loaded `Rules` is therefore safe for
the classification engine to use without further checks. That includes the categories the
engine gives by itself (`ENGINE_CATEGORIES`, named here once): categories.toml must declare
each of them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.resources
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bounce_analyzer import __version__, cache, schema, smtp
from bounce_analyzer.errors import RulesError, SettingsError, UsageError
from bounce_analyzer.options import Direction as Direction  # (defined there: see options)
from bounce_analyzer.schema import SOURCE_NAMES, WORDS_TIER, advice_for
from bounce_analyzer.schema import WORDS_RULE as WORDS_RULE  # (defined there: see schema)
from bounce_analyzer.smtp import ENHANCED_CODE

#: The environment variable naming a user rules folder (the `--rules` option wins over it).
RULES_ENV = "BOUNCE_ANALYZER_RULES"

#: The values of a category's `hard` key.
HARD_VALUES = ("always", "if_permanent", "never")

# The categories the engine names itself, each defined here once: categories.toml must declare
# every one (checked at load), and classify.py takes them from here.

#: The category an event gives by itself: a delivered or complained event always, an expired or
#: dropped one when no rule decided.
EVENT_CATEGORIES = {
    "delivered": "delivered",
    "complained": "feedback",
    "expired": "expired",
    "dropped": "suppressed",
}
#: The category of a failure no rule decided, with some text (nothing matched it) ...
ON_HOLD = "on_hold"
#: ... and without any.
UNDEFINED = "undefined"
#: The category of a text that names a blocklist (rules/blocklists.toml) when no pattern and
#: no table row's words decided: the list refused the sender (docs/RULES.md, step 3). Rules
#: whose categories.toml lacks it skip that step.
BLOCKED = "blocked"
#: The categories of patterns that a list of sending IPs named in the same text does not
#: overrule: the words say which of the sender's parts was refused (its address or domain,
#: the message's links) and the list backs them (docs/RULES.md, step 2).
LIST_BACKED = ("rejected", "spam_detected")
#: The categories of generic patterns about a missing address or domain, which do not decide
#: for a reply whose enhanced code names the sender's address (X.1.7, X.1.8; docs/RULES.md,
#: step 2): the code table's sender row does.
RECIPIENT_MISSING = ("user_unknown", "host_unknown")
#: Categories a table row may name that do not decide: the row explains, later steps decide.
UNDECIDED_CATEGORIES = (UNDEFINED, ON_HOLD)
#: Categories that are not failures: they get no bounce_type and no permanence.
NON_FAILURE_CATEGORIES = ("delivered", "feedback", "vacation")
#: Every category the engine names itself.
ENGINE_CATEGORIES = tuple(
    dict.fromkeys([*EVENT_CATEGORIES.values(), *UNDECIDED_CATEGORIES, *NON_FAILURE_CATEGORIES])
)

#: The columns of the normalized code-table frame (`Rules.codes`), in order.
CODE_COLUMNS: dict[str, pl.DataType] = {
    "table": pl.String(),
    "id": pl.String(),
    "rule_id": pl.String(),
    "kind": pl.String(),
    "provider": pl.String(),
    "source": pl.String(),
    "smtp_code": pl.Int16(),
    "enhanced_code": pl.String(),
    "hex_code": pl.String(),
    "http_status": pl.Int16(),
    "name": pl.String(),
    "message": pl.String(),
    "meaning": pl.String(),
    "solution": pl.String(),
    "category": pl.String(),
    "user": pl.Boolean(),
    "order": pl.Int32(),
}

#: The columns of the blocklist frame (`Rules.blocklists`), in order: `names` holds the
#: entry's zones and texts, lower-cased, as `blocklists.blocklist_of` matches them.
BLOCKLIST_COLUMNS: dict[str, pl.DataType] = {
    "blocklist": pl.String(),
    "label": pl.String(),
    "lists": pl.List(pl.String()),
    "lookup": pl.String(),
    "note": pl.String(),
    "names": pl.List(pl.String()),
    "user": pl.Boolean(),
}
#: What a blocklist may hold (its `lists` key).
BLOCKLIST_HOLDS = ("ip", "domain", "url")
#: A zone or text shorter than this would match inside other words.
BLOCKLIST_NAME_MIN = 5

_TABLE_KINDS = ("provider", "enhanced", "reply", "reference")
_CATEGORY_KEYS = {"description", "advice", "advice_inbound", "group", "hard"}
_PROVIDER_KEYS = {"label", "domains", "hosts", "patterns"}
_PATTERN_KEYS = {"id", "regex", "category", "provider", "classes", "example", "note", "tier"}
_TABLE_KEYS = {"file", "title", "provider", "source", "kind", "note"}
_BLOCKLIST_KEYS = {"label", "lists", "lookup", "zones", "texts", "note"}
_HEX = re.compile(r"^0x[0-9A-Fa-f]{4,8}$")


@dataclass(frozen=True)
class DirectionSettings:
    """What `direction.toml` says about the mail whose direction a log cannot tell.

    docs/SCHEMA.md (Direction) gives the decision these take part in. Entries are checked
    when loaded (`_load_direction`) and kept lower-cased, but transports, whose names are
    case-sensitive:

    - ``local_domains``: the domains we receive mail for (`example.com`: that domain;
      `.example.com`: its subdomains);
    - ``inbound_relays``: the internal servers a gateway hands inbound mail to with smtp: host
      names (`.example.com` for subdomains), IP addresses, networks (`192.0.2.0/24`);
    - ``inbound_transports``, ``outbound_transports``: transport names (`*` matches any run of
      characters) whose deliveries go the one way or the other.
    """

    local_domains: tuple[str, ...] = ()
    inbound_relays: tuple[str, ...] = ()
    inbound_transports: tuple[str, ...] = ()
    outbound_transports: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Rules:
    """Everything the engine knows, as polars frames (see docs/RULES.md for each file).

    - ``categories``: category, description, advice (for mail we sent), advice_inbound (for
      mail sent to us), group, hard
    - ``groups``: group, description
    - ``providers``: provider, label, patterns (the ids of the patterns whose text only
      this provider sends; in lookup order)
    - ``provider_domains``: domain, provider (one row per domain, first provider wins)
    - ``provider_hosts``: provider, regex (in lookup order)
    - ``patterns``: id, regex, category, provider, classes (list of reply classes), example,
      rule_id (`pattern:<id>`, or `words:<id>` for the words tier) (in matching order: user
      patterns first, the words tier last)
    - ``tables``: table, file, title, provider, source, kind
    - ``codes``: every code-table row, columns `CODE_COLUMNS`
    - ``blocklists``: the DNS blocklists and reputation lists replies name, columns
      `BLOCKLIST_COLUMNS` (user lists first)

    A `Rules` object is equal only to itself and hashes by identity, so that the engine can
    keep what it derives from one beside it (classify.py) for as long as the object lives.
    """

    categories: pl.DataFrame
    groups: pl.DataFrame
    providers: pl.DataFrame
    provider_domains: pl.DataFrame
    provider_hosts: pl.DataFrame
    patterns: pl.DataFrame
    tables: pl.DataFrame
    codes: pl.DataFrame
    blocklists: pl.DataFrame
    direction: DirectionSettings

    @property
    def replies(self) -> pl.DataFrame:
        """The reply-code-alone rows (step 7 of the decision order)."""
        return self.codes.filter(pl.col("kind") == "reply")

    def category_names(self) -> set[str]:
        """The closed vocabulary of categories."""
        return set(self.categories["category"].to_list())

    def with_local_domains(self, domains: Iterable[str]) -> Rules:
        """These rules, with `domains` (checked as `local_domains` entries) added to the local
        domains of `direction.toml`: what `--local-domains` gives."""
        added = []
        for value in domains:
            domain = _domain_entry(value)
            if domain is None:
                raise UsageError(f"--local-domains: {value!r} {_NOT_A_DOMAIN}")
            added.append(domain)
        local = tuple(dict.fromkeys([*self.direction.local_domains, *added]))
        return dataclasses.replace(
            self, direction=dataclasses.replace(self.direction, local_domains=local)
        )


def solution_for(direction: pl.Expr, row_solution: pl.Expr) -> pl.Expr:
    """What to do about an event going `direction` whose deciding rule says `row_solution`
    (a code-table row's solution, or null): for mail we sent, that solution, else the
    category's `advice`; for inbound mail, the category's `advice_inbound` only, since a row's
    solution is written for the sender as well."""
    return (
        pl.when(direction == Direction.inbound.value)
        .then(advice_for(direction))
        .otherwise(pl.coalesce(row_solution, advice_for(direction)))
    )


def builtin_rules_dir() -> Path:
    """The built-in rules: packaged in the wheel (`bounce_analyzer/rules`), else the checkout's."""
    packaged = importlib.resources.files("bounce_analyzer").joinpath("rules")
    if packaged.is_dir() and isinstance(packaged, os.PathLike):
        return Path(packaged)
    checkout = Path(__file__).resolve().parents[2] / "rules"
    if checkout.is_dir():
        return checkout
    raise RulesError("built-in rules folder not found (broken installation)")


def user_rules_dir(option: Path | None) -> Path | None:
    """The user rules folder: the `--rules` option, else $BOUNCE_ANALYZER_RULES, else None."""
    chosen = option if option is not None else (os.environ.get(RULES_ENV) or None)
    if chosen is None:
        return None
    path = Path(chosen)
    if not path.is_dir():
        raise RulesError(f"{path}: rules folder does not exist")
    return path


_CACHE: dict[tuple[object, ...], Rules] = {}


def load_rules(user_dir: Path | None = None, *, builtin_dir: Path | None = None) -> Rules:
    """Load the built-in rules with `user_dir` layered over them (cached until a file changes).

    `builtin_dir` replaces the built-in folder (tests and tools; users pass `user_dir`). The
    built-in rules alone are also kept on disk (cache.py), so that the next start reads them
    back instead of parsing and checking every file again.
    """
    builtin = builtin_rules_dir() if builtin_dir is None else Path(builtin_dir)
    dirs = [builtin] if user_dir is None else [builtin, Path(user_dir)]
    if user_dir is not None and not Path(user_dir).is_dir():
        raise RulesError(f"{user_dir}: rules folder does not exist")
    key = tuple((str(d), _signature(d)) for d in dirs)
    cached = _CACHE.get(key)
    if cached is None:
        if user_dir is None and builtin_dir is None:
            cached = _builtin_from_disk(builtin, key)
        else:
            cached = _load(builtin, None if user_dir is None else Path(user_dir))
        if len(_CACHE) >= 8:
            _CACHE.clear()
        _CACHE[key] = cached
    return cached


def _builtin_from_disk(builtin: Path, signature: tuple[object, ...]) -> Rules:
    """The built-in rules in `builtin` (of `signature`), from the disk cache if they are there
    (cache.py), else loaded and stored there for the next start."""
    # what the loaded rules depend on besides their files: the code that loads them
    loaders = [Path(module) for module in (__file__, schema.__file__, smtp.__file__)]
    name = "rules-" + hashlib.sha256(str(builtin).encode()).hexdigest()[:16]
    key = cache.fingerprint(loaders, signature, __version__, pl.__version__)
    found = cache.load(name, key)
    if isinstance(found, Rules):
        return found
    rules = _load(builtin, None)
    cache.store(name, key, rules)
    return rules


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".toml", ".csv") and p.is_file())
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


# --- reading ---------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RulesError(f"{path}: cannot read: {error.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise RulesError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x}): TOML files are UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"{path}: invalid TOML: {error}") from None


def _optional_toml(folder: Path | None, name: str) -> tuple[Path | None, dict[str, Any]]:
    if folder is None or not (folder / name).is_file():
        return None, {}
    return folder / name, _read_toml(folder / name)


def _required_toml(folder: Path, name: str) -> tuple[Path, dict[str, Any]]:
    path = folder / name
    if not path.is_file():
        raise RulesError(f"{path}: file not found")
    return path, _read_toml(path)


def _section(path: Path | None, data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise RulesError(f"{path}: [{name}] must be a table")
    return value


def _check_keys(path: Path | None, entry: str, item: object, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise RulesError(f"{path}: {entry}: must be a table")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise RulesError(f"{path}: {entry}: unknown key '{unknown[0]}'")
    return item


def _text(path: Path | None, entry: str, item: dict[str, Any], key: str, *, required: bool) -> Any:
    value = item.get(key)
    if value is None:
        if required:
            raise RulesError(f"{path}: {entry}: missing '{key}'")
        return None
    if not isinstance(value, str):
        raise RulesError(f"{path}: {entry}: '{key}' must be a string")
    return value


def _strings(path: Path | None, entry: str, item: dict[str, Any], key: str) -> list[str]:
    values = item.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RulesError(f"{path}: {entry}: '{key}' must be a list of strings")
    return values


def _all_valid(regexes: list[str]) -> bool:
    """Whether polars accepts every one of `regexes`, checked in one call (start-up stays
    light); `_regex_problem` then says what is wrong with which."""
    if not regexes:
        return True
    try:
        pl.DataFrame({"regex": regexes}).select(pl.lit("").str.contains(pl.col("regex")))
    except pl.exceptions.PolarsError:
        return False
    return True


def _regex_problem(regex: str) -> str | None:
    """None if polars (Rust regex) accepts `regex`, else the one-line reason."""
    try:
        pl.Series([""]).str.contains(regex)
    except pl.exceptions.PolarsError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if line.startswith("error:")), lines[0])
        return reason.removeprefix("error:").strip()
    return None


# --- categories ------------------------------------------------------------------------------


def _load_categories(builtin: Path, user: Path | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    layers = [_required_toml(builtin, "categories.toml"), _optional_toml(user, "categories.toml")]
    groups: dict[str, tuple[Path | None, dict[str, Any]]] = {}
    categories: dict[str, tuple[Path | None, dict[str, Any]]] = {}
    for path, data in layers:
        for name, item in _section(path, data, "groups").items():
            groups[name] = (path, _check_keys(path, f"group '{name}'", item, {"description"}))
        for name, item in _section(path, data, "categories").items():
            categories[name] = (path, _check_keys(path, f"category '{name}'", item, _CATEGORY_KEYS))
    rows = []
    for name, (path, item) in categories.items():
        entry = f"category '{name}'"
        group = _text(path, entry, item, "group", required=True)
        if group not in groups:
            raise RulesError(f"{path}: {entry}: unknown group '{group}'")
        hard = item.get("hard")
        if hard not in HARD_VALUES:
            raise RulesError(
                f"{path}: {entry}: bad hard value {hard!r} (expected always, if_permanent or never)"
            )
        rows.append(
            {
                "category": name,
                "description": _text(path, entry, item, "description", required=True),
                "advice": _text(path, entry, item, "advice", required=False) or "",
                "advice_inbound": _text(path, entry, item, "advice_inbound", required=False) or "",
                "group": group,
                "hard": hard,
            }
        )
    for name in ENGINE_CATEGORIES:
        if name not in categories:
            raise RulesError(f"{builtin / 'categories.toml'}: category '{name}' is missing")
    category_frame = pl.DataFrame(
        rows,
        schema={
            "category": pl.String,
            "description": pl.String,
            "advice": pl.String,
            "advice_inbound": pl.String,
            "group": pl.String,
            "hard": pl.String,
        },
    )
    group_frame = pl.DataFrame(
        [
            {"group": n, "description": item.get("description") or ""}
            for n, (_, item) in groups.items()
        ],
        schema={"group": pl.String, "description": pl.String},
    )
    return category_frame, group_frame


# --- providers -------------------------------------------------------------------------------


def _load_providers(
    builtin: Path, user: Path | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Path | None]]:
    """The providers, their domains and their host patterns (see `Rules`), and the file that
    defines each provider (for later messages)."""
    layers = [_required_toml(builtin, "providers.toml"), _optional_toml(user, "providers.toml")]
    user_entries: dict[str, tuple[Path | None, dict[str, Any]]] = {}
    builtin_entries: dict[str, tuple[Path | None, dict[str, Any]]] = {}
    for (path, data), target in zip(layers, (builtin_entries, user_entries), strict=True):
        for name, item in _section(path, data, "providers").items():
            target[name] = (path, _check_keys(path, f"provider '{name}'", item, _PROVIDER_KEYS))
    # user providers (new or replacing) are consulted first
    ordered = {
        **user_entries,
        **{k: v for k, v in builtin_entries.items() if k not in user_entries},
    }
    providers, domains = [], []
    hosts: list[dict[str, Any]] = []
    seen_domains: set[str] = set()
    for name, (path, item) in ordered.items():
        entry = f"provider '{name}'"
        label = _text(path, entry, item, "label", required=False) or name
        providers.append(
            {"provider": name, "label": label, "patterns": _strings(path, entry, item, "patterns")}
        )
        for domain in _strings(path, entry, item, "domains"):
            domain = domain.lower().strip(".")
            if domain not in seen_domains:
                seen_domains.add(domain)
                domains.append({"domain": domain, "provider": name})
        for regex in _strings(path, entry, item, "hosts"):
            hosts.append({"provider": name, "regex": regex, "_path": path, "_entry": entry})
    if not _all_valid([host["regex"] for host in hosts]):
        for host in hosts:
            problem = _regex_problem(host["regex"])
            if problem is not None:
                raise RulesError(
                    f"{host['_path']}: {host['_entry']}: invalid regex {host['regex']!r}: {problem}"
                )
    for host in hosts:
        del host["_path"], host["_entry"]
    return (
        pl.DataFrame(
            providers,
            schema={"provider": pl.String, "label": pl.String, "patterns": pl.List(pl.String)},
        ),
        pl.DataFrame(domains, schema={"domain": pl.String, "provider": pl.String}),
        pl.DataFrame(hosts, schema={"provider": pl.String, "regex": pl.String}),
        {name: path for name, (path, _) in ordered.items()},
    )


# --- patterns --------------------------------------------------------------------------------


def _read_patterns(path: Path | None, data: dict[str, Any]) -> list[dict[str, Any]]:
    items = data.get("patterns", [])
    if not isinstance(items, list):
        raise RulesError(f"{path}: 'patterns' must be an array of tables ([[patterns]])")
    rows = []
    for index, item in enumerate(items, start=1):
        pattern_id = item.get("id") if isinstance(item, dict) else None
        entry = f"pattern '{pattern_id}'" if isinstance(pattern_id, str) else f"pattern #{index}"
        item = _check_keys(path, entry, item, _PATTERN_KEYS)
        classes = item.get("classes")
        if classes is not None and (
            not isinstance(classes, list) or not classes or any(c not in (2, 4, 5) for c in classes)
        ):
            raise RulesError(f"{path}: {entry}: 'classes' must be a list of 2, 4 and 5")
        tier = item.get("tier")
        if tier is not None and tier != WORDS_TIER:
            raise RulesError(f"{path}: {entry}: 'tier' must be \"{WORDS_TIER}\"")
        rows.append(
            {
                "id": _text(path, entry, item, "id", required=True),
                "regex": _text(path, entry, item, "regex", required=True),
                "category": _text(path, entry, item, "category", required=True),
                "provider": _text(path, entry, item, "provider", required=False),
                "classes": classes,
                "example": _text(path, entry, item, "example", required=False),
                "rule_id": f"{tier or 'pattern'}:{item.get('id')}",
                "_path": path,
                "_entry": entry,
            }
        )
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise RulesError(f"{path}: {row['_entry']}: duplicate id")
        seen.add(row["id"])
    return rows


def _load_patterns(
    builtin: Path, user: Path | None, categories: set[str], providers: set[str]
) -> pl.DataFrame:
    base_path, base = _required_toml(builtin, "patterns.toml")
    user_path, extra = _optional_toml(user, "patterns.toml")
    builtin_rows = _read_patterns(base_path, base)
    user_rows = _read_patterns(user_path, extra)
    replacing = {row["id"]: row for row in user_rows}
    known = {row["id"] for row in builtin_rows}
    # new user patterns first, then the built-in order with user replacements in place
    rows = [row for row in user_rows if row["id"] not in known]
    rows += [replacing.get(row["id"], row) for row in builtin_rows]
    # the words tier after every other pattern, in its own order: the first pattern matched
    # is a pattern of the normal tiers wherever one matches
    rows.sort(key=lambda row: row["rule_id"].startswith(WORDS_RULE))
    all_valid = _all_valid([row["regex"] for row in rows])
    for row in rows:
        path, entry = row.pop("_path"), row.pop("_entry")
        if row["category"] not in categories:
            raise RulesError(f"{path}: {entry}: unknown category '{row['category']}'")
        if row["provider"] is not None and row["provider"] not in providers:
            raise RulesError(f"{path}: {entry}: unknown provider '{row['provider']}'")
        problem = None if all_valid else _regex_problem(row["regex"])
        if problem is not None:
            raise RulesError(f"{path}: {entry}: invalid regex {row['regex']!r}: {problem}")
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "regex": pl.String,
            "category": pl.String,
            "provider": pl.String,
            "classes": pl.List(pl.Int8),
            "example": pl.String,
            "rule_id": pl.String,
        },
    )


# --- code tables -----------------------------------------------------------------------------


def _load_tables(
    builtin: Path, user: Path | None, providers: set[str]
) -> dict[str, tuple[Path, dict[str, Any]]]:
    layers = [
        _required_toml(builtin / "codes", "tables.toml"),
        _optional_toml(None if user is None else user / "codes", "tables.toml"),
    ]
    tables: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, data in layers:
        if path is None:
            continue
        for name, item in _section(path, data, "tables").items():
            entry = f"table '{name}'"
            item = _check_keys(path, entry, item, _TABLE_KEYS)
            _text(path, entry, item, "file", required=True)
            kind = item.get("kind", "provider" if item.get("provider") else "reference")
            if item.get("source") and "kind" not in item:
                kind = "provider"
            if kind not in _TABLE_KINDS:
                raise RulesError(f"{path}: {entry}: unknown kind '{kind}'")
            if item.get("provider") is not None and item["provider"] not in providers:
                raise RulesError(f"{path}: {entry}: unknown provider '{item['provider']}'")
            if item.get("source") is not None and item["source"] not in SOURCE_NAMES:
                raise RulesError(f"{path}: {entry}: unknown source '{item['source']}'")
            tables[name] = (path, {**item, "kind": kind})
    return tables


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RulesError(f"{path}: cannot read: {error}") from None
    for column in ("id", "category"):
        if column not in columns:
            raise RulesError(f"{path}: missing column '{column}'")
    for number, row in enumerate(rows, start=2):
        if None in row or any(value is None for value in row.values()):
            raise RulesError(f"{path}:{number}: wrong number of fields")
    return rows


def _int_or_none(path: Path, number: int, column: str, value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 100 <= int(value) <= 599:
        raise RulesError(f"{path}:{number}: bad {column} {value!r}")
    return int(value)


def _code_rows(
    name: str, table: dict[str, Any], path: Path, *, user: bool, categories: set[str]
) -> list[dict[str, Any]]:
    rows = []
    seen: set[str] = set()
    for number, raw in enumerate(_read_csv(path), start=2):
        row = {key: (value or "").strip() for key, value in raw.items()}
        row_id = row["id"]
        if not row_id:
            raise RulesError(f"{path}:{number}: empty id")
        if row_id in seen:
            raise RulesError(f"{path}:{number}: duplicate id '{row_id}'")
        seen.add(row_id)
        category = row.get("category") or None
        if category is not None and category not in categories:
            raise RulesError(f"{path}:{number}: row '{row_id}': unknown category '{category}'")
        enhanced = row.get("enhanced_code") or None
        if enhanced is not None:
            enhanced = enhanced.upper() if enhanced[:1] in "xX" else enhanced
            # X.1.1 stands for that code in any class: it has the shape of 5.1.1
            shape = "5" + enhanced[1:] if enhanced.startswith("X") else enhanced
            if not re.fullmatch(ENHANCED_CODE, shape):
                raise RulesError(f"{path}:{number}: row '{row_id}': bad enhanced_code {enhanced!r}")
        hex_code = row.get("hex_code") or None
        if hex_code is not None:
            if not _HEX.match(hex_code):
                raise RulesError(f"{path}:{number}: row '{row_id}': bad hex_code {hex_code!r}")
            hex_code = "0x" + hex_code[2:].upper()
        rows.append(
            {
                "table": name,
                "id": row_id,
                "rule_id": f"{name}:{row_id}",
                "kind": table["kind"],
                "provider": table.get("provider"),
                "source": table.get("source"),
                "smtp_code": _int_or_none(path, number, "smtp_code", row.get("smtp_code", "")),
                "enhanced_code": enhanced,
                "hex_code": hex_code,
                "http_status": _int_or_none(
                    path, number, "http_status", row.get("http_status", "")
                ),
                "name": row.get("name") or None,
                "message": row.get("message") or None,
                "meaning": row.get("meaning") or None,
                "solution": row.get("solution") or None,
                "category": category,
                "user": user,
            }
        )
    return rows


def _load_codes(
    builtin: Path, user: Path | None, categories: set[str], providers: set[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    tables = _load_tables(builtin, user, providers)
    all_rows: list[dict[str, Any]] = []
    for name, (_, table) in tables.items():
        user_rows: list[dict[str, Any]] = []
        if user is not None and (user / "codes" / table["file"]).is_file():
            user_rows = _code_rows(
                name, table, user / "codes" / table["file"], user=True, categories=categories
            )
        builtin_rows: list[dict[str, Any]] = []
        if (builtin / "codes" / table["file"]).is_file():
            builtin_rows = _code_rows(
                name, table, builtin / "codes" / table["file"], user=False, categories=categories
            )
        elif not user_rows:
            raise RulesError(f"{builtin / 'codes' / table['file']}: file not found")
        replaced = {row["id"] for row in user_rows}
        all_rows += user_rows + [row for row in builtin_rows if row["id"] not in replaced]
    for order, row in enumerate(all_rows):
        row["order"] = order
    codes = pl.DataFrame(all_rows, schema=CODE_COLUMNS)
    table_frame = pl.DataFrame(
        [
            {
                "table": name,
                "file": table["file"],
                "title": table.get("title") or name,
                "provider": table.get("provider"),
                "source": table.get("source"),
                "kind": table["kind"],
            }
            for name, (_, table) in tables.items()
        ],
        schema={
            "table": pl.String,
            "file": pl.String,
            "title": pl.String,
            "provider": pl.String,
            "source": pl.String,
            "kind": pl.String,
        },
    )
    return codes, table_frame


# --- blocklists ------------------------------------------------------------------------------


def _blocklist_row(path: Path | None, name: str, item: object, *, user: bool) -> dict[str, Any]:
    entry = f"blocklist '{name}'"
    item = _check_keys(path, entry, item, _BLOCKLIST_KEYS)
    lists = _strings(path, entry, item, "lists")
    if not lists or any(kind not in BLOCKLIST_HOLDS for kind in lists):
        raise RulesError(f"{path}: {entry}: 'lists' must name what it holds: ip, domain, url")
    names = [
        text.strip().lower()
        for text in _strings(path, entry, item, "zones") + _strings(path, entry, item, "texts")
    ]
    if not names:
        raise RulesError(f"{path}: {entry}: give the 'zones' or 'texts' that name it")
    for text in names:
        if len(text) < BLOCKLIST_NAME_MIN or not text.isascii():
            raise RulesError(
                f"{path}: {entry}: {text!r}: a zone or text must be ASCII and at least "
                f"{BLOCKLIST_NAME_MIN} characters long"
            )
    return {
        "blocklist": name,
        "label": _text(path, entry, item, "label", required=True),
        "lists": lists,
        "lookup": _text(path, entry, item, "lookup", required=True),
        "note": _text(path, entry, item, "note", required=False),
        "names": list(dict.fromkeys(names)),
        "user": user,
    }


def _load_blocklists(builtin: Path, user: Path | None) -> pl.DataFrame:
    """rules/blocklists.toml (optional in both folders), user lists first: a user entry
    replaces the built-in one of its name, and a user's zone or text wins over a built-in
    list that names it too."""
    layers = [
        (_optional_toml(user, "blocklists.toml"), True),
        (_optional_toml(builtin, "blocklists.toml"), False),
    ]
    rows: dict[str, dict[str, Any]] = {}
    for (path, data), is_user in layers:
        named: dict[str, str] = {}  # a name -> the list it names, within this file
        for name, item in _section(path, data, "blocklists").items():
            row = _blocklist_row(path, name, item, user=is_user)
            for text in row["names"]:
                if named.setdefault(text, name) != name:
                    raise RulesError(
                        f"{path}: blocklist '{name}': {text!r} already names '{named[text]}'"
                    )
            rows.setdefault(name, row)
    return pl.DataFrame(list(rows.values()), schema=BLOCKLIST_COLUMNS)


# --- direction ---------------------------------------------------------------------------------

_DIRECTION_KEYS = ("local_domains", "inbound_relays", "inbound_transports", "outbound_transports")
_NOT_A_DOMAIN = "is not a domain name (write example.com, or .example.com for its subdomains)"
#: A domain name (labels of anything but space, `@`, `.`, brackets, `*`, `/`, `:` and `,`), or
#: `.` and a domain name (its subdomains).
_DOMAIN_ENTRY = re.compile(r"^\.?(?:[^\s@.\[\]*/:,]+\.)*[^\s@.\[\]*/:,]+$")
#: A transport name (Postfix service, Exim transport or router), with `*` wildcards.
_TRANSPORT_ENTRY = re.compile(r"^[\w.+*-]+$")


def _domain_entry(value: str) -> str | None:
    """`value` as a domain entry (lower case, without a final dot), or None if it is none."""
    domain = value.strip().lower().removesuffix(".")
    return domain if _DOMAIN_ENTRY.match(domain) else None


def _relay_entry(path: Path, value: str) -> str:
    """An `inbound_relays` entry: an address or network in its usual form, or a host name."""
    text = value.strip()
    if "/" in text or ":" in text or text.replace(".", "").isdigit():
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as error:
            raise SettingsError(f"{path}: inbound_relays: {value!r}: {error}") from None
        return str(network.network_address) if "/" not in text else str(network)
    host = _domain_entry(text)
    if host is None:
        raise SettingsError(
            f"{path}: inbound_relays: {value!r} is not a host name, IP address or network"
        )
    return host


def _load_direction(builtin: Path, user: Path | None) -> DirectionSettings:
    """`direction.toml` of the user folder if it has one (it replaces the built-in one, whose
    lists are empty), else the built-in one; without either, empty lists (the logs decide)."""
    path, data = _optional_toml(user, "direction.toml")
    if path is None:
        path, data = _optional_toml(builtin, "direction.toml")
    if path is None:
        return DirectionSettings()
    unknown = sorted(set(data) - set(_DIRECTION_KEYS))
    if unknown:
        raise SettingsError(
            f"{path}: unknown key '{unknown[0]}' (expected {', '.join(_DIRECTION_KEYS)})"
        )
    lists: dict[str, tuple[str, ...]] = {}
    for key in _DIRECTION_KEYS:
        values = data.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SettingsError(f"{path}: {key} must be a list of strings")
        entries = []
        for value in values:
            if key == "local_domains":
                entry = _domain_entry(value)
                if entry is None:
                    raise SettingsError(f"{path}: {key}: {value!r} {_NOT_A_DOMAIN}")
            elif key == "inbound_relays":
                entry = _relay_entry(path, value)
            else:
                entry = value.strip()
                if not _TRANSPORT_ENTRY.match(entry):
                    raise SettingsError(f"{path}: {key}: {value!r} is not a transport name")
            entries.append(entry)
        lists[key] = tuple(dict.fromkeys(entries))
    both = sorted(set(lists["inbound_transports"]) & set(lists["outbound_transports"]))
    if both:
        raise SettingsError(
            f"{path}: transport {both[0]!r} is in both inbound_transports and outbound_transports"
        )
    return DirectionSettings(**lists)


def _check_provider_patterns(
    files: dict[str, Path | None], providers: pl.DataFrame, pattern_ids: set[str]
) -> None:
    """Each pattern id a provider's `patterns` lists is a pattern's, and one provider's."""
    owners: dict[str, str] = {}
    for name, listed in providers.select("provider", "patterns").rows():
        for pattern_id in listed:
            if pattern_id not in pattern_ids:
                raise RulesError(
                    f"{files[name]}: provider '{name}': unknown pattern '{pattern_id}'"
                )
            if pattern_id in owners:
                raise RulesError(
                    f"{files[name]}: provider '{name}': pattern "
                    f"'{pattern_id}' is already provider '{owners[pattern_id]}''s"
                )
            owners[pattern_id] = name


def _load(builtin: Path, user: Path | None) -> Rules:
    categories, groups = _load_categories(builtin, user)
    providers, domains, hosts, files = _load_providers(builtin, user)
    category_names = set(categories["category"].to_list())
    provider_names = set(providers["provider"].to_list())
    patterns = _load_patterns(builtin, user, category_names, provider_names)
    _check_provider_patterns(files, providers, set(patterns["id"].to_list()))
    codes, tables = _load_codes(builtin, user, category_names, provider_names)
    return Rules(
        categories=categories,
        groups=groups,
        providers=providers,
        provider_domains=domains,
        provider_hosts=hosts,
        patterns=patterns,
        tables=tables,
        codes=codes,
        blocklists=_load_blocklists(builtin, user),
        direction=_load_direction(builtin, user),
    )
