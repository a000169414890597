"""Demand-driven pool sizes in the configuration (vmpooler_core/demand.py):

    demand:                  # optional: how demand is counted and forecast
      bucket_seconds: 60     # the time buckets the API counts checkouts in
      window_seconds: 10800  # how far back the forecast looks, and how long a burst is remembered
      day_seconds: 86400     # the daily profile's period: only benchmarks replaying a day faster change it
    providers:
      vcenter1:
        max_vms: 400         # optional: pools sized to demand never grow this provider past 400 VMs
    pools:
      - name: centos-7
        size: 2              # the floor
        max_size: 40         # opt in: the manager sizes the pool to demand between 2 and 40
"""

from __future__ import annotations

from .config import DemandSettings
from .config_node import Node
from .demand import RING

_DEFAULTS = DemandSettings()


def demand_settings(node: Node) -> DemandSettings:
    """`node` is the `demand:` section."""
    bucket = node.number("bucket_seconds", _DEFAULTS.bucket_seconds)
    if bucket < 0.05:
        raise node.error("bucket_seconds", f"must be at least 0.05 seconds (got {bucket:g})")
    window = node.number("window_seconds", _DEFAULTS.window_seconds)
    if not 2 * bucket <= window <= (RING - 1) * bucket:
        raise node.error("window_seconds", f"must be from 2 to {RING - 1} buckets of bucket_seconds, "
                                           f"{2 * bucket:g} to {(RING - 1) * bucket:g} seconds (got {window:g})")
    day = node.number("day_seconds", _DEFAULTS.day_seconds)
    if day < 24 * bucket:
        raise node.error("day_seconds", f"must be at least 24 buckets of bucket_seconds, {24 * bucket:g} seconds "
                                        f"(got {day:g})")
    return DemandSettings(bucket_seconds=bucket, window_seconds=window, day_seconds=day)


def max_size_of(node: Node, size: int) -> int | None:
    """A pool's `max_size`: at least its `size`; None when it has none (a fixed size)."""
    max_size: int | None = node.integer("max_size", None, minimum=0)
    if max_size is not None and max_size < size:
        raise node.error("max_size", f"must be at least the pool's size, {size} (got {max_size})")
    return max_size


def max_vms_of(node: Node) -> int | None:
    """A provider's `max_vms` (`node` is its entry)."""
    value: int | None = node.integer("max_vms", None, minimum=1)
    return value
