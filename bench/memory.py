#!/usr/bin/env python3
"""Peak memory of bounce-analyzer on the inputs that used to exhaust it (issue 12).

Builds each input in a work folder, runs the CLI on it under GNU time (`/usr/bin/time -v`,
installed from Debian's package `time` when missing) and prints the peak RSS of the run, its
wall time, its exit code and whether it stayed under 1 GiB:

- `long-line`: a plain file of one line of 1 GiB with no newline, then a Postfix line
  (`parse --source postfix`): the line is set aside, the next is read;
- `zstd-bomb`: 6 GiB of NUL bytes in a zstd file of a few hundred KB, then a Postfix line;
- `pretty-array`: a pretty-printed SendGrid array of 1M events (about 340 MB), ingested;
- `open-queue-ids`: a Postfix log of 1.2M queue ids that never finish, each with a 600-byte
  sender (`from=<...>`), ingested;
- `export`: `export` of 2M events (as Parquet, then as CSV) from a store of 2M events.

Not run in CI (several minutes, several GB of disk); `--smoke` runs every case at a
thousandth of its size in seconds (tests/test_bench_memory_smoke.py runs it).

    python bench/memory.py                       # all cases at full size
    python bench/memory.py --cases long-line,zstd-bomb --json /tmp/memory.json
    python bench/memory.py --smoke

Standard library only, plus the project (run as `python -m bounce_analyzer` with this
script's interpreter) and `zstandard`, which the project depends on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

HERE = Path(__file__).resolve().parent
LIMIT_KB = 1024 * 1024  # 1 GiB
GNU_TIME = "/usr/bin/time"

#: A Postfix bounce line (its year comes from the file's date).
BOUNCED = (
    "Nov 27 10:00:01 mx1 postfix/smtp[2]: 3F2A1B2C3D: to=<a@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, "
    "status=bounced (host mx.example.com[192.0.2.1] said: 550 5.1.1 User unknown "
    "(in reply to RCPT TO command))\n"
)
#: The file dates of the generated logs: long before any run (so the files count as complete).
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


@dataclass
class Result:
    case: str
    command: str
    peak_rss_mb: float
    wall_s: float
    exit_code: int
    under_1_gib: bool
    stderr_tail: str


@dataclass
class Sizes:
    long_line: int = 1 << 30
    bomb: int = 6 << 30
    array_events: int = 1_000_000
    queue_ids: int = 1_200_000
    export_events: int = 2_000_000

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(1 << 21, 6 << 20, 1000, 1200, 2000)


def _ensure_gnu_time() -> None:
    if Path(GNU_TIME).exists():
        return
    print("installing GNU time (apt-get install -y time)", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "time"], check=True, capture_output=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bounce_analyzer", *args]


def _measure(case: str, command: list[str], cwd: Path) -> Result:
    """Run `command` under `/usr/bin/time -v`: its peak RSS, wall time and exit code."""
    report = cwd / f"{case}.time"
    started = time.monotonic()
    done = subprocess.run(
        [GNU_TIME, "-v", "-o", str(report), *command],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BOUNCE_ANALYZER_STORE": str(cwd / "store")},
    )
    wall = time.monotonic() - started
    text = report.read_text()
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)[1])  # type: ignore[index]
    code = re.search(r"Exit status: (\d+)", text)
    return Result(
        case=case,
        command=" ".join(command[2:]),
        peak_rss_mb=round(peak / 1024, 1),
        wall_s=round(wall, 1),
        exit_code=int(code[1]) if code else done.returncode,
        under_1_gib=peak < LIMIT_KB,
        stderr_tail=done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "",
    )


def _dated(path: Path) -> Path:
    os.utime(path, (MTIME, MTIME))
    return path


# --- the inputs ----------------------------------------------------------------------------


def _fill(out: BinaryIO, byte: bytes, size: int) -> None:
    """Write `size` copies of `byte`, then a newline and a Postfix bounce line."""
    block = byte * (1 << 24)
    for start in range(0, size, len(block)):
        out.write(block[: min(len(block), size - start)])
    out.write(b"\n" + BOUNCED.encode())


def long_line(folder: Path, sizes: Sizes) -> list[str]:
    path = folder / "long-line.log"
    with path.open("wb") as out:
        _fill(out, b"x", sizes.long_line)
    _dated(path)
    return _cli("parse", "--source", "postfix", "--tz", "UTC", "-o", "long-line.jsonl", path.name)


def zstd_bomb(folder: Path, sizes: Sizes) -> list[str]:
    import zstandard

    path = folder / "bomb.log.zst"
    with path.open("wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out:
        _fill(out, b"\x00", sizes.bomb)  # type: ignore[arg-type]
    _dated(path)
    return _cli("parse", "--source", "postfix", "--tz", "UTC", "-o", "bomb.jsonl", path.name)


def pretty_array(folder: Path, sizes: Sizes) -> list[str]:
    path = folder / "sendgrid.json"
    start = int((datetime.now(UTC) - timedelta(days=1)).timestamp())
    kinds = ("bounce", "delivered", "deferred", "open")
    with path.open("w") as out:
        out.write("[\n")
        for n in range(sizes.array_events):
            event = {
                "email": f"user{n}@example.com",
                "event": kinds[n % 4],
                "timestamp": start + n % 80_000,
                "smtp-id": f"<{n}@ismtpd-1>",
                "sg_event_id": f"ev{n:012d}",
                "sg_message_id": f"msg{n}.filter0001",
                "reason": "550 5.1.1 The email account that you tried to reach does not exist",
                "status": "5.1.1",
                "ip": "192.0.2.1",
            }
            text = json.dumps(event, indent=2).replace("\n", "\n  ")
            out.write("  " + text + (",\n" if n < sizes.array_events - 1 else "\n"))
        out.write("]")
    _dated(path)
    return _cli("ingest", "--quiet", "--store", "array-store", path.name)


def open_queue_ids(folder: Path, sizes: Sizes) -> list[str]:
    path = folder / "open-ids.log"
    sender = "s" * 580 + "@example.org"
    with path.open("w") as out:
        for n in range(sizes.queue_ids):
            # ...qmgr[2]: 1A2B3C4D5E: from=<...>, size=1200, nrcpt=1 (queue active)
            out.write(
                f"Nov 27 10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d} mx1 postfix/qmgr[2]: "
                f"{n:010X}: from=<{sender}>, size=1200, nrcpt=1 (queue active)\n"
            )
        out.write(BOUNCED)
    _dated(path)
    return _cli("ingest", "--quiet", "--tz", "UTC", "--store", "ids-store", path.name)


def export(folder: Path, sizes: Sizes) -> list[str]:
    """A store of `export_events` events (ingested from NDJSON, not measured), then export."""
    path = folder / "export-events.ndjson"
    start = int((datetime.now(UTC) - timedelta(days=5)).timestamp())
    with path.open("w") as out:
        for n in range(sizes.export_events):
            event = {
                "email": f"user{n % 50_000}@example{n % 97}.com",
                "event": "bounce" if n % 3 else "delivered",
                "timestamp": start + n % 400_000,
                "sg_event_id": f"ex{n:012d}",
                "reason": f"550 5.1.1 <user{n}@example.com>: Recipient address rejected",
                "status": "5.1.1",
            }
            out.write(json.dumps(event) + "\n")
    _dated(path)
    subprocess.run(
        _cli("ingest", "--quiet", "--store", "export-store", path.name),
        cwd=folder,
        check=True,
        capture_output=True,
    )
    path.unlink()
    return _cli("export", "--store", "export-store", "--since", "30d", "-o", "export.parquet")


CASES: dict[str, Callable[[Path, Sizes], list[str]]] = {
    "long-line": long_line,
    "zstd-bomb": zstd_bomb,
    "pretty-array": pretty_array,
    "open-queue-ids": open_queue_ids,
    "export": export,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated")
    parser.add_argument("--smoke", action="store_true", help="every case at 1/1000 size")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "memory")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the inputs and stores")
    args = parser.parse_args(argv)
    names = [name for name in args.cases.split(",") if name]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}; choose from {', '.join(CASES)}")
    sizes = Sizes.smoke() if args.smoke else Sizes()
    _ensure_gnu_time()
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    for name in names:
        folder = args.out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"{name}: building the input ...", file=sys.stderr, flush=True)
        command = CASES[name](folder, sizes)
        print(f"{name}: {' '.join(command[2:])}", file=sys.stderr, flush=True)
        results.append(_measure(name, command, folder))
        if name == "export":
            csv = [*command[:-1], "export.csv"]
            results.append(_measure("export-csv", csv, folder))
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{'case':<16} {'peak RSS':>10} {'wall':>8} {'exit':>5}  under 1 GiB")
    for result in results:
        print(
            f"{result.case:<16} {result.peak_rss_mb:>7.0f} MB {result.wall_s:>6.1f} s "
            f"{result.exit_code:>5}  {'yes' if result.under_1_gib else 'NO'}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.under_1_gib and r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
