"""The one source of "now" for code that stamps times (incidents, notifications, lifecycle actions).

Code takes the time from its caller; where a caller gives none, it asks an injected `Clock`, whose
default is the system clock. Tests inject a fixed clock, so no result depends on the day they run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The system clock, timezone-aware UTC."""
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Clock:
    """A clock that always says `at` (for tests and replays)."""
    return lambda: at
