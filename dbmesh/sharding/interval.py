"""AUTO_INTERVAL (numbered time slices) and INTERVAL (tables named after a formatted bucket start).

>>> auto = AutoIntervalShardingAlgorithm({"datetime-lower": "2024-01-01 00:00:00",
...                                       "datetime-upper": "2024-01-03 00:00:00", "sharding-seconds": 86400})
>>> auto.auto_tables_amount, auto.index("2024-01-01 12:00:00"), auto.index("2024-01-02 00:00:01")
(4, 1, 1)
>>> algo = IntervalShardingAlgorithm({"datetime-pattern": "yyyy-MM-dd HH:mm:ss",
...     "datetime-lower": "2024-01-01 00:00:00", "datetime-upper": "2024-03-31 23:59:59",
...     "sharding-suffix-pattern": "yyyyMM", "datetime-interval-unit": "MONTHS"})
>>> algo.do_sharding(["t_202401", "t_202402", "t_202403"], "2024-02-10 08:00:00")
't_202402'
>>> algo.do_sharding_range(["t_202401", "t_202402", "t_202403"], "2024-02-10 00:00:00", None)
['t_202402', 't_202403']
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from dbmesh.sharding import values as jv
from dbmesh.sharding.base import (
    AutoTableShardingAlgorithm,
    DataNodeInfo,
    StandardShardingAlgorithm,
    reject_null,
)
from dbmesh.sharding.datetime_pattern import CHRONO_UNITS, JavaDateTimePattern, PatternError, add_units
from dbmesh.sharding.errors import ShardingError

_AUTO_PATTERN = JavaDateTimePattern("yyyy-MM-dd HH:mm:ss")


def _text(value: object) -> str:
    """`toString()` of a date/time sharding value as the JDBC types render it (`datetime` → Timestamp)."""
    return jv.java_str(jv.from_python(value))


class AutoIntervalShardingAlgorithm(AutoTableShardingAlgorithm):
    """AUTO_INTERVAL: suffix = clamp(ceil(round2(secs(value - lower) / sharding-seconds)), 0, count-1)."""

    TYPE = "AUTO_INTERVAL"
    PROPS = ("datetime-lower", "datetime-upper", "sharding-seconds")

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        self.lower = self._prop_datetime("datetime-lower")
        self.upper = self._prop_datetime("datetime-upper")
        self.sharding_seconds = self.props.integer("sharding-seconds", bits=64, minimum=1)
        span = int((self.upper - self.lower).total_seconds())
        if span < 0:
            raise self.props.error("datetime-upper", "datetime-upper is before datetime-lower")
        # ⌊span/seconds⌋ + 2: ShardingSphere's Math.ceil runs after an integer division, so it does nothing.
        self._amount = span // self.sharding_seconds + 2

    def _prop_datetime(self, key: str) -> dt.datetime:
        text = self.props.required(key)
        try:
            return _AUTO_PATTERN.parse(text.strip())
        except ValueError as exc:
            raise self.props.error(key, f"{text!r} is not 'yyyy-MM-dd HH:mm:ss'") from exc

    @property
    def auto_tables_amount(self) -> int:
        return self._amount

    def index(self, value: object) -> int:
        """The slice number of a value (its `toString()` parsed as `yyyy-MM-dd HH:mm:ss` from position 0)."""
        reject_null(self.TYPE, value)
        text = _text(value)
        try:
            moment = _AUTO_PATTERN.parse(text[:19])
        except ValueError as exc:
            raise ShardingError("AUTO_INTERVAL sharding", f"{text!r} does not start with a "
                                "'yyyy-MM-dd HH:mm:ss' date-time (ISO 'T' and date-only values fail in "
                                "ShardingSphere too)") from exc
        seconds = int((moment - self.lower).total_seconds())
        ratio = seconds / self.sharding_seconds  # a Java double division
        # DecimalFormat("0.00") rounds the double's exact binary value half-even (assumes a '.' decimal
        # separator: in a JVM whose default locale writes ',' ShardingSphere fails here instead).
        rounded = Decimal(ratio).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        return min(max(math.ceil(rounded), 0), self._amount - 1)

    def do_sharding(self, available_targets: Sequence[str], value: object, *, column: str = "",
                    node_info: DataNodeInfo | None = None) -> str | None:
        return self._info(available_targets, node_info).target(available_targets, str(self.index(value)))

    def do_sharding_range(self, available_targets: Sequence[str], lower: object | None, upper: object | None,
                          lower_inclusive: bool = True, upper_inclusive: bool = True, *, column: str = "",
                          node_info: DataNodeInfo | None = None) -> list[str]:
        first = 0 if lower is None else self.index(lower)
        last = self._amount - 1 if upper is None else self.index(upper)
        return self._targets_for_suffixes(available_targets, node_info, range(first, last + 1))


class IntervalShardingAlgorithm(StandardShardingAlgorithm):
    """INTERVAL: buckets [t, t+step) for t = lower, lower+step, ... while t <= upper; a bucket selects the targets
    whose names end with `sharding-suffix-pattern` applied to t."""

    TYPE = "INTERVAL"
    PROPS = ("datetime-pattern", "datetime-lower", "datetime-upper", "sharding-suffix-pattern",
             "datetime-interval-amount", "datetime-interval-unit")
    MAX_BUCKETS = 200_000

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props",
                 now: dt.datetime | None = None) -> None:
        super().__init__(props, file=file, path=path)
        self.pattern = self._pattern("datetime-pattern")
        self.suffix_pattern = self._pattern("sharding-suffix-pattern", temporal=False)
        self.lower = self._prop_time("datetime-lower")
        if self.props.get("datetime-upper") is None:
            # now(), taken once at init and truncated to the pattern's fields as a format/parse round trip does.
            self.upper = self.pattern.parse(self.pattern.format(now or dt.datetime.now()))
        else:
            self.upper = self._prop_time("datetime-upper")
        self.amount = self.props.integer("datetime-interval-amount", 1, minimum=1)
        unit = (self.props.get("datetime-interval-unit") or "DAYS").strip().upper()
        if unit not in CHRONO_UNITS:
            raise self.props.error("datetime-interval-unit", f"{unit!r} is not a supported ChronoUnit "
                                   f"({', '.join(CHRONO_UNITS)})")
        self.unit = unit
        try:
            add_units(self.lower, self.amount, unit, self.pattern.temporal)
        except (ValueError, OverflowError) as exc:
            raise self.props.error("datetime-interval-unit", str(exc)) from exc
        self.starts = self._buckets()
        self.suffixes = [self.suffix_pattern.format(t) for t in self.starts]

    def _pattern(self, key: str, temporal: bool = True) -> JavaDateTimePattern:
        text = self.props.required(key)
        try:
            return JavaDateTimePattern(text, need_temporal=temporal)
        except PatternError as exc:
            raise self.props.error(key, str(exc)) from exc

    def _prop_time(self, key: str) -> dt.datetime:
        text = self.props.required(key)
        try:
            return self.pattern.parse(text)
        except ValueError as exc:
            raise self.props.error(key, f"{text!r} does not match datetime-pattern {self.pattern.pattern!r}") from exc

    def _buckets(self) -> list[dt.datetime]:
        starts: list[dt.datetime] = []
        t = self.lower
        while t <= self.upper:
            if len(starts) >= self.MAX_BUCKETS:
                raise self.props.error("datetime-interval-unit", f"more than {self.MAX_BUCKETS} intervals between "
                                       "datetime-lower and datetime-upper")
            starts.append(t)
            try:
                t = add_units(t, self.amount, self.unit, self.pattern.temporal)
            except OverflowError:
                break
        return starts

    def _end(self, i: int) -> dt.datetime:
        if i + 1 < len(self.starts):
            return self.starts[i + 1]
        try:
            return add_units(self.starts[i], self.amount, self.unit, self.pattern.temporal)
        except OverflowError:
            return dt.datetime.max

    def to_datetime(self, value: object) -> dt.datetime:
        """A sharding value as the algorithm reads it: formatted with `datetime-pattern` when it is a date/time,
        else its `toString()`; text longer than the pattern is cut, shorter text parsed with a shortened pattern
        (missing fields read as their minimum, as a database compares '2024-01-01' with a DATETIME)."""
        reject_null(self.TYPE, value)
        if isinstance(value, dt.datetime):
            text = self.pattern.format(value)
        elif isinstance(value, dt.date):
            text = self.pattern.format(dt.datetime(value.year, value.month, value.day))
        else:
            text = _text(value)
        width = len(self.pattern.pattern)
        try:
            if len(text) >= width:
                return self.pattern.parse(text[:width])
            return JavaDateTimePattern(self.pattern.pattern[: len(text)]).parse(text, partial=True)
        except (ValueError, PatternError) as exc:
            raise ShardingError("INTERVAL sharding", f"{text!r} does not match datetime-pattern "
                                f"{self.pattern.pattern!r}") from exc

    def _matching(self, available_targets: Sequence[str], suffixes: set[str]) -> list[str]:
        lengths = {len(s) for s in suffixes}
        return [t for t in available_targets if any(t[-n:] in suffixes for n in lengths if n <= len(t))]

    def do_sharding(self, available_targets: Sequence[str], value: object, *, column: str = "",
                    node_info: DataNodeInfo | None = None) -> str | None:
        moment = self.to_datetime(value)
        i = bisect.bisect_right(self.starts, moment) - 1
        if i < 0 or moment >= self._end(i):
            return None
        matches = self._matching(available_targets, {self.suffixes[i]})
        if len(matches) > 1:
            # ShardingSphere takes the first match of a HashSet, i.e. an unspecified one; refuse instead.
            raise ShardingError("INTERVAL sharding", f"several targets end with suffix {self.suffixes[i]!r}: "
                                f"{', '.join(matches)}")
        return matches[0] if matches else None

    def do_sharding_range(self, available_targets: Sequence[str], lower: object | None, upper: object | None,
                          lower_inclusive: bool = True, upper_inclusive: bool = True, *, column: str = "",
                          node_info: DataNodeInfo | None = None) -> list[str]:
        lo = None if lower is None else self.to_datetime(lower)
        hi = None if upper is None else self.to_datetime(upper)
        suffixes: set[str] = set()
        for i, start in enumerate(self.starts):
            end = self._end(i)
            # Bucket [start, end) meets the range when the range reaches past start and begins before end.
            if hi is not None and (start > hi or (start == hi and not upper_inclusive)):
                break
            if lo is not None and lo >= end:
                continue
            suffixes.add(self.suffixes[i])
        return self._matching(available_targets, suffixes) if suffixes else []

