#!/usr/bin/env python3
"""The figures of issue 13 on a realistic mix: how many failures, how many of them inbound,
and how many suppression rows name our own domains.

Generates a day of a mid-size server's logs with the project's generator (1M Postfix lines and
500k Exim lines by default, 2026-11-27, seeds 1 and 2), adds the sample logs with their
hand-written lines of both directions (`sample_logs/postfix/mail.log`, `sample_logs/exim/
mainlog`), ingests all four into a temporary store with the project's command line, exports
the events and the suppression list, and prints:

- events: what the store holds;
- failed: failure events (bounced, expired, rejected, dropped), all directions;
- inbound share: the share of those failures that are inbound (other servers' mail that our
  server refused or could not deliver). With a `direction` column in the events (issue 13),
  it is that column's; without one (before issue 13), the rejected events' share, since a
  reject was the only inbound failure a log gave then;
- failed outbound: the failures of outbound mail, what `report` counts by default after
  issue 13 (without a `direction` column: all failures, as `report` counted them);
- suppression rows for our own domains: rows of `export --what suppressions` whose
  recipient's domain is one of the generated world's own domains (must be 0).

A measurement, not a test (a few minutes at full size); `--smoke` runs it on a few thousand
lines in seconds (tests/test_bench_direction_mix_smoke.py runs it). It runs on any version of
the project: it uses the command line, the generator's world and what the export holds.

    python bench/direction_mix.py
    python bench/direction_mix.py --postfix-lines 200000 --exim-lines 100000 --json /tmp/mix.json
    python bench/direction_mix.py --smoke

Standard library only, plus the project (run as `python -m bounce_analyzer` with this
script's interpreter) and polars, which the project depends on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from bounce_analyzer.generate import world
from bounce_analyzer.schema import FAILURES

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 27, tzinfo=UTC)
#: The logs' file date: the day after (classic syslog stamps take their year from it).
FILE_DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
#: The hand-written lines of both directions live in these sample logs.
SAMPLES = (REPO / "sample_logs" / "postfix" / "mail.log", REPO / "sample_logs" / "exim" / "mainlog")


def own_domains() -> set[str]:
    """The generated world's own domains: our senders' domains and, where the world names
    them, its own domains and the server's name (the samples' local recipients are
    root@mx1.example.com; a world older than issue 13 does not name the host)."""
    domains = {domain for _, domain in world.SENDERS}
    domains |= {d.name for d in getattr(world, "OWN_DOMAINS", ())}
    domains.add(getattr(world, "MYHOSTNAME", "mx1.example.com"))
    return domains


def cli(*args: str) -> None:
    """Run `python -m bounce_analyzer ARGS` with this interpreter; stop on a failure."""
    done = subprocess.run(
        [sys.executable, "-m", "bounce_analyzer", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"bounce-analyzer {args[0]} failed ({done.returncode}): {done.stderr}")


def generate(source: str, path: Path, lines: int, seed: int) -> None:
    command = [
        sys.executable, "-m", "bounce_analyzer.generate", source, "--lines", str(lines),
        "--seed", str(seed), "--start", START.isoformat(), "--days", "1", "--tz", "UTC",
        "-o", str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)


def measure(work: Path, postfix_lines: int, exim_lines: int) -> dict[str, object]:
    """Generate, ingest and export in `work`; the figures."""
    logs = work / "logs"
    logs.mkdir()
    generate("postfix", logs / "mail.log", postfix_lines, 1)
    generate("exim", logs / "mainlog", exim_lines, 2)
    shutil.copyfile(SAMPLES[0], logs / "sample-mail.log")
    shutil.copyfile(SAMPLES[1], logs / "sample-mainlog")
    for path in logs.iterdir():
        os.utime(path, (FILE_DATE, FILE_DATE))
    store = work / "store"
    inputs = [str(path) for path in sorted(logs.iterdir())]
    cli("ingest", "--quiet", "--store", str(store), "--tz", "UTC", *inputs)
    window = ["--store", str(store), "--since", "2026-11-26", "--until", "2026-11-30"]
    cli("export", *window, "-o", str(work / "events.parquet"))
    cli("export", *window, "--what", "suppressions", "-o", str(work / "suppressions.csv"))

    events = pl.read_parquet(work / "events.parquet")
    failed = events.filter(pl.col("event").is_in(list(FAILURES)))
    if "direction" in events.columns:
        inbound = failed.filter(pl.col("direction") == "inbound").height
        outbound = failed.filter(pl.col("direction") == "outbound").height
        basis = "direction column"
    else:
        inbound = failed.filter(pl.col("event") == "rejected").height
        outbound = failed.height
        basis = "rejected events (no direction column)"
    suppressions = pl.read_csv(work / "suppressions.csv", infer_schema=False)
    domain = pl.col("recipient").str.split("@").list.last().str.to_lowercase()
    own = suppressions.filter(domain.is_in(sorted(own_domains())))
    return {
        "postfix_lines": postfix_lines,
        "exim_lines": exim_lines,
        "sample_lines": sum(len(path.read_bytes().splitlines()) for path in SAMPLES),
        "events": events.height,
        "failed": failed.height,
        "inbound_failed": inbound,
        "inbound_share": round(inbound / failed.height, 4) if failed.height else 0.0,
        "inbound_basis": basis,
        "failed_outbound": outbound,
        "suppression_rows": suppressions.height,
        "suppression_rows_own_domains": own.height,
        "own_domains": sorted(own_domains()),
    }


def show(figures: dict[str, object]) -> str:
    share = float(str(figures["inbound_share"]))
    rows = [
        (
            "input",
            f"{figures['postfix_lines']:,} Postfix + {figures['exim_lines']:,} Exim lines"
            f" + {figures['sample_lines']:,} sample lines",
        ),  # fmt: skip
        ("events", f"{figures['events']:,}"),
        ("failed (all directions)", f"{figures['failed']:,}"),
        (
            "inbound share of failures",
            f"{share:.1%} ({figures['inbound_failed']:,}; {figures['inbound_basis']})",
        ),  # fmt: skip
        ("failed outbound", f"{figures['failed_outbound']:,}"),
        ("suppression rows", f"{figures['suppression_rows']:,}"),
        ("  for our own domains", f"{figures['suppression_rows_own_domains']:,}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postfix-lines", type=int, default=1_000_000)
    parser.add_argument("--exim-lines", type=int, default=500_000)
    parser.add_argument("--smoke", action="store_true", help="3,000 + 2,000 lines, in seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    postfix_lines, exim_lines = (3_000, 2_000) if args.smoke else (args.postfix_lines,
                                                                    args.exim_lines)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="direction-mix-") as folder:
        figures = measure(Path(folder), postfix_lines, exim_lines)
    print(show(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
