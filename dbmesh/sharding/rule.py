"""Sharding rules compiled from a logical database's `!SHARDING`, `!BROADCAST` and `!SINGLE`: which data nodes a
statement's conditions may touch, which node an INSERT row goes to, and where broadcast and single tables live.

The YAML shapes are ShardingSphere 5.x's; routing follows ShardingSphere's standard route engine (see
SHARDINGSPHERE-COMPAT.md): the database strategy picks data sources among the table's, then the table strategy
picks actual tables among the nodes on each of them. Where ShardingSphere would misroute or silently drop an
INSERT, dbmesh refuses with a catalogue error instead.

>>> from dbmesh.config import load_config
>>> cfg = load_config("rules/sharding-mysql")
>>> rule = sharding_rule_for(cfg, cfg.databases["sharding_db"])
>>> t_order = rule.table_rule("T_ORDER")
>>> [str(n) for n in t_order.route([ConditionGroup({"user_id": Values((3,)), "order_id": Values((4, 5))})])]
['ds_1.t_order_0', 'ds_1.t_order_1']
>>> str(t_order.route_value({"user_id": 2, "order_id": 7}))
'ds_0.t_order_1'
>>> rule.are_bound("t_order", "t_order_item"), rule.is_broadcast("t_address"), rule.single_data_source("t_user")
(True, True, 'ds_0')
"""

from __future__ import annotations

import difflib
import math
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from dbmesh.errors import ConfigError, InternalError
from dbmesh.sharding import values as jv
from dbmesh.sharding.algorithms import create_algorithm
from dbmesh.sharding.autotables import DataNode, auto_table_nodes
from dbmesh.sharding.base import (
    AutoTableShardingAlgorithm,
    DataNodeInfo,
    ShardingAlgorithm,
    StandardShardingAlgorithm,
)
from dbmesh.sharding.conditions import ConditionGroup, Hint, Range, Values
from dbmesh.sharding.errors import (
    KeyGenerateError,
    NoRouteError,
    NullShardingValueError,
    ShardingError,
    ShardingUnsupportedError,
)
from dbmesh.sharding.inline import expand_data_nodes
from dbmesh.sharding.inline_algorithm import (
    ComplexInlineShardingAlgorithm,
    HintInlineShardingAlgorithm,
    InlineShardingAlgorithm,
)
from dbmesh.sharding.keygen import KEY_GENERATORS, KeyGenerator

if TYPE_CHECKING:
    from dbmesh.config.models import Config, Database

RULE_KINDS = ("SHARDING", "BROADCAST", "SINGLE")
StrategyKind = Literal["standard", "complex", "hint", "none"]

_DIGITS = "0123456789"
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_MISSING = object()
_EMPTY_GROUP = ConditionGroup()


# ------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Strategy:
    """A resolved sharding strategy of one table side (database or table)."""

    kind: StrategyKind
    columns: tuple[str, ...]  # lower-case; one for standard, several for complex, () for hint/none
    algorithm_name: str
    algorithm: ShardingAlgorithm | None


def _table_node_info(logic_table: str, tables: Sequence[str]) -> DataNodeInfo:
    """ShardingSphere's DataNodeInfo of a table's actual tables: the prefix is the logic name plus the rest of the
    first actual table's name without trailing digits (or that name without trailing digits when it does not
    start with the logic name); the suffix length is the shortest remainder."""
    first = tables[0]
    if first.startswith(logic_table):
        prefix = logic_table + first[len(logic_table):].rstrip(_DIGITS)
    else:
        prefix = first.rstrip(_DIGITS)
    return DataNodeInfo(prefix, min(len(t) - len(prefix) for t in tables))


def _show(value: object) -> str:
    """A sharding value as a SQL literal would read (for messages)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if value is None:
        return "NULL"
    return jv.java_str(jv.from_python(value)) if isinstance(value, (int, float, jv.JNumber)) else str(value)


def _hint_value(value: object) -> object:
    """A hint value as ShardingSphere types it: an integer (or integer text, as SQL hints carry) is a BigInteger,
    anything else stays as it is. BigInteger matters: `%` on it is never negative."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return jv.big_integer(value)
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        return jv.big_integer(int(value))
    return value


class TableRule:
    """One sharded logic table (from `tables` or `autoTables`): its data nodes and resolved strategies.

    Immutable once built. Strategy columns are lower-case; the names as written in the config (which INLINE
    expressions use as variable names) are kept privately."""

    __slots__ = ("_ds_info", "_frozen", "_index", "_key", "_key_generator_name", "_sharding_columns", "_spelling",
                 "_table_info", "_tables_by_ds", "actual_tables", "auto", "data_nodes", "data_sources",
                 "database_strategy", "key_column", "key_generator", "logic_table", "table_strategy")

    logic_table: str
    data_nodes: tuple[DataNode, ...]
    database_strategy: Strategy | None
    table_strategy: Strategy | None
    key_column: str | None
    key_generator: KeyGenerator | None
    auto: bool
    data_sources: tuple[str, ...]
    actual_tables: tuple[str, ...]
    _key: str
    _key_generator_name: str
    _spelling: dict[str, str]
    _tables_by_ds: dict[str, tuple[str, ...]]
    _index: dict[DataNode, int]
    _ds_info: DataNodeInfo
    _table_info: DataNodeInfo
    _sharding_columns: frozenset[str]

    def __init__(self, logic_table: str, data_nodes: Sequence[DataNode], database_strategy: Strategy | None = None,
                 table_strategy: Strategy | None = None, key_column: str | None = None,
                 key_generator: KeyGenerator | None = None, auto: bool = False, *,
                 column_spelling: Mapping[str, str] | None = None, key_generator_name: str = "") -> None:
        if not data_nodes:
            raise InternalError(f"table rule {logic_table} has no data nodes")
        s = object.__setattr__
        s(self, "_frozen", False)
        s(self, "logic_table", logic_table)
        s(self, "data_nodes", tuple(DataNode(*n) for n in data_nodes))
        s(self, "database_strategy", database_strategy)
        s(self, "table_strategy", table_strategy)
        s(self, "key_column", key_column.lower() if key_column else None)
        s(self, "key_generator", key_generator)
        s(self, "auto", auto)
        s(self, "_key", logic_table.lower())
        s(self, "_key_generator_name", key_generator_name)
        s(self, "_spelling", dict(column_spelling or {}))
        s(self, "data_sources", tuple(dict.fromkeys(n.data_source for n in self.data_nodes)))
        s(self, "actual_tables", tuple(dict.fromkeys(n.table for n in self.data_nodes)))
        by_ds: dict[str, list[str]] = {}
        for n in self.data_nodes:
            by_ds.setdefault(n.data_source, []).append(n.table)
        s(self, "_tables_by_ds", {ds: tuple(t) for ds, t in by_ds.items()})
        s(self, "_index", {n: i for i, n in reversed(list(enumerate(self.data_nodes)))})
        s(self, "_ds_info", DataNodeInfo.of(self.data_sources))
        s(self, "_table_info", _table_node_info(logic_table, self.actual_tables))
        columns: set[str] = set()
        for strategy in (database_strategy, table_strategy):
            if strategy is not None:
                columns.update(strategy.columns)
        s(self, "_sharding_columns", frozenset(columns))
        s(self, "_frozen", True)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"TableRule is immutable (setting {name})")

    def __repr__(self) -> str:
        return f"TableRule({self.logic_table!r}, {len(self.data_nodes)} nodes)"

    @property
    def sharding_columns(self) -> frozenset[str]:
        """Lower-case columns of the database and table strategies."""
        return self._sharding_columns

    @property
    def database_node_info(self) -> DataNodeInfo:
        """Prefix and suffix length of the data source names (what auto algorithms pad to)."""
        return self._ds_info

    @property
    def table_node_info(self) -> DataNodeInfo:
        """Prefix and suffix length of the actual table names (ShardingSphere's DataNodeInfo)."""
        return self._table_info

    def node_index(self, node: DataNode) -> int:
        """Position of `node` in `data_nodes` (what binding pairs by); InternalError when it is not one."""
        try:
            return self._index[DataNode(*node)]
        except KeyError:
            raise InternalError(f"{node} is not a data node of {self.logic_table}") from None

    # -- routing ------------------------------------------------------------------------------------------

    def route(self, groups: Sequence[ConditionGroup], hint: Hint | None = None) -> list[DataNode]:
        """The nodes a statement with these OR-ed condition groups may touch, in `data_nodes` order.

        No groups, or a group without conditions on the sharding columns, means every node (of the hint's data
        source, if it names one). A value that maps to no node is dropped: no row with it can be stored, so a
        query finds none there."""
        chosen: set[DataNode] = set()
        for group in groups or (_EMPTY_GROUP,):
            chosen.update(self._route_group(group, hint))
            if len(chosen) == len(self.data_nodes):
                break
        return [n for n in self.data_nodes if n in chosen]

    def route_value(self, values: Mapping[str, Any], hint: Hint | None = None) -> DataNode:
        """The one node an INSERT row goes to. `values` maps lower-case columns to the row's values.

        A missing or NULL sharding value: SHARDING_NULL_VALUE. Values that map to no node: SHARDING_NO_ROUTE
        (ShardingSphere errors 54/56). Several nodes (no strategy, or a hint strategy without hint values):
        SHARDING_UNSUPPORTED, as one row must be written once."""
        row = {str(k).lower(): v for k, v in values.items()}
        columns: dict[str, Values] = {}
        for strategy in (self.database_strategy, self.table_strategy):
            if strategy is None or strategy.kind not in ("standard", "complex"):
                continue
            for column in strategy.columns:
                value = row.get(column, _MISSING)
                if value is _MISSING or value is None:
                    what = "gives no value for" if value is _MISSING else "gives NULL to"
                    raise NullShardingValueError("INSERT", f"the row {what} sharding column {column}",
                                                 table=self.logic_table, column=column)
                columns[column] = Values((value,))
        nodes = self._route_group(ConditionGroup(MappingProxyType(columns)), hint)
        if len(nodes) == 1:
            return nodes[0]
        shown = ", ".join(f"{c}={_show(v.values[0])}" for c, v in columns.items()) or "(none)"
        if not nodes:
            where = f" on data source {hint.data_source}" if hint is not None and hint.data_source else ""
            raise NoRouteError("INSERT", f"the sharding values map to no data node{where}", value=shown,
                               table=self.logic_table)
        listed = ", ".join(str(n) for n in nodes[:4]) + (", ..." if len(nodes) > 4 else "")
        raise ShardingUnsupportedError(
            "INSERT of one row into several data nodes",
            f"the row ({shown}) maps to {len(nodes)} data nodes ({listed}); a strategy without sharding values "
            "(none, or hint without a hint value) cannot place a row", table=self.logic_table)

    def point_key(self, column: str) -> Callable[[object], int | None] | None:
        """For statements whose one sharding condition is `column = value` (any case; no hint): a function from a value
        to a key such that two values with the same key route to the same nodes, so a caller may remember a
        route per key instead of per value; the function gives None for a value it cannot vouch for. None when
        the route depends on the value in a way this does not know how to key: a strategy on `column` other than
        standard INLINE `prefix${column % n}suffix` (other strategies leave the route to the value alone).

        The key is the value's remainder by the lcm of the moduli, signed as Java's `%` (the dividend's sign):
        it gives every modulus's remainder, and so every name the expressions produce.

        >>> from dbmesh.config import load_config
        >>> cfg = load_config("rules/sharding-mysql")
        >>> key = sharding_rule_for(cfg, cfg.databases["sharding_db"]).table_rule("t_order").point_key("user_id")
        >>> key(7), key(-7), key(8), key("8"), key(True)
        (1, -1, 0, None, None)
        """
        column = column.lower()
        moduli: list[int] = []
        for strategy in (self.database_strategy, self.table_strategy):
            if strategy is None or strategy.algorithm is None or strategy.kind in ("none", "hint") \
                    or column not in strategy.columns:
                continue  # without a hint, or without a value for its columns, it keeps every target
            algorithm = strategy.algorithm
            if strategy.kind != "standard" or not isinstance(algorithm, InlineShardingAlgorithm):
                return None
            n = algorithm.expression.modulus(self._spelling.get(column, column))
            if n is None:
                return None
            moduli.append(n)
        span = math.lcm(*moduli)

        def key(value: Any, low: int = jv.LONG_MIN, high: int = jv.LONG_MAX) -> int | None:
            # Plain ints in Java's long range: the values `modulus` speaks for (bool is an int subclass, not int).
            if type(value) is not int or not low <= value <= high:
                return None
            r = abs(value) % span
            return -r if value < 0 else r

        return key

    def next_key(self) -> Any:
        """The key generator's next key: an int (SNOWFLAKE, a Java Long) or a str (UUID)."""
        generator = self.key_generator
        if generator is None:
            raise KeyGenerateError("key generation", f"table {self.logic_table} has no keyGenerateStrategy",
                                   algorithm="(none)", table=self.logic_table)
        try:
            key = generator.generate_key()
        except ShardingError as exc:
            raise exc.with_context(table=self.logic_table,
                                   algorithm=f"{self._key_generator_name} ({generator.TYPE})") from exc
        return key.value if isinstance(key, jv.JNumber) else key

    def _route_group(self, group: ConditionGroup, hint: Hint | None) -> list[DataNode]:
        db_hints = table_hints = ()
        if hint is not None:
            db_hints = hint.database_values.get(self._key, hint.database_values.get("", ()))
            table_hints = hint.table_values.get(self._key, hint.table_values.get("", ()))
        sources = self._targets(self.database_strategy, self.data_sources, self._ds_info, group, db_hints)
        if hint is not None and hint.data_source is not None:
            sources = [ds for ds in sources if ds == hint.data_source]
        nodes: list[DataNode] = []
        for ds in sources:
            tables = self._targets(self.table_strategy, self._tables_by_ds[ds], self._table_info, group, table_hints)
            nodes.extend(DataNode(ds, t) for t in tables)
        return nodes

    def _targets(self, strategy: Strategy | None, available: Sequence[str], info: DataNodeInfo,
                 group: ConditionGroup, hint_values: Sequence[object]) -> list[str]:
        """The available targets one strategy keeps for one condition group, in `available` order. Results that
        are not available targets are dropped (ShardingSphere's standard strategy does so; its complex and hint
        strategies pass them on and then fail or send SQL to a missing table)."""
        if strategy is None or strategy.algorithm is None or strategy.kind == "none":
            return list(available)
        algorithm = strategy.algorithm
        column: str | None = None
        try:
            if strategy.kind == "standard":
                assert isinstance(algorithm, StandardShardingAlgorithm)
                column = strategy.columns[0]
                found = self._standard(algorithm, column, available, info, group.get(column))
            elif strategy.kind == "complex":
                assert isinstance(algorithm, ComplexInlineShardingAlgorithm)
                found = self._complex(algorithm, strategy.columns, available, group)
            else:
                assert isinstance(algorithm, HintInlineShardingAlgorithm)
                if not hint_values:
                    return list(available)
                found = algorithm.do_sharding(available, [_hint_value(v) for v in hint_values])
        except ShardingError as exc:
            raise exc.with_context(table=self.logic_table, column=column,
                                   algorithm=f"{strategy.algorithm_name} ({algorithm.TYPE})") from exc
        if found is None:
            return list(available)
        keep = set(found)
        return [t for t in available if t in keep]

    def _standard(self, algorithm: StandardShardingAlgorithm, column: str, available: Sequence[str],
                  info: DataNodeInfo, condition: Values | Range | None) -> list[str] | None:
        spelled = self._spelling.get(column, column)
        if condition is None:
            return None
        if isinstance(condition, Values):
            found: list[str] = []
            for value in condition.values:
                if value is None:
                    raise NullShardingValueError("sharding condition", f"{column} IS NULL / = NULL",
                                                 table=self.logic_table, column=column)
                target = algorithm.do_sharding(available, value, column=spelled, node_info=info)
                if target is not None:
                    found.append(target)
            return found
        if condition.lower is None and condition.upper is None:
            return None
        return algorithm.do_sharding_range(available, condition.lower, condition.upper, condition.lower_inclusive,
                                           condition.upper_inclusive, column=spelled, node_info=info)

    def _complex(self, algorithm: ComplexInlineShardingAlgorithm, columns: Sequence[str], available: Sequence[str],
                 group: ConditionGroup) -> list[str] | None:
        values: dict[str, list[object]] = {}
        ranges: dict[str, tuple[object | None, object | None]] = {}
        for column in columns:
            condition = group.get(column)
            spelled = self._spelling.get(column, column)
            if isinstance(condition, Values):
                if any(v is None for v in condition.values):
                    raise NullShardingValueError("sharding condition", f"{column} IS NULL / = NULL",
                                                 table=self.logic_table, column=column)
                values[spelled] = list(condition.values)
            elif isinstance(condition, Range):
                ranges[spelled] = (condition.lower, condition.upper)
        if not values and not ranges:
            return None
        if ranges:
            return algorithm.do_sharding(available, values, ranges)  # every target, or refused
        if len(values) < len(columns):
            # ShardingSphere evaluates the expression with the missing columns as null (and fails) or raises
            # error 53; every target is the answer the database gives.
            return None
        return algorithm.do_sharding(available, values)


class ShardingRule:
    """The compiled sharding, broadcast and single rules of one logical database (immutable)."""

    __slots__ = ("_group_of", "binding_groups", "broadcast_tables", "data_sources", "database",
                 "default_data_source", "max_connections_size_per_query", "merge_max_rows_in_memory",
                 "single_tables", "tables")

    database: str
    data_sources: tuple[str, ...]
    default_data_source: str
    tables: Mapping[str, TableRule]
    broadcast_tables: frozenset[str]
    single_tables: Mapping[str, str]
    binding_groups: tuple[tuple[str, ...], ...]
    max_connections_size_per_query: int
    merge_max_rows_in_memory: int
    _group_of: dict[str, int]

    def __init__(self, database: str, data_sources: Sequence[str], default_data_source: str,
                 tables: Mapping[str, TableRule], broadcast_tables: Iterable[str] = (),
                 single_tables: Mapping[str, str] | None = None,
                 binding_groups: Sequence[Sequence[str]] = (), max_connections_size_per_query: int = 1,
                 merge_max_rows_in_memory: int = 1_000_000) -> None:
        s = object.__setattr__
        s(self, "database", database)
        s(self, "data_sources", tuple(data_sources))
        s(self, "default_data_source", default_data_source)
        s(self, "tables", MappingProxyType({k.lower(): v for k, v in tables.items()}))
        s(self, "broadcast_tables", frozenset(t.lower() for t in broadcast_tables))
        s(self, "single_tables", MappingProxyType({k.lower(): v for k, v in (single_tables or {}).items()}))
        s(self, "binding_groups", tuple(tuple(t.lower() for t in g) for g in binding_groups))
        s(self, "max_connections_size_per_query", max_connections_size_per_query)
        s(self, "merge_max_rows_in_memory", merge_max_rows_in_memory)
        s(self, "_group_of", {t: i for i, g in enumerate(self.binding_groups) for t in g})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ShardingRule is immutable (setting {name})")

    def __repr__(self) -> str:
        return (f"ShardingRule({self.database!r}, tables={sorted(self.tables)}, "
                f"broadcast={sorted(self.broadcast_tables)}, single={dict(self.single_tables)})")

    def table_rule(self, name: str) -> TableRule | None:
        """The sharding rule of logic table `name` (case-insensitive), or None."""
        return self.tables.get(name.lower())

    def is_broadcast(self, name: str) -> bool:
        return name.lower() in self.broadcast_tables

    def single_data_source(self, name: str) -> str:
        """The data source of a `!SINGLE` table; any other table goes to the default data source."""
        return self.single_tables.get(name.lower(), self.default_data_source)

    def are_bound(self, a: str, b: str) -> bool:
        """True when both tables are in one binding group (a table in a group is bound to itself)."""
        group = self._group_of.get(a.lower())
        return group is not None and group == self._group_of.get(b.lower())

    def bound_node(self, primary: str, node: DataNode, other: str) -> DataNode:
        """The node of `other` that pairs with `primary`'s `node`: the one at the same index of its data nodes, as
        ShardingSphere pairs binding tables (the loader checked that the layouts agree index by index)."""
        if not self.are_bound(primary, other):
            raise InternalError(f"{primary} and {other} are not binding tables")
        p, o = self.table_rule(primary), self.table_rule(other)
        assert p is not None and o is not None  # binding groups hold sharding tables only
        return o.data_nodes[p.node_index(node)]


# ------------------------------------------------------------------------------------------- building


@dataclass(frozen=True, slots=True)
class _Loc:
    """Where a config value is: the file and its dotted key path (list items as [i])."""

    file: str
    path: str

    def at(self, *parts: str | int) -> _Loc:
        path = self.path
        for part in parts:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        return _Loc(self.file, path)

    def error(self, detail: str) -> ConfigError:
        return ConfigError(self.file, self.path, detail)


def _mapping(value: object, loc: _Loc, allowed: Sequence[str] | None = None) -> Mapping[str, Any]:
    """`value` as a mapping with string keys (None is empty); with `allowed`, unknown keys are refused."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise loc.error(f"expected a mapping, got {value!r}")
    for key in value:
        if not isinstance(key, str):
            raise loc.error(f"keys must be strings, got {key!r}")
        if allowed is not None and key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(allowed)})"
            raise loc.at(key).error(f"unknown key {key!r}{hint}")
    return value


def _text(value: object, loc: _Loc) -> str:
    if not isinstance(value, str) or not value.strip():
        raise loc.error("required key is missing" if value is None else f"expected a non-empty string, got {value!r}")
    return value.strip()


def _sequence(value: object, loc: _Loc) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise loc.error(f"expected a list, got {value!r}")
    return value


def _unsupported(body: Mapping[str, Any], loc: _Loc, keys: Sequence[str]) -> None:
    for key in keys:
        if body.get(key):  # an empty block changes nothing
            raise loc.at(key).error(f"{key} is not supported by this version of dbmesh")


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A strategy as configured, before it is applied to a table."""

    strategy: Strategy
    spelled: tuple[str, ...]  # columns as written (INLINE variable names)
    loc: _Loc


# Keys of each YAML mapping, as ShardingSphere's YAML classes define them.
_SHARDING_KEYS = ("tables", "autoTables", "bindingTables", "defaultDatabaseStrategy", "defaultTableStrategy",
                  "defaultKeyGenerateStrategy", "defaultAuditStrategy", "defaultShardingColumn",
                  "shardingAlgorithms", "keyGenerators", "auditors", "shardingCache")
_TABLE_KEYS = ("actualDataNodes", "databaseStrategy", "tableStrategy", "keyGenerateStrategy", "auditStrategy")
_AUTO_TABLE_KEYS = ("actualDataSources", "shardingStrategy", "keyGenerateStrategy", "auditStrategy")
_STRATEGY_KEYS: dict[str, tuple[str, ...]] = {
    "standard": ("shardingColumn", "shardingAlgorithmName"),
    "complex": ("shardingColumns", "shardingAlgorithmName"),
    "hint": ("shardingAlgorithmName",),
    "none": (),
}
_AUTO_TYPES = "MOD, HASH_MOD, VOLUME_RANGE, BOUNDARY_RANGE or AUTO_INTERVAL"

# SNOWFLAKE state is shared by every generator with the same props in this process, so a config reload (a new
# snapshot, new generators) cannot hand out a key the previous snapshot's generator already gave.
_GENERATORS: dict[tuple[str, tuple[tuple[str, str], ...]], KeyGenerator] = {}
_GENERATORS_LOCK = threading.Lock()


def _key_generator(cls: type[KeyGenerator], props: Mapping[str, Any], loc: _Loc) -> KeyGenerator:
    fresh = cls(props, file=loc.file, path=loc.path)
    key = (cls.TYPE, tuple(sorted(fresh.props.raw.items())))
    with _GENERATORS_LOCK:
        return _GENERATORS.setdefault(key, fresh)


class _ShardingCompiler:
    """Compiles one `!SHARDING` body; every mistake is one ConfigError at its key path."""

    def __init__(self, body: Mapping[str, Any], loc: _Loc, data_sources: Sequence[str]) -> None:
        self.loc = loc
        self.data_sources = tuple(data_sources)
        self.body = _mapping(body, loc, _SHARDING_KEYS)
        _unsupported(self.body, loc, ("auditors", "defaultAuditStrategy", "shardingCache"))
        default_column = self.body.get("defaultShardingColumn")
        self.default_column = (_text(default_column, loc.at("defaultShardingColumn"))
                               if default_column is not None else None)
        self.algorithms = self._algorithms()
        self.generators = self._generators()
        self.default_db = self._strategy(self.body.get("defaultDatabaseStrategy"), loc.at("defaultDatabaseStrategy"))
        self.default_table = self._strategy(self.body.get("defaultTableStrategy"), loc.at("defaultTableStrategy"))
        for default in (self.default_db, self.default_table):
            if default is not None:
                self._placement(default, auto=False)
        self.default_key = self._key_strategy(self.body.get("defaultKeyGenerateStrategy"),
                                              loc.at("defaultKeyGenerateStrategy"), None)
        self.tables: dict[str, TableRule] = {}
        self.table_locs: dict[str, _Loc] = {}
        self._tables()
        self._auto_tables()
        self.binding_groups = self._binding_groups()

    # -- named algorithms ------------------------------------------------------------------------------

    def _algorithms(self) -> dict[str, ShardingAlgorithm]:
        out: dict[str, ShardingAlgorithm] = {}
        loc = self.loc.at("shardingAlgorithms")
        for name, spec in _mapping(self.body.get("shardingAlgorithms"), loc).items():
            aloc = loc.at(name)
            spec = _mapping(spec, aloc, ("type", "props"))
            type_name = _text(spec.get("type"), aloc.at("type"))
            props = _mapping(spec.get("props"), aloc.at("props"))
            try:
                out[name] = create_algorithm(type_name, props, file=aloc.file, path=aloc.at("props").path)
            except ShardingError as exc:
                raise aloc.at("props").error(f"{type_name}: {exc.detail}") from exc
        return out

    def _generators(self) -> dict[str, KeyGenerator]:
        out: dict[str, KeyGenerator] = {}
        loc = self.loc.at("keyGenerators")
        for name, spec in _mapping(self.body.get("keyGenerators"), loc).items():
            gloc = loc.at(name)
            spec = _mapping(spec, gloc, ("type", "props"))
            type_name = _text(spec.get("type"), gloc.at("type"))
            cls = KEY_GENERATORS.get(type_name)
            if cls is None:
                raise gloc.at("type").error(f"unknown key generator type {type_name!r} (one of "
                                            f"{', '.join(KEY_GENERATORS)})")
            out[name] = _key_generator(cls, _mapping(spec.get("props"), gloc.at("props")), gloc.at("props"))
        return out

    # -- strategies --------------------------------------------------------------------------------------

    def _strategy(self, spec: object, loc: _Loc) -> _Compiled | None:
        if spec is None:
            return None
        body = _mapping(spec, loc, tuple(_STRATEGY_KEYS))
        if len(body) != 1:
            raise loc.error(f"a strategy needs exactly one of standard, complex, hint, none; got "
                            f"{', '.join(body) or 'none of them'}")
        kind = cast(StrategyKind, next(iter(body)))  # one of _STRATEGY_KEYS, checked above
        kloc = loc.at(kind)
        inner = _mapping(body[kind], kloc, _STRATEGY_KEYS[kind])
        if kind == "none":
            return _Compiled(Strategy("none", (), "", None), (), kloc)
        name_loc = kloc.at("shardingAlgorithmName")
        name = _text(inner.get("shardingAlgorithmName"), name_loc)
        algorithm = self.algorithms.get(name)
        if algorithm is None:
            raise name_loc.error(f"sharding algorithm {name!r} is not defined in shardingAlgorithms (defined: "
                                 f"{', '.join(self.algorithms) or 'none'})")
        spelled: tuple[str, ...]
        if kind == "standard":
            column = inner.get("shardingColumn")
            if column is None or (isinstance(column, str) and not column.strip()):
                if self.default_column is None:
                    raise kloc.at("shardingColumn").error("a standard strategy needs shardingColumn (or "
                                                          "defaultShardingColumn)")
                column = self.default_column
            spelled = (_text(column, kloc.at("shardingColumn")),)
            wanted: type[ShardingAlgorithm] = StandardShardingAlgorithm
        elif kind == "complex":
            cloc = kloc.at("shardingColumns")
            text = _text(inner.get("shardingColumns"), cloc)
            spelled = tuple(c.strip() for c in text.split(","))
            if any(not c for c in spelled):
                raise cloc.error(f"empty column name in {text!r}")
            wanted = ComplexInlineShardingAlgorithm
        else:
            spelled = ()
            wanted = HintInlineShardingAlgorithm
        lowered = tuple(c.lower() for c in spelled)
        if len(set(lowered)) != len(lowered):
            raise kloc.at("shardingColumns").error(f"a column is listed twice in {', '.join(spelled)}")
        if not isinstance(algorithm, wanted):
            raise name_loc.error(f"algorithm {name!r} ({algorithm.TYPE}) cannot serve a {kind} strategy")
        if isinstance(algorithm, ComplexInlineShardingAlgorithm) and algorithm.sharding_columns and len(
                algorithm.sharding_columns) != len(spelled):
            # ShardingSphere fails every statement then (its error 53); say so at load.
            raise name_loc.error(f"algorithm {name!r} lists {len(algorithm.sharding_columns)} sharding-columns but "
                                 f"the strategy has {len(spelled)} ({', '.join(spelled)})")
        return _Compiled(Strategy(kind, lowered, name, algorithm), spelled, kloc)

    def _placement(self, compiled: _Compiled, *, auto: bool) -> None:
        """ShardingSphere allows auto-table algorithms only in autoTables, and the others only in tables."""
        algorithm = compiled.strategy.algorithm
        if algorithm is None:
            return
        loc = compiled.loc.at("shardingAlgorithmName")
        name = compiled.strategy.algorithm_name
        if auto and not algorithm.AUTO_TABLE:
            raise loc.error(f"algorithm {name!r} ({algorithm.TYPE}) cannot shard an autoTable (autoTables take "
                            f"{_AUTO_TYPES})")
        if not auto and algorithm.AUTO_TABLE:
            raise loc.error(f"algorithm {name!r} ({algorithm.TYPE}) is an auto-table algorithm: use it in "
                            "autoTables (ShardingSphere refuses it in tables and default strategies)")

    def _key_strategy(self, spec: object, loc: _Loc,
                      default: tuple[str, str, KeyGenerator] | None) -> tuple[str, str, KeyGenerator] | None:
        if spec is None:
            return default
        body = _mapping(spec, loc, ("column", "keyGeneratorName"))
        column = _text(body.get("column"), loc.at("column"))
        name_loc = loc.at("keyGeneratorName")
        if body.get("keyGeneratorName") is None and default is not None:
            return column, default[1], default[2]
        name = _text(body.get("keyGeneratorName"), name_loc)
        generator = self.generators.get(name)
        if generator is None:
            raise name_loc.error(f"key generator {name!r} is not defined in keyGenerators (defined: "
                                 f"{', '.join(self.generators) or 'none'})")
        return column, name, generator

    # -- tables -----------------------------------------------------------------------------------------

    def _register(self, name: str, loc: _Loc) -> None:
        if not name.strip():
            raise loc.error("a logic table name is blank")
        if name.lower() in self.table_locs:
            raise loc.error(f"table {name!r} is already defined at {self.table_locs[name.lower()].path}")
        self.table_locs[name.lower()] = loc

    def _check_data_source(self, ds: str, loc: _Loc, what: str) -> None:
        if ds not in self.data_sources:
            raise loc.error(f"{what} names data source {ds!r}, which is not in dataSources "
                            f"({', '.join(self.data_sources)})")

    def _data_nodes(self, name: str, spec: object, loc: _Loc) -> list[DataNode]:
        if spec is None:
            # ShardingSphere: a table without actualDataNodes has one node named after it on every data source.
            return [DataNode(ds, name) for ds in self.data_sources]
        text = _text(spec, loc)
        try:
            names = expand_data_nodes(text)
        except ShardingError as exc:
            raise loc.error(exc.detail) from exc
        nodes: list[DataNode] = []
        seen: set[DataNode] = set()
        for item in names:
            parts = item.split(".")
            if len(parts) != 2 or not all(p.strip() for p in parts):
                raise loc.error(f"data node {item!r} is not 'data_source.table' (schema-qualified nodes are not "
                                "supported by this version of dbmesh)")
            node = DataNode(parts[0].strip(), parts[1].strip())
            self._check_data_source(node.data_source, loc, f"data node {item!r}")
            if node in seen:
                raise loc.error(f"data node {item!r} appears twice")
            seen.add(node)
            nodes.append(node)
        return nodes

    def _spelling(self, *compiled: _Compiled | None) -> dict[str, str]:
        return {c.lower(): c for s in compiled if s is not None for c in s.spelled}

    def _check_inline(self, compiled: _Compiled | None, own: bool, table_loc: _Loc, side: str,
                      prefix: str) -> None:
        """ShardingSphere's startup check of INLINE standard strategies: the expression evaluated with Integer 1
        must start with the nodes' prefix (so a typo in the expression or its column fails at load)."""
        algorithm = compiled.strategy.algorithm if compiled is not None else None
        if compiled is None or not isinstance(algorithm, InlineShardingAlgorithm):
            return
        loc = compiled.loc.at("shardingAlgorithmName") if own else table_loc
        source = "" if own else f"default{side[0].upper()}{side[1:]} "
        column = compiled.spelled[0]
        if column not in algorithm.expression.text:
            # ShardingSphere's check runs the algorithm, which refuses this (its error 52) at start-up too.
            raise loc.error(f"{source}algorithm {compiled.strategy.algorithm_name!r}: algorithm-expression "
                            f"{algorithm.expression.text!r} does not mention sharding column {column!r}")
        try:
            algorithm.check_prefix(column, prefix)
        except ConfigError as exc:
            raise loc.error(f"{source}algorithm {compiled.strategy.algorithm_name!r}: {exc.detail}") from exc

    def _tables(self) -> None:
        loc = self.loc.at("tables")
        for name, spec in _mapping(self.body.get("tables"), loc).items():
            tloc = loc.at(name)
            self._register(name, tloc)
            body = _mapping(spec, tloc, _TABLE_KEYS)
            _unsupported(body, tloc, ("auditStrategy",))
            nodes = self._data_nodes(name, body.get("actualDataNodes"), tloc.at("actualDataNodes"))
            resolved: list[_Compiled | None] = []
            for side, default in (("databaseStrategy", self.default_db), ("tableStrategy", self.default_table)):
                own = body.get(side) is not None
                compiled = self._strategy(body.get(side), tloc.at(side)) if own else default
                if own and compiled is not None:
                    self._placement(compiled, auto=False)
                resolved.append(compiled)
            key = self._key_strategy(body.get("keyGenerateStrategy"), tloc.at("keyGenerateStrategy"),
                                     self.default_key)
            db, table = resolved
            rule = TableRule(name, nodes, db.strategy if db else None, table.strategy if table else None,
                             key[0] if key else None, key[2] if key else None, False,
                             column_spelling=self._spelling(db, table), key_generator_name=key[1] if key else "")
            self._check_inline(db, body.get("databaseStrategy") is not None, tloc, "databaseStrategy",
                               rule.database_node_info.prefix)
            self._check_inline(table, body.get("tableStrategy") is not None, tloc, "tableStrategy",
                               rule.table_node_info.prefix)
            self.tables[name.lower()] = rule

    def _auto_tables(self) -> None:
        loc = self.loc.at("autoTables")
        for name, spec in _mapping(self.body.get("autoTables"), loc).items():
            tloc = loc.at(name)
            self._register(name, tloc)
            body = _mapping(spec, tloc, _AUTO_TABLE_KEYS)
            _unsupported(body, tloc, ("auditStrategy",))
            sloc = tloc.at("shardingStrategy")
            compiled = self._strategy(body.get("shardingStrategy"), sloc)
            if compiled is None or compiled.strategy.kind != "standard":
                raise sloc.error("an autoTable needs a standard shardingStrategy with an auto-table algorithm "
                                 f"({_AUTO_TYPES})")
            self._placement(compiled, auto=True)
            algorithm = compiled.strategy.algorithm
            assert isinstance(algorithm, AutoTableShardingAlgorithm)
            dloc = tloc.at("actualDataSources")
            # ShardingSphere falls back to the rule's data sources; that set depends on other rules, so dbmesh
            # asks for it to be written down.
            text = _text(body.get("actualDataSources"), dloc)
            try:
                sources = expand_data_nodes(text)
            except ShardingError as exc:
                raise dloc.error(exc.detail) from exc
            for ds in sources:
                self._check_data_source(ds, dloc, "actualDataSources")
            if len(set(sources)) != len(sources):
                raise dloc.error(f"a data source is listed twice in {', '.join(sources)}")
            try:
                nodes = auto_table_nodes(sources, algorithm.auto_tables_amount, name)
            except ShardingError as exc:
                raise sloc.error(exc.detail) from exc
            key = self._key_strategy(body.get("keyGenerateStrategy"), tloc.at("keyGenerateStrategy"),
                                     self.default_key)
            # The database strategy of an autoTable is fixed to none: every data source is tried and the computed
            # table is kept where it exists.
            self.tables[name.lower()] = TableRule(
                name, nodes, None, compiled.strategy, key[0] if key else None, key[2] if key else None, True,
                column_spelling=self._spelling(compiled), key_generator_name=key[1] if key else "")

    # -- binding tables -----------------------------------------------------------------------------------

    def _binding_groups(self) -> tuple[tuple[str, ...], ...]:
        loc = self.loc.at("bindingTables")
        groups: list[tuple[str, ...]] = []
        member_of: dict[str, int] = {}
        for i, item in enumerate(_sequence(self.body.get("bindingTables"), loc)):
            iloc = loc.at(i)
            if isinstance(item, Mapping):
                # The named form: {name: <group name>, references: "t_a,t_b" | [t_a, t_b]}.
                body = _mapping(item, iloc, ("name", "references"))
                refs = body.get("references")
                rloc = iloc.at("references")
                names = [str(t) for t in _sequence(refs, rloc)] if not isinstance(refs, str) else refs.split(",")
            elif isinstance(item, str):
                # "t_a,t_b", or "name:t_a,t_b" (ShardingSphere 5.3+ names a group before a colon).
                names = item.split(":", 1)[-1].split(",")
                rloc = iloc
            else:
                raise iloc.error(f"expected 't_a,t_b' or {{name, references}}, got {item!r}")
            group = tuple(n.strip() for n in names)
            if len(group) < 2 or any(not n for n in group):
                raise rloc.error(f"a binding group needs at least two table names, got {group!r}")
            for table in group:
                if table.lower() not in self.tables:
                    raise rloc.error(f"{table!r} is not a sharding table of this rule (bind tables or autoTables)")
                if table.lower() in member_of:
                    raise rloc.error(f"{table!r} is already in binding group {member_of[table.lower()]}")
                member_of[table.lower()] = i
            if len({t.lower() for t in group}) != len(group):
                raise rloc.error(f"a table is listed twice in {', '.join(group)}")
            first = self.tables[group[0].lower()]
            for table in group[1:]:
                self._check_bindable(first, self.tables[table.lower()], rloc)
            groups.append(tuple(t.lower() for t in group))
        return tuple(groups)

    def _check_bindable(self, a: TableRule, b: TableRule, loc: _Loc) -> None:
        """Binding pairs nodes by index, so both tables must have the same data source and the same table suffix
        at every index, and shard alike (ShardingSphere compares INLINE expressions without prefix and column)."""
        what = f"{b.logic_table} cannot be bound to {a.logic_table}"
        if len(a.data_nodes) != len(b.data_nodes):
            raise loc.error(f"{what}: {len(b.data_nodes)} data nodes against {len(a.data_nodes)}")
        for i, (na, nb) in enumerate(zip(a.data_nodes, b.data_nodes, strict=True)):
            sa, sb = na.table[len(na.table.rstrip(_DIGITS)):], nb.table[len(nb.table.rstrip(_DIGITS)):]
            if na.data_source != nb.data_source or sa != sb:
                raise loc.error(f"{what}: data node {i} is {nb} against {na} (binding tables need the same data "
                                "sources and table suffixes in the same order)")
        for side, sa_, sb_ in (("databaseStrategy", a.database_strategy, b.database_strategy),
                               ("tableStrategy", a.table_strategy, b.table_strategy)):
            prefixes = ((a.database_node_info.prefix, b.database_node_info.prefix) if side == "databaseStrategy"
                        else (a.table_node_info.prefix, b.table_node_info.prefix))
            if _signature(sa_, a, prefixes[0]) != _signature(sb_, b, prefixes[1]):
                raise loc.error(f"{what}: their {side} shard differently (binding tables must use the same "
                                "algorithm, up to table prefix and column name)")


def _signature(strategy: Strategy | None, table: TableRule, prefix: str) -> tuple[object, ...]:
    """What must agree for two binding tables to shard alike: strategy kind, column count, algorithm type and
    props with the node prefix and the column names taken out."""
    if strategy is None or strategy.algorithm is None or strategy.kind == "none":
        return ("none",)
    spelled = [table._spelling.get(c, c) for c in strategy.columns]
    props = []
    for key, value in sorted(strategy.algorithm.props.raw.items()):
        if prefix:
            value = value.replace(prefix, "")
        for column in sorted(spelled, key=len, reverse=True):
            value = value.replace(column, "")
        props.append((key, value))
    return (strategy.kind, len(strategy.columns), strategy.algorithm.TYPE, tuple(props))


def _compile_broadcast(body: Mapping[str, Any], loc: _Loc) -> dict[str, _Loc]:
    body = _mapping(body, loc, ("tables",))
    tloc = loc.at("tables")
    out: dict[str, _Loc] = {}
    for i, name in enumerate(_sequence(body.get("tables"), tloc)):
        table = _text(name, tloc.at(i))
        if table.lower() in out:
            raise tloc.at(i).error(f"table {table!r} is listed twice")
        out[table.lower()] = tloc.at(i)
    return out


@dataclass(frozen=True, slots=True)
class _Single:
    tables: dict[str, tuple[str, _Loc]]  # lower-case table -> (data source, where listed)
    default_data_source: str


def _compile_single(body: Mapping[str, Any], loc: _Loc, data_sources: Sequence[str]) -> _Single:
    body = _mapping(body, loc, ("tables", "defaultDataSource"))
    default_given = body.get("defaultDataSource")
    default = data_sources[0]
    if default_given is not None:
        default = _text(default_given, loc.at("defaultDataSource"))
        if default not in data_sources:
            raise loc.at("defaultDataSource").error(f"{default!r} is not in dataSources ({', '.join(data_sources)})")
    tloc = loc.at("tables")
    tables: dict[str, tuple[str, _Loc]] = {}
    for i, entry in enumerate(_sequence(body.get("tables"), tloc)):
        eloc = tloc.at(i)
        text = _text(entry, eloc)
        parts = [p.strip() for p in text.split(".")]
        if len(parts) not in (2, 3) or not all(parts):
            raise eloc.error(f"expected 'data_source.table', 'data_source.*' or '*.*', got {text!r}")
        ds, table = parts[0], parts[-1]
        if ds != "*":
            if ds not in data_sources:
                raise eloc.error(f"{text!r} names data source {ds!r}, which is not in dataSources "
                                 f"({', '.join(data_sources)})")
        if table == "*":
            # dbmesh loads no table metadata, so a wildcard can only mean "tables in no rule go to one data
            # source"; that must be the default data source, and unambiguous.
            if ds == "*":
                if len(data_sources) > 1 and default_given is None:
                    raise eloc.error(f"{text!r} would need table metadata to tell which of {', '.join(data_sources)} "
                                     "holds a table; dbmesh does not load it. List the tables as 'ds.table', or "
                                     "set defaultDataSource to the data source that holds every unlisted table")
            elif ds != default:
                raise eloc.error(f"{text!r} sends unlisted tables to {ds}, but the default data source is {default}; "
                                 f"set defaultDataSource: {ds} (dbmesh loads no table metadata to tell tables apart)")
            continue
        if ds == "*":
            raise eloc.error(f"{text!r}: name the data source that holds {table} (dbmesh loads no table metadata)")
        if table.lower() in tables:
            raise eloc.error(f"table {table!r} is already listed at {tables[table.lower()][1].path}")
        tables[table.lower()] = (ds, eloc)
    return _Single(tables, default)


def validate_rule(kind: str, body: Mapping[str, Any], file: str, key: str, data_sources: Sequence[str]) -> None:
    """Compile one `!SHARDING` / `!BROADCAST` / `!SINGLE` body on its own (the loader's per-rule validators);
    cross-rule checks happen in `build_sharding_rule`."""
    loc = _Loc(file, key)
    if kind == "SHARDING":
        _ShardingCompiler(body, loc, data_sources)
    elif kind == "BROADCAST":
        _compile_broadcast(body, loc)
    elif kind == "SINGLE":
        _compile_single(body, loc, data_sources)
    else:
        raise InternalError(f"validate_rule got rule kind {kind}")


def build_sharding_rule(database: Database, props: Mapping[str, object]) -> ShardingRule | None:
    """The compiled rule of `database`, or None when it has no SHARDING/BROADCAST/SINGLE rule. A mistake raises
    ConfigError naming the database's file and the key path (`rules[i]....`)."""
    if not any(rule.kind in RULE_KINDS for rule in database.rules):
        return None
    data_sources = list(database.data_sources)
    sharding: _ShardingCompiler | None = None
    broadcast: dict[str, _Loc] = {}
    single: _Single | None = None
    for i, rule in enumerate(database.rules):
        loc = _Loc(database.file, f"rules[{i}]")
        if rule.kind == "SHARDING":
            sharding = _ShardingCompiler(rule.body, loc, data_sources)
        elif rule.kind == "BROADCAST":
            broadcast = _compile_broadcast(rule.body, loc)
        elif rule.kind == "SINGLE":
            single = _compile_single(rule.body, loc, data_sources)
    tables = sharding.tables if sharding is not None else {}
    table_locs = sharding.table_locs if sharding is not None else {}
    for name, loc in broadcast.items():
        if name in table_locs:
            raise loc.error(f"table {name!r} is both a broadcast table and a sharding table ({table_locs[name].path})")
    singles = single.tables if single is not None else {}
    for name, (_, loc) in singles.items():
        if name in table_locs:
            raise loc.error(f"table {name!r} is both a single table and a sharding table ({table_locs[name].path})")
        if name in broadcast:
            raise loc.error(f"table {name!r} is both a single table and a broadcast table ({broadcast[name].path})")
    return ShardingRule(
        database=database.name, data_sources=data_sources,
        default_data_source=single.default_data_source if single is not None else data_sources[0],
        tables=tables, broadcast_tables=broadcast, single_tables={n: ds for n, (ds, _) in singles.items()},
        binding_groups=sharding.binding_groups if sharding is not None else (),
        max_connections_size_per_query=_int_prop(props, "max-connections-size-per-query", 1),
        merge_max_rows_in_memory=_int_prop(props, "merge-max-rows-in-memory", 1_000_000))


def _int_prop(props: Mapping[str, object], name: str, default: int) -> int:
    value = props.get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --------------------------------------------------------------------------------------------- memo

# id(config) -> (weak reference to it, database name -> rule). The weak reference's callback drops the entry
# when the snapshot is collected; comparing it with the config guards against a reused id.
_RULES: dict[int, tuple[weakref.ref[Config], dict[str, ShardingRule | None]]] = {}
_RULES_LOCK = threading.RLock()  # re-entrant: a collected snapshot's callback may run inside a locked section


def _evict(key: int, ref: weakref.ref[Config]) -> None:
    with _RULES_LOCK:
        entry = _RULES.get(key)
        if entry is not None and entry[0] is ref:
            del _RULES[key]


def _entry(config: Config) -> dict[str, ShardingRule | None]:
    key = id(config)
    entry = _RULES.get(key)
    if entry is None or entry[0]() is not config:

        def collected(ref: weakref.ref[Config]) -> None:
            _evict(key, ref)

        entry = (weakref.ref(config, collected), {})
        _RULES[key] = entry
    return entry[1]


def remember_sharding_rules(config: Config, rules: Mapping[str, ShardingRule | None]) -> None:
    """Record rules already built for `config`'s databases (the loader builds them to validate)."""
    with _RULES_LOCK:
        _entry(config).update(rules)


def sharding_rule_for(config: Config, database: Database) -> ShardingRule | None:
    """The compiled rule of `database` (one of `config.databases`), built once per config snapshot."""
    with _RULES_LOCK:
        rules = _entry(config)
        if database.name in rules:
            return rules[database.name]
    rule = build_sharding_rule(database, config.props)
    with _RULES_LOCK:
        return _entry(config).setdefault(database.name, rule)
