"""Unit tests for the TrafficGovernor: which breakers and limits apply, errors, carry-over on reload, metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dbmesh import errors
from dbmesh.config import Config, load_config_files
from dbmesh.observe import Metrics
from dbmesh.traffic import BreakerState, TrafficGovernor
from dbmesh.traffic.governor import MAX_PLANS

DIGEST = "00112233445566778899aabbccddeeff"

SHOP = """\
databaseName: shop
dataSources:
  ds_0: {url: 'mysql://127.0.0.1:3306/shop_0', username: root}
  ds_1: {url: 'mysql://127.0.0.1:3306/shop_1', username: root}
"""
CRM = """\
databaseName: crm
dataSources:
  ds_0: {url: 'mysql://127.0.0.1:3306/crm_0', username: root}
"""

BREAKERS = """\
    circuitBreakers:
      - {resource: ds_0, grade: ERROR_COUNT, count: 0, timeWindow: 10, minRequestAmount: 1}
      - {resource: shop.ds_1, grade: ERROR_COUNT, count: 1, timeWindow: 5, minRequestAmount: 1}
      - {resource: crm.ds_9, grade: ERROR_COUNT, count: 0, timeWindow: 5}
      - {resource: "table:T_Order", grade: SLOW_REQUEST_RATIO, count: 100, timeWindow: 3, minRequestAmount: 1}
"""
FLOWS = f"""\
    flowRules:
      - {{resource: "*", grade: THREAD, count: 100}}
      - {{resource: "user:app", grade: QPS, count: 2}}
      - {{resource: "database:crm", grade: QPS, count: 10, controlBehavior: QUEUE, maxQueueingTimeMs: 500}}
      - {{resource: "table:t_item", grade: THREAD, count: 1}}
      - {{resource: "digest:{DIGEST}", grade: QPS, count: 1}}
"""


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config(tmp_path: Path, traffic: str | None = BREAKERS + FLOWS, crm: str = CRM) -> Config:
    files = {"database-shop.yaml": SHOP, "database-crm.yaml": crm}
    if traffic is not None:
        files["global.yaml"] = "rules:\n  - !TRAFFIC\n" + traffic
    return load_config_files(files, tmp_path)


def build(cfg: Config, metrics: Metrics | None = None, previous: TrafficGovernor | None = None,
          clock: FakeClock | None = None) -> TrafficGovernor:
    gov = TrafficGovernor.build(cfg, metrics, previous, clock=clock or FakeClock())
    assert gov is not None
    return gov


def fail(gov: TrafficGovernor, database: str, data_sources: list[str], tables: tuple[str, ...] = ()) -> None:
    gov.record(gov.breaker_check(database, data_sources, tables), 0.001, error=True)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# -- building and flags --------------------------------------------------------------------------------------------


def test_no_traffic_rule_builds_no_governor(tmp_path: Path) -> None:
    assert TrafficGovernor.build(config(tmp_path, None), Metrics()) is None
    assert TrafficGovernor.build(config(tmp_path, "    flowRules: []\n"), Metrics()) is None


def test_flags_tell_callers_what_to_compute(tmp_path: Path) -> None:
    full = build(config(tmp_path))
    assert full.has_breakers and full.has_flow_rules and full.has_table_rules and full.needs_digest
    only_ds = build(config(tmp_path, "    circuitBreakers:\n"
                                     "      - {resource: ds_0, grade: ERROR_COUNT, count: 0, timeWindow: 1}\n"))
    assert only_ds.has_breakers and not only_ds.has_flow_rules
    assert not only_ds.has_table_rules and not only_ds.needs_digest
    only_user = build(config(tmp_path, "    flowRules:\n      - {resource: 'user:app', count: 1}\n"))
    assert not only_user.has_breakers and only_user.has_flow_rules and not only_user.has_table_rules
    assert only_user.breaker_check("shop", ["ds_0"], ["t_order"]) is None


def test_bare_data_source_rule_gives_every_database_its_own_breaker(tmp_path: Path) -> None:
    gov = build(config(tmp_path))
    shop0, crm0, shop1 = gov.breaker("shop", "ds_0"), gov.breaker("crm", "ds_0"), gov.breaker("shop", "ds_1")
    assert shop0 is not None and crm0 is not None and shop1 is not None
    assert shop0 is not crm0
    assert (shop0.resource, crm0.resource, shop1.resource) == ("shop.ds_0", "crm.ds_0", "shop.ds_1")
    assert shop1.rule.resource == "shop.ds_1" and shop0.rule.resource == "ds_0"
    assert gov.breaker("crm", "ds_9") is None  # a rule for a data source no database has is ignored
    assert [s.resource for s in gov.snapshot()] == ["crm.ds_0", "shop.ds_0", "shop.ds_1", "table:t_order"]


# -- breaker_check / record ----------------------------------------------------------------------------------------


def test_open_breaker_fails_fast_with_circuit_open(tmp_path: Path) -> None:
    clock = FakeClock()
    gov = build(config(tmp_path), clock=clock)
    fail(gov, "shop", ["ds_0"])
    clock.advance(2.5)
    with pytest.raises(errors.DbMeshError) as info:
        gov.breaker_check("shop", ["ds_1", "ds_0"])
    assert info.value.entry is errors.CIRCUIT_OPEN
    assert info.value.args_map == {"data_source": "ds_0", "detail": "error count 1 > 0 over 1000 ms", "retry_ms": 7500}
    assert str(info.value) == ("DBM-1601 circuit breaker for data source 'ds_0' is open "
                               "(error count 1 > 0 over 1000 ms); retry after 7500 ms")
    # Another database's ds_0 is another server: unaffected.
    probe = gov.breaker_check("crm", ["ds_0"])
    assert probe is not None
    gov.record(probe, 0.001, error=False)


def test_refusal_grants_no_probe_elsewhere(tmp_path: Path) -> None:
    clock = FakeClock()
    gov = build(config(tmp_path), clock=clock)
    fail(gov, "shop", ["ds_0"])  # open from 1000 for 10 s
    clock.now = 1006.0
    fail(gov, "shop", ["ds_1"])
    fail(gov, "shop", ["ds_1"])  # open from 1006 for 5 s
    ds0, ds1 = gov.breaker("shop", "ds_0"), gov.breaker("shop", "ds_1")
    assert ds0 is not None and ds1 is not None and ds1.state is BreakerState.OPEN
    clock.now = 1010.5  # ds_0 may probe, ds_1 not yet
    with pytest.raises(errors.DbMeshError):
        gov.breaker_check("shop", ["ds_0", "ds_1"])
    assert ds0.state is BreakerState.OPEN  # the refusal by ds_1 did not move ds_0 to HALF_OPEN
    probe = gov.breaker_check("shop", ["ds_0"])
    assert ds0.state is BreakerState.HALF_OPEN
    gov.record(probe, 0.001, error=False)
    assert ds0.state is BreakerState.CLOSED


def test_failed_data_sources_narrow_the_errors(tmp_path: Path) -> None:
    gov = build(config(tmp_path))
    probe = gov.breaker_check("shop", ["ds_0", "ds_1"], ["t_order"])
    assert probe is not None and len(probe.breakers) == 3
    gov.record(probe, 0.001, error=True, failed_data_sources=["ds_1"])
    statuses = {s.resource: s for s in gov.snapshot()}
    assert (statuses["shop.ds_0"].errors, statuses["shop.ds_0"].requests) == (0, 1)
    assert statuses["shop.ds_0"].state == "CLOSED"
    assert statuses["shop.ds_1"].errors == 1
    assert statuses["table:t_order"].errors == 1
    gov.record(probe, 0.001, error=True)  # a probe is reported once; later reports do nothing
    assert {s.resource: s.requests for s in gov.snapshot()}["shop.ds_1"] == 1


def test_table_breaker_applies_in_every_database_case_insensitively(tmp_path: Path) -> None:
    clock = FakeClock()
    gov = build(config(tmp_path), clock=clock)
    gov.record(gov.breaker_check("crm", [], ["T_ORDER"]), 0.5, error=False)  # slow: 500 ms > 100 ms
    with pytest.raises(errors.DbMeshError) as info:
        gov.breaker_check("shop", ["ds_1"], ["t_order"])
    assert info.value.args_map["data_source"] == "table:t_order"
    assert info.value.args_map["retry_ms"] == 3000
    assert gov.breaker_check("shop", ["ds_1"], ["t_item"]) is not None  # other tables pass


def test_abandoned_probe_lets_the_next_statement_probe(tmp_path: Path) -> None:
    clock = FakeClock()
    gov = build(config(tmp_path), clock=clock)
    fail(gov, "crm", ["ds_0"])
    clock.advance(10)
    probe = gov.breaker_check("crm", ["ds_0"])
    with pytest.raises(errors.DbMeshError) as info:
        gov.breaker_check("crm", ["ds_0"])
    assert "a probe statement is in flight" in info.value.args_map["detail"]
    gov.abandon(probe)
    probe = gov.breaker_check("crm", ["ds_0"])
    gov.record(probe, 0.001, error=False)
    assert gov.breaker_check("crm", ["ds_0"]) is not None


def test_snapshot_reports_state_stats_and_times(tmp_path: Path) -> None:
    clock = FakeClock()
    gov = build(config(tmp_path), clock=clock)
    gov.record(gov.breaker_check("shop", ["ds_1"]), 0.001, error=True)
    gov.record(gov.breaker_check("shop", ["ds_1"]), 0.001, error=False)
    before = time.time()
    fail(gov, "shop", ["ds_1"])
    clock.advance(1.25)
    status = next(s for s in gov.snapshot() if s.resource == "shop.ds_1")
    assert status.state == "OPEN" and status.strategy == "ERROR_COUNT" and status.rule == "shop.ds_1"
    assert status.threshold == "error count > 1"
    assert (status.requests, status.errors, status.window_ms) == (0, 0, 1000)  # the window moved on
    assert status.retry_ms == 3750 and status.detail == "error count 2 > 1 over 1000 ms"
    assert status.opened_at is not None and before - 1.25 - 1 <= status.opened_at <= time.time()
    closed = next(s for s in gov.snapshot() if s.resource == "crm.ds_0")
    assert (closed.state, closed.opened_at, closed.retry_ms, closed.detail) == ("CLOSED", None, 0, "")
    slow = next(s for s in gov.snapshot() if s.resource == "table:t_order")
    assert slow.threshold == "slow request ratio > 1 (slow: above 100 ms)"


def test_a_breaker_met_twice_counts_once_and_closed_probes_are_reported_once(tmp_path: Path) -> None:
    gov = build(config(tmp_path))
    probe = gov.breaker_check("shop", ["ds_0", "ds_0"], ["t_order", "T_ORDER"])
    assert probe is not None and len(probe.breakers) == 2
    gov.record(probe, 0.001, error=False)
    gov.record(probe, 0.001, error=False)
    single = gov.breaker_check("crm", ("ds_0",))
    assert single is not None and len(single.breakers) == 1
    gov.record(single, 0.001, error=False)
    gov.record(single, 0.001, error=False)
    assert gov.breaker_check("crm", ("ds_1",), ("t_other",)) is None
    requests = {s.resource: s.requests for s in gov.snapshot()}
    assert requests == {"crm.ds_0": 1, "shop.ds_0": 1, "shop.ds_1": 0, "table:t_order": 1}


# -- admit ----------------------------------------------------------------------------------------------------------


def test_admit_applies_every_matching_rule(tmp_path: Path) -> None:
    clock = FakeClock()
    gov = build(config(tmp_path), clock=clock)
    a = gov.admit("app", "shop", ["T_ITEM"], DIGEST.upper())
    limits = {s.resource: s for s in gov.limits_snapshot()}
    assert [r for r, s in limits.items() if s.passed] == ["*", "user:app", "table:t_item", "digest:" + DIGEST]
    assert limits["*"].in_use == 1 and limits["table:t_item"].in_use == 1
    with pytest.raises(errors.DbMeshError) as info:
        gov.admit("other", "shop", ["t_item"], None)
    assert info.value.entry is errors.RATE_LIMITED
    assert str(info.value) == "DBM-1602 rate limit exceeded for table:t_item: concurrency limit 1, 1 statements running"
    a.release()
    a.release()
    limits = {s.resource: s for s in gov.limits_snapshot()}
    assert limits["*"].in_use == 0 and limits["table:t_item"].in_use == 0
    assert limits["table:t_item"].rejected == 1 and limits["*"].passed == 1  # the refusal consumed nothing


def test_refused_statement_consumes_nothing_from_other_rules(tmp_path: Path) -> None:
    clock = FakeClock()
    gov = build(config(tmp_path), clock=clock)
    gov.admit("app", "crm", [], None).release()
    gov.admit("app", "crm", [], None).release()
    crm = gov.limiter("database:crm")
    assert crm is not None and crm.passed == 2 and crm.queued == 1
    with pytest.raises(errors.DbMeshError) as info:
        gov.admit("app", "crm", [], None)
    assert "QPS limit 2" in str(info.value) and info.value.args_map["resource"] == "user:app"
    queued = gov.admit("someone", "crm", [], None)  # crm's next slot was not taken by the refused statement
    assert queued.wait_s == pytest.approx(0.2)
    queued.release()
    assert gov.admit("nobody", "shop", [], None).wait_s == 0.0


def test_admit_without_matching_rules_is_free(tmp_path: Path) -> None:
    gov = build(config(tmp_path, "    flowRules:\n      - {resource: 'user:app', count: 1}\n"))
    admission = gov.admit("web", "shop", ["t"], None)
    assert admission.wait_s == 0.0 and admission.waiter is None
    admission.release()
    admission.release()
    assert gov.admit("web", "shop", ["t"], None).wait_s == 0.0


async def test_thread_queue_through_the_governor(tmp_path: Path) -> None:
    gov = build(config(tmp_path, "    flowRules:\n      - {resource: 'user:app', grade: THREAD, count: 1, "
                                 "controlBehavior: QUEUE, maxQueueingTimeMs: 5000}\n"))
    first = gov.admit("app", "shop", [], None)
    second = gov.admit("app", "shop", [], None)
    assert first.waiter is None and second.waiter is not None
    task = asyncio.ensure_future(asyncio.wait_for(second.waiter, 5))
    await asyncio.sleep(0)
    first.release()
    await task
    [status] = gov.limits_snapshot()
    assert (status.in_use, status.waiting, status.queued, status.passed) == (1, 0, 1, 2)
    second.release()


def test_rules_apply_per_user_and_database_however_many_are_seen(tmp_path: Path) -> None:
    gov = build(config(tmp_path, "    flowRules:\n      - {resource: 'user:app', count: 1}\n"
                                 "      - {resource: 'database:crm', grade: THREAD, count: 1}\n"))
    crm = gov.admit("web", "crm", [], None)  # database:crm only
    with pytest.raises(errors.DbMeshError):
        gov.admit("web2", "crm", [], None)
    crm.release()
    for i in range(MAX_PLANS + 10):  # more users than the memo keeps: it starts afresh, the rules still apply
        gov.admit(f"user{i}", "shop", [], None).release()
    gov.admit("app", "shop", [], None).release()
    with pytest.raises(errors.DbMeshError):
        gov.admit("app", "shop", [], None)
    gov.admit("web", "crm", [], None).release()
    limits = {s.resource: s for s in gov.limits_snapshot()}
    assert (limits["user:app"].passed, limits["user:app"].rejected) == (1, 1)
    assert (limits["database:crm"].passed, limits["database:crm"].rejected, limits["database:crm"].in_use) == (2, 1, 0)


# -- carry-over on reload -----------------------------------------------------------------------------------------


def test_reload_keeps_state_of_unchanged_rules_and_resets_changed_ones(tmp_path: Path) -> None:
    clock = FakeClock()
    old = build(config(tmp_path), clock=clock)
    fail(old, "shop", ["ds_0"])
    fail(old, "crm", ["ds_0"])
    held = old.admit("app", "shop", ["t_item"], None)
    changed = BREAKERS.replace("{resource: shop.ds_1, grade: ERROR_COUNT, count: 1",
                               "{resource: shop.ds_1, grade: ERROR_COUNT, count: 3")
    changed_flows = FLOWS.replace("{resource: \"user:app\", grade: QPS, count: 2}", "{resource: \"user:app\", count: 5}")
    new = build(config(tmp_path, changed + changed_flows, crm=CRM.replace("crm_0", "crm_moved")), previous=old,
                clock=clock)
    assert new.breaker("shop", "ds_0") is old.breaker("shop", "ds_0")
    assert new.breaker("shop", "ds_0").state is BreakerState.OPEN  # type: ignore[union-attr]
    assert new.breaker("shop", "ds_1") is not old.breaker("shop", "ds_1")  # its rule changed
    crm0 = new.breaker("crm", "ds_0")
    assert crm0 is not None and crm0.state is BreakerState.CLOSED  # its data source moved: a fresh breaker
    with pytest.raises(errors.DbMeshError):
        new.breaker_check("shop", ["ds_0"])
    assert new.limiter("table:t_item") is old.limiter("table:t_item")
    assert new.limiter("user:app") is not old.limiter("user:app")
    with pytest.raises(errors.DbMeshError):  # the permit taken under the old governor is still held
        new.admit("x", "shop", ["t_item"], None)
    held.release()
    new.admit("x", "shop", ["t_item"], None).release()


def test_removing_the_rule_builds_none(tmp_path: Path) -> None:
    metrics = Metrics()
    old = build(config(tmp_path), metrics)
    fail(old, "shop", ["ds_0"])
    assert value(metrics, "dbmesh_circuit_breaker_state", resource="shop.ds_0") == 1
    assert TrafficGovernor.build(config(tmp_path, None), metrics, old) is None
    assert value(metrics, "dbmesh_circuit_breaker_state", resource="shop.ds_0") is None  # no stale state exported


# -- metrics ------------------------------------------------------------------------------------------------------


def test_breaker_metrics_follow_transitions(tmp_path: Path) -> None:
    clock = FakeClock()
    metrics = Metrics()
    gov = build(config(tmp_path), metrics, clock=clock)
    state = lambda: value(metrics, "dbmesh_circuit_breaker_state", resource="crm.ds_0")  # noqa: E731
    moves = lambda to: value(metrics, "dbmesh_circuit_breaker_transitions_total", resource="crm.ds_0", to=to)  # noqa: E731
    assert state() == 0 and moves("OPEN") is None
    fail(gov, "crm", ["ds_0"])
    assert state() == 1 and moves("OPEN") == 1
    clock.advance(10)
    probe = gov.breaker_check("crm", ["ds_0"])
    assert state() == 2 and moves("HALF_OPEN") == 1
    gov.record(probe, 0.001, error=True)
    assert state() == 1 and moves("OPEN") == 2
    clock.advance(10)
    gov.record(gov.breaker_check("crm", ["ds_0"]), 0.001, error=False)
    assert state() == 0 and moves("CLOSED") == 1 and moves("HALF_OPEN") == 2


def test_reloaded_governor_reports_transitions_once(tmp_path: Path) -> None:
    clock = FakeClock()
    metrics = Metrics()
    old = build(config(tmp_path), metrics, clock=clock)
    fail(old, "crm", ["ds_0"])
    new = build(config(tmp_path), metrics, previous=old, clock=clock)
    assert value(metrics, "dbmesh_circuit_breaker_state", resource="crm.ds_0") == 1  # carried over, still open
    clock.advance(10)
    old_probe = old.breaker_check("crm", ["ds_0"])  # a statement still on the old snapshot
    assert value(metrics, "dbmesh_circuit_breaker_transitions_total", resource="crm.ds_0", to="HALF_OPEN") == 1
    new.record(old_probe, 0.001, error=False)
    assert value(metrics, "dbmesh_circuit_breaker_transitions_total", resource="crm.ds_0", to="CLOSED") == 1


def test_rate_limit_metrics(tmp_path: Path) -> None:
    metrics = Metrics()
    gov = build(config(tmp_path), metrics)
    assert value(metrics, "dbmesh_rate_limit_rejected_total", resource="user:app") == 0  # created at 0
    for _ in range(2):
        gov.admit("app", "crm", [], None).release()
    with pytest.raises(errors.DbMeshError):
        gov.admit("app", "crm", [], None)
    assert value(metrics, "dbmesh_rate_limit_passed_total", resource="user:app") == 2
    assert value(metrics, "dbmesh_rate_limit_rejected_total", resource="user:app") == 1
    assert value(metrics, "dbmesh_rate_limit_passed_total", resource="database:crm") == 2
    assert value(metrics, "dbmesh_rate_limit_queued_total", resource="database:crm") == 1
    assert value(metrics, "dbmesh_rate_limit_rejected_total", resource="database:crm") == 0


def test_rate_limit_metrics_count_on_when_a_changed_rule_rebuilds_its_limiter(tmp_path: Path) -> None:
    metrics = Metrics()
    old = build(config(tmp_path), metrics)
    old.admit("app", "shop", [], None).release()
    changed = FLOWS.replace("{resource: \"user:app\", grade: QPS, count: 2}", "{resource: \"user:app\", count: 5}")
    new = build(config(tmp_path, BREAKERS + changed), metrics, previous=old)
    assert new.limiter("user:app") is not old.limiter("user:app")
    new.admit("app", "shop", [], None).release()
    assert value(metrics, "dbmesh_rate_limit_passed_total", resource="user:app") == 2
    assert value(metrics, "dbmesh_rate_limit_passed_total", resource="*") == 2  # an unchanged rule's too
    assert new.limiter("user:app").passed == 1  # type: ignore[union-attr]


def test_governance_metrics() -> None:
    metrics = Metrics()
    metrics.config_version(7)
    metrics.config_applied()
    metrics.config_error()
    metrics.config_error()
    metrics.compute_node_disabled(True)
    metrics.cluster_state("READ_ONLY")
    assert value(metrics, "dbmesh_config_version") == 7
    assert value(metrics, "dbmesh_config_applied_total") == 1
    assert value(metrics, "dbmesh_config_errors_total") == 2
    assert value(metrics, "dbmesh_compute_node_disabled") == 1
    assert [value(metrics, "dbmesh_cluster_state", state=s) for s in ("OK", "READ_ONLY", "UNAVAILABLE")] == [0, 1, 0]
    metrics.cluster_state("OK")
    metrics.compute_node_disabled(False)
    assert [value(metrics, "dbmesh_cluster_state", state=s) for s in ("OK", "READ_ONLY", "UNAVAILABLE")] == [1, 0, 0]
    assert value(metrics, "dbmesh_compute_node_disabled") == 0
    metrics.rate_limit_passed("user:x")
    metrics.rate_limit_rejected("user:x")
    metrics.rate_limit_queued("user:x")
    text = metrics.render().decode()
    for line in ('dbmesh_rate_limit_passed_total{resource="user:x"} 1.0', "dbmesh_config_version 7.0",
                 'dbmesh_cluster_state{state="OK"} 1.0'):
        assert line in text
