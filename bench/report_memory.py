#!/usr/bin/env python3
"""Peak memory and time of `report` over a 30-day window and a one-day window (issue 17).

Builds (or reuses) a store of generated logs spread over the last `--days` days, then runs
`report` under GNU time (`/usr/bin/time -v`) over two windows of the same store:

- `30d`: the last 30 days (`--since` fixed at the start of the run to now - 30 days, so that
  every run reads the same window: what `--since 30d` means);
- `1d`: one whole UTC day in the middle of the store.

Each window is run by today's code (`after`) and, with `--baseline REF` (default `main`), by
the code of that git ref (`before`: its `src/` and `rules/` taken with `git archive` into the
work folder and run with this interpreter). `--pass-events N` sets `report._PASS_EVENTS` of
the `after` runs, so that a small store can stand for a large one (a store of 3M events with
`--pass-events 50000` splits as one of 30M with the default 500,000); `--baseline-pass-events`
does the same for `before`, whose passes (of 3M events) each read the whole window (300000
for a store of 3M that stands for 30M); `--one-pass` adds `after` runs that never split.
`--baseline-python PY` runs `before` with another interpreter instead (a worktree of the
baseline with its own venv: `git worktree add --detach W 769801a^1`); `--runs` and
`--windows` choose what runs (several invocations on one store compare by `--now`, which fixes
the 30-day window). Issue 17's store of 33M events is made by `bench/store_copies.py`.
Every run of a window must print the same report (JSON), or the script fails. Prints wall
time, CPU time and peak RSS of each run, and the ratios the issue sets goals for: the 30-day
peak against the one-day peak (<= 1.2), under 1 GiB, and the 30-day time against the
baseline's (<= 1.5).

Not part of CI (a large store takes minutes to build); `--smoke` builds a store of 20,000
lines and splits it into shares of 2,000 events, in seconds
(tests/test_bench_report_memory_smoke.py runs it).

    nice python bench/report_memory.py --lines 7000000 --pass-events 100000
    python bench/report_memory.py --store /tmp/s --baseline main --json out.json
    python bench/report_memory.py --smoke

Standard library only, plus the project (run with this script's interpreter) and git.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
GNU_TIME = "/usr/bin/time"
LIMIT_MB = 1024

#: The runs `--runs` chooses from, by their names there.
RUN_NAMES = {"before": "before", "after": "after", "one-pass": "after, one pass"}

#: Runs the command line as the console script does (with the process settings it gives
#: `report`, where the code has them: `startup.prepare`, before it `__main__.set_allocator`),
#: with `report._PASS_EVENTS` from the environment, when it is set.
RUNNER = (
    "import os, sys\n"
    "try:\n"
    "    from bounce_analyzer.startup import prepare\n"
    "except ImportError:  # (a baseline older than the module)\n"
    "    try:\n"
    "        from bounce_analyzer.__main__ import set_allocator as prepare\n"
    "    except ImportError:  # (a baseline older than the setting)\n"
    "        prepare = None\n"
    "if prepare is not None:\n"
    "    prepare(sys.argv[1:])\n"
    "import bounce_analyzer.report as report\n"
    "if os.environ.get('BENCH_PASS_EVENTS'):\n"
    "    report._PASS_EVENTS = int(os.environ['BENCH_PASS_EVENTS'])\n"
    "from bounce_analyzer.cli import app\n"
    "sys.argv[0] = 'bounce-analyzer'\n"
    "app()\n"
)


def build_store(store: Path, work: Path, *, source: str, lines: int, days: int, start: date) -> int:
    """A generated log of `lines` lines over `days` days from `start`, ingested into `store`;
    the events the store then holds."""
    log = work / f"{source}.log"
    subprocess.run(
        [sys.executable, "-m", "bounce_analyzer.generate", source, "--lines", str(lines),
         "--seed", "17", "--start", f"{start.isoformat()}T00:00:00+00:00",
         "--days", str(days), "--tz", "UTC", "-o", str(log)],
        check=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bounce_analyzer", "ingest", "--store", str(store), "--tz", "UTC",
         str(log)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    log.unlink()
    found = re.search(r"([\d,]+) new events", done.stdout + done.stderr)
    return int(found[1].replace(",", "")) if found else 0


def baseline_code(ref: str, work: Path) -> Path:
    """The `src/` and `rules/` of git `ref` in `work/baseline-<ref>`: its `src` folder."""
    name = re.sub(r"[^\w.-]", "_", ref)
    folder = work / f"baseline-{name}"
    if not (folder / "src").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", ref, "src", "rules"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def measured(
    window: list[str],
    store: Path,
    output: Path,
    *,
    code: Path | None,
    pass_events: int | None,
    python: str = sys.executable,
) -> dict[str, float]:
    """`report --format json` over `window` under GNU time, run by `python`: wall and CPU
    seconds, peak RSS."""
    env = dict(os.environ)
    env.pop("BENCH_PASS_EVENTS", None)
    if pass_events is not None:
        env["BENCH_PASS_EVENTS"] = str(pass_events)
    if code is not None:  # the baseline's package first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(":")
    command = [python, "-c", RUNNER, "report", "--store", str(store), *window,
               "--format", "json", "--output", str(output)]  # fmt: skip
    done = subprocess.run(
        [GNU_TIME, "-v", *command], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"report failed ({done.returncode}): {done.stderr[-2000:]}")

    def figure(label: str) -> str:
        found = re.search(rf"{re.escape(label)}: ([\d:.]+)", done.stderr)
        assert found, done.stderr
        return found[1]

    minutes, _, seconds = figure("Elapsed (wall clock) time (h:mm:ss or m:ss)").rpartition(":")
    cpu = float(figure("User time (seconds)")) + float(figure("System time (seconds)"))
    return {
        "wall_s": round(float(seconds) + 60 * float(minutes or 0), 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(int(figure("Maximum resident set size (kbytes)")) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", type=Path, help="an existing store (else one is built)")
    parser.add_argument("--source", choices=["exim", "postfix"], default="exim")
    parser.add_argument("--lines", type=int, default=7_000_000, help="log lines to build from")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--day", help="the one-day window (default: the store's middle day)")
    parser.add_argument("--baseline", default="main", help="git ref of `before` ('' for none)")
    parser.add_argument(
        "--baseline-python",
        help="the interpreter of a checkout of `before` (its venv's python): run `before` "
        "with it, instead of `--baseline`'s code with this interpreter",
    )
    parser.add_argument(
        "--runs", help="which runs, comma-separated: before, after, one-pass (default: all set)"
    )
    parser.add_argument("--windows", default="30d,1d", help="which windows: 30d, 1d or both")
    parser.add_argument(
        "--now", help="the moment `--since 30d` counts back from (ISO; default: the start)"
    )
    parser.add_argument("--pass-events", type=int, help="report._PASS_EVENTS of `after`")
    parser.add_argument(
        "--baseline-pass-events", type=int, help="report._PASS_EVENTS of `before` (scaled)"
    )
    parser.add_argument("--one-pass", action="store_true", help="also `after` without a split")
    parser.add_argument("--work", type=Path, help="work folder (default: a new one in /tmp)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--smoke", action="store_true", help="a tiny store, in seconds")
    options = parser.parse_args()
    if options.smoke:
        options.lines, options.pass_events, options.one_pass = 20_000, 2_000, True
    work = options.work or Path(tempfile.mkdtemp(prefix="report-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    now = datetime.fromisoformat(options.now) if options.now else datetime.now(UTC)
    now = now.replace(microsecond=0)
    first = now.date() - timedelta(days=options.days)
    store = options.store or work / "store"
    events = None
    if options.store is None:
        events = build_store(store, work, source=options.source, lines=options.lines,
                             days=options.days, start=first)  # fmt: skip
    day = date.fromisoformat(options.day) if options.day else first + timedelta(options.days // 2)
    every_window = {
        "30d": ["--since", (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")],
        "1d": ["--since", day.isoformat(), "--until", (day + timedelta(days=1)).isoformat()],
    }
    windows = {name: every_window[name] for name in options.windows.split(",")}
    runs: list[tuple[str, Path | None, int | None, str]] = [
        ("after", None, options.pass_events, sys.executable)
    ]
    if options.one_pass:
        runs.append(("after, one pass", None, 10**12, sys.executable))
    if options.baseline_python:
        runs.insert(0, ("before", None, options.baseline_pass_events, options.baseline_python))
    elif options.baseline:
        code = baseline_code(options.baseline, work)
        runs.insert(0, ("before", code, options.baseline_pass_events, sys.executable))
    if options.runs:
        chosen = {RUN_NAMES[name] for name in options.runs.split(",")}
        runs = [run for run in runs if run[0] in chosen]
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'window':7} {'run':16} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>12}")
    for window, arguments in windows.items():
        texts = {}
        for name, code, pass_events, python in runs:
            output = work / f"report-{window}-{name.replace(', ', '-').replace(' ', '-')}.json"
            figures = measured(
                arguments, store, output, code=code, pass_events=pass_events, python=python
            )
            results.setdefault(window, {})[name] = figures
            texts[name] = output.read_text(encoding="utf-8")
            print(f"{window:7} {name:16} {figures['wall_s']:>7} {figures['cpu_s']:>7} "
                  f"{figures['peak_rss_mb']:>12,}")  # fmt: skip
        if len(set(texts.values())) != 1:
            raise SystemExit(f"the runs of the {window} window printed different reports: "
                             f"{', '.join(texts)} (in {work})")  # fmt: skip
    goals: dict[str, object] = {}
    after_30 = results.get("30d", {}).get("after")
    after_1 = results.get("1d", {}).get("after")
    if after_30 is not None:
        goals["peak_30d_under_1_gib"] = after_30["peak_rss_mb"] < LIMIT_MB
    if after_30 is not None and after_1 is not None:
        goals["peak_30d_over_1d"] = round(after_30["peak_rss_mb"] / after_1["peak_rss_mb"], 2)
    before = results.get("30d", {}).get("before")
    if after_30 is not None and before is not None:
        goals["wall_30d_over_before"] = round(after_30["wall_s"] / before["wall_s"], 2)
        goals["cpu_30d_over_before"] = round(after_30["cpu_s"] / max(before["cpu_s"], 0.01), 2)
    for name, value in goals.items():
        print(f"{name}: {value}")
    if options.json:
        summary = {"events": events, "store": str(store), "pass_events": options.pass_events,
                   "windows": windows, "runs": results, "goals": goals}  # fmt: skip
        options.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"store and reports in {work}")


if __name__ == "__main__":
    main()
