"""Unit tests for the !TRAFFIC rule: parsing into frozen values and one precise ConfigError per mistake."""

from __future__ import annotations

import dataclasses
import doctest
from pathlib import Path

import pytest

from dbmesh.config import load_config, load_config_files
from dbmesh.errors import ConfigError
from dbmesh.traffic import rules as traffic_rules_module
from dbmesh.traffic import window as window_module
from dbmesh.traffic.rules import (
    BreakerGrade,
    CircuitBreakerRule,
    ControlBehavior,
    FlowGrade,
    FlowRule,
    TrafficRules,
    parse_traffic_rules,
    traffic_rules,
)

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "0123456789abcdef0123456789ABCDEF"

FULL = """\
rules:
  - !TRAFFIC
    circuitBreakers:
      - resource: ds_0
        grade: ERROR_RATIO
        count: 0.5
        timeWindow: 10
        minRequestAmount: 5
        statIntervalMs: 1000
      - resource: sharding_db.ds_1
        grade: SLOW_REQUEST_RATIO
        count: 200
        slowRatioThreshold: 0.5
        timeWindow: 2.5
      - {resource: "table:T_Order", grade: 2, count: 3, timeWindow: 1}
    flowRules:
      - resource: "user:app"
        grade: QPS
        count: 100
        controlBehavior: REJECT
      - {resource: "*", grade: 0, count: 50, controlBehavior: 2, maxQueueingTimeMs: 800}
      - {resource: "database:shop", grade: thread, count: 8, controlBehavior: queue}
      - {resource: "table:t_order_item", count: 0.5}
      - {resource: "digest:DIGEST", count: 10}
""".replace("DIGEST", DIGEST)


def _traffic(global_yaml: str, tmp_path: Path) -> TrafficRules | None:
    return traffic_rules(load_config_files({"global.yaml": global_yaml}, tmp_path))


def test_full_rule_parses_into_frozen_values(tmp_path: Path) -> None:
    rules = _traffic(FULL, tmp_path)
    assert rules == TrafficRules(
        circuit_breakers=(
            CircuitBreakerRule("ds_0", BreakerGrade.ERROR_RATIO, 0.5, 1.0, 10.0, 5, 1000),
            CircuitBreakerRule("sharding_db.ds_1", BreakerGrade.SLOW_REQUEST_RATIO, 200.0, 0.5, 2.5, 5, 1000),
            CircuitBreakerRule("table:t_order", BreakerGrade.ERROR_COUNT, 3.0, 1.0, 1.0, 5, 1000),
        ),
        flow_rules=(
            FlowRule("user:app", FlowGrade.QPS, 100.0, ControlBehavior.REJECT, 500),
            FlowRule("*", FlowGrade.THREAD, 50.0, ControlBehavior.QUEUE, 800),
            FlowRule("database:shop", FlowGrade.THREAD, 8.0, ControlBehavior.QUEUE, 500),
            FlowRule("table:t_order_item", FlowGrade.QPS, 0.5, ControlBehavior.REJECT, 500),
            FlowRule("digest:" + DIGEST.lower(), FlowGrade.QPS, 10.0, ControlBehavior.REJECT, 500),
        ),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.flow_rules[0].count = 1  # type: ignore[misc]
    assert rules.circuit_breakers[2].table == "t_order"
    assert rules.circuit_breakers[0].table is None
    assert rules.flow_rules[0].describe() == "QPS limit 100"
    assert rules.flow_rules[1].describe() == "concurrency limit 50"


def test_no_or_empty_traffic_rule_is_none(tmp_path: Path) -> None:
    assert _traffic("props: {sql-show: false}\n", tmp_path) is None
    assert _traffic("rules:\n- !TRAFFIC\n", tmp_path) is None
    assert _traffic("rules:\n- !TRAFFIC {circuitBreakers: [], flowRules: []}\n", tmp_path) is None


def test_example_directory_loads() -> None:
    config = load_config(ROOT / "rules" / "traffic-example")
    rules = traffic_rules(config)
    assert rules is not None
    assert rules.circuit_breakers and rules.flow_rules
    assert "sharding_db" in config.databases


def test_module_doctests() -> None:
    for module in (traffic_rules_module, window_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def _breaker(extra: str) -> str:
    return "rules:\n- !TRAFFIC\n  circuitBreakers:\n  - {" + extra + "}\n"


def _flow(extra: str) -> str:
    return "rules:\n- !TRAFFIC\n  flowRules:\n  - {" + extra + "}\n"


CB = "rules[0].circuitBreakers[0]"
FR = "rules[0].flowRules[0]"
OK_CB = "resource: ds_0, grade: ERROR_RATIO, count: 0.5, timeWindow: 10"


@pytest.mark.parametrize(("text", "key", "detail"), [
    ("rules:\n- !TRAFFIC\n  circuitBreaker: []\n", "rules[0].circuitBreaker",
     "unknown key 'circuitBreaker' (did you mean 'circuitBreakers'?)"),
    ("rules:\n- !TRAFFIC\n  flowRules: {resource: '*'}\n", "rules[0].flowRules", "expected a list"),
    ("rules:\n- !TRAFFIC\n  flowRules: [user:app]\n", FR, "expected a mapping, got 'user:app'"),
    (_breaker(OK_CB + ", timewindow: 3"), f"{CB}.timewindow", "unknown key 'timewindow' (did you mean 'timeWindow'?)"),
    (_breaker("grade: ERROR_RATIO, count: 0.5, timeWindow: 10"), f"{CB}.resource", "required key is missing"),
    (_breaker("resource: ds_0, count: 0.5, timeWindow: 10"), f"{CB}.grade", "required key is missing"),
    (_breaker("resource: ds_0, grade: ERROR_RATIO, timeWindow: 10"), f"{CB}.count", "required key is missing"),
    (_breaker("resource: ds_0, grade: ERROR_RATIO, count: 0.5"), f"{CB}.timeWindow", "required key is missing"),
    (_breaker("resource: ds_0, grade: ERROR_RATE, count: 0.5, timeWindow: 1"), f"{CB}.grade",
     "expected one of SLOW_REQUEST_RATIO, ERROR_RATIO, ERROR_COUNT (or Sentinel's 0, 1, 2), got 'ERROR_RATE'"),
    (_breaker("resource: ds_0, grade: 3, count: 0.5, timeWindow: 1"), f"{CB}.grade", "got 3"),
    (_breaker("resource: ds_0, grade: true, count: 0.5, timeWindow: 1"), f"{CB}.grade", "got True"),
    (_breaker("resource: ds_0, grade: ERROR_RATIO, count: 1.5, timeWindow: 1"), f"{CB}.count",
     "must be within 0..1, got 1.5"),
    (_breaker("resource: ds_0, grade: ERROR_RATIO, count: '0.5', timeWindow: 1"), f"{CB}.count",
     "expected a number, got '0.5'"),
    (_breaker("resource: ds_0, grade: ERROR_COUNT, count: -1, timeWindow: 1"), f"{CB}.count", "at least 0, got -1"),
    (_breaker("resource: ds_0, grade: ERROR_COUNT, count: .nan, timeWindow: 1"), f"{CB}.count", "expected a number"),
    (_breaker("resource: ds_0, grade: ERROR_COUNT, count: true, timeWindow: 1"), f"{CB}.count", "expected a number"),
    (_breaker("resource: ds_0, grade: SLOW_REQUEST_RATIO, count: 100, slowRatioThreshold: 1.2, timeWindow: 1"),
     f"{CB}.slowRatioThreshold", "within 0..1, got 1.2"),
    (_breaker("resource: ds_0, grade: ERROR_COUNT, count: 2, slowRatioThreshold: 0.5, timeWindow: 1"),
     f"{CB}.slowRatioThreshold", "applies only to grade SLOW_REQUEST_RATIO, not ERROR_COUNT"),
    (_breaker("resource: ds_0, grade: ERROR_COUNT, count: 2, timeWindow: 0"), f"{CB}.timeWindow",
     "must be greater than 0, got 0"),
    (_breaker(OK_CB + ", minRequestAmount: 0"), f"{CB}.minRequestAmount", "at least 1, got 0"),
    (_breaker(OK_CB + ", statIntervalMs: 1.5"), f"{CB}.statIntervalMs", "expected an integer, got 1.5"),
    (_breaker(OK_CB + ", statIntervalMs: 0"), f"{CB}.statIntervalMs", "at least 1"),
    (_breaker("resource: 'user:app', grade: ERROR_COUNT, count: 1, timeWindow: 1"), f"{CB}.resource",
     "(user:, database:, digest: and * are for flowRules)"),
    (_breaker("resource: 'pool:x', grade: ERROR_COUNT, count: 1, timeWindow: 1"), f"{CB}.resource",
     "got 'pool:x'"),
    (_breaker("resource: 'table:', grade: ERROR_COUNT, count: 1, timeWindow: 1"), f"{CB}.resource",
     "'table:' must be followed by a logical table name"),
    (_breaker("resource: 'ds 0', grade: ERROR_COUNT, count: 1, timeWindow: 1"), f"{CB}.resource",
     "not a data source name: 'ds 0'"),
    (_breaker("resource: 'db.', grade: ERROR_COUNT, count: 1, timeWindow: 1"), f"{CB}.resource", "not a data source"),
    (_breaker("resource: 7, grade: ERROR_COUNT, count: 1, timeWindow: 1"), f"{CB}.resource", "got 7"),
    ("rules:\n- !TRAFFIC\n  circuitBreakers:\n  - {" + OK_CB + "}\n  - {" + OK_CB + "}\n",
     "rules[0].circuitBreakers[1].resource", "resource 'ds_0' already has a rule at rules[0].circuitBreakers[0]"),
    ("rules:\n- !TRAFFIC\n  circuitBreakers:\n"
     "  - {resource: 'table:T_ORDER', grade: 2, count: 1, timeWindow: 1}\n"
     "  - {resource: 'table:t_order', grade: 1, count: 1, timeWindow: 1}\n",
     "rules[0].circuitBreakers[1].resource", "'table:t_order' already has a rule"),
    (_flow("count: 10"), f"{FR}.resource", "required key is missing"),
    (_flow("resource: app, count: 10"), f"{FR}.resource",
     "expected '*', 'user:<name>', 'database:<name>', 'table:<table>' or 'digest:<hex>', got 'app'"),
    (_flow("resource: 'user:', count: 10"), f"{FR}.resource", "'user:' must be followed by a name"),
    (_flow("resource: 'database:a b', count: 10"), f"{FR}.resource", "must be followed by a name without blanks"),
    (_flow("resource: 'digest:abc', count: 10"), f"{FR}.resource", "32 hex digits"),
    (_flow(f"resource: 'digest:{DIGEST[:-1]}g', count: 10"), f"{FR}.resource", "32 hex digits"),
    (_flow("resource: '*', grade: QPSS, count: 10"), f"{FR}.grade",
     "expected one of THREAD, QPS (or Sentinel's 0, 1), got 'QPSS'"),
    (_flow("resource: '*'"), f"{FR}.count", "required key is missing"),
    (_flow("resource: '*', count: -5"), f"{FR}.count", "at least 0, got -5"),
    (_flow("resource: '*', count: 10, controlBehavior: 1"), f"{FR}.controlBehavior",
     "WARM_UP is not supported by this version of dbmesh"),
    (_flow("resource: '*', count: 10, controlBehavior: WARM_UP_RATE_LIMITER"), f"{FR}.controlBehavior",
     "WARM_UP_RATE_LIMITER is not supported"),
    (_flow("resource: '*', count: 10, controlBehavior: DROP"), f"{FR}.controlBehavior",
     "expected one of REJECT, QUEUE (or Sentinel's 0, 2), got 'DROP'"),
    (_flow("resource: '*', count: 10, controlBehavior: QUEUE, maxQueueingTimeMs: 0"), f"{FR}.maxQueueingTimeMs",
     "at least 1, got 0"),
    (_flow("resource: '*', count: 10, maxQueueingTimeMs: 100"), f"{FR}.maxQueueingTimeMs",
     "applies only to controlBehavior QUEUE"),
    (_flow("resource: '*', count: 10, warmUpPeriodSec: 3"), f"{FR}.warmUpPeriodSec", "unknown key 'warmUpPeriodSec'"),
    ("rules:\n- !TRAFFIC\n  flowRules:\n  - {resource: 'user:app', count: 1}\n  - {resource: 'user:app', count: 2}\n",
     "rules[0].flowRules[1].resource", "'user:app' already has a rule at rules[0].flowRules[0]"),
])
def test_mistakes_name_the_key(tmp_path: Path, text: str, key: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_files({"global.yaml": text}, tmp_path)
    assert info.value.file == "global.yaml"
    assert info.value.key == key
    assert detail in info.value.detail, info.value.detail


def test_user_and_database_names_keep_their_case_tables_and_digests_do_not() -> None:
    rules = parse_traffic_rules({"flowRules": [
        {"resource": "user:App", "count": 1},
        {"resource": "user:app", "count": 1},
        {"resource": "database:Shop", "count": 1},
        {"resource": "table:T", "count": 1},
        {"resource": "digest:" + DIGEST, "count": 1},
    ]}, "global.yaml", "rules[0]")
    assert [r.resource for r in rules.flow_rules] == [
        "user:App", "user:app", "database:Shop", "table:t", "digest:" + DIGEST.lower()]


def test_same_resource_in_breakers_and_flow_rules_is_fine() -> None:
    rules = parse_traffic_rules({
        "circuitBreakers": [{"resource": "table:t", "grade": "ERROR_COUNT", "count": 1, "timeWindow": 1}],
        "flowRules": [{"resource": "table:t", "count": 1}],
    }, "global.yaml", "rules[0]")
    assert rules.circuit_breakers[0].resource == rules.flow_rules[0].resource == "table:t"


def test_parse_errors_without_the_loader_use_the_given_file_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_traffic_rules({"flowRules": [{"resource": "*", "count": "many"}]}, "f.yaml", "traffic")
    assert (info.value.file, info.value.key) == ("f.yaml", "traffic.flowRules[0].count")
    with pytest.raises(ConfigError) as info:
        parse_traffic_rules(["not", "a", "mapping"], "f.yaml", "traffic")
    assert info.value.key == "traffic"
