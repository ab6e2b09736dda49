"""Load on `bounce-analyzer serve` over loopback: signed SendGrid batches, many connections.

Starts the server (the project's own command, with a SendGrid key made here, so every request
is verified), then for `--seconds` posts batches of `--batch` events (each event with its own
`sg_event_id`, each body signed with a fresh timestamp) from `--connections` concurrent
connections of one asyncio client (aiohttp: httpx, which the tests use, costs the client
about fifteen times the CPU per request, and the client shares the cores), and reports
events/s, requests/s and the latency percentiles of the acknowledged requests. The spool is
synced before each answer, as always; the server's /metrics tell how many syncs served how
many requests (the group commit). The client shares the machine's cores with the server, and
the CPU each spends per batch is reported apart: the events/s are a floor.

    python bench/serve_load.py                       # 20 s, 50 connections, 100 events a batch
    python bench/serve_load.py --smoke               # 2 s, 8 connections (the CI smoke test)
    python bench/serve_load.py --seconds 60 --json /tmp/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _serve import Signer, start_server  # noqa: E402  (the tests' signing helpers)

EVENT = (
    '{"email":"user%(n)d@example.net","event":"bounce","timestamp":1764547200,'
    '"smtp-id":"<%(run)s.%(n)d@mta.example.com>","sg_event_id":"%(run)s-%(n)d",'
    '"sg_message_id":"%(run)s.filterdrecv-%(n)d","reason":"550 5.1.1 The email account that '
    "you tried to reach does not exist. Please try double-checking the recipient's email "
    'address for typos or unnecessary spaces.","status":"5.1.1","type":"bounce",'
    '"bounce_classification":"Invalid Address","ip":"192.0.2.10","category":["newsletter"]}'
)


def body(run: str, first: int, size: int) -> bytes:
    """A SendGrid batch of `size` events, numbered from `first`."""
    return (
        "[" + ",".join(EVENT % {"run": run, "n": n} for n in range(first, first + size)) + "]"
    ).encode()


async def load(
    url: str, signer: Signer, *, seconds: float, connections: int, batch: int
) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = 0
    run = f"load{int(time.time())}"
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                first = counter
                counter += batch
                payload = body(run, first, batch)
                headers = signer.sendgrid_headers(payload)
                started = time.perf_counter()
                async with client.post(url, data=payload, headers=headers) as answer:
                    await answer.read()
                elapsed = time.perf_counter() - started
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
                if answer.status == 200:
                    latencies.append(elapsed)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        wall = time.perf_counter() - began
    latencies.sort()

    def quantile(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    accepted = statuses.get(200, 0)
    return {
        "seconds": round(wall, 2),
        "connections": connections,
        "batch": batch,
        "requests_ok": accepted,
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "events_per_s": round(accepted * batch / wall),
        "requests_per_s": round(accepted / wall, 1),
        "p50_ms": round(quantile(0.50), 1),
        "p99_ms": round(quantile(0.99), 1),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else 0.0,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def syncs(metrics: str) -> tuple[int, float]:
    """The server's fsyncs and their mean time in ms, from its /metrics."""
    found = {}
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        found[name] = float(value) if name.startswith("bounce_analyzer_webhook_fsync") else 0.0
    count = int(found.get("bounce_analyzer_webhook_fsync_seconds_count", 0))
    total = found.get("bounce_analyzer_webhook_fsync_seconds_sum", 0.0)
    return count, round(total * 1000 / count, 2) if count else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="2 s, 8 connections")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--spool", type=Path, help="spool folder (default: a temporary one, removed)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.connections = 2.0, 8
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    spool = args.spool or work / "spool"
    signer = Signer()
    server = start_server(
        spool, "--spool-max", "10G", environ=signer.environ(), log=work / "serve.log"
    )
    server_cpu = _cpu_seconds(server.process.pid)
    client_cpu = _own_cpu_seconds()
    try:
        figures = asyncio.run(
            load(server.url + "/webhooks/sendgrid", signer, seconds=args.seconds,
                 connections=args.connections, batch=args.batch)
        )  # fmt: skip
        figures["fsyncs"], figures["fsync_mean_ms"] = syncs(httpx.get(server.url + "/metrics").text)
        # CPU per acknowledged batch, server and client apart: what the shared cores allow.
        done = max(1, int(figures["requests_ok"]))  # type: ignore[call-overload]
        figures["server_cpu_ms_per_batch"] = round(
            (_cpu_seconds(server.process.pid) - server_cpu) * 1000 / done, 2
        )
        figures["client_cpu_ms_per_batch"] = round(
            (_own_cpu_seconds() - client_cpu) * 1000 / done, 2
        )
    finally:
        server.stop()
    lines = sum(path.read_bytes().count(b"\n") for path in spool.glob("*.ndjson"))
    files = len(list(spool.glob("*.ndjson")))
    # Every acknowledged batch is one line of the spool, after each file's first line.
    figures["spool_lines_match"] = lines - files == figures["requests_ok"]
    print(
        f"{figures['events_per_s']:,} events/s  {figures['requests_per_s']} requests/s  "
        f"p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  max {figures['max_ms']} ms  "
        f"({figures['connections']} connections, {figures['batch']} events a batch, "
        f"{figures['seconds']} s, {figures['requests_ok']} batches in {figures['fsyncs']} "
        f"fsyncs of {figures['fsync_mean_ms']} ms on average, "
        f"statuses {figures['statuses']}); CPU per batch: server "
        f"{figures['server_cpu_ms_per_batch']} ms, client {figures['client_cpu_ms_per_batch']} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if not args.spool:
        shutil.rmtree(work)
    if not figures["spool_lines_match"] or figures["requests_ok"] == 0:
        sys.exit(1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
