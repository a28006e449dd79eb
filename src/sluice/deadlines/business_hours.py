"""A deadline counted in an inbox's working hours, the way Chatwoot counts an SLA's.

Chatwoot's SLA policy with ``only_during_business_hours`` counts its threshold only while
the inbox is open: ``enterprise/app/services/sla/business_hours_service.rb``
(``Sla::BusinessHoursService#deadline``) walks from the start, skips closed days, moves a
time before opening to the opening, a time after closing to the next open day, and spends
the threshold day by day. This module follows that walk, step for step, so Sluice's
deadline is the one Chatwoot itself reports as ``sla_nrt_due_at`` / ``sla_frt_due_at``:

- the working hours are the inbox's ``working_hours`` (``Inbox#weekly_schedule``,
  ``app/models/concerns/out_of_offisable.rb``: ``day_of_week`` 0 = Sunday, ``open_hour``,
  ``open_minutes``, ``close_hour``, ``close_minutes``, ``closed_all_day``,
  ``open_all_day``) read in the inbox's ``timezone`` (UTC when unset);
- they apply only when ``working_hours_enabled`` and at least one day is not closed
  (``should_apply_business_hours?``); otherwise the deadline is start + threshold;
- an ``open_all_day`` day closes at the next local midnight.

One choice of ours where Chatwoot has none: a day whose closing is not after its opening
(a misconfiguration, or a local opening time that a DST change skips past its closing) is
closed, where Chatwoot would spend negative seconds. Times are instants (epoch ms); local
times are resolved with :mod:`zoneinfo`, so DST days are as long as they really are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MAX_STEPS = 10_000  # a threshold of years in a one-hour-a-week inbox still ends


@dataclass(frozen=True, slots=True)
class DayHours:
    """One weekday's hours: minutes after local midnight (``open_all_day`` ignores them)."""

    closed_all_day: bool = False
    open_all_day: bool = False
    open_minute: int = 9 * 60
    close_minute: int = 17 * 60


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """An inbox's weekly schedule: ``days`` by Ruby ``wday`` (0 = Sunday); a missing day
    is closed (``closed_day?`` of a nil working hour)."""

    enabled: bool
    timezone: str
    days: Mapping[int, DayHours]

    @classmethod
    def from_inbox(cls, inbox: Mapping[str, Any]) -> WorkingHours:
        """From Chatwoot's inbox JSON (``app/views/api/v1/models/_inbox.json.jbuilder``:
        ``working_hours_enabled``, ``working_hours`` = ``weekly_schedule``, ``timezone``).
        Malformed days are left out (closed); an unknown zone is UTC, as Chatwoot's
        ``inbox.timezone || 'UTC'`` would not be, but a zone it cannot read either."""
        days: dict[int, DayHours] = {}
        raw = inbox.get("working_hours")
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, Mapping):
                continue
            wday = item.get("day_of_week")
            if not isinstance(wday, int) or not 0 <= wday <= 6:
                continue
            days[wday] = DayHours(
                closed_all_day=bool(item.get("closed_all_day")),
                open_all_day=bool(item.get("open_all_day")),
                open_minute=_minutes(item.get("open_hour"), item.get("open_minutes")),
                close_minute=_minutes(item.get("close_hour"), item.get("close_minutes")),
            )
        zone = inbox.get("timezone")
        return cls(
            enabled=bool(inbox.get("working_hours_enabled")),
            timezone=zone if isinstance(zone, str) and _known_zone(zone) else "UTC",
            days=days,
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone) if _known_zone(self.timezone) else ZoneInfo("UTC")

    def applies(self) -> bool:
        """``should_apply_business_hours?``: enabled and some day not closed all day; and,
        ours, some day with open time at all (a day closing at or before its opening is
        closed, so a week of such days has none: counted as plain time, not walked for
        ``_MAX_STEPS`` days)."""
        return self.enabled and any(
            not d.closed_all_day and (d.open_all_day or d.close_minute > d.open_minute)
            for d in self.days.values()
        )

    def window(self, day: date) -> tuple[float, float] | None:
        """The open interval of a local date as epoch ms, None when closed that day."""
        hours = self.days.get(day.isoweekday() % 7)
        if hours is None or hours.closed_all_day:
            return None
        zone = self.zone
        if hours.open_all_day:
            start = _instant(day, 0, zone)
            end = _instant(day + timedelta(days=1), 0, zone)
        else:
            start = _instant(day, hours.open_minute, zone)
            end = _instant(day, hours.close_minute, zone)
        return (start, end) if end > start else None

    def is_open(self, at_ms: float) -> bool:
        """Whether ``at_ms`` lies within an open interval (its closing moment included:
        a deadline may fall exactly at closing time, as Chatwoot's does)."""
        day = self._local_date(at_ms)
        for candidate in (day - timedelta(days=1), day):
            window = self.window(candidate)
            if window is not None and window[0] <= at_ms <= window[1]:
                return True
        return False

    def deadline_ms(self, start_ms: float, threshold_s: float) -> float:
        """``start_ms`` plus ``threshold_s`` of open time (``Sla::BusinessHoursService``);
        start + threshold when the hours do not apply."""
        if not self.applies():
            return start_ms + threshold_s * 1000
        remaining = max(0.0, threshold_s * 1000)
        current = start_ms
        for _ in range(_MAX_STEPS):
            if remaining <= 0:
                return current
            day = self._local_date(current)
            window = self.window(day)
            if window is None:
                current = self._next_opening(day)
                continue
            opens, closes = window
            if current < opens:
                current = opens
            elif current >= closes:
                current = self._next_opening(day)
                continue
            available = closes - current
            if remaining <= available:
                return current + remaining
            remaining -= available
            current = self._next_opening(day)
        return current + remaining  # not reached with any real schedule

    def _local_date(self, at_ms: float) -> date:
        return datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(self.zone).date()

    def _next_opening(self, day: date) -> float:
        """``next_business_day_start``: the opening of the next day that is open."""
        for offset in range(1, 8):
            window = self.window(day + timedelta(days=offset))
            if window is not None:
                return window[0]
        return _instant(day + timedelta(days=1), 0, self.zone)


def _minutes(hour: object, minute: object) -> int:
    h = hour if isinstance(hour, int) and 0 <= hour <= 24 else 0
    m = minute if isinstance(minute, int) and 0 <= minute <= 59 else 0
    return min(24 * 60, h * 60 + m)


def _instant(day: date, minute_of_day: int, zone: ZoneInfo) -> float:
    if minute_of_day >= 24 * 60:
        day, minute_of_day = day + timedelta(days=1), 0
    local = datetime.combine(day, time(minute_of_day // 60, minute_of_day % 60), tzinfo=zone)
    return local.timestamp() * 1000


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
