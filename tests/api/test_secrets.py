"""Secrets (admin token, webhook secret, Chatwoot token, LLM key, Redis password) never
appear in logs, in the health document, or in error answers."""

from __future__ import annotations

import logging

import httpx
import pytest
import redis.asyncio as aioredis

from ..fixtures import CHATWOOT
from ..integration.conftest import delete_queue_keys
from .conftest import TOKEN, start_api

SECRETS = {
    "CHATWOOT_WEBHOOK_SECRET": "whsec-0f9e8d7c6b5a",
    "CHATWOOT_API_TOKEN": "cwtok-1a2b3c4d5e6f",
    "LLM_API_KEY": "sk-llm-9z8y7x6w5v",
}


async def test_no_secret_leaks(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_API_KEY", SECRETS["LLM_API_KEY"])
    caplog.set_level(logging.DEBUG)
    server, url = await start_api(
        redis_url,
        queue_name,
        CHATWOOT_URL="http://127.0.0.1:9",
        CHATWOOT_API_TOKEN=SECRETS["CHATWOOT_API_TOKEN"],
        CHATWOOT_WEBHOOK_SECRET=SECRETS["CHATWOOT_WEBHOOK_SECRET"],
    )
    body = (CHATWOOT / "01_message_created_incoming_first.json").read_bytes()
    answers: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for response in (
                await client.get("/api/admin/migration-status", headers=auth),
                await client.get(
                    "/api/admin/migration-status", headers={"Authorization": f"Bearer {TOKEN}x"}
                ),
                await client.post(
                    "/webhooks/chatwoot",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Chatwoot-Timestamp": "1",
                        "X-Chatwoot-Signature": "sha256=00",
                    },
                ),
                await client.post("/dashboard/login", data={"token": "wrong"}),
                await client.get("/metrics", headers=auth),
            ):
                answers.append(response.text)
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)
    logged = "\n".join(
        r.getMessage() + " " + str(getattr(r, "__dict__", "")) for r in caplog.records
    )
    assert "SLUICE_ADMIN_TOKEN" in answers[0]  # the setting is shown, masked
    for name, value in {**SECRETS, "SLUICE_ADMIN_TOKEN": TOKEN}.items():
        assert value not in logged, f"{name} leaked into the logs"
        for answer in answers:
            assert value not in answer, f"{name} leaked into an HTTP answer"


CREDENTIAL_URL = "https://user:s3cret@chat.example.com/?api_key=abc"


async def test_no_url_credentials_in_the_health_document(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    """The health document shows the effective configuration, CHATWOOT_URL included."""
    server, url = await start_api(redis_url, queue_name, CHATWOOT_URL=CREDENTIAL_URL)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            doc = await client.get(
                "/api/admin/migration-status", headers={"Authorization": f"Bearer {TOKEN}"}
            )
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)
    assert doc.status_code == 200
    assert "s3cret" not in doc.text and "abc" not in doc.text
    shown = doc.json()["optimization"]["config"]["CHATWOOT_URL"]
    assert shown == "https://user:***@chat.example.com/?api_key=***"
