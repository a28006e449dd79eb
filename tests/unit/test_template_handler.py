"""The template handler: keyword rules, fallback, word boundaries, handoff, bursts."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from sluice.broker.base import CustomerLine, HandlerError, Reply, Turn, answer_or_handoff
from sluice.broker.config import Broker
from sluice.broker.handlers import (
    HandlerSettings,
    get_handler,
    load_handler_settings,
)
from sluice.broker.handlers.handoff import HandoffHandler
from sluice.broker.handlers.template import (
    MAX_ANSWERS,
    TemplateHandler,
    TemplateRulesError,
    load_rules,
)
from sluice.settings.config import ConfigError

BOT = Broker(name="bot", kind="ai")

RULES = """
rules:
  - keywords: [order, "where is my parcel"]
    answer: ORDER
  - keywords: [return, returns, refund]
    answer: RETURNS
  - keywords: [hours, open]
    answer: HOURS
  - keywords: [hi, hello]
    answer: HELLO
    standalone: true
fallback: FALLBACK
handoff_keywords: [human, "real person"]
handoff_answer: CONNECTING
attachment_answer: GOT-FILE
"""


def turn(*contents: str | None, attachments: int = 0, ids: list[int] | None = None) -> Turn:
    ids = ids or list(range(1, len(contents) + 1))
    lines = [
        CustomerLine(message_id=i, content=c, created_at_ms=1000.0 * i, attachments=0)
        for i, c in zip(ids, contents, strict=True)
    ]
    if attachments:
        lines.append(
            CustomerLine(
                message_id=max(ids, default=0) + 1,
                content=None,
                created_at_ms=99_000.0,
                attachments=attachments,
            )
        )
    return Turn(
        account_id=1,
        conversation_id=2,
        key="1:2",
        lines=lines,
        history=[],
        broker=BOT,
        deadline_ms=time.time() * 1000 + 30_000,
        attempt=1,
        last_attempt=False,
    )


@pytest.fixture
def handler(tmp_path: Path) -> TemplateHandler:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return TemplateHandler(path)


async def test_rule_matches(handler: TemplateHandler) -> None:
    assert await handler.answer(turn("Where is my ORDER?")) == Reply("ORDER")
    assert await handler.answer(turn("can I get a refund")) == Reply("RETURNS")


async def test_phrase_keyword_with_any_spacing(handler: TemplateHandler) -> None:
    assert (await handler.answer(turn("where  is my\nparcel"))).content == "ORDER"


async def test_fallback(handler: TemplateHandler) -> None:
    assert await handler.answer(turn("Do you sell tents?")) == Reply("FALLBACK")


async def test_word_boundaries(handler: TemplateHandler) -> None:
    # "border" contains "order", "returned" is not "return", "this" contains "hi",
    # "humane" contains "human": none of them match.
    assert (await handler.answer(turn("this border was humane"))).content == "FALLBACK"
    assert (await handler.answer(turn("I returned it"))).content == "FALLBACK"
    assert (await handler.answer(turn("order#123"))).content == "ORDER"  # punctuation is a boundary


async def test_standalone_rule_only_alone(handler: TemplateHandler) -> None:
    assert (await handler.answer(turn("hello"))).content == "HELLO"
    assert (await handler.answer(turn("hello, my order?"))).content == "ORDER"


async def test_handoff_request_wins(handler: TemplateHandler) -> None:
    reply = await handler.answer(turn("my order is late", "let me talk to a REAL   person"))
    assert reply.handoff is True
    assert reply.content == "CONNECTING"
    assert reply.reason == "customer asked for a human"
    assert (await handler.answer(turn("Human please"))).handoff


async def test_burst_is_answered_once_with_every_matching_rule(handler: TemplateHandler) -> None:
    reply = await handler.answer(turn("hi", "where is my order", "and when are you open?"))
    assert reply == Reply("ORDER\n\nHOURS")  # file order, the greeting dropped, one reply


async def test_burst_dedupes_and_caps_answers(tmp_path: Path) -> None:
    rules = (
        "rules:\n"
        + "".join(f"  - keywords: [k{i}]\n    answer: A{i}\n" for i in range(MAX_ANSWERS + 2))
        + "fallback: F\n"
    )
    path = tmp_path / "r.yaml"
    path.write_text(rules, encoding="utf-8")
    h = TemplateHandler(path)
    words = " ".join(f"k{i}" for i in range(MAX_ANSWERS + 2))
    reply = await h.answer(turn(words, "k0 again"))
    assert reply.content == "\n\n".join(f"A{i}" for i in range(MAX_ANSWERS))


async def test_attachments_only_turn(handler: TemplateHandler) -> None:
    t = turn(attachments=2)
    assert t.text() == "[attachment] [attachment]"
    assert await handler.answer(t) == Reply("GOT-FILE")
    # The placeholder never matches a keyword, and text with a file is matched normally.
    assert (await handler.answer(turn("refund", attachments=1))).content == "RETURNS"


async def test_attachments_only_without_attachment_answer_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("rules: []\nfallback: F\n", encoding="utf-8")
    assert (await TemplateHandler(path).answer(turn(attachments=1))).content == "F"


def test_turn_text_orders_lines_by_message_id() -> None:
    t = turn("second", "first", ids=[11, 10])
    assert t.text() == "first\nsecond"
    line = CustomerLine(message_id=1, content="see photo", created_at_ms=0, attachments=1)
    assert line.text() == "see photo [attachment]"


def test_turn_remaining_and_history_bound() -> None:
    t = Turn(
        account_id=1,
        conversation_id=1,
        key="k",
        lines=[],
        broker=BOT,
        history=[{"role": "user", "content": str(i)} for i in range(50)],
        deadline_ms=10_000,
        attempt=1,
        last_attempt=False,
    )
    assert t.remaining_ms(4_000) == 6_000
    assert t.remaining_ms(20_000) == 0
    assert len(t.history) == 20 and t.history[-1]["content"] == "49"


async def test_deterministic(handler: TemplateHandler) -> None:
    replies = {await handler.answer(turn("order and returns")) for _ in range(5)}
    assert len(replies) == 1


async def test_bundled_shop_rules() -> None:
    h = TemplateHandler()
    assert "dispatched" in ((await h.answer(turn("How long does delivery take?"))).content or "")
    assert "30 days" in ((await h.answer(turn("I want to return my boots"))).content or "")
    assert "size chart" in ((await h.answer(turn("what size should I take"))).content or "")
    assert "Saturday" in ((await h.answer(turn("opening hours?"))).content or "")
    assert (await h.answer(turn("can I speak to an agent"))).handoff
    assert (await h.answer(turn(attachments=1))).content


async def test_latency_setting() -> None:
    h = TemplateHandler(latency_ms=30)
    started = time.monotonic()
    await h.answer(turn("hi"))
    assert time.monotonic() - started >= 0.025


def test_rules_errors_name_the_entry() -> None:
    with pytest.raises(TemplateRulesError, match="fallback"):
        load_rules("rules: []\n", "f.yaml")
    with pytest.raises(TemplateRulesError, match=r"f.yaml: rule #2 has no keywords"):
        load_rules(
            "rules: [{keywords: [a], answer: x}, {keywords: [], answer: y}]\nfallback: f\n",
            "f.yaml",
        )
    with pytest.raises(TemplateRulesError, match="unknown keys"):
        load_rules("fallback: f\nrulez: []\n", "f.yaml")
    with pytest.raises(TemplateRulesError, match="cannot be read"):
        TemplateHandler(Path("/nonexistent/rules.yaml"))


def test_registry_builtins_and_errors(tmp_path: Path) -> None:
    settings = load_handler_settings({})
    assert get_handler("template", settings).name == "template"
    assert get_handler("handoff", settings).name == "handoff"
    with pytest.raises(ConfigError, match="LLM_BASE_URL and LLM_MODEL") as info:
        get_handler("llm", settings)
    assert info.value.variables == ("LLM_BASE_URL", "LLM_MODEL")
    llm_settings = load_handler_settings(
        {"LLM_BASE_URL": "http://x/v1/", "LLM_MODEL": "m", "LLM_API_KEY": "sk-secret"}
    )
    assert get_handler("llm", llm_settings).name == "llm"
    assert "sk-secret" not in repr(llm_settings)
    with pytest.raises(ConfigError, match="unknown handler 'nope'"):
        get_handler("nope", settings)
    with pytest.raises(ConfigError, match="cannot import"):
        get_handler("no_such_pkg_xyz.mod:F", settings)
    with pytest.raises(ConfigError, match="no attribute"):
        get_handler("sluice.broker.handlers.handoff:Nope", settings)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: 3\nfallback: f\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="SLUICE_TEMPLATE_RULES_FILE"):
        get_handler("template", load_handler_settings({"SLUICE_TEMPLATE_RULES_FILE": str(bad)}))


def make_custom(settings: HandlerSettings) -> HandoffHandler:
    """An import-path factory for the registry test."""
    return HandoffHandler("custom line")


def test_registry_import_path() -> None:
    handler = get_handler(f"{__name__}:make_custom", load_handler_settings({}))
    assert isinstance(handler, HandoffHandler) and handler.message == "custom line"


def test_handler_settings_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="LLM_MAX_TIMEOUT_S") as info:
        load_handler_settings({"LLM_MAX_TIMEOUT_S": "-1"})
    assert info.value.variables == ("LLM_MAX_TIMEOUT_S",)
    with pytest.raises(ConfigError, match="LLM_BASE_URL"):
        load_handler_settings({"LLM_BASE_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="SLUICE_TEMPLATE_LATENCY_MS"):
        load_handler_settings({"SLUICE_TEMPLATE_LATENCY_MS": "slow"})


async def test_handoff_handler() -> None:
    settings = load_handler_settings({"SLUICE_HANDOFF_MESSAGE": "An agent will be with you."})
    reply = await get_handler("handoff", settings).answer(turn("x"))
    assert reply.handoff and reply.content == "An agent will be with you."
    assert (await HandoffHandler(None).answer(turn("x"))).content is None


class _Failing:
    name = "failing"

    def __init__(self, retryable: bool) -> None:
        self.retryable = retryable

    async def answer(self, turn: Turn) -> Reply:
        raise HandlerError("boom", retryable=self.retryable)


async def test_answer_or_handoff() -> None:
    t = turn("x")
    with pytest.raises(HandlerError):
        await answer_or_handoff(_Failing(True), t)  # retry first
    last = dataclasses.replace(t, attempt=5, last_attempt=True)
    reply = await answer_or_handoff(_Failing(True), last)
    assert reply.handoff and reply.reason and "failing" in reply.reason
    assert (await answer_or_handoff(_Failing(False), t)).handoff  # no point retrying
