"""What every sharding algorithm shares: validated props, null refusal, and auto-table suffix matching.

>>> info = DataNodeInfo.of(["t_order_0", "t_order_1", "t_order_10"])
>>> info
DataNodeInfo(prefix='t_order_', suffix_min_length=1, padding_char='0')
>>> info.target(["t_order_0", "t_order_1"], "1")
't_order_1'
>>> DataNodeInfo.of(["t_00", "t_01"]).target(["t_00", "t_01"], "1")
't_01'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dbmesh.errors import ConfigError
from dbmesh.sharding import values as jv
from dbmesh.sharding.errors import NullShardingValueError, ShardingError


@dataclass(frozen=True, slots=True)
class DataNodeInfo:
    """How an auto-table algorithm's numeric suffix becomes a target name: `prefix + leftPad(suffix, min, '0')`.

    ShardingSphere derives it from the table's data nodes: the prefix is the first node's name with its trailing
    digits stripped; the minimum length is the shortest remaining suffix over all nodes."""

    prefix: str
    suffix_min_length: int
    padding_char: str = "0"

    @classmethod
    def of(cls, names: Sequence[str]) -> DataNodeInfo:
        if not names:
            raise ShardingError("sharding route", "no data nodes to take a name prefix from")
        prefix = names[0].rstrip("0123456789")
        return cls(prefix, min(len(n) - len(prefix) for n in names))

    def name(self, suffix: str) -> str:
        return self.prefix + suffix.rjust(self.suffix_min_length, self.padding_char)

    def target(self, available_targets: Sequence[str], suffix: str) -> str | None:
        """The target for `suffix` if the available targets contain it (exactly, case-sensitively), else None."""
        name = self.name(suffix)
        return name if name in available_targets else None


def reject_null(algorithm: str, value: object) -> None:
    """Every built-in algorithm refuses a null sharding value (ShardingSphere error 20)."""
    if value is None:
        raise NullShardingValueError(f"{algorithm} sharding", "sharding value cannot be null (IS NULL or = NULL on "
                                     "a sharding column, or an INSERT without it)")


class Props:
    """Algorithm props, read the way ShardingSphere reads them (every value through `toString()`), with unknown
    keys refused so that a misspelt prop is not silently defaulted."""

    def __init__(self, algorithm: str, props: Mapping[str, Any], known: Sequence[str], *, file: str,
                 path: str) -> None:
        self.algorithm = algorithm
        self.file = file
        self.path = path
        self.raw = {str(k): _to_string(v) for k, v in props.items()}
        for key in self.raw:
            if key not in known:
                raise self.error(key, f"unknown property of {algorithm} (known: {', '.join(known)})")

    def error(self, key: str, detail: str) -> ConfigError:
        return ConfigError(self.file, f"{self.path}.{key}", detail)

    def get(self, key: str) -> str | None:
        return self.raw.get(key)

    def required(self, key: str) -> str:
        v = self.raw.get(key)
        if v is None or not v.strip():
            raise self.error(key, f"{self.algorithm} requires this property")
        return v

    def integer(self, key: str, default: int | None = None, *, bits: int = 32, minimum: int | None = None,
                maximum: int | None = None) -> int:
        text = self.raw.get(key)
        if text is None:
            if default is None:
                raise self.error(key, f"{self.algorithm} requires this property")
            return default
        try:
            v = jv.parse_int(text.strip()) if bits == 32 else jv.parse_long(text.strip())
        except ShardingError as exc:
            raise self.error(key, f"{text!r} is not an integer ({'int' if bits == 32 else 'long'})") from exc
        if minimum is not None and v < minimum:
            raise self.error(key, f"must be at least {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise self.error(key, f"must be at most {maximum}, got {v}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        text = self.raw.get(key)
        if text is None:
            return default
        if text.strip().lower() not in ("true", "false"):
            # Java's Boolean.parseBoolean reads anything but "true" as false; refuse instead of guessing.
            raise self.error(key, f"{text!r} is not true or false")
        return text.strip().lower() == "true"


def _to_string(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(_to_string(e) for e in v)
    return str(v)


class ShardingAlgorithm:
    """Root of the algorithms. `TYPE` is ShardingSphere's type name; `AUTO_TABLE` says whether ShardingSphere
    allows it only in `autoTables` (MOD, HASH_MOD, VOLUME_RANGE, BOUNDARY_RANGE, AUTO_INTERVAL) or only in
    `tables`; `PROPS` lists the property names it accepts."""

    TYPE: ClassVar[str] = ""
    AUTO_TABLE: ClassVar[bool] = False
    PROPS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        self.props = Props(self.TYPE, props, self.PROPS, file=file, path=path)


class StandardShardingAlgorithm(ShardingAlgorithm):
    """One column, one value → at most one name (`do_sharding`); a range → a list of names."""

    def do_sharding(self, available_targets: Sequence[str], value: object, *, column: str = "",
                    node_info: DataNodeInfo | None = None) -> str | None:
        """The target for a precise value, or None when it maps to no available target (ShardingSphere's
        standard strategy then drops the value silently)."""
        raise NotImplementedError

    def do_sharding_range(self, available_targets: Sequence[str], lower: object | None, upper: object | None,
                          lower_inclusive: bool = True, upper_inclusive: bool = True, *, column: str = "",
                          node_info: DataNodeInfo | None = None) -> list[str]:
        """The targets a range may touch (None = unbounded), in the order of `available_targets`; always a
        superset of the precise results of every value in the range."""
        raise NotImplementedError


class AutoTableShardingAlgorithm(StandardShardingAlgorithm):
    """An algorithm whose targets are numbered suffixes; it knows how many tables an autoTable gets."""

    AUTO_TABLE = True

    @property
    def auto_tables_amount(self) -> int:
        """How many actual tables an autoTable with this algorithm has (`<logic>_0` .. `<logic>_{n-1}`)."""
        raise NotImplementedError

    @staticmethod
    def _info(available_targets: Sequence[str], node_info: DataNodeInfo | None) -> DataNodeInfo:
        return node_info if node_info is not None else DataNodeInfo.of(available_targets)

    def _targets_for_suffixes(self, available_targets: Sequence[str], node_info: DataNodeInfo | None,
                              suffixes: range) -> list[str]:
        info = self._info(available_targets, node_info)
        wanted = {info.name(str(s)) for s in suffixes}
        return [t for t in available_targets if t in wanted]
