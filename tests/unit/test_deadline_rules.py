"""The priority rules file (sluice.deadlines.rules): the first matching rule wins, every
condition must hold, and a bad file is refused with an error naming its file and line —
also by the settings, so `sluice serve` and `sluice validate` refuse to start with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.deadlines.facts import ConversationFacts
from sluice.deadlines.rules import RulesError, load_rules_file, parse_rules
from sluice.errors import ConfigError
from sluice.settings.config import Settings

GOOD = """\
rules:
  - name: vip
    when:
      contact: {tier: [vip, gold]}
    class: urgent
  - name: billing-mail
    when:
      inbox: [4, 7]
      label: billing
      channel: Channel::Email
    target_s: 20
  - name: everyone-else
    when:
    class: normal
"""


def test_the_first_matching_rule_wins_and_all_conditions_must_hold() -> None:
    rules = parse_rules(GOOD, "rules.yaml")
    vip = ConversationFacts(contact={"tier": "gold"}, inbox_id=4, labels=("billing",))
    assert rules.first_match(vip).name == "vip"  # type: ignore[union-attr]
    mail = ConversationFacts(inbox_id=7, labels=("x", "billing"), channel="Channel::Email")
    match = rules.first_match(mail)
    assert match is not None and match.name == "billing-mail" and match.target_ms == 20_000
    assert match.klass is None and match.line == 6
    wrong_channel = ConversationFacts(inbox_id=7, labels=("billing",), channel="Channel::Api")
    assert rules.first_match(wrong_channel).name == "everyone-else"  # type: ignore[union-attr]


def test_contact_attributes_compare_as_the_file_spells_them() -> None:
    rules = parse_rules(
        "rules:\n  - name: paying\n    when: {contact: {paid: True, seats: 10}}\n    class: high\n"
    )
    assert rules.first_match(ConversationFacts(contact={"paid": True, "seats": 10})) is not None
    assert rules.first_match(ConversationFacts(contact={"paid": False, "seats": 10})) is None
    assert rules.first_match(ConversationFacts(contact={"seats": 10})) is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("rules:\n  - name: a\n    class: urgnt\n", 3, "unknown class 'urgnt'"),
        (
            "rules:\n  - name: a\n    when: {tier: vip}\n    class: high\n",
            3,
            "unknown condition 'tier'",
        ),
        (
            "rules:\n  - name: a\n    class: high\n  - name: a\n    class: low\n",
            4,
            "used twice (first on line 2)",
        ),
        ("rules:\n  - name: a\n    target_s: -3\n", 3, "target_s must be seconds"),
        ("rules:\n  - name: a\n    when: {inbox: [4, x]}\n    class: high\n", 3, "inbox ids"),
        ("rules:\n  - name: a\n    when: {label: vip}\n", 2, "neither 'class' nor 'target_s'"),
        ("rules:\n  - name: a\n    clas: high\n", 3, "unknown key 'clas'"),
        ("rules:\n  - name: a\n    class: [high\n", 4, "not valid YAML"),
        ("rule:\n  - name: a\n", 1, "unknown key 'rule'"),
        (
            "rules:\n  - name: a\n    when: {priority: critical}\n    class: high\n",
            3,
            "Chatwoot priority",
        ),
    ],
)
def test_errors_name_the_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "/etc/sluice/rules.yaml")
    message = str(caught.value)
    assert message.startswith(f"/etc/sluice/rules.yaml:{line}: "), message
    assert words in message, message


def test_an_empty_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="empty"):
        parse_rules("", "r.yaml")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules_file(tmp_path / "nope.yaml")


def test_a_bad_file_refuses_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - name: vip\n    class: vipp\n", encoding="utf-8")
    monkeypatch.setenv("SLUICE_PRIORITY_RULES", str(bad))
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert f"{bad}:3: unknown class 'vipp'" in str(caught.value)
    assert caught.value.variables == ("SLUICE_PRIORITY_RULES",)
    bad.write_text(GOOD, encoding="utf-8")
    assert Settings().priority_rules == str(bad)
