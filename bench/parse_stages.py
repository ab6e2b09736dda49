#!/usr/bin/env python3
"""Where `parse LOG -o x.parquet` spends its CPU, stage by stage, and who waits for whom
(issue 18).

Runs the pipeline in this process as `parse` does (`ParseRun`, the Parquet `EventWriter`),
with timers put around its stages:

- each thread `stages.ahead` starts (reading a compressed input, the sources' stages, the
  pipeline's, classification) is a stage named after its iterator: the CPU of that thread
  (`time.thread_time`), and how long its consumer waited for its items;
- each stage `stages.ahead_map` runs on several threads (Exim's cut of a batch, the
  pipeline's conform of a source's output) is named after its function: the CPU of its
  calls, and how long its consumer waited; what its threads spend advancing the items (the
  stage before it, reading a plain file's batch, a source's stateful part) is the stage of
  its items, named after their iterator;
- classification and the Parquet write, around their calls (CPU of the calling thread);
- the threads the process did not start in Python, by their name (Linux: /proc/self/task):
  polars' pool (`polars-N`), which runs the expressions of every stage (a `select` or
  `with_columns` evaluates its expressions there, in parallel), and jemalloc's background
  threads; pyarrow's Parquet writer runs in its caller's thread;
- what is left: the main thread's waits and Python's bookkeeping;
- the start of the console script itself, `bounce-analyzer parse` of a one-line log
  (interpreter, command line, imports, rules), as a child process.

    python bench/parse_stages.py LOG [--tz UTC] [--json stages.json]

Standard library and the project only; run it from the environment the project is in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LINE = (
    "Nov 28 10:00:03 mx postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=none, "
    "delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (unknown user)\n"
)


def start_up(tz: str) -> dict[str, float]:
    """CPU and wall of the console script's `parse` of a one-line log (a child process)."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "one.log"
        log.write_text(LINE)
        command = [sys.executable, "-m", "bounce_analyzer", "parse", str(log), "--tz", tz, "-q"]
        command += ["-o", str(Path(folder) / "one.parquet")]
        began = time.perf_counter()
        child = subprocess.Popen(command)
        _, status, usage = os.wait4(child.pid, 0)
        if status:
            raise SystemExit(f"{' '.join(command)} failed")
        return {"cpu": usage.ru_utime + usage.ru_stime, "wall": time.perf_counter() - began}


def native_threads() -> dict[str, float]:
    """CPU seconds so far of the process's threads not started by Python, by name without its
    number (`polars-0` and `polars-1` are `polars`), from /proc/self/task (Linux only; else
    nothing)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    seconds: dict[str, float] = defaultdict(float)
    try:
        tasks = os.listdir("/proc/self/task")
        ours = Path("/proc/self/comm").read_text().strip()  # (Python's threads are named so)
    except OSError:
        return {}
    for task in tasks:
        try:
            stat = Path(f"/proc/self/task/{task}/stat").read_text()
        except OSError:
            continue  # (it ended meanwhile)
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name == ours:
            continue
        name = name.rstrip("0123456789").rstrip("-_")
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds[name] += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return dict(seconds)


def profile(log: str, tz: str) -> dict[str, Any]:
    """The stages of `parse` over `log`: CPU and waits (seconds), as the module says."""
    import polars as pl

    from bounce_analyzer import classify, pipeline, schema, stages, writers
    from bounce_analyzer.rules import load_rules

    cpu: dict[str, float] = defaultdict(float)
    waits: dict[str, float] = defaultdict(float)
    lock = threading.Lock()
    original = stages.ahead

    def waited(handed: Iterator[Any], name: str) -> Iterator[Any]:
        """`handed`, the time its consumer waits for each item counted as `name`'s."""
        while True:
            began = time.perf_counter()
            try:
                item = next(handed)
            except StopIteration:
                return
            finally:
                with lock:
                    waits[name] += time.perf_counter() - began
            yield item

    def ahead(items: Iterator[Any], *, depth: int = 1) -> Iterator[Any]:
        code = getattr(items, "gi_code", None)
        name = f"thread {getattr(code, 'co_qualname', type(items).__name__)}"

        def counted() -> Iterator[Any]:
            began = time.thread_time()
            try:
                yield from items
            finally:
                with lock:
                    cpu[name] += time.thread_time() - began

        return waited(original(counted(), depth=depth), name)

    original_map = getattr(stages, "ahead_map", None)  # (None: code from before it, to compare)

    def ahead_map(
        function: Callable[[Any], Any], items: Iterator[Any], *, workers: int = 2, depth: int = 0
    ) -> Iterator[Any]:
        assert original_map is not None
        if getattr(function, "__module__", None) == stages.__name__:  # (`ahead`'s: timed so)
            return original_map(function, items, workers=workers, depth=depth)
        named = getattr(function, "func", function)  # (a `functools.partial`: its function)
        name = f"threads {getattr(named, '__qualname__', 'map')} ({workers} at once)"
        code = getattr(items, "gi_code", None)
        source = f"its items: {getattr(code, 'co_qualname', type(items).__name__)}"

        def advanced() -> Iterator[Any]:  # (the threads take turns: CPU of each turn)
            iterator, end = iter(items), object()
            while (item := timed(next, source)(iterator, end)) is not end:
                yield item

        return waited(original_map(timed(function, name), advanced(), workers=workers), name)

    def timed(function: Callable[..., Any], name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    cpu[name] += time.thread_time() - began

        return call

    for module in list(sys.modules.values()):  # every module that runs a stage ahead
        if getattr(module, "__name__", "").startswith("bounce_analyzer"):
            if getattr(module, "ahead", None) is original:
                module.ahead = ahead  # type: ignore[attr-defined]
            # (`stages` too: the sources, imported later, take theirs from it)
            if getattr(module, "ahead_map", 0) is original_map:
                module.ahead_map = ahead_map  # type: ignore[attr-defined]
    classify.classify = timed(classify.classify, "classification (calls)")
    write = writers.EventWriter.write
    writers.EventWriter.write = timed(write, "Parquet write (calls)")  # type: ignore[method-assign]

    rules = load_rules()
    before = native_threads()
    began_cpu, began = time.process_time(), time.perf_counter()
    run = pipeline.ParseRun([log], tz=tz, rules=rules)
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "x.parquet", "wb") as out:
        writer = writers.EventWriter(out, writers.EventFormat.parquet)
        for chunk in run:
            writer.write(chunk.events)
        writer.close(empty=pl.DataFrame(schema=schema.EVENT_SCHEMA))
    total = time.process_time() - began_cpu
    wall = time.perf_counter() - began
    native = {
        f"{name} threads": spent
        for name, seconds in native_threads().items()
        if (spent := seconds - before.get(name, 0.0)) >= 0.005
    }
    threads = sum(
        seconds for name, seconds in cpu.items() if name.startswith(("thread", "its items"))
    )
    return {
        "run": {"cpu": total, "wall": wall},
        "cpu": dict(cpu),
        "waits": dict(waits),
        "native threads": native,
        "other threads": total - threads - cpu["Parquet write (calls)"] - sum(native.values()),
        "events": sum(summary.events for summary in run.summaries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="a log file (e.g. from `python -m bounce_analyzer.generate`)")
    parser.add_argument("--tz", default="UTC")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    figures = {"start-up": start_up(args.tz), **profile(args.log, args.tz)}
    print(f"{args.log}: {figures['events']:,} events")
    print(
        f"{'start-up (bounce-analyzer parse of one line)':48s} {figures['start-up']['cpu']:6.2f} s"
    )
    run = figures["run"]
    print(f"{'the run (process CPU; wall)':48s} {run['cpu']:6.2f} s {run['wall']:6.2f} s wall")
    for name, seconds in sorted(figures["cpu"].items(), key=lambda item: -item[1]):
        waited = figures["waits"].get(name)
        also = f"   its consumer waited {waited:5.2f} s" if waited is not None else ""
        print(f"  {name:46s} {seconds:6.2f} s{also}")
    for name, seconds in sorted(figures["native threads"].items(), key=lambda item: -item[1]):
        label = f"{name} (every stage's expressions)" if name == "polars threads" else name
        print(f"  {label:46s} {seconds:6.2f} s")
    print(f"  {'the rest (main thread, waits, Python)':46s} {figures['other threads']:6.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
