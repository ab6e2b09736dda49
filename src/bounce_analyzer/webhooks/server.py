"""`bounce-analyzer serve`: the HTTP endpoint SendGrid and Mailgun post their events to.

A Starlette application on uvicorn. Each webhook request goes through the same steps, and
the first that fails answers (docs/WEBHOOKS.md has the contract):

1. method POST (405), content type (415), body within `max_body` bytes (413);
2. the signature, checked over the raw body before anything parses it (401 missing, 403
   wrong or stale: `verify.py`);
3. the body parsed: JSON (or a legacy Mailgun form) of the expected shape (400);
4. room in the spool (429), then the replay cache: a signature (SendGrid) or token (Mailgun)
   seen before with the same body is an ESP's retry, answered 200 without storing anything; on
   another body it is a forgery (403);
5. the events appended to the spool and synced to disk (`spool.py`), then 200.

Every refusal is counted (/metrics) and logged as one line: status, reason, endpoint, client
address; never a recipient or a body. An unexpected error answers 500 with a one-line body
and logs one line (its type), never a traceback.

With a store, a worker thread moves the spool into it every `ingest_every` seconds with the
library's ingest (the store's catalogue resumes grown files and knows rotated ones), then
deletes the closed spool files read to their end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from bounce_analyzer.errors import BounceAnalyzerError, UsageError
from bounce_analyzer.rules import Rules
from bounce_analyzer.timewindow import parse_duration
from bounce_analyzer.webhooks.spool import Spool, SpoolFull
from bounce_analyzer.webhooks.verify import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    Keys,
    Rejected,
    ReplayCache,
    digest,
    load_keys,
    mailgun_fields_form,
    mailgun_fields_json,
)

__all__ = ["ServeOptions", "build_app", "parse_interval", "parse_size", "prepare", "serve"]

log = logging.getLogger("bounce_analyzer.serve")

#: Every method a route answers: the wrong ones get our 405 (counted and logged).
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class ServeOptions:
    """What `serve` is told (the command's options)."""

    spool: Path
    host: str = "127.0.0.1"
    port: int = 8025
    sendgrid_path: str = "/webhooks/sendgrid"
    mailgun_path: str = "/webhooks/mailgun"
    max_body: int = 5 * 1024 * 1024
    spool_max: int = 1024 * 1024 * 1024
    rotate_bytes: int = 64 * 1024 * 1024
    rotate_s: float = 3600.0
    ingest_every: float | None = None
    store: Path | None = None
    rules: Rules | None = None  # what the ingest worker classifies with (default: built-in)
    insecure_no_verify: bool = False


class _Metrics:
    """Counters for /metrics (touched from the event loop only)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.rejected: Counter[tuple[str, str]] = Counter()
        self.accepted: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.ingests: Counter[str] = Counter()  # from the ingest thread: one += at a time


class _Replays:
    """The replay cache, and what it cannot know: whether the first copy was stored.

    A retry that comes while the first copy is still being written waits for that write; a
    retry of a copy whose write failed is stored, not acknowledged as a duplicate.
    """

    def __init__(self, cache: ReplayCache) -> None:
        self.cache = cache
        self.pending: dict[str, asyncio.Future[bool]] = {}
        self.unstored: set[str] = set()

    async def is_new(self, key: str, digest: bytes, now: float) -> bool:
        if self.cache.check(key, digest, now) == "new":
            return True
        pending = self.pending.get(key)
        if pending is not None:
            await asyncio.shield(pending)
        return key in self.unstored

    async def store(self, key: str, write: Awaitable[None]) -> None:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending[key] = done
        try:
            await write
        except BaseException:
            if len(self.unstored) < 100_000:
                self.unstored.add(key)
            raise
        else:
            self.unstored.discard(key)
        finally:
            del self.pending[key]
            done.set_result(True)


def prepare(options: ServeOptions, environ: Mapping[str, str]) -> tuple[Keys, list[str]]:
    """The keys from `environ`, and the warnings to log at start; a `UsageError` when the
    server must not start (no key and no --insecure-no-verify, a key that does not load)."""
    keys = load_keys(environ)  # a KeyProblem is a UsageError: one line, exit code 2
    unverified = [
        name
        for name, verifier in (("sendgrid", keys.sendgrid), ("mailgun", keys.mailgun))
        if verifier is None
    ]
    if len(unverified) == 2 and not options.insecure_no_verify:
        raise UsageError(
            "no webhook key: set BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY or "
            "BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY (or their _FILE variants), "
            "or pass --insecure-no-verify"
        )
    warnings = []
    if unverified and options.insecure_no_verify:
        warnings.append(
            f"--insecure-no-verify: {' and '.join(unverified)} posts are accepted "
            "without a signature check; anyone who can reach this port can forge events"
        )
    elif unverified:
        # Said at start: otherwise a key left out shows only as the ESP's retries.
        [name] = unverified
        variable = f"BOUNCE_ANALYZER_{name.upper()}_" + (
            "PUBLIC_KEY" if name == "sendgrid" else "SIGNING_KEY"
        )
        warnings.append(
            f"no {name} key ({variable} or {variable}_FILE): its posts are refused "
            "(404 not-configured)"
        )
    if options.ingest_every is not None and options.store is None:
        raise UsageError("--ingest-every needs --store")
    return keys, warnings


def build_app(
    options: ServeOptions,
    keys: Keys,
    spool: Spool,
    *,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The ASGI application: the two webhook routes, /healthz and /metrics. `spool` must be
    open; it is closed when the application stops (its lifespan), after the last request."""
    metrics = _Metrics()
    replays = _Replays(ReplayCache())
    started = time.monotonic()
    insecure = options.insecure_no_verify

    async def sendgrid(request: Request) -> Response:
        body = await _body(request, options.max_body, json_only=True)
        signature = request.headers.get(SENDGRID_SIGNATURE_HEADER)
        timestamp = request.headers.get(SENDGRID_TIMESTAMP_HEADER)
        now = clock()
        body_digest = digest(body)
        if keys.sendgrid is not None:
            key = "sg:" + keys.sendgrid.verify(body, signature, timestamp, now)
        elif insecure:
            key = "sg:" + body_digest.hex()
        else:
            raise Rejected(404, "not-configured", "no SendGrid key is configured")
        events = _json(body)
        if not isinstance(events, list) or not all(isinstance(item, dict) for item in events):
            raise Rejected(400, "malformed", "the body is not a JSON array of event objects")
        spool.check_room()
        if not await replays.is_new(key, body_digest, now):
            metrics.duplicates["sendgrid"] += 1
            return _ok("duplicate: already stored")
        if events:
            # A JSON text holds newlines only as whitespace: folded, the body is one line.
            line = body.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n"
            await replays.store(key, spool.write("sendgrid", line))
        metrics.accepted["sendgrid"] += len(events)
        return _ok(f"stored {len(events)} event{'' if len(events) == 1 else 's'}")

    async def mailgun(request: Request) -> Response:
        body = await _body(request, options.max_body, json_only=False)
        kind = _media_type(request)
        now = clock()
        body_digest = digest(body)
        if kind == "application/json":
            payload = _json(body)
            timestamp, token, signature = mailgun_fields_json(payload)
            event = payload.get("event-data") if isinstance(payload, dict) else None
        else:
            form = await _form(request, body, kind)
            timestamp, token, signature = mailgun_fields_form(form)
            event = {name: value for name, value in form.items() if name != "signature"}
        if keys.mailgun is not None:
            key = "mg:" + keys.mailgun.verify(timestamp, token, signature, now)
        elif insecure:
            key = "mg:" + (token or body_digest.hex())
        else:
            raise Rejected(404, "not-configured", "no Mailgun key is configured")
        if not isinstance(event, dict) or not event:
            raise Rejected(400, "malformed", 'the body holds no "event-data" object')
        spool.check_room()
        if not await replays.is_new(key, body_digest, now):
            metrics.duplicates["mailgun"] += 1
            return _ok("duplicate: already stored")
        line = json.dumps({"event-data": event}, separators=(",", ":")).encode() + b"\n"
        await replays.store(key, spool.write("mailgun", line))
        metrics.accepted["mailgun"] += 1
        return _ok("stored 1 event")

    async def healthz(request: Request) -> Response:
        _only(request, "GET", "HEAD")
        return JSONResponse(
            {
                "status": "ok",
                "spool_bytes": spool.size,
                "uptime_s": round(time.monotonic() - started, 3),
            }
        )

    async def metrics_page(request: Request) -> Response:
        _only(request, "GET", "HEAD")
        return PlainTextResponse(
            _exposition(metrics, spool), media_type="text/plain; version=0.0.4"
        )

    def endpoint(
        name: str, handler: Callable[[Request], Awaitable[Response]], *, post: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            client = request.client.host if request.client else "-"
            try:
                if post:
                    _only(request, "POST")
                response = await handler(request)
            except Rejected as refused:  # verify's, and ours: 400, 404, 405, 413, 415
                response = _refusal(metrics, name, client, refused.status, refused.reason,
                                    str(refused))  # fmt: skip
                if refused.status == 405:
                    response.headers["Allow"] = "POST" if post else "GET, HEAD"
            except SpoolFull as full:
                response = _refusal(metrics, name, client, 429, "spool-full", str(full))
                response.headers["Retry-After"] = "60"
            except Exception as error:  # a bug or a failing disk: one line, never a traceback
                log.error("500 internal-error endpoint=%s client=%s error=%s", name, client,
                          type(error).__name__)  # fmt: skip
                metrics.rejected[(name, "internal-error")] += 1
                response = PlainTextResponse("internal error\n", status_code=500)
            metrics.requests[(name, response.status_code)] += 1
            return response

        return answer

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        worker = None
        if options.store is not None and options.ingest_every is not None:
            worker = _IngestWorker(options, spool, metrics)
            worker.start()
        try:
            yield
        finally:
            spool.close()  # uvicorn has answered the last request: sync and close the files
            if worker is not None:
                # It may take a while: say why the stop waits.
                log.info("stopping: a last ingest of the spool into %s", options.store)
                worker.stop()  # its last run reads them to the end and removes them
            log.info("stopped: spool synced and closed")

    routes = [
        Route(options.sendgrid_path, endpoint("sendgrid", sendgrid, post=True), methods=_METHODS),
        Route(options.mailgun_path, endpoint("mailgun", mailgun, post=True), methods=_METHODS),
        Route("/healthz", endpoint("healthz", healthz, post=False), methods=_METHODS),
        Route("/metrics", endpoint("metrics", metrics_page, post=False), methods=_METHODS),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(options: ServeOptions, environ: Mapping[str, str]) -> None:
    """Run the server until SIGTERM or SIGINT: in-flight requests finish, the spool is synced
    and closed, and it returns. Raises `UsageError` when it must not start (see `prepare`)."""
    keys, warnings = prepare(options, environ)
    _log_to_stderr()
    for warning in warnings:
        log.warning("%s", warning)
    spool = Spool(
        options.spool,
        max_bytes=options.spool_max,
        rotate_bytes=options.rotate_bytes,
        rotate_s=options.rotate_s,
    )
    # Here, so that a spool in use is one `Error:` line, not a traceback.
    for tail in spool.open():
        log.warning(
            "%s: a crash cut its last line, never acknowledged (the ESP sends it again): "
            "%d bytes moved to %s",
            tail.path,
            tail.size,
            tail.aside,
        )
    try:
        config = uvicorn.Config(
            build_app(options, keys, spool),
            host=options.host,
            port=options.port,
            lifespan="on",
            access_log=False,
            log_level="warning",
            server_header=False,
            # The body limit is ours (413); uvicorn's h11 gets a little more, for headers.
            h11_max_incomplete_event_size=max(64 * 1024, options.max_body + 64 * 1024),
        )
        server = _Server(config, options)
        try:
            with _clean_stop(server):
                server.run()
        except SystemExit:  # uvicorn's answer to a port it cannot bind, which it logged
            raise _StartFailed() from None
        if not server.started:
            raise _StartFailed()
    finally:
        spool.close()
        spool.release()


@contextmanager
def _clean_stop(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop `server` as uvicorn stops it, and then `serve` returns (exit
    code 0) instead of dying by the signal (143, 130).

    uvicorn takes both signals while it runs, stops gracefully, puts back the handlers it
    found and sends itself the signal again, for them: ours are those handlers, and they only
    note the stop (as uvicorn's do, should a signal come before uvicorn has taken them).
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; uvicorn does the same
        return

    def stop(_signal: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    found = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in found.items():
            signal.signal(number, handler)


class _Server(uvicorn.Server):
    """uvicorn's server, which says where it listens once it does."""

    def __init__(self, config: uvicorn.Config, options: ServeOptions) -> None:
        super().__init__(config)
        self.options = options

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            options = self.options
            log.info(
                "listening on http://%s:%d (sendgrid %s, mailgun %s), spool %s%s",
                options.host,
                options.port,
                options.sendgrid_path,
                options.mailgun_path,
                options.spool,
                ""
                if options.store is None or options.ingest_every is None
                else f", ingested into {options.store} every {options.ingest_every:g} s",
            )


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str, *, option: str) -> int:
    """A size in bytes: `5242880`, `500k`, `5M`, `1G` (powers of 1024; a trailing B or iB
    allowed). Raises `UsageError` naming `option`."""
    match = re.fullmatch(r"(\d{1,15})\s*([kmg]?)(?:i?b)?", text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise UsageError(f"invalid {option} value {text!r}: use a size like 5M, 500k or 1G")
    return int(match[1]) * _SIZE_UNITS[match[2]]


def parse_interval(text: str, *, option: str) -> float:
    """A time between two runs, in seconds: `30s`, `5m`, `1h`, `1d`. Raises `UsageError`
    naming `option` when it is not a duration, or is 0."""
    seconds = parse_duration(text, option=option, examples="30s, 5m or 1h").total_seconds()
    if seconds == 0:
        raise UsageError(f"invalid {option} value {text!r}: it must be longer than 0s")
    return seconds


class _StartFailed(BounceAnalyzerError):
    """The server did not start; uvicorn logged why (a port in use)."""

    def __init__(self) -> None:
        super().__init__("the server did not start (see the line above)")


# --- requests ---------------------------------------------------------------------------------


def _only(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise Rejected(405, "method", f"{request.method} is not allowed here")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def _body(request: Request, limit: int, *, json_only: bool) -> bytes:
    """The request's body, refused (413) past `limit` bytes, after its type is checked."""
    kind = _media_type(request)
    allowed = ("application/json",) if json_only else ("application/json", *_FORM_TYPES)
    if kind not in allowed:
        raise Rejected(415, "content-type", f"content type must be {' or '.join(allowed)}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, "too-large", f"the body is over {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "too-large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "malformed", "the body is not JSON in UTF-8") from None


async def _form(request: Request, body: bytes, kind: str) -> dict[str, str]:
    """A legacy Mailgun form body's text fields (files, such as attachments, left out)."""
    if kind == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode("utf-8"), strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            raise Rejected(400, "malformed", "the form body does not parse") from None

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form()
    except Exception:  # python-multipart's and Starlette's parse errors have no common base
        raise Rejected(400, "malformed", "the multipart body does not parse") from None
    return {
        name: value
        for name, value in form.multi_items()
        if isinstance(value, str) and not isinstance(value, UploadFile)
    }


def _ok(text: str) -> Response:
    return PlainTextResponse(text + "\n")


def _refusal(
    metrics: _Metrics, endpoint: str, client: str, status: int, reason: str, message: str
) -> Response:
    metrics.rejected[(endpoint, reason)] += 1
    log.warning("%d %s endpoint=%s client=%s", status, reason, endpoint, client)
    return PlainTextResponse(message.splitlines()[0] + "\n" if message else "\n", status)


# --- /metrics ---------------------------------------------------------------------------------


def _exposition(metrics: _Metrics, spool: Spool) -> str:
    """The counters as Prometheus text exposition (format 0.0.4)."""
    lines: list[str] = []

    def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP bounce_analyzer_webhook_{name} {text}")
        lines.append(f"# TYPE bounce_analyzer_webhook_{name} {kind}")
        for labels, value in samples:
            lines.append(f"bounce_analyzer_webhook_{name}{labels} {value:g}")

    family(
        "requests_total",
        "counter",
        "Requests answered, by endpoint and HTTP status.",
        [
            (f'{{endpoint="{endpoint}",status="{status}"}}', count)
            for (endpoint, status), count in sorted(metrics.requests.items())
        ],
    )
    family(
        "events_accepted_total",
        "counter",
        "Events written to the spool, by endpoint.",
        [(f'{{endpoint="{name}"}}', count) for name, count in sorted(metrics.accepted.items())],
    )
    family(
        "duplicates_total",
        "counter",
        "Retries of requests already stored, answered 200 without storing.",
        [(f'{{endpoint="{name}"}}', count) for name, count in sorted(metrics.duplicates.items())],
    )
    family(
        "rejected_total",
        "counter",
        "Requests refused, by endpoint and reason.",
        [
            (f'{{endpoint="{endpoint}",reason="{reason}"}}', count)
            for (endpoint, reason), count in sorted(metrics.rejected.items())
        ],
    )
    family("spool_bytes", "gauge", "Bytes of spool files in the spool folder.", [("", spool.size)])
    family(
        "ingests_total",
        "counter",
        "Runs of the spool into the store, by result.",
        [(f'{{result="{name}"}}', count) for name, count in sorted(metrics.ingests.items())],
    )
    stats = spool.stats
    lines.append("# HELP bounce_analyzer_webhook_fsync_seconds Time of each sync of a spool file.")
    lines.append("# TYPE bounce_analyzer_webhook_fsync_seconds histogram")
    cumulative = 0
    for bound, count in stats.buckets.items():
        cumulative += count
        lines.append(f'bounce_analyzer_webhook_fsync_seconds_bucket{{le="{bound:g}"}} {cumulative}')
    lines.append(f'bounce_analyzer_webhook_fsync_seconds_bucket{{le="+Inf"}} {stats.syncs}')
    lines.append(f"bounce_analyzer_webhook_fsync_seconds_sum {stats.seconds:.6f}")
    lines.append(f"bounce_analyzer_webhook_fsync_seconds_count {stats.syncs}")
    return "\n".join(lines) + "\n"


# --- the spool into the store ---------------------------------------------------------------


class _IngestWorker:
    """Every `every` seconds, the spool into the store, in a thread of its own (requests go on
    meanwhile); then the closed spool files read to their end are deleted."""

    def __init__(self, options: ServeOptions, spool: Spool, metrics: _Metrics) -> None:
        if options.store is None or options.ingest_every is None:
            raise ValueError("the ingest worker needs a store and an interval")
        self.store = options.store
        self.rules = options.rules
        self.spool = spool
        self.every = options.ingest_every
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-ingest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop waiting; the run under way finishes, then one more reads what is left."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # At start (what an earlier run of the server left), every `every` seconds, at stop.
        while True:
            self._guarded()
            if self._stop.wait(self.every):
                break
        self._guarded()

    def _guarded(self) -> None:
        try:
            self.once()
        except BounceAnalyzerError as error:
            self.metrics.ingests["failed"] += 1
            log.error("ingest of the spool failed: %s", error)
        except Exception as error:  # keep serving: the next run tries again
            self.metrics.ingests["failed"] += 1
            log.error("ingest of the spool failed: %s", type(error).__name__)

    def once(self) -> None:
        from bounce_analyzer.ingest import ingest_paths

        closed = {str(path): path for path in self.spool.closed_files()}
        result = ingest_paths(
            self.store,
            [str(self.spool.folder)],
            rules=self.rules,
            wait=True,
            now=datetime.now(UTC),
        )
        finished = [
            closed[summary.path]
            for summary in result.files
            if summary.path in closed
            and summary.source is not None
            and not summary.held_back
            and not summary.partial
            and summary.end_offset == os.path.getsize(summary.path)
        ]
        self.spool.remove(finished)
        self.metrics.ingests["ok"] += 1
        log.info(
            "ingested the spool: %d new events, %d malformed, %d duplicates; %d files removed",
            result.events,
            result.malformed,
            result.duplicates,
            len(finished),
        )


def _log_to_stderr() -> None:
    """Our log lines on stderr: time, level, message."""
    if log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
