#!/usr/bin/env python3
"""Peak memory of `export` over a large store, measured with `/usr/bin/time -v` (issue 12).

Builds a store of about 2M events (four seeded Postfix logs of 3M lines over 30 days, about
508k events each, ingested one after the other), then runs each kind of export of the whole
window under `/usr/bin/time -v` and prints the rows, wall-clock time and peak RSS of each.
Not part of CI: the store takes a few minutes to build and about 170 MB of disk, the
generated logs 500 MB each while they exist.

    python bench/export_memory.py                         # build in /tmp, measure, keep
    python bench/export_memory.py --store /tmp/s          # measure an existing store
    python bench/export_memory.py --logs 1 --json out.json

Standard library only; the project runs as `python -m bounce_analyzer` with this script's
interpreter (run it from the environment the project is installed in).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: The exports measured: (name, arguments after `export --store S --since 2026-09-01`).
EXPORTS = [
    ("events -> parquet", ["-o", "{out}/events.parquet"]),
    ("events -> csv", ["-o", "{out}/events.csv"]),
    ("events -> partitions", ["-o", "{out}/by-date", "--partition-by", "date"]),
    ("daily -> parquet", ["--what", "daily", "-o", "{out}/daily.parquet"]),
    ("suppressions -> csv", ["--what", "suppressions", "-o", "{out}/suppressions.csv"]),
]


def bounce_analyzer(*args: str) -> list[str]:
    return [sys.executable, "-m", "bounce_analyzer", *args]


def build_store(store: Path, work: Path, logs: int) -> None:
    """`logs` seeded Postfix logs of 3M lines over October 2026, ingested into `store`."""
    for seed in range(1, logs + 1):
        log = work / f"postfix-{seed}.log"
        subprocess.run(
            [sys.executable, "-m", "bounce_analyzer.generate", "postfix", "--lines", "3000000",
             "--seed", str(seed), "--start", "2026-10-01", "--days", "30", "--tz", "UTC",
             "-o", str(log)],
            check=True,
        )  # fmt: skip
        subprocess.run(
            bounce_analyzer("ingest", "--quiet", "--store", str(store), "--tz", "UTC", str(log)),
            check=True,
        )
        log.unlink()


def measured(command: list[str]) -> dict[str, object]:
    """Run `command` under `/usr/bin/time -v`: its rows exported, wall time and peak RSS."""
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True
    )
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)
    rows = re.search(r"exported ([\d,]+) rows", done.stderr)
    assert rss and wall and rows, done.stderr
    minutes, _, seconds = wall[1].rpartition(":")
    return {
        "rows": int(rows[1].replace(",", "")),
        "wall_s": round(float(seconds) + 60 * float(minutes or 0), 2),
        "peak_rss_mb": round(int(rss[1]) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="an existing store (else one is built)")
    parser.add_argument("--logs", type=int, default=4, help="3M-line logs to build it from")
    parser.add_argument("--work", type=Path, help="work folder (default: a new one in /tmp)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    work = options.work or Path(tempfile.mkdtemp(prefix="export-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    store = options.store or work / "store"
    if options.store is None:
        build_store(store, work, options.logs)
    results = {}
    for name, args in EXPORTS:
        command = bounce_analyzer(
            "export", "--store", str(store), "--since", "2026-09-01",
            *(a.format(out=work) for a in args),
        )  # fmt: skip
        results[name] = measured(command)
        figures = results[name]
        print(
            f"{name:22} {figures['rows']:>10,} rows {figures['wall_s']:>7} s "
            f"{figures['peak_rss_mb']:>6,} MB peak RSS"
        )
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"store and exports in {work}")


if __name__ == "__main__":
    main()
