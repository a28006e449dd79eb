"""Signed webhook bodies for the intake benchmark: fixture 01 with a distinct message id
each (so every request is a real enqueue, not a duplicate), one JSON request per line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sluice.chatwoot.signature import sign

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "tests/fixtures/chatwoot/01_message_created_incoming_first.json"
)


def main(out: Path, count: int, secret: str) -> None:
    base = json.loads(FIXTURE.read_text())
    now = int(time.time())
    with out.open("w") as handle:
        for n in range(count):
            payload = dict(base)
            payload["id"] = 10_000_000 + n
            payload["conversation"] = dict(base["conversation"], id=1000 + n % 500)
            body = json.dumps(payload, separators=(",", ":"))
            signature = sign(secret, now, body.encode())
            handle.write(json.dumps({"body": body, "ts": str(now), "sig": signature}) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
