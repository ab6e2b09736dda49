"""`bounce-analyzer serve` as the tests (and bench/serve_load.py) meet it: a real server
started through the real command line in a process of its own, keys the tests make, and
requests signed as SendGrid and Mailgun sign them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass
class Signer:
    """A SendGrid key pair and a Mailgun signing key, made for one test."""

    sendgrid: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    mailgun: str = field(default_factory=lambda: "key-" + secrets.token_hex(16))

    @property
    def sendgrid_public(self) -> str:
        """The public key as SendGrid's settings page shows it: base64 DER."""
        der = self.sendgrid.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def environ(self) -> dict[str, str]:
        """The server's environment with both keys."""
        return {
            "BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY": self.sendgrid_public,
            "BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY": self.mailgun,
        }

    def sendgrid_headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers of a signed SendGrid post of `body` (now, unless `timestamp`)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.sendgrid.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
        }

    def mailgun_signature(
        self, timestamp: int | None = None, token: str | None = None
    ) -> dict[str, str]:
        """A Mailgun `signature` block: timestamp, token, and their HMAC."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        token = token or secrets.token_hex(25)
        digest = hmac.new(self.mailgun.encode(), (stamp + token).encode(), hashlib.sha256)
        return {"timestamp": stamp, "token": token, "signature": digest.hexdigest()}


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `bounce-analyzer serve`."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `sig` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(
    spool: Path,
    *args: str,
    environ: Mapping[str, str] | None = None,
    log: Path | None = None,
    port: int | None = None,
    timeout: float = 30,
) -> Server:
    """`bounce-analyzer serve --spool SPOOL --port PORT ARGS` (a free port unless given),
    answering /healthz."""
    port = port or free_port()
    log = log or spool.parent / f"serve-{port}.log"
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("BOUNCE_ANALYZER_")
    }
    env.update(environ or {})
    command = [sys.executable, "-m", "bounce_analyzer", "serve", "--spool", str(spool)]
    command += ["--port", str(port), *args]
    with log.open("ab") as stream:
        process = subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"serve did not answer in {timeout} s:\n{server.output()}")


@contextmanager
def running(spool: Path, *args: str, environ: Mapping[str, str] | None = None) -> Iterator[Server]:
    """A server for the block, stopped (SIGTERM, else SIGKILL) after it."""
    server = start_server(spool, *args, environ=environ)
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.TimeoutExpired:
            server.stop(signal.SIGKILL)
