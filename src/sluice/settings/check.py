"""The result of one check of `sluice validate` (configuration, Redis, Chatwoot): here,
below the packages that run checks, so that each of them can report one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Outcome = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
