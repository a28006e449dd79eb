"""Refuse a signed Chatwoot webhook that was already received once (a replay).

The signature (:mod:`sluice.chatwoot.signature`) proves who sent a request and bounds *when*
(the timestamp must be within ``max_age_s``, 300 s, and at most 60 s ahead), but within that
window a captured request can be sent again. The ``X-Chatwoot-Delivery`` dedupe does not
stop it: that header is not signed, so the replay just carries a new one.

What is signed is ``"<timestamp>." + body``, so a (timestamp, signature) pair identifies one
signed request. :class:`ReplayGuard` records each pair once in Redis and refuses it the second
time. A genuine Chatwoot retry passes: Chatwoot takes ``Time.now`` and signs again on every
attempt (docs/chatwoot-facts.md, section 2), so a retry is a new pair, while its delivery id
stays the same for the intake's own dedupe.

Call it only after :func:`sluice.chatwoot.signature.verify` has accepted the request: an
unverified pair would let anyone fill Redis with keys, and would let an attacker "use up" a
pair before the real request arrives.

Pairs are normalised the way ``verify`` reads them, so a replay cannot slip through as a new
pair with the same meaning: the timestamp as an integer (``verify`` accepts leading zeros
and surrounding blanks) and the signature's hex in lower case without its ``sha256=`` prefix
(``verify`` compares case-insensitively).

A pair is kept a little longer than it can be accepted: ``window_s`` (the signature's max age)
plus ``max_future_s`` (a timestamp up to that far ahead is accepted, so the pair can arrive
that much earlier than its window ends) plus ``margin_s`` for clock differences between this
process and Redis. Memory: one string key per signed webhook for seven minutes (420 s with
the defaults); Redis 7 reports about 184 bytes per key (MEMORY USAGE), so 30 webhooks/s hold
about 12,600 keys, some 2.5 MB.
"""

from __future__ import annotations

import secrets
from typing import Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

__all__ = ["ReplayGuard"]

_PREFIX: Final = "sha256="

# SET NX with an expiry, and idempotent per call: the caller's token is stored, so a call
# that redis-py sends again after a lost reply (its automatic retry on a timeout) finds its
# own token and is still a first use, not a replay of itself. A call that fails before it
# reaches Redis never recorded anything.
#
# KEYS: 1 the pair's key
# ARGV: 1 this call's token, 2 expiry (ms)
# Returns 1 when this call recorded the pair (first use), 0 when another call had.
_FIRST_USE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0
"""


class ReplayGuard:
    """Records each verified (timestamp, signature) pair once; a second use is a replay.

    ``key_prefix`` is what every key starts with, normally :attr:`sluice.keys.QueueKeys.replays`
    (``sluice:{<queue>}:replay:``) so the keys share the queue's Redis Cluster slot like the
    intake's ``delivery:<id>`` keys; the guard adds ``<timestamp>:<hex>``.
    ``window_s`` is the signature's maximum age (the intake's ``max_age_s``, 300 s).
    """

    def __init__(
        self,
        redis: aioredis.Redis | aioredis.RedisCluster,
        key_prefix: str,
        window_s: float = 300,
        *,
        max_future_s: float = 60,
        margin_s: float = 60,
    ) -> None:
        if not window_s > 0:
            raise ValueError("window_s must be positive")
        if max_future_s < 0 or margin_s < 0:
            raise ValueError("max_future_s and margin_s must not be negative")
        self.redis = redis
        self.key_prefix = key_prefix
        self.window_s = window_s
        self.ttl_ms = max(1, round((window_s + max_future_s + margin_s) * 1000))
        self._script: AsyncScript = redis.register_script(_FIRST_USE)

    def key(self, timestamp: str, signature: str) -> str:
        """The Redis key of a pair, normalised (see the module docstring)."""
        return f"{self.key_prefix}{_timestamp(timestamp)}:{_digest(signature)}"

    async def first_use(self, timestamp: str, signature: str) -> bool:
        """True the first time this pair is seen within its window (and records it); False
        for a replay. ``timestamp`` and ``signature`` are the raw ``X-Chatwoot-Timestamp``
        and ``X-Chatwoot-Signature`` header values of a request that passed ``verify``.

        A Redis error propagates: the caller decides (the intake answers 429 or spools, as
        for any other Redis failure), nothing is recorded when the call did not reach Redis.
        """
        token = secrets.token_hex(8)
        recorded = await self._script(
            keys=[self.key(timestamp, signature)], args=[token, self.ttl_ms]
        )
        return bool(int(recorded))


def _timestamp(raw: str) -> str:
    """``raw`` as ``verify`` reads it: blanks stripped, an integer without leading zeros."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError("timestamp must be Unix seconds (verify the signature first)")
    return str(int(text))


def _digest(raw: str) -> str:
    """``raw`` as ``verify`` compares it: blanks stripped, ``sha256=`` dropped, lower case."""
    text = raw.strip()
    if text[: len(_PREFIX)].lower() == _PREFIX:
        text = text[len(_PREFIX) :]
    text = text.lower()
    if not text or len(text) > 128 or not all(c in "0123456789abcdef" for c in text):
        raise ValueError("signature must be hex digits (verify the signature first)")
    return text
