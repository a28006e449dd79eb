"""Webhook bodies parsed strictly: what Chatwoot's Rails serializer emits is accepted;
anything a hostile or broken sender could use to make two parsers disagree, or to crash the
parser, is refused with a ``ValueError`` (the intake answers 400)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A \uD800-\uDFFF escape: legal JSON only as a high-low pair (an emoji escaped by a
# serializer); a lone one decodes to a string that cannot be encoded as UTF-8 again.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json(body: bytes) -> Any:
    """Decode a webhook body as strict UTF-8 JSON (RFC 8259 plus the I-JSON rules, RFC 7493).

    ``json.loads`` alone is lenient in ways that matter at a trust boundary: it guesses
    UTF-16/32 from the bytes (the signature covers the bytes, so another parser could read a
    different document), keeps the last of duplicated keys (a proxy or an auditing tool may
    keep the first), accepts ``NaN``/``Infinity`` (not JSON; they break ``json.dumps``
    elsewhere with ``allow_nan=False``), turns ``1e999`` into ``inf``, and decodes a lone
    surrogate escape (``"\\ud800"``) into a string that cannot be encoded as UTF-8: the
    message would then fail in every handler that sends it anywhere, a poison message. All
    of those raise ``ValueError`` here; nesting deeper than the stack raises
    ``RecursionError``, which the caller turns into a 400 as well. Integers are not
    bounded: integrators put long numbers in ``custom_attributes``, and Python refuses
    integers of more than 4300 digits by itself.
    """
    text = body.decode("utf-8")  # strict: no guessing; a BOM is then refused by json
    payload = json.loads(
        text,
        object_pairs_hook=_unique_keys,
        parse_float=_finite_float,
        parse_constant=_no_constant,
    )
    if _SURROGATE_ESCAPE.search(text):  # rare: only then pay for a second pass
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone surrogate escape in a JSON string") from None
    return payload


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
