"""Times as the clinician reads them: in the browser's time zone, with the zone named.

Records keep times in UTC. The page asks the browser for its IANA zone name once it loads
(`Intl.DateTimeFormat().resolvedOptions().timeZone`) and sends it with every analysis; when it
is missing or unknown the server's own zone is used, and the label says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BROWSER_ZONE_JS = (
    "() => { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (e) { return ''; } }"
)


@dataclass(frozen=True)
class Zone:
    """A time zone to show times in, and where it came from."""

    tz: tzinfo
    name: str  # IANA name ("Europe/Berlin") or the server's zone abbreviation
    source: str  # "browser" | "server"

    def offset(self, when: datetime) -> str:
        """E.g. "UTC+01:00" at `when` (offsets change with daylight saving time)."""
        delta = when.astimezone(self.tz).utcoffset() or timedelta(0)
        sign = "-" if delta < timedelta(0) else "+"
        minutes = abs(int(delta.total_seconds())) // 60
        return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"

    def label(self, when: datetime) -> str:
        """The zone as the page names it, e.g. "Europe/Berlin, UTC+01:00"."""
        where = "" if self.source == "browser" else " (the server's zone; the browser did not say its own)"
        return f"{self.name}, {self.offset(when)}{where}"


def zone_named(name: str | None) -> Zone:
    """The browser's zone when `name` is a known IANA zone, else the server's local zone."""
    if name and isinstance(name, str) and len(name) < 64:
        try:
            return Zone(ZoneInfo(name), name, "browser")
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = datetime.now(timezone.utc).astimezone().tzinfo or timezone.utc
    return Zone(local, datetime.now(local).tzname() or "UTC", "server")


def local_time(when: datetime | None, zone: Zone, *, seconds: bool = False) -> str:
    """`when` in the zone, e.g. "2023-11-11 17:06"; "unknown" for None (naive times are taken as UTC)."""
    if when is None:
        return "unknown"
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
