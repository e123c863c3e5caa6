"""The foundation's filters, used by every chain: stats, deadline, the inbound deadline check."""

from sofamesh.filters.deadline import InboundDeadlineFilter
from sofamesh.filters.stats import StatsFilter
from sofamesh.filters.timeout import TimeoutFilter

__all__ = ["InboundDeadlineFilter", "StatsFilter", "TimeoutFilter"]
