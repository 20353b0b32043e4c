"""Traffic governance for SQL: circuit breakers per data source or logical table, and flow rules (rate limits).

The rule shapes are Alibaba Sentinel's (DegradeRule, FlowRule), written as the `!TRAFFIC` global rule; see
`dbmesh.traffic.rules` for the YAML and `dbmesh.traffic.governor` for how sessions use a `TrafficGovernor`.
"""

from __future__ import annotations

from dbmesh.traffic.breaker import BreakerState, CircuitBreaker
from dbmesh.traffic.governor import BreakerStatus, LimitStatus, Probe, TrafficGovernor
from dbmesh.traffic.limiter import Admission
from dbmesh.traffic.rules import (
    BreakerGrade,
    CircuitBreakerRule,
    ControlBehavior,
    FlowGrade,
    FlowRule,
    TrafficRules,
    parse_traffic_rules,
    traffic_rules,
)

__all__ = [
    "Admission",
    "BreakerGrade",
    "BreakerState",
    "BreakerStatus",
    "CircuitBreaker",
    "CircuitBreakerRule",
    "ControlBehavior",
    "FlowGrade",
    "FlowRule",
    "LimitStatus",
    "Probe",
    "TrafficGovernor",
    "TrafficRules",
    "parse_traffic_rules",
    "traffic_rules",
]
