"""Providers by tenant and infrastructure (issue 14), and a provider's own pattern naming its
provider, through the real `parse` and `explain` commands.

The replies are the providers' documented texts as servers send them: Exchange Online's
5.4.1 (Microsoft's "Fix email delivery issues for error code 550 5.4.1" page), Mimecast's
"Envelope blocked - User Entry" (Mimecast's SMTP error code list), Gmail's NoSuchUser (as
sample_logs/postfix/mail.log has it). The Postfix lines are in
tests/data/postfix/synthetic/tenants.log. Host names follow each provider's MX naming
(<domain>.mail.protection.outlook.com, eu-smtp-inbound-1.mimecast.com, mx0a-<id>.pphosted.com,
mta5.am0.yahoodns.net); addresses and ids are invented.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from _cli import invoke
from bounce_analyzer.classify import classify
from bounce_analyzer.errors import RulesError
from bounce_analyzer.rules import load_rules
from test_rules import PROVIDERS, write_rules

GMAIL_NO_SUCH_USER = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try "
    "double-checking the recipient's email address for typos or unnecessary spaces. "
    "https://support.google.com/mail/?p=NoSuchUser"
)


def test_postfix_tenants_and_gateways_get_their_provider(data_path: Path) -> None:
    # tenants.log: Postfix bounce lines as postfix/smtp writes them, to a Microsoft 365
    # tenant (by its relay and by its onmicrosoft.com domain), and behind Mimecast,
    # Proofpoint and Google Workspace
    log = data_path / "postfix" / "synthetic" / "tenants.log"
    result = invoke("parse", str(log), "--format", "jsonl", "--tz", "UTC")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["recipient_domain"], e["provider"]) for e in events] == [
        ("contoso.com", "microsoft"),  # relay <domain>.mail.protection.outlook.com
        ("fabrikam.onmicrosoft.com", "microsoft"),  # a Microsoft 365 tenant's own domain
        ("northwind.co.uk", "mimecast"),
        ("tailspin.example", "proofpoint"),
        ("corp.example", "google"),  # a Workspace domain behind aspmx.l.google.com
    ]


@pytest.mark.parametrize(
    ("option", "provider"),
    [
        (("--recipient", "someone@contoso.onmicrosoft.com"), "microsoft"),
        (("--recipient", "someone@contoso.mail.onmicrosoft.com"), "microsoft"),
        (("--recipient", "someone@exchangelabs.com"), "microsoft"),
        (("--recipient", "someone@google.com"), "google"),
        (("--relay-host", "alt2.aspmx.l.google.com"), "google"),
        (("--relay-host", "aspmx.googlemail.com"), "google"),
        (("--relay-host", "mta6.am0.yahoodns.net"), "yahoo"),
        (("--relay-host", "mx-aol.mail.gm0.yahoodns.net"), "yahoo"),
        (("--relay-host", "us-smtp-inbound-2.mimecast.com"), "mimecast"),
        (("--relay-host", "de-smtp-inbound-1.mimecast-offshore.com"), "mimecast"),
        (("--relay-host", "mx1-us1.ppe-hosted.com"), "proofpoint"),
        # a domain that is itself a provider's host name is that provider's
        (("--recipient", "someone@mimecast.com"), "mimecast"),
        (("--recipient", "someone@pphosted.com"), "proofpoint"),
        # the recipient domain decides before the relay host
        (
            ("--recipient", "a@gmail.com", "--relay-host", "eu-smtp-inbound-1.mimecast.com"),
            "google",
        ),
        (("--recipient", "a@example.com"), "other"),
    ],
)
def test_explain_provider_of_tenant_and_infrastructure_names(
    option: tuple[str, ...], provider: str
) -> None:
    result = invoke("explain", "--json", "550 5.1.1 User unknown", *option)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["provider"] == provider


def test_explain_gmail_text_alone_names_google() -> None:
    # issue 14: the text is Gmail's own, so the provider is google without --recipient
    result = invoke("explain", "--json", GMAIL_NO_SUCH_USER)
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    assert (explained["provider"], explained["rule_id"]) == (
        "google",
        "pattern:google.user_unknown",
    )


def test_explain_provider_pattern_does_not_outvote_the_recipient_domain() -> None:
    # Gmail's text relayed for a domain another provider holds: the domain decides
    result = invoke("explain", "--json", GMAIL_NO_SUCH_USER, "--recipient", "a@yahoo.com")
    assert json.loads(result.stdout)["provider"] == "yahoo"
    result = invoke("explain", "--json", GMAIL_NO_SUCH_USER, "--provider", "zoho")
    assert json.loads(result.stdout)["provider"] == "zoho"


def test_explain_exchange_server_text_names_no_provider() -> None:
    # any Exchange server (on-premises too) writes this for a domain that does not exist
    text = "550 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain"
    result = invoke("explain", "--json", text, "--recipient", "someone@example.invalid")
    explained = json.loads(result.stdout)
    assert (explained["provider"], explained["rule_id"]) == (
        "other",
        "pattern:microsoft.nonexistent_domain",
    )


def test_parse_esp_event_gets_the_provider_its_text_names(tmp_path: Path) -> None:
    # SendGrid gives no relay host; the reply is Gmail's, for a Workspace company domain
    event = {
        "email": "m.rossi@corp.example",
        "timestamp": 1795740381,
        "smtp-id": "<aB3dE5fG7hI9jK1lM3nO5p@ismtpd039p1mdw1.sendgrid.net>",
        "event": "bounce",
        "sg_event_id": "Ym91bmNlLTEtYUIzZEU1Zkc3aEk5aksxbE0zbk81cA",
        "sg_message_id": "aB3dE5fG7hI9jK1lM3nO5p.filterdrecv-5e96bba0ed-1-7055573F-39.0",
        "reason": GMAIL_NO_SUCH_USER,
        "status": "5.1.1",
        "type": "bounce",
    }
    log = tmp_path / "events.ndjson"
    log.write_text(json.dumps(event) + "\n", encoding="utf-8")
    result = invoke("parse", str(log), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    (parsed,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (parsed["provider"], parsed["category"]) == ("google", "user_unknown")


def test_pattern_provider_is_decided_per_event_not_per_text() -> None:
    # one text, three events: the one whose domain names a provider keeps it
    rules = load_rules()

    frame = pl.DataFrame(
        {
            "event": ["bounced", "bounced", "bounced"],
            "diagnostic": [GMAIL_NO_SUCH_USER] * 3,
            "recipient_domain": ["corp.example", "outlook.com", None],
            "relay_host": [None, None, "mx.corp.example"],
        }
    )
    assert classify(frame, rules)["provider"].to_list() == ["google", "microsoft", "google"]


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        (
            PROVIDERS + 'patterns = ["google.nope"]\n',
            "providers.toml: provider 'google': unknown pattern 'google.nope'",
        ),
        (
            PROVIDERS
            + 'patterns = ["generic.full"]\n[providers.acme]\npatterns = ["generic.full"]\n',
            "providers.toml: provider 'acme': pattern 'generic.full' is already provider "
            "'google''s",
        ),
        (
            PROVIDERS + 'patterns = "generic.full"\n',
            "providers.toml: provider 'google': 'patterns' must be a list of strings",
        ),
    ],
)
def test_provider_patterns_are_checked(tmp_path: Path, providers: str, message: str) -> None:
    folder = write_rules(tmp_path, providers_toml=providers)
    with pytest.raises(RulesError) as caught:
        load_rules(builtin_dir=folder)
    assert str(caught.value) == f"{folder}/{message}"


def test_provider_patterns_load(tmp_path: Path) -> None:
    folder = write_rules(tmp_path, providers_toml=PROVIDERS + 'patterns = ["generic.full"]\n')
    rules = load_rules(builtin_dir=folder)
    assert rules.providers.rows() == [("google", "Google", ["generic.full"])]
    events = pl.DataFrame({"event": ["bounced"], "diagnostic": ["552 Mailbox is full"]})
    assert classify(events, rules)["provider"].to_list() == ["google"]
