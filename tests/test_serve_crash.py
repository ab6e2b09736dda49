"""Nothing acknowledged is lost (issue 16): signed SendGrid batches posted from a few threads
while the server is killed with SIGKILL and restarted, each batch retried until it gets a 2xx
as an ESP would; after `ingest` of the spool, every event of every acknowledged batch is in
the store exactly once."""

from __future__ import annotations

import json
import signal
import threading
import time
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from _cli import invoke
from _serve import Signer, free_port, start_server
from bounce_analyzer.store import scan_events

THREADS = 4
EVENTS_PER_BATCH = 20
KILLS = 4


def _batch(thread: int, number: int) -> tuple[list[str], bytes]:
    """The ids of a batch's events and its body (each event's sg_message_id is its id too,
    so that the store shows which events it holds)."""
    ids = [f"crash-{thread}-{number}-{n}" for n in range(EVENTS_PER_BATCH)]
    events = [
        {
            "email": f"user{n}@example.net",
            "event": "bounce",
            "timestamp": 1764547200 + n,
            "sg_event_id": event_id,
            "sg_message_id": event_id,
            "reason": "550 5.1.1 The email account that you tried to reach does not exist",
        }
        for n, event_id in enumerate(ids)
    ]
    return ids, json.dumps(events).encode()


class _Sender(threading.Thread):
    """One ESP connection: posts batch after batch, each until it is acknowledged."""

    def __init__(self, number: int, url: str, signer: Signer, stop: threading.Event) -> None:
        super().__init__(name=f"sender-{number}", daemon=True)
        self.number, self.url, self.signer, self.stop = number, url, signer, stop
        self.acknowledged: list[str] = []  # event ids of batches answered 2xx
        self.posted: list[str] = []  # event ids of every batch tried
        self.retries = 0
        self.refused: list[int] = []

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            batch = 0
            while not self.stop.is_set():
                ids, body = _batch(self.number, batch)
                self.posted += ids
                # An ESP keeps the request it failed to deliver and sends it again as it was.
                headers = self.signer.sendgrid_headers(body)
                while not self.stop.is_set():
                    try:
                        answer = client.post(self.url, content=body, headers=headers)
                    except httpx.TransportError:  # killed, or not up yet
                        self.retries += 1
                        time.sleep(0.05)
                        continue
                    if 200 <= answer.status_code < 300:
                        self.acknowledged += ids
                        break
                    self.refused.append(answer.status_code)
                    return
                batch += 1


@pytest.mark.slow
def test_every_acknowledged_event_is_stored_once_across_kills(tmp_path: Path) -> None:
    signer, spool, store = Signer(), tmp_path / "spool", tmp_path / "store"
    port = free_port()
    server = start_server(spool, environ=signer.environ(), port=port)
    stop = threading.Event()
    url = f"http://127.0.0.1:{port}/webhooks/sendgrid"
    senders = [_Sender(number, url, signer, stop) for number in range(THREADS)]
    for sender in senders:
        sender.start()
    acknowledged_at_kill = []
    for _ in range(KILLS):
        time.sleep(1.5)
        acknowledged_at_kill.append(sum(len(sender.acknowledged) for sender in senders))
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        server = start_server(spool, environ=signer.environ(), port=port, log=server.log)
    time.sleep(1.0)
    stop.set()
    for sender in senders:
        sender.join(30)
        assert not sender.is_alive()
    server.stop()
    assert all(not sender.refused for sender in senders), [s.refused for s in senders]
    # The load went on between the kills, and requests were cut by them.
    assert all(later > earlier for earlier, later in pairwise(acknowledged_at_kill))
    assert sum(sender.retries for sender in senders) > 0

    result = invoke("ingest", "--store", str(store), str(spool))
    assert result.exit_code == 0, result.output
    stored = scan_events(store).select("message_ref").collect()["message_ref"]
    acknowledged = {event for sender in senders for event in sender.acknowledged}
    posted = {event for sender in senders for event in sender.posted}
    assert stored.n_unique() == stored.len()  # each event once
    assert acknowledged <= set(stored.to_list())  # every acknowledged one
    assert set(stored.to_list()) <= posted  # and nothing else
    assert len(acknowledged) >= THREADS * EVENTS_PER_BATCH * KILLS
    assert "Traceback" not in server.output()
    assert "Error" not in result.output and "held back" not in result.output


def test_sigterm_under_load_answers_what_it_took_and_closes_the_spool(tmp_path: Path) -> None:
    signer, spool, store = Signer(), tmp_path / "spool", tmp_path / "store"
    server = start_server(spool, environ=signer.environ())
    stop = threading.Event()
    senders = [_Sender(n, server.url + "/webhooks/sendgrid", signer, stop) for n in range(THREADS)]
    for sender in senders:
        sender.start()
    time.sleep(1.0)
    assert server.stop() == 0  # a clean stop
    stop.set()
    for sender in senders:
        sender.join(30)
    log = server.output()
    assert log.rstrip().endswith("stopped: spool synced and closed") and "Traceback" not in log
    assert all(path.read_bytes().endswith(b"\n") for path in spool.glob("*.ndjson"))
    result = invoke("ingest", "--store", str(store), str(spool))
    assert "0 malformed set aside" in result.output, result.output
    stored = set(scan_events(store).select("message_ref").collect()["message_ref"].to_list())
    acknowledged = {event for sender in senders for event in sender.acknowledged}
    assert acknowledged and acknowledged <= stored
