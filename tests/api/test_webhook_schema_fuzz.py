"""POST /webhooks/chatwoot fuzzed by schemathesis *from its OpenAPI description* (body and
X-Chatwoot-* headers, valid and invalid data) against a real `sluice serve` process, once
without and once with a webhook secret. Whatever the input: never a 5xx, an answer within
Chatwoot's 5 s timeout (no hang), and a refused request changes nothing in Redis. With a
secret, nothing unsigned is ever accepted.

Also here, because it needs the server as a separate process to look at its memory: an
oversized or endless body is cut at the limit, not read whole."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from sluice.api.webhooks import WEBHOOK_PATH
from sluice.chatwoot.signature import sign

from ..servers import proc_status_kb
from .conftest import TOKEN
from .served import serve
from .snapshot import redis_state, without

SECRET = "fictional-webhook-secret-0002"
ANSWER_WITHIN_S = 5.0  # Chatwoot gives up on a webhook after 5 s
REFUSED_UNSIGNED = {401, 413, 415}  # with a secret: what unsigned input may get


@pytest.mark.parametrize("secret", [None, SECRET], ids=["unsigned", "with-secret"])
def test_webhook_from_its_schema(redis_url: str, queue_name: str, secret: str | None) -> None:
    env = {"CHATWOOT_WEBHOOK_SECRET": secret} if secret else {}
    with serve(redis_url, queue_name, **env) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
        operation = document["paths"][WEBHOOK_PATH]["post"]
        assert "application/json" in operation["requestBody"]["content"]
        assert {p["name"] for p in operation["parameters"]} == {
            "X-Chatwoot-Signature",
            "X-Chatwoot-Timestamp",
            "X-Chatwoot-Delivery",
        }
        webhook = schemathesis.openapi.from_dict(document).include(path=WEBHOOK_PATH, method="POST")
        cases = st.one_of(
            webhook.as_strategy(GenerationMode.POSITIVE),
            webhook.as_strategy(GenerationMode.NEGATIVE),
        )
        store = redis.Redis.from_url(redis_url)
        statuses: Counter[int] = Counter()

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=cases, signed=st.sampled_from([True, True, False]))
        def fuzz(case: schemathesis.Case, signed: bool) -> None:
            before = redis_state(store, queue_name)
            extra: dict[str, object] = {}
            headers: dict[str, str] = {}
            signed = signed and secret is not None
            if signed:
                # Sign exactly the bytes sent, so the fuzzing reaches past the signature.
                assert secret is not None
                sent = case.as_transport_kwargs(base_url=server.url)
                raw = json.dumps(sent["json"]).encode() if "json" in sent else b""
                now = int(time.time())
                headers = {
                    "X-Chatwoot-Timestamp": str(now),
                    "X-Chatwoot-Signature": sign(secret, now, raw),
                }
                extra["data"] = raw
            started = time.monotonic()
            response = case.call(base_url=server.url, headers=headers, timeout=10, **extra)
            took = time.monotonic() - started
            status = response.status_code
            statuses[status] += 1
            shown = f"{case.as_curl_command()} -> {status}: {response.text[:300]}"
            assert status < 500, shown
            assert took < ANSWER_WITHIN_S, f"{took:.1f}s: {shown}"
            if secret is not None and not signed:
                assert status in REFUSED_UNSIGNED, shown
            if status >= 400:
                # A 422 is kept in the rejected log on purpose; nothing else may change.
                skip = ("intake:rejected",) if status == 422 else ()
                assert redis_state(store, queue_name, skip=skip) == without(before, skip), shown

        try:
            fuzz()
        finally:
            store.close()
        # The fuzzing got past the edge checks, not only bounced off them.
        assert statuses[200] > 0 and (statuses[400] + statuses[422]) > 0, statuses
        if secret is not None:
            assert statuses[401] > 0, statuses


def peak_rss_kb(pid: int) -> int:
    return proc_status_kb(pid, "VmHWM")


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(),
    reason="the bounded-memory check reads the server's VmHWM from /proc (Linux only); the "
    "413 and no-change checks of the same upload also run in test_body_limits.py",
)
@pytest.mark.parametrize(
    "path", [WEBHOOK_PATH, "/api/admin/queue/pause", "/dashboard/login"], ids=lambda p: p
)
def test_an_endless_body_is_cut_at_the_limit(redis_url: str, queue_name: str, path: str) -> None:
    """256 MiB in 64 KiB chunks without Content-Length: the server reads the limit plus at
    most DRAIN_BYTES (dropped, not kept), answers 413 and closes the connection, so the
    client cannot push the rest; its peak memory does not grow by anything like the body.
    Whether this client still reads the 413 depends on timing (the close may reset the
    connection under it), so both outcomes are accepted; the tests in
    test_webhook_hostile.py and test_body_limits.py check the 413 of finite bodies."""
    total = 256 * 1024 * 1024
    chunk = b" " * 65536
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        while sent < total:
            sent += len(chunk)
            yield chunk

    with serve(redis_url, queue_name, SLUICE_WEBHOOK_MAX_BYTES="65536") as server:
        store = redis.Redis.from_url(redis_url)
        before = redis_state(store, queue_name)
        baseline = peak_rss_kb(server.pid)
        try:
            response = httpx.post(
                server.url + path,
                content=body(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
        except httpx.TransportError:  # reset by the close, after the server stopped reading
            pass
        else:
            assert response.status_code == 413, response.text
            assert response.headers["connection"] == "close"
        assert sent < 32 * 1024 * 1024, f"the server read {sent} bytes before refusing"
        grown_kb = peak_rss_kb(server.pid) - baseline
        assert grown_kb < 16 * 1024, f"peak memory grew by {grown_kb} KiB"
        assert httpx.get(server.url + "/healthz").status_code == 200
        try:
            assert redis_state(store, queue_name) == before  # not paused, no login state
        finally:
            store.close()
