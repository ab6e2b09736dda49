#!/usr/bin/env python3
"""How fast `bounce-analyzer explain -` classifies many messages, next to Sisimai's `match`
(issue 14: at least 10x as fast on 100k messages).

Builds a seeded file of bounce messages, one a line, as a mail operator would feed them:

- the diagnostics of the failures (every event but deliveries) in a generated Postfix and a
  generated Exim log (`python -m bounce_analyzer.generate`, parsed with the project's
  `parse`): the texts real servers return, with their own addresses, IPs and queue ids;
- the labelled texts of tests/data/diagnostics/*.tsv as git commit `--labels-at` holds them
  (default `LABELS_AT`, not the checkout's files, which grow from stop to stop: the input,
  and the ratio, would move with them) and, when it is there, of the shared corpus
  (`../shared/corpus/classification/patterns.tsv`), each written as Postfix or Exim
  would log it (`host mx7.example.net[198.51.100.23] said: ... (in reply to RCPT TO
  command)`, `SMTP error from remote mail server after RCPT TO:<...>: ...`) or bare, with
  addresses, host names and IPs drawn anew for each line, so that distinct texts are many,
  as in real logs.

Half come from each kind. The sha256 of the file is printed and written with the figures (a
stop compares with another only where the two agree); `--messages-file` times a file written
before instead. Then it times, `--repeat` times, on the same file:

- `bounce-analyzer explain - < FILE > OUT`: the installed console script beside this
  script's interpreter, start-up included;
- `perl -MSisimai -ne 'chomp; print Sisimai->match($_), "\\n"' < FILE > OUT`: one perl
  process for all messages, so Sisimai's start-up also counts once.

Before timing, it writes the bytecode of the package's modules (`python -m compileall`), as
installing a wheel does: an editable install under PYTHONDONTWRITEBYTECODE has none and would
compile each module at every start. One untimed run of each command comes first: it brings the
input and the programs into the page cache and fills bounce-analyzer's cache of the loaded
rules (cache.py), as any earlier start on the machine would; that cache is a folder of the
run's own (`OUT/cache`), which no other checkout's program, run meanwhile, replaces. It
prints the median wall-clock and CPU time (user + sys) of each, the ratio (Sisimai's time /
ours: > 1 means ours is faster) and the load average, and writes the same as JSON. Sisimai
is not a dependency of the project; install it for the measurement with `apt-get install -y
libsisimai-perl` (Debian's package). When perl cannot load it, the script prints one line
(`SKIPPED sisimai: ...`) and times bounce-analyzer alone.

    python bench/explain_speed.py                      # 100k messages, 3 runs each
    python bench/explain_speed.py --messages 200000 --repeat 5 --json /tmp/speed.json
    python bench/explain_speed.py --smoke              # 2,000 messages, 1 run: seconds
    python bench/explain_speed.py --messages-file OLD/messages.txt   # the same input again

Standard library only, plus the project and polars (which it depends on).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parents[1]
#: Where the labelled rows are, in the repository.
LABELLED = "tests/data/diagnostics"
#: The commit whose labelled rows the messages draw on (main at 6ccc128, 2026-12-08: 2,033
#: rows in 7 files). Pinned so that the input of one stop is the input of the next.
LABELS_AT = "6ccc128"
#: The shared corpus lies beside the repository (a worktree may sit one folder deeper).
SHARED = next(
    (
        found
        for found in (
            base / "shared" / "corpus" / "classification" / "patterns.tsv"
            for base in (REPO.parent, REPO.parent.parent)
        )
        if found.exists()
    ),
    None,
)
#: Where a labelled text goes in a logged line: as Postfix and Exim write a remote reply.
FRAMES = (
    "{text}",
    "host {host}[{ip}] said: {text} (in reply to RCPT TO command)",
    "host {host}[{ip}] said: {text} (in reply to end of DATA command)",
    "SMTP error from remote mail server after RCPT TO:<{address}>: {text}",
    "<{address}>: host {host}[{ip}] said: {text}",
)
SISIMAI = ["perl", "-MSisimai", "-ne", 'chomp; print Sisimai->match($_), "\\n"']


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def console_script() -> str:
    """The installed `bounce-analyzer` beside this interpreter (a venv's bin/)."""
    beside = Path(sys.executable).parent / "bounce-analyzer"
    if not beside.exists():
        raise SystemExit(f"no {beside}: install the project in this interpreter's environment")
    return str(beside)


def compile_package() -> None:
    """Write the bytecode of the installed package's modules, as installing a wheel does.

    An editable install run under PYTHONDONTWRITEBYTECODE (or from a read-only checkout)
    has none, and then compiles every module from source at each start: 0.1 s of CPU that
    an installed bounce-analyzer does not spend.
    """
    # best effort: where the folder cannot be written (a read-only install), the modules
    # are compiled at each start, as before
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package_dir())],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )


def package_dir() -> Path:
    """The folder of the `bounce_analyzer` package the console script imports (the console
    script runs this interpreter)."""
    spec = importlib.util.find_spec("bounce_analyzer")
    if spec is None or spec.origin is None:
        raise SystemExit("bounce_analyzer is not installed in this interpreter's environment")
    return Path(spec.origin).parent


def logged_failures(work: Path, lines: int, seed: int) -> list[str]:
    """The failure diagnostics of a generated Postfix and Exim log of `lines` lines each."""
    texts: list[str] = []
    for number, source in enumerate(("postfix", "exim")):
        log_path, events = work / f"{source}.log", work / f"{source}.parquet"
        generate = [sys.executable, "-m", "bounce_analyzer.generate", source]
        subprocess.run(
            [*generate, "--lines", str(lines), "--seed", str(seed + number), "-o", str(log_path)],
            check=True,
        )
        subprocess.run(
            [console_script(), "parse", str(log_path), "--tz", "UTC", "-o", str(events)],
            check=True,
            capture_output=True,
        )
        texts += (
            pl.read_parquet(events, columns=["event", "diagnostic"])
            .filter((pl.col("event") != "delivered") & pl.col("diagnostic").is_not_null())
            .get_column("diagnostic")
            .to_list()
        )
    return texts


def labelled_files(at: str) -> list[bytes]:
    """The labelled files (`LABELLED`/*.tsv) as git commit `at` of this repository holds them,
    in name order."""

    def git(*arguments: str) -> bytes:
        done = subprocess.run(["git", "-C", str(REPO), *arguments], capture_output=True)
        if done.returncode != 0:
            raise SystemExit(
                f"cannot read the labelled rows at {at} (--labels-at): "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout

    names = sorted(git("ls-tree", "--name-only", f"{at}:{LABELLED}").decode().split())
    return [git("show", f"{at}:{LABELLED}/{name}") for name in names if name.endswith(".tsv")]


def labelled_texts(at: str) -> list[str]:
    """The diagnostics of the repository's labelled rows at commit `at` and of the shared
    corpus."""
    files: list[bytes | Path] = [*labelled_files(at), *([SHARED] if SHARED is not None else [])]
    texts: list[str] = []
    for file in files:
        rows = pl.read_csv(
            io.BytesIO(file) if isinstance(file, bytes) else file,
            separator="\t",
            quote_char=None,
            infer_schema=False,
            columns=["diagnostic"],
        )
        texts += rows.get_column("diagnostic").drop_nulls().to_list()
    return [" ".join(text.split()) for text in texts if text.strip()]


def framed(text: str, draw: random.Random) -> str:
    """`text` as a log would hold it, with its own address, host and IP."""
    user = f"{draw.choice(('anna', 'bob', 'info', 'j.doe', 'sales'))}{draw.randrange(10_000)}"
    domain = f"{draw.choice(('example', 'mail', 'corp', 'shop'))}{draw.randrange(500)}.example"
    values = {
        "text": text,
        "address": f"{user}@{domain}",
        "host": f"mx{draw.randrange(1, 9)}.{domain}",
        "ip": f"198.51.{draw.randrange(256)}.{draw.randrange(1, 255)}",
    }
    return draw.choice(FRAMES).format(**values)


def build_messages(
    path: Path, count: int, seed: int, log_lines: int, labels_at: str
) -> dict[str, Any]:
    """Write `count` messages to `path`, one a line; return what they hold."""
    draw = random.Random(seed)
    labelled = labelled_texts(labels_at)
    with tempfile.TemporaryDirectory(prefix="explain-speed-") as work:
        logged = logged_failures(Path(work), log_lines, seed)
    half = count // 2
    messages = [draw.choice(logged) for _ in range(half)]
    messages += [framed(draw.choice(labelled), draw) for _ in range(count - half)]
    draw.shuffle(messages)
    # one message a line: a text that holds a line break would be two inputs
    messages = [" ".join(message.split()) or "-" for message in messages]
    path.write_text("\n".join(messages) + "\n", encoding="utf-8")
    return {
        **described(path),
        "logged_pool": len(logged),
        "labelled_pool": len(labelled),
        "labels_at": labels_at,
    }


def described(path: Path) -> dict[str, Any]:
    """What the messages file `path` holds, and its sha256 (which names the input)."""
    data = path.read_bytes()
    messages = data.decode("utf-8").splitlines()
    return {
        "messages": len(messages),
        "distinct": len(set(messages)),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def run_once(
    command: list[str], source: Path, out: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Run `command` with `source` as stdin and `out` as stdout (and the environment `env`, or
    this one); (wall s, user+sys s)."""
    with source.open("rb") as stdin, out.open("wb") as stdout:
        started = time.perf_counter()
        child = subprocess.Popen(
            command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env
        )
        assert child.stderr is not None
        errors = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        tail = errors.decode(errors="replace").strip()[-2000:]
        raise SystemExit(f"failed: {' '.join(command)}\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(
    name: str,
    command: list[str],
    source: Path,
    out: Path,
    repeat: int,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Time `command` `repeat` times, after one run that is not timed; its medians and every
    run."""
    # the untimed run brings the input, the program and its libraries into the page cache,
    # and fills the rules cache (bounce-analyzer's cache.py)
    run_once(command, source, out, env)
    walls, cpus = [], []
    for run in range(repeat):
        wall, cpu = run_once(command, source, out, env)
        walls.append(wall)
        cpus.append(cpu)
        log(f"  {name:<16} run {run + 1}/{repeat}: {wall:7.2f} s wall, {cpu:7.2f} s cpu")
    with out.open("rb") as answers:
        lines = sum(1 for _ in answers)
    return {
        "name": name,
        "command": command,
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "wall_s_all": walls,
        "cpu_s_all": cpus,
        "output_lines": lines,
    }


def sisimai_missing() -> str | None:
    """Why Sisimai cannot run here, or None when it can."""
    try:
        done = subprocess.run(
            ["perl", "-MSisimai", "-e", "print $Sisimai::VERSION"],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        return "no perl on this machine"
    if done.returncode != 0:
        return "perl cannot load Sisimai (install it: apt-get install -y libsisimai-perl)"
    return None


def sisimai_version() -> str | None:
    done = subprocess.run(
        ["perl", "-MSisimai", "-e", "print Sisimai->version"], capture_output=True, text=True
    )
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages to explain")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (median)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--log-lines", type=int, default=500_000, help="lines of each generated log"
    )
    parser.add_argument(
        "--labels-at", default=LABELS_AT, help="the git commit whose labelled rows are drawn on"
    )
    parser.add_argument(
        "--messages-file", type=Path, help="time this messages file (one a line) instead"
    )
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="results file (default: OUT/results.json)")
    parser.add_argument("--no-sisimai", action="store_true", help="time bounce-analyzer only")
    parser.add_argument(
        "--smoke", action="store_true", help="2,000 messages, 1 run: a check, not a figure"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.messages, args.repeat, args.log_lines = 2_000, 1, 20_000
    with tempfile.TemporaryDirectory(prefix="explain-speed-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        return run(args, out, args.json or out / "results.json")


def run(args: argparse.Namespace, out: Path, json_path: Path) -> int:
    if args.messages_file is not None:
        messages = args.messages_file
        built = described(messages)
    else:
        messages = out / "messages.txt"
        log(f"building {args.messages:,} messages (seed {args.seed}, labels at {args.labels_at})")
        built = build_messages(messages, args.messages, args.seed, args.log_lines, args.labels_at)
    ours = [console_script(), "explain", "-"]
    compile_package()
    results: dict[str, Any] = {
        "settings": {**vars(args), "out": str(out)},
        "input": built,
        "load_average_start": os.getloadavg(),
    }
    results["settings"]["json"] = str(json_path)
    # a cache folder of the run's own: the untimed run fills it, and no other program run
    # meanwhile (another checkout's, with other rules) replaces what it holds
    cached = {**os.environ, "BOUNCE_ANALYZER_CACHE": str(out / "cache")}
    runs = [measure("bounce-analyzer", ours, messages, out / "explain.ndjson", args.repeat, cached)]
    skipped = "--no-sisimai" if args.no_sisimai else sisimai_missing()
    if skipped is None:
        results["sisimai_version"] = sisimai_version()
        runs.append(measure("sisimai match", SISIMAI, messages, out / "sisimai.txt", args.repeat))
    else:
        print(f"SKIPPED sisimai: {skipped}")
    results["runs"] = runs
    results["skipped"] = skipped
    ratio = None
    if len(runs) == 2:
        ratio = {
            "wall": round(runs[1]["wall_s"] / runs[0]["wall_s"], 2),
            "cpu": round(runs[1]["cpu_s"] / runs[0]["cpu_s"], 2),
        }
    results["ratio"] = ratio
    results["load_average_end"] = os.getloadavg()
    print(
        f"input {built['messages']:,} messages ({built['distinct']:,} distinct, "
        f"{built['bytes'] / 1e6:.1f} MB, sha256 {built['sha256'][:16]})"
    )
    for measured in runs:
        print(
            f"{measured['name']:<16} {measured['wall_s']:8.2f} s wall "
            f"{measured['cpu_s']:8.2f} s cpu  ({measured['output_lines']:,} answers)"
        )
    start, end = results["load_average_start"], results["load_average_end"]
    print(f"load average (1 min): {start[0]:.1f} at the start, {end[0]:.1f} at the end")
    if ratio is not None:
        print(f"ratio (sisimai / bounce-analyzer): {ratio['wall']}x wall, {ratio['cpu']}x cpu")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
