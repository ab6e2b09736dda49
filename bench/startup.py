"""What each command's start costs: CPU, wall time and peak RSS of the console script on the
smallest input (issue 18, lazy imports; bench/RESULTS.md, "Start-up per command").

    python bench/startup.py                       # this code, 7 runs of each command
    python bench/startup.py --baseline main       # and the code of git `main`, interleaved
    python bench/startup.py --smoke --json x.json # one run each (the test's)
    python bench/startup.py --calls --baseline main   # one classification call's fixed cost

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

`--calls` times, instead, what one call of `classify.classify` costs on one row (`MESSAGE`, a
Postfix bounce) once the process has started and the rules are prepared: the fixed cost of a
call, which the HTTP receiver's small batches and each chunk of a parse pay. In a process of
its own per round and code, `CALL_ROUNDS` calls of each kind: a key not seen before (the
memory of decided keys and providers emptied before each call) and a key remembered; the
figure of a round is its fastest call (wall and process CPU, milliseconds), and the results
are the medians over the rounds.
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
from collections.abc import Callable
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


#: Calls of each kind a `--calls` round times (its figure: the fastest).
CALL_ROUNDS = 40
#: A `--calls` round: one process, the calls timed, their fastest printed as JSON.
CALLS = f"""
import json, time
import polars as pl
from bounce_analyzer import classify
from bounce_analyzer.rules import load_rules

rules = load_rules()
frame = pl.DataFrame({{"event": ["bounced"], "diagnostic": [{MESSAGE!r}],
                      "recipient_domain": ["example.com"], "relay_host": ["mx.example.com"],
                      "source": ["postfix"]}})
classify.classify(frame, rules)
memory = classify._prepared(rules).memory
fastest = {{}}
for kind in ("new key", "remembered"):
    for _ in range({CALL_ROUNDS}):
        if kind == "new key":  # (the key and its provider decided afresh)
            memory.decisions, memory.hosts = None, memory.hosts.head(0)
        wall, cpu = time.perf_counter(), time.process_time()
        classify.classify(frame, rules)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = fastest.setdefault(kind, [wall, cpu])
        best[:] = [min(best[0], wall), min(best[1], cpu)]
print(json.dumps({{kind: [1000 * x for x in best] for kind, best in fastest.items()}}))
"""


def call_costs(env: dict[str, str]) -> dict[str, dict[str, float]]:
    """One `--calls` round in a process with `env`: per kind of call, its fastest wall and
    CPU milliseconds."""
    done = subprocess.run(
        [sys.executable, "-c", CALLS], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    return {kind: {"wall_ms": wall, "cpu_ms": cpu} for kind, (wall, cpu) in found.items()}


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
    parser.add_argument("--calls", action="store_true", help="time one classification call instead")
    options = parser.parse_args()
    repeat = 1 if options.smoke else options.repeat
    if not options.calls:
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
        for command, argv in commands(options.work).items() if not options.calls else ():
            for name, env in environments.items():
                figures = run_once(argv, env)
                if round_:
                    runs.setdefault(command, {}).setdefault(name, []).append(figures)
        for name, env in environments.items() if options.calls else ():
            for kind, figures in call_costs(env).items():
                if round_:
                    runs.setdefault(f"classify 1 row, {kind}", {}).setdefault(name, [])
                    runs[f"classify 1 row, {kind}"][name].append(figures)
    if options.calls:
        header = f"{'call':34s} {'code':12s} {'cpu ms':>7s} {'wall ms':>8s}"
        note = f"medians of {repeat} rounds of the fastest of {CALL_ROUNDS} calls"
        print_medians(runs, header, _call_row, note, options.json, repeat)
    else:
        header = f"{'command':34s} {'code':12s} {'cpu s':>7s} {'wall s':>7s} {'peak MB':>8s}"
        print_medians(runs, header, _command_row, f"medians of {repeat}", options.json, repeat)


def _command_row(median: dict[str, float]) -> str:
    return f"{median['cpu_s']:7.3f} {median['wall_s']:7.3f} {median['peak_rss_mb']:8.0f}"


def _call_row(median: dict[str, float]) -> str:
    return f"{median['cpu_ms']:7.1f} {median['wall_ms']:8.1f}"


def print_medians(
    runs: dict[str, dict[str, list[dict[str, float]]]],
    header: str,
    row: Callable[[dict[str, float]], str],
    note: str,
    path: Path | None,
    repeat: int,
) -> None:
    """Per command (or kind of call) and code, the medians of its runs: printed (`header`,
    then `row` of each), and written as JSON to `path`."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(header)
    for what, by_code in runs.items():
        for name, measured in by_code.items():
            median = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
            results.setdefault(what, {})[name] = median
            print(f"{what:34s} {name:12s} {row(median)}")
    print(f"{note}; load average {os.getloadavg()[0]:.1f}")
    if path:
        path.write_text(json.dumps({"repeat": repeat, "results": results}, indent=2))


if __name__ == "__main__":
    main()
