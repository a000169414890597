"""Time stamps as the original writes them, so either implementation can read the other's data.

The Ruby original stores `Time#to_s` strings ("2016-07-25 10:43:32 -0500"); we write the same form in
UTC and read that, ISO 8601 and plain epoch numbers.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

_last_stamp: tuple[int | None, str] = (None, "")  # (whole second, its stamp): every checkout stamps the current one


def stamp(epoch: float | None = None) -> str:
    global _last_stamp
    second = math.floor(time.time() if epoch is None else epoch)
    last = _last_stamp  # read once: provider threads stamp too
    if second != last[0]:
        last = _last_stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S +0000"))
    return last[1]


def today(epoch: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC).strftime("%Y-%m-%d")


def parse(value: str | bytes | None) -> float | None:
    """Epoch seconds from any stamp format vmpooler has written; None when unreadable."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(text.replace("Z", "+0000"), fmt).timestamp()
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
