"""kernel.point: the planner's point fast path gives exactly the general path's plan, for the shapes it takes, and
leaves every other shape to the general path.

A planner with the fast path is taught each shape by a few statements (values covering every point key), then
random values are planned on it and on a planner without the fast path (`point_fast_path=False`): the answers
(plan, or error code and message) must be equal, and `plan_point` must answer exactly for the shapes and values
the fast path is meant to take. Also: the digit-run split agrees with the parse cache's normaliser on generated
statements, and the learning bounds hold."""

from __future__ import annotations

import doctest
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dbmesh.kernel.point
from dbmesh.config import load_config
from dbmesh.errors import DbMeshError
from dbmesh.kernel.parse import ParseCache, ShapeError, normalize
from dbmesh.kernel.plan import Plan, RouteUnit
from dbmesh.kernel.planner import Planner
from dbmesh.kernel.point import MAX_KEYS, MAX_POINT_TEXT, plain_pieces, shape_key, split_literals
from dbmesh.sharding.conditions import Hint
from dbmesh.sharding.rule import sharding_rule_for

FIXTURES = Path(__file__).parent.parent / "fixtures" / "point"
CONFIG = load_config(FIXTURES)
RULE = sharding_rule_for(CONFIG, CONFIG.databases["point"])
assert RULE is not None
DIALECTS = ("mysql", "postgres")
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

# Text form: {v} is a non-negative integer written as digits. (template, dialects, a point shape: taken by the fast
# path for every value whose route is one data node)
TEXT_SHAPES: list[tuple[str, tuple[str, ...], bool]] = [
    ("SELECT c FROM sbtest1 WHERE id={v}", DIALECTS, True),
    ("SELECT abalance FROM sbtest1 WHERE id = {v};", DIALECTS, True),
    ("SELECT * FROM t_acc WHERE id = {v}", DIALECTS, True),
    ("SELECT a.c, a.k FROM t_acc a WHERE a.id = {v} AND a.k > 3 ORDER BY a.k LIMIT 10", DIALECTS, True),
    ("select c from T_ACC where ID = {v}", DIALECTS, True),
    ("SELECT t_acc.c FROM t_acc WHERE t_acc.id = {v}", DIALECTS, True),
    ("SELECT c FROM t_acc WHERE {v} = id", DIALECTS, True),
    ("SELECT c FROM t_acc WHERE id = ({v})", DIALECTS, True),
    ("SELECT c FROM t_acc WHERE id IN ({v})", DIALECTS, True),  # one value: a point
    ("SELECT c FROM t_acc WHERE id = {v} LIMIT 1", DIALECTS, True),
    ("SELECT c FROM t_acc WHERE k = 12 AND id = {v} AND c <> 7", DIALECTS, True),
    ("SELECT COUNT(*) FROM t_acc WHERE id = {v} AND k = 5 GROUP BY k", DIALECTS, True),
    ("SELECT c FROM t_acc WHERE id = {v} AND k IS NULL", DIALECTS, True),
    ("SELECT c FROM t_acc WHERE id = {v} AND (k = 3 OR c = 1)", DIALECTS, True),  # the OR reads as TRUE
    ("SELECT c FROM t_acc WHERE id = {v} FOR UPDATE", DIALECTS, True),
    ("SELECT c FROM sbtest1 WHERE id = {v} LIMIT 5, 10", ("mysql",), True),
    ("  SELECT c\n FROM\tt_acc WHERE id={v} ;", DIALECTS, True),
    ("UPDATE t_acc SET c = 7 WHERE id = {v}", DIALECTS, True),
    ("DELETE FROM t_acc WHERE id = {v}", DIALECTS, True),
    ("SELECT c FROM t_wide WHERE id = {v}", DIALECTS, True),
    # Not points.
    ("SELECT c FROM t_acc WHERE id = {v} OR id = 3", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} OR k = 3", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id IN ({v}, 3)", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id BETWEEN {v} AND 7", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id > {v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} AND id = 3", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} AND (id = 3 OR id = 4)", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE NOT id = {v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id + 1 = {v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} + 1", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE ABS(id) = {v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = -{v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v}.0", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v}e0", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = 0x{v}", ("mysql",), False),
    ("SELECT c FROM t_acc WHERE id = NULL AND k = {v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = '{v}'", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} AND c = 'it''s'", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} AND c = 'a\\'b'", ("mysql",), False),
    ("SELECT c FROM t_acc WHERE id = {v} AND c = E'a\\'b'", ("postgres",), False),
    ("SELECT c FROM `t_acc` WHERE id = {v}", ("mysql",), False),
    ('SELECT c FROM "t_acc" WHERE id = {v}', ("postgres",), False),
    ("SELECT c FROM t_acc WHERE id = {v} /* note */", DIALECTS, False),
    ("/* SHARDINGSPHERE_HINT: dataSourceName=ds_1 */ SELECT c FROM t_acc WHERE id = {v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} -- note", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} # note", ("mysql",), False),
    ("SELECT __dbmesh_p0__ FROM t_acc WHERE id = {v}", DIALECTS, False),
    ("SELECT c FROM t_acc JOIN sbtest1 ON t_acc.k = sbtest1.id WHERE t_acc.id = {v}", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} AND k IN (SELECT k FROM t_single)", DIALECTS, False),
    ("SELECT c FROM t_acc WHERE id = {v} UNION SELECT c FROM t_acc WHERE id = 3", DIALECTS, False),
    ("SELECT c FROM t_acc, t_dict WHERE t_acc.id = {v}", DIALECTS, False),
    ("INSERT INTO t_acc (id, c) VALUES ({v}, 1)", DIALECTS, False),
    ("UPDATE t_acc SET id = 5 WHERE id = {v}", DIALECTS, False),
    ("UPDATE t_acc SET k = k + 1 WHERE id = {v}", DIALECTS, False),
    ("SELECT c FROM t_user_acc WHERE user_id = {v}", DIALECTS, True),  # answered only where one node is the route
    ("SELECT c FROM t_user_acc WHERE user_id = {v} AND id = 3", DIALECTS, False),
    ("SELECT c FROM t_div WHERE id = {v}", DIALECTS, False),
    ("SELECT c FROM t_mod WHERE id = {v}", DIALECTS, False),
    ("SELECT c FROM t_dict WHERE id = {v}", DIALECTS, False),
    ("SELECT c FROM t_single WHERE id = {v}", DIALECTS, False),
    ("SELECT c FROM other WHERE id = {v}", DIALECTS, False),
]

# Parameter form: (text, dialect, index of the routing value among the parameters or None when the text is not a point
# statement, parameter count).
PARAM_SHAPES: list[tuple[str, str, int | None, int]] = [
    ("SELECT c FROM sbtest1 WHERE id=?", "mysql", 0, 1),
    ("SELECT c FROM t_acc WHERE id = ? AND k = ?", "mysql", 0, 2),
    ("SELECT c FROM t_acc WHERE k = ? AND id = ?", "mysql", 1, 2),
    ("SELECT c FROM t_acc WHERE id = ? LIMIT 1", "mysql", 0, 1),
    ("UPDATE t_acc SET c = ? WHERE id = ?", "mysql", 1, 2),
    ("DELETE FROM t_acc WHERE id = ?", "mysql", 0, 1),
    ("SELECT c FROM t_wide WHERE id = ?", "mysql", 0, 1),
    ("SELECT abalance FROM sbtest1 WHERE id = $1;", "postgres", 0, 1),
    ("SELECT c FROM t_acc WHERE k = $1 AND id = $2", "postgres", 1, 2),
    ("SELECT c FROM t_acc WHERE id = $2 AND k = $1", "postgres", 1, 2),
    ("SELECT c FROM t_acc WHERE id = $1 LIMIT 5", "postgres", 0, 1),
    # Not points.
    ("SELECT c FROM t_acc WHERE id = -?", "mysql", None, 1),
    ("SELECT c FROM t_acc WHERE id IN (?, ?)", "mysql", None, 2),
    ("SELECT c FROM t_acc WHERE id = ? OR k = ?", "mysql", None, 2),
    ("SELECT c FROM t_acc WHERE id = ? AND c = 'x'", "mysql", None, 1),
    ("/* note */ SELECT c FROM t_acc WHERE id = ?", "mysql", None, 1),
    ("/* SHARDINGSPHERE_HINT: dataSourceName=ds_1 */ SELECT c FROM t_acc WHERE id = ?", "mysql", None, 1),
    ("SELECT c FROM t_acc WHERE id = 5 AND k = ?", "mysql", None, 1),
    ("SELECT c FROM t_user_acc WHERE user_id = ?", "mysql", 0, 1),  # ds_-1 names no data source: the first node
    ("SELECT c FROM t_div WHERE id = ?", "mysql", None, 1),
    ("SELECT c FROM t_acc WHERE id = $1::int", "postgres", None, 1),
    ("SELECT c FROM t_acc WHERE id BETWEEN $1 AND $2", "postgres", None, 2),
    ("INSERT INTO t_acc (id, c) VALUES ($1, $2)", "postgres", None, 2),
]

TEACH = range(0, 12)  # every key of the rules above (moduli 2, 3, 4: lcm 12), non-negative and negative


def _taught() -> dict[str, Planner]:
    planners = {d: Planner(RULE, d) for d in DIALECTS}  # type: ignore[arg-type]
    for template, dialects, _ in TEXT_SHAPES:
        for d in dialects:
            for v in TEACH:
                _outcome(planners[d], template.format(v=v), ())
    for text, d, _, count in PARAM_SHAPES:
        for v in [*TEACH, *(-v for v in TEACH)]:
            _outcome(planners[d], text, (v,) + (7,) * (count - 1))
            _outcome(planners[d], text, (7,) * (count - 1) + (v,))
    return planners


def _outcome(planner: Planner, sql: str, params: tuple[Any, ...]) -> Plan | tuple[str, str]:
    try:
        return planner.plan(sql, params)
    except DbMeshError as error:
        return error.entry.code, str(error)


def _one_unit(outcome: Plan | tuple[str, str]) -> bool:
    return isinstance(outcome, Plan) and len(outcome.units) == 1


TAUGHT = _taught()
GENERAL = {d: Planner(RULE, d, point_fast_path=False) for d in DIALECTS}  # type: ignore[arg-type]
FAST_TEXT = [(t, d) for t, ds, fast in TEXT_SHAPES for d in ds if fast]
ALL_TEXT = [(t, d, fast) for t, ds, fast in TEXT_SHAPES for d in ds]


def test_docstring_examples() -> None:
    result = doctest.testmod(dbmesh.kernel.point)
    assert result.attempted > 0 and result.failed == 0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(ALL_TEXT),
       value=st.one_of(st.integers(0, 10**6), st.integers(0, 10**20), st.sampled_from([0, 10**18 - 1, 10**18])))
def test_text_form_plans_as_the_general_path(shape: tuple[str, str, bool], value: int) -> None:
    template, dialect, fast = shape
    sql = template.format(v=value)
    expected = _outcome(GENERAL[dialect], sql, ())
    point = TAUGHT[dialect].plan_point(sql)
    if fast and len(str(value)) <= 18 and _one_unit(expected):
        assert point is not None, sql
        assert point == expected, sql
    else:
        assert point is None, sql
    assert _outcome(TAUGHT[dialect], sql, ()) == expected, sql


PARAM_VALUES = st.one_of(
    st.integers(LONG_MIN, LONG_MAX), st.integers(-10**6, 10**6), st.integers(-10**30, 10**30),
    st.sampled_from([LONG_MIN, LONG_MAX, LONG_MIN - 1, LONG_MAX + 1, 0, True, False, None, "5", "x", 5.0,
                     Decimal("5"), b"5"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(PARAM_SHAPES), value=PARAM_VALUES, other=st.integers(-3, 3))
def test_parameter_form_plans_as_the_general_path(shape: tuple[str, str, int | None, int], value: Any,
                                                  other: int) -> None:
    text, dialect, index, count = shape
    at = index if index is not None else 0
    params = tuple(value if i == at else other for i in range(count))
    expected = _outcome(GENERAL[dialect], text, params)
    point = TAUGHT[dialect].plan_point(text, params)
    if index is not None and type(value) is int and LONG_MIN <= value <= LONG_MAX and _one_unit(expected):
        assert point is not None, (text, params)
        assert point == expected, (text, params)
    else:
        assert point is None, (text, params)
    assert _outcome(TAUGHT[dialect], text, params) == expected, (text, params)


def test_the_bench_statements_keep_the_clients_text() -> None:
    # sysbench and pgbench -S: one actual table name everywhere, so the unit's SQL is the statement itself.
    for dialect, sql in (("mysql", "SELECT c FROM sbtest1 WHERE id=123457"),
                         ("postgres", "SELECT abalance FROM sbtest1 WHERE id = 42;")):
        plan = TAUGHT[dialect].plan_point(sql)
        assert plan is not None and plan.units[0].sql is sql
    plan = TAUGHT["postgres"].plan_point("SELECT abalance FROM sbtest1 WHERE id = $1;", [43])
    assert plan is not None and [(u.data_source, u.sql, u.params) for u in plan.units] == [
        ("ds_1", "SELECT abalance FROM sbtest1 WHERE id = $1;", (43,))]


def test_renamed_text_puts_the_node_names_in_place() -> None:
    plan = TAUGHT["mysql"].plan_point("SELECT t_acc.c FROM t_acc WHERE t_acc.id = 1000001")
    assert plan is not None
    assert [(u.data_source, u.sql, u.tables) for u in plan.units] == [
        ("ds_1", "SELECT t_acc_2.c FROM t_acc_2 WHERE t_acc_2.id = 1000001", (("t_acc_2", "t_acc"),))]


def test_nothing_is_answered_before_the_general_path_taught_it() -> None:
    planner = Planner(RULE, "mysql")  # type: ignore[arg-type]
    assert planner.plan_point("SELECT c FROM sbtest1 WHERE id=5") is None
    planner.plan("SELECT c FROM sbtest1 WHERE id=5")
    assert planner.plan_point("SELECT c FROM sbtest1 WHERE id=7") == Plan(
        "query", (RouteUnit("ds_1", "SELECT c FROM sbtest1 WHERE id=7", (), (("sbtest1", "sbtest1"),)),), None, (),
        ("sbtest1",))
    assert planner.plan_point("SELECT c FROM sbtest1 WHERE id=8") is None  # ds_0's key is not learnt yet
    planner.plan("SELECT c FROM sbtest1 WHERE id=2")
    assert planner.plan_point("SELECT c FROM sbtest1 WHERE id=8") is not None


def test_a_session_hint_always_takes_the_general_path() -> None:
    planner = TAUGHT["mysql"]
    plan = planner.plan("SELECT c FROM sbtest1 WHERE id=3", hint=Hint(data_source="ds_0"))
    assert [u.data_source for u in plan.units] == ["ds_0"]


def test_without_the_fast_path_nothing_is_learnt() -> None:
    planner = Planner(RULE, "mysql", point_fast_path=False)  # type: ignore[arg-type]
    for v in TEACH:
        planner.plan(f"SELECT c FROM sbtest1 WHERE id={v}")
    assert planner.plan_point("SELECT c FROM sbtest1 WHERE id=5") is None


def test_learnt_keys_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmesh.kernel.point, "MAX_KEYS", 2)
    planner = Planner(RULE, "mysql")  # type: ignore[arg-type]
    for v in range(6):
        planner.plan(f"SELECT c FROM t_acc WHERE id = {v}")
    answered = [v for v in range(6) if planner.plan_point(f"SELECT c FROM t_acc WHERE id = {v + 60}") is not None]
    assert answered == [0, 1]
    assert MAX_KEYS >= 12  # the default learns every key of a modulo-12 rule


def test_shapes_are_bounded_by_the_parse_cache_size() -> None:
    planner = Planner(RULE, "mysql", ParseCache(4))  # type: ignore[arg-type]
    for n in range(10):
        planner.plan(f"SELECT c{n} FROM sbtest1 WHERE id = 1")
    assert planner.plan_point("SELECT c9 FROM sbtest1 WHERE id = 3") is not None
    assert planner.plan_point("SELECT c0 FROM sbtest1 WHERE id = 3") is None


# ----------------------------------------------------------------------------- the split against the normaliser

# Pieces are drawn from plain text, and less often from what must keep a statement off the text form.
_PLAIN_TOKENS = ["SELECT ", "c", " FROM ", "t1", " WHERE ", "id", " = ", "=", ",", "(", ")", "*", ".", ";", " ", "\n",
                 "\t", "x", "e", "E", "_a", "N", "b", "<>", "e5"]
_OTHER_TOKENS = ["a$", "'", '"', "`", "-", "--", "/*", "*/", "#", "$", "$$", "?", "@", "\\", "é", ":", "+", "0x",
                 ".5", "5.", "x'", "E'"]
_PIECES = st.lists(st.one_of(st.sampled_from(_PLAIN_TOKENS), st.sampled_from(_PLAIN_TOKENS),
                             st.sampled_from(_OTHER_TOKENS)), max_size=8)
_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=20)


@settings(max_examples=3000, deadline=None)
@given(pieces=st.lists(_PIECES, min_size=2, max_size=5), digits=st.lists(_DIGITS, min_size=4, max_size=4),
       seps=st.lists(st.sampled_from(["", " ", "=", "(", ")", ",", ";", "."]), min_size=8, max_size=8),
       other=st.lists(_DIGITS, min_size=12, max_size=12), dialect=st.sampled_from(DIALECTS))
def test_split_finds_the_normalisers_literals_when_the_text_form_takes_a_statement(
        pieces: list[list[str]], digits: list[str], seps: list[str], other: list[str], dialect: str) -> None:
    """Once a statement's split agrees with the normaliser (and its pieces are plain), so does every statement with
    the same pieces and other digits: the same shape key, the same literal offsets."""
    texts = ["".join(p) for p in pieces]
    sql = texts[0] + "".join(seps[2 * i] + digits[i] + seps[2 * i + 1] + t for i, t in enumerate(texts[1:]))
    try:
        shape = normalize(sql, dialect)
    except ShapeError:
        return
    accepted = plain_pieces(sql, shape.literals)
    if accepted is None:
        return
    parts = split_literals(sql)
    assert shape.key == shape_key(parts)
    runs = len(parts) // 2
    assume(runs <= len(other))
    parts[1::2] = other[:runs]
    again = "".join(parts)
    assert split_literals(again)[0::2] == accepted
    shape_again = normalize(again, dialect)
    assert shape_again.key == shape.key
    assert plain_pieces(again, shape_again.literals) == accepted


def test_split_examples() -> None:
    assert split_literals("SELECT c1 FROM t2 WHERE id=12 AND x$3 = 4") == [
        "SELECT c1 FROM t2 WHERE id=", "12", " AND x$3 = ", "4", ""]
    mysql = "SELECT c FROM t WHERE id = 5e3"
    assert plain_pieces(mysql, normalize(mysql, "mysql").literals) is None


def test_the_rule_exposes_point_keys() -> None:
    assert RULE is not None
    t_acc = RULE.table_rule("t_acc")
    assert t_acc is not None
    key = t_acc.point_key("id")
    assert key is not None and (key(13), key(-13), key(12), key(-12)) == (1, -1, 0, 0)
    assert t_acc.point_key("k") is not None  # no strategy reads k: every k routes alike


def test_long_statements_are_left_to_the_general_path() -> None:
    planner = Planner(RULE, "mysql")  # type: ignore[arg-type]
    columns = ", ".join(f"c{i}" for i in range(2000))  # a point statement longer than MAX_POINT_TEXT
    assert len(columns) > MAX_POINT_TEXT
    for v in TEACH:
        planner.plan(f"SELECT {columns} FROM sbtest1 WHERE id = {v}")
    sql = f"SELECT {columns} FROM sbtest1 WHERE id = 77"
    assert planner.plan_point(sql) is None
    assert planner.plan(sql) == GENERAL["mysql"].plan(sql)
