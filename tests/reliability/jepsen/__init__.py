"""A randomized, Jepsen-style fault checker for Sluice's promise.

Sluice runs as real processes (a private Redis, the API and several workers, each behind
its own fault proxy: :mod:`.cluster`) while customers write and a seeded nemesis pauses,
partitions, kills and slows its parts (:mod:`.nemesis`). Everything the queue did is
recorded from its event stream, everything Chatwoot saw from the simulator
(:mod:`.history`), and pure functions decide afterwards whether the promise held
(:mod:`.checker`, over the types of :mod:`.model`):

- every message accepted with a 2xx ends as exactly one reply, or a dead letter with its
  reason, or a counted handoff;
- replies of a conversation arrive in order;
- no reply comes from a runner whose lease had passed (or whose job was reserved again);
- no job is dead-lettered without ever having run.

Scenarios: ``tests/reliability/jepsen/test_jepsen.py`` (a short run in the fast suite, the
long one with ``make test-jepsen``).
"""
