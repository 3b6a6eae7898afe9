"""Which dates can be real: a date before 1900 or in the future is a default or a typing error.

Such dates are reported and never anchor a study (its time, the vital-sign window, an age).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

PLAUSIBLE_FROM_YEAR = 1900
FUTURE_SLACK = timedelta(days=1)  # clocks and time zones: up to a day ahead is still "now"


def plausible_time(when: datetime) -> bool:
    """Whether `when` (naive = UTC) lies between 1900 and a day from now."""
    aware = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
    return aware.year >= PLAUSIBLE_FROM_YEAR and aware <= datetime.now(timezone.utc) + FUTURE_SLACK
