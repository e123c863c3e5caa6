"""The foundation's filters: timeout and deadline propagation, connect retries, balancing."""

from sofamesh.filters.balance import BalanceFilter, ResolveFilter
from sofamesh.filters.deadline import InboundDeadlineFilter
from sofamesh.filters.retry import ConnectRetryFilter
from sofamesh.filters.stats import StatsFilter
from sofamesh.filters.timeout import TimeoutFilter

__all__ = [
    "BalanceFilter",
    "ConnectRetryFilter",
    "InboundDeadlineFilter",
    "ResolveFilter",
    "StatsFilter",
    "TimeoutFilter",
]
