"""Keeping webhook URLs out of library logs: httpx logs every request's URL at INFO.

Webhook URLs are credentials (a Slack incoming webhook's path *is* its token; other
receivers take ``user:password@``). Our own messages only ever use the masked URL; this
filter, installed on the ``httpx`` logger at import, masks whatever httpx prints.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["register_secret"]


class _SecretFilter(logging.Filter):
    """Masks registered secrets in records of a library logger (httpx logs every URL)."""

    def __init__(self) -> None:
        super().__init__("")
        self.replacements: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.replacements:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        masked = message
        for secret in sorted(self.replacements, key=len, reverse=True):
            masked = masked.replace(secret, self.replacements[secret])
        if masked != message:
            record.msg, record.args = masked, None
        return True


_SECRETS = _SecretFilter()
logging.getLogger("httpx").addFilter(_SECRETS)


def register_secret(url: str, masked: str, *, hide_path: bool) -> None:
    """Remember what must never appear in a library log line, and what to show instead.

    The whole URL, plus its parts on their own (httpx may print the URL normalised): the
    password, query values and, with ``hide_path``, the path after its first segment.
    """
    _SECRETS.replacements[url] = masked
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    pieces = [password or ""]
    pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    if hide_path:
        pieces.append(parts.path.lstrip("/").partition("/")[2])
    for piece in pieces:
        for variant in {piece, unquote(piece)}:
            if len(variant) >= 4:  # never mask common short strings all over httpx's logs
                _SECRETS.replacements[variant] = "***"
