"""One-off conversion of the seed document's code tables into CSV files.

This script produced the *first version* of ``rules/codes/{mailgun,gmail,outlook,enhanced,
sendgrid}.csv`` from the seed document (``../shared/seeds/000_*.txt``), whose tables are
flattened text with their columns run together. It splits each line into columns with a few
phrase lists, repairs mojibake and turns the seed's ``-`` placeholders into empty cells.

It is kept only as a record of how the split was made. The CSV files are the source of truth:
they were checked by hand afterwards, and every ``category``, every ``note``, the corrections
to the seed and the rows added from the IANA registry were written by hand. Running this again
would throw that work away, so it only writes into an empty or new directory::

    python tools/seed_to_csv.py ../shared/seeds/000_b903799864dc8d9e.txt --out /tmp/codes
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterator
from pathlib import Path

HEADERS = {
    "mailgun": "id,http_status,message,meaning,solution,glossary,category,from_seed,note",
    "gmail": "id,smtp_code,enhanced_code,message,solution,glossary,category,from_seed,note",
    "outlook": "id,group,name,hex_code,meaning,solution,glossary,category,from_seed,note",
    "enhanced": "id,enhanced_code,name,meaning,solution,category,from_seed,note",
    "sendgrid": "id,smtp_code,name,message,meaning,solution,glossary,category,from_seed,note",
}

# Headings that open each section of the seed.
SECTIONS = {
    "Error Codes for Mailgun SMTP": "mailgun",
    "Error Codes for Gmail / Google Workspace:": "gmail",
    "Error Codes for Outlook:": "outlook",
    "Error Codes for Sendgrid": "sendgrid",
}
ENHANCED_PREFIX = "Enhanced Mail System Status Codes "

# Glossary entries are "Term: definition"; these are the terms the seed uses where a plain
# "sentence end, then Term:" rule cannot find them (Mailgun and Gmail have no sentence ends).
MAILGUN_TERMS = (
    "'from' parameter", "'to' parameter", "'message' parameter", "'text'/'html' parameters",
    "'html'/'template' parameters", "'o:', 'h:', 'v:' parameters", "Recipients", "ASCII",
    "RFC-2822", "'multipart/form-data'", "URL escape characters", "EOF",
    "'o:time-zone-localize'", "Delivery time", "'cc' parameter", "'bcc' parameter",
    "'recipient-variables' parameter", "Sandbox domain", "Free account", "DNS", "Mailgun",
    "DKIM", "Forbidden", "Domain", "Batch", "IP address", "MiB", "Request limit",
    "Bytes limit", "Recipient limit", "Internal Server Error",
)  # fmt: skip
GMAIL_TERMS = (
    "Quota", "Unsolicited mail", "Syntax", "STARTTLS", "SMTP relay", "Domain", "DMARC",
    "Credentials", "Mail loop", "Mail Loop", "DoS", "SMTP", "Disabled", "Web browser", "TLS",
    "RCPT", "Spam", "Size limits", "Mailbox", "Relay", "SPF (Sender Policy Framework)",
    "Over quota", "Authentication", "Malformed", "Unauthenticated email",
    "Message size limits", "Typos", "Username", "Unimplemented", "Unauthenticated commands",
    "SPF", "SMTP Commands", "Policy", "Policies", "Mail relay", "MAIL", "Identity",
    "I am sending quota", "HELO/EHLO", "EHLO/HELO", "Decode", "Blacklist",
    "Authentication Type", "Authenticate", "Application-specific password", "AUTH",
)  # fmt: skip
GLOSSARY_AFTER_SENTENCE = re.compile(r"(?<=\. )[A-Z][^.:]{0,40}: ")

# Phrases that open the "what to do" column.
MAILGUN_SOLUTION = re.compile(
    r" (?=(?:Include|Provide|Reduce|Limit|Use|Ensure|Check|Change|Correct|Choose|Upgrade"
    r"|Verify|Activate|Request|Wait) )"
)
MAILGUN_MEANING = re.compile(r" (?=The |Neither |Both |There is )")
GMAIL_SOLUTION = re.compile(
    r"(?<=[ .]) ?(?=Retry|Check|Review|Make sure|Try reducing|Try sending|Try again later\.$"
    r"|Resend|Send your|Ensure|Ask|Reduce|If |Use |Log into|You cannot|You'll need|Limit"
    r"|Adjust|Double-check|Contact|Provide|Access|Verify|Configure|Authenticate|Advise"
    r"|Investigate|Upgrade|The email was not sent|Your email client|The MAIL command"
    r"|The RCPT command|This can be|This error occurs)"
)
OUTLOOK_SOLUTION = re.compile(
    r"(?<=[.)] )(?=Recheck|Verify|Check|Disconnect|Try|Double-check|Close|Re-enter|Make sure"
    r"|Restart|Reinstall|Do not|Ensure|Wait|You can|You could|You may|You need|Install"
    r"|Review|Contact|As this|If you did not|If it persists|Update|Remove|Scan|Double check"
    r"|Return|Reset|Confirm|The exact problem|This error typically requires)"
)
OTHER_SOLUTION = re.compile(
    r" (?=Virus scanner|Indicates that|Verify the publication|The server is not reachable"
    r"|This issue|Email too big|This error is encountered|The outgoing SMTP server"
    r"|An address in the|Refers to issues|Sending reported error|Data storage issue)"
)
SENDGRID_MEANING = re.compile(
    r"(?:^| )(?=Your mail has been|This means|Messages are temporarily|The message |"
    r"There is a credit|The user’s|Too many bad requests|The intended mailbox|"
    r"The recipient's mailbox has exceeded|This is a default|This is what SendGrid|"
    r"To turn off|When you try)"
)
SENDGRID_SOLUTION = re.compile(
    r"(?<=[.!}] )(?=Verify|Reduce|Wait|Retry|Contact support|Review|Update)"
)

CJK_RUN = re.compile(r"[\u3000-\u9fff\uff00-\uffef]+")


def repair(text: str) -> str:
    """Undo UTF-8 text that was decoded as GBK (``鈥檚`` -> ``’s``) and tidy the spacing."""

    def _undo(match: re.Match[str]) -> str:
        try:
            return match.group().encode("gbk").decode("utf-8")
        except UnicodeError:
            return match.group()

    text = CJK_RUN.sub(_undo, text).replace("\xa0", " ")
    return text.replace("<br>", "\n").strip()


def _cell(text: str) -> str:
    text = text.strip()
    return "" if text == "-" else text


def _split_glossary(text: str, terms: tuple[str, ...] = ()) -> tuple[str, str]:
    """Split "body Term: definition" into (body, glossary); a trailing "-" is no glossary."""
    text = text.strip()
    if text.endswith(" -") or text == "-":
        return text[:-1].strip(), ""
    starts = [i + 1 for term in terms if (i := text.rfind(f" {term}: ")) >= 0]
    if not terms and (match := GLOSSARY_AFTER_SENTENCE.search(text)):
        starts.append(match.start())
    if not starts:
        return text, ""
    cut = min(starts)
    return text[:cut].strip(), text[cut:].strip()


def _cut(text: str, pattern: re.Pattern[str], *, last: bool = False) -> tuple[str, str]:
    """Split text at the first (or last) match of pattern; no match leaves the tail empty."""
    positions = [m.start() for m in pattern.finditer(text) if m.start() > 0]
    if not positions:
        return text, ""
    cut = positions[-1] if last else positions[0]
    return text[:cut].strip(), text[cut:].strip()


def mailgun_row(line: str) -> dict[str, str]:
    # 400 from parameter is missing The sender's email address is not provided Include ...
    status, rest = line.split(" ", 1)
    body, glossary = _split_glossary(rest, MAILGUN_TERMS)
    head, solution = _cut(body, MAILGUN_SOLUTION, last=True)
    message, meaning = _cut(head, MAILGUN_MEANING, last=True)
    return {
        "http_status": status,
        "message": message,
        "meaning": meaning,
        "solution": solution,
        "glossary": glossary,
    }


def gmail_row(line: str) -> dict[str, str]:
    # 421, "4.4.5" The server is busy; try again later Retry sending the message later -
    match = re.match(r'(\d{3}), "(\d\.\d{1,3}\.\d{1,3})" "?(.*)$', line)
    if match is None:
        raise ValueError(f"not a Gmail row: {line!r}")
    body, glossary = _split_glossary(match[3], GMAIL_TERMS)
    message, solution = _cut(body, GMAIL_SOLUTION)
    return {
        "smtp_code": match[1],
        "enhanced_code": match[2],
        "message": message,
        "solution": solution,
        "glossary": glossary,
    }


def outlook_row(prefix: str, hex_code: str, rest: str) -> dict[str, str]:
    # General Errors 0x800CCC0F Connection dropped - this means ... Server-side: This ...
    # SMTP_551_USER_NOT_LOCAL 0x800CCC6D Storage limit exceeded. ...
    # Other Errors 0x80004001 Not implemented - -
    # - 0x8004210B The operation timed out ... Other Errors   (columns rotated in the seed)
    group, name = "", ""
    if prefix.endswith(" Errors"):
        group = prefix.removesuffix(" Errors")
    elif prefix.startswith("SMTP_"):
        group, name = "SMTP", prefix
    if prefix == "-" and rest.endswith(" Other Errors"):
        group, rest = "Other", rest.removesuffix(" Other Errors") + " -"
    if group == "Other":
        body, glossary = _split_glossary(rest)
        if body.endswith(" -"):
            meaning, solution = body[:-2], ""
        else:
            meaning, solution = _cut(body, OTHER_SOLUTION)
    else:
        body, glossary = _split_glossary(rest)
        meaning, solution = _cut(body, OUTLOOK_SOLUTION)
    if meaning.startswith("- "):
        meaning, solution = "", meaning[2:]
    return {
        "group": group,
        "name": name,
        "hex_code": hex_code,
        "meaning": _cell(meaning),
        "solution": _cell(solution),
        "glossary": _cell(glossary),
    }


def enhanced_row(text: str) -> dict[str, str]:
    # X.2.2 Mailbox full The recipient's mailbox is full and ... Advise the recipient ... -
    code, rest = text.split(" ", 1)
    rest = rest.removesuffix(" -")
    match = re.search(r" (?=(?:The|An|A|Encryption is|Conversion of|Security conversion) )", rest)
    if match is None:
        raise ValueError(f"cannot find the meaning in {text!r}")
    name, tail = rest[: match.start()], rest[match.end() :]
    meaning, _, solution = tail.partition(". ")
    return {"enhanced_code": code, "name": name, "meaning": meaning + ".", "solution": solution}


def sendgrid_row(line: str) -> dict[str, str]:
    # 550 Requested action not taken: mailbox unavailable The user’s mailbox was ...
    # Turning off click tracking - To turn off click tracking, add this to ...
    code, name = "", ""
    if re.match(r"\d{3} ", line):
        code, rest = line.split(" ", 1)
    else:
        name, rest = line.split(" - ", 1)
    body, glossary = _split_glossary(rest)
    message, tail = _cut(" " + body, SENDGRID_MEANING)
    if not tail:
        message, tail = "", body
    meaning, solution = _cut(tail, SENDGRID_SOLUTION, last=True)
    if meaning.endswith(" -"):
        meaning, solution = meaning[:-2], ""
    return {
        "smtp_code": code,
        "name": name,
        "message": _cell(message),
        "meaning": _cell(meaning),
        "solution": _cell(solution),
        "glossary": glossary,
    }


def parse(seed: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (table, row) for every table row of the seed, in seed order."""
    section = ""
    pending_name: list[str] = []  # a symbolic name the seed spreads over several lines
    for raw in seed.splitlines():
        line = repair(raw)
        if line in SECTIONS:
            section = SECTIONS[line]
            continue
        if not line or line.startswith(("Code Error Message", "Error Code Meaning")):
            continue
        if line.startswith(("Error Category", "Error Message Explanation", "Still need help")):
            continue
        if section == "mailgun" and re.match(r"\d{3} ", line):
            yield "mailgun", mailgun_row(line)
        elif section == "gmail" and re.match(r'\d{3}, "', line):
            yield "gmail", gmail_row(line)
        elif section == "sendgrid":
            yield "sendgrid", sendgrid_row(line)
        elif section == "outlook" and line.startswith(ENHANCED_PREFIX):
            yield "enhanced", enhanced_row(line.removeprefix(ENHANCED_PREFIX))
        elif section == "outlook":
            match = re.match(r"(.*?) ?(0x[0-9A-Fa-f]+) (.*)$", line, re.DOTALL)
            if match is None and re.fullmatch(r"[A-Z0-9_]+", line):
                pending_name.append(line)  # SMTP_551_ / USER_NOT_ / LOCAL
                continue
            if match is None:
                raise ValueError(f"not an Outlook row: {line!r}")
            prefix = "".join(pending_name) or match[1]
            pending_name.clear()
            yield "outlook", outlook_row(prefix, match[2], match[3])


def write_tables(rows: Iterator[tuple[str, dict[str, str]]], out: Path) -> dict[str, int]:
    """Write one CSV per table into out; return the number of rows per table."""
    tables: dict[str, list[dict[str, str]]] = {name: [] for name in HEADERS}
    for table, row in rows:
        number = len(tables[table]) + 1
        tables[table].append({"id": f"{table}-{number:03d}", **row, "from_seed": "true"})
    for table, table_rows in tables.items():
        fields = HEADERS[table].split(",")
        with (out / f"{table}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fields, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(table_rows)
    return {table: len(table_rows) for table, table_rows in tables.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed", type=Path, help="the seed document")
    parser.add_argument("--out", type=Path, required=True, help="an empty or new directory")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if any(args.out.iterdir()):
        print(f"Error: {args.out} is not empty; the CSVs there are edited by hand", file=sys.stderr)
        return 1
    counts = write_tables(parse(args.seed.read_text(encoding="utf-8")), args.out)
    for table, count in counts.items():
        print(f"{table}: {count} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
