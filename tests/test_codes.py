"""The code tables in rules/codes/: well-formed, and faithful to the seed document.

The seed (``../shared/seeds/000_*.txt`` beside the checkout) holds the tables as flattened text.
The coverage tests parse it again here, independently of ``tools/seed_to_csv.py``, and check that
every seed row is in its CSV, in seed order, with the same code; a row whose code or text was
corrected must say so in ``note``.
"""

from __future__ import annotations

import csv
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CODES = REPO / "rules" / "codes"
SEEDS = REPO.parent / "shared" / "seeds"
SEED = SEEDS / "000_b903799864dc8d9e.txt"
NO_SEED = (
    "the seed document is not beside this checkout (../shared/seeds); the coverage test needs it"
)

TABLES = ("mailgun", "gmail", "outlook", "enhanced", "sendgrid", "microsoft")
ALWAYS = ("id", "category", "from_seed", "note")
COLUMNS = {
    "mailgun": ("http_status", "message", "meaning", "solution", "glossary"),
    "gmail": ("smtp_code", "enhanced_code", "message", "solution", "glossary"),
    "outlook": ("group", "name", "hex_code", "meaning", "solution", "glossary"),
    "enhanced": ("enhanced_code", "name", "meaning", "solution"),
    "sendgrid": ("smtp_code", "name", "message", "meaning", "solution", "glossary"),
    # not from the seed: Exchange Online's codes whose words mean another category per code
    "microsoft": ("enhanced_code", "message", "meaning", "solution"),
}

# Used only when rules/categories.toml is absent.
CATEGORIES = frozenset(
    "auth_failure bad_reputation blocked content_error email_too_large expired failed_starttls "
    "filtered has_moved host_unknown mailbox_full mailer_error network_error no_relaying "
    "not_accept not_compliant_rfc on_hold policy_violation rate_limited rejected require_ptr "
    "security_error spam_detected suppressed suspend syntax_error system_error system_full "
    "undefined user_unknown virus_detected delivered feedback vacation".split()
)
OUTLOOK_GROUPS = {"General", "Winsock", "SMTP", "POP3", "IMAP", "NNTP", "RAS", "Other"}
ENHANCED_CODE = re.compile(r"^[X245]\.\d{1,3}\.\d{1,3}$")
HEX_CODE = re.compile(r"^0x[0-9A-F]+$")
CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef\ufffd]")
IANA_NOTE = "IANA registry; not in the seed"


def read_table(table: str) -> tuple[list[str], list[dict[str, str]]]:
    with (CODES / f"{table}.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def rows_of(table: str) -> list[dict[str, str]]:
    return read_table(table)[1]


def category_names() -> set[str]:
    path = REPO / "rules" / "categories.toml"
    if not path.is_file():
        return set(CATEGORIES)
    with path.open("rb") as handle:
        return set(tomllib.load(handle)["categories"])


# --- the seed, parsed independently -------------------------------------------------------


def seed_sections() -> dict[str, list[str]]:
    """The seed's non-empty lines per table (Enhanced and "Other Errors" rows sit in Outlook's)."""
    if not SEED.is_file():
        pytest.skip(NO_SEED)
    sections: dict[str, list[str]] = {table: [] for table in TABLES}
    current = ""
    for line in SEED.read_text(encoding="utf-8").splitlines():
        line = line.replace("\xa0", " ").strip()
        if heading := re.match(r"Error Codes for (Mailgun|Gmail|Outlook|Sendgrid)\b", line):
            current = heading[1].lower()
        elif line.startswith("Enhanced Mail System Status Codes "):
            sections["enhanced"].append(line)
        elif current and line and not line.startswith("Still need help"):
            sections[current].append(line)
    return sections


def seed_rows(table: str) -> list[tuple[str, str]]:
    """(code, line) for every row of one seed table, in seed order."""
    lines = seed_sections()[table]
    if table == "mailgun":
        # 400 from parameter is missing The sender's email address is not provided ...
        return [(m[1], line) for line in lines if (m := re.match(r"(\d{3}) ", line))]
    if table == "gmail":
        # 421, "4.4.5" The server is busy; try again later Retry sending the message later -
        pattern = re.compile(r'(\d{3}), "(\d\.\d{1,3}\.\d{1,3})" ')
        return [(f"{m[1]} {m[2]}", line) for line in lines if (m := pattern.match(line))]
    if table == "outlook":
        # General Errors 0x800CCC0F Connection dropped - ...   /   Other Errors 0x834005 - - -
        pattern = re.compile(r"^(?:.*? )?(0x[0-9A-Fa-f]+) ")
        return [(m[1], line) for line in lines if (m := pattern.match(line))]
    if table == "enhanced":
        # Enhanced Mail System Status Codes X.2.2 Mailbox full The recipient's mailbox ...
        pattern = re.compile(r"Enhanced Mail System Status Codes (X\.\d{1,3}\.\d{1,3}) ")
        return [(m[1], line) for line in lines if (m := pattern.match(line))]
    # SendGrid: "550 Requested action ..." or a row without a code, "Turning off click ... - ..."
    rows = []
    for line in lines[1:]:  # lines[0] is the header "Error Message Explanation ..."
        match = re.match(r"(\d{3}) ", line)
        rows.append((match[1] if match else "", line))
    return rows


def seed_part(table: str) -> list[dict[str, str]]:
    rows = rows_of(table)
    return [row for row in rows if row["from_seed"] == "true"]


@pytest.mark.parametrize(
    ("table", "count"),
    [("mailgun", 37), ("gmail", 89), ("outlook", 157), ("enhanced", 62), ("sendgrid", 16)],
)
def test_seed_row_counts(table: str, count: int) -> None:
    assert len(seed_rows(table)) == count
    rows = rows_of(table)
    assert len(seed_part(table)) == count
    assert all(row["from_seed"] == "true" for row in rows[:count]), "seed rows come first"
    added = rows[count:]
    assert all(row["from_seed"] == "false" for row in added)


def test_mailgun_covers_seed() -> None:
    for (status, line), row in zip(seed_rows("mailgun"), seed_part("mailgun"), strict=True):
        assert row["http_status"] == status, row["id"]
        if not row["note"]:
            assert line.startswith(f"{status} {row['message']} {row['meaning']} "), row["id"]


def test_gmail_covers_seed() -> None:
    for (pair, line), row in zip(seed_rows("gmail"), seed_part("gmail"), strict=True):
        assert f"{row['smtp_code']} {row['enhanced_code']}" == pair, row["id"]
        if not row["note"]:
            assert row["message"] in line and row["solution"] in line, row["id"]


def test_outlook_covers_seed() -> None:
    for (hex_code, line), row in zip(seed_rows("outlook"), seed_part("outlook"), strict=True):
        if row["hex_code"] != hex_code:
            assert row["hex_code"] == hex_code.upper().replace("0X", "0x"), row["id"]
            assert hex_code in row["note"], row["id"]
        if not row["note"]:
            cells = [row["meaning"], row["solution"], row["glossary"]]
            assert all(cell.replace("\n", "<br>") in line for cell in cells), row["id"]


def test_enhanced_covers_seed() -> None:
    for (code, line), row in zip(seed_rows("enhanced"), seed_part("enhanced"), strict=True):
        if row["enhanced_code"] != code:
            assert code in row["note"], f"{row['id']}: a changed code must name the seed's"
        if not row["note"]:
            assert f"{code} {row['name']} {row['meaning']}" in line, row["id"]


def test_sendgrid_covers_seed() -> None:
    for (code, line), row in zip(seed_rows("sendgrid"), seed_part("sendgrid"), strict=True):
        assert row["smtp_code"] == code, row["id"]
        if not code:
            assert line.startswith(f"{row['name']} - "), row["id"]
        if not row["note"]:
            assert row["message"] in line and row["meaning"] in line, row["id"]


def test_seed_mojibake_is_repaired() -> None:
    if not SEED.is_file():
        pytest.skip(NO_SEED)
    assert CJK.search(SEED.read_text(encoding="utf-8")), "the seed has the mojibake repaired here"
    repaired = [row["id"] for row in seed_part("sendgrid") + seed_part("enhanced") if row["note"]]
    assert {"sendgrid-008", "sendgrid-011", "enhanced-009", "enhanced-010"} <= set(repaired)


# --- well-formed tables -------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_columns(table: str) -> None:
    fields, _ = read_table(table)
    assert set(ALWAYS + COLUMNS[table]) <= set(fields)
    assert fields[0] == "id"


@pytest.mark.parametrize("table", TABLES)
def test_ids_unique_and_in_order(table: str) -> None:
    ids = [row["id"] for row in rows_of(table)]
    assert ids == [f"{table}-{number:03d}" for number in range(1, len(ids) + 1)]


@pytest.mark.parametrize("table", TABLES)
def test_cells(table: str) -> None:
    categories = category_names()
    for row in rows_of(table):
        assert row["category"] in categories, row["id"]
        assert row["from_seed"] in ("true", "false"), row["id"]
        assert all(value == value.strip() for value in row.values()), row["id"]
        assert all(value != "-" for value in row.values()), f"{row['id']}: a dash cell"
        bad = [value for value in row.values() if CJK.search(value)]
        assert not bad, f"{row['id']}: mojibake left: {bad}"
        if "enhanced_code" in row:
            assert ENHANCED_CODE.match(row["enhanced_code"]), row["id"]
        if "hex_code" in row:
            assert HEX_CODE.match(row["hex_code"]), row["id"]
        if row["from_seed"] == "false":
            assert row["note"], row["id"]


def test_gmail_reply_class_matches_enhanced_class() -> None:
    for row in rows_of("gmail"):
        assert row["smtp_code"][0] == row["enhanced_code"][0], row["id"]


def test_outlook_groups() -> None:
    rows = rows_of("outlook")
    assert {row["group"] for row in rows} == OUTLOOK_GROUPS
    assert len({row["hex_code"] for row in rows}) == len(rows)


def test_enhanced_codes_unique() -> None:
    codes = [row["enhanced_code"] for row in rows_of("enhanced")]
    assert len(set(codes)) == len(codes)


def test_enhanced_has_the_rfc3463_codes() -> None:
    codes = {row["enhanced_code"] for row in rows_of("enhanced")}
    per_subject = {0: 0, 1: 8, 2: 4, 3: 5, 4: 7, 5: 5, 6: 5, 7: 7}
    wanted = {
        f"X.{subject}.{detail}" for subject, top in per_subject.items() for detail in range(top + 1)
    }
    assert wanted <= codes


# --- pinned rows --------------------------------------------------------------------------


def find(table: str, **cells: str) -> list[dict[str, str]]:
    return [row for row in rows_of(table) if all(row[key] == value for key, value in cells.items())]


def test_x_1_2_is_the_seeds_misnumbered_row() -> None:
    (row,) = find("enhanced", enhanced_code="X.1.2")
    assert row["name"] == "Bad destination system address"
    assert row["from_seed"] == "true" and "X.2.0" in row["note"]
    assert row["category"] == "host_unknown"
    (other,) = find("enhanced", enhanced_code="X.2.0")
    assert other["name"] == "Other or undefined mailbox status"


@pytest.mark.parametrize(
    ("code", "name", "category"),
    [
        ("X.1.1", "Bad destination mailbox address", "user_unknown"),
        ("X.1.5", "Destination mailbox address valid", "delivered"),
        ("X.2.2", "Mailbox full", "mailbox_full"),
        ("X.4.3", "Directory server failure", "system_error"),
        ("X.7.15", "Priority Level is too low", "policy_violation"),
        ("X.7.26", "Multiple authentication checks failed", "auth_failure"),
        ("X.7.30", "REQUIRETLS support required", "failed_starttls"),
    ],
)
def test_enhanced_rows(code: str, name: str, category: str) -> None:
    (row,) = find("enhanced", enhanced_code=code)
    assert (row["name"], row["category"]) == (name, category)


def test_enhanced_iana_additions() -> None:
    added = {row["enhanced_code"]: row for row in find("enhanced", from_seed="false")}
    assert {f"X.7.{detail}" for detail in range(18, 31)} | {"X.1.10", "X.3.6"} <= set(added)
    assert all(row["note"] == IANA_NOTE for row in added.values())


def test_gmail_550_5_1_1() -> None:
    rows = find("gmail", smtp_code="550", enhanced_code="5.1.1")
    assert len(rows) == 2
    assert {row["category"] for row in rows} == {"user_unknown"}


def test_outlook_connection_dropped() -> None:
    (row,) = find("outlook", hex_code="0x800CCC0F")
    assert (row["group"], row["category"]) == ("General", "network_error")


def test_outlook_symbolic_names() -> None:
    (row,) = find("outlook", name="SMTP_551_USER_NOT_LOCAL")
    assert row["hex_code"] == "0x800CCC6B"
    (row,) = find("outlook", hex_code="0x8004210B")
    assert row["group"] == "Other"


def test_sendgrid_rows_without_code() -> None:
    rows = find("sendgrid", smtp_code="")
    assert [row["name"] for row in rows] == [
        "Other Delayed Bounce",
        "Turning off click tracking",
        "Invalid SMTP API header",
    ]


def test_mailgun_duplicate_row_kept() -> None:
    rows = find(
        "mailgun", message="to parameter is not a valid address. please check documentation"
    )
    assert [row["id"] for row in rows] == ["mailgun-011", "mailgun-019"]
