"""Webhook signatures: the ESPs' own vectors, tampering, keys, timestamps and the replay cache.

Every `now` is taken from a vector's timestamp, never from the clock.
"""

from __future__ import annotations

import base64
import json
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from bounce_analyzer.errors import UsageError
from bounce_analyzer.webhooks.verify import (
    MAILGUN_KEY_VARIABLE,
    SENDGRID_KEY_VARIABLE,
    TOLERANCE_S,
    KeyProblem,
    MailgunVerifier,
    Rejected,
    ReplayCache,
    SendgridVerifier,
    digest,
    load_keys,
    mailgun_fields_form,
    mailgun_fields_json,
)

DATA = Path(__file__).resolve().parent / "data"
SIGNATURES = DATA / "signatures"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SIGNATURES / name).read_text(encoding="utf-8"))
    return loaded


SENDGRID = _load("sendgrid__sendgrid-nodejs_ecdsa.json")
SENDGRID_RSA = _load("sendgrid__symfony_rsa_generated.json")
MAILGUN = _load("mailgun__symfony.json")

#: The SendGrid account key of the SDK's valid vectors (both positive single-event vectors).
SENDGRID_KEY = SENDGRID["vectors"][0]["public_key"]
SENDGRID_FIXTURES = sorted((DATA / "sendgrid").glob("*.json"))


def _crlf(body: bytes) -> bytes:
    """A fixture stored with LF line ends as SendGrid sends it, with CRLF."""
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _body(vector: dict[str, Any]) -> bytes:
    if "payload_literal" in vector:
        return str(vector["payload_literal"]).encode("utf-8")
    body = (DATA / "sendgrid" / vector["payload_file"]).read_bytes()
    # The vector "symfony fixture with LF->CRLF": the fixture is stored with LF.
    return _crlf(body) if "LF->CRLF" in vector["name"] else body


def _now(timestamp: str) -> float:
    """The moment the request was sent: its own timestamp (the SDK's vectors are from 2020)."""
    return float(timestamp) if timestamp.isdigit() else 1_600_112_502.0


def _rejected(call: Any, status: int, reason: str) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call()
    assert (caught.value.status, caught.value.reason) == (status, reason), str(caught.value)
    assert "\n" not in str(caught.value) and "@" not in str(caught.value)
    return caught.value


def _valid_sendgrid() -> list[dict[str, Any]]:
    return [v for v in SENDGRID["vectors"] if v["expected_valid"]]


def _sign(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    signature = key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def _base64_der(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


# --- SendGrid ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", SENDGRID["vectors"], ids=lambda v: v["name"])
def test_sendgrid_sdk_vectors(vector: dict[str, Any]) -> None:
    verifier = SendgridVerifier.from_text(vector["public_key"])
    body, timestamp = _body(vector), vector["timestamp"]
    verify = partial(verifier.verify, body, vector["signature"], timestamp, _now(timestamp))
    if vector["expected_valid"]:
        assert verify().startswith("sendgrid:")
    elif timestamp.isdigit():
        _rejected(verify, 403, "bad-signature")
    else:
        _rejected(verify, 403, "bad-timestamp")


def test_sendgrid_symfony_fixture_with_its_stored_lf_line_ends_fails() -> None:
    """The signature covers the exact bytes: the same events with LF instead of CRLF fail."""
    vector = next(v for v in SENDGRID["vectors"] if "LF->CRLF" in v["name"])
    verifier = SendgridVerifier.from_text(vector["public_key"])
    stored = (DATA / "sendgrid" / vector["payload_file"]).read_bytes()
    assert b"\r\n" not in stored
    timestamp = vector["timestamp"]
    _rejected(
        lambda: verifier.verify(stored, vector["signature"], timestamp, _now(timestamp)),
        403,
        "bad-signature",
    )


@pytest.mark.parametrize("vector", _valid_sendgrid(), ids=lambda v: v["name"])
def test_sendgrid_any_byte_changed_fails(vector: dict[str, Any]) -> None:
    verifier = SendgridVerifier.from_text(vector["public_key"])
    body, timestamp = _body(vector), vector["timestamp"]
    for position in (0, len(body) // 2, len(body) - 1):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        _rejected(
            partial(
                verifier.verify, bytes(tampered), vector["signature"], timestamp, _now(timestamp)
            ),
            403,
            "bad-signature",
        )
    for changed in (body + b" ", body[:-1], b" " + body):
        _rejected(
            partial(verifier.verify, changed, vector["signature"], timestamp, _now(timestamp)),
            403,
            "bad-signature",
        )


@pytest.mark.parametrize("vector", _valid_sendgrid(), ids=lambda v: v["name"])
def test_sendgrid_another_timestamp_fails(vector: dict[str, Any]) -> None:
    verifier = SendgridVerifier.from_text(vector["public_key"])
    body, now = _body(vector), _now(vector["timestamp"])
    for other in (str(int(vector["timestamp"]) + 1), "0" + vector["timestamp"]):
        _rejected(
            partial(verifier.verify, body, vector["signature"], other, now), 403, "bad-signature"
        )


def test_sendgrid_signature_from_another_key_fails() -> None:
    vector = _valid_sendgrid()[0]
    body, timestamp = _body(vector), vector["timestamp"]
    forged = _sign(ec.generate_private_key(ec.SECP256R1()), timestamp, body)
    verifier = SendgridVerifier.from_text(vector["public_key"])
    _rejected(
        lambda: verifier.verify(body, forged, timestamp, _now(timestamp)), 403, "bad-signature"
    )


@pytest.mark.parametrize(
    "signature",
    [
        "not base64 at all!",
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZU",  # base64, the DER cut short
        base64.b64encode(b"hello, not a DER sequence").decode("ascii"),
        base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode("ascii"),  # DER, r = s = 1
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZU\u00e9",  # not ASCII
        "=",
    ],
)
def test_sendgrid_malformed_signature_is_403(signature: str) -> None:
    vector = _valid_sendgrid()[0]
    verifier = SendgridVerifier.from_text(vector["public_key"])
    timestamp = vector["timestamp"]
    _rejected(
        lambda: verifier.verify(_body(vector), signature, timestamp, _now(timestamp)),
        403,
        "bad-signature",
    )


@pytest.mark.parametrize(
    ("signature", "timestamp", "named"),
    [
        (
            None,
            None,
            "X-Twilio-Email-Event-Webhook-Signature or X-Twilio-Email-Event-Webhook-Timestamp",
        ),
        (None, "1600112502", "without X-Twilio-Email-Event-Webhook-Signature"),
        ("sig", None, "without X-Twilio-Email-Event-Webhook-Timestamp"),
        (
            "",
            "",
            "X-Twilio-Email-Event-Webhook-Signature or X-Twilio-Email-Event-Webhook-Timestamp",
        ),
    ],
)
def test_sendgrid_missing_headers_are_401(
    signature: str | None, timestamp: str | None, named: str
) -> None:
    verifier = SendgridVerifier.from_text(SENDGRID_KEY)
    error = _rejected(
        lambda: verifier.verify(b"[]", signature, timestamp, 1_600_112_502.0),
        401,
        "missing-signature",
    )
    assert named in str(error)


@pytest.mark.parametrize(
    "timestamp", ["1600112502.0", " 1600112502", "+1600112502", "-5", "1e9", "\u0661\u0666"]
)
def test_sendgrid_timestamp_not_whole_seconds_is_403(timestamp: str) -> None:
    vector = _valid_sendgrid()[0]
    verifier = SendgridVerifier.from_text(vector["public_key"])
    error = _rejected(
        lambda: verifier.verify(_body(vector), vector["signature"], timestamp, 1_600_112_502.0),
        403,
        "bad-timestamp",
    )
    assert timestamp.strip() not in str(error)


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-TOLERANCE_S, True), (TOLERANCE_S, True), (-301, False), (301, False)]
)
def test_sendgrid_timestamp_tolerance_both_ways(offset: int, accepted: bool) -> None:
    """`now` = the vector's timestamp + offset: a negative offset is a timestamp ahead of us."""
    vector = _valid_sendgrid()[0]
    verifier = SendgridVerifier.from_text(vector["public_key"])
    body, timestamp = _body(vector), vector["timestamp"]
    verify = partial(verifier.verify, body, vector["signature"], timestamp, int(timestamp) + offset)
    if accepted:
        verify()
    else:
        error = _rejected(verify, 403, "stale-timestamp")
        assert ("in the future" in str(error)) == (offset < 0), str(error)


def test_sendgrid_tolerance_is_a_setting() -> None:
    vector = _valid_sendgrid()[0]
    strict = SendgridVerifier.from_text(vector["public_key"], tolerance_s=10)
    body, timestamp = _body(vector), vector["timestamp"]
    strict.verify(body, vector["signature"], timestamp, int(timestamp) + 10)
    _rejected(
        lambda: strict.verify(body, vector["signature"], timestamp, int(timestamp) + 11),
        403,
        "stale-timestamp",
    )


def test_sendgrid_fresh_key_signs_every_fixture_as_symfony_does() -> None:
    """Symfony's convention (sendgrid__symfony_rsa_generated.json): timestamp 1600112502, then
    the fixture with CRLF line ends; here signed with a fresh P-256 key instead of RSA."""
    key = ec.generate_private_key(ec.SECP256R1())
    timestamp = SENDGRID_RSA["timestamp_header"]
    keys = [SendgridVerifier.from_text(_base64_der(key)), SendgridVerifier.from_text(_pem(key))]
    for path in SENDGRID_FIXTURES:
        body = _crlf(path.read_bytes())
        signature = _sign(key, timestamp, body)
        for verifier in keys:
            assert verifier.verify(body, signature, timestamp, float(timestamp)), path.name


def test_sendgrid_replay_key_is_the_same_for_a_signature_and_its_twin() -> None:
    """(r, s) and (r, n - s) both verify; a replay under the twin must meet the same key."""
    vector = _valid_sendgrid()[0]
    verifier = SendgridVerifier.from_text(vector["public_key"])
    body, timestamp = _body(vector), vector["timestamp"]
    r, s = decode_dss_signature(base64.b64decode(vector["signature"]))
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's n
    twin = base64.b64encode(encode_dss_signature(r, order - s)).decode("ascii")
    assert twin != vector["signature"]
    now = _now(timestamp)
    assert verifier.verify(body, twin, timestamp, now) == verifier.verify(
        body, vector["signature"], timestamp, now
    )
    cache = ReplayCache()
    assert (
        cache.check(verifier.verify(body, vector["signature"], timestamp, now), digest(body), now)
        == "new"
    )
    assert (
        cache.check(verifier.verify(body, twin, timestamp, now), digest(body), now) == "duplicate"
    )


def test_symfony_rsa_key_is_refused_as_not_sendgrids() -> None:
    """The RSA pair Symfony's test uses is not a SendGrid key: it is refused at start-up."""
    with pytest.raises(KeyProblem) as caught:
        load_keys({SENDGRID_KEY_VARIABLE: SENDGRID_RSA["public_key_base64_der"]})
    assert str(caught.value) == (
        "BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY is an RSA key; SendGrid signs with ECDSA on the"
        " P-256 curve"
    )


def test_symfony_rsa_signature_is_refused_by_a_sendgrid_verifier() -> None:
    """Signed as Symfony's test signs (RSA, SHA-256, timestamp + CRLF body): not SendGrid's
    scheme, so a P-256 verifier refuses it, even over a body SendGrid's key did sign."""
    private = serialization.load_pem_private_key(SENDGRID_RSA["private_key_pem"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    vector = next(v for v in SENDGRID["vectors"] if "LF->CRLF" in v["name"])
    body, timestamp = _body(vector), SENDGRID_RSA["timestamp_header"]
    rsa_signature = private.sign(timestamp.encode() + body, padding.PKCS1v15(), hashes.SHA256())
    verifier = SendgridVerifier.from_text(vector["public_key"])
    _rejected(
        lambda: verifier.verify(
            body, base64.b64encode(rsa_signature).decode(), timestamp, float(timestamp)
        ),
        403,
        "bad-signature",
    )


# --- Mailgun -------------------------------------------------------------------------------

MAILGUN_VECTORS = [
    pytest.param(vector, name, id=name.removesuffix(".json"))
    for vector in MAILGUN["vectors"]
    for name in vector["payload_files"]
]


@pytest.mark.parametrize(("vector", "payload_file"), MAILGUN_VECTORS)
def test_mailgun_symfony_vectors_in_their_payloads(
    vector: dict[str, Any], payload_file: str
) -> None:
    payload = json.loads((DATA / "mailgun" / payload_file).read_bytes())
    fields = mailgun_fields_json(payload)
    assert fields == (vector["timestamp"], vector["token"], vector["signature"])
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    assert verifier.verify(*fields, now=float(vector["timestamp"])) == vector["token"]


def test_mailgun_symfony_negative_vector() -> None:
    (vector,) = MAILGUN["negative_vectors"]
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    _rejected(
        lambda: verifier.verify(vector["timestamp"], vector["token"], vector["signature"], now=1.0),
        403,
        "bad-signature",
    )


def _tampered(text: str, position: int) -> str:
    replacement = "0" if text[position] != "0" else "1"
    return text[:position] + replacement + text[position + 1 :]


@pytest.mark.parametrize("vector", MAILGUN["vectors"], ids=lambda v: v["token"][:8])
def test_mailgun_tampered_fields_fail(vector: dict[str, Any]) -> None:
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    timestamp, token, signature = vector["timestamp"], vector["token"], vector["signature"]
    now = float(timestamp)
    later = str(int(timestamp) + 1)
    for fields in [
        (later, token, signature),
        (timestamp, _tampered(token, 0), signature),
        (timestamp, _tampered(token, len(token) - 1), signature),
        (timestamp, token + "0", signature),
        (timestamp, token, _tampered(signature, 10)),
        (timestamp, token, signature.upper()),
        (timestamp, token, signature[:-1]),
        (timestamp, token, "\ud800" + signature[1:]),  # a lone surrogate, as JSON allows
        (timestamp, "\ud800" + token, signature),
    ]:
        _rejected(partial(verifier.verify, *fields, now=now), 403, "bad-signature")
    other_key = MailgunVerifier.from_text("key-" + "0" * 32)
    _rejected(lambda: other_key.verify(timestamp, token, signature, now), 403, "bad-signature")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ((None, None, None), "without timestamp or token or signature"),
        (("1661621710", None, "abc"), "without token"),
        (("1661621710", "tok", ""), "without signature"),
        ((None, "tok", "abc"), "without timestamp"),
    ],
)
def test_mailgun_missing_fields_are_401(
    fields: tuple[str | None, str | None, str | None], named: str
) -> None:
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    error = _rejected(lambda: verifier.verify(*fields, now=1661621710.0), 401, "missing-signature")
    assert str(error) == f"Mailgun request {named}"


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-300, True), (300, True), (-301, False), (301, False)]
)
def test_mailgun_timestamp_tolerance_as_symfony(offset: int, accepted: bool) -> None:
    vector = MAILGUN["vectors"][0]
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    fields = (vector["timestamp"], vector["token"], vector["signature"])
    now = int(vector["timestamp"]) + offset
    if accepted:
        assert verifier.verify(*fields, now=now) == vector["token"]
    else:
        error = _rejected(lambda: verifier.verify(*fields, now=now), 403, "stale-timestamp")
        assert str(error) == (
            f"Mailgun timestamp {vector['timestamp']} is 301 s "
            f"{'in the future' if offset < 0 else 'old'} (tolerance 300 s)"
        )


def test_mailgun_timestamp_not_whole_seconds_is_403() -> None:
    vector = MAILGUN["vectors"][0]
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    for timestamp in (vector["timestamp"] + ".5", "0x10", "soon"):
        _rejected(
            partial(verifier.verify, timestamp, vector["token"], vector["signature"], 1661621710.0),
            403,
            "bad-timestamp",
        )


def test_mailgun_fields_json_finds_or_leaves_out() -> None:
    vector = MAILGUN["vectors"][0]
    block = {k: vector[k] for k in ("timestamp", "token", "signature")}
    assert mailgun_fields_json({"signature": block, "event-data": {}}) == (
        vector["timestamp"],
        vector["token"],
        vector["signature"],
    )
    # A timestamp sent as a number is its digits, which the HMAC covers.
    as_number = dict(block, timestamp=int(vector["timestamp"]))
    fields = mailgun_fields_json({"signature": as_number})
    assert fields[0] == vector["timestamp"]
    assert MailgunVerifier.from_text(MAILGUN["signing_key"]).verify(
        *fields, now=float(fields[0] or 0)
    )
    for payload in (
        [],
        "signature",
        None,
        {"event-data": {}},
        {"signature": "abc"},
        {"signature": [block]},
    ):
        assert mailgun_fields_json(payload) == (None, None, None), payload
    odd = {"signature": {"timestamp": True, "token": 5.5, "signature": {"x": 1}}}
    assert mailgun_fields_json(odd) == (None, None, None)


def test_mailgun_legacy_form_post() -> None:
    """A pre-2018 form post: the three fields at the top level, beside the event's."""
    vector = MAILGUN["vectors"][3]
    body = urlencode(
        {
            "event": "bounced",
            "recipient": "alice@example.com",
            "code": "550",
            "error": "5.1.1 The email account that you tried to reach does not exist.",
            "timestamp": vector["timestamp"],
            "token": vector["token"],
            "signature": vector["signature"],
        }
    )
    form = dict(parse_qsl(body))
    fields = mailgun_fields_form(form)
    assert fields == (vector["timestamp"], vector["token"], vector["signature"])
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    assert verifier.verify(*fields, now=float(vector["timestamp"])) == vector["token"]
    assert mailgun_fields_form({"event": "bounced"}) == (None, None, None)


# --- keys ----------------------------------------------------------------------------------


def test_keys_from_the_environment_as_the_accounts_show_them() -> None:
    vector = _valid_sendgrid()[0]
    keys = load_keys(
        {
            SENDGRID_KEY_VARIABLE: vector["public_key"] + "\n",
            MAILGUN_KEY_VARIABLE: "  " + MAILGUN["signing_key"] + "\n",
            "PATH": "/usr/bin",
        }
    )
    assert keys.sendgrid is not None and keys.mailgun is not None
    timestamp = vector["timestamp"]
    keys.sendgrid.verify(_body(vector), vector["signature"], timestamp, _now(timestamp))
    mg = MAILGUN["vectors"][1]
    keys.mailgun.verify(mg["timestamp"], mg["token"], mg["signature"], float(mg["timestamp"]))


def test_no_keys_set() -> None:
    keys = load_keys({"HOME": "/root"})
    assert keys.sendgrid is None and keys.mailgun is None


def test_sendgrid_key_as_pem_and_wrapped_base64() -> None:
    vector = _valid_sendgrid()[0]
    der = base64.b64decode(vector["public_key"])
    body = base64.encodebytes(der).decode("ascii")  # wrapped at 76 characters
    pem = f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"
    timestamp = vector["timestamp"]
    for text in (pem, "\n" + pem + "\n\n", body):
        verifier = load_keys({SENDGRID_KEY_VARIABLE: text}).sendgrid
        assert verifier is not None
        verifier.verify(_body(vector), vector["signature"], timestamp, _now(timestamp))


def test_keys_from_files(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "sendgrid.pem").write_text(_pem(key), encoding="utf-8")
    (tmp_path / "sendgrid.b64").write_text(_base64_der(key) + "\n", encoding="utf-8")
    (tmp_path / "mailgun").write_text(MAILGUN["signing_key"] + "\n", encoding="utf-8")
    body, timestamp = b'[{"event":"bounce"}]\r\n', "1765000000"
    signature = _sign(key, timestamp, body)
    for name in ("sendgrid.pem", "sendgrid.b64"):
        keys = load_keys(
            {
                f"{SENDGRID_KEY_VARIABLE}_FILE": str(tmp_path / name),
                f"{MAILGUN_KEY_VARIABLE}_FILE": str(tmp_path / "mailgun"),
            }
        )
        assert keys.sendgrid is not None and keys.mailgun is not None
        keys.sendgrid.verify(body, signature, timestamp, float(timestamp))
        mg = MAILGUN["vectors"][2]
        keys.mailgun.verify(mg["timestamp"], mg["token"], mg["signature"], float(mg["timestamp"]))


@pytest.mark.parametrize("variable", [SENDGRID_KEY_VARIABLE, MAILGUN_KEY_VARIABLE])
def test_both_forms_set_is_an_error(variable: str, tmp_path: Path) -> None:
    secret = MAILGUN["signing_key"] if variable == MAILGUN_KEY_VARIABLE else SENDGRID_KEY
    (tmp_path / "key").write_text(secret, encoding="utf-8")
    with pytest.raises(KeyProblem) as caught:
        load_keys({variable: secret, f"{variable}_FILE": str(tmp_path / "key")})
    assert str(caught.value) == f"{variable} and {variable}_FILE are both set: set only one"
    assert isinstance(caught.value, UsageError)  # the CLI's edge: "Error: ...", exit 2


def test_unreadable_key_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    for path, why in [(missing, "No such file or directory"), (tmp_path, "Is a directory")]:
        with pytest.raises(KeyProblem) as caught:
            load_keys({f"{MAILGUN_KEY_VARIABLE}_FILE": str(path)})
        assert str(caught.value) == (
            f"BOUNCE_ANALYZER_MAILGUN_SIGNING_KEY_FILE ({path}): cannot read the file: {why}"
        )
    with pytest.raises(
        KeyProblem, match=r"^BOUNCE_ANALYZER_SENDGRID_PUBLIC_KEY_FILE is set but empty"
    ):
        load_keys({f"{SENDGRID_KEY_VARIABLE}_FILE": ""})


def test_key_file_that_is_not_a_key_file(tmp_path: Path) -> None:
    large = tmp_path / "large"
    large.write_bytes(b"A" * (64 * 1024 + 1))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00key")
    with pytest.raises(KeyProblem, match=r"\(.*large\): the file is over 64 KiB"):
        load_keys({f"{SENDGRID_KEY_VARIABLE}_FILE": str(large)})
    with pytest.raises(KeyProblem, match=r"\(.*binary\): the file is not text$"):
        load_keys({f"{MAILGUN_KEY_VARIABLE}_FILE": str(binary)})


P384 = _base64_der(ec.generate_private_key(ec.SECP384R1()))
PRIVATE_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode("ascii")
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not-a-key-at-all", "is not a public key: expected base64 DER"),
        (SENDGRID_KEY[:-8], "is not a public key: expected base64 DER"),
        (base64.b64encode(b"some bytes, not DER").decode(), "is not a public key"),
        (PRIVATE_PEM, "is not a public key: expected base64 DER"),
        ("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", "is not a public key"),
        (SENDGRID_RSA["public_key_base64_der"], "is an RSA key"),
        (P384, "is on the secp384r1 curve; SendGrid signs on P-256"),
        ("  \n", "is empty"),
        ("cl\u00e9", "is not a public key"),
    ],
)
def test_garbage_sendgrid_key(text: str, message: str) -> None:
    with pytest.raises(KeyProblem) as caught:
        load_keys({SENDGRID_KEY_VARIABLE: text})
    error = str(caught.value)
    assert error.startswith(f"{SENDGRID_KEY_VARIABLE} {message}"), error
    assert "\n" not in error
    for piece in text.split():
        if len(piece) > 8:
            assert piece not in error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("key-abc def", "holds spaces or characters that are not printable ASCII"),
        ("key-\u00e9t\u00e9", "holds spaces or characters that are not printable ASCII"),
        ("key-abc\x00", "holds spaces or characters that are not printable ASCII"),
    ],
)
def test_garbage_mailgun_key(text: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(text, encoding="utf-8")
    for environ, origin in [
        ({MAILGUN_KEY_VARIABLE: text}, MAILGUN_KEY_VARIABLE),
        (
            {f"{MAILGUN_KEY_VARIABLE}_FILE": str(tmp_path / "key")},
            f"{MAILGUN_KEY_VARIABLE}_FILE ({tmp_path / 'key'})",
        ),
    ]:
        with pytest.raises(KeyProblem) as caught:
            load_keys(environ)
        assert str(caught.value).startswith(f"{origin} {message}"), str(caught.value)
        if text:
            assert text.split()[0] not in str(caught.value)


# --- the replay cache ----------------------------------------------------------------------


def test_replay_new_duplicate_conflict() -> None:
    cache = ReplayCache()
    first, other = digest(b'[{"event":"bounce"}]'), digest(b'[{"event":"delivered"}]')
    assert cache.check("token-1", first, 1000.0) == "new"
    assert cache.check("token-1", first, 1001.0) == "duplicate"
    assert cache.check("token-1", first, 1002.0) == "duplicate"
    _rejected(lambda: cache.check("token-1", other, 1003.0), 403, "replay")
    assert cache.check("token-2", other, 1003.0) == "new"
    assert len(cache) == 2


def test_replay_of_a_mailgun_token_on_another_body_is_refused() -> None:
    """Mailgun's signature does not cover the body: a captured one passes verification on a
    forged body, and only the cache refuses it."""
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    cache = ReplayCache()
    (vector,) = [v for v in MAILGUN["vectors"] if len(v["payload_files"]) == 3]
    bodies = [(DATA / "mailgun" / name).read_bytes() for name in vector["payload_files"]]
    now = float(vector["timestamp"])
    outcomes = []
    for body in (bodies[0], bodies[0], bodies[1]):
        key = verifier.verify(*mailgun_fields_json(json.loads(body)), now=now)
        try:
            outcomes.append(cache.check(key, digest(body), now))
        except Rejected as error:
            outcomes.append(f"{error.status} {error.reason}")
    assert outcomes == ["new", "duplicate", "403 replay"]


def test_replay_entries_expire() -> None:
    cache = ReplayCache(ttl_s=600)
    assert cache.check("token", digest(b"a"), 1000.0) == "new"
    _rejected(lambda: cache.check("token", digest(b"b"), 1600.0), 403, "replay")
    assert cache.check("token", digest(b"b"), 1600.5) == "new"
    assert cache.check("other", digest(b"c"), 2200.0) == "new"
    assert len(cache) == 2
    assert cache.check("later", digest(b"d"), 2200.6) == "new"
    assert len(cache) == 2  # "token" (seen again at 1600.5) went after 2200.5


def test_replay_default_lifetime_covers_the_tolerance_both_ways() -> None:
    """A token whose timestamp is 300 s ahead of our clock when first seen still verifies
    600 s later, when its timestamp is 300 s behind: the cache must still know it then."""
    vector = MAILGUN["vectors"][0]
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    fields = (vector["timestamp"], vector["token"], vector["signature"])
    cache = ReplayCache()
    first_seen = int(vector["timestamp"]) - TOLERANCE_S
    last_valid = int(vector["timestamp"]) + TOLERANCE_S
    key = verifier.verify(*fields, now=first_seen)
    assert cache.check(key, digest(b"real"), first_seen) == "new"
    key = verifier.verify(*fields, now=last_valid)
    _rejected(lambda: cache.check(key, digest(b"forged"), last_valid), 403, "replay")
    _rejected(lambda: verifier.verify(*fields, now=last_valid + 1), 403, "stale-timestamp")


def test_replay_cache_is_bounded() -> None:
    cache = ReplayCache(max_entries=3)
    for number in range(10):
        assert cache.check(f"token-{number}", digest(b"x"), 1000.0 + number) == "new"
        assert len(cache) <= 3
    # The oldest went first: the last three are remembered, the others are new again.
    assert cache.check("token-9", digest(b"x"), 1010.0) == "duplicate"
    assert cache.check("token-7", digest(b"x"), 1010.0) == "duplicate"
    assert cache.check("token-6", digest(b"x"), 1010.0) == "new"


def test_replay_cache_when_the_clock_goes_back() -> None:
    """An entry behind a younger one is not dropped in order, but still expires on lookup."""
    cache = ReplayCache(ttl_s=600)
    assert cache.check("early", digest(b"a"), 5000.0) == "new"  # expires at 5600
    assert cache.check("stepped-back", digest(b"b"), 100.0) == "new"  # expires at 700
    _rejected(lambda: cache.check("stepped-back", digest(b"c"), 700.0), 403, "replay")
    assert cache.check("stepped-back", digest(b"c"), 800.0) == "new"
    assert cache.check("early", digest(b"a"), 800.0) == "duplicate"


# --- whatever a client sends ---------------------------------------------------------------

FIELDS = ("timestamp", "token", "signature")
HEADER = st.none() | st.text(max_size=120) | st.sampled_from(["1600112502", "=", "MEUC"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200), signature=HEADER, timestamp=HEADER)
def test_sendgrid_refuses_anything_with_rejected_only(
    body: bytes, signature: str | None, timestamp: str | None
) -> None:
    verifier = SendgridVerifier.from_text(SENDGRID_KEY)
    with pytest.raises(Rejected) as caught:
        verifier.verify(body, signature, timestamp, 1_600_112_502.0)
    assert caught.value.status in (401, 403)
    assert "\n" not in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(
    payload=JSON
    | st.fixed_dictionaries({"signature": st.dictionaries(st.sampled_from(FIELDS), JSON)}),
    now=st.floats(min_value=0, max_value=2e9),
)
def test_mailgun_refuses_any_json_with_rejected_only(payload: Any, now: float) -> None:
    verifier = MailgunVerifier.from_text(MAILGUN["signing_key"])
    fields = mailgun_fields_json(payload)
    assert all(field is None or isinstance(field, str) for field in fields)
    with pytest.raises(Rejected) as caught:
        verifier.verify(*fields, now=now)
    assert caught.value.status in (401, 403)
    assert "\n" not in str(caught.value)
