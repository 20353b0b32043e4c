"""kernel.planner: behaviour the golden cases cannot pin (generated keys that route, the cached-shape path against a
fresh planner, text renaming against tree renaming), and the route/rewrite/hint helpers with their docstrings."""

from __future__ import annotations

import doctest
import importlib
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import sqlglot
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh.config import load_config
from dbmesh.errors import SHARDING_UNSUPPORTED, SQL_SYNTAX, DbMeshError
from dbmesh.kernel.hint import merge_hints, parse_hint
from dbmesh.kernel.parse import ParseCache, mark_parameters
from dbmesh.kernel.planner import Planner
from dbmesh.kernel.rewrite.tables import rename_tables
from dbmesh.kernel.route.conditions import evaluate
from dbmesh.kernel.route.values import Slot
from dbmesh.sharding.conditions import ConditionGroup, Hint, Range, Values
from dbmesh.sharding.rule import ShardingRule, sharding_rule_for

FIXTURES = Path(__file__).parent.parent / "fixtures" / "route"
CONFIG = load_config(FIXTURES)
RULE = sharding_rule_for(CONFIG, CONFIG.databases["shop"])
assert RULE is not None

MODULES = [
    "dbmesh.kernel.planner", "dbmesh.kernel.hint", "dbmesh.kernel.parse",
    "dbmesh.kernel.route.conditions", "dbmesh.kernel.route.tables", "dbmesh.kernel.route.values",
    "dbmesh.kernel.rewrite.tables", "dbmesh.kernel.rewrite.index_names", "dbmesh.kernel.rewrite.insert_rows",
    "dbmesh.kernel.rewrite.generated_keys", "dbmesh.kernel.rewrite.pagination", "dbmesh.kernel.rewrite.projections",
    "dbmesh.kernel.rewrite.text", "dbmesh.kernel.rewrite.template", "dbmesh.kernel.rewrite.scatter",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parent.parent.parent)  # examples load rules/ relative to the repository
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and (result.attempted > 0 or name == "dbmesh.kernel.route.analysis")


def planner(dialect: str = "mysql") -> Planner:
    return Planner(RULE, dialect)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- generated keys


def test_generated_key_routes_the_row_and_is_reported_in_row_order() -> None:
    plan = planner().plan("INSERT INTO t_order (user_id, status) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')")
    keys = plan.generated_keys
    assert len(keys) == 4 and all(isinstance(k, int) for k in keys) and len(set(keys)) == 4
    placed: dict[int, tuple[str, str]] = {}
    for unit in plan.units:
        [(actual, logic)] = unit.tables
        assert logic == "t_order"
        for user, key in zip((1, 2, 3, 4), keys, strict=True):
            if f"({user}, '{'abcd'[user - 1]}', {key})" in unit.sql:
                placed[user] = (unit.data_source, actual)
    # The key is order_id, a table-sharding column: each row sits where its own key sends it.
    assert placed == {u: (f"ds_{u % 2}", f"t_order_{k % 2}") for u, k in zip((1, 2, 3, 4), keys, strict=True)}


def test_generated_keys_are_fresh_per_statement_on_the_cached_path() -> None:
    p = planner()
    first = p.plan("INSERT INTO t_order_item (user_id, order_id) VALUES (1, 1)").generated_keys
    second = p.plan("INSERT INTO t_order_item (user_id, order_id) VALUES (1, 1)").generated_keys
    assert len(first) == len(second) == 1 and first != second


# ------------------------------------------------------------------------------------------ cached shapes


STATEMENTS = [
    ("SELECT * FROM t_order WHERE user_id = {a} AND order_id = {b}", "mysql"),
    ("SELECT o.status FROM t_order AS o WHERE o.user_id IN ({a}, {b}) AND o.order_id = {b}", "mysql"),
    ("UPDATE t_order SET status = 'x' WHERE user_id = {a} AND order_id = {b}", "mysql"),
    ("DELETE FROM t_order_auto WHERE order_id = {a}", "postgres"),
    ("SELECT `t_order`.status FROM `t_order` WHERE user_id = {b} AND order_id = {a} /* c */", "mysql"),
    ('SELECT "t_order".status FROM "t_order" WHERE user_id = {b} AND order_id = {a}', "postgres"),
    ("INSERT INTO t_order (user_id, order_id, note) VALUES ({a}, {b}, 'n{a}'), ({b}, {a}, 'x')", "mysql"),
    ("SELECT status, COUNT(*) FROM t_order WHERE user_id = {a} GROUP BY status ORDER BY status LIMIT {b}", "mysql"),
    ("CREATE INDEX idx_{a} ON t_hash (code)", "postgres"),
]


@pytest.mark.parametrize(("template", "dialect"), STATEMENTS)
def test_cached_shape_plans_like_a_fresh_planner(template: str, dialect: str) -> None:
    shared = planner(dialect)
    for a, b in ((1, 2), (2, 5), (7, 4), (10, 11), (3, 3)):
        sql = template.format(a=a, b=b)
        assert shared.plan(sql) == planner(dialect).plan(sql), sql


def test_cached_shape_is_analysed_once() -> None:
    p = planner()
    for i in range(20):
        p.plan(f"SELECT * FROM t_order WHERE user_id = {i} AND order_id = {i * 3}")
    assert len(p._shapes) == 1


def test_text_renaming_matches_tree_renaming() -> None:
    """Every single-unit golden plan renamed in the client's text parses to the tree sqlglot's rename gives."""
    checked = 0
    for path in sorted(FIXTURES.glob("*.yaml")):
        if path.name.startswith("database-"):
            continue
        data = yaml.safe_load(path.read_text())
        for case in data["cases"]:
            dialect = case.get("dialect", data.get("dialect", "mysql"))
            expect = case["expect"]
            if case.get("params") or case.get("hint") or "units" not in expect or len(expect["units"]) != 1 \
                    or "generated_keys" in expect:
                continue
            p = planner(dialect)
            plan = p.plan(case["sql"])
            unit = plan.units[0]
            mapping = {logic: actual for actual, logic in unit.tables}
            expected = rename_tables(sqlglot.parse_one(case["sql"], read=dialect), mapping)
            assert sqlglot.parse_one(unit.sql, read=dialect).sql(dialect) == expected.sql(dialect), case["id"]
            checked += 1
    assert checked > 50


def test_prepared_placeholders_keep_their_text_and_values() -> None:
    sql = "SELECT /* keep */ *  FROM t_order WHERE user_id=? AND order_id = ?"
    plan = planner().plan(sql, [3, 4])
    [unit] = plan.units
    assert unit.sql == sql.replace("t_order", "t_order_0") and unit.params == (3, 4) and unit.data_source == "ds_1"


def test_postgres_parameters_renumbered_when_rows_are_split() -> None:
    plan = planner("postgres").plan(
        "INSERT INTO t_order (user_id, order_id) VALUES ($1, $2), ($3, $4), ($5, $6)", [1, 1, 2, 2, 3, 3])
    by_source = {u.data_source: (u.sql, u.params) for u in plan.units}
    assert by_source["ds_1"] == ("INSERT INTO t_order_1 (user_id, order_id) VALUES ($1, $2), ($3, $4)", (1, 1, 3, 3))
    assert by_source["ds_0"] == ("INSERT INTO t_order_0 (user_id, order_id) VALUES ($1, $2)", (2, 2))


def test_statement_the_scanner_refuses_still_plans() -> None:
    # `.5` makes the shape scanner refuse: the statement is parsed on its own, without the cache.
    plan = planner().plan("SELECT * FROM t_order WHERE user_id = 1 AND order_id = 2 AND amount > .5")
    assert [(u.data_source, u.sql) for u in plan.units] == [
        ("ds_1", "SELECT * FROM t_order_0 WHERE user_id = 1 AND order_id = 2 AND amount > .5")]


def test_syntax_error_passes_through_without_routed_tables() -> None:
    rule = ShardingRule(database="plain", data_sources=["ds_0"], default_data_source="ds_0", tables={},
                        broadcast_tables=frozenset(), single_tables={}, binding_groups=())
    plan = Planner(rule, "mysql").plan("FLUSH SOMETHING WEIRD ((")
    assert [(u.data_source, u.sql) for u in plan.units] == [("ds_0", "FLUSH SOMETHING WEIRD ((")]
    with pytest.raises(DbMeshError) as info:
        planner().plan("SELECT FROM WHERE (")
    assert info.value.entry is SQL_SYNTAX


def test_refusals_name_construct_and_tables() -> None:
    with pytest.raises(DbMeshError) as info:
        planner().plan("SELECT SUM(amount) * 2 FROM t_order")
    assert info.value.entry is SHARDING_UNSUPPORTED
    assert "aggregate inside an expression" in info.value.message and "t_order" in info.value.message


# -------------------------------------------------------------------------------------------- conditions


def slot(value: Any) -> Slot:
    return Slot("const", 0, value)


def test_conditions_intersect_numbers_only() -> None:
    from dbmesh.kernel.route.conditions import Atom

    def groups(*atoms: Atom) -> tuple[tuple[Atom, ...], ...]:
        return (atoms,)

    a = Atom(0, "x", values=(slot(1), slot(2)))
    b = Atom(0, "x", values=(slot(2), slot(3)))
    assert evaluate(groups(a, b), None, ()) == [ConditionGroup({"x": Values((2,))})]
    assert evaluate(groups(a, Atom(0, "x", values=(slot(5),))), None, ()) is None  # provably nothing
    # Strings compare under collations in the database ('a' = 'A' in MySQL): never intersected.
    s1, s2 = Atom(0, "x", values=(slot("a"),)), Atom(0, "x", values=(slot("A"),))
    assert evaluate(groups(s1, s2), None, ()) == [ConditionGroup({"x": Values(("a",))})]
    mixed = Atom(0, "x", values=(slot("1"),))
    assert evaluate(groups(Atom(0, "x", values=(slot(1),)), mixed), None, ()) == [ConditionGroup({"x": Values((1,))})]
    low, high = Atom(0, "x", lower=slot(Decimal("1.5"))), Atom(0, "x", upper=slot(10), upper_inclusive=False)
    assert evaluate(groups(low, high), None, ()) == [ConditionGroup({"x": Range(Decimal("1.5"), 10, True, False)})]
    assert evaluate(groups(Atom(0, "x", lower=slot(10)), Atom(0, "x", upper=slot(3))), None, ()) is None
    assert evaluate(groups(Atom(0, "x", values=(slot(1), slot(20))), Atom(0, "x", lower=slot(10))), None, ()) == [
        ConditionGroup({"x": Values((20,))})]
    # One unconstrained OR branch: every node.
    assert evaluate(((a,), ()), None, ()) == []


def test_contradiction_routes_to_first_node() -> None:
    plan = planner().plan("DELETE FROM t_order_auto WHERE order_id = 1 AND order_id = 2")
    assert [(u.data_source, u.sql) for u in plan.units] == [
        ("ds_0", "DELETE FROM t_order_auto_0 WHERE order_id = 1 AND order_id = 2")]


def test_strings_equal_under_collation_are_not_a_contradiction() -> None:
    plan = planner().plan("SELECT * FROM t_hash WHERE code = 'abc' AND code = 'ABC'")
    assert len(plan.units) == 1  # routed by 'abc', never to "nothing"


# ------------------------------------------------------------------------------------------------- hints


def test_hint_parsing() -> None:
    hint = parse_hint("/* SHARDINGSPHERE_HINT: dataSourceName = ds_1 , T_ORDER.SHARDING_DATABASE_VALUE=-3, "
                      "SHARDING_TABLE_VALUE=abc, skipSQLRewrite=TRUE, writeRouteOnly=true */ SELECT 1")
    assert hint == Hint("ds_1", MappingProxyType({"t_order": (-3,)}), MappingProxyType({"": ("abc",)}), True)
    assert parse_hint("SELECT 1 /* SHARDINGSPHERE_HINT */") is None  # no ':' before the comment ends
    assert parse_hint("SELECT '/* SHARDINGSPHERE_HINT: x=1'") is None  # unterminated comment


def test_hint_merge_comment_wins_key_by_key() -> None:
    session = Hint("ds_0", MappingProxyType({"a": (1,), "b": (2,)}), MappingProxyType({}), False)
    comment = Hint(None, MappingProxyType({"b": (3,)}), MappingProxyType({"c": (4,)}), True)
    merged = merge_hints(session, comment)
    assert merged is not None
    assert merged.data_source == "ds_0" and dict(merged.database_values) == {"a": (1,), "b": (3,)}
    assert dict(merged.table_values) == {"c": (4,)} and merged.skip_sql_rewrite


def test_mark_parameters() -> None:
    assert mark_parameters("SELECT '?' , ? FROM t WHERE a = ?", "mysql") == (
        "SELECT '?' , __dbmesh_p0__ FROM t WHERE a = __dbmesh_p1__", 2)
    assert mark_parameters("SELECT $2, $1, $2", "postgres") == (
        "SELECT __dbmesh_p1__, __dbmesh_p0__, __dbmesh_p1__", 2)
    with pytest.raises(ValueError):
        mark_parameters("SELECT __dbmesh_p0__", "mysql")


def test_planner_uses_the_given_parse_cache() -> None:
    cache = ParseCache(8)
    p = Planner(RULE, "mysql", cache)  # type: ignore[arg-type]
    p.plan("SELECT * FROM t_order WHERE user_id = 1 AND order_id = 1")
    p.plan("SELECT * FROM t_order WHERE user_id = 2 AND order_id = 5")
    assert cache.hits >= 1 and len(cache) >= 1


# ------------------------------------------------------------------------- multi-node SELECTs, rewritten once

# Shapes whose multi-node rewrite is kept per shape (`rewrite.scatter`), with slots for generated values:
# {s}/{t} strings, {n}/{m} non-negative integers, {d} a decimal, {o} an offset, {c} a count.
SCATTER_SHAPES = [
    ("SELECT order_id, user_id, status FROM t_order WHERE status >= {s} ORDER BY status LIMIT {c}", "mysql"),
    ("SELECT order_id, user_id, status FROM t_order WHERE status >= {s} ORDER BY status LIMIT {c}", "postgres"),
    ("SELECT order_id, status FROM t_order WHERE status = {s} AND amount > {d} ORDER BY order_id DESC "
     "LIMIT {o}, {c}", "mysql"),
    ("SELECT order_id, status FROM t_order WHERE (status = {s} OR status LIKE {t}) AND amount BETWEEN {n} AND {m} "
     "ORDER BY amount, order_id LIMIT {c} OFFSET {o}", "postgres"),
    ("SELECT user_id, COUNT(*), AVG(amount) FROM t_order WHERE status IN ({s}, {t}) AND amount < -{n} "
     "GROUP BY user_id ORDER BY user_id LIMIT {c}", "mysql"),
    ("SELECT DISTINCT status FROM t_order WHERE amount + {n} > {m} * {d} ORDER BY status LIMIT {o}, {c}", "mysql"),
    ("SELECT o.order_id, i.item_id FROM t_order o JOIN t_order_item i ON o.user_id = i.user_id AND "
     "o.order_id = i.order_id AND i.item_id > {n} WHERE NOT o.status <> {s} ORDER BY o.order_id LIMIT {c}", "mysql"),
    ('SELECT "t_order".order_id FROM "t_order" WHERE "t_order".status = {s} ORDER BY "t_order".order_id '
     "LIMIT {c}", "postgres"),
    ("SELECT `t_order`.order_id, status FROM `t_order` WHERE status <> {s} ORDER BY 2 LIMIT {c}", "mysql"),
    ("SELECT order_id FROM t_order WHERE status = {s} AND amount >= {n}", "mysql"),
]


def _sql_string(value: str, dialect: str) -> str:
    if dialect == "mysql":
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


def _scatter_sql(template: str, dialect: str, s: str, t: str, n: int, m: int, d: Decimal, o: int, c: int) -> str:
    return template.format(s=_sql_string(s, dialect), t=_sql_string(t, dialect), n=n, m=m, d=d, o=o, c=c)


def _plan_or_error(p: Planner, sql: str, params: tuple[Any, ...] = ()) -> Any:
    try:
        return p.plan(sql, params)
    except DbMeshError as error:
        return error.entry.code, error.message


@pytest.mark.parametrize(("template", "dialect"), SCATTER_SHAPES)
def test_scatter_shape_is_rewritten_once_and_used(template: str, dialect: str) -> None:
    p = planner(dialect)
    first = _scatter_sql(template, dialect, "a", "b", 1, 2, Decimal("1.5"), 3, 4)
    p.plan(first)
    [shape] = p._shapes.values()
    assert shape.scatter, "the shape's rewrite was not kept"
    second = _scatter_sql(template, dialect, "it's", "x\\y", 7, 8, Decimal("0.25"), 0, 9)
    assert p.plan(second) == planner(dialect).plan(second)


strings = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["", "'", "''", "\\", "\\'", "__dbmk_t0__", "'__dbmk_l0__'", "__dbmk_n0__", "%_", "\n\t",
                     "`x`", '"y"', "é€😀", "$1", "?", "__dbmesh_p0__"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize(("template", "dialect"), SCATTER_SHAPES)
def test_scatter_shape_plans_any_values_like_a_fresh_planner(template: str, dialect: str, data: st.DataObject) \
        -> None:
    shared = planner(dialect)
    shared.plan(_scatter_sql(template, dialect, "a", "b", 1, 2, Decimal("1.5"), 3, 4))
    for _ in range(3):
        sql = _scatter_sql(
            template, dialect, data.draw(strings), data.draw(strings), data.draw(st.integers(0, 10**15)),
            data.draw(st.integers(0, 99)), data.draw(st.decimals(0, 1000, places=2)),
            data.draw(st.integers(0, 50)), data.draw(st.integers(0, 10**6)))
        assert _plan_or_error(shared, sql) == _plan_or_error(planner(dialect), sql), sql


# (statement, dialect, whether its shape's rewrite is kept)
PREPARED_SCATTER = [
    ("SELECT order_id, status FROM t_order WHERE status >= ? AND amount > 5 ORDER BY status LIMIT ?, ?", "mysql",
     True),
    ("SELECT order_id, status FROM t_order WHERE status >= ? ORDER BY status LIMIT ?", "mysql", True),
    ("SELECT order_id, status FROM t_order WHERE status >= 'k' ORDER BY status LIMIT 3, ?", "mysql", True),
    ("SELECT order_id, status FROM t_order WHERE status >= ? ORDER BY status LIMIT 3, 4", "mysql", True),
    ("SELECT order_id, status FROM t_order WHERE status >= $2 ORDER BY status LIMIT $1 OFFSET 2", "postgres", True),
    ("SELECT order_id, status FROM t_order WHERE status >= $1 ORDER BY status LIMIT 3 OFFSET $2", "postgres", True),
    ("SELECT status, COUNT(*) FROM t_order WHERE status >= $1 GROUP BY status LIMIT $2", "postgres", True),
    # HAVING's parameters become values of the merger's expression: never part of a kept shape.
    ("SELECT status, COUNT(*) FROM t_order WHERE status >= ? GROUP BY status HAVING COUNT(*) > ?", "mysql", False),
    ("SELECT status, ? FROM t_order WHERE status >= ? ORDER BY status LIMIT 3", "mysql", False),
]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize(("sql", "dialect", "kept"), PREPARED_SCATTER)
def test_prepared_scatter_shape_plans_any_values_like_a_fresh_planner(sql: str, dialect: str, kept: bool,
                                                                      data: st.DataObject) -> None:
    count = len(mark_parameters(sql, dialect)[0].split("__dbmesh_p")) - 1
    first = tuple([5] * count)
    shared = planner(dialect)
    shared.plan(sql, first)
    [shape] = shared._shapes.values()
    assert bool(shape.scatter) is kept
    for _ in range(3):
        params = tuple(data.draw(st.one_of(st.integers(0, 10**9), strings, st.just(-1), st.just("12")))
                       for _ in range(count))
        assert _plan_or_error(shared, sql, params) == _plan_or_error(planner(dialect), sql, params), params


@pytest.mark.parametrize("sql", [
    "SELECT order_id, 1 FROM t_order WHERE status = 'a' ORDER BY order_id LIMIT 3",  # a literal in the select list
    "SELECT status FROM t_order WHERE amount > 1 GROUP BY status HAVING COUNT(*) > 1",  # and in HAVING
    "SELECT order_id FROM t_order WHERE status = x'61' ORDER BY order_id LIMIT 3",  # hex: not a plain literal
    "SELECT order_id FROM t_order WHERE status = CONCAT('a', 'b') ORDER BY order_id LIMIT 3",  # inside a function
    "SELECT order_id FROM t_order WHERE status = _utf8mb4'a' ORDER BY order_id LIMIT 3",  # an introducer
])
def test_shapes_outside_the_proven_contexts_take_the_tree_path(sql: str) -> None:
    p = planner()
    p.plan(sql)
    [shape] = p._shapes.values()
    assert shape.scatter is False
    again = sql.replace("'a'", "'zz'").replace("LIMIT 3", "LIMIT 4")
    assert p.plan(again) == planner().plan(again)


def test_marker_text_in_a_statement_takes_the_tree_path() -> None:
    sql = "SELECT order_id FROM t_order WHERE status = '__dbmk_t0__' ORDER BY order_id LIMIT 3"
    p = planner()
    plan = p.plan(sql)
    [shape] = p._shapes.values()
    assert shape.scatter is None  # never tried: markers could collide with the statement's own text
    assert all("'__dbmk_t0__'" in u.sql and "t_order_" in u.sql for u in plan.units)
    assert plan == planner().plan(sql)


def test_generated_once_matches_generated_per_unit() -> None:
    """Every multi-unit golden plan from the tree path: generating once with marker names gives each unit the SQL
    that renaming and generating its own tree gives."""
    checked = 0
    for path in sorted(FIXTURES.glob("*.yaml")):
        if path.name.startswith("database-"):
            continue
        data = yaml.safe_load(path.read_text())
        for case in data["cases"]:
            dialect = case.get("dialect", data.get("dialect", "mysql"))
            if "units" not in case["expect"] or len(case["expect"]["units"]) < 2 or case.get("hint"):
                continue
            p = planner(dialect)
            values = tuple(case.get("params") or ())
            text = mark_parameters(case["sql"], dialect)[0] if values else case["sql"]
            try:
                parsed = p.cache.get(text, dialect)
                routing = p._router.route(p._shape(parsed, text).analysis, parsed, values, None)
            except DbMeshError:
                continue
            if len(routing.targets) < 2 or not routing.targets[0].tables:
                continue
            tree = parsed.bound()
            assert p._tree_units(tree, routing.targets, values, True) == \
                p._tree_units(tree, routing.targets, values, False), case["id"]
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("value", ["²", "١٢", " 7", "7"])
def test_limit_parameter_takes_only_ascii_digits_as_a_number(value: str) -> None:
    """A string parameter of LIMIT is a number only when it is ASCII digits ('²' and Arabic-Indic digits pass
    str.isdigit() but are no number to int() or to the server): anything else is a clear refusal, never a crash."""
    sql = "SELECT order_id FROM t_order WHERE status >= 'k' ORDER BY order_id LIMIT ?"
    outcome = _plan_or_error(planner(), sql, (value,))
    if value.strip().isascii():
        assert not isinstance(outcome, tuple), outcome  # planned: 7 rows per shard
    else:
        assert isinstance(outcome, tuple) and "LIMIT/OFFSET" in outcome[1], outcome
