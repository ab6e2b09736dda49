"""Loading the rules: the built-in folder, validation errors, and a user folder over it."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from bounce_analyzer.errors import RulesError
from bounce_analyzer.rules import (
    BLOCKLIST_COLUMNS,
    CODE_COLUMNS,
    ENGINE_CATEGORIES,
    RULES_ENV,
    builtin_rules_dir,
    load_rules,
    user_rules_dir,
)

CATEGORIES = """
[groups.invalid_address]
description = "Bad address."
[groups.other]
description = "Other."

[categories.user_unknown]
description = "No such mailbox."
advice = "Remove it."
group = "invalid_address"
hard = "always"
[categories.mailbox_full]
description = "Full."
group = "other"
hard = "never"
[categories.delivered]
description = "Delivered."
group = "other"
hard = "never"
[categories.feedback]
description = "Complaint."
group = "other"
hard = "never"
[categories.undefined]
description = "Nothing."
group = "other"
hard = "never"
[categories.on_hold]
description = "Unknown."
group = "other"
hard = "never"
[categories.expired]
description = "Gave up."
group = "other"
hard = "never"
[categories.suppressed]
description = "Not sent."
group = "other"
hard = "never"
[categories.vacation]
description = "Away."
group = "other"
hard = "never"
"""

PROVIDERS = """
[providers.google]
label = "Google"
domains = ["gmail.com"]
hosts = ['\\.google\\.com$']
"""

PATTERNS = """
[[patterns]]
id = "generic.full"
regex = 'mailbox (is )?full'
category = "mailbox_full"
example = "452 4.2.2 Mailbox full"
"""

TABLES = """
[tables.gmail]
file = "gmail.csv"
provider = "google"
[tables.reply]
file = "replies.csv"
kind = "reply"
"""

GMAIL = (
    "id,smtp_code,enhanced_code,message,solution,glossary,category,from_seed,note\n"
    "gmail-001,550,5.1.1,The email account that you tried to reach does not exist.,Check it.,,"
    "user_unknown,true,\n"
)

BLOCKLISTS = """
[blocklists.inhouse]
label = "Ours"
lists = ["ip"]
lookup = "https://rbl.example.net/"
zones = ["rbl.example.net"]
"""

REPLIES = """id,smtp_code,meaning,solution,category,from_seed,note
550,550,Mailbox unavailable,,user_unknown,false,
"""


def write_rules(root: Path, **changes: str) -> Path:
    """A small valid rules folder at `root`; `changes` replace files (`codes__x_csv` style)."""
    files = {
        "categories.toml": CATEGORIES,
        "providers.toml": PROVIDERS,
        "patterns.toml": PATTERNS,
        "codes/tables.toml": TABLES,
        "codes/gmail.csv": GMAIL,
        "codes/replies.csv": REPLIES,
    }
    for key, text in changes.items():
        files[key.replace("__", "/").replace("_toml", ".toml").replace("_csv", ".csv")] = text
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_load_small_folder(tmp_path: Path) -> None:
    rules = load_rules(builtin_dir=write_rules(tmp_path))
    assert rules.category_names() == {
        "user_unknown",
        "mailbox_full",
        "delivered",
        "feedback",
        "undefined",
        "on_hold",
        "expired",
        "suppressed",
        "vacation",
    }
    assert rules.provider_domains.rows() == [("gmail.com", "google")]
    assert rules.provider_hosts.rows() == [("google", r"\.google\.com$")]
    assert rules.patterns["id"].to_list() == ["generic.full"]
    assert rules.codes.schema == pl.Schema(CODE_COLUMNS)
    assert rules.codes.select("rule_id", "kind", "provider", "smtp_code", "category").rows() == [
        ("gmail:gmail-001", "provider", "google", 550, "user_unknown"),
        ("reply:550", "reply", None, 550, "user_unknown"),
    ]
    assert rules.replies["rule_id"].to_list() == ["reply:550"]
    # blocklists.toml is optional: without it, no reply names a list
    assert rules.blocklists.schema == pl.Schema(BLOCKLIST_COLUMNS)
    assert rules.blocklists.height == 0


def test_load_is_cached_until_a_file_changes(tmp_path: Path) -> None:
    folder = write_rules(tmp_path)
    first = load_rules(builtin_dir=folder)
    assert load_rules(builtin_dir=folder) is first
    write_rules(tmp_path, patterns_toml=PATTERNS.replace("generic.full", "generic.full2"))
    assert load_rules(builtin_dir=folder).patterns["id"].to_list() == ["generic.full2"]


BROKEN = [
    (
        "patterns_toml",
        PATTERNS.replace('"mailbox_full"', '"no_such"'),
        "patterns.toml: pattern 'generic.full': unknown category 'no_such'",
    ),
    (
        "patterns_toml",
        PATTERNS.replace("mailbox (is )?full", "(?<=x)full"),
        "patterns.toml: pattern 'generic.full': invalid regex '(?<=x)full': "
        "look-around, including look-ahead and look-behind, is not supported",
    ),
    (
        "patterns_toml",
        PATTERNS + PATTERNS,
        "patterns.toml: pattern 'generic.full': duplicate id",
    ),
    (
        "patterns_toml",
        PATTERNS.replace("example =", 'tier = "broad"\nexample ='),
        "patterns.toml: pattern 'generic.full': 'tier' must be \"words\"",
    ),
    (
        "patterns_toml",
        PATTERNS.replace("example =", 'provider = "yahoo"\nexample ='),
        "patterns.toml: pattern 'generic.full': unknown provider 'yahoo'",
    ),
    (
        "patterns_toml",
        PATTERNS.replace("example =", "classes = [3]\nexample ="),
        "patterns.toml: pattern 'generic.full': 'classes' must be a list of 2, 4 and 5",
    ),
    (
        "patterns_toml",
        PATTERNS.replace("example =", "exmaple ="),
        "patterns.toml: pattern 'generic.full': unknown key 'exmaple'",
    ),
    (
        "patterns_toml",
        "[[patterns]\n",
        "patterns.toml: invalid TOML: Expected ']]' at the end of an array declaration "
        "(at line 1, column 11)",
    ),
    (
        "categories_toml",
        CATEGORIES.replace('hard = "always"', 'hard = "sometimes"'),
        "categories.toml: category 'user_unknown': bad hard value 'sometimes' "
        "(expected always, if_permanent or never)",
    ),
    (
        "categories_toml",
        CATEGORIES.replace('group = "invalid_address"', 'group = "nowhere"'),
        "categories.toml: category 'user_unknown': unknown group 'nowhere'",
    ),
    (
        "categories_toml",
        CATEGORIES.replace("[categories.on_hold]", "[categories.on_hold2]"),
        "categories.toml: category 'on_hold' is missing",
    ),
    (
        "providers_toml",
        PROVIDERS.replace("\\.google", "(google"),
        "providers.toml: provider 'google': invalid regex '(google\\\\.com$': unclosed group",
    ),
    (
        "codes__gmail_csv",
        GMAIL.replace("user_unknown", "nobody_home"),
        "codes/gmail.csv:2: row 'gmail-001': unknown category 'nobody_home'",
    ),
    (
        "codes__gmail_csv",
        GMAIL + GMAIL.splitlines()[1] + "\n",
        "codes/gmail.csv:3: duplicate id 'gmail-001'",
    ),
    (
        "codes__gmail_csv",
        GMAIL.replace("category,", "kategory,"),
        "codes/gmail.csv: missing column 'category'",
    ),
    (
        "codes__gmail_csv",
        GMAIL.replace(",5.1.1,", ",5.1,"),
        "codes/gmail.csv:2: row 'gmail-001': bad enhanced_code '5.1'",
    ),
    (
        "codes__tables_toml",
        TABLES.replace('provider = "google"', 'provider = "aol"'),
        "codes/tables.toml: table 'gmail': unknown provider 'aol'",
    ),
    (
        "blocklists_toml",
        BLOCKLISTS + 'colour = "red"\n',
        "blocklists.toml: blocklist 'inhouse': unknown key 'colour'",
    ),
    (
        "blocklists_toml",
        BLOCKLISTS.replace('["ip"]', '["ips"]'),
        "blocklists.toml: blocklist 'inhouse': 'lists' must name what it holds: ip, domain, url",
    ),
    (
        "blocklists_toml",
        BLOCKLISTS.replace('"rbl.example.net"', '"rbl"'),
        "blocklists.toml: blocklist 'inhouse': 'rbl': a zone or text must be ASCII and at least "
        "5 characters long",
    ),
    (
        "blocklists_toml",
        BLOCKLISTS.replace('zones = ["rbl.example.net"]', "zones = []"),
        "blocklists.toml: blocklist 'inhouse': give the 'zones' or 'texts' that name it",
    ),
    (
        "blocklists_toml",
        BLOCKLISTS.replace('lookup = "https://rbl.example.net/"\n', ""),
        "blocklists.toml: blocklist 'inhouse': missing 'lookup'",
    ),
    (
        "blocklists_toml",
        BLOCKLISTS + BLOCKLISTS.replace("inhouse", "other").replace('"Ours"', '"Theirs"'),
        "blocklists.toml: blocklist 'other': 'rbl.example.net' already names 'inhouse'",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), BROKEN)
def test_validation_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    folder = write_rules(tmp_path, **{name: text})
    with pytest.raises(RulesError) as caught:
        load_rules(builtin_dir=folder)
    assert str(caught.value) == f"{folder}/{message}"


@pytest.mark.parametrize("name", ENGINE_CATEGORIES)
def test_every_category_the_engine_gives_must_be_declared(tmp_path: Path, name: str) -> None:
    # the small folder declares them all: take one away
    header = f"[categories.{name}]"
    assert header in CATEGORIES
    folder = write_rules(tmp_path, categories_toml=CATEGORIES.replace(header, "[categories.x]"))
    with pytest.raises(RulesError) as caught:
        load_rules(builtin_dir=folder)
    assert str(caught.value) == f"{folder}/categories.toml: category '{name}' is missing"


def test_missing_file(tmp_path: Path) -> None:
    folder = write_rules(tmp_path)
    (folder / "patterns.toml").unlink()
    with pytest.raises(RulesError, match=r"patterns.toml: file not found$"):
        load_rules(builtin_dir=folder)


def test_user_folder_layers_over_builtin(tmp_path: Path) -> None:
    builtin = write_rules(tmp_path / "builtin")
    user = write_rules(
        tmp_path / "user",
        patterns_toml=PATTERNS.replace("mailbox (is )?full", "quota")
        + PATTERNS.replace("generic.full", "user.first"),
        codes__gmail_csv=GMAIL.replace("Check it.", "Mine.")
        + "gmail-900,550,5.1.1,Gone.,,,user_unknown,false,\n",
    )
    (user / "codes" / "replies.csv").unlink()
    (user / "codes" / "tables.toml").unlink()
    rules = load_rules(user, builtin_dir=builtin)
    assert rules.patterns.select("id", "regex").rows() == [
        ("user.first", "mailbox (is )?full"),
        ("generic.full", "quota"),
    ]
    assert rules.codes.select("rule_id", "solution", "user").rows() == [
        ("gmail:gmail-001", "Mine.", True),
        ("gmail:gmail-900", None, True),
        ("reply:550", None, False),
    ]


def test_words_tier_comes_after_every_other_pattern_14(tmp_path: Path) -> None:
    """A words-tier pattern is tried after the normal ones whichever layer it is in (a new user
    pattern otherwise comes first), and its rule_id says the tier."""
    words = PATTERNS.replace("generic.full", "words.full").replace(
        "example =", 'tier = "words"\nexample ='
    )
    builtin = write_rules(tmp_path / "builtin", patterns_toml=words + PATTERNS)
    user = write_rules(
        tmp_path / "user",
        patterns_toml=words.replace("words.full", "user.words")
        + PATTERNS.replace("generic.full", "user.first"),
    )
    rules = load_rules(user, builtin_dir=builtin)
    assert rules.patterns.select("id", "rule_id").rows() == [
        ("user.first", "pattern:user.first"),
        ("generic.full", "pattern:generic.full"),
        ("user.words", "words:user.words"),
        ("words.full", "words:words.full"),
    ]


def test_advice_inbound_is_optional_in_a_user_folder(tmp_path: Path) -> None:
    builtin = write_rules(tmp_path / "builtin")
    user = tmp_path / "user"
    user.mkdir()
    (user / "categories.toml").write_text(
        "[categories.user_unknown]\n"
        'description = "No such mailbox."\n'
        'advice = "Remove it."\n'
        'advice_inbound = "A probe of addresses that do not exist here."\n'
        'group = "invalid_address"\n'
        'hard = "always"\n',
        encoding="utf-8",
    )
    rules = load_rules(user, builtin_dir=builtin)
    advice = rules.categories.select("category", "advice", "advice_inbound")
    assert advice.filter(category="user_unknown").row(0) == (
        "user_unknown",
        "Remove it.",
        "A probe of addresses that do not exist here.",
    )
    # the built-in test folder has no advice_inbound: empty, as a missing advice is
    assert advice.filter(category="mailbox_full").row(0) == ("mailbox_full", "", "")


def test_user_rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RULES_ENV, raising=False)
    assert user_rules_dir(None) is None
    assert user_rules_dir(tmp_path) == tmp_path
    monkeypatch.setenv(RULES_ENV, str(tmp_path))
    assert user_rules_dir(None) == tmp_path
    with pytest.raises(RulesError) as caught:
        user_rules_dir(tmp_path / "nope")
    assert str(caught.value) == f"{tmp_path / 'nope'}: rules folder does not exist"


def test_builtin_rules_dir_in_checkout(repo_path: Path) -> None:
    assert builtin_rules_dir() == repo_path / "rules"


def test_builtin_rules_dir_in_wheel_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed wheel ships the rules as the package data folder `bounce_analyzer/rules`."""
    import bounce_analyzer

    package = tmp_path / "bounce_analyzer"
    shutil.copytree(Path(bounce_analyzer.__file__).parent, package)
    (package / "rules").mkdir()
    monkeypatch.setattr(
        "importlib.resources.files", lambda name: package if name == "bounce_analyzer" else None
    )
    assert builtin_rules_dir() == package / "rules"


# --- the real rules ----------------------------------------------------------------------------

BUILTIN_FILES = ["categories.toml", "providers.toml", "patterns.toml", "codes/tables.toml"]
needs_builtin = pytest.mark.skipif(
    not all((builtin_rules_dir() / name).is_file() for name in BUILTIN_FILES),
    reason="built-in rules not all written yet",
)


@needs_builtin
def test_builtin_rules_load() -> None:
    rules = load_rules()
    assert rules.categories.height > 0
    assert set(rules.codes["table"].unique()) >= {"enhanced", "reply"}


@needs_builtin
def test_every_builtin_category_has_advice_for_both_directions() -> None:
    categories = load_rules().categories
    assert categories.columns == [
        "category", "description", "advice", "advice_inbound", "group", "hard",
    ]  # fmt: skip
    blank = pl.col("advice").str.strip_chars() == ""
    empty = categories.filter(blank | (pl.col("advice_inbound").str.strip_chars() == ""))
    assert empty["category"].to_list() == []
    assert categories.filter(pl.col("advice") == pl.col("advice_inbound")).height == 0


def test_the_directions_with_advice_are_the_event_tables() -> None:
    from bounce_analyzer.rules import Direction
    from bounce_analyzer.schema import DIRECTIONS

    assert [direction.value for direction in Direction] == list(DIRECTIONS[:2])


@needs_builtin
def test_block_advice_knows_whose_ip_is_listed() -> None:
    """Outbound, the listed IP is ours: delist it. Inbound, it is the client's: nothing to
    delist (issue 13: the advice told us to delist our IP for a client on Spamhaus)."""
    advice = {
        row["category"]: row
        for row in load_rules()
        .categories.filter(pl.col("category").is_in(["blocked", "bad_reputation"]))
        .iter_rows(named=True)
    }
    assert "Your own sending IP" in advice["blocked"]["advice"]
    assert "delisting steps" in advice["blocked"]["advice"]
    assert "your own sending IP" in advice["bad_reputation"]["advice"]
    for name in ("blocked", "bad_reputation"):
        inbound = advice[name]["advice_inbound"]
        assert "the client's, not yours" in inbound
        assert "nothing to delist" in inbound


@needs_builtin
def test_user_pattern_and_row_win_over_builtin(data_path: Path) -> None:
    from bounce_analyzer.explain import explain_frame

    rules = load_rules(data_path / "rules_user")
    assert rules.patterns["id"][0] == "user.crm_unknown"
    inputs = pl.DataFrame(
        {
            "input": [
                "550 5.1.1 No such CRM contact here",
                "550 something nobody wrote a rule for",
                "550 5.7.1 The user you are trying to contact is receiving mail at a rate that "
                "prevents additional messages from being delivered.",
            ],
            "provider": [None, None, "google"],
        }
    )
    result = explain_frame(inputs, rules).select("category", "rule_id").rows()
    assert result[0] == ("user_unknown", "pattern:user.crm_unknown")
    assert result[2] == ("rate_limited", "gmail:user-gmail-001")
    replies = rules.replies.filter(pl.col("id") == "550")
    assert replies.select("category", "user").rows() == [("policy_violation", True)]
