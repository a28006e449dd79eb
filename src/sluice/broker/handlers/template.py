"""The ``template`` handler: keyword rules -> canned answers. Deterministic and instant.

It is the demo default and the load-test responder: no network, no model, the same input
always gives the same reply, so tests and benchmarks measure Sluice rather than an LLM.

Rules file (YAML)::

    rules:
      - keywords: [delivery, shipping, "track my order"]
        answer: "Orders ship within 2 working days ..."
      - keywords: [hello, hi]
        answer: "Hi! How can I help?"
        standalone: true    # only when no other rule matches
    fallback: "Thanks for your message! ..."
    handoff_keywords: [human, agent, "real person"]
    handoff_answer: "Connecting you with a member of our team."
    attachment_answer: "Thanks for the file ..."   # optional: attachment-only turns

Matching is case-insensitive, on word boundaries (``order`` does not match ``border``;
spaces inside a keyword match any run of whitespace), over all lines of the turn, so a
burst of several messages is answered once. Every matching rule contributes its answer, in
file order, so "where's my order? and when do you open?" gets both answers in one reply;
a ``standalone`` rule (greetings, thanks) answers only when no other rule matches.
A handoff keyword anywhere wins over every rule.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sluice.broker.base import Reply, Turn

__all__ = [
    "DEFAULT_HANDOFF_ANSWER",
    "DEFAULT_HANDOFF_KEYWORDS",
    "MAX_ANSWERS",
    "KeywordMatcher",
    "TemplateHandler",
    "TemplateRules",
    "TemplateRulesError",
    "default_rules_text",
    "load_rules",
]

#: Phrases that mean "let me talk to a person"; shared with the llm handler.
DEFAULT_HANDOFF_KEYWORDS: tuple[str, ...] = (
    "human",
    "agent",
    "real person",
    "live person",
    "operator",
    "representative",
    "speak to someone",
    "talk to someone",
    "speak to a person",
    "talk to a person",
)
DEFAULT_HANDOFF_ANSWER = "Thanks for your patience: I'm connecting you with a member of our team."

#: How many matching rules are combined into one reply, so a keyword-stuffed message does
#: not produce a wall of text.
MAX_ANSWERS = 3

_TOP_LEVEL = {"rules", "fallback", "handoff_keywords", "handoff_answer", "attachment_answer"}
_RULE_KEYS = {"keywords", "answer", "standalone"}


class TemplateRulesError(ValueError):
    """The rules file is unusable; the message names the file and the bad entry."""


def default_rules_text() -> str:
    """The bundled rules of the demo shop (an outdoor-gear store)."""
    root = resources.files("sluice.broker")
    return (root / "data" / "template_rules.yaml").read_text(encoding="utf-8")


class KeywordMatcher:
    """Case-insensitive whole-word matching of a set of keywords or phrases."""

    def __init__(self, keywords: Iterable[str]) -> None:
        words = [k.strip() for k in keywords if k and k.strip()]
        self.keywords: tuple[str, ...] = tuple(words)
        self._pattern: re.Pattern[str] | None = None
        if words:
            # Longest first, so a phrase wins over a word it starts with.
            alternatives = sorted({_phrase(k) for k in words}, key=len, reverse=True)
            self._pattern = re.compile(
                r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE
            )

    def search(self, text: str) -> bool:
        """Whether any keyword occurs in ``text`` as a whole word or phrase."""
        return self._pattern is not None and self._pattern.search(text) is not None


def _phrase(keyword: str) -> str:
    return r"\s+".join(re.escape(part) for part in keyword.split())


@dataclass(frozen=True)
class _Rule:
    matcher: KeywordMatcher
    answer: str
    standalone: bool = False


@dataclass(frozen=True)
class TemplateRules:
    """A parsed rules file."""

    rules: tuple[_Rule, ...]
    fallback: str
    handoff: KeywordMatcher
    handoff_answer: str
    attachment_answer: str | None


def load_rules(text: str, source: str = "template rules") -> TemplateRules:
    """Parse a rules document; errors name ``source`` and the offending entry."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateRulesError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise TemplateRulesError(f"{source} must be a mapping with 'rules' and 'fallback'")
    unknown = set(document) - _TOP_LEVEL
    if unknown:
        raise TemplateRulesError(
            f"{source}: unknown keys {sorted(unknown)} (expected {sorted(_TOP_LEVEL)})"
        )
    fallback = _text(document.get("fallback"), f"{source}: fallback")
    raw_rules = document.get("rules") or []
    if not isinstance(raw_rules, list):
        raise TemplateRulesError(f"{source}: rules must be a list")
    rules = [_rule(entry, f"{source}: rule #{i}") for i, entry in enumerate(raw_rules, start=1)]
    handoff_raw = document.get("handoff_keywords", list(DEFAULT_HANDOFF_KEYWORDS))
    handoff_answer = document.get("handoff_answer", DEFAULT_HANDOFF_ANSWER)
    attachment = document.get("attachment_answer")
    return TemplateRules(
        rules=tuple(rules),
        fallback=fallback,
        handoff=KeywordMatcher(_keywords(handoff_raw, f"{source}: handoff_keywords")),
        handoff_answer=_text(handoff_answer, f"{source}: handoff_answer"),
        attachment_answer=(
            None if attachment is None else _text(attachment, f"{source}: attachment_answer")
        ),
    )


def _rule(entry: Any, where: str) -> _Rule:
    if not isinstance(entry, dict) or not set(entry) <= _RULE_KEYS:
        raise TemplateRulesError(
            f"{where} must be a mapping with 'keywords', 'answer' and optionally 'standalone'"
        )
    keywords = _keywords(entry.get("keywords"), f"{where} keywords")
    if not keywords:
        raise TemplateRulesError(f"{where} has no keywords")
    standalone = entry.get("standalone", False)
    if not isinstance(standalone, bool):
        raise TemplateRulesError(f"{where} standalone must be true or false")
    return _Rule(
        KeywordMatcher(keywords), _text(entry.get("answer"), f"{where} answer"), standalone
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TemplateRulesError(f"{where} must be a non-empty string")
    return value.strip()


def _keywords(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(k, str | int) for k in value):
        raise TemplateRulesError(f"{where} must be a list of strings")
    return [str(k) for k in value if str(k).strip()]


class TemplateHandler:
    """Answers from keyword rules; ``rules_path=None`` uses the bundled shop rules.

    ``latency_ms`` adds an artificial delay per turn, so load tests can model a responder
    that takes time without paying for a real one.
    """

    name = "template"

    def __init__(self, rules_path: Path | None = None, *, latency_ms: float = 0) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if rules_path is None:
            self.rules = load_rules(default_rules_text(), "bundled template_rules.yaml")
        else:
            try:
                text = Path(rules_path).read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateRulesError(
                    f"template rules {rules_path} cannot be read: {exc.strerror or exc}"
                ) from None
            self.rules = load_rules(text, f"template rules {rules_path}")
        self.latency_ms = latency_ms

    async def answer(self, turn: Turn) -> Reply:
        """The reply for the turn's lines; see the module docstring for the rules."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)
        return self.reply_for(turn.content_text(), attachments=turn.attachments)

    def reply_for(self, text: str, *, attachments: int = 0) -> Reply:
        """The reply for ``text`` alone (synchronous: for the simulator and tests).

        Keywords are matched on what the customer typed only, never on our own
        ``[attachment]`` placeholder.
        """
        rules = self.rules
        if rules.handoff.search(text):
            return Reply(rules.handoff_answer, handoff=True, reason="customer asked for a human")
        if not text.strip() and attachments and rules.attachment_answer:
            return Reply(rules.attachment_answer)
        matched = [r for r in rules.rules if r.matcher.search(text)]
        specific = [r for r in matched if not r.standalone]
        answers = list(dict.fromkeys(r.answer for r in (specific or matched)))
        if not answers:
            return Reply(rules.fallback)
        return Reply("\n\n".join(answers[:MAX_ANSWERS]))
