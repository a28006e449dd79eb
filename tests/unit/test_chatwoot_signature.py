"""Webhook signature verification: the shared test vector, each failure reason, and a
sign/verify round trip for arbitrary bodies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.chatwoot.signature import SignatureError, sign, verify

from ..fixtures import CHATWOOT

FIXTURE = CHATWOOT / "01_message_created_incoming_first.json"
SECRET = "fictional-webhook-secret-0001"
TIMESTAMP = 1773130443
VECTOR = "sha256=c39c44520de7cb4ac2f45503aee184fc21975d661f2660df877aa877f61b4f51"
NOW = TIMESTAMP + 2.0  # injected clock: two seconds after signing


def _headers(signature: str = VECTOR, timestamp: str = str(TIMESTAMP)) -> dict[str, str]:
    return {"X-Chatwoot-Signature": signature, "X-Chatwoot-Timestamp": timestamp}


def _body() -> bytes:
    return FIXTURE.read_bytes()


def _reason(body: bytes, headers: dict[str, str], **kwargs: float) -> str:
    with pytest.raises(SignatureError) as info:
        verify(SECRET, body, headers, now=kwargs.pop("now", NOW), **kwargs)
    assert str(info.value) == info.value.reason
    assert SECRET not in info.value.reason
    return info.value.code


def test_fixture_vector_signs_and_verifies() -> None:
    body = _body()
    assert len(body) == 4432
    assert sign(SECRET, TIMESTAMP, body) == VECTOR
    verify(SECRET, body, _headers(), now=NOW)


def test_header_lookup_is_case_insensitive() -> None:
    headers = {"x-chatwoot-signature": VECTOR, "X-CHATWOOT-TIMESTAMP": str(TIMESTAMP)}
    verify(SECRET, _body(), headers, now=NOW)


def test_uppercase_hex_digest_is_accepted() -> None:
    upper = "sha256=" + VECTOR.removeprefix("sha256=").upper()
    verify(SECRET, _body(), _headers(signature=upper), now=NOW)


def test_each_failure_has_its_own_reason() -> None:
    body = _body()
    codes = {
        _reason(body, {"X-Chatwoot-Timestamp": str(TIMESTAMP)}),
        _reason(body, {"X-Chatwoot-Signature": VECTOR}),
        _reason(body, _headers(timestamp="17731304x3")),
        _reason(body, _headers(signature=VECTOR.replace("sha256=", "sha1="))),
        _reason(body, _headers(signature="sha256=" + "z" * 64)),
        _reason(body, _headers(), now=TIMESTAMP + 301),
        _reason(body, _headers(), now=TIMESTAMP - 61),
        _reason(body[:100] + bytes([body[100] ^ 1]) + body[101:], _headers()),
    }
    assert codes == {
        "missing_signature",
        "missing_timestamp",
        "malformed_timestamp",
        "bad_prefix",
        "not_hex",
        "stale",
        "future",
        "mismatch",
    }


@pytest.mark.parametrize(
    ("headers", "code", "words"),
    [
        ({"X-Chatwoot-Timestamp": str(TIMESTAMP)}, "missing_signature", "X-Chatwoot-Signature"),
        ({"X-Chatwoot-Signature": VECTOR}, "missing_timestamp", "X-Chatwoot-Timestamp"),
        (_headers(timestamp=""), "missing_timestamp", "missing"),
        (_headers(timestamp="-5"), "malformed_timestamp", "malformed"),
        (_headers(timestamp="1773130443.5"), "malformed_timestamp", "malformed"),
        (_headers(signature=VECTOR.removeprefix("sha256=")), "bad_prefix", "sha256="),
        (_headers(signature="sha256=abc"), "not_hex", "hex"),
    ],
)
def test_malformed_headers(headers: dict[str, str], code: str, words: str) -> None:
    with pytest.raises(SignatureError, match=words) as info:
        verify(SECRET, _body(), headers, now=NOW)
    assert info.value.code == code


def test_stale_and_future_windows_are_configurable() -> None:
    body = _body()
    assert _reason(body, _headers(), now=TIMESTAMP + 301) == "stale"
    verify(SECRET, body, _headers(), now=TIMESTAMP + 301, max_age_s=400)
    assert _reason(body, _headers(), now=TIMESTAMP - 61) == "future"
    verify(SECRET, body, _headers(), now=TIMESTAMP - 61, max_future_s=120)
    # The replay window also lets the old test vector pass without an injected clock.
    verify(SECRET, body, _headers(), now=TIMESTAMP + 10**6, max_age_s=10**7)


def test_one_byte_change_fails() -> None:
    body = bytearray(_body())
    body[200] ^= 0x01
    assert _reason(bytes(body), _headers()) == "mismatch"


def test_trailing_newline_is_part_of_the_signature() -> None:
    assert _reason(_body().rstrip(b"\n"), _headers()) == "mismatch"


def test_wrong_secret_fails() -> None:
    with pytest.raises(SignatureError) as info:
        verify("fictional-webhook-secret-0002", _body(), _headers(), now=NOW)
    assert info.value.code == "mismatch"


def test_empty_secret_is_a_configuration_error_not_a_signature_error() -> None:
    with pytest.raises(ValueError, match="secret is empty") as info:
        verify("", _body(), _headers(), now=NOW)
    assert not isinstance(info.value, SignatureError)


@given(
    secret=st.text(min_size=1, max_size=64),
    body=st.binary(max_size=2048),
    timestamp=st.integers(min_value=0, max_value=4_000_000_000),
    skew=st.floats(min_value=-59, max_value=299, allow_nan=False),
)
def test_round_trip(secret: str, body: bytes, timestamp: int, skew: float) -> None:
    headers = {
        "X-Chatwoot-Signature": sign(secret, timestamp, body),
        "X-Chatwoot-Timestamp": str(timestamp),
    }
    verify(secret, body, headers, now=timestamp + skew)
    tampered = body + b"\x00"
    with pytest.raises(SignatureError):
        verify(secret, tampered, headers, now=timestamp + skew)
