"""The API's OpenAPI schema fuzzed with schemathesis against a real `sluice serve`
process: whatever the input, never a 500."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import redis
import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import TOKEN

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_input_makes_a_500(redis_url: str, queue_name: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "REDIS_URL": redis_url,
        "SLUICE_QUEUE": queue_name,
        "SLUICE_ADMIN_TOKEN": TOKEN,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the server's own announcement is the event we wait for
            if "API listening on" in line:
                break
        else:
            raise AssertionError("sluice serve did not start")
        base = f"http://127.0.0.1:{port}"
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        strategy = schema.as_strategy()
        headers = {"Authorization": f"Bearer {TOKEN}"}

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, headers=headers, timeout=10)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

        fuzz()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"sluice:{{{queue_name}}}:*"))
        if keys:
            client.delete(*keys)
        client.close()
