"""What each command's start costs: CPU, wall time and peak RSS of the console script on the
smallest input (issue 18, lazy imports; bench/RESULTS.md, "Start-up per command").

    python bench/startup.py                       # this code, 7 runs of each command
    python bench/startup.py --baseline main       # and the code of git `main`, interleaved
    python bench/startup.py --smoke --json x.json # one run each (the test's)

Each command line runs as the installed script runs it (`__main__.main`, its process settings
included) on a one-line Postfix log from the generator, one message for `explain -` and a store
that holds that line; round i of every command and code runs before round i + 1 of any (one
untimed round first), so that a busy moment of a shared machine falls on all; the figures are
medians, from `os.wait4` (user + system CPU, peak RSS) and the clock. A `--baseline` runs its
`src/` and `rules/` (git archive) with the C extensions built for this code copied beside them
(those of another interface version fall back to polars as usual: compare like with like), and
each code with a cache folder of its own (`BOUNCE_ANALYZER_CACHE`: the literals cache is one
file, which two installations would take from each other). Both get their bytecode compiled
first: a process under PYTHONDONTWRITEBYTECODE would otherwise compile the package at each start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from report_memory import baseline_code  # (bench/: the scripts' folder is on the path)

HERE = Path(__file__).resolve().parent

#: The console script's entry, as the installed `bounce-analyzer` runs it.
SCRIPT = (
    "import sys\n"
    "from bounce_analyzer.__main__ import main\n"
    "sys.argv[0] = 'bounce-analyzer'\n"
    "main()\n"
)
#: The options of `parse` and `ingest`.
QUIET = ["--tz", "UTC", "-q"]
#: The message `explain` answers.
MESSAGE = "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown"


def commands(work: Path) -> dict[str, list[str]]:
    """Each command measured, by its name in the results: its arguments (a last argument
    `<FILE` is its standard input)."""
    log, store = str(work / "one.log"), str(work / "store")
    return {
        "--help": ["--help"],
        "--version": ["--version"],
        "explain TEXT": ["explain", MESSAGE],
        "explain - (one line)": ["explain", "-", f"<{work / 'one.txt'}"],
        "parse, one line -> Parquet": ["parse", log, *QUIET, "-o", str(work / "x.parquet")],
        "parse, one line -> JSON lines": ["parse", log, *QUIET, "-o", str(work / "x.jsonl")],
        "ingest, one line (held)": ["ingest", "--store", store, *QUIET, log],
        "report, a store of one event": ["report", "--store", store, "--since", "7d"],
        "check, the same store": ["check", "--store", store, "--warn", "5%"],
        "metrics, the same store": ["metrics", "--store", store],
    }


def prepare(work: Path) -> None:
    """The inputs: a one-line Postfix log (the first bounce of a generated log), one message,
    a store holding the log's event."""
    work.mkdir(parents=True, exist_ok=True)
    generated, log = work / "generated.log", work / "one.log"
    subprocess.run(
        [sys.executable, "-m", "bounce_analyzer.generate", "postfix", "--lines", "2000",
         "--seed", "1", "--start", f"{date.today() - timedelta(days=1)}T00:00:00+00:00",
         "--days", "1", "--tz", "UTC", "-o", str(generated)],
        check=True, capture_output=True,
    )  # fmt: skip
    with generated.open(encoding="utf-8") as lines:
        bounce = next((line for line in lines if "status=bounced" in line), None)
    generated.unlink()
    if bounce is None:
        raise SystemExit("the generated log holds no bounce")
    log.write_text(bounce, encoding="utf-8")
    (work / "one.txt").write_text(MESSAGE + "\n")
    shutil.rmtree(work / "store", ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "bounce_analyzer", "ingest", "--store", str(work / "store"),
         "--tz", "UTC", "-q", str(log)],
        check=True, capture_output=True,
    )  # fmt: skip


def baseline(ref: str, work: Path) -> Path:
    """The `src` folder of git `ref`, with this code's built C extensions beside its package."""
    src = baseline_code(ref, work)
    built = Path(__import__("bounce_analyzer").__file__).parent
    for extension in built.glob("*.so"):
        target = src / "bounce_analyzer" / extension.name
        if not target.exists():
            shutil.copy2(extension, target)
    return src


def run_once(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """One run of the console script with `argv`: CPU and wall seconds, peak RSS in MB."""
    stdin: int | object = subprocess.DEVNULL
    if argv and argv[-1].startswith("<"):
        stdin, argv = open(argv[-1][1:], "rb"), argv[:-1]  # noqa: SIM115 (closed below)
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *argv],
        stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if hasattr(stdin, "close"):
        stdin.close()
    # (`check` is a monitoring plugin: its exit code is its verdict, 0-3)
    if os.waitstatus_to_exitcode(status) not in ((0, 1, 2, 3) if argv[0] == "check" else (0,)):
        raise SystemExit(f"{' '.join(argv)} failed: {errors.decode(errors='replace')[-2000:]}")
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each (median)")
    parser.add_argument("--baseline", default="", help="also time the code of this git ref")
    parser.add_argument("--work", type=Path, default=HERE / "out" / "startup")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="one timed run of each")
    options = parser.parse_args()
    repeat = 1 if options.smoke else options.repeat
    prepare(options.work)
    codes: dict[str, Path | None] = {"this code": None}
    if options.baseline:
        codes[options.baseline] = baseline(options.baseline, options.work)
    environments = {}
    for name, src in codes.items():
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["BOUNCE_ANALYZER_CACHE"] = str(options.work / f"cache-{len(environments)}")
        if src is not None:
            env["PYTHONPATH"] = str(src)
        package = src or Path(__import__("bounce_analyzer").__file__).parent.parent
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True,
                       capture_output=True, env=env)  # fmt: skip
        environments[name] = env
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for round_ in range(repeat + 1):  # round 0 untimed: caches filled, files in memory
        for command, argv in commands(options.work).items():
            for name, env in environments.items():
                figures = run_once(argv, env)
                if round_:
                    runs.setdefault(command, {}).setdefault(name, []).append(figures)
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'command':34s} {'code':12s} {'cpu s':>7s} {'wall s':>7s} {'peak MB':>8s}")
    for command, by_code in runs.items():
        for name, measured in by_code.items():
            median = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
            results.setdefault(command, {})[name] = median
            print(
                f"{command:34s} {name:12s} {median['cpu_s']:7.3f} {median['wall_s']:7.3f} "
                f"{median['peak_rss_mb']:8.0f}"
            )
    print(f"medians of {repeat}; load average {os.getloadavg()[0]:.1f}")
    if options.json:
        options.json.write_text(json.dumps({"repeat": repeat, "results": results}, indent=2))


if __name__ == "__main__":
    main()
