"""Blocklists named: real replies -> the list they name (rules/blocklists.toml), through the
library, `parse` and `explain`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from bounce_analyzer.blocklists import blocklist_names, blocklist_of
from bounce_analyzer.cli import app
from bounce_analyzer.rules import Rules, load_rules

runner = CliRunner()


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def _names(data_path: Path) -> pl.DataFrame:
    return pl.read_csv(
        data_path / "blocklists" / "names.tsv",
        separator="\t",
        quote_char=None,
        schema={"text": pl.String, "expected": pl.String, "origin": pl.String},
    )


def test_replies_name_their_blocklist(data_path: Path, rules: Rules) -> None:
    table = _names(data_path)
    found = table.with_columns(blocklist_of(pl.col("text"), rules.blocklists).alias("found"))
    wrong = found.filter(pl.col("found").ne_missing(pl.col("expected")))
    assert wrong.select("found", "expected", "origin", "text").rows() == []
    # both kinds of row are there: texts naming a list, texts naming none
    assert table["expected"].null_count() >= 10
    assert table["expected"].drop_nulls().n_unique() >= 7


def test_every_name_of_a_list_names_that_list(rules: Rules) -> None:
    """No zone or text is taken for another list's (`dbl.spamhaus.org` holds `spamhaus`)."""
    names = rules.blocklists.select("blocklist", "names").explode("names")
    found = names.with_columns(
        blocklist_of(pl.col("names").str.to_uppercase(), rules.blocklists).alias("found")
    )
    assert found.filter(pl.col("found") != pl.col("blocklist")).rows() == []


def test_the_first_name_in_the_text_wins_and_the_longer_at_one_place(rules: Rules) -> None:
    texts = pl.Series(
        [
            "blocked using bl.spamcop.net; also listed at zen.spamhaus.org",
            "see https://www.spamhaus.org/query/dbl?domain=spam.example",
            "listed in Spamhaus DBL",
            None,
            "",
        ]
    )
    found = pl.select(blocklist_of(pl.lit(texts), rules.blocklists)).to_series()
    assert found.to_list() == ["spamcop", "spamhaus_dbl", "spamhaus_dbl", None, None]


def test_no_lists_names_nothing() -> None:
    empty = load_rules().blocklists.clear()
    assert blocklist_names(empty) == ([], [])
    texts = pl.DataFrame({"text": ["blocked using zen.spamhaus.org", None]})
    assert texts.select(blocklist_of(pl.col("text"), empty))["text"].to_list() == [None, None]


def test_a_user_list_wins_a_name_it_shares(tmp_path: Path) -> None:
    (tmp_path / "blocklists.toml").write_text(
        "[blocklists.inhouse]\n"
        'label = "Our own list"\n'
        'lists = ["ip"]\n'
        'lookup = "https://rbl.example.net/"\n'
        'zones = ["rbl.example.net"]\n'
        'texts = ["spamhaus"]\n',
        encoding="utf-8",
    )
    rules = load_rules(tmp_path)
    assert rules.blocklists["blocklist"][0] == "inhouse"
    texts = pl.DataFrame(
        {"text": ["blocked using rbl.example.net", "listed in Spamhaus", "zen.spamhaus.org"]}
    )
    assert texts.select(blocklist_of(pl.col("text"), rules.blocklists))["text"].to_list() == [
        "inhouse",
        "inhouse",
        "spamhaus",  # a longer built-in name at the same place still wins
    ]


POSTFIX = [
    # our server refusing a client on Spamhaus (inbound)
    "Nov 27 02:52:33 mx1 postfix/smtpd[50569]: NOQUEUE: reject: RCPT from unknown[198.51.100.195]: "
    "554 5.7.1 Service unavailable; Client host [198.51.100.195] blocked using zen.spamhaus.org; "
    "https://www.spamhaus.org/query/ip/198.51.100.195; from=<sales@bulkmail.example.info> "
    "to=<xenia.dubois@example.com> proto=ESMTP helo=<promo-sender.example.biz>",
    # Outlook.com refusing our IP (outbound)
    "Nov 27 12:58:20 mx1 postfix/smtp[27543]: C178ED7E83: to=<ben.fischer@outlook.com>, "
    "relay=outlook-com.olc.protection.outlook.com[52.101.92.249]:25, delay=1.4, "
    "delays=0.4/0.2/0.64/0.19, dsn=5.7.1, status=bounced (host "
    "outlook-com.olc.protection.outlook.com[52.101.92.249] said: 550 5.7.1 Unfortunately, "
    "messages from [203.0.113.25] weren't sent. Please contact your Internet service provider "
    "since part of their network is on our block list (S3150). You can also refer your provider "
    "to http://mail.live.com/mail/troubleshooting.aspx#errors. (in reply to MAIL FROM command))",
    # a Proofpoint gateway refusing our IP (outbound)
    "Nov 27 14:27:11 mx1 postfix/smtp[8353]: 4F7F0CC92B: to=<g.rossi@initech.example>, "
    "relay=mx0a-00234501.pphosted.com[148.163.40.2]:25, delay=1.7, delays=0.4/0.2/0.93/0.19, "
    "dsn=5.7.1, status=bounced (host mx0a-00234501.pphosted.com[148.163.40.2] said: 554 5.7.1 "
    "Blocked - see https://ipcheck.proofpoint.com/?ip=203.0.113.25 (in reply to MAIL FROM "
    "command))",
    # an unknown user: no list
    "Nov 27 15:01:02 mx1 postfix/smtp[8354]: 5A1B2C3D4E: to=<nobody@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[142.250.102.27]:25, delay=1.1, delays=0.1/0/0.5/0.5, "
    "dsn=5.1.1, status=bounced (host gmail-smtp-in.l.google.com[142.250.102.27] said: "
    "550-5.1.1 The email account that you tried to reach does not exist. (in reply to RCPT TO "
    "command))",
]


def test_parse_fills_the_blocklist_column(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("\n".join(POSTFIX) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["parse", str(log), "--tz", "UTC", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["recipient"], e["category"], e["blocklist"]) for e in events] == [
        ("xenia.dubois@example.com", "blocked", "spamhaus"),
        ("ben.fischer@outlook.com", "blocked", "microsoft"),
        ("g.rossi@initech.example", "blocked", "proofpoint"),
        ("nobody@gmail.com", "user_unknown", None),
    ]


def test_explain_names_the_blocklist_and_its_lookup_page() -> None:
    text = (
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.spamcop.net; "
        "Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.1"
    )
    result = runner.invoke(app, ["explain", text])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "blocklist:    spamcop: SpamCop Blocking List" in lines
    assert "look up:      https://www.spamcop.net/bl.shtml" in lines
    assert any(line.startswith("list note:    Built from spam reports") for line in lines)

    answer = json.loads(runner.invoke(app, ["explain", "--json", text]).output)
    assert (answer["blocklist"], answer["blocklist_lookup"]) == (
        "spamcop",
        "https://www.spamcop.net/bl.shtml",
    )


def test_explain_without_a_named_list_says_nothing_of_lists() -> None:
    result = runner.invoke(app, ["explain", "554 found on one or more DNSBLs"])
    assert result.exit_code == 0, result.output
    assert not [line for line in result.output.splitlines() if line.startswith("blocklist:")]
    answer = json.loads(runner.invoke(app, ["explain", "--json", "421"]).output)
    assert answer["blocklist"] is None


SPAMHAUS_REJECT = (
    "554 5.7.1 Service unavailable; Client host [198.51.100.195] blocked using "
    "zen.spamhaus.org; https://www.spamhaus.org/query/ip/198.51.100.195"
)


def test_explain_gives_the_advice_of_the_direction(rules: Rules) -> None:
    """Issue 13: a client on Spamhaus is not our IP. `explain --direction inbound` says so;
    outbound (the default) tells us to delist our own IP."""
    advice = rules.categories.filter(category="blocked").row(0, named=True)

    outbound = runner.invoke(app, ["explain", "--json", SPAMHAUS_REJECT])
    assert outbound.exit_code == 0, outbound.output
    answer = json.loads(outbound.output)
    assert (answer["direction"], answer["category"], answer["blocklist"]) == (
        "outbound",
        "blocked",
        "spamhaus",
    )
    assert answer["solution"] == answer["advice"] == advice["advice"]

    inbound = runner.invoke(app, ["explain", "--json", "--direction", "inbound", SPAMHAUS_REJECT])
    assert inbound.exit_code == 0, inbound.output
    answer = json.loads(inbound.output)
    assert answer["direction"] == "inbound"
    assert answer["solution"] == answer["advice"] == advice["advice_inbound"]
    assert "nothing to delist" in answer["solution"]

    text = runner.invoke(app, ["explain", "--direction", "inbound", SPAMHAUS_REJECT]).output
    lines = text.splitlines()
    assert "advice for:   mail sent to us (inbound: our server refused or received it)" in lines
    assert "delisting steps" not in text
    assert "blocklist:    spamhaus: Spamhaus ZEN (SBL, CSS, XBL with the CBL, PBL)" in lines


def test_explain_inbound_drops_a_rows_solution_for_senders(rules: Rules) -> None:
    """A code-table row's solution tells the sender what to fix (Gmail's 5.7.26: set up SPF
    and DKIM); for mail sent to us the category's inbound advice replaces it."""
    outbound = json.loads(runner.invoke(app, ["explain", "--json", "5.7.26"]).output)
    inbound = json.loads(
        runner.invoke(app, ["explain", "--json", "--direction", "inbound", "5.7.26"]).output
    )
    assert outbound["rule_id"] == inbound["rule_id"]
    assert outbound["meaning"] == inbound["meaning"]
    assert inbound["category"] == "auth_failure"
    category = rules.categories.filter(category="auth_failure").row(0, named=True)
    assert inbound["solution"] == category["advice_inbound"]
    assert outbound["solution"] != category["advice_inbound"]


def test_explain_stdin_takes_each_lines_direction() -> None:
    lines = [
        SPAMHAUS_REJECT,
        json.dumps({"diagnostic": SPAMHAUS_REJECT, "direction": "outbound"}),
        json.dumps({"diagnostic": SPAMHAUS_REJECT, "direction": " Inbound "}),
    ]
    result = runner.invoke(
        app, ["explain", "-", "--direction", "inbound"], input="\n".join(lines) + "\n"
    )
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.splitlines()]
    assert [a["direction"] for a in answers] == ["inbound", "outbound", "inbound"]
    assert ["nothing to delist" in a["solution"] for a in answers] == [True, False, True]


def test_explain_stdin_refuses_an_unknown_direction_naming_the_line() -> None:
    lines = ["421", json.dumps({"diagnostic": "421", "direction": "sideways"})]
    result = runner.invoke(app, ["explain", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: <stdin>:2: direction must be inbound or outbound, not 'sideways'"
    )
