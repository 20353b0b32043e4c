"""TableRule.point_key: values with one key route alike (checked against TableRule.route itself), and tables whose
strategies it cannot key have none."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbmesh.config import load_config
from dbmesh.sharding.autotables import DataNode
from dbmesh.sharding.conditions import ConditionGroup, Values
from dbmesh.sharding.errors import ShardingError
from dbmesh.sharding.rule import ShardingRule, TableRule, sharding_rule_for

FIXTURES = Path(__file__).parent.parent / "fixtures"
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def _rule(folder: str, database: str) -> ShardingRule:
    config = load_config(FIXTURES / folder)
    rule = sharding_rule_for(config, config.databases[database])
    assert rule is not None
    return rule


POINT = _rule("point", "point")
SHOP = _rule("route", "shop")


def _table(rule: ShardingRule, name: str) -> TableRule:
    table = rule.table_rule(name)
    assert table is not None
    return table


# (table rule, column): every pair whose key must exist.
KEYED = [
    (_table(POINT, "sbtest1"), "id"), (_table(POINT, "t_acc"), "id"), (_table(POINT, "t_wide"), "id"),
    (_table(POINT, "t_user_acc"), "user_id"), (_table(POINT, "t_user_acc"), "id"), (_table(POINT, "t_acc"), "k"),
    (_table(SHOP, "t_order"), "user_id"), (_table(SHOP, "t_order"), "order_id"), (_table(SHOP, "t_hint"), "id"),
    (_table(SHOP, "t_complex"), "c"),
]


def _route(table: TableRule, column: str, value: object) -> list[DataNode] | str:
    try:
        return table.route([ConditionGroup({column: Values((value,))})])
    except ShardingError as error:
        return error.message


@settings(max_examples=600, deadline=None)
@given(pair=st.sampled_from(KEYED), value=st.one_of(st.integers(LONG_MIN, LONG_MAX), st.integers(-50, 50),
                                                      st.sampled_from([LONG_MIN, LONG_MAX])))
def test_values_with_one_key_route_alike(pair: tuple[TableRule, str], value: int) -> None:
    table, column = pair
    key = table.point_key(column)
    assert key is not None
    k = key(value)
    assert k is not None and key(k) == k  # the key is a value of its own class
    assert _route(table, column, value) == _route(table, column, k)


@pytest.mark.parametrize("value", [LONG_MIN - 1, LONG_MAX + 1, True, False, None, "5", 5.0, b"5"])
def test_values_it_cannot_vouch_for_have_no_key(value: object) -> None:
    key = _table(POINT, "t_acc").point_key("id")
    assert key is not None and key(value) is None


@pytest.mark.parametrize(("rule", "table", "column"), [
    (POINT, "t_div", "id"),  # ds_${id.intdiv(2) % 2}
    (POINT, "t_mod", "id"),  # MOD
    (SHOP, "t_order_auto", "order_id"),  # MOD
    (SHOP, "t_hash", "code"),  # HASH_MOD
    (SHOP, "t_volume", "amount"),  # VOLUME_RANGE
    (SHOP, "t_log", "created"),  # INTERVAL
    (SHOP, "t_complex", "a"),  # COMPLEX_INLINE on a, b
])
def test_strategies_it_cannot_key_have_none(rule: ShardingRule, table: str, column: str) -> None:
    assert _table(rule, table).point_key(column) is None


def test_the_key_is_the_remainder_by_the_lcm_of_the_moduli() -> None:
    key = _table(POINT, "t_acc").point_key("id")  # ds by id % 2, table by id % 3
    assert key is not None
    assert [key(v) for v in (0, 5, 6, 7, -7, -12, LONG_MAX)] == [0, 5, 0, 1, -1, 0, LONG_MAX % 6]
    wide = _table(POINT, "t_wide").point_key("ID")  # configured as Id; columns are case-insensitive
    assert wide is not None and wide(7) == 3
