"""Answer admin statements from the config snapshot, the compiled sharding rule and the planner.

Results are protocol-independent: an `AdminResult` is a table of text cells (the session renders it as a MySQL
text result set or PostgreSQL RowDescription/DataRow), a `HintChange` is what a session applies to its hint.

Cell formats follow ShardingSphere-Proxy 5.5's DistSQL (`LocalDataQueryResultRow`): absent values are "" (never
NULL), booleans and numbers are their Java `toString()`, algorithm props are compact JSON with sorted keys.
SHOW SHARDING TABLE RULES, SHOW SHARDING ALGORITHMS, SHOW BROADCAST TABLE RULES and SHOW SINGLE TABLES read the
rule YAML as written (ShardingSphere shows the configuration, e.g. `actualDataNodes` unexpanded); SHOW SHARDING
TABLE NODES and PREVIEW use the compiled rule and the planner, so they show exactly what routing does.

Session hint statements are dbmesh's own (ShardingSphere-Proxy removed its hint DistSQL in 5.x); they set
values for `hint` sharding strategies and the data source override, for the rest of the session:

* ``SET SHARDING HINT DATA_SOURCE = 'ds_0'`` sends every following statement, unchanged, to ds_0.
* ``SET SHARDING HINT DATABASE_VALUE t_order = 1`` (or ``ADD ...``) adds 1 to t_order's database hint values;
  without a table name the value applies to every table.
* ``SET SHARDING HINT TABLE_VALUE t_order = 'a'`` (or ``ADD ...``) adds a table hint value the same way.
* ``CLEAR SHARDING HINT`` (or ``CLEAR HINT``) drops them all; ``SHOW SHARDING HINT STATUS`` lists them.

Values are integers or single-quoted strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from dbmesh.admin.parse import (
    AdminStatement,
    ClearShardingHint,
    Preview,
    SetShardingHint,
    ShowBroadcastTableRules,
    ShowShardingAlgorithms,
    ShowShardingHintStatus,
    ShowShardingTableNodes,
    ShowShardingTableRules,
    ShowSingleTables,
    ShowStorageUnits,
)
from dbmesh.config import Config, Database, DataSource
from dbmesh.errors import AUTH_UNKNOWN_DATABASE, NO_DATABASE_SELECTED, InternalError, SessionError
from dbmesh.sharding.conditions import Hint
from dbmesh.sharding.rule import ShardingRule, sharding_rule_for

if TYPE_CHECKING:
    from dbmesh.kernel.planner import Planner

Dialect = Literal["mysql", "postgres"]
Cell = str | None


@dataclass(frozen=True, slots=True)
class AdminResult:
    """A result table: column names and rows of text cells (None renders as SQL NULL)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True, slots=True)
class HintChange:
    """A change to the session's hint: set the data source, add a database/table value, or clear everything.

    `table` is a lower-case logic table name, "" for every table; `value` is the data source name or the
    sharding value (int or str); both are unused by "clear"."""

    action: Literal["data_source", "database_value", "table_value", "clear"]
    table: str = ""
    value: int | str | None = None


# ------------------------------------------------------------------------------ the rule and the planner


def _sharding_rule(config: Config, database: Database) -> ShardingRule | None:
    """The database's compiled sharding rule (None without sharding rules)."""
    return sharding_rule_for(config, database)


def _planner(rule: ShardingRule, dialect: Dialect) -> Planner:
    # Imported on use: the planner loads the whole routing and rewriting kernel, which the SHOW statements
    # (and the CLI's config checks) never need.
    from dbmesh.kernel.planner import Planner

    return Planner(rule, dialect)


# ------------------------------------------------------------------------------------------------ helpers


def _resolve_database(config: Config, current: Database | None, name: str | None) -> Database:
    """`FROM name`'s database, else the session's; the catalogue errors when there is none."""
    if name is not None:
        database = config.databases.get(name)
        if database is None:
            raise SessionError(AUTH_UNKNOWN_DATABASE, database=name)
        return database
    if current is None:
        raise SessionError(NO_DATABASE_SELECTED)
    return current


def _rule_bodies(database: Database, kind: str) -> list[Mapping[str, Any]]:
    return [rule.body for rule in database.rules if rule.kind.upper() == kind and isinstance(rule.body, Mapping)]


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def _json(value: Any) -> str:
    """Compact JSON as Jackson writes it (no spaces, non-ASCII kept); unknown scalars as their text."""
    return json.dumps(_thaw(value), separators=(",", ":"), ensure_ascii=False, default=str)


def _props_json(props: Any) -> str:
    """Algorithm props as ShardingSphere shows them: "" when empty, else JSON with keys sorted."""
    if not isinstance(props, Mapping) or not props:
        return ""
    return _json({str(k): props[k] for k in sorted(props, key=str)})


def _text(value: Any) -> str:
    """A config scalar as Java's toString() gives it ("" for null)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else MappingProxyType({})


# ------------------------------------------------------------------------------------- SHOW SHARDING ...

TABLE_RULE_COLUMNS = (
    "table", "actual_data_nodes", "actual_data_sources", "database_strategy_type", "database_sharding_column",
    "database_sharding_algorithm_type", "database_sharding_algorithm_props", "table_strategy_type",
    "table_sharding_column", "table_sharding_algorithm_type", "table_sharding_algorithm_props",
    "key_generate_column", "key_generator_type", "key_generator_props", "auditor_types", "allow_hint_disable")


def _strategy_cells(strategy: Any, algorithms: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(type, column, algorithm type, algorithm props) of a YAML strategy block; all "" when there is none."""
    if not isinstance(strategy, Mapping) or not strategy:
        return "", "", "", ""
    kind, body = next(iter(strategy.items()))
    body = _mapping(body)
    kind = str(kind).lower()
    if kind == "standard":
        column = _text(body.get("shardingColumn"))
    elif kind == "complex":
        column = _text(body.get("shardingColumns"))
    else:
        column = ""
    if kind == "none":
        return "NONE", "", "", ""
    algorithm = _mapping(algorithms.get(str(body.get("shardingAlgorithmName"))))
    return kind.upper(), column, _text(algorithm.get("type")), _props_json(algorithm.get("props"))


def _table_rule_row(logic: str, table: Mapping[str, Any], auto: bool, rule: Mapping[str, Any]) -> tuple[Cell, ...]:
    algorithms = _mapping(rule.get("shardingAlgorithms"))
    if auto:
        nodes, sources = "", _text(table.get("actualDataSources"))
        database_cells = ("", "", "", "")
        table_strategy = table.get("shardingStrategy")
    else:
        nodes, sources = _text(table.get("actualDataNodes")), ""
        database_cells = _strategy_cells(table.get("databaseStrategy") or rule.get("defaultDatabaseStrategy"),
                                         algorithms)
        table_strategy = table.get("tableStrategy")
    table_cells = _strategy_cells(table_strategy or rule.get("defaultTableStrategy"), algorithms)
    key_strategy = _mapping(table.get("keyGenerateStrategy") or rule.get("defaultKeyGenerateStrategy"))
    if key_strategy:
        generator = _mapping(_mapping(rule.get("keyGenerators")).get(str(key_strategy.get("keyGeneratorName"))))
        key_cells = (_text(key_strategy.get("column")), _text(generator.get("type")), _props_json(generator.get("props")))
    else:
        key_cells = ("", "", "")
    audit = _mapping(table.get("auditStrategy") or rule.get("defaultAuditStrategy"))
    if audit:
        auditors = _mapping(rule.get("auditors"))
        names = audit.get("auditorNames") or ()
        types = [_text(_mapping(auditors.get(str(n))).get("type")) for n in (names if isinstance(names, tuple) else (names,))]
        allow = audit.get("allowHintDisable", True)
        audit_cells = (",".join(types), _text(allow if isinstance(allow, bool) else str(allow).lower() == "true"))
    else:
        audit_cells = ("", "")
    return (logic, nodes, sources, *database_cells, *table_cells, *key_cells, *audit_cells)


def _show_table_rules(stmt: ShowShardingTableRules, database: Database) -> AdminResult:
    rows: list[tuple[Cell, ...]] = []
    wanted = stmt.table.lower() if stmt.table is not None else None
    for rule in _rule_bodies(database, "SHARDING"):
        # ShardingSphere lists `tables` first, then `autoTables`, each in configuration order.
        for section, auto in (("tables", False), ("autoTables", True)):
            for logic, table in _mapping(rule.get(section)).items():
                if wanted is None or str(logic).lower() == wanted:
                    rows.append(_table_rule_row(str(logic), _mapping(table), auto, rule))
    return AdminResult(TABLE_RULE_COLUMNS, tuple(rows))


def _show_table_nodes(stmt: ShowShardingTableNodes, config: Config, database: Database) -> AdminResult:
    rule = _sharding_rule(config, database)
    rows: list[tuple[Cell, ...]] = []
    wanted = stmt.table.lower() if stmt.table is not None else None
    for table_rule in rule.tables.values() if rule is not None else ():
        if wanted is None or table_rule.logic_table.lower() == wanted:
            nodes = ", ".join(f"{node.data_source}.{node.table}" for node in table_rule.data_nodes)
            rows.append((table_rule.logic_table, nodes))
    return AdminResult(("name", "nodes"), tuple(rows))


def _show_algorithms(stmt: ShowShardingAlgorithms, database: Database) -> AdminResult:
    rows: list[tuple[Cell, ...]] = []
    for rule in _rule_bodies(database, "SHARDING"):
        for name, algorithm in _mapping(rule.get(stmt.section)).items():
            algorithm = _mapping(algorithm)
            rows.append((str(name), _text(algorithm.get("type")), _props_json(algorithm.get("props"))))
    return AdminResult(("name", "type", "props"), tuple(rows))


# ----------------------------------------------------------------------------------- SHOW STORAGE UNITS

STORAGE_UNIT_COLUMNS = (
    "name", "type", "host", "port", "db", "connection_timeout_milliseconds", "idle_timeout_milliseconds",
    "max_lifetime_milliseconds", "max_pool_size", "min_pool_size", "read_only", "other_attributes")
_STORAGE_TYPES = {"mysql": "MySQL", "postgresql": "PostgreSQL"}
# URL parameters that may carry credentials are never shown.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|credential", re.IGNORECASE)


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


def _storage_unit_row(ds: DataSource) -> tuple[Cell, ...]:
    pool = ds.pool
    # dbmesh's own pool settings and the URL's driver parameters are what ShardingSphere calls custom
    # attributes (HikariCP's `dataSourceProperties` hold the driver's).
    other: dict[str, Any] = {
        "connectTimeoutMilliseconds": round(pool.connect_timeout_s * 1000),
        "healthCheckIntervalMilliseconds": round(pool.health_check_interval_s * 1000),
    }
    params = {k: v for k, v in ds.params.items() if not _SECRET_PARAM.search(k)}
    if params:
        other["dataSourceProperties"] = params
    return (ds.name, _STORAGE_TYPES.get(ds.protocol, ds.protocol), ds.host, str(ds.port), ds.database or "",
            _ms(pool.wait_timeout_s), _ms(pool.idle_timeout_s), _ms(pool.max_lifetime_s), str(pool.max_size),
            str(pool.min_size), "false", _json(dict(sorted(other.items()))))


# ----------------------------------------------------------------------------- broadcast and single tables


def _show_broadcast(database: Database) -> AdminResult:
    rows = [(_text(t),) for body in _rule_bodies(database, "BROADCAST") for t in _as_sequence(body.get("tables"))]
    return AdminResult(("broadcast_table",), tuple(rows))


def _as_sequence(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if isinstance(value, tuple | list):
        return value
    return (value,)


def _like(pattern: str) -> re.Pattern[str]:
    """A SQL LIKE pattern (% and _, backslash escapes) as a case-insensitive regular expression."""
    out: list[str] = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _show_single(stmt: ShowSingleTables, database: Database) -> AdminResult:
    """The single tables named explicitly (`ds.t` / `ds.schema.t`) in `!SINGLE tables`; wildcard entries need the
    data sources' metadata, which the config alone cannot give, so they are not listed."""
    found: list[tuple[str, str]] = []
    for body in _rule_bodies(database, "SINGLE"):
        for entry in _as_sequence(body.get("tables")):
            parts = str(entry).split(".")
            if len(parts) < 2 or any("*" in p for p in parts):
                continue
            found.append((parts[-1], parts[0]))
    like = _like(stmt.like) if stmt.like is not None else None
    rows = [(t, ds) for t, ds in sorted(found, key=lambda r: (r[0].lower(), r[1]))
            if (stmt.table is None or t.lower() == stmt.table.lower()) and (like is None or like.fullmatch(t))]
    return AdminResult(("table_name", "storage_unit_name"), tuple(rows))


# ------------------------------------------------------------------------------------------------- hints

HINT_STATUS_COLUMNS = ("table_name", "database_sharding_values", "table_sharding_values", "data_source_name")


def _show_hint_status(hint: Hint | None) -> AdminResult:
    """One row per table with hint values ("*" = every table), or one row when only a data source is set."""
    if hint is None:
        return AdminResult(HINT_STATUS_COLUMNS, ())
    data_source = hint.data_source or ""
    tables = sorted(set(hint.database_values) | set(hint.table_values))
    rows: list[tuple[Cell, ...]] = [
        (table or "*", ",".join(str(v) for v in hint.database_values.get(table, ())),
         ",".join(str(v) for v in hint.table_values.get(table, ())), data_source)
        for table in tables]
    if not rows and hint.data_source is not None:
        rows.append(("*", "", "", data_source))
    return AdminResult(HINT_STATUS_COLUMNS, tuple(rows))


def apply_hint_change(hint: Hint | None, change: HintChange) -> Hint | None:
    """The session hint after `change` (None when cleared).

    >>> h = apply_hint_change(None, HintChange("table_value", "t_order", 1))
    >>> h = apply_hint_change(h, HintChange("table_value", "t_order", 3))
    >>> dict(h.table_values), h.data_source
    ({'t_order': (1, 3)}, None)
    >>> apply_hint_change(h, HintChange("clear")) is None
    True
    """
    if change.action == "clear":
        return None
    current = hint if hint is not None else Hint()
    if change.action == "data_source":
        return replace(current, data_source=str(change.value))
    if change.action == "database_value":
        return replace(current, database_values=_added(current.database_values, change.table, change.value))
    return replace(current, table_values=_added(current.table_values, change.table, change.value))


def _added(values: Mapping[str, tuple[Any, ...]], table: str, value: Any) -> Mapping[str, tuple[Any, ...]]:
    updated = dict(values)
    updated[table] = (*updated.get(table, ()), value)
    return MappingProxyType(updated)


# ---------------------------------------------------------------------------------------------- PREVIEW

PREVIEW_COLUMNS = ("data_source_name", "actual_sql")


def _preview(stmt: Preview, config: Config, database: Database, dialect: Dialect, hint: Hint | None) -> AdminResult:
    rule = _sharding_rule(config, database)
    if rule is None:
        return AdminResult(PREVIEW_COLUMNS, ((database.default_data_source.name, stmt.sql),))
    plan = _planner(rule, dialect).plan(stmt.sql, hint=hint)
    return AdminResult(PREVIEW_COLUMNS, tuple((unit.data_source, unit.sql) for unit in plan.units))


# -------------------------------------------------------------------------------------------------- API


def execute_admin(stmt: AdminStatement, *, config: Config, database: Database | None, dialect: Dialect,
                  hint: Hint | None = None) -> AdminResult | HintChange:
    """Answer `stmt` for a session whose current database is `database` (None: none selected) and whose hint is
    `hint`. Raises the catalogue's NO_DATABASE_SELECTED / AUTH_UNKNOWN_DATABASE, and lets planning errors through.
    """
    if isinstance(stmt, Preview):
        return _preview(stmt, config, _resolve_database(config, database, None), dialect, hint)
    if isinstance(stmt, ShowShardingTableRules):
        return _show_table_rules(stmt, _resolve_database(config, database, stmt.database))
    if isinstance(stmt, ShowShardingTableNodes):
        return _show_table_nodes(stmt, config, _resolve_database(config, database, stmt.database))
    if isinstance(stmt, ShowShardingAlgorithms):
        return _show_algorithms(stmt, _resolve_database(config, database, stmt.database))
    if isinstance(stmt, ShowStorageUnits):
        target = _resolve_database(config, database, stmt.database)
        return AdminResult(STORAGE_UNIT_COLUMNS, tuple(_storage_unit_row(ds) for ds in target.data_sources.values()))
    if isinstance(stmt, ShowBroadcastTableRules):
        return _show_broadcast(_resolve_database(config, database, stmt.database))
    if isinstance(stmt, ShowSingleTables):
        return _show_single(stmt, _resolve_database(config, database, stmt.database))
    if isinstance(stmt, SetShardingHint):
        return HintChange(stmt.target, stmt.table, stmt.value)
    if isinstance(stmt, ClearShardingHint):
        return HintChange("clear")
    if isinstance(stmt, ShowShardingHintStatus):
        return _show_hint_status(hint)
    raise InternalError(f"execute_admin got {stmt!r}")  # pragma: no cover - the union above is exhaustive


