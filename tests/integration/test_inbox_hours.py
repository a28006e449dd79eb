"""Inboxes' working hours for business-hours SLA deadlines, fetched from the simulator's
``GET /api/v1/accounts/{id}/inboxes/{inbox_id}`` (InboxesController#show, the inbox JSON of
api/v1/models/_inbox.json.jbuilder): the intake never waits for them (a miss answers None
and fetches in the background), a refused token leaves plain time, and the hours arrive
as Chatwoot's weekly_schedule says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from sluice.deadlines.inbox_hours import InboxHours

from .test_simulator_harness import BOT_TOKEN, Factory, simulators


@pytest.fixture
async def make_env() -> AsyncIterator[Factory]:
    async with simulators() as make:
        yield make


async def test_hours_arrive_in_the_background_and_count(make_env: Factory) -> None:
    env = await make_env()
    env.sim.set_working_hours(
        7,
        timezone="Europe/Berlin",
        days=[{"day_of_week": 6, "closed_all_day": False, "open_hour": 10, "open_minutes": 0,
               "close_hour": 12, "close_minutes": 0}],
    )  # fmt: skip
    inbox = env.sim.store.accounts[7].inbox_id
    client = env.client()
    hours = InboxHours(client.inbox)
    try:
        assert hours.get(7, inbox) is None  # a miss never waits
        await hours.settled()
        known = hours.get(7, inbox)
        assert known is not None and known.applies() and known.timezone == "Europe/Berlin"
        # Friday 16:30 Berlin, one hour of threshold: 30 minutes on Friday (Chatwoot's default
        # Monday-Friday 9-17), then Saturday opens at 10 (set above): due at 10:30.
        friday = datetime(2026, 3, 13, 16, 30, tzinfo=ZoneInfo("Europe/Berlin"))
        due = known.deadline_ms(friday.timestamp() * 1000, 3600)
        assert (
            due
            == datetime(2026, 3, 14, 10, 30, tzinfo=ZoneInfo("Europe/Berlin")).timestamp() * 1000
        )
    finally:
        await hours.close()
        await client.aclose()


async def test_a_token_that_may_not_read_inboxes_leaves_plain_time(make_env: Factory) -> None:
    """Agent-bot tokens may not read inboxes (BOT_ACCESSIBLE_ENDPOINTS): 401, no hours."""
    env = await make_env()
    client = env.client(BOT_TOKEN)
    hours = InboxHours(client.inbox)
    try:
        assert hours.get(7, env.sim.store.accounts[7].inbox_id) is None
        await hours.settled()
        assert hours.get(7, env.sim.store.accounts[7].inbox_id) is None
    finally:
        await hours.close()
        await client.aclose()
