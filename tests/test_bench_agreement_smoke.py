"""`bench/agreement.py` on a small corpus of the shared corpus's shape (issue 14): its figures,
and `--rows` then `--against` on set 2 alone, whose rows give no codes apart (that join on an
all-empty `smtp_code` column failed with a schema error)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# rows copied from the shared corpus: classification/patterns.tsv (Sisimai's tests, rhost
# tables) and other-rules/ (KumoMTA's community bounces, PHP-Bounce-Handler's phrases)
PATTERNS = (
    "diagnostic\tsmtp_code\tenhanced_code\texpected_reason\texpected_hard\tscheme\torigin"
    "\tprovider\tnote\n"
    "550 DMARC failure\t550\t\tauthfailure\t0\tsisimai-test-hardsoft\tgo-sisimai\t\t\n"
    "550 5.1.1 The email account that you tried to reach does not exist.\t550\t5.1.1"
    "\tuserunknown\t1\trhost\tgo-sisimai\tGoogle\t\n"
)
KUMO = (
    "diagnostic\ttheir_label\tsource_path\n"
    "^552.+mailbox not found\tInvalidRecipient\tassets/community/bounces.toml:L26\n"
)
PHP = (
    "diagnostic\ttheir_label\tsource_path\n"
    "mailbox is full\t4.2.2\tbounce_responses.php\n"
    "[45]\\\\d\\\\d[- ]#?([45]\\\\.\\\\d\\\\.\\\\d{1,2})\tx\tbounce_responses.php:L9\n"
)


def _run(corpus: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "agreement.py"), "--corpus", str(corpus), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_agreement_figures_and_a_second_run_against_the_first(tmp_path: Path) -> None:
    corpus = tmp_path / "classification"
    (corpus / "other-rules").mkdir(parents=True)
    (corpus / "patterns.tsv").write_text(PATTERNS, encoding="utf-8")
    (corpus / "other-rules" / "kumo.tsv").write_text(KUMO, encoding="utf-8")
    (corpus / "other-rules" / "php.tsv").write_text(PHP, encoding="utf-8")
    first = tmp_path / "first.parquet"
    _run(corpus, "--set", "other", "--rows", str(first), "--json", str(tmp_path / "a.json"))
    figures = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert figures["other"]["rows"] == 2  # the regex with code placeholders is not a message
    assert figures["other"]["agree"] == 2
    done = _run(corpus, "--set", "other", "--against", str(first))
    assert "earlier answers and wrong now: 0" in done.stdout
    _run(corpus, "--json", str(tmp_path / "b.json"), "--against", str(first))
    both = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    # only the row of Google's table names a provider to check
    assert both["sisimai"]["rows"] == 2 and both["sisimai"]["provider_rows"] == 1
    assert both["sisimai"]["provider_agree"] == 1
    assert both["turned_wrong"] == 0


# PHP-Bounce-Handler's rows (bounce_responses.php): a phrase given twice, a disabled account
# under 5.1.1, and a text the engine reads otherwise than its label ("Delivery failed" is on
# hold, not a full mailbox)
PHP_TABLE = (
    "diagnostic\ttheir_label\tsource_path\n"
    "mailbox is full\t4.2.2\tbounce_responses.php:L20\n"
    "mailbox unavailable\t5.1.1\tbounce_responses.php:L76\n"
    "user disabled\t5.1.1\tbounce_responses.php:L111\n"
    "Delivery failed\t4.2.2\tbounce_responses.php\n"
    "mailbox unavailable\t5.2.0\tbounce_responses.php:L147\n"
)


def test_php_table_reads_as_php_does_and_rows_without_codes_are_compared(
    tmp_path: Path,
) -> None:
    import polars as pl

    corpus = tmp_path / "classification"
    (corpus / "other-rules").mkdir(parents=True)
    (corpus / "patterns.tsv").write_text(PATTERNS, encoding="utf-8")
    (corpus / "other-rules" / "php-bounce-handler-responses.tsv").write_text(
        PHP_TABLE, encoding="utf-8"
    )
    rows = tmp_path / "rows.parquet"
    _run(corpus, "--set", "other", "--rows", str(rows), "--json", str(tmp_path / "a.json"))
    answers = pl.read_parquet(rows)
    # the phrase given twice keeps its last code only, as a PHP array keeps a key's last value
    assert answers.height == 4
    assert answers.filter(pl.col("input") == "mailbox unavailable")["label"].to_list() == ["5.2.0"]
    agrees = dict(zip(answers["input"], answers["agrees"], strict=True))
    assert agrees == {
        "mailbox is full": True,
        "mailbox unavailable": True,
        "user disabled": True,  # this project's 5.1.1 holds disabled accounts
        "Delivery failed": False,
    }
    # an earlier run in which "Delivery failed" agreed: it is right then and wrong now, although
    # none of these rows gives a code apart (nulls in the joined columns)
    earlier = tmp_path / "earlier.parquet"
    answers.with_columns(agrees=pl.lit(True)).write_parquet(earlier)
    done = _run(corpus, "--set", "other", "--against", str(earlier))
    assert "earlier answers and wrong now: 1" in done.stdout
    assert "'Delivery failed'" in done.stdout
