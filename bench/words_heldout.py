"""How much the words tier adds on wordings it was not written for (issue 14).

Scores a labelled file of tests/data/diagnostics (same columns as messages.tsv) with the rules
of a past commit, as `explain -` reads each row (`explain_frame`: the codes given apart passed
apart, the recipient and relay host given), with or without the words-tier patterns of the
rules in this checkout (`tier = "words"` in rules/patterns.toml) added to that commit's
patterns. Printed: rows whose category agrees with the label, overall and per kind of the
deciding rule (`pattern`, `words`, `reply`, `enhanced`, a table's, `blocklist`, `default`).

The honest measure of the tier is a held-out file with the rules of the commit before that
file's own rules were written, so that neither the file's rules nor the tier saw its wordings:

    python bench/words_heldout.py tests/data/diagnostics/provider_docs.tsv --at 986fdc2
    python bench/words_heldout.py tests/data/diagnostics/sisimai_pm.tsv --at 49115a7
    python bench/words_heldout.py tests/data/diagnostics/documented.tsv       # this checkout

`--wrong` lists the disagreements (look at them only after the tier is designed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import polars as pl

from bounce_analyzer.explain import explain_frame
from bounce_analyzer.rules import WORDS_RULE, Rules, load_rules

ROOT = Path(__file__).resolve().parent.parent


def _rules_at(commit: str, folder: Path) -> Path:
    """The rules folder of `commit`, unpacked under `folder`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "rules"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "rules"


def _with_words(rules: Rules) -> Rules:
    """`rules` with this checkout's words tier after its patterns, where the loader puts it."""
    words = load_rules().patterns.filter(pl.col("rule_id").str.starts_with(WORDS_RULE))
    return replace(rules, patterns=pl.concat([rules.patterns, words]))


def _kind(rule: str) -> str:
    """The kind of rule a rule_id names: `pattern`, `words`, `reply`, a table's name..."""
    return rule.split(":", 1)[0]


def score(path: Path, rules: Rules) -> pl.DataFrame:
    """Each labelled row of `path` with the category and rule the rules give it."""
    rows = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    inputs = rows.select(
        pl.col("diagnostic").alias("input"),
        pl.col("smtp_code").replace("", None),
        pl.col("enhanced_code").replace("", None),
        pl.col("recipient").replace("", None),
        pl.col("relay_host").replace("", None),
    )
    got = explain_frame(inputs, rules)
    return rows.select("diagnostic", "expected_category").with_columns(
        got["category"], got["rule_id"]
    )


def report(scored: pl.DataFrame, label: str, *, wrong: bool) -> None:
    right = scored["category"] == scored["expected_category"]
    total, kinds = Counter[str](), Counter[str]()
    for rule, ok in zip(scored["rule_id"], right, strict=True):
        total[_kind(rule)] += 1
        kinds[_kind(rule)] += int(ok)
    print(f"{label}: {int(right.sum())}/{scored.height} ({right.mean():.1%})")
    print("  by deciding rule: " + ", ".join(f"{k} {kinds[k]}/{n}" for k, n in total.most_common()))
    if wrong:
        for row in scored.filter(~right).iter_rows(named=True):
            print(
                f"  {row['expected_category']} <- {row['category']} ({row['rule_id']}): "
                f"{row['diagnostic'][:100]}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tsv", type=Path, nargs="+")
    parser.add_argument("--at", help="score with the rules of this commit (before and after)")
    parser.add_argument("--wrong", action="store_true", help="list the disagreements")
    args = parser.parse_args(argv)
    for path in args.tsv:
        if args.at is None:
            report(score(path, load_rules()), f"{path.name} (this checkout)", wrong=args.wrong)
            continue
        with tempfile.TemporaryDirectory() as folder:
            then = load_rules(builtin_dir=_rules_at(args.at, Path(folder)))
        label = f"{path.name} @ {args.at}"
        report(score(path, then), label, wrong=args.wrong)
        report(score(path, _with_words(then)), label + " + words tier", wrong=args.wrong)
    return 0


if __name__ == "__main__":
    sys.exit(main())
