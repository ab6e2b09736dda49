"""Which way the mail went (issue 13): the decision table of docs/SCHEMA.md, through the real
CLI on logs of both directions, and its settings (`rules/direction.toml`, `--local-domains`).

The logs are a Debian/Ubuntu Postfix and Exim server's (tests/data/direction/README.md) and
real corpus lines (tests/data/postfix/corpus/): every row of the table is met in them.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from _cli import invoke
from bounce_analyzer.direction import EXIM_INBOUND_TRANSPORTS, _name_test, _names, direction_of
from bounce_analyzer.direction import FACTS as DIRECTION_FACTS
from bounce_analyzer.errors import SettingsError
from bounce_analyzer.rules import DirectionSettings, load_rules
from bounce_analyzer.schema import DIRECTIONS, FACT_SCHEMA
from bounce_analyzer.store import scan_events

DATA = Path(__file__).resolve().parent / "data"
DIRECTION = DATA / "direction"
#: Classic syslog stamps take their year from the file: Nov 28 is 2026.
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


def copy_log(tmp_path: Path, source: Path) -> Path:
    target = tmp_path / source.name
    target.write_bytes(source.read_bytes())
    os.utime(target, (MTIME, MTIME))
    return target


def parse_jsonl(*args: str) -> dict[int, dict[str, Any]]:
    """`parse --format jsonl` of one log: its events by line number."""
    result = invoke("parse", *args, "--tz", "UTC", "--format", "jsonl", "--quiet")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    return {int(event["origin"].rsplit(":", 1)[1]): event for event in events}


# --- the decision table, through `parse` --------------------------------------------------------

# postfix-debian.log: line -> direction, transport, client_ip, relay_ip (the row that decides)
POSTFIX = [
    (5, "inbound", "postscreen", "203.0.113.45", None),  # 2: postscreen's DNSBL reject
    (12, "outbound", "smtp", None, "192.0.2.27"),  # 9: smtp to Gmail
    (13, "outbound", "smtp", None, "192.0.2.25"),
    (14, "outbound", "smtp", None, "192.0.2.44"),  # 9: our IP on Spamhaus, as Outlook says
    (19, "inbound", "local", None, None),  # 6: a bounce notice into a local mailbox
    (22, "inbound", "smtpd", "203.0.113.77", None),  # 2: a client on Spamhaus
    (24, "inbound", "smtpd", "192.0.2.25", None),  # 2: unknown user
    (25, "inbound", "smtpd", "203.0.113.9", None),  # 2: relay access denied
    (26, "inbound", "smtpd", "203.0.113.12", None),  # 2: HELO check
    (27, "inbound", "smtpd", "203.0.113.50", None),  # 2: submission/smtpd
    (33, "internal", "smtp", None, "127.0.0.1"),  # 7: the amavis hop
    (40, "inbound", "lmtp", None, None),  # 6: dovecot's lmtp socket
    (43, "inbound", "lmtp", None, "127.0.0.1"),  # 6: lmtp to 127.0.0.1:24
    (46, "inbound", "virtual", None, None),  # 6
    (47, "inbound", "pipe", None, None),  # 6: relay=dovecot
    (48, "inbound", "local", None, None),  # 6: unknown local user
    (49, "inbound", "cleanup", "203.0.113.88", None),  # 2: milter-reject
    (50, "outbound", "error", None, "192.0.2.5"),  # 9: the error transport
    (51, "outbound", "qmgr", None, None),  # 9: expiry
    (52, "outbound", "smtp", None, "192.0.2.55"),  # 9: postfix-out/smtp
]

# exim-debian.log: line -> direction, transport, client_ip, relay_ip
EXIM = [
    (2, "outbound", "remote_smtp", None, "192.0.2.27"),  # 9
    (3, "outbound", "remote_smtp", None, "192.0.2.25"),  # 9
    (6, "inbound", "mail_spool", None, None),  # 6: => user <user@host> R=local_user T=mail_spool
    (9, "outbound", "remote_smtp_smarthost", None, "192.0.2.50"),  # 9
    (11, "inbound", "maildir_home", None, None),  # 6
    (12, "inbound", "dovecot_lmtp", None, None),  # 6
    (13, "inbound", "address_pipe", None, None),  # 6
    (14, "inbound", "system_aliases", None, None),  # 6: => :blackhole:
    (15, "inbound", "maildir_home", None, None),  # 6: a deferral into a full mailbox
    (17, "inbound", None, "203.0.113.77", None),  # 2: rejected RCPT, DNSBL
    (18, "inbound", None, "192.0.2.25", None),  # 2
    (19, "inbound", None, "203.0.113.9", None),  # 2
    (20, "inbound", None, "203.0.113.88", None),  # 2: rejected after DATA
    (21, "inbound", None, "203.0.113.89", None),  # 2
    (23, "internal", "amavis_smtp", None, "127.0.0.1"),  # 7
]


@pytest.mark.parametrize(
    ("name", "table"), [("postfix-debian.log", POSTFIX), ("exim-debian.log", EXIM)]
)
def test_parse_shows_direction_transport_and_client(
    tmp_path: Path, name: str, table: list[tuple[Any, ...]]
) -> None:
    events = parse_jsonl(str(copy_log(tmp_path, DIRECTION / name)))
    got = {
        line: (e["direction"], e["transport"], e["client_ip"], e["relay_ip"])
        for line, e in events.items()
    }
    assert got == {line: tuple(fields) for line, *fields in table}
    # a refused client is never a relay: relay_* are null on every reject
    rejects = [e for e in events.values() if e["event"] == "rejected"]
    assert rejects and all(e["relay_host"] is None and e["relay_ip"] is None for e in rejects)


# Real lines of other people's servers (tests/data/postfix/corpus): line -> direction
CORPUS = [
    # postfix/amavis/smtp ... relay=127.0.0.1[127.0.0.1]:10024   (the content filter hop)
    ("pixelpark-postfix-logsums__tests_mail.log__excerpt.log", 15, "internal"),
    # postfix/pipe ... relay=dovecot, ... status=sent (delivered via dovecot service)
    ("pixelpark-postfix-logsums__tests_mail.log__excerpt.log", 17, "inbound"),
    # postfix/virtual ... relay=virtual, ... status=sent (delivered to maildir)
    ("kumina-postfix_exporter__postfix_exporter_test.go.log", 44, "inbound"),
    # postfix/local ... relay=local, ... status=sent (delivered to mailbox)
    ("Anantg21-Python-Dashboard-for-Postfix-Logs__maillog.log", 15, "inbound"),
    # postfix/smtp ... relay=mxs.mail.ru[94.100.176.20]:25, ... status=bounced
    ("A1essandr0-postfix_log_parser__test_fixtures_error_mailbox_not_found.txt.log", 2, "outbound"),
    # postfix/smtpd ... NOQUEUE: reject: RCPT from 1-2-3-4-example.com[1.2.3.4]: 554 5.7.1
    ("fail2ban-fail2ban__fail2ban_tests_files_logs_postfix.log", 2, "inbound"),
]


@pytest.mark.parametrize(("name", "line", "expected"), CORPUS)
def test_real_lines_of_each_direction(tmp_path: Path, name: str, line: int, expected: str) -> None:
    events = parse_jsonl(str(copy_log(tmp_path, DATA / "postfix" / "corpus" / name)))
    assert events[line]["direction"] == expected


# --- the settings --------------------------------------------------------------------------------

#: A gateway for example.com: inbound mail goes on to the internal Exchange server with smtp,
#: and Postfix's error transport defers a message for a local domain; plus outbound mail.
GATEWAY = (
    "Nov 28 11:00:00 gw postfix/smtp[3101]: 1C2D3E4F5A: to=<alice@example.com>, "
    "relay=exchange.corp.example.com[10.0.5.10]:25, delay=0.3, delays=0.1/0/0.1/0.1, dsn=2.0.0, "
    "status=sent (250 2.6.0 <CAF1abcDEF@mail.gmail.com> Queued mail for delivery)\n"
    "Nov 28 11:00:01 gw postfix/error[3102]: 2D3E4F5A6B: to=<bob@sales.example.com>, "
    "relay=none, delay=3600, delays=3600/0/0/0, dsn=4.4.1, status=deferred (delivery "
    "temporarily suspended: connect to exchange.corp.example.com[10.0.5.10]:25: Connection "
    "timed out)\n"
    "Nov 28 11:00:02 gw postfix/smtp[3103]: 3E4F5A6B7C: to=<jane.doe@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[192.0.2.27]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=2.0.0, "
    "status=sent (250 2.0.0 OK  1795863602 a1si1234567wrx.100 - gsmtp)\n"
)


def gateway_directions(tmp_path: Path, *options: str) -> list[str]:
    log = tmp_path / "gateway.log"
    log.write_text(GATEWAY)
    os.utime(log, (MTIME, MTIME))
    events = parse_jsonl(str(log), *options)
    return [events[line]["direction"] for line in (1, 2, 3)]


def test_without_settings_a_gateway_looks_outbound(tmp_path: Path) -> None:
    # the log cannot tell: smtp to another host, the error transport
    assert gateway_directions(tmp_path) == ["outbound", "outbound", "outbound"]


def test_local_domains_option_makes_mail_to_them_inbound(tmp_path: Path) -> None:
    assert gateway_directions(tmp_path, "--local-domains", "example.com,.example.com") == [
        "inbound",
        "inbound",
        "outbound",
    ]
    # "example.com" is that domain only: sales.example.com is not one of ours then
    assert gateway_directions(tmp_path, "--local-domains", "example.com") == [
        "inbound",
        "outbound",
        "outbound",
    ]


def write_settings(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "direction.toml").write_text(text)
    return folder


@pytest.mark.parametrize(
    "relays", ['"exchange.corp.example.com"', '".corp.example.com"', '"10.0.5.10"', '"10.0.5.0/24"']
)
def test_inbound_relays_in_direction_toml(tmp_path: Path, relays: str) -> None:
    rules = write_settings(tmp_path, f"inbound_relays = [{relays}]\n")
    # (the error transport's deferral names the internal server in its text: relay_* are it)
    assert gateway_directions(tmp_path, "--rules", str(rules)) == [
        "inbound",
        "inbound",
        "outbound",
    ]


def test_local_domains_of_the_file_and_the_option_add_up(tmp_path: Path) -> None:
    rules = write_settings(tmp_path, 'local_domains = [".example.com"]\n')
    options = ("--rules", str(rules), "--local-domains", "example.com")
    assert gateway_directions(tmp_path, *options) == ["inbound", "inbound", "outbound"]


EXIM_CUSTOM = (
    # a custom transport into mailboxes, and one that sends mail on to another server
    "2026-11-28 11:00:00 1tE3zA-0003Aa-Bb == carol@example.com R=cyrus_user T=cyrus_delivery "
    "defer (-1): cyrus deliver: mailbox is over quota\n"
    "2026-11-28 11:00:01 1tE3zB-0003Ab-Cc => partner@partner.example.net R=forwarders "
    'T=dovecot_forward H=mx.partner.example.net [192.0.2.60] C="250 2.0.0 Ok: queued"\n'
)


def test_transport_lists_in_direction_toml(tmp_path: Path) -> None:
    log = tmp_path / "mainlog"
    log.write_text(EXIM_CUSTOM)
    before = parse_jsonl(str(log))
    assert [before[1]["direction"], before[2]["direction"]] == ["outbound", "inbound"]
    rules = write_settings(
        tmp_path,
        'inbound_transports = ["cyrus*"]\noutbound_transports = ["dovecot_forward"]\n',
    )
    after = parse_jsonl(str(log), "--rules", str(rules))
    assert [after[1]["direction"], after[2]["direction"]] == ["inbound", "outbound"]


def test_ingest_stores_the_direction_the_options_give(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text(GATEWAY)
    os.utime(log, (MTIME, MTIME))
    store = tmp_path / "store"
    args = ("ingest", str(log), "--store", str(store), "--tz", "UTC", "--quiet")
    result = invoke(*args, "--local-domains", "example.com,.example.com")
    assert result.exit_code == 0, result.output
    stored = scan_events(store).select("origin", "direction").collect().sort("origin")
    assert stored["direction"].to_list() == ["inbound", "inbound", "outbound"]


BAD_SETTINGS = [
    ("local_domain = []\n", "unknown key 'local_domain' (expected local_domains, "
     "inbound_relays, inbound_transports, outbound_transports)"),
    ('local_domains = "example.com"\n', "local_domains must be a list of strings"),
    ('local_domains = ["ex ample.com"]\n', "local_domains: 'ex ample.com' is not a domain name "
     "(write example.com, or .example.com for its subdomains)"),
    ('inbound_relays = ["10.0.5.1/24"]\n', "inbound_relays: '10.0.5.1/24': 10.0.5.1/24 has host "
     "bits set"),
    ('inbound_relays = ["mx@corp"]\n', "inbound_relays: 'mx@corp' is not a host name, IP "
     "address or network"),
    ('inbound_transports = ["my transport"]\n', "inbound_transports: 'my transport' is not a "
     "transport name"),
    ('inbound_transports = ["x"]\noutbound_transports = ["x"]\n', "transport 'x' is in both "
     "inbound_transports and outbound_transports"),
    ("local_domains = [\n", None),  # invalid TOML: the rules loader's message
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_SETTINGS)
def test_a_bad_direction_toml_is_one_error_line_and_exit_2(
    tmp_path: Path, text: str, message: str | None
) -> None:
    rules = write_settings(tmp_path, text)
    log = copy_log(tmp_path, DIRECTION / "postfix-debian.log")
    for command in ("parse", "ingest"):
        extra = ("--store", str(tmp_path / "store")) if command == "ingest" else ()
        result = invoke(command, str(log), "--rules", str(rules), *extra)
        path = rules / "direction.toml"
        if message is None:
            assert result.exit_code == 1, result.output  # as for every rules file
            assert result.output.startswith(f"Error: {path}: invalid TOML: ")
        else:
            assert result.exit_code == 2, result.output
            assert result.output == f"Error: {path}: {message}\n"
        assert result.output.count("\n") == 1
    assert not (tmp_path / "store").exists()


def test_a_bad_local_domains_option_is_a_usage_error(tmp_path: Path) -> None:
    log = copy_log(tmp_path, DIRECTION / "postfix-debian.log")
    result = invoke("parse", str(log), "--local-domains", "example.com,,b.example")
    assert result.exit_code == 2
    assert result.output == (
        "Error: --local-domains: '' is not a domain name (write example.com, or .example.com "
        "for its subdomains)\n"
    )


def test_the_settings_are_checked_as_they_load(tmp_path: Path) -> None:
    rules = write_settings(tmp_path, 'local_domains = ["Example.COM."]\n')
    assert load_rules(rules).direction.local_domains == ("example.com",)
    with pytest.raises(SettingsError):
        load_rules(write_settings(tmp_path, "inbound_relays = [1]\n"))


# --- the decision, row by row ----------------------------------------------------------------

FACTS: list[tuple[dict[str, Any], str]] = [
    ({"source": "sendgrid", "event": "bounced"}, "outbound"),
    ({"source": "mailgun", "event": "rejected"}, "outbound"),  # Mailgun refused to send: ours
    ({"source": "postfix", "event": "rejected", "transport": "smtpd"}, "inbound"),
    ({"source": "exim", "event": "rejected", "recipient_domain": "example.net"}, "inbound"),
    ({"source": "postfix", "event": "delivered", "transport": "lmtp", "relay_host": "mx1",
      "relay_ip": "private/dovecot-lmtp"}, "inbound"),  # lmtp socket, where Postfix failed
    ({"source": "postfix", "event": "delivered", "transport": "lmtp", "relay_host": "store",
      "relay_ip": "192.0.2.80"}, "outbound"),  # lmtp to another host: inbound_relays says
    ({"source": "postfix", "event": "delivered", "transport": "smtp", "relay_host": "localhost",
      "relay_ip": "::1"}, "internal"),
    ({"source": "exim", "event": "delivered", "transport": "remote_smtp", "relay_host": "f",
      "relay_ip": "127.0.0.2"}, "internal"),
    ({"source": "exim", "event": "bounced", "transport": "dnslookup",
      "recipient_domain": "nosuch.example"}, "outbound"),  # a routing failure
    ({"source": "exim", "event": "delivered", "transport": "virtual_user"}, "inbound"),  # no H=
    # schema version 1 (no transport): relay=local, relay=dovecot
    ({"source": "postfix", "event": "delivered", "relay_host": "local"}, "inbound"),
    ({"source": "postfix", "event": "bounced", "relay_host": "mx.example.org",
      "relay_ip": "192.0.2.25"}, "outbound"),
    ({"source": "postfix", "event": "expired", "transport": "qmgr"}, "outbound"),
    ({"source": None, "event": None}, "outbound"),  # a bare message (explain)
]  # fmt: skip


def test_each_row_of_the_decision_table() -> None:
    frame = pl.DataFrame(
        [facts for facts, _ in FACTS],
        schema={name: FACT_SCHEMA[name] for name in DIRECTION_FACTS},
    )
    got = frame.select(direction_of(DirectionSettings())).to_series().to_list()
    assert got == [expected for _, expected in FACTS]
    assert set(got) <= set(DIRECTIONS)


def test_settings_match_names_domains_and_networks() -> None:
    settings = DirectionSettings(
        local_domains=("example.com", ".example.org"),
        inbound_relays=("2001:db8:5::/48", ".corp.example.net", "192.0.2.80"),
        inbound_transports=("cyrus*",),
    )
    rows = [
        # (facts) -> direction
        ({"recipient_domain": "example.com"}, "inbound"),
        ({"recipient_domain": "sub.example.com"}, "outbound"),
        ({"recipient_domain": "example.org"}, "outbound"),
        ({"recipient_domain": "a.b.example.org"}, "inbound"),
        ({"relay_ip": "2001:db8:5::25"}, "inbound"),
        ({"relay_ip": "2001:db8:6::25"}, "outbound"),
        ({"relay_host": "Exchange.Corp.Example.NET", "relay_ip": "198.51.100.1"}, "inbound"),
        ({"relay_ip": "192.0.2.80"}, "inbound"),
        ({"transport": "cyrus_delivery"}, "inbound"),
        ({"transport": "xcyrus"}, "outbound"),
    ]
    frame = pl.DataFrame(
        [{"source": "postfix", "event": "delivered", **facts} for facts, _ in rows],
        schema={name: FACT_SCHEMA[name] for name in DIRECTION_FACTS},
    )
    got = frame.select(direction_of(settings)).to_series().to_list()
    assert got == [expected for _, expected in rows]


def test_transport_names_are_tested_once_per_distinct_transport() -> None:
    # `_names` tests a batch's distinct values and looks each event's up: the same as the test
    # over every value (`_name_test`; a null stays null), eager and in a lazy plan (the store)
    names = (*EXIM_INBOUND_TRANSPORTS, "cyrus_*_x", "*_lmtp")
    values = ["local_delivery", "remote_smtp", None, "dovecot_lmtp", "Dovecot", "cyrus_a_x"]
    values += ["my_lmtp", "x_lmtp_y", "remote_smtp", None, "procmail_pipe", "maildrop"]
    frame = pl.DataFrame({"transport": values}, schema={"transport": pl.String})
    expected = frame.select(_name_test(names, pl.col("transport"))).to_series().to_list()
    got = frame.select(_names(names, pl.col("transport"))).to_series().to_list()
    lazy = frame.lazy().select(_names(names, pl.col("transport"))).collect().to_series()
    assert got == expected == lazy.to_list()
    assert expected[:4] == [True, False, None, True]
    assert frame.select(_names((), pl.col("transport"))).to_series().to_list() == [False]
