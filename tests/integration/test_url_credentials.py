"""Credentials inside URL settings (CHATWOOT_URL, REDIS_URL, LLM_BASE_URL, ...) never reach a
log line: not the configuration line every process logs at start-up, not a library's line
(httpx logs each request's full URL), not an error message. `sluice validate --json` is
checked in tests/cli/test_validate.py, the health document in tests/api/test_secrets.py."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from sluice import logs
from sluice.broker.handlers import load_handler_settings
from sluice.broker.handlers.llm import LlmHandler
from sluice.chatwoot.client import ChatwootClient
from sluice.service.runtime import open_runtime
from sluice.settings.config import ConfigError, load_settings, redact_url, redact_urls_in

CHATWOOT_URL = "https://user:s3cret@chat.example.com/?api_key=abc"
SECRETS = ("s3cret", "abc")


def clean(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


async def test_startup_configuration_line_hides_url_credentials(
    redis_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        {"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, "CHATWOOT_URL": CHATWOOT_URL}
    )
    caplog.set_level(logging.DEBUG)
    async with open_runtime(settings, redis_url):
        pass
    summary = [r for r in caplog.records if r.getMessage().startswith("sluice config: ")]
    assert len(summary) == 1
    assert "chatwoot chat.example.com;" in summary[0].getMessage()
    full = [r for r in caplog.records if r.getMessage().startswith("sluice effective config")]
    assert len(full) == 1
    assert "CHATWOOT_URL=https://user:***@chat.example.com/?api_key=***" in full[0].getMessage()
    for record in caplog.records:
        assert clean(record.getMessage()), record.getMessage()
        assert clean(repr(record.__dict__)), "a secret is in a record's extra fields"


def test_describe_redacts_every_url_setting() -> None:
    settings = load_settings(
        {"CHATWOOT_URL": CHATWOOT_URL, "REDIS_URL": "redis://default:s3cret@redis:6379/0"}
    )
    summary = settings.describe()
    assert clean(repr(summary))
    assert summary["REDIS_URL"] == "redis://default:***@redis:6379/0"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (CHATWOOT_URL, "https://user:***@chat.example.com/?api_key=***"),
        ("https://tok123456@host/x", "https://***@host/x"),  # a token as the user name
        ("https://h/?access_token=abc&page=2", "https://h/?access_token=***&page=2"),
        (
            "https://h/?token=abc&secret=abc&password=abc",
            "https://h/?token=***&secret=***&password=***",
        ),
        ("https://h/?key=abc&sig=abc&auth=abc", "https://h/?key=***&sig=***&auth=***"),
        ("https://h/cb#access_token=abc&x=1", "https://h/cb#access_token=***&x=1"),
        ("https://h/?q=1&lang=en", "https://h/?q=1&lang=en"),  # nothing to hide: unchanged
        ("https://chat.example.com", "https://chat.example.com"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_urls_inside_free_text_are_redacted() -> None:
    text = f'HTTP Request: POST {CHATWOOT_URL}/api/v1/accounts/1 "HTTP/1.1 200 OK"'
    redacted = redact_urls_in(text)
    assert clean(redacted)
    assert redacted.startswith("HTTP Request: POST https://user:***@chat.example.com/")
    assert redacted.endswith('"HTTP/1.1 200 OK"')
    assert redact_urls_in("no url here: user:s3cret") == "no url here: user:s3cret"


@pytest.fixture
def configured_logging() -> Iterator[io.StringIO]:
    """The real handler `sluice` installs, writing into a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    logs.configure("text", logging.DEBUG)
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_library_log_lines_are_redacted_on_the_way_out(
    configured_logging: io.StringIO, fmt: str
) -> None:
    if fmt == "json":
        logs.configure("json", logging.DEBUG)
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(configured_logging)
    # What httpx logs for each request: its URL as an argument of a %-template.
    logging.getLogger("httpx").info(
        'HTTP Request: %s %s "%s %d %s"', "POST", CHATWOOT_URL, "HTTP/1.1", 200, "OK"
    )
    logging.getLogger("sluice.test").warning("cannot reach %s", {"url": CHATWOOT_URL})
    out = configured_logging.getvalue()
    assert "HTTP Request: POST https://user:***@chat.example.com/" in out
    assert clean(out), out


async def test_objects_holding_url_settings_print_without_credentials() -> None:
    async with ChatwootClient(CHATWOOT_URL, "api-token") as client:
        assert clean(repr(client))
    llm = LlmHandler(CHATWOOT_URL, "model", None)
    assert clean(repr(llm))
    with pytest.raises(ValueError) as refused:
        LlmHandler("ftp://user:s3cret@llm.example.com/?api_key=abc", "model", None)
    assert clean(str(refused.value))
    with pytest.raises(ConfigError) as bad:
        load_handler_settings({"LLM_BASE_URL": "ftp://user:s3cret@llm.example.com/?key=abc"})
    assert clean(str(bad.value)) and "LLM_BASE_URL" in str(bad.value)


def test_library_request_lines_are_hidden_unless_debug() -> None:
    logs.configure("text", logging.INFO)
    try:
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        assert logging.getLogger("sluice.chatwoot").isEnabledFor(logging.INFO)
        logs.configure("text", logging.DEBUG)
        assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
    finally:
        logs.configure("text", logging.DEBUG)
