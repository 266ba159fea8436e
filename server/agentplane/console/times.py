"""Time arguments: RFC 3339 instants, or durations back from now (``90s``, ``30m``, ``1h30m``, ``2d``)."""

from __future__ import annotations

import datetime
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([smhdw]))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> datetime.timedelta | None:
    """``1h30m`` -> 1:30:00; None when ``text`` is not a duration."""
    if not _DURATION.fullmatch(text):
        return None
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    return datetime.timedelta(seconds=seconds)


def parse_instant(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """An aware UTC datetime for ``text``: RFC 3339 (no offset: UTC) or a duration ago.

    ValueError with what was expected.
    """
    text = text.strip()
    ago = parse_duration(text)
    if ago is not None:
        return (now or datetime.datetime.now(datetime.UTC)) - ago
    try:
        instant = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an RFC 3339 time (2026-01-31T12:00:00Z) or a duration ago "
            f"(30m, 1h, 2d), got {text!r}"
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=datetime.UTC)
    return instant.astimezone(datetime.UTC)
