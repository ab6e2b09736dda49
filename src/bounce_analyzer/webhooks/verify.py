"""Is a webhook request really from SendGrid or Mailgun, and is it new? (docs/WEBHOOKS.md)

- **SendGrid** (Signed Event Webhook) signs the `X-Twilio-Email-Event-Webhook-Timestamp`
  header's text followed by the raw body, with ECDSA on P-256 and SHA-256; the signature header
  holds the DER signature in base64, and the account shows the public key as base64 DER.
- **Mailgun** puts `timestamp`, `token` and `signature` in the request (in the JSON body's
  `signature` object, or as top-level fields of a legacy form post); the signature is the hex
  HMAC-SHA256 of `timestamp + token` under the account's webhook signing key. It does not cover
  the body.

Both verifiers refuse a timestamp more than `TOLERANCE_S` seconds from `now`, in the past or the
future. A request without the signature fields is answered 401 (`missing-signature`); one whose
fields are present but wrong is answered 403: a signature that does not match (`bad-signature`),
a timestamp that is not a whole number of seconds (`bad-timestamp`), one out of the tolerance
(`stale-timestamp`), or a replay conflict (`replay`, from `ReplayCache`).

The replay policy: each verified request yields a replay key (Mailgun's token, a canonical form
of SendGrid's signature), which the server gives to `ReplayCache.check` with a digest of the
body, only after verification succeeded (so that nobody can fill the cache with keys they
made up). The same key with the same body is an ESP retry of a request whose 2xx it did not
get: the server answers 200 and stores nothing, since a 4xx would make the ESP retry for up
to 72 hours (SendGrid) or 8 hours (Mailgun). The same key with another body is a captured
signature reused on a forged body (Mailgun's signature does not cover the body): 403. The
cache lives in memory; after a restart a retry is stored again, and `ingest`, which
de-duplicates events by event id, still keeps it once.

The keys come from the environment or from files (`load_keys`), never from the command line,
and are parsed once; no message of this module ever holds a key or an address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from bounce_analyzer.errors import BounceAnalyzerError, UsageError

__all__ = [
    "MAILGUN_KEY_VARIABLE",
    "SENDGRID_KEY_VARIABLE",
    "SENDGRID_SIGNATURE_HEADER",
    "SENDGRID_TIMESTAMP_HEADER",
    "TOLERANCE_S",
    "Keys",
    "KeyProblem",
    "MailgunVerifier",
    "Rejected",
    "ReplayCache",
    "SendgridVerifier",
    "digest",
    "load_keys",
    "mailgun_fields_form",
    "mailgun_fields_json",
]

#: How far a signed timestamp may be from now, in seconds, either way (Symfony's Mailgun
#: parser uses the same 300 s, accepting exactly 300 and refusing 301).
TOLERANCE_S = 300

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: The variables `load_keys` reads; each also has a `..._FILE` form naming a file.
SENDGRID_KEY_VARIABLE = "BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY"
MAILGUN_KEY_VARIABLE = "BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY"

#: A key is a few hundred bytes; a larger file is a mistake (a log, a device), not a key.
_MAX_KEY_FILE = 64 * 1024

#: Seconds since the epoch, as both ESPs send them: ASCII digits only (no sign, no spaces,
#: no fraction), at most 15 of them so that a huge number costs nothing to refuse.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


class Rejected(BounceAnalyzerError):
    """A request that fails verification: `status` is the HTTP status to answer, `reason` a
    short word for logs and metrics; the message is one line and never holds an address."""

    status: int
    reason: str

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KeyProblem(UsageError):
    """A webhook key that cannot be used; the message names the variable or file, never the
    key."""


def _missing(provider: str, names: list[str]) -> Rejected:
    return Rejected(401, "missing-signature", f"{provider} request without {' or '.join(names)}")


def _check_timestamp(provider: str, timestamp: str, now: float, tolerance_s: float) -> None:
    """Refuse a timestamp that is not whole seconds, or is further than the tolerance from now.

    The value itself goes into no message unless it is plain digits: it is the sender's text.
    """
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Rejected(
            403, "bad-timestamp", f"{provider} timestamp is not a whole number of seconds"
        )
    offset = int(timestamp) - now
    if abs(offset) > tolerance_s:
        direction = "in the future" if offset > 0 else "old"
        raise Rejected(
            403,
            "stale-timestamp",
            f"{provider} timestamp {timestamp} is {abs(offset):.0f} s {direction}"
            f" (tolerance {tolerance_s:g} s)",
        )


class SendgridVerifier:
    """Checks SendGrid's Signed Event Webhook requests against the account's public key."""

    def __init__(
        self, public_key: ec.EllipticCurvePublicKey, *, tolerance_s: float = TOLERANCE_S
    ) -> None:
        self._key = public_key
        self._algorithm = ec.ECDSA(hashes.SHA256())
        self.tolerance_s = tolerance_s

    @classmethod
    def from_text(cls, text: str, *, tolerance_s: float = TOLERANCE_S) -> SendgridVerifier:
        """The verifier for a public key given as SendGrid shows it (base64 of the DER
        SubjectPublicKeyInfo) or as a PEM `PUBLIC KEY` block; whitespace around it is ignored.

        Raises `KeyProblem` (whose message never holds the key) when the text is neither, or
        the key is not an elliptic-curve key on P-256.
        """
        stripped = text.strip()
        if not stripped:
            raise KeyProblem("is empty")
        try:
            if stripped.startswith("-----BEGIN"):
                key = load_pem_public_key(stripped.encode("ascii"))
            else:
                # Accept the base64 wrapped over several lines, as some consoles copy it.
                der = base64.b64decode("".join(stripped.split()), validate=True)
                key = load_der_public_key(der)
        except (ValueError, UnsupportedAlgorithm):
            # ValueError covers bad base64 (binascii.Error), non-ASCII text and a DER or PEM
            # block that is not a public key; the library's own message is not shown, since
            # nothing guarantees it leaves the key out.
            raise KeyProblem(
                "is not a public key: expected base64 DER, as SendGrid shows it, or a PEM"
                " PUBLIC KEY block"
            ) from None
        if isinstance(key, RSAPublicKey):
            raise KeyProblem("is an RSA key; SendGrid signs with ECDSA on the P-256 curve")
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyProblem("is not an elliptic-curve key; SendGrid signs with ECDSA on P-256")
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyProblem(f"is on the {key.curve.name} curve; SendGrid signs on P-256")
        return cls(key, tolerance_s=tolerance_s)

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, now: float) -> str:
        """Check one request: its raw body and the two headers' values (None when absent).

        Returns the request's replay key; raises `Rejected`. The key is the signature's `r`
        value rather than its text: an ECDSA signature (r, s) has a twin (r, n - s) that
        verifies just as well, so the text would let anyone replay a captured request under
        a new key, while `r` is the same for both.
        """
        if not signature or not timestamp:
            absent = [
                header
                for header, value in (
                    (SENDGRID_SIGNATURE_HEADER, signature),
                    (SENDGRID_TIMESTAMP_HEADER, timestamp),
                )
                if not value
            ]
            raise _missing("SendGrid", absent)
        _check_timestamp("SendGrid", timestamp, now, self.tolerance_s)
        try:
            der = base64.b64decode(signature, validate=True)
            self._key.verify(der, timestamp.encode("ascii") + body, self._algorithm)
        except (ValueError, InvalidSignature):
            # ValueError: not base64 (or not ASCII); InvalidSignature: not DER, or no match.
            raise Rejected(
                403, "bad-signature", "SendGrid signature does not match the timestamp and body"
            ) from None
        r, _ = decode_dss_signature(der)
        return f"sendgrid:{r:x}"


class MailgunVerifier:
    """Checks Mailgun's webhook signatures with the account's HTTP webhook signing key."""

    def __init__(self, signing_key: str, *, tolerance_s: float = TOLERANCE_S) -> None:
        self._key = signing_key.encode("ascii")
        self.tolerance_s = tolerance_s

    @classmethod
    def from_text(cls, text: str, *, tolerance_s: float = TOLERANCE_S) -> MailgunVerifier:
        """The verifier for a signing key (whitespace around it is ignored).

        Raises `KeyProblem` for an empty key or one with spaces or non-ASCII characters inside
        (Mailgun's keys are one word of letters, digits and dashes: anything else is a copying
        mistake, which would otherwise only show as every request refused).
        """
        key = text.strip()
        if not key:
            raise KeyProblem("is empty")
        if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            raise KeyProblem(
                "holds spaces or characters that are not printable ASCII; a Mailgun signing"
                " key is one word"
            )
        return cls(key, tolerance_s=tolerance_s)

    def verify(
        self, timestamp: str | None, token: str | None, signature: str | None, now: float
    ) -> str:
        """Check one request's three signature fields (None when absent).

        Returns the request's replay key, the token; raises `Rejected`.
        """
        if not timestamp or not token or not signature:
            fields = (("timestamp", timestamp), ("token", token), ("signature", signature))
            raise _missing("Mailgun", [name for name, value in fields if not value])
        _check_timestamp("Mailgun", timestamp, now, self.tolerance_s)
        # "surrogatepass": JSON may carry a lone surrogate (\ud800), which plain UTF-8 refuses
        # to encode; such a token or signature must be refused as wrong, not raise.
        message = (timestamp + token).encode("utf-8", "surrogatepass")
        expected = hmac.new(self._key, message, hashlib.sha256).hexdigest().encode("ascii")
        if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass")):
            raise Rejected(
                403, "bad-signature", "Mailgun signature does not match the timestamp and token"
            )
        return token


def _field(value: Any) -> str | None:
    """A signature field as text: a string as it is; an integer (a timestamp some clients send
    unquoted) as its digits; anything else as absent."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def mailgun_fields_json(payload: Any) -> tuple[str | None, str | None, str | None]:
    """`(timestamp, token, signature)` of a JSON webhook (`{"signature": {...}, "event-data":
    {...}}`, already parsed); None for each one absent or not text."""
    block = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(block, dict):
        return None, None, None
    return (
        _field(block.get("timestamp")),
        _field(block.get("token")),
        _field(block.get("signature")),
    )


def mailgun_fields_form(form: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """`(timestamp, token, signature)` of a legacy form post (top-level fields)."""
    return form.get("timestamp"), form.get("token"), form.get("signature")


def digest(body: bytes) -> bytes:
    """The body digest `ReplayCache.check` compares (SHA-256)."""
    return hashlib.sha256(body).digest()


class ReplayCache:
    """The replay keys of recent verified requests, each with its body's digest.

    Memory is bounded: an entry expires `ttl_s` after it was first seen, and past
    `max_entries` the oldest entries go first. The default time to live is twice the
    timestamp tolerance: a request is accepted only while its timestamp is within the
    tolerance of now, so a key first seen at t can come back valid until t + 2 * tolerance
    at the latest (timestamp t + tolerance, arriving at t + 2 * tolerance), and not after.
    An entry costs about 350 bytes (measured with a Mailgun token or a SendGrid key), so the
    default bound is some 350 MB at the very worst; at 200 requests a second (20,000 SendGrid
    events a second in batches of 100), the default ten minutes hold 120,000 entries, 42 MB.

    Not thread-safe: the server calls it from its one event loop.
    """

    def __init__(self, ttl_s: float = 2 * TOLERANCE_S, max_entries: int = 1_000_000) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ReplayCache needs ttl_s > 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # key -> (expiry, body digest), in the order first seen (hence of expiry, while the
        # clock goes forward).
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, key: str, body_digest: bytes, now: float) -> Literal["new", "duplicate"]:
        """ "new" the first time a key is seen (it is remembered with the digest); "duplicate"
        when the key was seen with the same digest (an ESP retry: answer 200, store nothing).

        Raises `Rejected` (403, "replay") when the key was seen with another body: a captured
        signature reused on a forged body.
        """
        self._expire(now)
        seen = self._entries.get(key)
        if seen is not None:
            expiry, seen_digest = seen
            if expiry >= now:
                if hmac.compare_digest(seen_digest, body_digest):
                    return "duplicate"
                raise Rejected(403, "replay", "signature already used on another body")
            # Expired but kept because the clock went back: forget it, as if it had gone.
            del self._entries[key]
        self._entries[key] = (now + self.ttl_s, body_digest)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return "new"

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expiry, _) = next(iter(entries.items()))
            if expiry >= now:
                return
            del entries[key]


_V = TypeVar("_V", SendgridVerifier, MailgunVerifier)


@dataclass(frozen=True)
class Keys:
    """The verifiers for the keys the environment gives; None where it gives none."""

    sendgrid: SendgridVerifier | None
    mailgun: MailgunVerifier | None


def load_keys(environ: Mapping[str, str], *, tolerance_s: float = TOLERANCE_S) -> Keys:
    """The keys in `environ` (`os.environ`, or a dict in tests): for each ESP, its variable
    holding the key itself, or the variable with `_FILE` appended naming a file that holds it.

    Raises `KeyProblem` when both forms are set for one key, the file cannot be read, or the
    key is empty or cannot be used; the message names the variable (and file), never the key.
    """
    sendgrid = _key_text(environ, SENDGRID_KEY_VARIABLE)
    mailgun = _key_text(environ, MAILGUN_KEY_VARIABLE)
    return Keys(
        sendgrid=None if sendgrid is None else _parse(SendgridVerifier, *sendgrid, tolerance_s),
        mailgun=None if mailgun is None else _parse(MailgunVerifier, *mailgun, tolerance_s),
    )


def _parse(verifier: type[_V], text: str, origin: str, tolerance_s: float) -> _V:
    try:
        return verifier.from_text(text, tolerance_s=tolerance_s)
    except KeyProblem as problem:
        raise KeyProblem(f"{origin} {problem}") from None


def _key_text(environ: Mapping[str, str], variable: str) -> tuple[str, str] | None:
    """The key text the environment gives for `variable`, with where it came from (for
    messages); None when neither form is set."""
    file_variable = f"{variable}_FILE"
    value = environ.get(variable)
    path = environ.get(file_variable)
    if value is not None and path is not None:
        raise KeyProblem(f"{variable} and {file_variable} are both set: set only one")
    if path is not None:
        if not path.strip():
            raise KeyProblem(f"{file_variable} is set but empty: it should name a file")
        origin = f"{file_variable} ({path})"
        try:
            with open(path, "rb") as file:
                data = file.read(_MAX_KEY_FILE + 1)
        except OSError as error:
            raise KeyProblem(f"{origin}: cannot read the file: {error.strerror}") from None
        if len(data) > _MAX_KEY_FILE:
            raise KeyProblem(f"{origin}: the file is over 64 KiB, too large for a key")
        try:
            return data.decode("utf-8"), origin
        except UnicodeDecodeError:
            raise KeyProblem(f"{origin}: the file is not text") from None
    if value is not None:
        return value, variable
    return None
