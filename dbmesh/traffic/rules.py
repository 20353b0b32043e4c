"""The `!TRAFFIC` global rule: circuit breakers and flow rules in Alibaba Sentinel's shapes, parsed into frozen values.

```yaml
rules:
  - !TRAFFIC
    circuitBreakers:            # Sentinel DegradeRule
      - resource: ds_0          # data source ds_0 of every database | sharding_db.ds_0 | table:t_order
        grade: ERROR_RATIO      # SLOW_REQUEST_RATIO | ERROR_RATIO | ERROR_COUNT (or Sentinel's 0 | 1 | 2)
        count: 0.5
        timeWindow: 10
    flowRules:                  # Sentinel FlowRule
      - resource: "user:app"    # user:<name> | database:<name> | table:<table> | digest:<hex> | "*"
        grade: QPS              # QPS | THREAD (or Sentinel's 1 | 0)
        count: 100
```

Validation is syntax only: global rules do not see the databases, so a breaker may name a data source that no
database has (the governor ignores it). Everything else is checked, and each mistake is one
`ConfigError(file, key path, detail)`.

>>> rules = parse_traffic_rules({"flowRules": [{"resource": "*", "count": 10}]}, "global.yaml", "rules[0]")
>>> rules.flow_rules[0].grade, rules.flow_rules[0].control_behavior
(<FlowGrade.QPS: 1>, <ControlBehavior.REJECT: 0>)
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dbmesh.errors import ConfigError

if TYPE_CHECKING:  # the config package imports this module's validator lazily; keep the import one-way
    from dbmesh.config.loader import RuleContext
    from dbmesh.config.models import Config, Rule

RULE_KIND = "TRAFFIC"
ALL_RESOURCES = "*"
TABLE_PREFIX = "table:"
USER_PREFIX = "user:"
DATABASE_PREFIX = "database:"
DIGEST_PREFIX = "digest:"
DIGEST_HEX_DIGITS = 32  # dbmesh.observe.digest.digest_hash: the slow-query log's "digest_hash"

# Sentinel's defaults (RuleConstant / DegradeRule / FlowRule).
DEFAULT_MIN_REQUEST_AMOUNT = 5
DEFAULT_STAT_INTERVAL_MS = 1000
DEFAULT_SLOW_RATIO_THRESHOLD = 1.0
DEFAULT_MAX_QUEUEING_TIME_MS = 500


class BreakerGrade(enum.Enum):
    """A circuit breaker's strategy; values are Sentinel's DEGRADE_GRADE_* constants."""

    SLOW_REQUEST_RATIO = 0  # count = the response time in ms above which a statement is slow
    ERROR_RATIO = 1  # count = the error ratio (0..1) that must be exceeded
    ERROR_COUNT = 2  # count = the number of errors that must be exceeded


class FlowGrade(enum.Enum):
    """What a flow rule counts; values are Sentinel's FLOW_GRADE_* constants."""

    THREAD = 0  # statements running at once
    QPS = 1  # statements started per second


class ControlBehavior(enum.Enum):
    """What a flow rule does to a statement over the limit; values are Sentinel's CONTROL_BEHAVIOR_* constants."""

    REJECT = 0  # refuse at once (Sentinel's DEFAULT)
    QUEUE = 2  # wait up to maxQueueingTimeMs (Sentinel's RATE_LIMITER), then refuse


@dataclass(frozen=True, slots=True)
class CircuitBreakerRule:
    """One `circuitBreakers` entry (Sentinel DegradeRule). Equal rules keep their breaker across reloads."""

    resource: str  # "ds_0", "sharding_db.ds_0" or "table:t_order" (table names lower-cased)
    grade: BreakerGrade
    count: float  # see BreakerGrade
    slow_ratio_threshold: float = DEFAULT_SLOW_RATIO_THRESHOLD  # SLOW_REQUEST_RATIO only
    time_window_s: float = 10.0  # how long the breaker stays OPEN before it lets a probe through
    min_request_amount: int = DEFAULT_MIN_REQUEST_AMOUNT  # fewer statements in the window never trip it
    stat_interval_ms: int = DEFAULT_STAT_INTERVAL_MS  # length of the statistics window

    @property
    def table(self) -> str | None:
        """The logical table of a `table:` breaker, else None."""
        return self.resource[len(TABLE_PREFIX):] if self.resource.startswith(TABLE_PREFIX) else None


@dataclass(frozen=True, slots=True)
class FlowRule:
    """One `flowRules` entry (Sentinel FlowRule). Equal rules keep their limiter state across reloads."""

    resource: str  # "*", "user:<name>", "database:<name>", "table:<table>" or "digest:<hex>" (normalised)
    grade: FlowGrade
    count: float  # statements per second (QPS) or at once (THREAD)
    control_behavior: ControlBehavior = ControlBehavior.REJECT
    max_queueing_time_ms: int = DEFAULT_MAX_QUEUEING_TIME_MS  # QUEUE only

    def describe(self) -> str:
        """The limit in words for error messages: 'QPS limit 100' or 'concurrency limit 8'."""
        what = "QPS" if self.grade is FlowGrade.QPS else "concurrency"
        return f"{what} limit {self.count:g}"


@dataclass(frozen=True, slots=True)
class TrafficRules:
    """The whole `!TRAFFIC` rule."""

    circuit_breakers: tuple[CircuitBreakerRule, ...] = ()
    flow_rules: tuple[FlowRule, ...] = ()


# ------------------------------------------------------------------------------------------------ parsing


_E = TypeVar("_E", bound=enum.Enum)

_BREAKER_KEYS = ("resource", "grade", "count", "slowRatioThreshold", "timeWindow", "minRequestAmount", "statIntervalMs")
_FLOW_KEYS = ("resource", "grade", "count", "controlBehavior", "maxQueueingTimeMs")
_TOP_KEYS = ("circuitBreakers", "flowRules")
# Sentinel's WARM_UP (1) and WARM_UP_RATE_LIMITER (3) exist but are not implemented here.
_UNSUPPORTED_BEHAVIORS = {1: "WARM_UP", 3: "WARM_UP_RATE_LIMITER", "WARM_UP": "WARM_UP",
                          "WARM_UP_RATE_LIMITER": "WARM_UP_RATE_LIMITER"}
_NAME_RE = re.compile(r"[^\s:]+")  # a data source / database / table / user name: no blanks, no ':'
_HEX_RE = re.compile(rf"[0-9a-fA-F]{{{DIGEST_HEX_DIGITS}}}")


class _Reader:
    """Checks one mapping of the rule and names every problem by its key path."""

    def __init__(self, file: str, key: str, body: Any, allowed: Sequence[str]) -> None:
        self.file = file
        self.key = key
        if not isinstance(body, Mapping):
            raise ConfigError(file, key, f"expected a mapping, got {body!r}")
        self.body = body
        for name in body:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
                raise ConfigError(file, self.at(name), f"unknown key {name!r}{hint}")

    def at(self, name: object) -> str:
        return f"{self.key}.{name}"

    def error(self, name: str, detail: str) -> ConfigError:
        return ConfigError(self.file, self.at(name), detail)

    def has(self, name: str) -> bool:
        return name in self.body

    def required(self, name: str) -> Any:
        if name not in self.body or self.body[name] is None:
            raise self.error(name, "required key is missing")
        return self.body[name]

    def number(self, name: str, default: float | None = None, *, low: float = 0.0, low_open: bool = False,
               high: float | None = None) -> float:
        value = self.required(name) if default is None else self.body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(name, f"expected a number, got {value!r}")
        if value < low or (low_open and value == low) or (high is not None and value > high):
            bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
            if high is not None:
                bound = f"within {low:g}..{high:g}"
            raise self.error(name, f"must be {bound}, got {value!r}")
        return float(value)

    def integer(self, name: str, default: int, *, low: int) -> int:
        value = self.body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if value < low:
            raise self.error(name, f"must be at least {low}, got {value!r}")
        return value

    def choice(self, name: str, enum_type: type[_E], default: _E | None = None) -> _E:
        """An enum member by name (any case) or by Sentinel's number."""
        value = self.required(name) if default is None else self.body.get(name, default)
        if isinstance(value, enum_type):
            return value
        names = ", ".join(m.name for m in enum_type)
        numbers = ", ".join(str(m.value) for m in enum_type)
        if isinstance(value, str):
            member = enum_type.__members__.get(value.strip().upper())
            if member is not None:
                return member
        elif isinstance(value, int) and not isinstance(value, bool):
            for member in enum_type:
                if member.value == value:
                    return member
        raise self.error(name, f"expected one of {names} (or Sentinel's {numbers}), got {value!r}")


def _items(body: Mapping[str, Any], name: str, file: str, key: str) -> Sequence[Any]:
    value = body.get(name)
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(file, f"{key}.{name}", f"expected a list, got {value!r}")
    return value


def _breaker_resource(value: Any, r: _Reader) -> str:
    if not isinstance(value, str) or not value.strip():
        raise r.error("resource", f"expected a data source name, 'database.data_source' or 'table:<table>', got {value!r}")
    if value.startswith(TABLE_PREFIX):
        table = value[len(TABLE_PREFIX):]
        if not _NAME_RE.fullmatch(table):
            raise r.error("resource", f"'table:' must be followed by a logical table name, got {value!r}")
        return TABLE_PREFIX + table.lower()  # logical table names match case-insensitively, as in routing
    if ":" in value:
        prefix = value.split(":", 1)[0] + ":"
        hint = " (user:, database:, digest: and * are for flowRules)" if prefix in (
            USER_PREFIX, DATABASE_PREFIX, DIGEST_PREFIX) else ""
        raise r.error("resource", f"a circuit breaker names a data source, 'database.data_source' or 'table:<table>', "
                                  f"got {value!r}{hint}")
    if not _NAME_RE.fullmatch(value) or value.startswith(".") or value.endswith("."):
        raise r.error("resource", f"not a data source name: {value!r}")
    return value


def _flow_resource(value: Any, r: _Reader) -> str:
    kinds = "'*', 'user:<name>', 'database:<name>', 'table:<table>' or 'digest:<hex>'"
    if not isinstance(value, str):
        raise r.error("resource", f"expected {kinds}, got {value!r}")
    if value == ALL_RESOURCES:
        return value
    prefix, colon, name = value.partition(":")
    prefix += colon
    if prefix == DIGEST_PREFIX:
        if not _HEX_RE.fullmatch(name):
            raise r.error("resource", f"'digest:' must be followed by the {DIGEST_HEX_DIGITS} hex digits of a statement "
                                      f"digest (the slow-query log's digest_hash), got {value!r}")
        return DIGEST_PREFIX + name.lower()
    if prefix not in (USER_PREFIX, DATABASE_PREFIX, TABLE_PREFIX):
        raise r.error("resource", f"expected {kinds}, got {value!r}")
    if not _NAME_RE.fullmatch(name):
        raise r.error("resource", f"{prefix!r} must be followed by a name without blanks, got {value!r}")
    # User and database names match exactly (MySQL compares user names case-sensitively); table names do not.
    return prefix + (name.lower() if prefix == TABLE_PREFIX else name)


def _parse_breaker(body: Any, file: str, key: str) -> CircuitBreakerRule:
    r = _Reader(file, key, body, _BREAKER_KEYS)
    resource = _breaker_resource(r.required("resource"), r)
    grade = r.choice("grade", BreakerGrade)
    if grade is BreakerGrade.ERROR_RATIO:
        count = r.number("count", high=1.0)
    else:
        count = r.number("count")
    if grade is BreakerGrade.SLOW_REQUEST_RATIO:
        slow_ratio = r.number("slowRatioThreshold", DEFAULT_SLOW_RATIO_THRESHOLD, high=1.0)
    elif r.has("slowRatioThreshold"):
        raise r.error("slowRatioThreshold", f"applies only to grade SLOW_REQUEST_RATIO, not {grade.name}")
    else:
        slow_ratio = DEFAULT_SLOW_RATIO_THRESHOLD
    return CircuitBreakerRule(
        resource=resource,
        grade=grade,
        count=count,
        slow_ratio_threshold=slow_ratio,
        time_window_s=r.number("timeWindow", low_open=True),
        min_request_amount=r.integer("minRequestAmount", DEFAULT_MIN_REQUEST_AMOUNT, low=1),
        stat_interval_ms=r.integer("statIntervalMs", DEFAULT_STAT_INTERVAL_MS, low=1),
    )


def _parse_flow(body: Any, file: str, key: str) -> FlowRule:
    r = _Reader(file, key, body, _FLOW_KEYS)
    resource = _flow_resource(r.required("resource"), r)
    grade = r.choice("grade", FlowGrade, FlowGrade.QPS)
    count = r.number("count")
    raw_behavior = r.body.get("controlBehavior")
    if isinstance(raw_behavior, str | int) and not isinstance(raw_behavior, bool):
        key_ = raw_behavior.strip().upper() if isinstance(raw_behavior, str) else raw_behavior
        if key_ in _UNSUPPORTED_BEHAVIORS:
            raise r.error("controlBehavior", f"{_UNSUPPORTED_BEHAVIORS[key_]} is not supported by this version of "
                                             "dbmesh (REJECT or QUEUE)")
    behavior = r.choice("controlBehavior", ControlBehavior, ControlBehavior.REJECT)
    if behavior is ControlBehavior.QUEUE:
        max_queueing = r.integer("maxQueueingTimeMs", DEFAULT_MAX_QUEUEING_TIME_MS, low=1)
    elif r.has("maxQueueingTimeMs"):
        raise r.error("maxQueueingTimeMs", "applies only to controlBehavior QUEUE")
    else:
        max_queueing = DEFAULT_MAX_QUEUEING_TIME_MS
    return FlowRule(resource=resource, grade=grade, count=count, control_behavior=behavior,
                    max_queueing_time_ms=max_queueing)


_R = TypeVar("_R", CircuitBreakerRule, FlowRule)


def _parse_list(body: Mapping[str, Any], name: str, file: str, key: str,
                parse: Callable[[Any, str, str], _R]) -> tuple[_R, ...]:
    out: list[_R] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(_items(body, name, file, key)):
        item_key = f"{key}.{name}[{i}]"
        rule = parse(item, file, item_key)
        if rule.resource in seen:
            raise ConfigError(file, f"{item_key}.resource",
                              f"resource {rule.resource!r} already has a rule at {key}.{name}[{seen[rule.resource]}]")
        seen[rule.resource] = i
        out.append(rule)
    return tuple(out)


def parse_traffic_rules(body: Any, file: str, key: str) -> TrafficRules:
    """Parse and check a `!TRAFFIC` rule body; raises ConfigError(file, key + '.<path>', detail) on a mistake."""
    top = _Reader(file, key, {} if body is None else body, _TOP_KEYS)
    return TrafficRules(
        circuit_breakers=_parse_list(top.body, "circuitBreakers", file, key, _parse_breaker),
        flow_rules=_parse_list(top.body, "flowRules", file, key, _parse_flow),
    )


def validate_traffic_rule(rule: Rule, ctx: RuleContext) -> None:
    """The loader's validator for `!TRAFFIC` (registered in GLOBAL_RULE_VALIDATORS)."""
    parse_traffic_rules(rule.body, ctx.file, ctx.key)


def traffic_rules(config: Config) -> TrafficRules | None:
    """The configuration's `!TRAFFIC` rule, parsed; None when it has none (or an empty one)."""
    for rule in config.global_rules:
        if rule.kind == RULE_KIND:
            parsed = parse_traffic_rules(rule.body, "global.yaml", f"!{RULE_KIND}")
            return parsed if parsed.circuit_breakers or parsed.flow_rules else None
    return None
