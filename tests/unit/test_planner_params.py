"""A statement shape planned once must not keep the parameter values of that first statement."""

from __future__ import annotations

import pytest

from dbmesh.config import load_config
from dbmesh.kernel.planner import Planner
from dbmesh.sharding.rule import sharding_rule_for

SHAPES = [
    ("SELECT user_id, COUNT(*) FROM t_order GROUP BY user_id HAVING COUNT(*) > ?", (0,), (58,)),
    ("SELECT user_id, COUNT(*) FROM t_order WHERE status = ? GROUP BY user_id HAVING COUNT(*) > ?",
     ("a", 1), ("b", 7)),
    ("SELECT order_id FROM t_order WHERE status > ? ORDER BY order_id LIMIT ?", ("a", 5), ("m", 50)),
    ("SELECT order_id, ? FROM t_order ORDER BY order_id LIMIT 3", ("x",), ("y",)),
]


@pytest.mark.parametrize(("sql", "first", "second"), SHAPES)
def test_a_cached_shape_plans_like_a_fresh_planner(sql: str, first: tuple[object, ...],
                                                   second: tuple[object, ...]) -> None:
    cfg = load_config("rules/sharding-mysql")
    rule = sharding_rule_for(cfg, cfg.databases["sharding_db"])
    assert rule is not None
    warm = Planner(rule, "mysql")
    warm.plan(sql, first)
    assert warm.plan(sql, second) == Planner(rule, "mysql").plan(sql, second)
