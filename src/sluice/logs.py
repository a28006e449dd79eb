"""Logging setup: readable text for people, one JSON object per line for machines.

Every line goes through :class:`RedactUrls` on the way out: libraries print the URLs they
talk to (httpx logs each request's full URL at INFO, exceptions quote it), and a URL setting
may carry credentials (``https://user:pw@chat.example.com``, ``?api_key=``). Sluice's own
lines redact at the source (:func:`sluice.settings.config.redact_url`); this filter is the net under
everyone else's.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

from sluice.settings.config import redact_urls_in


class RedactUrls(logging.Filter):
    """Replaces credentials in URLs of a record's message by ``***`` (never drops a record).

    On the handler, not a logger, so it sees the records that propagate from every library.
    A record without ``://`` in its template or arguments is left alone without formatting.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _may_hold_url(record):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        redacted = redact_urls_in(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _may_hold_url(record: logging.LogRecord) -> bool:
    if "://" in str(record.msg):
        return True
    args = record.args
    if not args:
        return False
    values = args.values() if isinstance(args, dict) else args
    return any("://" in str(value) for value in values)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra={"fields": {...}}``;
    ``pid`` too when ``process`` (several processes share one log)."""

    def __init__(self, *, process: bool = False) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.process:
            entry["pid"] = record.process
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


#: Libraries whose per-request INFO lines are hidden unless the level is DEBUG.
QUIET_LIBRARIES = ("httpx", "httpcore")


def configure(
    fmt: Literal["text", "json"] = "text", level: int = logging.INFO, *, process: bool = False
) -> None:
    """Sluice's log lines on stderr; ``process`` names the process in each line (the API
    processes of `sluice serve --workers` share one log)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactUrls())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process=process))
    else:
        pid = " [%(process)d]" if process else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s{pid} %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx and httpcore log every request at INFO: one line per Chatwoot call and, in the
    # demo, per webhook, which buries Sluice's own lines (the demo printed 1,884 of them in
    # its first 1,991). Sluice logs the requests that fail itself; DEBUG shows them all.
    for chatty in QUIET_LIBRARIES:
        logging.getLogger(chatty).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.WARNING
        )
