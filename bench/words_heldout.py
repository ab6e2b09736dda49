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
import tomllib
from collections import Counter
from io import BytesIO
from pathlib import Path

import polars as pl

from bounce_analyzer.explain import explain_frame
from bounce_analyzer.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent


def _words_entries() -> str:
    """The `[[patterns]]` entries of this checkout's words tier, as TOML text."""
    text = (ROOT / "rules" / "patterns.toml").read_text(encoding="utf-8")
    patterns = tomllib.loads(text)["patterns"]
    out = []
    for pattern in patterns:
        if pattern.get("tier") != "words":
            continue
        lines = ["[[patterns]]"]
        for key, value in pattern.items():
            lines.append(f"{key} = {_toml_value(value)}")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return "'" + value + "'" if "'" not in value and "\n" not in value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return str(value)


def _rules_at(commit: str, folder: Path, *, words: bool) -> Path:
    """The rules folder of `commit` unpacked under `folder`, with the words tier appended."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "rules"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    if words:
        patterns = folder / "rules" / "patterns.toml"
        patterns.write_text(
            patterns.read_text(encoding="utf-8") + "\n" + _words_entries(), encoding="utf-8"
        )
    return folder / "rules"


def _kind(rule: str) -> str:
    """The kind of rule a rule_id names: `pattern`, `words`, `reply`, a table's name..."""
    return rule.split(":", 1)[0]


def score(path: Path, rules_dir: Path | None) -> pl.DataFrame:
    """Each labelled row of `path` with the category and rule the rules give it."""
    rows = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    inputs = rows.select(
        pl.col("diagnostic").alias("input"),
        pl.col("smtp_code").replace("", None),
        pl.col("enhanced_code").replace("", None),
        pl.col("recipient").replace("", None),
        pl.col("relay_host").replace("", None),
    )
    rules = load_rules(builtin_dir=rules_dir) if rules_dir is not None else load_rules()
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
            report(score(path, None), f"{path.name} (this checkout)", wrong=args.wrong)
            continue
        for words in (False, True):
            with tempfile.TemporaryDirectory() as folder:
                rules_dir = _rules_at(args.at, Path(folder), words=words)
                label = f"{path.name} @ {args.at}" + (" + words tier" if words else "")
                report(score(path, rules_dir), label, wrong=args.wrong)
    return 0


if __name__ == "__main__":
    sys.exit(main())
