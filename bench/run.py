#!/usr/bin/env python3
"""Benchmark bounce-analyzer against pflogsumm, eximstats, `wc -l` and `grep -c` (issue 5).

Generates seeded Postfix and Exim logs with the project's own generator, then times every
command as a subprocess, several times, and reports the median wall-clock and CPU time
(user + sys), lines/s, MB/s and peak RSS of each, the ratios to each peer, how the cost
scales from the smallest to the largest size, and `report` over a one-day window on a store
holding 1 day and one holding 60 days. Prints a table and writes the same as JSON.

Standard library only; the project is run as `python -m bounce_analyzer` with this script's
interpreter (run it from the environment the project is installed in). Peers are installed
from Debian's packages (`apt-get install -y pflogsumm exim4-base`) when missing, or skipped
with a message.

    python bench/run.py                                # 1M and 5M lines, 3 runs each, peers
    python bench/run.py --sizes 1000000 --repeat 5 --no-peers
    python bench/run.py --smoke                        # tiny, 1 run, no peers: seconds
    python bench/run.py --sizes 200000 --paths polars  # only the polars reference path

Our commands (parse, ingest, report) run on each parser path (`--paths`, default both: the C
tokenizers, and the polars path that `BOUNCE_ANALYZER_NATIVE=0` forces), side by side: run i
of each path before run i + 1 of any, so that a busy moment of the machine falls on both.

Each command runs under `os.wait4`, which returns the resources of that one child alone:
its CPU time and its own peak RSS (not a maximum over every child the script ever ran).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCES = ("postfix", "exim")
#: What `grep -c` counts in each log: the per-recipient result lines.
GREP_PATTERN = {"postfix": "status=", "exim": "=>"}
#: The outcome word of each source, for the one-regex reference programs below.
OUTCOME_REGEX = {"postfix": r" status=([a-z]+)", "exim": r" (<=|=>|->|\*\*|==) "}
#: The issue's two reference points, as programs: a plain Python loop with one regex counting
#: outcomes, and polars with one regex and a group-by. They read the file and count; they do
#: not classify, join senders or write anything.
PYTHON_LOOP = """
import re, sys
pattern = re.compile(sys.argv[2].encode())
counts = {}
with open(sys.argv[1], "rb") as handle:
    for line in handle:
        found = pattern.search(line)
        if found:
            counts[found.group(1)] = counts.get(found.group(1), 0) + 1
print(counts)
"""
POLARS_ONE_REGEX = """
import sys
import polars as pl
lines = pl.scan_csv(sys.argv[1], has_header=False, new_columns=["line"], separator="\\x00",
                    quote_char=None, infer_schema=False)
outcome = pl.col("line").str.extract(sys.argv[2], 1).alias("outcome")
print(lines.select(outcome).group_by("outcome").len().collect())
"""
#: The Debian package and the command of each peer.
PEERS = {"postfix": ("pflogsumm", "pflogsumm"), "exim": ("eximstats", "exim4-base")}
SEED = 1
SMOKE_SIZES = (20_000,)
SMOKE_DAY_LINES = 300
#: The parser paths our commands run on, side by side (issue 18): the C tokenizers where
#: built, and the polars reference path that `BOUNCE_ANALYZER_NATIVE=0` forces.
PATHS = ("native", "polars")
NATIVE_ENV = "BOUNCE_ANALYZER_NATIVE"
#: Our commands (each run on every path); the rest are peers and reference programs.
OURS = ("parse -> parquet", "ingest", "report --since 7d")
#: Targets of issue 18: the whole pipeline against both peers at 1M and 5M lines.
TARGET_PEERS_1M = 7.0
TARGET_PEERS_5M = 10.0
#: Targets of issue 5.
TARGET_PFLOGSUMM_SMALL = 10.0
TARGET_PFLOGSUMM_LARGE = 20.0
TARGET_EXIMSTATS_LARGE = 20.0
TARGET_RSS_BYTES = 1 << 30
TARGET_RSS_GROWTH = 1.2
TARGET_WINDOW_RATIO = 1.5


@dataclass
class Measure:
    """Repeated runs of one command."""

    name: str
    size: int | None
    source: str | None
    command: list[str]
    path: str | None = None  # the parser path of our commands (PATHS); None for the others
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)

    def summary(self, lines: int | None, size_bytes: int | None) -> dict[str, Any]:
        wall = statistics.median(self.wall_s)
        cpu = statistics.median(self.cpu_s)
        row: dict[str, Any] = {
            "name": self.name,
            "size": self.size,
            "source": self.source,
            "path": self.path,
            "command": self.command,
            "runs": len(self.wall_s),
            "wall_s": wall,
            "cpu_s": cpu,
            "wall_s_all": self.wall_s,
            "cpu_s_all": self.cpu_s,
            "peak_rss_bytes": max(self.rss_kb) * 1024,
            "lines_per_s": None,
            "mb_per_s": None,
            "lines_per_cpu_s": None,
        }
        if lines:
            row["lines_per_s"] = lines / wall
            row["lines_per_cpu_s"] = lines / cpu if cpu > 0 else None
        if size_bytes:
            row["mb_per_s"] = size_bytes / 1e6 / wall
        return row


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_once(
    command: list[str], *, env: dict[str, str] | None = None, capture: bool = False
) -> tuple[float, float, int]:
    """Run `command`; return (wall s, user+sys s, peak RSS KiB).

    stdout goes to /dev/null, or with `capture` (for commands that print little) to a pipe:
    GNU grep notices a /dev/null stdout and stops at the first match, even with -c.
    """
    started = time.perf_counter()
    child = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stderr is not None
    if capture:
        assert child.stdout is not None
        child.stdout.read()
        child.stdout.close()
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    code = child.returncode
    # grep -c exits 1 when it counts nothing; that is still a complete read of the file.
    if code != 0 and not (command[0] == "grep" and code == 1):
        tail = errors.decode(errors="replace").strip()[-2000:]
        raise SystemExit(f"failed ({code}): {' '.join(command)}\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def measure(measure_: Measure, repeat: int, **options: Any) -> Measure:
    """`repeat` runs of `measure_` (`options`: those of `measure_once`)."""
    for i in range(repeat):
        measure_once(measure_, i, repeat, **options)
    return measure_


def measure_once(
    measure_: Measure,
    i: int,
    repeat: int,
    *,
    before: Any = None,
    env: dict[str, str] | None = None,
    capture: bool = False,
) -> None:
    if before is not None:
        before()
    wall, cpu, rss = run_once(measure_.command, env=env, capture=capture)
    measure_.wall_s.append(wall)
    measure_.cpu_s.append(cpu)
    measure_.rss_kb.append(rss)
    path = f"[{measure_.path}]" if measure_.path else ""
    log(
        f"  {measure_.name:<28} {path:<8} {measure_.source or '':<8} {measure_.size or '':>9} "
        f"run {i + 1}/{repeat}: {wall:7.2f} s wall, {cpu:7.2f} s cpu, {rss / 1024:7.0f} MiB"
    )


def path_env(path: str) -> dict[str, str]:
    """The environment of our commands on `path`: the polars path forced, or left on."""
    env = {key: value for key, value in os.environ.items() if key != NATIVE_ENV}
    if path == "polars":
        env[NATIVE_ENV] = "0"
    return env


def describe_paths(paths: list[str]) -> dict[str, str]:
    """What `bounce-analyzer --version` says each path runs (the C path may not be built)."""
    said = {}
    for path in paths:
        done = subprocess.run(
            project("--version"), env=path_env(path), capture_output=True, text=True, check=True
        )
        said[path] = done.stdout.strip().splitlines()[-1]
    return said


def project(*args: str) -> list[str]:
    return [sys.executable, "-m", "bounce_analyzer", *args]


def generate(source: str, path: Path, *, lines: int, start: datetime, days: float) -> None:
    command = [
        sys.executable,
        "-m",
        "bounce_analyzer.generate",
        source,
        "--lines",
        str(lines),
        "--seed",
        str(SEED),
        "--start",
        start.isoformat(),
        "--days",
        str(days),
        "--tz",
        "UTC",
        "-o",
        str(path),
    ]
    log(f"generating {path.name}: {lines:,} {source} lines over {days:g} day(s)")
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# --------------------------------------------------------------------------------------------
# Peers


def install_peers(wanted: bool) -> dict[str, str | None]:
    """The path of each peer command, installing it from Debian when missing; None = skipped."""
    found: dict[str, str | None] = {}
    skipped_reason: dict[str, str] = {}
    updated = False
    for source, (command, package) in PEERS.items():
        if not wanted:
            found[source] = None
            continue
        path = shutil.which(command)
        if path is None:
            reason = _apt_install(package, update=not updated)
            updated = True
            path = shutil.which(command)
            if path is None:
                skipped_reason[source] = reason or f"{command} not found after installing"
        found[source] = path
    for source, reason in skipped_reason.items():
        log(f"SKIPPED {PEERS[source][0]}: {reason}")
    return found


def _apt_install(package: str, *, update: bool) -> str | None:
    """Install a Debian package; return why it failed, or None."""
    if shutil.which("apt-get") is None:
        return "no apt-get here (not Debian or Ubuntu): install it by hand"
    if os.geteuid() != 0:
        return f"not root: run `apt-get install -y {package}` as root first"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = ([["apt-get", "update"]] if update else []) + [
        ["apt-get", "install", "-y", "--no-install-recommends", package]
    ]
    for step in steps:
        log(f"running: {' '.join(step)}")
        done = subprocess.run(step, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            return f"`{' '.join(step)}` failed: {' '.join(tail)}"
    return None


def _package_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


# --------------------------------------------------------------------------------------------
# The machine


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "memory_bytes": None,
        "cpu_model": None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for package in ("polars", "pyarrow", "bounce-analyzer"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    info["pflogsumm"] = _package_version("pflogsumm")
    info["exim4-base"] = _package_version("exim4-base")
    try:
        head = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
        if head.returncode == 0:
            info["git_commit"] = head.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------------------------
# The benchmark


def bench_size(
    size: int,
    source: str,
    out: Path,
    repeat: int,
    peer: str | None,
    start: datetime,
    paths: tuple[str, ...] = PATHS,
) -> list[dict[str, Any]]:
    """Every command on one generated log (ours on each of `paths`, side by side: run i of
    each path before run i + 1 of any); the summaries."""
    path = out / f"{source}-{size}.log"
    generate(source, path, lines=size, start=start, days=1)
    size_bytes = path.stat().st_size
    plain = {**os.environ, "LC_ALL": "C"}
    rows: list[dict[str, Any]] = []

    def summarize(m: Measure) -> None:
        counted = None if m.name.startswith("report") else size
        rows.append(m.summary(counted, None if counted is None else size_bytes))

    def add(m: Measure, **kwargs: Any) -> None:
        measure(m, repeat, **kwargs)
        summarize(m)

    add(Measure("wc -l", size, source, ["wc", "-l", str(path)]), env=plain, capture=True)
    grep = ["grep", "-c", "-F", GREP_PATTERN[source], str(path)]
    add(Measure("grep -c", size, source, grep), env=plain, capture=True)
    regex = OUTCOME_REGEX[source]
    loop = [sys.executable, "-c", PYTHON_LOOP, str(path), regex]
    add(Measure("python loop, one regex", size, source, loop), capture=True)
    one_regex = [sys.executable, "-c", POLARS_ONE_REGEX, str(path), regex]
    add(Measure("polars, one regex + group-by", size, source, one_regex), capture=True)
    if peer is not None:
        add(Measure(Path(peer).name, size, source, [peer, str(path)]))
    for name in OURS:
        measures = []
        for on in paths:
            store = out / f"store-{source}-{size}-{on}"
            parquet = out / f"{source}-{size}-{on}.parquet"
            command = {
                "parse -> parquet": project(
                    "parse", str(path), "--tz", "UTC", "--quiet", "-o", str(parquet)
                ),
                "ingest": project("ingest", "--store", str(store), "--tz", "UTC", "--quiet",
                                  str(path)),
                "report --since 7d": project("report", "--store", str(store), "--since", "7d"),
            }[name]  # fmt: skip
            before = (lambda store=store: remove(store)) if name == "ingest" else None
            measures.append((Measure(name, size, source, command, path=on), before))
        for i in range(repeat):
            for m, before in measures:
                measure_once(m, i, repeat, before=before, env=path_env(m.path or ""))
        for m, _ in measures:
            summarize(m)
    return rows


def bench_window(out: Path, repeat: int, day_lines: int, end: datetime) -> dict[str, Any]:
    """`report` over the last day of a store holding 1 day, and of one holding 60 days."""
    since = (end - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    until = end.strftime("%Y-%m-%dT%H:%M")
    result: dict[str, Any] = {"since": since, "until": until, "day_lines": day_lines}
    for days in (1, 60):
        path = out / f"window-{days}d.log"
        store = out / f"store-window-{days}d"
        generate(
            "postfix", path, lines=day_lines * days, start=end - timedelta(days=days), days=days
        )
        remove(store)
        log(f"ingesting {path.name} into {store.name}")
        run_once(project("ingest", "--store", str(store), "--tz", "UTC", "--quiet", str(path)))
        m = Measure(
            f"report 1d on {days}d store",
            None,
            "postfix",
            project("report", "--store", str(store), "--since", since, "--until", until),
        )
        measure(m, repeat)
        result[f"store_{days}d"] = m.summary(None, None)
        result[f"store_{days}d"]["store_days"] = days
        result[f"store_{days}d"]["store_bytes"] = sum(
            f.stat().st_size for f in store.rglob("*") if f.is_file()
        )
    one, sixty = result["store_1d"], result["store_60d"]
    result["ratio_wall"] = sixty["wall_s"] / one["wall_s"]
    result["ratio_cpu"] = sixty["cpu_s"] / one["cpu_s"]
    return result


def created_paths(out: Path, sizes: list[int]) -> list[Path]:
    """Everything the benchmark writes in `out` except the results."""
    paths = []
    for source in SOURCES:
        for size in sizes:
            paths.append(out / f"{source}-{size}.log")
            for on in PATHS:
                paths += [
                    out / f"{source}-{size}-{on}.parquet",
                    out / f"store-{source}-{size}-{on}",
                ]
    for days in (1, 60):
        paths += [out / f"window-{days}d.log", out / f"store-window-{days}d"]
    return paths


def find(
    rows: list[dict[str, Any]], name: str, source: str, size: int, path: str | None = None
) -> dict[str, Any] | None:
    """The row of a command (of ours: on `path`, else on the first path measured)."""
    for row in rows:
        if row["name"] == name and row["source"] == source and row["size"] == size:
            if path is None or row.get("path") in (None, path):
                return row
    return None


def paths_of(rows: list[dict[str, Any]]) -> list[str]:
    """The parser paths our commands ran on, in the order measured."""
    return list(dict.fromkeys(row["path"] for row in rows if row.get("path")))


def ratios(rows: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """How many times faster bounce-analyzer is than each peer (> 1: faster), on each path."""
    result = []
    references = ("python loop, one regex", "polars, one regex + group-by", "wc -l", "grep -c")
    for size, source, path in ((z, s, p) for z in sizes for s in SOURCES for p in paths_of(rows)):
        for ours in ("parse -> parquet", "ingest"):
            mine = find(rows, ours, source, size, path)
            if mine is None:
                continue
            for theirs in (PEERS[source][0], *references):
                other = find(rows, theirs, source, size)
                if other is None:
                    continue
                result.append(
                    {
                        "size": size,
                        "source": source,
                        "path": path,
                        "ours": ours,
                        "peer": theirs,
                        "speedup_wall": other["wall_s"] / mine["wall_s"],
                        "speedup_cpu": other["cpu_s"] / mine["cpu_s"],
                    }
                )
    return result


def scaling(rows: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """Per-line cost and peak RSS at the largest size relative to the smallest."""
    if len(sizes) < 2:
        return []
    small, large = min(sizes), max(sizes)
    result = []
    for source, path in ((s, p) for s in SOURCES for p in paths_of(rows)):
        for name in ("parse -> parquet", "ingest"):
            a, b = find(rows, name, source, small, path), find(rows, name, source, large, path)
            if a is None or b is None:
                continue
            result.append(
                {
                    "source": source,
                    "path": path,
                    "name": name,
                    "small": small,
                    "large": large,
                    "lines_per_s_small": a["lines_per_s"],
                    "lines_per_s_large": b["lines_per_s"],
                    # > 1: each line costs more at the large size (worse than linear).
                    "per_line_cost_growth_wall": (b["wall_s"] / large) / (a["wall_s"] / small),
                    "per_line_cost_growth_cpu": (b["cpu_s"] / large) / (a["cpu_s"] / small),
                    "peak_rss_small_bytes": a["peak_rss_bytes"],
                    "peak_rss_large_bytes": b["peak_rss_bytes"],
                    "peak_rss_growth": b["peak_rss_bytes"] / a["peak_rss_bytes"],
                }
            )
    return result


def targets(
    rows: list[dict[str, Any]],
    ratio_rows: list[dict[str, Any]],
    scale_rows: list[dict[str, Any]],
    window: dict[str, Any],
    sizes: list[int],
) -> list[dict[str, Any]]:
    """Issue 18's and issue 5's targets on each path (named `[native]` or `[polars]`), each
    with the measured figures (wall and CPU) and whether it is met."""
    result: list[dict[str, Any]] = []
    small, large = min(sizes), max(sizes)

    def speedup(source: str, size: int, peer: str, path: str) -> dict[str, Any] | None:
        for r in ratio_rows:
            if (r["source"], r["size"], r["ours"], r["peer"], r["path"]) == (
                source, size, "parse -> parquet", peer, path,
            ):  # fmt: skip
                return r
        return None

    def add(name: str, goal: float, wall: float | None, cpu: float | None, higher: bool) -> None:
        def ok(value: float | None) -> bool | None:
            if value is None:
                return None
            return value >= goal if higher else value <= goal

        result.append(
            {
                "target": name,
                "goal": goal,
                "wall": wall,
                "cpu": cpu,
                "met_wall": ok(wall),
                "met_cpu": ok(cpu),
            }
        )

    for path in paths_of(rows):
        on = f" [{path}]"
        # Issue 18: >= 7x both peers at 1M lines, >= 10x at 5M (the sizes measured).
        for size in sorted(set(sizes)):
            goal = TARGET_PEERS_5M if size >= 5_000_000 else TARGET_PEERS_1M
            for source in SOURCES:
                peer = PEERS[source][0]
                r = speedup(source, size, peer, path)
                add(
                    f"parse {source} {size:,} lines >= {goal:g}x {peer}{on}",
                    goal,
                    r and r["speedup_wall"],
                    r and r["speedup_cpu"],
                    True,
                )
        # Issue 5.
        checks = [
            ("postfix", small, TARGET_PFLOGSUMM_SMALL),
            ("postfix", large, TARGET_PFLOGSUMM_LARGE),
            ("exim", large, TARGET_EXIMSTATS_LARGE),
        ]
        for source, size, goal in checks:
            peer = PEERS[source][0]
            r = speedup(source, size, peer, path)
            name = f"parse {source} {size:,} lines >= {goal:g}x {peer}{on}"
            if not any(t["target"] == name for t in result):
                add(name, goal, r and r["speedup_wall"], r and r["speedup_cpu"], True)
        for source in SOURCES:
            for size in sorted(set(sizes)):
                r = speedup(source, size, "python loop, one regex", path)
                add(
                    f"parse {source} {size:,} lines faster than a Python loop with one regex{on}",
                    1.0,
                    r and r["speedup_wall"],
                    r and r["speedup_cpu"],
                    True,
                )
        for source in SOURCES:
            row = find(rows, "parse -> parquet", source, large, path)
            rss = row and row["peak_rss_bytes"] / TARGET_RSS_BYTES
            add(f"parse {source} {large:,} lines: peak RSS < 1 GiB (GiB){on}", 1.0, rss, rss, False)
        for s in scale_rows:
            if s["name"] == "parse -> parquet" and s["path"] == path:
                growth = s["peak_rss_growth"]
                add(
                    f"parse {s['source']}: peak RSS at {large:,} <= 1.2x at {small:,}{on}",
                    TARGET_RSS_GROWTH,
                    growth,
                    growth,
                    False,
                )
    add(
        "report 1d window: 60-day store within 1.5x of 1-day store",
        TARGET_WINDOW_RATIO,
        window.get("ratio_wall"),
        window.get("ratio_cpu"),
        False,
    )
    return result


# --------------------------------------------------------------------------------------------
# Output


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(results: dict[str, Any]) -> str:
    rows = results["runs"]
    peers_by = {
        (r["size"], r["source"], r["ours"], r["peer"], r["path"]): r for r in results["ratios"]
    }
    lines = [
        f"{'source':<8} {'lines':>9} {'command':<28} {'path':<6} {'wall s':>8} {'cpu s':>8} "
        f"{'lines/s':>10} {'MB/s':>7} {'RSS MiB':>8}  {'x peer (wall/cpu)':>17}"
    ]
    for row in rows:
        key = (row["size"], row["source"], row["name"], PEERS[row["source"]][0], row.get("path"))
        peer = peers_by.get(key)
        speed = "" if peer is None else f"{peer['speedup_wall']:.1f} / {peer['speedup_cpu']:.1f}"
        lines.append(
            f"{row['source']:<8} {row['size']:>9,} {row['name']:<28} {row.get('path') or '':<6} "
            f"{row['wall_s']:>8.2f} "
            f"{row['cpu_s']:>8.2f} {_num(row['lines_per_s'], ',.0f'):>10} "
            f"{_num(row['mb_per_s'], '.1f'):>7} {row['peak_rss_bytes'] / 2**20:>8.0f}  {speed:>17}"
        )
    lines.append("")
    lines.append("bounce-analyzer vs each peer (x faster; wall / cpu):")
    for r in results["ratios"]:
        lines.append(
            f"  {r['source']:<8} {r['size']:>9,} {r['ours']:<17} [{r['path']}] vs {r['peer']:<10} "
            f"{r['speedup_wall']:7.3g} / {r['speedup_cpu']:.3g}"
        )
    window = results["window"]
    if window:
        lines.append("")
        lines.append(f"report --since {window['since']} --until {window['until']} (last day):")
        for days in (1, 60):
            w = window[f"store_{days}d"]
            lines.append(
                f"  store of {days:>2} day(s): {w['wall_s']:.2f} s wall, {w['cpu_s']:.2f} s cpu, "
                f"{w['peak_rss_bytes'] / 2**20:.0f} MiB"
            )
        lines.append(
            f"  60-day / 1-day: {window['ratio_wall']:.2f}x wall, {window['ratio_cpu']:.2f}x cpu"
        )
    if results["scaling"]:
        lines.append("")
        lines.append("scaling (largest size vs smallest; per-line cost growth > 1 is superlinear):")
        for s in results["scaling"]:
            lines.append(
                f"  {s['source']:<8} {s['name']:<17} [{s['path']}] per-line cost "
                f"{s['per_line_cost_growth_wall']:.2f}x wall, "
                f"{s['per_line_cost_growth_cpu']:.2f}x cpu; peak RSS {s['peak_rss_growth']:.2f}x"
            )
    lines.append("")
    lines.append("targets (wall / cpu):")
    for t in results["targets"]:

        def verdict(met: bool | None, value: float | None) -> str:
            if met is None:
                return "n/a"
            return f"{value:.2f} {'met' if met else 'NOT met'}"

        lines.append(
            f"  {t['target']}: {verdict(t['met_wall'], t['wall'])} / "
            f"{verdict(t['met_cpu'], t['cpu'])}"
        )
    for note in results["skipped"]:
        lines.append(f"skipped: {note}")
    for path, said in results.get("paths", {}).items():
        lines.append(f"path {path}: {said}")
    return "\n".join(lines)


def finish(results: dict[str, Any], sizes: list[int], json_path: Path) -> None:
    """Derive the ratios, scaling and targets from the runs so far, and write the JSON."""
    results["load_average_end"] = list(os.getloadavg())
    results["ratios"] = ratios(results["runs"], sizes)
    results["scaling"] = scaling(results["runs"], sizes)
    results["targets"] = targets(
        results["runs"], results["ratios"], results["scaling"], results["window"], sizes
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,5000000", help="log sizes in lines")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (median)")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=HERE / "out", help="work folder")
    parser.add_argument("--json", type=Path, help="results file (default: OUT/results.json)")
    parser.add_argument(
        "--day-lines", type=int, default=50_000, help="lines per day in the 1- and 60-day stores"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated logs and stores")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 run, no peers")
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help="parser paths our commands run on, side by side (default native,polars)",
    )
    args = parser.parse_args(argv)
    paths = list(dict.fromkeys(p.strip() for p in args.paths.split(",") if p.strip()))
    if not paths or set(paths) - set(PATHS):
        parser.error(f"--paths takes one or more of {', '.join(PATHS)}")
    if args.smoke:
        sizes, repeat, peers, day_lines = list(SMOKE_SIZES), 1, False, SMOKE_DAY_LINES
    else:
        sizes = sorted(int(s) for s in args.sizes.split(","))
        repeat, peers, day_lines = args.repeat, args.peers, args.day_lines
    if repeat < 1 or not sizes or min(sizes) < 1 or day_lines < 1:
        parser.error("--repeat, --sizes and --day-lines must be positive")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    json_path: Path = args.json or out / "results.json"

    # The generated data ends an hour before now, so `--since 7d` and the one-day window
    # (given as absolute times) both fall on real data however long the run takes.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    found = install_peers(peers)
    skipped = []
    if not peers:
        skipped.append("peers (--no-peers)" if not args.smoke else "peers (--smoke)")
    else:
        skipped += [f"{PEERS[s][0]}: not installed" for s, path in found.items() if path is None]
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "sizes": sizes,
            "repeat": repeat,
            "peers": peers,
            "seed": SEED,
            "day_lines": day_lines,
            "smoke": args.smoke,
            "data_end": end.isoformat(),
            "paths": paths,
        },
        # What `--version` says each path runs: "native" is the polars path where no C
        # extension is built.
        "paths": describe_paths(paths),
        "complete": False,
        "skipped": skipped,
        "runs": [],
        "window": {},
    }
    try:
        for size in sizes:
            for source in SOURCES:
                start = end - timedelta(days=1)
                results["runs"] += bench_size(
                    size, source, out, repeat, found[source], start, tuple(paths)
                )
                # Written after every block, so an interrupted run keeps what it measured.
                finish(results, sizes, json_path)
        results["window"] = bench_window(out, repeat, day_lines, end)
        results["complete"] = True
    finally:
        if not args.keep:
            for path in created_paths(out, sizes):
                remove(path)
    finish(results, sizes, json_path)
    print(table(results))
    log(f"results written to {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
