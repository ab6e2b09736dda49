"""The provider of every held-out recipient domain and relay host (issue 14, providers).

tests/data/providers/held_out.tsv holds several hundred domains and host names of mailbox
providers and security gateways, written from their published MX records and documentation
before the rules were read closely, with look-alikes and customers' own names that must stay
`other`; its README says how it was made and what the rules got right before and after. Each
row is checked through `provider_of` and through the real `explain` command: a domain as the
recipient's, a host as the relay host (`--relay-host`, or as Postfix names it in the text:
`host X[ip] said: ...`) behind a company domain that names no provider.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from _cli import invoke
from bounce_analyzer.classify import OTHER, provider_of
from bounce_analyzer.rules import load_rules

#: A recipient domain of a company, which names no provider: a host row's provider is the host's.
COMPANY = "corp.example"
#: A reply every MTA writes, which names no provider.
REPLY = "550 5.1.1 User unknown"


HELD_OUT = Path(__file__).resolve().parent / "data" / "providers" / "held_out.tsv"


@pytest.fixture(scope="module")
def held_out() -> pl.DataFrame:
    return pl.read_csv(HELD_OUT, separator="\t", infer_schema=False)


def _agreement(rows: pl.DataFrame, got: list[str], how: str) -> tuple[str, list[tuple[str, ...]]]:
    """Rows right / rows by kind, printed, and the rows got wrong (kind, name, expected, got)."""
    kinds = rows["kind"].to_list()
    expected = rows["expected_provider"].to_list()
    pairs = zip(kinds, expected, got, strict=True)
    right = Counter(kind for kind, want, have in pairs if want == have)
    total = Counter(kinds)
    counts = ", ".join(f"{kind} {right[kind]}/{total[kind]}" for kind in sorted(total))
    summary = f"{how}: {counts}"
    print(summary)
    wrong = [
        (kind, name, want, have)
        for kind, name, want, have in zip(kinds, rows["name"], expected, got, strict=True)
        if want != have
    ]
    return summary, wrong


def test_held_out_table_is_well_formed(held_out: pl.DataFrame) -> None:
    assert held_out.columns == ["kind", "name", "expected_provider", "origin"]
    assert held_out.height >= 400
    assert set(held_out["kind"]) == {"domain", "host"}
    assert held_out.filter(pl.col("origin").str.len_chars() < 10).height == 0
    assert held_out.select("kind", "name").is_duplicated().sum() == 0
    # every label is a provider of the built-in rules, or `other`: a typo cannot pass unseen
    providers = set(load_rules().providers["provider"])
    assert set(held_out["expected_provider"]) - providers == {OTHER}
    # negatives are there: names that merely hold a provider's name stay `other`
    assert held_out.filter(pl.col("expected_provider") == OTHER).height >= 80


def test_held_out_providers_by_provider_of(held_out: pl.DataFrame) -> None:
    is_host = pl.col("kind") == "host"
    frame = held_out.lazy().select(
        pl.when(is_host).then(pl.lit(COMPANY)).otherwise("name").alias("recipient_domain"),
        pl.when(is_host).then("name").alias("relay_host"),
    )
    got = provider_of(frame, load_rules()).collect()["provider"].to_list()
    summary, wrong = _agreement(held_out, got, "provider_of")
    assert wrong == [], summary


def _explained(lines: list[str]) -> list[str]:
    result = invoke("explain", "-", stdin="\n".join(lines).encode() + b"\n")
    assert result.exit_code == 0, result.output
    return [json.loads(line)["provider"] for line in result.stdout.splitlines()]


def test_held_out_providers_by_explain_recipient_or_relay_host(held_out: pl.DataFrame) -> None:
    # a JSON line per row: the domain as the recipient's, the host as the relay host
    lines = [
        json.dumps(
            {"diagnostic": REPLY, "recipient": f"someone@{name}"}
            if kind == "domain"
            else {"diagnostic": REPLY, "recipient": f"someone@{COMPANY}", "relay_host": name}
        )
        for kind, name in held_out.select("kind", "name").iter_rows()
    ]
    summary, wrong = _agreement(held_out, _explained(lines), "explain")
    assert wrong == [], summary


def test_held_out_hosts_named_in_the_text_by_explain(held_out: pl.DataFrame) -> None:
    # no relay host given apart: the host is the one the text says answered, as Postfix
    # writes it in a bounce (`host X[ip] said:`) and as users paste it into `explain`
    hosts = held_out.filter(pl.col("kind") == "host")
    lines = [
        f"host {name}[192.0.2.1] said: {REPLY} (in reply to RCPT TO command)"
        for name in hosts["name"]
    ]
    summary, wrong = _agreement(hosts, _explained(lines), "explain host-said text")
    assert wrong == [], summary


@pytest.mark.parametrize(
    ("text", "provider"),
    [
        # Postfix: a connection that failed names the host it tried
        ("connect to mx1.hotmail.com[192.0.2.1]:25: Connection timed out", "microsoft"),
        # Exim: the address, then the host and its address apart
        (
            "someone@corp.example: host mx0a-00123401.pphosted.com [192.0.2.1]: 550 5.1.1 "
            "User unknown",
            "proofpoint",
        ),
        # a host named later in the text is not the one that answered
        ("550 5.7.1 Mail from host mx.yandex.net[192.0.2.1] refused", OTHER),
    ],
)
def test_explain_text_names_the_host_that_answered(text: str, provider: str) -> None:
    result = invoke("explain", "--json", text)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["provider"] == provider


def test_explain_relay_host_given_apart_wins_over_the_text() -> None:
    text = f"host alt3.aspmx.l.google.com[192.0.2.1] said: {REPLY}"
    result = invoke("explain", "--json", text, "--relay-host", "mx.example.com")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["provider"] == OTHER
