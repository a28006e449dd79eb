"""Priority rules: what an account promised particular customers, in a YAML file.

``SLUICE_PRIORITY_RULES`` names the file. Each rule matches a message by its
conversation's inbox, labels, channel, Chatwoot priority and the contact's custom
attributes (the customer tier a CRM sync writes there), and gives it a class, a target, or
both::

    rules:
      - name: vip                      # unique; the deadline source is "rule:vip"
        when:
          contact: {tier: [vip, gold]} # contact custom attribute: any of the values
        class: urgent
      - name: billing-mail
        when:
          inbox: [4, 7]                # any of these inbox ids
          label: billing               # the conversation carries this label (any of a list)
          channel: Channel::Email      # Chatwoot's channel_type (any of a list)
        target_s: 20                   # replaces the class's target for these messages

All conditions of a rule must hold (an empty ``when`` matches everything: a catch-all
last rule). **The first rule that matches wins**, in file order: put the specific ones
first. That is simpler to read than "most specific wins" and cannot tie.

The file is checked when the settings load (``sluice validate``, ``sluice serve``): an
error names the file and line (PyYAML's marks) and Sluice refuses to start, so a typo
never silently demotes a VIP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sluice.deadlines.facts import ConversationFacts
from sluice.queue.priority import DEFAULT_TARGETS_MS

_CONDITIONS = ("inbox", "label", "channel", "priority", "contact")
_RULE_KEYS = ("name", "when", "class", "target_s")
_CHATWOOT_PRIORITIES = ("urgent", "high", "medium", "low")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    line: int  # 1-based, for messages and the dashboard
    inboxes: frozenset[int] = frozenset()
    labels: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()
    contact: Mapping[str, frozenset[str]] = field(default_factory=dict)
    klass: str | None = None
    target_ms: int | None = None

    def matches(self, facts: ConversationFacts) -> bool:
        if self.inboxes and facts.inbox_id not in self.inboxes:
            return False
        if self.labels and not self.labels.intersection(facts.labels):
            return False
        if self.channels and facts.channel not in self.channels:
            return False
        if self.priorities and (facts.priority or "") not in self.priorities:
            return False
        for attribute, wanted in self.contact.items():
            value = facts.contact.get(attribute)
            if value is None or _text(value) not in wanted:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Rules:
    rules: tuple[Rule, ...]
    source: str = ""

    def first_match(self, facts: ConversationFacts) -> Rule | None:
        """The first rule, in file order, whose conditions all hold."""
        return next((r for r in self.rules if r.matches(facts)), None)


def load_rules_file(path: str | Path) -> Rules:
    """Read and check a rules file; :class:`RulesError` names the file and line."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{where}: cannot read the priority rules file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RulesError(f"{where}: the priority rules file is not UTF-8") from None
    return parse_rules(text, where)


def parse_rules(text: str, where: str = "<rules>") -> Rules:
    """Check the YAML text of a rules file (see the module docstring for the format)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RulesError(f"{where}{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"{where}: not valid YAML: {exc}") from None
    if root is None:
        raise RulesError(f"{where}: the file is empty; expected 'rules:' with a list of rules")
    top = _mapping(root, where, "the file")
    unknown = [k for k in top if k != "rules"]
    if unknown:
        raise RulesError(
            _at(where, top[unknown[0]][0], f"unknown key {unknown[0]!r}; expected 'rules'")
        )
    if "rules" not in top:
        raise RulesError(_at(where, root, "missing 'rules:' (a list of rules)"))
    items = top["rules"][1]
    if not isinstance(items, SequenceNode):
        raise RulesError(_at(where, items, "'rules' must be a list"))
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for node in items.value:
        rule = _rule(node, where)
        if rule.name in seen:
            raise RulesError(
                _at(
                    where,
                    node,
                    f"rule name {rule.name!r} is used twice (first on line {seen[rule.name]})",
                )
            )
        seen[rule.name] = rule.line
        rules.append(rule)
    return Rules(tuple(rules), where)


def _rule(node: Node, where: str) -> Rule:
    fields = _mapping(node, where, "a rule")
    for key, (key_node, _) in fields.items():
        if key not in _RULE_KEYS:
            raise RulesError(
                _at(
                    where,
                    key_node,
                    f"unknown key {key!r} in a rule; known: {', '.join(_RULE_KEYS)}",
                )
            )
    if "name" not in fields:
        raise RulesError(_at(where, node, "a rule needs a 'name'"))
    name = _scalar(fields["name"][1], where, "'name'")
    if not 0 < len(name) <= 48 or not all(
        c.isascii() and (c.isalnum() or c in "_-.") for c in name
    ):
        raise RulesError(
            _at(
                where,
                fields["name"][1],
                f"rule name {name!r} must be 1-48 letters, digits, '_', '-', '.'",
            )
        )
    klass: str | None = None
    if "class" in fields:
        klass = _scalar(fields["class"][1], where, "'class'")
        if klass not in DEFAULT_TARGETS_MS:
            known = ", ".join(DEFAULT_TARGETS_MS)
            raise RulesError(
                _at(where, fields["class"][1], f"unknown class {klass!r}; known: {known}")
            )
    target: int | None = None
    if "target_s" in fields:
        raw = _scalar(fields["target_s"][1], where, "'target_s'")
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or not 0 < seconds <= 86_400:
            raise RulesError(
                _at(
                    where,
                    fields["target_s"][1],
                    f"target_s must be seconds between 0 and 86400, got {raw!r}",
                )
            )
        target = max(1, round(seconds * 1000))
    if klass is None and target is None:
        raise RulesError(_at(where, node, f"rule {name!r} gives neither 'class' nor 'target_s'"))
    conditions: dict[str, Any] = {}
    if "when" in fields:
        when_node = fields["when"][1]
        if not (isinstance(when_node, ScalarNode) and when_node.value in ("", "~", "null")):
            for key, (key_node, value_node) in _mapping(when_node, where, "'when'").items():
                if key not in _CONDITIONS:
                    known = ", ".join(_CONDITIONS)
                    raise RulesError(
                        _at(where, key_node, f"unknown condition {key!r}; known: {known}")
                    )
                conditions[key] = _condition(key, value_node, where)
    return Rule(
        name=name,
        line=node.start_mark.line + 1,
        inboxes=conditions.get("inbox", frozenset()),
        labels=conditions.get("label", frozenset()),
        channels=conditions.get("channel", frozenset()),
        priorities=conditions.get("priority", frozenset()),
        contact=conditions.get("contact", {}),
        klass=klass,
        target_ms=target,
    )


def _condition(key: str, node: Node, where: str) -> Any:
    if key == "contact":
        attributes = _mapping(node, where, "'contact'")
        if not attributes:
            raise RulesError(_at(where, node, "'contact' names no attribute"))
        return {
            name: frozenset(_values(v, where, f"contact {name!r}"))
            for name, (_, v) in attributes.items()
        }
    values = _values(node, where, repr(key))
    if key == "inbox":
        ids: set[int] = set()
        for value in values:
            if not value.isdigit() or int(value) < 1:
                raise RulesError(
                    _at(where, node, f"inbox must be inbox ids (positive integers), got {value!r}")
                )
            ids.add(int(value))
        return frozenset(ids)
    if key == "priority":
        for value in values:
            if value not in _CHATWOOT_PRIORITIES:
                known = ", ".join(_CHATWOOT_PRIORITIES)
                raise RulesError(
                    _at(where, node, f"unknown Chatwoot priority {value!r}; known: {known}")
                )
    return frozenset(values)


def _values(node: Node, where: str, what: str) -> list[str]:
    """A scalar or a non-empty list of scalars, as text."""
    if isinstance(node, SequenceNode):
        if not node.value:
            raise RulesError(_at(where, node, f"{what} is an empty list"))
        return [_scalar(item, where, what) for item in node.value]
    return [_scalar(node, where, what)]


def _mapping(node: Node, where: str, what: str) -> dict[str, tuple[Node, Node]]:
    if not isinstance(node, MappingNode):
        raise RulesError(_at(where, node, f"{what} must be a mapping (key: value)"))
    out: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node, where, "a key")
        if key in out:
            raise RulesError(_at(where, key_node, f"{key!r} appears twice"))
        out[key] = (key_node, value_node)
    return out


def _scalar(node: Node, where: str, what: str) -> str:
    if not isinstance(node, ScalarNode):
        raise RulesError(_at(where, node, f"{what} must be a single value"))
    text = str(node.value).strip()
    # YAML spells a boolean True, true or TRUE; a checkbox attribute reads as true/false.
    return text.lower() if text.lower() in ("true", "false") else text


def _at(where: str, node: Node, message: str) -> str:
    return f"{where}:{node.start_mark.line + 1}: {message}"


def _text(value: object) -> str:
    """A custom attribute as the rule file would spell it (YAML scalars are text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """The rules as plain data (for the dashboard and `sluice validate`)."""
    return [
        {"name": r.name, "line": r.line, "class": r.klass, "target_ms": r.target_ms} for r in rules
    ]
