"""MOD and HASH_MOD: the suffix is the value (or its Java hash) modulo `sharding-count`, never negative.

>>> tables = [f"t_order_{i}" for i in range(4)]
>>> ModShardingAlgorithm({"sharding-count": 4}).do_sharding(tables, -7)
't_order_1'
>>> HashModShardingAlgorithm({"sharding-count": 4}).do_sharding(tables, "hello")
't_order_2'
>>> ModShardingAlgorithm({"sharding-count": 4}).do_sharding_range(tables, 5, 6)
['t_order_1', 't_order_2']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dbmesh.sharding import values as jv
from dbmesh.sharding.base import AutoTableShardingAlgorithm, DataNodeInfo, reject_null
from dbmesh.sharding.errors import ShardingError
from dbmesh.sharding.values import JNumber


class ModShardingAlgorithm(AutoTableShardingAlgorithm):
    """MOD. `start-offset`/`stop-offset` cut the value's text before the modulo; `zero-padding` widens the suffix
    to the digit count of `sharding-count - 1`."""

    TYPE = "MOD"
    PROPS = ("sharding-count", "start-offset", "stop-offset", "zero-padding")

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        self.sharding_count = self.props.integer("sharding-count", minimum=1)
        self.start_offset = self.props.integer("start-offset", 0, minimum=0)
        self.stop_offset = self.props.integer("stop-offset", 0, minimum=0)
        self.zero_padding = self.props.boolean("zero-padding", False)
        self.max_padding_size = len(str(self.sharding_count - 1))

    @property
    def auto_tables_amount(self) -> int:
        return self.sharding_count

    def _number(self, value: object) -> int:
        value = jv.from_python(value)
        if self.start_offset == 0 and self.stop_offset == 0:
            if isinstance(value, JNumber):
                return jv.long_value(value)  # decimals truncate, BigInteger wraps to 64 bits, as longValue()
            return self._parse(jv.java_str(value))
        text = jv.java_str(value)
        end = len(text) - self.stop_offset
        if end <= self.start_offset:
            raise ShardingError("MOD sharding", f"value {text!r} is too short for start-offset "
                                f"{self.start_offset} and stop-offset {self.stop_offset} (ShardingSphere error 23)")
        return self._parse(text[self.start_offset:end])

    @staticmethod
    def _parse(text: str) -> int:
        try:
            return jv.parse_java_integer(text)
        except ShardingError as exc:
            raise ShardingError("MOD sharding", f"value {text!r} is not an integer") from exc

    def suffix(self, value: object) -> str:
        """The suffix ShardingSphere computes for a value (padded when `zero-padding` is set)."""
        reject_null(self.TYPE, value)
        text = str(self._number(value) % self.sharding_count)
        return text.rjust(self.max_padding_size, "0") if self.zero_padding else text

    def do_sharding(self, available_targets: Sequence[str], value: object, *, column: str = "",
                    node_info: DataNodeInfo | None = None) -> str | None:
        info = self._info(available_targets, node_info)
        suffix = self.suffix(value)
        found = info.target(available_targets, suffix)
        if found is None and self.zero_padding:
            # ShardingSphere pads ("03") but autoTables are named unpadded ("t_3"), so with more than 10 tables it
            # drops values 0..9 and INSERTs of them fail: no stored row depends on that. dbmesh routes them to
            # the unpadded table, as the database layout implies.
            found = info.target(available_targets, suffix.lstrip("0") or "0")
        return found

    def do_sharding_range(self, available_targets: Sequence[str], lower: object | None, upper: object | None,
                          lower_inclusive: bool = True, upper_inclusive: bool = True, *, column: str = "",
                          node_info: DataNodeInfo | None = None) -> list[str]:
        # ShardingSphere: no upper bound → all; both bounds spanning >= count-1 → all; else enumerate the values
        # (open bounds included). Only an upper bound throws there (IllegalStateException); all targets is the
        # database's answer. The span is compared exactly, not after intValue() wrapping, so a huge range never
        # enumerates; enumerating it would give every suffix anyway. lower > upper enumerates nothing.
        if upper is None or lower is None or not self._plain:
            # With offsets, a range of values is not a range of their cut-out numbers: every target may match.
            return list(available_targets)
        reject_null(self.TYPE, lower)
        reject_null(self.TYPE, upper)
        # Bounds are compared unwrapped (ShardingSphere wraps a BigInteger bound to 64 bits first, so [0, 2^70]
        # would shrink to [0, 0]); each enumerated value then maps exactly as a precise value of that size would.
        lo, hi = self._exact(lower), self._exact(upper)
        if hi - lo >= self.sharding_count - 1:
            return list(available_targets)
        found: set[str] = set()
        for v in range(lo, hi + 1):
            target = self.do_sharding(available_targets, jv.integral_literal(v), node_info=node_info)
            if target is not None:
                found.add(target)
        return [t for t in available_targets if t in found]

    def _exact(self, value: object) -> int:
        value = jv.from_python(value)
        if isinstance(value, JNumber) and not isinstance(value.value, float):
            return int(value.value)
        return self._number(value)

    @property
    def _plain(self) -> bool:
        return self.start_offset == 0 and self.stop_offset == 0


class HashModShardingAlgorithm(AutoTableShardingAlgorithm):
    """HASH_MOD: `abs((long) value.hashCode()) % sharding-count`, with the Java hash of the value's type (so
    `Integer -7` and `Long -7` may land in different tables). Ranges go to every target."""

    TYPE = "HASH_MOD"
    PROPS = ("sharding-count",)

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        self.sharding_count = self.props.integer("sharding-count", minimum=1)

    @property
    def auto_tables_amount(self) -> int:
        return self.sharding_count

    def suffix(self, value: object) -> str:
        reject_null(self.TYPE, value)
        return str(abs(jv.java_hash_code(jv.from_python(value))) % self.sharding_count)

    def do_sharding(self, available_targets: Sequence[str], value: object, *, column: str = "",
                    node_info: DataNodeInfo | None = None) -> str | None:
        return self._info(available_targets, node_info).target(available_targets, self.suffix(value))

    def do_sharding_range(self, available_targets: Sequence[str], lower: object | None, upper: object | None,
                          lower_inclusive: bool = True, upper_inclusive: bool = True, *, column: str = "",
                          node_info: DataNodeInfo | None = None) -> list[str]:
        return list(available_targets)
