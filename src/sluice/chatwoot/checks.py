"""``sluice validate``'s Chatwoot checks (run when CHATWOOT_URL is set).

In order: Chatwoot answers at CHATWOOT_URL and which version it reports (``GET /api``); the
token is valid, and whose it is (``GET /api/v1/profile`` answers a user, and 401 "not
authorized for bots" to an agent bot's token); the account is reachable with it; what
delivers to Sluice (an agent bot linked to an inbox, an account webhook with the events
Sluice needs, an API inbox), as far as the token may see; whether signing works with this
version and secret; which version-dependent features this Chatwoot has.

A failure is something that stops messages or replies (Chatwoot unreachable, a token it
refuses, an account the token cannot use, a receiver without ``message_created`` or linked to
no inbox, a secret that makes Sluice refuse every delivery). A warning is something to look
at, or what cannot be determined with this token. Never prints the token or a secret.

This module runs them, and checks reachability and the version itself; the other checks
live by what they check: :mod:`~sluice.chatwoot.checks_account` (the token, the account,
the human brokers' agents), :mod:`~sluice.chatwoot.checks_receivers` (what delivers to
Sluice) and :mod:`~sluice.chatwoot.checks_signing` (the secret against the version and the
receivers). The names callers import stay importable from here.
"""

from __future__ import annotations

import time

from sluice.chatwoot.admin import ChatwootAdminClient
from sluice.chatwoot.checks_account import token_and_account_checks
from sluice.chatwoot.checks_receivers import (
    KIND_NAME,
    MAX_INBOXES,
    SETUP_HINT,
    WHERE_SECRET,
    Receiver,
    ReceiverKind,
)
from sluice.chatwoot.checks_signing import signing_check
from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.features import Version, features_of, parse_version
from sluice.settings.check import Check
from sluice.settings.config import Settings, redact_url

__all__ = [
    "KIND_NAME",
    "MAX_INBOXES",
    "SETUP_HINT",
    "WHERE_SECRET",
    "Receiver",
    "ReceiverKind",
    "check_chatwoot",
    "signing_check",
    "version_check",
]


def version_check(version: Version | None, reported: str | None) -> Check:
    """The reported version and what it means for Sluice (facts, by release)."""
    if version is None:
        return Check(
            "chatwoot version",
            "warn",
            "unknown (GET /api reported none): signing and the other version-dependent "
            "behaviour cannot be checked",
        )
    has, lacks = features_of(version)
    detail = f"{reported}; has: " + "; ".join(f.label() for f in has) if has else f"{reported}"
    if lacks:
        detail += "; lacks: " + "; ".join(f.label() for f in lacks)
    return Check("chatwoot version", "pass", detail)


async def check_chatwoot(settings: Settings, *, timeout_s: float = 5.0) -> list[Check]:
    """Every Chatwoot check; see the module docstring."""
    assert settings.chatwoot_url
    token = settings.chatwoot_api_token.get_secret_value() if settings.chatwoot_api_token else ""
    secret = (
        settings.chatwoot_webhook_secret.get_secret_value()
        if settings.chatwoot_webhook_secret
        else None
    )
    shown = redact_url(settings.chatwoot_url)
    checks: list[Check] = []
    async with ChatwootAdminClient(
        settings.chatwoot_url, token or "unset", timeout_s=timeout_s, max_retries=0
    ) as client:
        started = time.perf_counter()
        reported: str | None = None
        try:
            reported = await client.server_version()
        except ChatwootError as exc:
            if exc.status is None:
                checks.append(
                    Check(
                        "chatwoot reachable",
                        "fail",
                        f"{shown}: {exc.message}; CHATWOOT_URL must be Chatwoot's base URL, "
                        "reachable from Sluice",
                    )
                )
                return checks
            checks.append(
                Check(
                    "chatwoot reachable",
                    "warn",
                    f"{shown} answered GET /api with {exc.status}: is CHATWOOT_URL Chatwoot's "
                    "base URL (no path)?",
                )
            )
        else:
            elapsed = (time.perf_counter() - started) * 1000
            checks.append(
                Check("chatwoot reachable", "pass", f"{shown}: GET /api in {elapsed:.0f} ms")
            )
        version = parse_version(reported)
        checks.append(version_check(version, reported))
        receivers: list[Receiver] | None = None
        if not token:
            checks.append(
                Check(
                    "chatwoot token",
                    "fail",
                    "CHATWOOT_API_TOKEN is not set: Sluice cannot post replies; use an "
                    "administrator's access token (Profile settings → Access Token)",
                )
            )
        else:
            more, receivers = await token_and_account_checks(client, settings, version)
            checks += more
        checks.append(signing_check(secret, version, receivers))
    return checks
