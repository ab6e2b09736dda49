"""`bounce-analyzer serve` (issue 16): a real server on 127.0.0.1, started through the real
command line, real HTTP requests signed with keys the tests make; what it acknowledged then
reaches the store through `ingest` of the spool."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
import pytest

from _cli import invoke
from _serve import Server, Signer, running, start_server
from bounce_analyzer.ingest import staged_events
from bounce_analyzer.store import scan_events
from bounce_analyzer.webhooks.spool import spool_files

DATA = Path(__file__).parent / "data"
SENDGRID_BODIES = sorted((DATA / "sendgrid").glob("*.json"))
MAILGUN_BODIES = sorted((DATA / "mailgun").glob("*.json"))


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, signer: Signer) -> Iterator[Server]:
    """One server for the refusal tests, with a small body limit."""
    spool = tmp_path_factory.mktemp("refusals") / "spool"
    with running(spool, "--max-body", "64k", environ=signer.environ()) as started:
        yield started


def _post_sendgrid(server: Server, signer: Signer, body: bytes) -> httpx.Response:
    return httpx.post(
        server.url + "/webhooks/sendgrid", content=body, headers=signer.sendgrid_headers(body)
    )


def _post_unsigned(server: Server, body: bytes) -> httpx.Response:
    """A SendGrid post without the signature headers."""
    return httpx.post(
        server.url + "/webhooks/sendgrid",
        content=body,
        headers={"Content-Type": "application/json"},
    )


def _mailgun_body(signer: Signer, event: dict[str, object], **signature: str) -> bytes:
    block = signer.mailgun_signature()
    block.update(signature)
    return json.dumps({"signature": block, "event-data": event}).encode()


def _post_mailgun(server: Server, body: bytes) -> httpx.Response:
    return httpx.post(
        server.url + "/webhooks/mailgun",
        content=body,
        headers={"Content-Type": "application/json"},
    )


def _event(sg_event_id: str, email: str = "someone@example.net") -> dict[str, object]:
    return {
        "email": email,
        "event": "bounce",
        "timestamp": 1764547200,
        "sg_event_id": sg_event_id,
        "reason": "550 5.1.1 The email account that you tried to reach does not exist",
        "status": "5.1.1",
    }


# --- accepted, spooled, ingested ----------------------------------------------------------------


def test_corpus_payloads_signed_and_posted_reach_the_store(tmp_path: Path, signer: Signer) -> None:
    spool, store = tmp_path / "spool", tmp_path / "store"
    legacy = {
        "event": "bounced",
        "recipient": "carol@example.org",
        "domain": "mg.example.com",
        "code": "550",
        "error": "5.1.1 The email account that you tried to reach does not exist",
        "Message-Id": "<20261201.1@mg.example.com>",
    }
    with running(spool, environ=signer.environ()) as server:
        for path in SENDGRID_BODIES:
            # The exact bytes, CRLFs of the SDK's signed payloads included.
            answer = _post_sendgrid(server, signer, path.read_bytes())
            assert answer.status_code == 200, (path.name, answer.text)
        for path in MAILGUN_BODIES:
            event = json.loads(path.read_bytes())["event-data"]
            answer = _post_mailgun(server, _mailgun_body(signer, event))
            assert answer.status_code == 200, (path.name, answer.text)
        # Legacy webhooks: a urlencoded form, and a multipart one with an attachment.
        fields = {**legacy, **signer.mailgun_signature()}
        answer = httpx.post(server.url + "/webhooks/mailgun", data=fields)
        assert answer.status_code == 200, answer.text
        fields = {**legacy, "recipient": "dave@example.org", **signer.mailgun_signature()}
        files = {"attachment-1": ("bounce.eml", b"Subject: x\r\n\r\nbody\r\n", "message/rfc822")}
        answer = httpx.post(server.url + "/webhooks/mailgun", data=fields, files=files)
        assert answer.status_code == 200, answer.text
        _stop_cleanly(server)

    ingested = invoke("ingest", "--store", str(store), str(spool))
    assert ingested.exit_code == 0, ingested.output
    assert "0 malformed set aside" in ingested.output
    stored = scan_events(store).collect()
    with staged_events([str(path) for path in SENDGRID_BODIES + MAILGUN_BODIES]) as (direct, _):
        # The corpus holds some events twice (one id in two files); the store keeps one.
        expected = direct.collect().unique("event_id", keep="first", maintain_order=True)
    columns = ["event_id", "source", "event", "recipient", "diagnostic", "timestamp"]
    from_corpus = stored.filter(
        ~pl.col("recipient").is_in(["carol@example.org", "dave@example.org"])
    )
    assert (
        from_corpus.select(columns)
        .sort("event_id")
        .equals(expected.select(columns).sort("event_id"))
    )
    assert expected.height >= 10  # the corpus's outcome events, SendGrid and Mailgun
    legacy_rows = stored.filter(
        pl.col("recipient").is_in(["carol@example.org", "dave@example.org"])
    )
    assert legacy_rows["event"].to_list() == ["bounced", "bounced"]
    assert set(legacy_rows["enhanced_code"]) == {"5.1.1"}

    report = invoke("report", "--store", str(store), "--since", "2000-01-01", "--format", "json")
    assert report.exit_code == 0, report.output
    totals = json.loads(report.stdout)["totals"][0]
    assert totals["view"] == "attempts"
    outbound = stored.filter(pl.col("direction") == "outbound")
    assert totals["total"] == outbound.height
    assert (
        totals["failed"]
        == outbound.filter(pl.col("event").is_in(["bounced", "dropped", "expired"])).height
    )


def test_identical_retry_is_acknowledged_and_stored_once(server: Server, signer: Signer) -> None:
    body = json.dumps([_event("retry-once-1"), _event("retry-once-2")]).encode()
    headers = signer.sendgrid_headers(body)
    first = httpx.post(server.url + "/webhooks/sendgrid", content=body, headers=headers)
    again = httpx.post(server.url + "/webhooks/sendgrid", content=body, headers=headers)
    assert (first.status_code, first.text) == (200, "stored 2 events\n")
    assert (again.status_code, again.text) == (200, "duplicate: already stored\n")
    spooled = b"".join(path.read_bytes() for path in spool_files(_spool_of(server)))
    assert spooled.count(b'"retry-once-1"') == 1
    metrics = httpx.get(server.url + "/metrics").text
    assert 'bounce_analyzer_webhook_duplicates_total{endpoint="sendgrid"} 1' in metrics


def test_a_sendgrid_body_is_spooled_on_one_line_as_it_came(server: Server, signer: Signer) -> None:
    body = (
        b'[\r\n  {"event": "bounce", "email": "x@example.net", "timestamp": 1764547200,\r\n'
        b'   "sg_event_id": "one-line", "note": "a \\n stays escaped"}\r\n]\r\n'
    )
    assert _post_sendgrid(server, signer, body).status_code == 200
    lines = [
        line
        for path in spool_files(_spool_of(server))
        for line in path.read_bytes().splitlines()
        if b'"one-line"' in line
    ]
    assert len(lines) == 1
    assert json.loads(lines[0]) == json.loads(body)


# --- refused --------------------------------------------------------------------------------------


def test_bad_signature_is_403(server: Server, signer: Signer) -> None:
    body = json.dumps([_event("bad-sig")]).encode()
    headers = signer.sendgrid_headers(body)
    tampered = body.replace(b"bad-sig", b"bad-siG")
    answer = httpx.post(server.url + "/webhooks/sendgrid", content=tampered, headers=headers)
    assert answer.status_code == 403
    other = Signer()  # a valid signature, by a key that is not ours
    answer = httpx.post(
        server.url + "/webhooks/sendgrid", content=body, headers=other.sendgrid_headers(body)
    )
    assert answer.status_code == 403
    answer = _post_mailgun(server, _mailgun_body(signer, {"event": "failed"}, signature="0" * 64))
    assert answer.status_code == 403


def test_missing_signature_is_401(server: Server, signer: Signer) -> None:
    answer = _post_unsigned(server, json.dumps([_event("no-sig")]).encode())
    assert answer.status_code == 401
    answer = _post_mailgun(server, json.dumps({"event-data": {"event": "failed"}}).encode())
    assert answer.status_code == 401


def test_stale_timestamp_is_403(server: Server, signer: Signer) -> None:
    body = json.dumps([_event("stale")]).encode()
    headers = signer.sendgrid_headers(body, timestamp=int(time.time()) - 3600)
    answer = httpx.post(server.url + "/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 403
    assert "timestamp" in answer.text
    stale = signer.mailgun_signature(timestamp=int(time.time()) + 3600)
    answer = _post_mailgun(server, _mailgun_body(signer, {"event": "failed"}, **stale))
    assert answer.status_code == 403


def test_replayed_token_on_another_body_is_403(server: Server, signer: Signer) -> None:
    block = signer.mailgun_signature()
    first = json.dumps({"signature": block, "event-data": {"event": "delivered", "id": "a1"}})
    forged = json.dumps({"signature": block, "event-data": {"event": "failed", "id": "a2"}})
    assert _post_mailgun(server, first.encode()).status_code == 200
    answer = _post_mailgun(server, forged.encode())
    assert answer.status_code == 403
    assert b'"a2"' not in b"".join(p.read_bytes() for p in spool_files(_spool_of(server)))


def test_oversize_body_is_413(server: Server, signer: Signer) -> None:
    events = [_event(f"big-{index}") for index in range(400)]  # about 100 kB, limit 64k
    body = json.dumps(events).encode()
    assert len(body) > 64 * 1024
    assert _post_sendgrid(server, signer, body).status_code == 413

    # Without a Content-Length (chunked), the limit holds as the body streams in.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    answer = httpx.post(
        server.url + "/webhooks/sendgrid", content=chunks(), headers=signer.sendgrid_headers(body)
    )
    assert answer.status_code == 413


@pytest.mark.parametrize(
    "body",
    [b"[{", b'{"event": "bounce"}', b"[1, 2]", b"\xff\xfe[]", b""],
    ids=["truncated", "object", "numbers", "not-utf8", "empty"],
)
def test_malformed_body_is_400(server: Server, signer: Signer, body: bytes) -> None:
    answer = _post_sendgrid(server, signer, body)
    assert answer.status_code == 400
    assert answer.text.count("\n") == 1


def test_wrong_content_type_is_415(server: Server, signer: Signer) -> None:
    body = json.dumps([_event("text-plain")]).encode()
    headers = {**signer.sendgrid_headers(body), "Content-Type": "text/plain"}
    answer = httpx.post(server.url + "/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 415
    answer = httpx.post(
        server.url + "/webhooks/mailgun", content=b"x", headers={"Content-Type": "text/xml"}
    )
    assert answer.status_code == 415


def test_wrong_method_is_405(server: Server) -> None:
    answer = httpx.get(server.url + "/webhooks/sendgrid")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert httpx.put(server.url + "/webhooks/mailgun", content=b"{}").status_code == 405
    assert httpx.post(server.url + "/healthz").status_code == 405


def test_refusals_are_counted_and_logged_without_addresses(server: Server, signer: Signer) -> None:
    body = json.dumps([_event("logged", email="secret.person@example.net")]).encode()
    answer = httpx.post(
        server.url + "/webhooks/sendgrid",
        content=body.replace(b"logged", b"tampered"),
        headers=signer.sendgrid_headers(body),
    )
    assert answer.status_code == 403
    assert "secret.person" not in answer.text
    time.sleep(0.1)
    log = server.output()
    assert "403 bad-signature endpoint=sendgrid client=127.0.0.1" in log
    assert "secret.person" not in log and "Traceback" not in log
    metrics = httpx.get(server.url + "/metrics").text
    assert (
        'bounce_analyzer_webhook_rejected_total{endpoint="sendgrid",reason="bad-signature"}'
        in metrics
    )
    assert 'bounce_analyzer_webhook_requests_total{endpoint="sendgrid",status="403"}' in metrics


def test_healthz_and_metrics(server: Server) -> None:
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["uptime_s"] > 0
    assert health["spool_bytes"] == sum(p.stat().st_size for p in spool_files(_spool_of(server)))
    from prometheus_client.parser import text_string_to_metric_families

    families = {family.name: family for family in text_string_to_metric_families(
        httpx.get(server.url + "/metrics").text)}  # fmt: skip
    assert {"bounce_analyzer_webhook_requests", "bounce_analyzer_webhook_fsync_seconds"} <= set(
        families
    )
    assert families["bounce_analyzer_webhook_spool_bytes"].samples[0].value == health["spool_bytes"]


def test_full_spool_is_429(tmp_path: Path, signer: Signer) -> None:
    with running(tmp_path / "spool", "--spool-max", "2k", environ=signer.environ()) as server:
        answers = []
        for index in range(12):
            body = json.dumps([_event(f"fill-{index}-{n}") for n in range(2)]).encode()
            answers.append(_post_sendgrid(server, signer, body))
        codes = [answer.status_code for answer in answers]
        assert codes[0] == 200 and codes[-1] == 429, codes
        assert codes == sorted(codes)  # once full, every later one is refused
        assert answers[-1].headers["retry-after"]
    assert sum(p.stat().st_size for p in spool_files(tmp_path / "spool")) < 2048 + 1024


# --- starting and stopping ----------------------------------------------------------------------


def test_no_keys_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SENDGRID_PUBLIC_KEY", "MAILGUN_SIGNING_KEY"):
        monkeypatch.delenv(f"BOUNCE_ANALYZER_{name}", raising=False)
        monkeypatch.delenv(f"BOUNCE_ANALYZER_{name}_FILE", raising=False)
    result = invoke("serve", "--spool", str(tmp_path / "spool"))
    assert result.exit_code == 2
    assert result.output == (
        "Error: no webhook key: set BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY or "
        "BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY (or their _FILE variants), "
        "or pass --insecure-no-verify\n"
    )
    assert not (tmp_path / "spool").exists()


def test_a_bad_key_refuses_to_start_without_showing_it(tmp_path: Path) -> None:
    server_log = tmp_path / "serve.log"
    with pytest.raises(AssertionError, match="serve exited 2"):
        start_server(
            tmp_path / "spool",
            environ={"BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY_FILE": str(tmp_path / "missing")},
            log=server_log,
        )
    lines = server_log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY_FILE" in lines[0]


def test_insecure_no_verify_warns_at_every_start(tmp_path: Path) -> None:
    logs = ""
    for _ in range(2):
        with running(tmp_path / "spool", "--insecure-no-verify") as server:
            answer = _post_unsigned(server, json.dumps([_event("unsigned")]).encode())
            assert answer.status_code == 200
        logs += server.output()
    assert logs.count("--insecure-no-verify: sendgrid and mailgun posts are accepted without") == 2


def test_a_provider_without_a_key_is_said_at_start(tmp_path: Path, signer: Signer) -> None:
    environ = {"BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY": signer.sendgrid_public}
    with running(tmp_path / "spool", environ=environ) as server:
        event = {"event": "failed", "id": "no-key", "recipient": "a@example.net"}
        answer = _post_mailgun(server, _mailgun_body(signer, event))
        assert (answer.status_code, answer.text) == (404, "no Mailgun key is configured\n")
    assert (
        "WARNING no mailgun key (BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY or "
        "BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY_FILE): its posts are refused (404 not-configured)\n"
    ) in server.output()


def test_second_server_on_one_spool_or_port_is_refused(tmp_path: Path, signer: Signer) -> None:
    with running(tmp_path / "spool", environ=signer.environ()) as first:
        with pytest.raises(AssertionError, match="serve exited 2"):
            start_server(tmp_path / "spool", environ=signer.environ(), log=tmp_path / "2.log")
        assert (tmp_path / "2.log").read_text() == (
            f"Error: {tmp_path / 'spool'}: another server is using this spool\n"
        )
        port = first.url.rpartition(":")[2]
        done = subprocess.run(
            [sys.executable, "-m", "bounce_analyzer", "serve", "--spool", str(tmp_path / "other")]
            + ["--port", port],
            env={**os.environ, **signer.environ()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert "address already in use" in done.stderr and "Traceback" not in done.stderr
        assert done.stderr.endswith("Error: the server did not start (see the line above)\n")
        # The first one goes on serving.
        assert httpx.get(first.url + "/healthz").status_code == 200


def test_a_torn_line_after_a_kill_is_moved_aside_and_the_nightly_ingest_passes(
    tmp_path: Path, signer: Signer
) -> None:
    """Issue 16: the torn line, ended with a newline at the next start, was the only new
    record for the next `ingest`: read as malformed, the spool file looked misread, and a
    nightly job failed (exit 1) after every crash."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    with running(spool, environ=signer.environ()) as server:
        body = json.dumps([_event("before-kill-1"), _event("before-kill-2")]).encode()
        assert _post_sendgrid(server, signer, body).status_code == 200
        nightly = invoke("ingest", "--quiet", "--store", str(store), str(spool))
        assert (nightly.exit_code, nightly.output) == (0, "")
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    # What a crash in the middle of an unacknowledged append leaves.
    [cut] = spool_files(spool)
    whole = cut.read_bytes()
    tail = b'[{"event":"bounce","email":"late@example.net","sg_event_id":"torn"'
    with cut.open("ab") as stream:
        stream.write(tail)
    # The reader alone holds such a line back (it may still be completed) ...
    held = invoke("ingest", "--store", str(store), str(spool))
    assert held.exit_code == 0, held.output
    assert "held back 1 partial line" in held.output
    # ... and the next start of the server moves it aside, saying so in one line.
    with running(spool, environ=signer.environ()) as server:
        pass
    aside = spool / ".torn" / f"{cut.stem}.torn"
    assert (cut.read_bytes(), aside.read_bytes()) == (whole, tail)
    assert (
        f"WARNING {cut}: a crash cut its last line, never acknowledged (the ESP sends it "
        f"again): {len(tail)} bytes moved to {aside}\n"
    ) in server.output()
    nightly = invoke("ingest", "--quiet", "--store", str(store), str(spool))
    assert (nightly.exit_code, nightly.output) == (0, "")
    fresh = invoke("ingest", "--store", str(tmp_path / "another"), str(spool))
    assert fresh.exit_code == 0, fresh.output
    assert "2 new events" in fresh.output and "0 malformed set aside" in fresh.output
    assert scan_events(store).collect()["recipient"].to_list() == ["someone@example.net"] * 2


def test_ingest_every_moves_the_spool_into_the_store(tmp_path: Path, signer: Signer) -> None:
    spool, store = tmp_path / "spool", tmp_path / "store"
    with running(spool, environ=signer.environ()) as server:
        body = json.dumps([_event("left-1"), _event("left-2")]).encode()
        assert _post_sendgrid(server, signer, body).status_code == 200
        server.stop(signal.SIGKILL)
    left = spool_files(spool)
    assert len(left) == 1
    # The rules of `ingest` apply: here a user's pattern (tests/data/rules_user).
    rules = str(DATA / "rules_user")
    args = ["--ingest-every", "1h", "--store", str(store), "--rules", rules]
    with running(spool, *args, environ=signer.environ()) as server:
        # At start: what the last run left goes into the store, and its file away.
        deadline = time.monotonic() + 30
        while left[0].exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left[0].exists()
        crm = {**_event("at-stop-1"), "reason": "550 No such CRM contact here", "status": ""}
        body = json.dumps([crm]).encode()
        assert _post_sendgrid(server, signer, body).status_code == 200
        _stop_cleanly(server)
    # At stop: the rest, and the spool is empty.
    assert spool_files(spool) == []
    stored = scan_events(store).collect()
    assert stored.height == 3
    crm_rows = stored.filter(pl.col("diagnostic").str.contains("CRM"))
    assert crm_rows["rule_id"].to_list() == ["pattern:user.crm_unknown"]
    assert "ingested the spool: 2 new events" in server.output()


def _stop_cleanly(server: Server, sig: int = signal.SIGTERM) -> None:
    """SIGTERM (or SIGINT): in-flight requests finish, the spool is synced and closed, and
    the server exits 0 (issue 16: it died by the signal, 143, which a supervisor other than
    systemd, or a script, reads as a failure)."""
    assert server.stop(sig) == 0
    log = server.output()
    assert log.rstrip().endswith("stopped: spool synced and closed"), log
    assert "Traceback" not in log


def test_ctrl_c_stops_cleanly_too(tmp_path: Path, signer: Signer) -> None:
    with running(tmp_path / "spool", environ=signer.environ()) as server:
        body = json.dumps([_event("before-ctrl-c")]).encode()
        assert _post_sendgrid(server, signer, body).status_code == 200
        _stop_cleanly(server, signal.SIGINT)
    assert "Aborted" not in server.output()


def test_ingest_every_takes_seconds(tmp_path: Path, signer: Signer) -> None:
    """Issue 16: the shortest interval was 1m, since durations had no seconds unit."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    args = ["--ingest-every", "1s", "--store", str(store)]
    with running(spool, *args, environ=signer.environ()) as server:
        body = json.dumps([_event("every-second-1"), _event("every-second-2")]).encode()
        assert _post_sendgrid(server, signer, body).status_code == 200
        deadline = time.monotonic() + 30
        while "ingested the spool: 2 new events" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        _stop_cleanly(server)
    assert scan_events(store).collect().height == 2
    log = server.output()
    assert f"spool {spool}, ingested into {store} every 1 s\n" in log
    assert f"INFO stopping: a last ingest of the spool into {store}\n" in log


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--ingest-every", "0s", "it must be longer than 0s"),
        ("--rotate-every", "0m", "it must be longer than 0s"),
        ("--ingest-every", "5 minutes", "use 30s, 5m or 1h"),
    ],
)
def test_a_bad_interval_is_one_line(tmp_path: Path, option: str, value: str, why: str) -> None:
    spool = tmp_path / "spool"
    result = invoke("serve", "--spool", str(spool), "--store", str(tmp_path), option, value)
    assert (result.exit_code, result.output) == (
        2,
        f"Error: invalid {option} value {value!r}: {why}\n",
    )
    assert not spool.exists()


def _spool_of(server: Server) -> Path:
    """The spool folder of a server started by `running` (its log lies beside it)."""
    return server.log.parent / "spool"


def test_spool_file_names(server: Server) -> None:
    for path in spool_files(_spool_of(server)):
        source, stamp, pid = path.stem.split("-")
        assert source in {"sendgrid", "mailgun"}
        assert datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC) < datetime.now(UTC)
        assert pid == str(server.process.pid)


def test_a_failed_write_is_500_and_its_retry_is_stored(tmp_path: Path, signer: Signer) -> None:
    spool = tmp_path / "spool"
    with running(spool, environ=signer.environ()) as server:
        shutil.rmtree(spool)  # the disk fails under the server: no file can be made
        body = json.dumps([_event("after-failure")]).encode()
        headers = signer.sendgrid_headers(body)
        url = server.url + "/webhooks/sendgrid"
        failed = httpx.post(url, content=body, headers=headers)
        assert (failed.status_code, failed.text) == (500, "internal error\n")
        spool.mkdir()
        # The ESP sends the same request again: it was never stored, so it is not a duplicate.
        again = httpx.post(url, content=body, headers=headers)
        assert (again.status_code, again.text) == (200, "stored 1 event\n")
        _stop_cleanly(server)
    log = server.output()
    assert "500 internal-error endpoint=sendgrid client=127.0.0.1 error=FileNotFoundError" in log
    assert "Traceback" not in log
    assert b'"after-failure"' in b"".join(path.read_bytes() for path in spool_files(spool))


def test_spool_files_rotate_by_size_and_each_is_read_once(tmp_path: Path, signer: Signer) -> None:
    spool, store = tmp_path / "spool", tmp_path / "store"
    with running(spool, "--rotate-size", "2k", environ=signer.environ()) as server:
        for index in range(10):
            body = json.dumps([_event(f"rotated-{index}-{n}") for n in range(3)]).encode()
            assert _post_sendgrid(server, signer, body).status_code == 200
            if index == 4:  # a run in the middle, while the files grow and rotate
                middle = invoke("ingest", "--store", str(store), str(spool))
                assert middle.exit_code == 0, middle.output
        _stop_cleanly(server)
    files = spool_files(spool)
    assert len(files) >= 3
    # Closed at about the size, each file's first line naming it.
    assert all(path.stat().st_size < 2048 + 1024 for path in files)
    assert all(path.name.encode() in path.read_bytes().split(b"\n", 1)[0] for path in files)
    result = invoke("ingest", "--store", str(store), str(spool))
    assert result.exit_code == 0, result.output
    assert "0 duplicates dropped" in result.output
    assert scan_events(store).collect().height == 30


def test_garbage_never_gets_a_500(server: Server, signer: Signer) -> None:
    rng = random.Random(16)
    bodies = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 400))) for _ in range(10)]
    bodies += [b"null", b"[]" * 3, b'{"signature": 5}', b'{"signature": {"token": []}}', b"[{}]"]
    types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "multipart/form-data",
        "application/json; charset=latin-1",
        "",
    ]
    seen = set()
    for body in bodies:
        for kind in types:
            for path in ("/webhooks/sendgrid", "/webhooks/mailgun"):
                headers = {**signer.sendgrid_headers(body), "Content-Type": kind}
                answer = httpx.post(server.url + path, content=body, headers=headers)
                seen.add(answer.status_code)
                assert answer.status_code in {200, 400, 401, 403, 415}, (path, kind, body)
                assert answer.text.count("\n") == 1
    assert {400, 401, 415} <= seen
    assert "Traceback" not in server.output()


def test_a_retry_that_starts_a_new_file_does_not_hide_the_file(
    tmp_path: Path, signer: Signer
) -> None:
    """The store knows an input by its first 4 kB: a new spool file that began with the same
    batch as an older one (an ESP's retry after a restart) would be taken for the old file
    grown, and read from where that one ended, but for the line that names each file."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    batch = json.dumps([_event(f"first-{n}") for n in range(40)]).encode()
    assert len(batch) > 4096
    with running(spool, environ=signer.environ()) as server:
        assert _post_sendgrid(server, signer, batch).status_code == 200  # its 200 lost, say
        other = json.dumps([_event(f"other-{n}") for n in range(80)]).encode()
        assert _post_sendgrid(server, signer, other).status_code == 200
        server.stop(signal.SIGKILL)
    assert invoke("ingest", "--store", str(store), str(spool)).exit_code == 0
    with running(spool, environ=signer.environ()) as server:
        assert _post_sendgrid(server, signer, batch).status_code == 200  # the ESP's retry
        later = json.dumps([_event(f"later-{n}") for n in range(40)]).encode()
        assert _post_sendgrid(server, signer, later).status_code == 200
        _stop_cleanly(server)
    result = invoke("ingest", "--store", str(store), str(spool))
    assert "40 new events" in result.output and "40 duplicates dropped" in result.output
    assert scan_events(store).collect().height == 160
