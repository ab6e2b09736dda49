"""Which provider a relay host or a recipient domain names, and the provider a provider's own
text names (issue 14, providers).

Host names are the providers' real MX and infrastructure hosts as their MX records and
postmaster pages show them (gmail-smtp-in.l.google.com, <domain>.mail.protection.outlook.com,
mta5.am0.yahoodns.net, cxr.mx.a.cloudfilter.net for cox.net, smtpin.vvv.facebook.com,
mx3.qq.com, smtp-in.orange.fr, cluster1.eu.messagelabs.com, ...); the numbered parts of tenant
hosts are invented. Full messages of each provider, with the relay that answered, are labelled
in tests/data/diagnostics/providers.tsv (read by test_classify.py::test_labelled_messages).
"""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from _cli import invoke
from bounce_analyzer.classify import classify, provider_of
from bounce_analyzer.explain import explain_frame
from bounce_analyzer.rules import load_rules

RELAY_HOSTS = [
    ("gmail-smtp-in.l.google.com", "google"),
    ("alt1.aspmx.l.google.com", "google"),
    ("smtp.google.com", "google"),
    ("aspmx.googlemail.com", "google"),
    ("wr-in-f26.1e100.net", "google"),
    ("contoso-com.mail.protection.outlook.com", "microsoft"),
    ("hotmail-com.olc.protection.outlook.com", "microsoft"),
    ("am4pr01mb1234.eurprd01.prod.exchangelabs.com", "microsoft"),
    ("db5eur03ft012.mail.protection.outlook.com", "microsoft"),
    ("smtp.office365.com", "microsoft"),
    ("eur01-am5-obe.outbound.protection.outlook.com", "microsoft"),
    ("am0pr01mb1234.eurprd01.prod.outlook.com", "microsoft"),
    ("contoso.mail.protection.partner.outlook.cn", "microsoft"),
    # the national clouds: Microsoft Cloud Deutschland, US Government GCC High / DoD
    ("contoso-com.mail.protection.outlook.de", "microsoft"),
    ("contoso-com.mail.protection.office365.us", "microsoft"),
    ("contoso-com.mail.eo.outlook.com", "microsoft"),
    ("mail.messaging.microsoft.com", "microsoft"),
    ("mail.global.frontbridge.com", "microsoft"),
    ("contoso-com.p-v1.mx.microsoft", "microsoft"),
    ("mta5.am0.yahoodns.net", "yahoo"),
    ("mta7.am0.yahoodns.net", "yahoo"),
    ("mx-aol.mail.gm0.yahoodns.net", "yahoo"),
    ("mx-biz.mail.am0.yahoodns.net", "yahoo"),
    ("mx01.mail.icloud.com", "apple"),
    ("mx02.mail.icloud.com", "apple"),
    ("cxr.mx.a.cloudfilter.net", "cox"),
    ("cxr.mx.b.cloudfilter.net", "cox"),
    # cloudfilter.net also serves other ISPs than Cox, under other names
    ("mx.example-isp.cloudfilter.net", "other"),
    ("smtp.secureserver.net", "godaddy"),
    ("mailstore1.secureserver.net", "godaddy"),
    ("smtpin.vvv.facebook.com", "facebook"),
    ("mx-out.facebook.com", "facebook"),
    ("smtp-in.orange.fr", "orange"),
    ("smtp-in.laposte.net", "laposte"),
    ("cluster1.eu.messagelabs.com", "messagelabs"),
    ("cluster5.us.messagelabs.com", "messagelabs"),
    ("dnvrco-cmedge-mx.charter.net", "spectrum"),
    ("hrndva-smtpin01.mail.rr.com", "spectrum"),
    ("mx3.qq.com", "qq"),
    ("mxbiz1.qq.com", "qq"),
    ("mx.i.ua", "iua"),
    ("mx.email.ua", "iua"),
    ("mx.zoho.com", "zoho"),
    ("mx.zoho.eu", "zoho"),
    ("mx.zoho.com.au", "zoho"),
    ("mx.zohocloud.ca", "zoho"),
    ("mfsmax.docomo.ne.jp", "docomo"),
    ("lsean.ezweb.ne.jp", "kddi"),
    ("route1.mx.cloudflare.net", "cloudflare"),
    ("eu-smtp-inbound-1.mimecast.com", "mimecast"),
    ("us-smtp-inbound-2.mimecast.com", "mimecast"),
    ("za-smtp-inbound-1.mimecast.co.za", "mimecast"),
    ("je-smtp-inbound-1.mimecast-offshore.com", "mimecast"),
    ("de-smtp-inbound-1.mimecast.com", "mimecast"),
    ("usb-smtp-inbound-1.mimecastgov.com", "mimecast"),
    ("mx1-us1.ppe-hosted.com", "proofpoint"),
    ("mx0b-00123401.pphosted.com", "proofpoint"),
    ("mx00.gmx.net", "gmx"),
    ("mx01.emig.gmx.net", "gmx"),
    ("mx-ha02.web.de", "gmx"),
    ("mx00.mail.com", "gmx"),
    ("mx.yandex.net", "yandex"),
    ("mx.yandex.ru", "yandex"),
    ("mx.yandex.com", "yandex"),
    ("mxs.mail.ru", "mailru"),
    ("mx1.comcast.net", "comcast"),
    ("ff-ip4-mx-vip1.prodigy.net", "att"),
    ("mx.zoho.in", "zoho"),
    ("mx.zoho.com.cn", "zoho"),
    ("mx0a-00123401.pphosted.com", "proofpoint"),
    ("d1.ess.barracudanetworks.com", "barracuda"),
    ("d123456a.ess.barracudanetworks.com", "barracuda"),
    ("mx1.barracuda.com", "barracuda"),
    ("mx1.proofpoint.com", "proofpoint"),
    ("msmx.au.com", "kddi"),
    ("mailin-01.mx.aol.com", "yahoo"),
    ("smtpin.zoho.com", "zoho"),
    ("mx.example.com", "other"),
    ("smtp-in.virgilio.it", "libero"),
    ("mx.o2.pl", "wp"),
    ("mx1.kakao.com", "daum"),
    ("mx.zohomail.com.au", "zoho"),
    ("mail-4318.proton.ch", "proton"),
]

RECIPIENT_DOMAINS = [
    ("gmail.com", "google"),
    ("googlemail.com", "google"),
    ("google.com", "google"),
    ("outlook.com", "microsoft"),
    ("hotmail.com", "microsoft"),
    ("hotmail.co.uk", "microsoft"),
    ("live.com", "microsoft"),
    ("msn.com", "microsoft"),
    ("hotmail.ca", "microsoft"),
    ("outlook.com.ar", "microsoft"),
    ("live.co.za", "microsoft"),
    ("contoso.onmicrosoft.com", "microsoft"),
    ("contoso.mail.onmicrosoft.com", "microsoft"),
    ("exchangelabs.com", "microsoft"),
    ("contoso.partner.onmschina.cn", "microsoft"),
    ("contoso.onmicrosoft.de", "microsoft"),
    ("yahoo.com", "yahoo"),
    ("yahoo.co.uk", "yahoo"),
    ("ymail.com", "yahoo"),
    ("rocketmail.com", "yahoo"),
    ("aol.com", "yahoo"),
    ("aim.com", "yahoo"),
    ("verizon.net", "yahoo"),
    ("netscape.net", "yahoo"),
    ("love.com", "yahoo"),
    ("yahoo.com.my", "yahoo"),
    # Yahoo! JAPAN is another company's (LY Corporation), with its own servers
    ("yahoo.co.jp", "other"),
    ("icloud.com", "apple"),
    ("me.com", "apple"),
    ("mac.com", "apple"),
    ("gmx.de", "gmx"),
    ("gmx.net", "gmx"),
    ("web.de", "gmx"),
    ("gmx.org", "gmx"),
    ("email.com", "gmx"),
    ("yandex.com", "yandex"),
    ("ya.ru", "yandex"),
    ("mail.ru", "mailru"),
    ("bk.ru", "mailru"),
    ("comcast.net", "comcast"),
    ("cox.net", "cox"),
    ("facebook.com", "facebook"),
    ("qq.com", "qq"),
    ("vip.qq.com", "qq"),
    ("foxmail.com", "qq"),
    ("orange.fr", "orange"),
    ("wanadoo.fr", "orange"),
    ("laposte.net", "laposte"),
    ("charter.net", "spectrum"),
    ("rr.com", "spectrum"),
    ("nc.rr.com", "spectrum"),
    ("i.ua", "iua"),
    ("zohomail.com", "zoho"),
    ("docomo.ne.jp", "docomo"),
    ("ezweb.ne.jp", "kddi"),
    # a mailbox at a provider's own infrastructure domain
    ("mimecast.com", "mimecast"),
    ("messagelabs.com", "messagelabs"),
    ("secureserver.net", "godaddy"),
    ("example.com", "other"),
    # Outlook.com's country domains, found by a host pattern on the recipient domain
    ("hotmail.co.kr", "microsoft"),
    ("live.com.pt", "microsoft"),
    ("outlook.com.co", "microsoft"),
    # ... but not the two-letter TLDs sold as brands: other people's domains and typo traps
    ("live.me", "other"),
    ("live.tv", "other"),
    ("hotmail.co", "other"),
    ("outlook.co", "other"),
    ("outlook.ai", "other"),
    # ISPs and services the providers took in (prov9, after the held-out table)
    ("bresnan.net", "spectrum"),
    ("insightbb.com", "spectrum"),
    ("twcbc.com", "spectrum"),
    ("numericable.fr", "sfr"),
    ("noos.fr", "sfr"),
    ("9online.fr", "sfr"),
    ("interia.com", "interia"),
    ("intmail.pl", "interia"),
    ("caramail.com", "gmx"),
    ("mopera.net", "docomo"),
    ("auone.jp", "kddi"),
    ("dion.ne.jp", "kddi"),
]


def _providers(domains: list[str | None], hosts: list[str | None]) -> list[str]:
    frame = pl.LazyFrame(
        {"recipient_domain": domains, "relay_host": hosts},
        schema={"recipient_domain": pl.String, "relay_host": pl.String},
    )
    return provider_of(frame, load_rules()).collect()["provider"].to_list()


def test_classify_gives_each_row_its_pairs_provider() -> None:
    # classify works out each distinct (recipient domain, relay host) once and joins the
    # answer back onto the rows: rows in any order, pairs repeated, nulls among them, each row
    # gets what provider_of gives it alone
    pairs = [("corp.example", host) for host, _ in RELAY_HOSTS]
    pairs += [(domain, None) for domain, _ in RECIPIENT_DOMAINS]
    pairs += [(None, None), (None, "mx.corp.example"), ("corp.example", "mx.corp.example")]
    rows = random.Random(18).choices(pairs, k=4 * len(pairs))
    frame = pl.DataFrame(
        {
            "source": "postfix",
            "event": "delivered",
            "recipient_domain": [domain for domain, _ in rows],
            "relay_host": [host for _, host in rows],
        },
        schema_overrides={"recipient_domain": pl.String, "relay_host": pl.String},
    )
    got = classify(frame, load_rules())["provider"].to_list()
    assert got == [_providers([domain], [host])[0] for domain, host in rows]
    assert len(set(got)) > 10 and "other" in got


@pytest.mark.parametrize(("host", "provider"), RELAY_HOSTS)
def test_relay_host_names_its_provider(host: str, provider: str) -> None:
    # a company domain (no provider of its own) behind the provider's host
    assert _providers(["corp.example"], [host]) == [provider]
    # host names are matched without regard to case, as DNS has them
    assert _providers([None], [host.upper()]) == [provider]


@pytest.mark.parametrize(("domain", "provider"), RECIPIENT_DOMAINS)
def test_recipient_domain_names_its_provider(domain: str, provider: str) -> None:
    assert _providers([domain], [None]) == [provider]


def _listed() -> list[tuple[str, str, str]]:
    """(pattern id, provider, example) of every pattern a provider lists as its own."""
    rules = load_rules()
    examples = dict(rules.patterns.select("id", "example").iter_rows())
    return [
        (pattern, provider, examples[pattern])
        for provider, patterns in rules.providers.select("provider", "patterns").iter_rows()
        for pattern in patterns or []
    ]


def test_every_provider_listed_pattern_names_its_provider() -> None:
    # issue 14: a provider's own text names the provider, as Gmail's does, with no recipient
    # or relay host given (explain without --recipient)
    listed = _listed()
    assert len(listed) > 50
    inputs = pl.DataFrame({"input": [example for _, _, example in listed]})
    explained = explain_frame(inputs, load_rules())
    got = list(zip(explained["rule_id"], explained["provider"], strict=True))
    want = [(f"pattern:{pattern}", provider) for pattern, provider, _ in listed]
    assert [pair for pair in zip(want, got, strict=True) if pair[0] != pair[1]] == []


@pytest.mark.parametrize(
    ("text", "provider", "category"),
    [
        (
            "421 mwinf5c15 ME Trop de connexions, veuillez verifier votre configuration. "
            "Too many connections, slow down. OFR005_104 [104]",
            "orange",
            "rate_limited",
        ),
        (
            "550 5.7.511 Access denied, banned sender[192.0.2.1]. To request removal from this "
            "list, forward this message to delist@microsoft.com.",
            "microsoft",
            "blocked",
        ),
        (
            "451 The incorrect hostname used for inbounds - "
            "https://community.mimecast.com/docs/DOC-1369#451",
            "mimecast",
            "network_error",
        ),
    ],
)
def test_explain_provider_text_alone_names_it(text: str, provider: str, category: str) -> None:
    # through the real command, as a user asks it: no --recipient, no --relay-host
    result = invoke("explain", "--json", text)
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    assert (explained["provider"], explained["category"]) == (provider, category)


@pytest.mark.parametrize(
    ("text", "recipient", "category"),
    [
        ("550 5.7.1 Service unavailable", "someone@outlook.com", "blocked"),
        (
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred - 4.16.56.1; see "
            "https://postmaster.yahooinc.com/error-codes",
            "someone@yahoo.com",
            "bad_reputation",
        ),
    ],
)
def test_explain_issue_14_provider_replies_get_no_auth_advice(
    text: str, recipient: str, category: str
) -> None:
    # issue 14: both got security_error ("Check the SMTP AUTH credentials") from the bare
    # X.7.0/X.7.1 code; their provider's own reading of its reply decides
    result = invoke("explain", "--json", text, "--recipient", recipient)
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    assert explained["category"] == category
    assert "AUTH" not in explained["advice"]


def test_gmail_multi_line_reply_matches_its_pattern() -> None:
    # Postfix joins Gmail's reply lines, each with its code, so a continuation code can stand
    # between two words of a pattern: "an unusual rate of 421-4.7.0 unsolicited mail"
    text = (
        "421-4.7.0 [192.0.2.1      15] Our system has detected an unusual rate of 421-4.7.0 "
        "unsolicited mail originating from your IP address. To protect our 421-4.7.0 users "
        "from spam, mail sent from your IP address has been temporarily 421-4.7.0 rate "
        "limited. a42si85499772wrx.219 - gsmtp"
    )
    explained = explain_frame(pl.DataFrame({"input": [text]}), load_rules())
    assert explained.select("rule_id", "category", "provider").row(0) == (
        "pattern:google.unusual_rate",
        "blocked",
        "google",
    )


def test_cox_code_without_a_cox_host_names_no_provider() -> None:
    # Cox's short AUP# codes apply to Cox's replies only: elsewhere they decide nothing
    inputs = pl.DataFrame(
        {
            "input": ["554 5.7.1 AUP#CXBL"] * 2,
            "relay_host": ["cxr.mx.a.cloudfilter.net", "mx.example.com"],
        }
    )
    explained = explain_frame(inputs, load_rules())
    assert explained.select("provider", "rule_id").row(0) == ("cox", "pattern:cox.ip_blocklist")
    assert explained.select("provider", "rule_id").row(1)[0] == "other"
    assert not explained["rule_id"][1].startswith("pattern:cox.")
