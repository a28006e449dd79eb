"""Partition hash tags (docs/partitions.md): which tags a queue's partitions may have, and
that a layout, not a guess, turns a partition number into keys."""

from __future__ import annotations

import pytest

from sluice.keys import QueueKeys, partition_tag, salted_tag
from sluice.queue.layout import Layout, _layout


def test_plain_and_salted_tags() -> None:
    assert partition_tag("inbound", 0) == "inbound"
    assert partition_tag("inbound", 2) == "inbound#2"
    assert salted_tag("inbound", 2, 0) == "inbound#2"
    assert salted_tag("inbound", 2, 7) == "inbound~7#2"
    assert QueueKeys("inbound", 2, "inbound~7#2").prefix == "sluice:{inbound~7#2}:"
    assert QueueKeys("inbound", 2, "inbound~7#2").ready == "sluice:{inbound~7#2}:ready"
    assert QueueKeys("inbound", 2).tag == "inbound#2"  # resolved when none is given


@pytest.mark.parametrize(
    ("partition", "tag"),
    [
        (0, "inbound~1#0"),  # partition 0 keeps the queue's own tag
        (2, "inbound~1#1"),  # another partition's
        (1, "other~1#1"),  # another queue's
        (1, "inbound~0#1"),  # salt 0 is the plain tag, never spelled so
        (1, "inbound#1}x"),
    ],
)
def test_a_tag_of_another_queue_or_partition_is_refused(partition: int, tag: str) -> None:
    with pytest.raises(ValueError, match="is not a hash tag"):
        QueueKeys("inbound", partition, tag)


def test_the_layout_names_each_partitions_keys() -> None:
    base = QueueKeys("q")
    # What layout.lua answers: status, partitions, previous, epoch, highest, tags of 1.. .
    layout = _layout([b"ok", 4, 0, 3, 4, b"q~3#1", b"", b"q#3"])
    assert layout.tags == ("", "q~3#1", "", "q#3")
    assert [layout.keys(base, p).prefix for p in range(4)] == [
        "sluice:{q}:",
        "sluice:{q~3#1}:",
        "sluice:{q#2}:",  # none recorded (an older layout): the plain tag
        "sluice:{q#3}:",
    ]
    # A layout written before tags were recorded: every partition on its plain tag.
    old = Layout(3, 0, 1, 3)
    assert [old.keys(base, p) for p in range(3)] == [QueueKeys("q", p) for p in range(3)]
