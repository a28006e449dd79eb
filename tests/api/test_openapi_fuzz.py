"""The API's OpenAPI schema fuzzed with schemathesis against a real `sluice serve`
process: whatever the input, never a 500."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import TOKEN
from .served import serve


def test_no_input_makes_a_500(redis_url: str, queue_name: str) -> None:
    with serve(redis_url, queue_name) as server:
        base = server.url
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
