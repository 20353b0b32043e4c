"""dbmesh.sharding.rule: compiling !SHARDING / !BROADCAST / !SINGLE, every validation error, and routing through
every strategy kind and built-in algorithm (expected nodes come from the algorithms' definitions, not from the
code under test)."""

from __future__ import annotations

import copy
import datetime as dt
import doctest
import math
import tempfile
import textwrap
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

import dbmesh.sharding.errors
import dbmesh.sharding.rule
from dbmesh.config import Config, load_config
from dbmesh.config.loader import RULE_VALIDATORS
from dbmesh.errors import ConfigError, DbMeshError, InternalError
from dbmesh.sharding.autotables import DataNode
from dbmesh.sharding.conditions import ConditionGroup, Hint, Range, Values
from dbmesh.sharding.errors import NullShardingValueError, ShardingError
from dbmesh.sharding.rule import ShardingRule, Strategy, TableRule, build_sharding_rule, sharding_rule_for

REPO = Path(__file__).resolve().parents[2]

DATABASE = """\
databaseName: db
dataSources:
  ds_0: {url: 'mysql://h/d0', username: u}
  ds_1: {url: 'mysql://h/d1', username: u}
"""

NULL, ALGORITHM, RANGE, NO_ROUTE, UNSUPPORTED, KEYGEN = (
    "DBM-1501", "DBM-1502", "DBM-1503", "DBM-1504", "DBM-1506", "DBM-1508")


def write_config(tmp_path: Path, rules: list[tuple[str, Any]], *, database: str = DATABASE,
                 global_yaml: str = "") -> Path:
    """A config directory whose database has `rules` ([(kind, body as Python data)])."""
    text = database + ("rules:\n" if rules else "rules: []\n")
    for kind, body in rules:
        text += f"- !{kind}\n" + textwrap.indent(yaml.safe_dump(body, sort_keys=False), "  ")
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    (d / "database-db.yaml").write_text(text, encoding="utf-8")
    (d / "global.yaml").write_text(global_yaml, encoding="utf-8")
    return d


def load(tmp_path: Path, *rules: tuple[str, Any], **kw: Any) -> tuple[Config, ShardingRule]:
    cfg = load_config(write_config(tmp_path, list(rules), **kw))
    rule = sharding_rule_for(cfg, cfg.databases["db"])
    assert rule is not None
    return cfg, rule


def load_error(tmp_path: Path, *rules: tuple[str, Any], **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, list(rules), **kw))
    assert info.value.file == "database-db.yaml"
    return info.value


def inline(expression: str, **props: Any) -> dict[str, Any]:
    return {"type": "INLINE", "props": {"algorithm-expression": expression, **props}}


def standard(column: str | None, algorithm: str) -> dict[str, Any]:
    body: dict[str, Any] = {"shardingAlgorithmName": algorithm}
    if column is not None:
        body["shardingColumn"] = column
    return {"standard": body}


def order_rule() -> dict[str, Any]:
    """t_order / t_order_item over ds_0..1 by user_id and 2 tables each by order_id, bound; a SNOWFLAKE key."""
    return {
        "tables": {
            "t_order": {"actualDataNodes": "ds_${0..1}.t_order_${0..1}",
                        "databaseStrategy": standard("user_id", "db_inline"),
                        "tableStrategy": standard("order_id", "t_order_inline"),
                        "keyGenerateStrategy": {"column": "order_id", "keyGeneratorName": "snowflake"}},
            "t_order_item": {"actualDataNodes": "ds_${0..1}.t_order_item_${0..1}",
                             "databaseStrategy": standard("user_id", "db_inline"),
                             "tableStrategy": standard("order_id", "t_order_item_inline")},
        },
        "bindingTables": ["t_order,t_order_item"],
        "shardingAlgorithms": {
            "db_inline": inline("ds_${user_id % 2}"),
            "t_order_inline": inline("t_order_${order_id % 2}"),
            "t_order_item_inline": inline("t_order_item_${order_id % 2}"),
        },
        "keyGenerators": {"snowflake": {"type": "SNOWFLAKE"}},
    }


def group(**conditions: Any) -> ConditionGroup:
    return ConditionGroup(MappingProxyType({
        k: v if isinstance(v, (Values, Range)) else Values(tuple(v) if isinstance(v, list) else (v,))
        for k, v in conditions.items()}))


def nodes(*names: str) -> list[DataNode]:
    return [DataNode(*n.split(".")) for n in names]


def code_of(info: pytest.ExceptionInfo[DbMeshError]) -> str:
    return info.value.entry.code


def java_string_hash(s: str) -> int:
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >> 31 else h


ALL_ORDER = ("ds_0.t_order_0", "ds_0.t_order_1", "ds_1.t_order_0", "ds_1.t_order_1")


# ---------------------------------------------------------------------------------------------- compiling


def test_compiled_table_rule(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.table_rule("T_Order")
    assert t is not None and t is rule.tables["t_order"]
    assert t.logic_table == "t_order" and not t.auto
    # ShardingSphere's expansion order: the first placeholder is the outer loop.
    assert t.data_nodes == tuple(nodes(*ALL_ORDER))
    assert t.data_sources == ("ds_0", "ds_1") and t.actual_tables == ("t_order_0", "t_order_1")
    assert t.database_strategy is not None
    assert t.database_strategy == Strategy("standard", ("user_id",), "db_inline", t.database_strategy.algorithm)
    assert type(t.database_strategy.algorithm).__name__ == "InlineShardingAlgorithm"
    assert t.table_strategy is not None and t.table_strategy.columns == ("order_id",)
    assert t.sharding_columns == frozenset({"user_id", "order_id"})
    assert t.key_column == "order_id" and t.key_generator is not None
    item = rule.tables["t_order_item"]
    assert item.key_column is None and item.key_generator is None
    assert rule.database == "db" and rule.data_sources == ("ds_0", "ds_1") and rule.default_data_source == "ds_0"
    assert rule.binding_groups == (("t_order", "t_order_item"),)
    assert (rule.max_connections_size_per_query, rule.merge_max_rows_in_memory) == (1, 1_000_000)


def test_rules_are_immutable(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.tables["t_order"]
    with pytest.raises(AttributeError):
        t.logic_table = "x"
    with pytest.raises(AttributeError):
        rule.default_data_source = "ds_1"
    with pytest.raises(TypeError):
        rule.tables["x"] = t  # type: ignore[index]
    with pytest.raises(AttributeError):
        t.database_strategy.kind = "none"  # type: ignore[misc,union-attr]


def test_rule_validators_are_registered() -> None:
    assert {"SHARDING", "BROADCAST", "SINGLE"} <= set(RULE_VALIDATORS)


def test_no_rule_gives_none(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, []))
    db = cfg.databases["db"]
    assert build_sharding_rule(db, cfg.props) is None and sharding_rule_for(cfg, db) is None


def test_memoised_per_snapshot(tmp_path: Path) -> None:
    directory = write_config(tmp_path, [("SHARDING", order_rule())], global_yaml="props: {merge-max-rows-in-memory: 7}\n")
    a, b = load_config(directory), load_config(directory)
    ra, rb = sharding_rule_for(a, a.databases["db"]), sharding_rule_for(b, b.databases["db"])
    assert ra is sharding_rule_for(a, a.databases["db"]) and ra is not rb
    assert ra is not None and ra.merge_max_rows_in_memory == 7
    # A snapshot built elsewhere (not by load_config) is built on first use, once.
    c = a.model_copy()
    rc = sharding_rule_for(c, c.databases["db"])
    assert rc is not None and rc is not ra and rc is sharding_rule_for(c, c.databases["db"])


def test_default_strategies_default_column_and_explicit_none(tmp_path: Path) -> None:
    body = order_rule()
    body["tables"] = {
        "t_a": {"actualDataNodes": "ds_${0..1}.t_a_${0..1}"},
        "t_b": {"actualDataNodes": "ds_${0..1}.t_b", "tableStrategy": {"none": None}},
        "t_c": {"actualDataNodes": "ds_0.t_c", "databaseStrategy": {"none": {}}, "tableStrategy": {"none": {}}},
    }
    body["bindingTables"] = []
    body["defaultShardingColumn"] = "user_id"
    body["defaultDatabaseStrategy"] = standard(None, "db_inline")
    body["defaultTableStrategy"] = standard("order_id", "t_a_inline")
    body["shardingAlgorithms"]["t_a_inline"] = inline("t_a_${order_id % 2}")
    body["defaultKeyGenerateStrategy"] = {"column": "id", "keyGeneratorName": "snowflake"}
    _, rule = load(tmp_path, ("SHARDING", body))
    a, b, c = (rule.tables[n] for n in ("t_a", "t_b", "t_c"))
    assert a.database_strategy is not None and a.database_strategy.columns == ("user_id",)
    assert a.table_strategy is not None and a.table_strategy.algorithm_name == "t_a_inline"
    assert b.table_strategy is not None and b.table_strategy.kind == "none"
    assert c.database_strategy is not None and c.database_strategy.kind == "none"
    assert a.key_column == b.key_column == "id" and a.key_generator is b.key_generator is not None
    assert a.route([group(user_id=3, order_id=4)]) == nodes("ds_1.t_a_0")
    assert b.route([group(user_id=3, order_id=4)]) == nodes("ds_1.t_b")  # none: every table on ds_1
    assert c.route([group(user_id=3)]) == nodes("ds_0.t_c")


def test_table_without_actual_data_nodes_is_on_every_data_source(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", {"tables": {"t_plain": {}}}))
    t = rule.tables["t_plain"]
    assert t.data_nodes == tuple(nodes("ds_0.t_plain", "ds_1.t_plain"))
    assert t.database_strategy is None and t.table_strategy is None
    assert t.route([group(id=1)]) == list(t.data_nodes)


def test_columns_keep_their_config_spelling_for_inline(tmp_path: Path) -> None:
    body = order_rule()
    body["tables"]["t_order"]["databaseStrategy"] = standard("User_ID", "db_inline")
    body["shardingAlgorithms"]["db_inline"] = inline("ds_${User_ID % 2}")
    body["tables"]["t_order_item"]["databaseStrategy"] = standard("User_ID", "db_inline")
    _, rule = load(tmp_path, ("SHARDING", body))
    t = rule.tables["t_order"]
    assert t.database_strategy is not None and t.database_strategy.columns == ("user_id",)
    assert t.route([group(user_id=5, order_id=2)]) == nodes("ds_1.t_order_0")
    assert t.route_value({"USER_ID": 4, "order_id": 3}) == DataNode("ds_0", "t_order_1")


# ------------------------------------------------------------------------------------------ validation


def _with(path: str, value: Any) -> dict[str, Any]:
    """order_rule() with the value at a dotted path replaced (None deletes it)."""
    body = copy.deepcopy(order_rule())
    *parents, last = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return body


T = "rules[0].tables.t_order"
VALIDATION_CASES: list[tuple[str, list[tuple[str, Any]], str, str]] = [
    ("unknown algorithm type", [("SHARDING", _with("shardingAlgorithms.db_inline", {"type": "NOPE"}))],
     "rules[0].shardingAlgorithms.db_inline.type", "unknown sharding algorithm type 'NOPE'"),
    ("algorithm without type", [("SHARDING", _with("shardingAlgorithms.db_inline", {"props": {}}))],
     "rules[0].shardingAlgorithms.db_inline.type", "required key is missing"),
    ("bad algorithm props", [("SHARDING", _with("shardingAlgorithms.db_inline", inline("ds_${user_id % 2}", x=1)))],
     "rules[0].shardingAlgorithms.db_inline.props.x", "unknown property of INLINE"),
    ("unknown key generator type", [("SHARDING", _with("keyGenerators.snowflake", {"type": "SEQUENCE"}))],
     "rules[0].keyGenerators.snowflake.type", "unknown key generator type 'SEQUENCE'"),
    ("bad key generator props", [("SHARDING", _with("keyGenerators.snowflake",
                                                    {"type": "SNOWFLAKE", "props": {"worker-id": 5000}}))],
     "rules[0].keyGenerators.snowflake.props.worker-id", "at most 1023"),
    ("undefined algorithm", [("SHARDING", _with("tables.t_order.databaseStrategy", standard("user_id", "nope")))],
     f"{T}.databaseStrategy.standard.shardingAlgorithmName", "'nope' is not defined in shardingAlgorithms"),
    ("undefined key generator", [("SHARDING", _with("tables.t_order.keyGenerateStrategy",
                                                    {"column": "order_id", "keyGeneratorName": "nope"}))],
     f"{T}.keyGenerateStrategy.keyGeneratorName", "'nope' is not defined in keyGenerators"),
    ("key strategy without column", [("SHARDING", _with("tables.t_order.keyGenerateStrategy",
                                                        {"keyGeneratorName": "snowflake"}))],
     f"{T}.keyGenerateStrategy.column", "required key is missing"),
    ("unknown data source", [("SHARDING", _with("tables.t_order.actualDataNodes", "ds_${0..2}.t_order_${0..1}"))],
     f"{T}.actualDataNodes", "'ds_2', which is not in dataSources (ds_0, ds_1)"),
    ("malformed data node", [("SHARDING", _with("tables.t_order.actualDataNodes", "t_order_${0..1}"))],
     f"{T}.actualDataNodes", "not 'data_source.table'"),
    ("duplicate data node", [("SHARDING", _with("tables.t_order.actualDataNodes", "ds_0.t_order_0,ds_0.t_order_0"))],
     f"{T}.actualDataNodes", "appears twice"),
    ("broken inline expression", [("SHARDING", _with("tables.t_order.actualDataNodes", "ds_${0..1.t_order"))],
     f"{T}.actualDataNodes", ""),
    ("no sharding column", [("SHARDING", _with("tables.t_order.databaseStrategy", standard(None, "db_inline")))],
     f"{T}.databaseStrategy.standard.shardingColumn", "needs shardingColumn (or defaultShardingColumn)"),
    ("complex without columns", [("SHARDING", _with("tables.t_order.databaseStrategy",
                                                    {"complex": {"shardingAlgorithmName": "db_inline"}}))],
     f"{T}.databaseStrategy.complex.shardingColumns", "required key is missing"),
    ("two strategy kinds", [("SHARDING", _with("tables.t_order.databaseStrategy",
                                               {**standard("user_id", "db_inline"), "none": None}))],
     f"{T}.databaseStrategy", "exactly one of standard, complex, hint, none"),
    ("empty strategy", [("SHARDING", _with("tables.t_order.databaseStrategy", {}))],
     f"{T}.databaseStrategy", "exactly one of"),
    ("algorithm kind mismatch", [("SHARDING", _with("tables.t_order.databaseStrategy",
                                                    {"complex": {"shardingColumns": "user_id,order_id",
                                                                 "shardingAlgorithmName": "db_inline"}}))],
     f"{T}.databaseStrategy.complex.shardingAlgorithmName", "(INLINE) cannot serve a complex strategy"),
    ("auto-only algorithm in tables", [("SHARDING", _with("shardingAlgorithms.db_inline",
                                                          {"type": "MOD", "props": {"sharding-count": 2}}))],
     f"{T}.databaseStrategy.standard.shardingAlgorithmName", "(MOD) is an auto-table algorithm"),
    ("auto-only algorithm as default", [("SHARDING", {
        **_with("tables", {"t": {}}), "bindingTables": [],
        "defaultTableStrategy": standard("id", "mod"),
        "shardingAlgorithms": {"mod": {"type": "HASH_MOD", "props": {"sharding-count": 2}}}})],
     "rules[0].defaultTableStrategy.standard.shardingAlgorithmName", "(HASH_MOD) is an auto-table algorithm"),
    ("non-auto algorithm in autoTables", [("SHARDING", _with("autoTables", {
        "t_auto": {"actualDataSources": "ds_0", "shardingStrategy": standard("id", "db_inline")}}))],
     "rules[0].autoTables.t_auto.shardingStrategy.standard.shardingAlgorithmName", "cannot shard an autoTable"),
    ("autoTable without strategy", [("SHARDING", _with("autoTables", {"t_auto": {"actualDataSources": "ds_0"}}))],
     "rules[0].autoTables.t_auto.shardingStrategy", "needs a standard shardingStrategy"),
    ("autoTable without data sources", [("SHARDING", {
        "autoTables": {"t_auto": {"shardingStrategy": standard("id", "mod")}},
        "shardingAlgorithms": {"mod": {"type": "MOD", "props": {"sharding-count": 2}}}})],
     "rules[0].autoTables.t_auto.actualDataSources", "required key is missing"),
    ("autoTable on unknown data source", [("SHARDING", {
        "autoTables": {"t_auto": {"actualDataSources": "ds_${0..3}", "shardingStrategy": standard("id", "mod")}},
        "shardingAlgorithms": {"mod": {"type": "MOD", "props": {"sharding-count": 2}}}})],
     "rules[0].autoTables.t_auto.actualDataSources", "'ds_2', which is not in dataSources"),
    ("table defined twice", [("SHARDING", _with("autoTables", {
        "T_ORDER": {"actualDataSources": "ds_0", "shardingStrategy": standard("id", "db_inline")}}))],
     "rules[0].autoTables.T_ORDER", "already defined at rules[0].tables.t_order"),
    ("inline expression on another column", [("SHARDING", _with("shardingAlgorithms.db_inline",
                                                                inline("ds_${uid % 2}")))],
     f"{T}.databaseStrategy.standard.shardingAlgorithmName", "does not mention sharding column 'user_id'"),
    ("inline expression without the column", [("SHARDING", _with("shardingAlgorithms.db_inline",
                                                                 inline("ds_${1 % 2}")))],
     f"{T}.databaseStrategy.standard.shardingAlgorithmName", "does not mention sharding column 'user_id'"),
    ("default inline expression on another column", [("SHARDING", {
        "tables": {"t": {"actualDataNodes": "ds_${0..1}.t"}}, "defaultDatabaseStrategy": standard("id", "db"),
        "shardingAlgorithms": {"db": inline("ds_${user_id % 2}")}})],
     "rules[0].tables.t", "defaultDatabaseStrategy algorithm 'db': evaluating with id=1 failed"),
    ("complex sharding-columns count", [("SHARDING", _with("tables.t_order.databaseStrategy", {"complex": {
        "shardingColumns": "user_id,order_id", "shardingAlgorithmName": "cx"}}) | {"shardingAlgorithms": {
            **order_rule()["shardingAlgorithms"], "cx": {"type": "COMPLEX_INLINE", "props": {
                "algorithm-expression": "ds_${user_id % 2}", "sharding-columns": "user_id"}}}})],
     f"{T}.databaseStrategy.complex.shardingAlgorithmName", "lists 1 sharding-columns but the strategy has 2"),
    ("inline expression with another prefix", [("SHARDING", _with("shardingAlgorithms.t_order_inline",
                                                                  inline("order_${order_id % 2}")))],
     f"{T}.tableStrategy.standard.shardingAlgorithmName", "does not start with the data nodes' prefix 't_order_'"),
    ("binding: different node counts", [("SHARDING", _with("tables.t_order_item.actualDataNodes",
                                                           "ds_${0..1}.t_order_item_${0..2}"))],
     "rules[0].bindingTables[0]", "t_order_item cannot be bound to t_order: 6 data nodes against 4"),
    ("binding: different distribution", [("SHARDING", _with("tables.t_order_item.actualDataNodes",
                                                            "ds_0.t_order_item_${0..1},ds_1.t_order_item_${1..0}"))],
     "rules[0].bindingTables[0]", "data node 2 is ds_1.t_order_item_1 against ds_1.t_order_0"),
    ("binding: not a sharding table", [("SHARDING", _with("bindingTables", ["t_order,t_user"]))],
     "rules[0].bindingTables[0]", "'t_user' is not a sharding table"),
    ("binding: alone", [("SHARDING", _with("bindingTables", ["t_order"]))],
     "rules[0].bindingTables[0]", "at least two table names"),
    ("binding: twice", [("SHARDING", _with("bindingTables", ["t_order,t_order_item", "t_order_item,t_order"]))],
     "rules[0].bindingTables[1]", "'t_order_item' is already in binding group 0"),
    ("binding: sharded differently", [("SHARDING", _with("shardingAlgorithms.t_order_item_inline",
                                                         inline("t_order_item_${(order_id + 1) % 2}")))],
     "rules[0].bindingTables[0]", "their tableStrategy shard differently"),
    ("binding: bad entry", [("SHARDING", _with("bindingTables", [3]))],
     "rules[0].bindingTables[0]", "expected 't_a,t_b'"),
    ("unknown rule key", [("SHARDING", {**order_rule(), "defaultDataSourceName": "ds_0"})],
     "rules[0].defaultDataSourceName", "unknown key 'defaultDataSourceName'"),
    ("unknown table key", [("SHARDING", _with("tables.t_order.actualDataNode", "ds_0.t_order_0"))],
     f"{T}.actualDataNode", "unknown key 'actualDataNode' (did you mean 'actualDataNodes'?)"),
    ("unknown strategy key", [("SHARDING", _with("tables.t_order.databaseStrategy",
                                                 {"standard": {"shardingColumn": "user_id", "algorithm": "x"}}))],
     f"{T}.databaseStrategy.standard.algorithm", "unknown key 'algorithm'"),
    ("unknown strategy kind", [("SHARDING", _with("tables.t_order.databaseStrategy", {"inline": {}}))],
     f"{T}.databaseStrategy.inline", "unknown key 'inline'"),
    ("none with keys", [("SHARDING", _with("tables.t_order.databaseStrategy", {"none": {"x": 1}}))],
     f"{T}.databaseStrategy.none.x", "unknown key 'x'"),
    ("unknown algorithm key", [("SHARDING", _with("shardingAlgorithms.db_inline", {**inline("ds_${user_id % 2}"),
                                                                                   "prop": {}}))],
     "rules[0].shardingAlgorithms.db_inline.prop", "unknown key 'prop'"),
    ("unknown key strategy key", [("SHARDING", _with("tables.t_order.keyGenerateStrategy",
                                                     {"column": "id", "keyGeneratorName": "snowflake", "x": 1}))],
     f"{T}.keyGenerateStrategy.x", "unknown key 'x'"),
    ("auditors", [("SHARDING", {**order_rule(), "auditors": {"a": {"type": "DML_SHARDING_CONDITIONS"}}})],
     "rules[0].auditors", "auditors is not supported by this version of dbmesh"),
    ("audit strategy", [("SHARDING", _with("tables.t_order.auditStrategy", {"auditorNames": ["a"]}))],
     f"{T}.auditStrategy", "auditStrategy is not supported"),
    ("default audit strategy", [("SHARDING", {**order_rule(), "defaultAuditStrategy": {"auditorNames": ["a"]}})],
     "rules[0].defaultAuditStrategy", "not supported"),
    ("sharding cache", [("SHARDING", {**order_rule(), "shardingCache": {"allowedMaxSqlLength": 100}})],
     "rules[0].shardingCache", "shardingCache is not supported"),
    ("tables not a mapping", [("SHARDING", {"tables": ["t_order"]})], "rules[0].tables", "expected a mapping"),
    ("broadcast and sharding", [("SHARDING", order_rule()), ("BROADCAST", {"tables": ["T_ORDER"]})],
     "rules[1].tables[0]", "both a broadcast table and a sharding table (rules[0].tables.t_order)"),
    ("broadcast twice", [("BROADCAST", {"tables": ["t_a", "T_A"]})], "rules[0].tables[1]", "listed twice"),
    ("broadcast unknown key", [("BROADCAST", {"tables": ["t_a"], "table": []})], "rules[0].table", "unknown key"),
    ("broadcast not a list", [("BROADCAST", {"tables": "t_a"})], "rules[0].tables", "expected a list"),
    ("single and sharding", [("SHARDING", order_rule()), ("SINGLE", {"tables": ["ds_1.t_order_item"]})],
     "rules[1].tables[0]", "both a single table and a sharding table (rules[0].tables.t_order_item)"),
    ("single and broadcast", [("BROADCAST", {"tables": ["t_a"]}), ("SINGLE", {"tables": ["ds_0.t_a"]})],
     "rules[1].tables[0]", "both a single table and a broadcast table (rules[0].tables[0])"),
    ("single on unknown data source", [("SINGLE", {"tables": ["ds_7.t_user"]})], "rules[0].tables[0]",
     "'ds_7', which is not in dataSources"),
    ("single default unknown", [("SINGLE", {"defaultDataSource": "ds_7"})], "rules[0].defaultDataSource",
     "'ds_7' is not in dataSources"),
    ("single listed twice", [("SINGLE", {"tables": ["ds_0.t_user", "ds_1.T_USER"]})], "rules[0].tables[1]",
     "already listed at rules[0].tables[0]"),
    ("single without data source", [("SINGLE", {"tables": ["t_user"]})], "rules[0].tables[0]",
     "expected 'data_source.table'"),
    ("single *.table", [("SINGLE", {"tables": ["*.t_user"]})], "rules[0].tables[0]", "name the data source"),
    ("single *.* on two data sources", [("SINGLE", {"tables": ["*.*"]})], "rules[0].tables[0]",
     "would need table metadata"),
    ("single ds.* not the default", [("SINGLE", {"tables": ["ds_1.*"]})], "rules[0].tables[0]",
     "set defaultDataSource: ds_1"),
    ("single unknown key", [("SINGLE", {"tables": [], "defaultDatasource": "ds_0"})], "rules[0].defaultDatasource",
     "did you mean 'defaultDataSource'?"),
]


@pytest.mark.parametrize(("rules", "key", "detail"), [c[1:] for c in VALIDATION_CASES],
                         ids=[c[0] for c in VALIDATION_CASES])
def test_validation_errors(tmp_path: Path, rules: list[tuple[str, Any]], key: str, detail: str) -> None:
    err = load_error(tmp_path, *rules)
    assert err.key == key, (err.key, err.detail)
    assert detail in err.detail, err.detail
    assert str(err).startswith(f"DBM-1401 database-db.yaml: {key}: ")


def test_the_valid_base_rule_loads(tmp_path: Path) -> None:
    # Every validation case above is this rule with one mistake.
    load(tmp_path, ("SHARDING", order_rule()))


def test_per_rule_validators_catch_mistakes_alone(tmp_path: Path) -> None:
    from dbmesh.config.loader import RuleContext
    from dbmesh.config.models import Rule

    cfg = load_config(write_config(tmp_path, []))
    ctx = RuleContext("f.yaml", "rules[3]", cfg.databases["db"].data_sources)
    RULE_VALIDATORS["SHARDING"](Rule(kind="SHARDING", body=order_rule()), ctx)
    with pytest.raises(ConfigError) as info:
        RULE_VALIDATORS["SHARDING"](Rule(kind="SHARDING", body=_with("bindingTables", ["t_order,t_x"])), ctx)
    assert (info.value.file, info.value.key) == ("f.yaml", "rules[3].bindingTables[0]")
    with pytest.raises(ConfigError):
        RULE_VALIDATORS["SINGLE"](Rule(kind="SINGLE", body={"defaultDataSource": "nope"}), ctx)
    with pytest.raises(ConfigError):
        RULE_VALIDATORS["BROADCAST"](Rule(kind="BROADCAST", body={"tables": [1]}), ctx)


def test_named_binding_forms(tmp_path: Path) -> None:
    for entry in ("group_a:t_order, t_order_item", {"name": "g", "references": "t_order,t_order_item"},
                  {"name": "g", "references": ["t_order", "t_order_item"]}):
        _, rule = load(tmp_path, ("SHARDING", _with("bindingTables", [entry])))
        assert rule.binding_groups == (("t_order", "t_order_item"),)


# ---------------------------------------------------------------------------------------- standard INLINE


def test_route_inline_values_or_groups_and_node_order(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.tables["t_order"]
    for user_id in range(-1, 4):
        for order_id in range(4):
            ds, table = user_id % 2, order_id % 2  # Java remainder: -1 % 2 == -1 names ds_-1, not a node
            expected = [] if user_id < 0 else nodes(f"ds_{ds}.t_order_{table}")
            assert t.route([group(user_id=user_id, order_id=order_id)]) == expected
    # IN lists and OR-ed groups: a union, in data_nodes order whatever the value order.
    assert t.route([group(user_id=[3, 2], order_id=[5])]) == nodes("ds_0.t_order_1", "ds_1.t_order_1")
    assert t.route([group(user_id=3, order_id=1), group(user_id=2, order_id=0)]) == nodes(
        "ds_0.t_order_0", "ds_1.t_order_1")
    # A missing condition on one side: every target on that side.
    assert t.route([group(user_id=2)]) == nodes("ds_0.t_order_0", "ds_0.t_order_1")
    assert t.route([group(order_id=2)]) == nodes("ds_0.t_order_0", "ds_1.t_order_0")
    # No groups, an empty group, or a group on other columns only: every node.
    for groups in ([], [ConditionGroup()], [group(status="x")], [group(user_id=2), group(status="x")]):
        assert t.route(groups) == nodes(*ALL_ORDER)
    assert t.route([group(user_id=[])]) == []


def test_inline_value_types_match_the_sql_literal(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.tables["t_order"]
    # A >32-bit literal is a Long, a >64-bit one a BigInteger (whose % is never negative).
    assert t.route([group(user_id=2**40 + 1, order_id=0)]) == nodes("ds_1.t_order_0")
    assert t.route([group(user_id=-(2**70) - 1, order_id=0)]) == nodes("ds_1.t_order_0")
    assert t.route([group(user_id=-(2**40) - 1, order_id=0)]) == []  # Long -x % 2 == -1
    # A decimal literal is a BigDecimal and keeps its scale: 3.0 % 2 == 1.0 names ds_1.0, not a node.
    assert t.route([group(user_id=Decimal("3.0"), order_id=0)]) == []
    assert t.route([group(user_id=Decimal("3"), order_id=0)]) == nodes("ds_1.t_order_0")
    # A string has no % in Groovy: ShardingSphere fails (error 52); so does dbmesh, naming the algorithm.
    with pytest.raises(ShardingError) as info:
        t.route([group(user_id="3", order_id=0)])
    assert code_of(info) == ALGORITHM and "db_inline (INLINE)" in info.value.message
    assert "t_order" in info.value.message


def test_inline_range_refused_unless_allowed(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.tables["t_order"]
    with pytest.raises(ShardingError) as info:
        t.route([group(user_id=1, order_id=Range(1, 5))])
    assert code_of(info) == RANGE
    assert info.value.message.startswith("range condition on t_order.order_id cannot be routed by t_order_inline")
    # A range with no bound at all constrains nothing.
    assert t.route([group(user_id=1, order_id=Range())]) == nodes("ds_1.t_order_0", "ds_1.t_order_1")
    body = _with("shardingAlgorithms.t_order_inline",
                 inline("t_order_${order_id % 2}", **{"allow-range-query-with-inline-sharding": True}))
    body["shardingAlgorithms"]["t_order_item_inline"]["props"]["allow-range-query-with-inline-sharding"] = True
    _, rule = load(tmp_path, ("SHARDING", body))
    assert rule.tables["t_order"].route([group(user_id=1, order_id=Range(1, 5))]) == nodes(
        "ds_1.t_order_0", "ds_1.t_order_1")


def test_null_values(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.tables["t_order"]
    with pytest.raises(NullShardingValueError) as info:
        t.route([group(user_id=[1, None])])
    assert code_of(info) == NULL and info.value.message == "sharding value of t_order.user_id cannot be NULL"
    for row in ({"user_id": None, "order_id": 1}, {"order_id": 1}, {"user_id": 1}):
        with pytest.raises(NullShardingValueError) as info:
            t.route_value(row)
        assert code_of(info) == NULL
        assert info.value.column == ("user_id" if row.get("user_id") is None else "order_id")


def test_route_value(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.tables["t_order"]
    for user_id in range(4):
        for order_id in range(10, 14):
            assert t.route_value({"user_id": user_id, "order_id": order_id, "other": None}) == DataNode(
                f"ds_{user_id % 2}", f"t_order_{order_id % 2}")
    # Keys are taken case-insensitively.
    assert t.route_value({"USER_ID": 1, "Order_Id": 2}) == DataNode("ds_1", "t_order_0")
    # Where a SELECT finds nothing, an INSERT must not be dropped: ShardingSphere errors 54/56.
    with pytest.raises(ShardingError) as info:
        t.route_value({"user_id": -3, "order_id": 1})
    assert code_of(info) == NO_ROUTE
    assert info.value.message == "no data node of t_order matches the sharding value user_id=-3, order_id=1"
    with pytest.raises(ShardingError) as info:
        t.route_value({"user_id": 3, "order_id": Decimal("1.0")})
    assert code_of(info) == NO_ROUTE


def test_route_value_on_several_nodes_is_refused(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", {"tables": {"t_plain": {}}}))
    with pytest.raises(ShardingError) as info:
        rule.tables["t_plain"].route_value({"id": 1})
    assert code_of(info) == UNSUPPORTED and "2 data nodes (ds_0.t_plain, ds_1.t_plain)" in info.value.message
    hint = Hint(data_source="ds_1")
    assert rule.tables["t_plain"].route_value({"id": 1}, hint) == DataNode("ds_1", "t_plain")


def test_hint_data_source_restricts_nodes(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    t = rule.tables["t_order"]
    assert t.route([], Hint(data_source="ds_1")) == nodes("ds_1.t_order_0", "ds_1.t_order_1")
    assert t.route([group(user_id=2)], Hint(data_source="ds_1")) == []
    assert t.route([group(order_id=2)], Hint(data_source="ds_0")) == nodes("ds_0.t_order_0")
    with pytest.raises(ShardingError) as info:
        t.route_value({"user_id": 2, "order_id": 1}, Hint(data_source="ds_1"))
    assert code_of(info) == NO_ROUTE and "on data source ds_1" in str(info.value)


# ------------------------------------------------------------------------------------- other algorithms


def auto_rule(algorithm: dict[str, Any], column: str = "id", sources: str = "ds_${0..1}") -> dict[str, Any]:
    return {"autoTables": {"t_auto": {"actualDataSources": sources, "shardingStrategy": standard(column, "algo")}},
            "shardingAlgorithms": {"algo": algorithm}}


def auto_node(i: int, count: int, sources: int = 2) -> DataNode:
    """autoTable layout: table i on actualDataSources[i mod n], named <logic>_<i>."""
    assert 0 <= i < count
    return DataNode(f"ds_{i % sources}", f"t_auto_{i}")


def test_auto_table_mod(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", auto_rule({"type": "MOD", "props": {"sharding-count": 4}})))
    t = rule.tables["t_auto"]
    assert t.auto and t.database_strategy is None
    assert t.data_nodes == tuple(auto_node(i, 4) for i in range(4))
    for value in (-7, 0, 5, 2**40 + 3, 2**70 + 1, 2**64 - 3):
        long_value = (value + 2**63) % 2**64 - 2**63  # Number.longValue(): a BigInteger wraps to 64 bits
        assert t.route_value({"id": value}) == auto_node(long_value % 4, 4), value  # BigInteger.mod: never < 0
    # A numeric string goes through new BigInteger(toString()), a decimal through longValue().
    assert t.route_value({"id": "7"}) == t.route_value({"id": 7}) == t.route_value({"id": Decimal("7.9")})
    assert t.route([group(id=[1, 2])]) == [auto_node(1, 4), auto_node(2, 4)]
    # Ranges: enumerated when narrower than the count, else every table; open bounds are not narrowed.
    assert t.route([group(id=Range(5, 6))]) == [auto_node(1, 4), auto_node(2, 4)]
    assert t.route([group(id=Range(5, 6, lower_inclusive=False))]) == [auto_node(1, 4), auto_node(2, 4)]
    assert t.route([group(id=Range(0, 3))]) == list(t.data_nodes)
    assert t.route([group(id=Range(5, None))]) == list(t.data_nodes)
    with pytest.raises(ShardingError) as info:
        t.route_value({"id": "x7"})
    assert code_of(info) == ALGORITHM and "algo (MOD)" in info.value.message


def test_auto_table_hash_mod(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", auto_rule({"type": "HASH_MOD", "props": {"sharding-count": 3}})))
    t = rule.tables["t_auto"]
    for text in ("hello", "order-42", ""):
        assert t.route_value({"id": text}) == auto_node(abs(java_string_hash(text)) % 3, 3)
    assert t.route_value({"id": -7}) == auto_node(7 % 3, 3)  # Integer hash is the value
    assert t.route([group(id=Range(1, 2))]) == list(t.data_nodes)


def test_auto_table_volume_and_boundary_range(tmp_path: Path) -> None:
    algo = {"type": "VOLUME_RANGE", "props": {"range-lower": 10, "range-upper": 30, "sharding-volume": 10}}
    _, rule = load(tmp_path, ("SHARDING", auto_rule(algo)))
    t = rule.tables["t_auto"]
    assert len(t.data_nodes) == 4  # (-inf,10) [10,20) [20,30) [30,inf)
    for value, partition in ((9, 0), (10, 1), (19, 1), (25, 2), (30, 3), (10**6, 3)):
        assert t.route_value({"id": value}) == auto_node(partition, 4)
    assert t.route([group(id=Range(15, 25))]) == [auto_node(1, 4), auto_node(2, 4)]
    assert t.route([group(id=Range(None, 12))]) == [auto_node(0, 4), auto_node(1, 4)]
    algo = {"type": "BOUNDARY_RANGE", "props": {"sharding-ranges": "100,20"}}
    _, rule = load(tmp_path, ("SHARDING", auto_rule(algo)))
    t = rule.tables["t_auto"]
    assert len(t.data_nodes) == 3  # (-inf,20) [20,100) [100,inf)
    for value, partition in ((19, 0), (20, 1), (99, 1), (100, 2)):
        assert t.route_value({"id": value}) == auto_node(partition, 3)
    with pytest.raises(ShardingError) as info:
        t.route_value({"id": Decimal("1.5")})
    assert code_of(info) == ALGORITHM


def test_auto_table_auto_interval(tmp_path: Path) -> None:
    algo = {"type": "AUTO_INTERVAL", "props": {"datetime-lower": "2024-01-01 00:00:00",
                                               "datetime-upper": "2024-01-03 00:00:00", "sharding-seconds": 86400}}
    _, rule = load(tmp_path, ("SHARDING", auto_rule(algo, column="created", sources="ds_0")))
    t = rule.tables["t_auto"]
    count = 2 * 86400 // 86400 + 2
    assert len(t.data_nodes) == count

    def index(moment: dt.datetime) -> int:
        # clamp(ceil(round-half-even to 2 decimals of secs / sharding-seconds), 0, count - 1)
        secs = int((moment - dt.datetime(2024, 1, 1)).total_seconds())
        slices = (Decimal(secs) / Decimal(86400)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        return min(max(math.ceil(slices), 0), count - 1)

    moments = (dt.datetime(2023, 12, 1), dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 12),
               dt.datetime(2024, 1, 2, 0, 0, 1), dt.datetime(2024, 1, 2, 1), dt.datetime(2030, 1, 1))
    assert sorted({index(m) for m in moments}) == list(range(count))  # every table is reached
    for moment in moments:
        assert t.route_value({"created": moment}) == auto_node(index(moment), count, 1)
    assert t.route_value({"created": "2024-01-01 12:00:00"}) == auto_node(1, count, 1)


def test_interval_in_tables(tmp_path: Path) -> None:
    body = {"tables": {"t_log": {"actualDataNodes": "ds_0.t_log_${['202401', '202402', '202403']}",
                                 "tableStrategy": standard("created", "by_month")}},
            "shardingAlgorithms": {"by_month": {"type": "INTERVAL", "props": {
                "datetime-pattern": "yyyy-MM-dd HH:mm:ss", "datetime-lower": "2024-01-01 00:00:00",
                "datetime-upper": "2024-03-31 23:59:59", "sharding-suffix-pattern": "yyyyMM",
                "datetime-interval-unit": "MONTHS"}}}}
    _, rule = load(tmp_path, ("SHARDING", body))
    t = rule.tables["t_log"]
    assert t.route_value({"created": dt.datetime(2024, 2, 10, 8)}) == DataNode("ds_0", "t_log_202402")
    assert t.route([group(created=dt.date(2024, 3, 31))]) == nodes("ds_0.t_log_202403")
    assert t.route([group(created=Range(dt.datetime(2024, 2, 1), None))]) == nodes(
        "ds_0.t_log_202402", "ds_0.t_log_202403")
    assert t.route([group(created=dt.datetime(2025, 1, 1))]) == []
    with pytest.raises(ShardingError) as info:
        t.route_value({"created": dt.datetime(2025, 1, 1)})
    assert code_of(info) == NO_ROUTE


def test_complex_inline(tmp_path: Path) -> None:
    body = {"tables": {"t_c": {
        "actualDataNodes": "ds_${0..1}.t_c_${0..1}",
        "databaseStrategy": {"complex": {"shardingColumns": "a, B", "shardingAlgorithmName": "db_complex"}},
        "tableStrategy": standard("c", "t_inline")}},
        "shardingAlgorithms": {"db_complex": {"type": "COMPLEX_INLINE",
                                              "props": {"algorithm-expression": "ds_${(a + B) % 2}"}},
                               "t_inline": inline("t_c_${c % 2}")}}
    _, rule = load(tmp_path, ("SHARDING", body))
    t = rule.tables["t_c"]
    assert t.database_strategy is not None and t.database_strategy.columns == ("a", "b")
    assert t.sharding_columns == frozenset({"a", "b", "c"})
    for a, b, c in ((1, 1, 0), (1, 2, 1), (4, 7, 3)):
        assert t.route_value({"a": a, "b": b, "c": c}) == DataNode(f"ds_{(a + b) % 2}", f"t_c_{c % 2}")
    # Each combination of the columns' values is evaluated.
    assert t.route([group(a=[1, 2], b=[2], c=0)]) == nodes("ds_0.t_c_0", "ds_1.t_c_0")
    # A column without a value: every data source (ShardingSphere fails; every target is the database's answer).
    assert t.route([group(a=1, c=0)]) == nodes("ds_0.t_c_0", "ds_1.t_c_0")
    with pytest.raises(ShardingError) as info:
        t.route([group(a=Range(1, 3), b=1)])
    assert code_of(info) == RANGE
    with pytest.raises(NullShardingValueError) as null:
        t.route([group(a=None, b=1)])
    assert null.value.column == "a"
    with pytest.raises(NullShardingValueError):
        t.route_value({"a": 1, "c": 1})
    with pytest.raises(ShardingError) as info:
        t.route_value({"a": -1, "b": 0, "c": 0})  # ds_-1 is not a data source
    assert code_of(info) == NO_ROUTE
    body["shardingAlgorithms"]["db_complex"]["props"]["allow-range-query-with-inline-sharding"] = True
    _, rule = load(tmp_path, ("SHARDING", body))
    assert rule.tables["t_c"].route([group(a=Range(1, 3), b=1, c=1)]) == nodes("ds_0.t_c_1", "ds_1.t_c_1")


def hint_rule() -> dict[str, Any]:
    return {"tables": {"t_h": {"actualDataNodes": "ds_${0..1}.t_h_${0..1}",
                               "databaseStrategy": {"hint": {"shardingAlgorithmName": "db_hint"}},
                               "tableStrategy": standard("id", "t_inline")}},
            "shardingAlgorithms": {"db_hint": {"type": "HINT_INLINE",
                                               "props": {"algorithm-expression": "ds_${value % 2}"}},
                                   "t_inline": inline("t_h_${id % 2}")}}


def test_hint_strategy(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", hint_rule()))
    t = rule.tables["t_h"]
    assert t.database_strategy is not None and t.database_strategy.kind == "hint"
    assert t.sharding_columns == frozenset({"id"})
    # No hint value: every data source. Conditions do not feed a hint strategy.
    assert t.route([group(id=1)]) == nodes("ds_0.t_h_1", "ds_1.t_h_1")
    assert t.route([group(id=1)], Hint(database_values=MappingProxyType({"t_h": (3,)}))) == nodes("ds_1.t_h_1")
    # The "" key applies to every table; the table's own key wins.
    both = Hint(database_values=MappingProxyType({"": (0,), "t_h": (1,)}))
    assert t.route([group(id=0)], both) == nodes("ds_1.t_h_0")
    assert t.route([group(id=0)], Hint(database_values=MappingProxyType({"": (0, 1)}))) == nodes(
        "ds_0.t_h_0", "ds_1.t_h_0")
    assert t.route([group(id=0)], Hint(database_values=MappingProxyType({"other": (1,)}))) == nodes(
        "ds_0.t_h_0", "ds_1.t_h_0")
    # Hint values are BigIntegers in ShardingSphere (also integer text): -3 % 2 == 1, not -1.
    for value in (-3, "-3", "+5"):
        assert t.route([group(id=0)], Hint(database_values=MappingProxyType({"t_h": (value,)}))) == nodes(
            "ds_1.t_h_0"), value
    assert t.route_value({"id": 2}, Hint(database_values=MappingProxyType({"t_h": (4,)}))) == DataNode(
        "ds_0", "t_h_0")
    with pytest.raises(ShardingError) as info:
        t.route_value({"id": 2})  # no hint: both data sources
    assert code_of(info) == UNSUPPORTED
    with pytest.raises(ShardingError) as info:
        t.route([], Hint(database_values=MappingProxyType({"t_h": ("x",)})))  # String % 2
    assert code_of(info) == ALGORITHM and "db_hint (HINT_INLINE)" in info.value.message


def test_hint_table_values(tmp_path: Path) -> None:
    body = hint_rule()
    body["tables"]["t_h"]["tableStrategy"] = {"hint": {"shardingAlgorithmName": "t_hint"}}
    body["shardingAlgorithms"]["t_hint"] = {"type": "HINT_INLINE", "props": {"algorithm-expression": "t_h_${value}"}}
    _, rule = load(tmp_path, ("SHARDING", body))
    t = rule.tables["t_h"]
    assert t.sharding_columns == frozenset()
    hint = Hint(database_values=MappingProxyType({"t_h": (0,)}), table_values=MappingProxyType({"": (1, 7)}))
    assert t.route([group(id=0)], hint) == nodes("ds_0.t_h_1")  # t_h_7 is not a node
    assert t.route_value({}, hint) == DataNode("ds_0", "t_h_1")


# -------------------------------------------------------------------------------- binding, broadcast, single


def test_binding(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()))
    assert rule.are_bound("T_ORDER", "t_order_item") and rule.are_bound("t_order_item", "t_order")
    assert rule.are_bound("t_order", "t_order") and not rule.are_bound("t_order", "t_other")
    assert not rule.are_bound("t_x", "t_x")
    order, item = rule.tables["t_order"], rule.tables["t_order_item"]
    for i, node in enumerate(order.data_nodes):
        assert rule.bound_node("t_order", node, "T_ORDER_ITEM") == item.data_nodes[i]
        assert rule.bound_node("t_order_item", item.data_nodes[i], "t_order") == node
    assert rule.bound_node("t_order", DataNode("ds_1", "t_order_0"), "t_order_item") == DataNode(
        "ds_1", "t_order_item_0")
    with pytest.raises(InternalError):
        rule.bound_node("t_order", DataNode("ds_9", "t_order_0"), "t_order_item")
    body = order_rule()
    body["tables"]["t_other"] = {"actualDataNodes": "ds_0.t_other"}
    _, rule = load(tmp_path, ("SHARDING", body))
    with pytest.raises(InternalError):
        rule.bound_node("t_order", order.data_nodes[0], "t_other")


def test_auto_tables_bind(tmp_path: Path) -> None:
    body = auto_rule({"type": "MOD", "props": {"sharding-count": 4}})
    body["autoTables"]["t_auto_item"] = {"actualDataSources": "ds_0,ds_1", "shardingStrategy": standard("id", "algo")}
    body["bindingTables"] = ["t_auto,t_auto_item"]
    _, rule = load(tmp_path, ("SHARDING", body))
    assert rule.bound_node("t_auto", DataNode("ds_1", "t_auto_3"), "t_auto_item") == DataNode("ds_1", "t_auto_item_3")
    body["autoTables"]["t_auto_item"]["actualDataSources"] = "ds_1,ds_0"
    assert load_error(tmp_path, ("SHARDING", body)).key == "rules[0].bindingTables[0]"


def test_broadcast_and_single(tmp_path: Path) -> None:
    _, rule = load(tmp_path, ("SHARDING", order_rule()), ("BROADCAST", {"tables": ["t_address", "T_Dict"]}),
                   ("SINGLE", {"tables": ["ds_1.t_user", "ds_0.T_Config", "ds_1.*"], "defaultDataSource": "ds_1"}))
    assert rule.broadcast_tables == frozenset({"t_address", "t_dict"})
    assert rule.is_broadcast("T_ADDRESS") and rule.is_broadcast("t_dict") and not rule.is_broadcast("t_order")
    assert dict(rule.single_tables) == {"t_user": "ds_1", "t_config": "ds_0"}
    assert rule.single_data_source("T_CONFIG") == "ds_0" and rule.single_data_source("t_user") == "ds_1"
    assert rule.default_data_source == "ds_1" and rule.single_data_source("t_unlisted") == "ds_1"
    assert rule.table_rule("t_address") is None and rule.table_rule("t_user") is None


@pytest.mark.parametrize(("body", "default"), [
    ({"tables": ["ds_0.*"]}, "ds_0"),
    ({"tables": ["*.*"], "defaultDataSource": "ds_1"}, "ds_1"),
    ({"tables": ["*.*.*"], "defaultDataSource": "ds_0"}, "ds_0"),
    ({"tables": ["ds_1.public.t_user"], "defaultDataSource": "ds_1"}, "ds_1"),
    ({}, "ds_0"),
])
def test_single_wildcards_that_are_unambiguous(tmp_path: Path, body: dict[str, Any], default: str) -> None:
    _, rule = load(tmp_path, ("SINGLE", body))
    assert rule.default_data_source == default and rule.single_data_source("anything") == default
    assert rule.tables == {} and rule.binding_groups == ()


def test_single_star_on_one_data_source(tmp_path: Path) -> None:
    one = "databaseName: db\ndataSources:\n  ds_0: {url: 'mysql://h/d0', username: u}\n"
    _, rule = load(tmp_path, ("SINGLE", {"tables": ["*.*"]}), database=one)
    assert rule.default_data_source == "ds_0" and rule.data_sources == ("ds_0",)


# ------------------------------------------------------------------------------------------------- keys


def test_next_key(tmp_path: Path) -> None:
    body = order_rule()
    body["keyGenerators"]["uuid"] = {"type": "UUID"}
    body["tables"]["t_order_item"]["keyGenerateStrategy"] = {"column": "Item_ID", "keyGeneratorName": "uuid"}
    _, rule = load(tmp_path, ("SHARDING", body))
    keys = [rule.tables["t_order"].next_key() for _ in range(50)]
    assert all(type(k) is int for k in keys) and keys == sorted(set(keys))
    assert all(k >> 63 == 0 and k > 2**31 for k in keys)  # a positive Java Long
    item = rule.tables["t_order_item"]
    assert item.key_column == "item_id"
    key = item.next_key()
    assert isinstance(key, str) and len(key) == 32 and int(key, 16) >= 0
    # A reloaded snapshot shares the SNOWFLAKE state: its keys continue after the old ones.
    _, again = load(tmp_path, ("SHARDING", body))
    assert again.tables["t_order"].next_key() > keys[-1]
    body["tables"]["t_order"].pop("keyGenerateStrategy")
    _, rule = load(tmp_path, ("SHARDING", body))
    with pytest.raises(ShardingError) as info:
        rule.tables["t_order"].next_key()
    assert code_of(info) == KEYGEN and "t_order has no keyGenerateStrategy" in info.value.message


def test_key_generator_failure_names_the_generator(tmp_path: Path) -> None:
    from dbmesh.sharding.keygen import SnowflakeKeyGenerator

    ticks = iter([1_700_000_000_000, 1_700_000_000_000 - 100])
    generator = SnowflakeKeyGenerator({}, clock_ms=lambda: next(ticks))
    t = TableRule("t_k", [DataNode("ds_0", "t_k")], key_column="id", key_generator=generator,
                  key_generator_name="snow")
    t.next_key()
    with pytest.raises(ShardingError) as info:
        t.next_key()
    assert code_of(info) == KEYGEN and info.value.message.startswith("key generator snow (SNOWFLAKE) failed: ")


# ------------------------------------------------------------------------------------------ examples


@pytest.mark.parametrize("example", ["sharding-mysql", "sharding-postgresql"])
def test_example_rule_sets(example: str) -> None:
    cfg = load_config(REPO / "rules" / example)
    db = cfg.databases["sharding_db"]
    assert {ds.protocol for ds in db.data_sources.values()} == {"mysql" if "mysql" in example else "postgresql"}
    rule = sharding_rule_for(cfg, db)
    assert rule is not None and rule.data_sources == ("ds_0", "ds_1")
    order, item, auto = (rule.tables[n] for n in ("t_order", "t_order_item", "t_order_auto"))
    assert order.data_nodes == tuple(nodes(*ALL_ORDER))
    assert rule.are_bound("t_order", "t_order_item") and rule.binding_groups == (("t_order", "t_order_item"),)
    for user_id, order_id in ((0, 0), (1, 0), (2, 1), (3, 3)):
        row = {"user_id": user_id, "order_id": order_id}
        node = order.route_value(row)
        assert node == DataNode(f"ds_{user_id % 2}", f"t_order_{order_id % 2}")
        assert item.route_value(row) == rule.bound_node("t_order", node, "t_order_item")
    assert order.key_column == "order_id" and item.key_column == "order_item_id"
    assert isinstance(order.next_key(), int) and isinstance(item.next_key(), int)
    assert auto.auto and auto.data_nodes == tuple(
        DataNode(f"ds_{i % 2}", f"t_order_auto_{i}") for i in range(4))
    assert auto.route([group(order_id=[5, 6])]) == [DataNode("ds_1", "t_order_auto_1"),
                                                    DataNode("ds_0", "t_order_auto_2")]
    assert rule.is_broadcast("t_address") and dict(rule.single_tables) == {"t_user": "ds_0"}
    assert rule.default_data_source == "ds_0"
    assert cfg.props["merge-max-rows-in-memory"] == rule.merge_max_rows_in_memory == 1_000_000


# --------------------------------------------------------------------------------------------- errors


def test_sharding_errors_keep_their_class_names_and_catalogue_entries() -> None:
    base = ShardingError("MOD sharding", "value 'x' is not an integer")
    assert base.entry.code == ALGORITHM and "value 'x' is not an integer" in base.message
    named = base.with_context(table="t_order", column="order_id", algorithm="mod (MOD)")
    assert named.message == "sharding algorithm mod (MOD) failed for t_order: value 'x' is not an integer"
    assert type(named) is ShardingError and base.table is None  # the original is untouched
    null = NullShardingValueError("INLINE sharding", "sharding value cannot be null").with_context(
        table="t", column="c")
    assert isinstance(null, ShardingError) and null.message == "sharding value of t.c cannot be NULL"
    assert "cannot be null" in str(null)  # the detail stays in str() for logs
    assert issubclass(dbmesh.sharding.errors.KeyGenerateError, ShardingError)
    assert issubclass(dbmesh.sharding.errors.InlineExpressionError, ShardingError)


def test_docstring_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the rule module's example loads rules/sharding-mysql
    for module in (dbmesh.sharding.rule, dbmesh.sharding.errors):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
