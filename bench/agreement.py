"""How far the engine agrees with other people's labels on bounce texts (issue 14).

Two public sets, read from the shared corpus (never copied into the tests, which have their own
labelled rows in tests/data/diagnostics/messages.tsv):

1. `classification/patterns.tsv`: message fragments and provider messages with the reason Sisimai
   assigns (its own tests and rhost tables). Sisimai's reason names are ours without the
   underscores, so the label maps one to one. Rows of a provider's rhost table get a relay host of
   that provider, as a log line of that provider's server would have.
2. `classification/other-rules/`: KumoMTA's community bounce classes and the RFC 3463 codes that
   PHP-Bounce-Handler and bounce-email give phrases. Their labels are coarser than our
   categories, so each maps to the set of our categories that agree with it (`LABELS` below:
   one of several is right; `PROJECT_LABELS` where one project uses a label more widely, as its
   own rows show). Rows that are regular expressions or that say "use the code from the text" are
   left out: they are not messages. PHP-Bounce-Handler's table is a PHP array, so a phrase it
   gives twice keeps its last code.

The engine reads each text as `explain -` does (`explain_frame`, the codes the set gives apart
passed apart), with no recipient unless the row names a provider. Printed: agreement overall
and per expected category, hard/soft agreement where the set says, the most frequent
confusions, and (with --wrong) every disagreement.

    python bench/agreement.py                      # both sets, summary
    python bench/agreement.py --set sisimai --wrong
    python bench/agreement.py --corpus ../shared/corpus/classification --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import signal
import sys
from collections import Counter
from pathlib import Path

import polars as pl

from bounce_analyzer.explain import explain_frame
from bounce_analyzer.rules import load_rules

HERE = Path(__file__).resolve().parent
#: The shared corpus beside the checkout: /work/shared for /work/main and for a worktree
#: /work/wt/NAME alike (the first ancestor of the checkout with a shared/corpus folder).
DEFAULT_CORPUS = next(
    (
        folder / "shared" / "corpus" / "classification"
        for folder in HERE.parents
        if (folder / "shared" / "corpus" / "classification").is_dir()
    ),
    HERE.parent.parent / "shared" / "corpus" / "classification",
)

#: Sisimai's rhost modules and lhost names: a host of that provider's (what a log would show as
#: the relay) and the provider of ours that it is. `None` as a host: an MTA, not a provider.
RHOSTS: dict[str, tuple[str | None, str]] = {
    "Microsoft": ("example-com.mail.protection.outlook.com", "microsoft"),
    "Outlook": ("outlook-com.olc.protection.outlook.com", "microsoft"),
    "Google": ("gmail-smtp-in.l.google.com", "google"),
    "GSuite": ("aspmx.l.google.com", "google"),
    "lhost:GoogleWorkspace": ("aspmx.l.google.com", "google"),
    "Mimecast": ("eu-smtp-inbound-1.mimecast.com", "mimecast"),
    "Cox": ("cxr.mx.a.cloudfilter.net", "cox"),
    "GoDaddy": ("smtp.secureserver.net", "godaddy"),
    "Facebook": ("mx-out.facebook.com", "facebook"),
    "FrancePTT": ("smtp-in.orange.fr", "orange"),
    "MessageLabs": ("cluster1.eu.messagelabs.com", "messagelabs"),
    "Spectrum": ("dnvrco-cmedge-mx.charter.net", "spectrum"),
    "Tencent": ("mx3.qq.com", "qq"),
    "YahooInc": ("mta5.am0.yahoodns.net", "yahoo"),
    "Aol": ("mx-aol.mail.gm0.yahoodns.net", "yahoo"),
    "Apple": ("mx01.mail.icloud.com", "apple"),
    "IUA": ("mx.i.ua", "iua"),
    "Zoho": ("mx.zoho.com", "zoho"),
    "NTTDOCOMO": ("mfsmax.docomo.ne.jp", "docomo"),
    "KDDI": ("lsean.ezweb.ne.jp", "kddi"),
    "Cloudflare": ("route1.mx.cloudflare.net", "cloudflare"),
    "lhost:AmazonSES": (None, "other"),
}

#: The other projects' labels, and which of our categories agree with each.
LABELS: dict[str, set[str]] = {
    # KumoMTA classes
    # KumoMTA gives it domains as well as mailboxes: "556 ... Invalid account. Tenant or Domain
    # not found", and its code table (bounce_classifier/iana.toml) files X.1.1 to X.1.4, X.1.2
    # "bad destination system address" among them, under it
    "InvalidRecipient": {"user_unknown", "host_unknown"},
    "InactiveMailbox": {"suspend", "user_unknown"},
    "QuotaIssues": {"mailbox_full", "system_full"},
    "SpamBlock": {"blocked", "bad_reputation", "spam_detected"},
    "SpamContent": {"spam_detected", "content_error", "virus_detected"},
    # KumoMTA's class is the sender failing to prove who it is, in all three of the ways that
    # our categories tell apart: SPF/DKIM/DMARC or PTR (its rows "DMARC", "reverse DNS"), SMTP
    # AUTH ("Authentication required", "turn on SMTP Authentication": security_error, as
    # Sisimai's SecurityError reads them) and the sender domain's DNS ("Sender Domain Resolve
    # Fail", "envelope sender domain must exist": rejected, as Sisimai's Rejected reads them)
    "AuthenticationFailed": {"auth_failure", "require_ptr", "security_error", "rejected"},
    "PolicyRelated": {"policy_violation", "rejected", "blocked", "filtered", "not_compliant_rfc"},
    "RoutingErrors": {"host_unknown", "no_relaying", "not_accept", "network_error"},
    "BadDomain": {"host_unknown", "not_accept"},
    "DNSFailure": {"host_unknown", "network_error"},
    "BadConnection": {"network_error"},
    "NoAnswerFromHost": {"network_error", "expired"},
    "InvalidSender": {"rejected"},
    "MessageExpired": {"expired"},
    "ProtocolErrors": {"syntax_error", "not_compliant_rfc", "mailer_error"},
    "TooManyRecipients": {"rate_limited", "policy_violation"},
    "TransientFailure": {"system_error", "rate_limited", "on_hold", "network_error"},
    # RFC 3463 codes (PHP-Bounce-Handler, bounce-email)
    "5.1.1": {"user_unknown"},
    # X.1.2 (RFC 3463): "the destination system specified in the address does not exist or is
    # incapable of accepting mail"; a server that refuses to relay says that it is not a
    # destination for the address's domain, and PHP-Bounce-Handler gives each of its relay
    # phrases ("Relay access denied", "we do not relay", "Unable to relay") this code
    # and both projects give it DNS routing failures ("unrouteable mail domain", "PERM_FAILURE:
    # DNS Error: Domain name not found"), which 5.4.4 below maps to host_unknown or
    # network_error (Sisimai's NetworkError holds "unrouteable mail domain")
    "5.1.2": {"host_unknown", "no_relaying", "network_error"},
    "5.1.6": {"has_moved"},
    "5.1.8": {"rejected"},
    # X.2.0 is "other or undefined mailbox status"; bounce-email gives it only missing or
    # unavailable mailboxes ("No such mailbox", "mailbox unavailable", "The account or domain
    # may not exist"), and PHP-Bounce-Handler uses it as its most generic code (its comment on
    # that row: "5.2.0 seemed most generic") for "Delivery failed", "mail can not be delivered":
    # a failure of no stated kind, which is what on_hold says
    "5.2.0": {"mailbox_full", "suspend", "user_unknown", "on_hold"},
    "5.2.1": {"suspend", "user_unknown"},
    "5.2.2": {"mailbox_full"},
    "4.2.2": {"mailbox_full"},
    # both projects give 4.2.0 to delay notices ("not yet been delivered", "Delivery attempts
    # will continue to be made for", "Message will be retried for"), which we call expired as
    # Sisimai's Expired does
    "4.2.0": {"mailbox_full", "suspend", "system_error", "rate_limited", "expired"},
    # PHP-Bounce-Handler's comment on its 4.3.2 rows: "4.3.2 is a more generic 'defer'"; its
    # rows and bounce-email's ("Technical details of temporary failure") are deferrals of any
    # kind: a delay notice, greylisting, a busy server, Postfix's "delivery temporarily
    # suspended" after failed connections
    "4.3.2": {
        "system_error",
        "rate_limited",
        "system_full",
        "network_error",
        "expired",
        "on_hold",
    },
    "4.4.7": {"expired"},
    "5.4.4": {"host_unknown", "network_error"},
    "5.4.6": {"network_error", "system_error"},
    "5.5.0": {"user_unknown", "syntax_error"},
    "5.6.2": {"content_error"},
    # X.7.1 is any refusal by the receiver's policy; before RFC 7372 registered X.7.20 to
    # X.7.26 (2014), SPF, DKIM and DomainKeys failures were refused with it, and the phrase
    # tables that label them 5.7.1 predate those codes
    "5.7.1": {
        "auth_failure",
        "blocked",
        "rejected",
        "policy_violation",
        "spam_detected",
        "security_error",
        "filtered",
        "no_relaying",
        "bad_reputation",
    },
}

#: PHP-Bounce-Handler's phrase table (the file's name in other-rules/): one PHP array.
PHP_TABLE = "php-bounce-handler-responses"

#: Where one project's label covers more than the label's own meaning, as the rows that project
#: gives it show (README of tests/data/diagnostics, "How bench/agreement.py maps ...").
PROJECT_LABELS: dict[tuple[str, str], set[str]] = {
    # PHP-Bounce-Handler files disabled and suspended accounts under 5.1.1 ("This account is
    # disabled", "user disabled", "User is suspended", "This address no longer accepts mail",
    # "Destinatario sconosciuto o mailbox disatttivata"): its 5.1.1 is "the address takes no
    # mail", a missing or a disabled mailbox
    (PHP_TABLE, "5.1.1"): {"user_unknown", "suspend"},
}

#: Hard or soft, as other projects' labels imply (only where they say it plainly).
HARD_LABELS = {"InvalidRecipient": True, "BadDomain": True, "5.1.1": True, "5.1.2": True}

#: Columns typed as text even where every row of a set leaves them empty (set 2 gives no codes):
#: a column of nulls would be of type Null, which cannot be joined with an earlier run's text.
_TEXT_COLUMNS = dict.fromkeys(
    ("smtp_code", "enhanced_code", "relay_host", "expected_provider"), pl.String
)

# rows that are not messages: regular expressions with their syntax, code placeholders
_REGEX_SYNTAX = re.compile(r"\\[dswbSWD.]|\[[^\]]*\]|\(\?|\.\+|\.\*|\{\d|[()|]|^\^")


def _sisimai_rows(corpus: Path) -> pl.DataFrame:
    rows = []
    with (corpus / "patterns.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            reason = row["expected_reason"]
            if not reason:
                continue
            # a row of no provider's table names no provider to check: a provider's own words
            # in it may rightly name that provider (`pattern:google.user_unknown` is Gmail's)
            host, provider = RHOSTS.get(row["provider"], (None, None))
            rows.append(
                {
                    "input": row["diagnostic"],
                    "smtp_code": row["smtp_code"] or None,
                    "enhanced_code": row["enhanced_code"] or None,
                    "relay_host": host,
                    "expected": [_category(reason)],
                    "expected_hard": {"1": True, "0": False}.get(row["expected_hard"]),
                    "expected_provider": provider,
                    "label": reason,
                    "origin": row["provider"] or row["scheme"],
                }
            )
    return pl.DataFrame(rows, schema_overrides=_TEXT_COLUMNS)


def _category(reason: str) -> str:
    """Sisimai's reason name as our category name."""
    return {
        "userunknown": "user_unknown",
        "hostunknown": "host_unknown",
        "hasmoved": "has_moved",
        "notaccept": "not_accept",
        "mailboxfull": "mailbox_full",
        "badreputation": "bad_reputation",
        "spamdetected": "spam_detected",
        "virusdetected": "virus_detected",
        "contenterror": "content_error",
        "emailtoolarge": "email_too_large",
        "exceedlimit": "email_too_large",
        "notcompliantrfc": "not_compliant_rfc",
        "policyviolation": "policy_violation",
        "ratelimited": "rate_limited",
        "toomanyconn": "rate_limited",
        "authfailure": "auth_failure",
        "requireptr": "require_ptr",
        "failedstarttls": "failed_starttls",
        "securityerror": "security_error",
        "norelaying": "no_relaying",
        "networkerror": "network_error",
        "systemerror": "system_error",
        "systemfull": "system_full",
        "mailererror": "mailer_error",
        "syntaxerror": "syntax_error",
        "onhold": "on_hold",
    }.get(reason, reason)


def _as_message(pattern: str) -> str | None:
    """A simple regular expression as the message it stands for (``^552.+mailbox not found``
    as ``552 ... mailbox not found``), or None where it is more than a phrase with gaps."""
    text = pattern.removeprefix("^").removesuffix("$")
    text = re.sub(r"\.[+*]\??", " ... ", text).replace("\\.", ".").replace("\\s", " ")
    # an optional letter or space (`over ?quota`, `blocke?d?`) stands for the message with it
    text = re.sub(r"(?<=[^\\])\?", "", text)
    if _REGEX_SYNTAX.search(text):
        return None
    return re.sub(r" +", " ", text).strip()


def _other_rows(corpus: Path) -> pl.DataFrame:
    rows = []
    for path in sorted((corpus / "other-rules").glob("*.tsv")):
        with path.open(encoding="utf-8", newline="") as handle:
            labelled = [
                (row["diagnostic"], row["their_label"])
                for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            ]
        if path.stem == PHP_TABLE:
            # PHP-Bounce-Handler's table is one PHP array of phrase => code: a phrase given
            # twice keeps only its last code (PHP overwrites the earlier value of a key)
            labelled = list(dict(labelled).items())
        for diagnostic, label in labelled:
            text = _as_message(diagnostic.replace("\\\\", "\\"))
            if label not in LABELS or text is None:
                continue
            rows.append(
                {
                    "input": text,
                    "smtp_code": None,
                    "enhanced_code": None,
                    "relay_host": None,
                    "expected": sorted(PROJECT_LABELS.get((path.stem, label), LABELS[label])),
                    "expected_hard": HARD_LABELS.get(label),
                    "expected_provider": None,
                    "label": label,
                    "origin": path.stem,
                }
            )
    return pl.DataFrame(rows, schema_overrides=_TEXT_COLUMNS)


def measure(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` with the engine's `category`, `bounce_type`, `provider`, `rule_id` and `agrees`."""
    got = explain_frame(
        rows.select("input", "smtp_code", "enhanced_code", "relay_host"), load_rules()
    )
    return pl.concat(
        [rows, got.select("category", "bounce_type", "provider", "rule_id")], how="horizontal"
    ).with_columns(agrees=pl.col("expected").list.contains(pl.col("category")))


def summary(name: str, result: pl.DataFrame, *, wrong: bool, top: int) -> dict[str, object]:
    total = result.height
    agreed = int(result["agrees"].sum())
    hard = result.filter(pl.col("expected_hard").is_not_null()).with_columns(
        got_hard=pl.col("bounce_type") == "hard"
    )
    hard_agreed = int((hard["got_hard"] == hard["expected_hard"]).sum())
    providers = result.filter(pl.col("expected_provider").is_not_null())
    provider_agreed = int((providers["provider"] == providers["expected_provider"]).sum())
    per = (
        result.with_columns(first=pl.col("expected").list.first())
        .group_by("label")
        .agg(rows=pl.len(), agree=pl.col("agrees").sum())
        .with_columns(share=pl.col("agree") / pl.col("rows"))
        .sort(["share", "rows"], descending=[False, True])
    )
    confusions = Counter(
        (label, category)
        for label, category, ok in result.select("label", "category", "agrees").iter_rows()
        if not ok
    )
    print(f"== {name}: {agreed}/{total} = {agreed / max(total, 1):.1%} agree")
    if hard.height:
        print(f"   hard/soft: {hard_agreed}/{hard.height} = {hard_agreed / hard.height:.1%}")
    if providers.height:
        print(
            f"   provider (rows that name one): {provider_agreed}/{providers.height}"
            f" = {provider_agreed / providers.height:.1%}"
        )
    print("   per label (label: agree/rows):")
    for label, rows_, agree, share in per.iter_rows():
        print(f"     {label:<22} {agree:>4}/{rows_:<4} {share:6.1%}")
    print(f"   most frequent confusions (label -> ours), top {top}:")
    for (label, category), count in confusions.most_common(top):
        print(f"     {count:>4}  {label} -> {category}")
    if wrong:
        print("   disagreements:")
        for row in result.filter(~pl.col("agrees")).iter_rows(named=True):
            print(
                f"     [{row['label']} -> {row['category']} by {row['rule_id']}]"
                f" {row['origin']}: {row['input'][:150]!r}"
                f" {row['smtp_code'] or ''} {row['enhanced_code'] or ''}"
            )
        if providers.height:
            for row in providers.filter(
                pl.col("provider") != pl.col("expected_provider")
            ).iter_rows(named=True):
                print(
                    f"     [provider {row['expected_provider']} -> {row['provider']}]"
                    f" {row['relay_host']}: {row['input'][:100]!r}"
                )
    return {
        "rows": total,
        "agree": agreed,
        "hard_rows": hard.height,
        "hard_agree": hard_agreed,
        "provider_rows": providers.height,
        "provider_agree": provider_agreed,
        "per_label": per.to_dicts(),
    }


def _turned_wrong(before: pl.DataFrame, now: pl.DataFrame) -> int:
    """Print the rows that agreed in `before` and do not now; return how many."""
    keys = ["set", "origin", "input", "smtp_code", "enhanced_code", "label"]
    # most rows have no code given apart: a null must meet a null, or they are never compared
    joined = before.unique(keys).join(now.unique(keys), on=keys, suffix="_now", nulls_equal=True)
    worse = joined.filter(pl.col("agrees") & ~pl.col("agrees_now"))
    print(f"== rows right in {len(before)} earlier answers and wrong now: {worse.height}")
    for row in worse.iter_rows(named=True):
        print(
            f"     [{row['label']}: {row['category']} -> {row['category_now']}]"
            f" {row['origin']}: {row['input'][:120]!r}"
        )
    return worse.height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--set", choices=["sisimai", "other", "both"], default="both")
    parser.add_argument("--wrong", action="store_true", help="list every disagreement")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--rows",
        type=Path,
        help="write every row's answer here (Parquet), to compare a later run with --against",
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="a --rows file of an earlier run: list the rows right then and wrong now",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output, not an error
    if not (args.corpus / "patterns.tsv").is_file():
        print(f"Error: no patterns.tsv in {args.corpus} (--corpus)", file=sys.stderr)
        return 2
    figures = {}
    answers = []
    if args.set in ("sisimai", "both"):
        result = measure(_sisimai_rows(args.corpus))
        answers.append(result.with_columns(set=pl.lit("sisimai")))
        figures["sisimai"] = summary(
            "set 1, Sisimai's labels", result, wrong=args.wrong, top=args.top
        )
    if args.set in ("other", "both"):
        result = measure(_other_rows(args.corpus))
        answers.append(result.with_columns(set=pl.lit("other")))
        figures["other"] = summary(
            "set 2, other projects' labels", result, wrong=args.wrong, top=args.top
        )
    rows = pl.concat(answers).select(
        "set", "origin", "input", "smtp_code", "enhanced_code", "label", "category", "agrees"
    )
    if args.rows:
        rows.write_parquet(args.rows)
    if args.against:
        figures["turned_wrong"] = _turned_wrong(pl.read_parquet(args.against), rows)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
