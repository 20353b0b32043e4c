"""VOLUME_RANGE and BOUNDARY_RANGE: the suffix is the number of the value's partition of the long axis.

>>> tables = [f"t_{i}" for i in range(5)]
>>> algo = VolumeRangeShardingAlgorithm({"range-lower": 10, "range-upper": 40, "sharding-volume": 10})
>>> [algo.partition(v) for v in (9, 10, 19, 20, 39, 40)]
[0, 1, 1, 2, 3, 4]
>>> algo.do_sharding_range(tables, 15, None)
['t_1', 't_2', 't_3', 't_4']
>>> BoundaryRangeShardingAlgorithm({"sharding-ranges": "10, 20, x, 5"}).boundaries
(5, 10, 20)
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

from dbmesh.sharding import values as jv
from dbmesh.sharding.base import AutoTableShardingAlgorithm, DataNodeInfo, reject_null
from dbmesh.sharding.errors import ShardingError


class _RangeShardingAlgorithm(AutoTableShardingAlgorithm):
    """Partition 0 holds everything below the first boundary; the last holds everything from the last one."""

    def partition(self, v: int) -> int:
        raise NotImplementedError

    def _value(self, value: object) -> int:
        reject_null(self.TYPE, value)
        text = jv.java_str(jv.from_python(value))
        try:
            return jv.parse_long(text)  # Long.parseLong(toString()): "7.0" and " 7" are refused
        except ShardingError as exc:
            raise ShardingError(f"{self.TYPE} sharding", f"value {text!r} is not a long") from exc

    def do_sharding(self, available_targets: Sequence[str], value: object, *, column: str = "",
                    node_info: DataNodeInfo | None = None) -> str | None:
        return self._info(available_targets, node_info).target(available_targets,
                                                               str(self.partition(self._value(value))))

    def do_sharding_range(self, available_targets: Sequence[str], lower: object | None, upper: object | None,
                          lower_inclusive: bool = True, upper_inclusive: bool = True, *, column: str = "",
                          node_info: DataNodeInfo | None = None) -> list[str]:
        # partition(lower, else 0) .. partition(upper, else last), inclusive; open bounds are not narrowed.
        first = 0 if lower is None else self.partition(self._value(lower))
        last = self.auto_tables_amount - 1 if upper is None else self.partition(self._value(upper))
        return self._targets_for_suffixes(available_targets, node_info, range(first, last + 1))


class VolumeRangeShardingAlgorithm(_RangeShardingAlgorithm):
    """VOLUME_RANGE: partition i = 1..n is [lower+(i-1)·volume, min(lower+i·volume, upper)), n = ceil((upper-lower)
    / volume); 0 is below `range-lower`, n+1 from `range-upper` on."""

    TYPE = "VOLUME_RANGE"
    PROPS = ("range-lower", "range-upper", "sharding-volume")

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        self.lower = self.props.integer("range-lower", bits=64)
        self.upper = self.props.integer("range-upper", bits=64)
        self.volume = self.props.integer("sharding-volume", bits=64, minimum=1)
        if self.upper - self.lower < self.volume:
            raise self.props.error("range-upper", f"range-upper - range-lower ({self.upper - self.lower}) must be "
                                   f"at least sharding-volume ({self.volume})")
        self.inner_partitions = -(-(self.upper - self.lower) // self.volume)

    @property
    def auto_tables_amount(self) -> int:
        return self.inner_partitions + 2

    def partition(self, v: int) -> int:
        if v < self.lower:
            return 0
        if v >= self.upper:
            return self.inner_partitions + 1
        return 1 + (v - self.lower) // self.volume


class BoundaryRangeShardingAlgorithm(_RangeShardingAlgorithm):
    """BOUNDARY_RANGE: sorted boundaries b0 < ... split the axis into (-inf, b0), [b0, b1), ..., [b(k-1), +inf).
    Entries that are not longs are ignored, as ShardingSphere does (`ignored_entries` lists them)."""

    TYPE = "BOUNDARY_RANGE"
    PROPS = ("sharding-ranges",)

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        entries = [e.strip() for e in self.props.required("sharding-ranges").split(",")]
        bounds: list[int] = []
        self.ignored_entries: tuple[str, ...] = ()
        for entry in entries:
            try:
                bounds.append(jv.parse_long(entry))
            except ShardingError:
                self.ignored_entries += (entry,)
        if not bounds:
            raise self.props.error("sharding-ranges", "no long values in the list")
        self.boundaries = tuple(sorted(bounds))

    @property
    def auto_tables_amount(self) -> int:
        return len(self.boundaries) + 1

    def partition(self, v: int) -> int:
        # bisect_right: a value equal to a boundary belongs to the partition that starts there (repeated
        # boundaries make empty partitions, which keep their numbers).
        return bisect.bisect_right(self.boundaries, v)
