"""The ``llm`` handler: any OpenAI-compatible chat-completions endpoint.

Works with OpenAI, Azure-style gateways, vLLM, Ollama, llama.cpp, LiteLLM...: one
``POST {base_url}/chat/completions`` with ``[system, *history, user turn]``.

The SLA drives the timeout. A reply generated after the deadline is worth less than a
human taking over, so the request gets at most the remaining budget minus a safety margin
(time to post the reply to Chatwoot), capped by ``max_timeout_s``; with less than
``min_budget_ms`` left the handler does not call the model at all and hands off.

Errors are classified for the queue: timeouts, transport errors, 408/429/5xx and empty or
malformed completions are retryable; any other 4xx (bad key, unknown model, bad request) is
not, because retrying cannot fix it. The API key is only ever put in the Authorization
header: it is kept as a SecretStr, never logged, and scrubbed from error messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from sluice.broker.base import HandlerError, Reply, Turn, now_ms
from sluice.broker.handlers.template import (
    DEFAULT_HANDOFF_ANSWER,
    DEFAULT_HANDOFF_KEYWORDS,
    KeywordMatcher,
)
from sluice.settings.config import redact_url, redact_urls_in

__all__ = ["DEFAULT_SYSTEM_PROMPT", "LlmHandler"]

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are the customer support assistant of an online shop, answering in a chat. "
    "Answer briefly, politely and in the customer's language. Several customer messages "
    "may arrive together: answer all of them in one reply. If you do not know something "
    "(an order's status, a policy you were not told), say that a colleague will follow up "
    "instead of guessing."
)

_ROLES = ("user", "assistant")
_MIN_TIMEOUT_S = 0.05
_EXCERPT = 200
_KEY_SPAN = 1024  # longer than any API key: see _excerpt


class LlmHandler:
    """Answers a turn with one chat-completions request.

    ``http`` lets the caller share a client (connection reuse across handlers, tests);
    without it the handler opens its own and :meth:`aclose` closes it.
    ``handoff_keywords`` catch "let me talk to a person" before spending a model call;
    pass ``()`` to leave that to the model.
    """

    name = "llm"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | SecretStr | None,
        system_prompt_path: Path | None = None,
        *,
        max_timeout_s: float = 20.0,
        min_budget_ms: float = 1500.0,
        safety_margin_ms: float = 1000.0,
        handoff_keywords: Sequence[str] = DEFAULT_HANDOFF_KEYWORDS,
        handoff_answer: str | None = DEFAULT_HANDOFF_ANSWER,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = now_ms,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {redact_url(base_url)!r}")
        if not model:
            raise ValueError("model must not be empty")
        if max_timeout_s <= 0:
            raise ValueError("max_timeout_s must be positive")
        if min_budget_ms < 0 or safety_margin_ms < 0:
            raise ValueError("min_budget_ms and safety_margin_ms must not be negative")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = (
            api_key if isinstance(api_key, SecretStr) or api_key is None else (SecretStr(api_key))
        )
        if system_prompt_path is None:
            self.system_prompt = DEFAULT_SYSTEM_PROMPT
        else:
            try:
                self.system_prompt = Path(system_prompt_path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"system prompt file {system_prompt_path} cannot be read: {exc.strerror or exc}"
                ) from None
            if not self.system_prompt:
                raise ValueError(f"system prompt file {system_prompt_path} is empty")
        self.max_timeout_s = max_timeout_s
        self.min_budget_ms = min_budget_ms
        self.safety_margin_ms = safety_margin_ms
        self.handoff = KeywordMatcher(handoff_keywords)
        self.handoff_answer = handoff_answer
        self._http = http
        self._owns_http = http is None
        self._clock = clock

    def __repr__(self) -> str:
        # Deliberately without the key, and without credentials inside LLM_BASE_URL.
        return f"LlmHandler(url={redact_url(self.url)!r}, model={self.model!r})"

    async def aclose(self) -> None:
        """Close the HTTP client if the handler opened it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def timeout_for(self, turn: Turn) -> float | None:
        """Seconds the request may take for this turn; None when the budget is nearly spent
        (below ``min_budget_ms``) and the turn should go to a human instead."""
        remaining = turn.remaining_ms(self._clock())
        if remaining < self.min_budget_ms:
            return None
        usable_s = (remaining - self.safety_margin_ms) / 1000.0
        return max(_MIN_TIMEOUT_S, min(self.max_timeout_s, usable_s))

    def messages_for(self, turn: Turn) -> list[dict[str, str]]:
        """The request's messages: system prompt, the history (oldest first), the turn."""
        messages = [{"role": "system", "content": self.system_prompt}]
        for item in turn.history:
            role, content = item.get("role"), item.get("content")
            if role in _ROLES and isinstance(content, str) and content.strip():
                messages.append({"role": role, "content": content})
        messages.append({"role": "user", "content": turn.text()})
        return messages

    async def answer(self, turn: Turn) -> Reply:
        """One completion for the turn, within the turn's SLA budget."""
        if self.handoff.search(turn.content_text()):
            return Reply(self.handoff_answer, handoff=True, reason="customer asked for a human")
        timeout_s = self.timeout_for(turn)
        if timeout_s is None:
            return Reply(None, handoff=True, reason="sla budget nearly spent")
        if not turn.text():
            return Reply(None)  # nothing the customer said: nothing to answer
        body = {"model": self.model, "messages": self.messages_for(turn)}
        data = await self._post(body, timeout_s)
        content = _content(data)
        if not content:
            raise HandlerError("llm returned an empty completion", retryable=True)
        return Reply(content)

    async def _post(self, body: dict[str, Any], timeout_s: float) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None and self._api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        if self._http is None:
            self._http = httpx.AsyncClient()
        started = time.monotonic()
        try:
            # httpx timeouts are per phase (connect, each read...); asyncio.timeout bounds
            # the whole exchange, which is what the SLA cares about.
            async with asyncio.timeout(timeout_s):
                response = await self._http.post(
                    self.url, json=body, headers=headers, timeout=httpx.Timeout(timeout_s)
                )
        except (TimeoutError, httpx.TimeoutException):
            raise HandlerError(
                f"llm request timed out after {timeout_s:.2f}s (sla budget)", retryable=True
            ) from None
        except httpx.HTTPError as exc:
            raise HandlerError(
                f"llm request failed: {type(exc).__name__}: {self._scrub(str(exc))}",
                retryable=True,
            ) from None
        elapsed_ms = (time.monotonic() - started) * 1000.0
        log.debug("llm %s answered %d in %.0f ms", self.model, response.status_code, elapsed_ms)
        status = response.status_code
        if status == 429:
            # OpenAI's rate limits answer 429 with the wait in Retry-After (Azure OpenAI's
            # provisioned deployments also when over capacity): throttled, not broken.
            raise HandlerError(
                f"llm returned HTTP 429: {self._excerpt(response)}",
                retryable=True,
                throttled=True,
                retry_after_s=_retry_after_s(response.headers.get("retry-after")),
            )
        if status == 408 or status >= 500:
            raise HandlerError(
                f"llm returned HTTP {status}: {self._excerpt(response)}", retryable=True
            )
        if status >= 300:
            raise HandlerError(
                f"llm returned HTTP {status}: {self._excerpt(response)}", retryable=False
            )
        try:
            return response.json()
        except ValueError:
            raise HandlerError(
                f"llm returned a body that is not JSON: {self._excerpt(response)}", retryable=True
            ) from None

    def _excerpt(self, response: httpx.Response) -> str:
        # Scrubbed before it is cut: a key echoed across the cut would match neither whole
        # nor by its tail, and its head would go out. The slice scrubbed runs past the cut
        # by more than any key is long (OpenAI's project keys are ~164 characters).
        text = self._scrub(response.text[: _EXCERPT + _KEY_SPAN])
        return text[:_EXCERPT].replace("\n", " ")

    def _scrub(self, text: str) -> str:
        """Servers sometimes echo the key (or part of it) in errors: never pass it on; nor
        the credentials of a URL quoted in the text (httpx errors may quote LLM_BASE_URL)."""
        text = redact_urls_in(text)
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            if secret:
                text = text.replace(secret, "***")
                if len(secret) > 8:
                    text = text.replace(secret[-8:], "***")
        return text


def _content(data: Any) -> str:
    """The first choice's text; '' for anything else (tool calls, refusals, odd shapes)."""
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, list):  # content parts, as some gateways return
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content.strip() if isinstance(content, str) else ""


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (RFC 9110 allows an HTTP date too: not worth parsing here,
    the queue's own back-off applies then)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None
