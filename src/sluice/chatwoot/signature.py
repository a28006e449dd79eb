"""Chatwoot webhook signatures (account webhooks since v4.11.2, agent bots and API inboxes
since v4.13.0).

Chatwoot signs ``"<timestamp>." + raw_body`` with HMAC-SHA256 and sends
``X-Chatwoot-Signature: sha256=<hex>`` plus ``X-Chatwoot-Timestamp: <unix seconds>``. We verify
over the raw bytes (re-serialising the JSON would change them), compare in constant time and
reject stale or future timestamps so a captured request cannot be replayed later.

Each failure has its own ``SignatureError.code`` so the intake can count them separately
(a burst of ``stale`` means clock skew, ``mismatch`` a wrong secret or an attacker). Reasons
never contain the secret or the expected signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final, Literal

SIGNATURE_HEADER: Final = "X-Chatwoot-Signature"
TIMESTAMP_HEADER: Final = "X-Chatwoot-Timestamp"
DELIVERY_HEADER: Final = "X-Chatwoot-Delivery"

_PREFIX: Final = "sha256="
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]{1,15}")

SignatureFailure = Literal[
    "missing_signature",
    "missing_timestamp",
    "malformed_timestamp",
    "bad_prefix",
    "not_hex",
    "stale",
    "future",
    "mismatch",
    "invalid",
]


class SignatureError(ValueError):
    """A webhook failed verification. ``reason`` is safe to log and to return to the caller;
    ``code`` is a stable identifier for metrics."""

    def __init__(self, reason: str, code: SignatureFailure = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code: SignatureFailure = code


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value Chatwoot would send: ``sha256=`` + hex HMAC over ``"<ts>." + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup: proxies and frameworks disagree on header casing, and a plain
    dict (tests, queued raw requests) is not case-insensitive like Starlette's Headers."""
    direct = headers.get(name)
    if direct is not None:
        return direct
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
    max_age_s: float = 300,
    max_future_s: float = 60,
) -> None:
    """Raise ``SignatureError`` unless ``body`` carries a valid, fresh Chatwoot signature.

    ``now`` is injected (epoch seconds) so tests can replay recorded vectors and so the intake
    uses one clock for every check. An empty ``secret`` is a configuration error (anyone could
    compute that HMAC) and raises a plain ``ValueError``.
    """
    if not secret:
        raise ValueError("webhook secret is empty: configure it or disable verification")
    signature = _header(headers, SIGNATURE_HEADER)
    if signature is None or not signature.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header", "missing_signature")
    raw_ts = _header(headers, TIMESTAMP_HEADER)
    if raw_ts is None or not raw_ts.strip():
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header", "missing_timestamp")
    raw_ts = raw_ts.strip()
    if not _DIGITS.fullmatch(raw_ts):
        raise SignatureError(
            f"malformed {TIMESTAMP_HEADER}: expected Unix seconds", "malformed_timestamp"
        )
    timestamp = int(raw_ts)
    signature = signature.strip()
    if not signature.startswith(_PREFIX):
        raise SignatureError(f"{SIGNATURE_HEADER} must start with '{_PREFIX}'", "bad_prefix")
    digest = signature[len(_PREFIX) :]
    if not _HEX64.fullmatch(digest):
        raise SignatureError(f"{SIGNATURE_HEADER} is not 64 hex digits", "not_hex")
    age = now - timestamp
    if age > max_age_s:
        raise SignatureError(
            f"stale timestamp: {age:.0f}s old, more than the {max_age_s:.0f}s allowed", "stale"
        )
    if -age > max_future_s:
        raise SignatureError(
            f"timestamp {-age:.0f}s in the future, more than the {max_future_s:.0f}s allowed",
            "future",
        )
    expected = sign(secret, timestamp, body)[len(_PREFIX) :]
    if not hmac.compare_digest(expected, digest.lower()):
        raise SignatureError("signature mismatch (wrong secret or modified body)", "mismatch")
