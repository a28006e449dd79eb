"""Business-hours arithmetic (sluice.deadlines.business_hours), which follows Chatwoot's
Sla::BusinessHoursService: a deadline never falls inside closed hours, a later start never
gives an earlier deadline, the open time between start and deadline is the threshold, and
all of it holds across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.deadlines.business_hours import DayHours, WorkingHours

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# 2026-01-01 .. 2028-01-01: several DST changes in every zone above that has them.
STARTS = st.floats(min_value=1_767_225_600_000, max_value=1_830_297_600_000)


def office(zone: str = "Europe/Berlin") -> WorkingHours:
    """Chatwoot's default schedule (OutOfOffisable#create_default_working_hours):
    Monday to Friday 9:00-17:00, weekends closed."""
    days = {d: DayHours(open_minute=9 * 60, close_minute=17 * 60) for d in range(1, 6)}
    days[0] = days[6] = DayHours(closed_all_day=True)
    return WorkingHours(enabled=True, timezone=zone, days=days)


@st.composite
def schedules(draw: st.DrawFn) -> WorkingHours:
    days: dict[int, DayHours] = {}
    for wday in range(7):
        kind = draw(st.sampled_from(["closed", "all", "hours", "hours"]))
        if kind == "closed":
            days[wday] = DayHours(closed_all_day=True)
        elif kind == "all":
            days[wday] = DayHours(open_all_day=True)
        else:
            # Opening and closing on DST-prone hours too (1:00-3:59 local).
            opens = draw(st.integers(0, 22 * 60))
            days[wday] = DayHours(
                open_minute=opens, close_minute=draw(st.integers(opens + 1, 24 * 60))
            )
    return WorkingHours(enabled=True, timezone=draw(st.sampled_from(ZONES)), days=days)


def ms(
    year: int, month: int, day: int, hour: int, minute: int = 0, zone: str = "Europe/Berlin"
) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp() * 1000


def test_a_friday_evening_message_is_due_on_monday_morning() -> None:
    # Friday 2026-03-13 16:50 Berlin, 30 minutes: 10 today, 20 on Monday from 9:00.
    due = office().deadline_ms(ms(2026, 3, 13, 16, 50), 30 * 60)
    assert due == ms(2026, 3, 16, 9, 20)


def test_before_opening_the_clock_starts_at_opening() -> None:
    assert office().deadline_ms(ms(2026, 3, 10, 7, 0), 60) == ms(2026, 3, 10, 9, 1)


def test_disabled_or_never_open_hours_count_plain_time() -> None:
    start = ms(2026, 3, 14, 12, 0)  # a Saturday
    disabled = WorkingHours(enabled=False, timezone="UTC", days=office().days)
    closed = WorkingHours(
        enabled=True, timezone="UTC", days={d: DayHours(closed_all_day=True) for d in range(7)}
    )
    assert disabled.deadline_ms(start, 90) == start + 90_000
    assert closed.deadline_ms(start, 90) == start + 90_000


def test_a_week_of_empty_days_counts_plain_time_at_once() -> None:
    """Days not closed all day whose closing is not after their opening are closed
    (module docstring), so such a week has no open minute: before, applies() said yes and
    deadline_ms walked its 10,000 steps (a quarter of a second of the API's event loop per
    message) to a deadline 27 years away. An inbox JSON whose days name no hours reads so."""
    start = ms(2026, 3, 14, 12, 0)
    empty = WorkingHours(
        enabled=True,
        timezone="UTC",
        days={d: DayHours(open_minute=9 * 60, close_minute=9 * 60) for d in range(7)},
    )
    no_hours = WorkingHours.from_inbox(
        {"working_hours_enabled": True, "working_hours": [{"day_of_week": d} for d in range(7)]}
    )
    for hours in (empty, no_hours):
        assert not hours.applies()
        assert hours.deadline_ms(start, 90) == start + 90_000


def test_from_chatwoots_inbox_json() -> None:
    inbox = {
        "working_hours_enabled": True,
        "timezone": "America/New_York",
        "working_hours": [
            {"day_of_week": 1, "closed_all_day": False, "open_hour": 8, "open_minutes": 30,
             "close_hour": 12, "close_minutes": 0, "open_all_day": False},
            {"day_of_week": 2, "closed_all_day": False, "open_all_day": True},
            {"day_of_week": "x"},
        ],
    }  # fmt: skip
    hours = WorkingHours.from_inbox(inbox)
    assert hours.applies() and hours.timezone == "America/New_York"
    assert hours.days[1] == DayHours(open_minute=8 * 60 + 30, close_minute=12 * 60)
    assert hours.days[2].open_all_day and set(hours.days) == {1, 2}
    assert WorkingHours.from_inbox({"timezone": "Not/AZone"}).timezone == "UTC"


def test_across_the_spring_dst_change_the_real_hours_count() -> None:
    # All-day open Sunday 2026-03-29 in Berlin has 23 hours: 24 h of threshold from its
    # midnight end an hour into Monday (open all day too).
    days = {d: DayHours(open_all_day=True) for d in range(7)}
    hours = WorkingHours(enabled=True, timezone="Europe/Berlin", days=days)
    start = ms(2026, 3, 29, 0, 0)
    assert hours.deadline_ms(start, 24 * 3600) == start + 24 * 3600 * 1000
    assert hours.deadline_ms(start, 24 * 3600) == ms(2026, 3, 30, 1, 0)


@settings(max_examples=300, deadline=None)
@given(schedules(), STARTS, st.floats(min_value=1, max_value=5 * 86_400))
def test_the_deadline_is_never_inside_closed_hours(
    hours: WorkingHours, start: float, threshold: float
) -> None:
    due = hours.deadline_ms(start, threshold)
    if hours.applies():
        assert hours.is_open(due), datetime.fromtimestamp(due / 1000, tz=UTC)
    assert due >= start + 0  # never before the start


@settings(max_examples=300, deadline=None)
@given(
    schedules(),
    STARTS,
    st.floats(min_value=0, max_value=3 * 86_400_000),
    st.floats(min_value=1, max_value=86_400),
)
def test_a_later_start_never_gives_an_earlier_deadline(
    hours: WorkingHours, start: float, later_by: float, threshold: float
) -> None:
    assert hours.deadline_ms(start + later_by, threshold) >= hours.deadline_ms(start, threshold)


@settings(max_examples=200, deadline=None)
@given(schedules(), STARTS, st.floats(min_value=60, max_value=2 * 86_400))
def test_the_open_time_until_the_deadline_is_the_threshold(
    hours: WorkingHours, start: float, threshold: float
) -> None:
    due = hours.deadline_ms(start, threshold)
    if not hours.applies():
        assert due == start + threshold * 1000
        return
    # Sum the open windows between start and due (local days around them).
    spent = 0.0
    day = datetime.fromtimestamp(start / 1000, tz=UTC).astimezone(hours.zone).date()
    from datetime import timedelta

    day -= timedelta(days=1)
    while True:
        window = hours.window(day)
        if window is not None:
            lo, hi = max(window[0], start), min(window[1], due)
            spent += max(0.0, hi - lo)
        if window is not None and window[0] > due:
            break
        if day > datetime.fromtimestamp(due / 1000, tz=UTC).astimezone(hours.zone).date():
            break
        day += timedelta(days=1)
    assert abs(spent - threshold * 1000) < 1.0
