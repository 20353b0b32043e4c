"""Cluster mode end to end: two sidecars on one ZooKeeper namespace follow a pushed rule change within a second while
clients keep running statements, survive a ZooKeeper node (and the whole ensemble) going away, and refuse an invalid
push without changing anything."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from tests.support import DbMeshProcess, MariaDB
from tests.support.sharded import (
    Tagged,
    dump_yaml,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)
from tests.support.zookeeper import ZooKeeperEnsemble

DB = "gov_cluster"
PHYSICAL = {"ds_0": "gov_cluster_0", "ds_1": "gov_cluster_1"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def _rules(expression: str) -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {"t_item": {"actualDataNodes": "ds_${0..1}.t_item", "databaseStrategy": standard("id", "by_id")}},
        "shardingAlgorithms": {"by_id": inline_algorithm(expression)},
    })]


def _mode(ensemble: ZooKeeperEnsemble, namespace: str) -> dict[str, Any]:
    return {"mode": {"type": "Cluster", "repository": {"type": "ZooKeeper", "props": {
        "namespace": namespace, "server-lists": ensemble.server_lists, "retryIntervalMilliseconds": 200,
        "maxRetries": 3, "timeToLiveSeconds": 10, "operationTimeoutMilliseconds": 2000}}}}


def _sidecar_config(tmp: Path, name: str, mariadb: MariaDB, ensemble: ZooKeeperEnsemble, namespace: str) -> Any:
    return write_sharded_config(tmp / name, mariadb, {DB: sharded_database(DB, "mysql", mariadb, PHYSICAL,
                                                                           _rules("ds_${id % 2}"))},
                                global_overrides=_mode(ensemble, namespace), dbmesh={"labels": ["zone-a"]})


def _cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "dbmesh", "governance", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO_ROOT))


def _connect(proc: DbMeshProcess) -> Any:
    return pymysql.connect(host=proc.host, port=proc.port, user="root", password="rootpw", database=DB,
                           autocommit=True, connect_timeout=10, read_timeout=30)


def _route_of(conn: Any, item_id: int) -> str:
    with conn.cursor() as cur:
        cur.execute(f"PREVIEW SELECT v FROM t_item WHERE id = {item_id}")
        return str(cur.fetchall()[0][0])


class _Client(threading.Thread):
    """Runs statements on one connection until stopped; every error and a dropped connection is recorded."""

    def __init__(self, proc: DbMeshProcess) -> None:
        super().__init__(daemon=True)
        self.conn = _connect(proc)
        self.stop_flag = threading.Event()
        self.errors: list[str] = []
        self.count = 0

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT COUNT(*) FROM t_item")
                    assert cur.fetchall() == ((4,),)
                    cur.execute(f"SELECT v FROM t_item WHERE id = {i % 4}")
                    cur.fetchall()
                self.count += 1
            except Exception as exc:  # every failure is a test failure, reported with its text
                self.errors.append(repr(exc))
            i += 1
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop_flag.set()
        self.join(30)
        self.conn.close()


def _push_dir(tmp: Path, base: Path, expression: str) -> Path:
    target = tmp / f"push-{time.monotonic_ns()}"
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("*.log", "dbmesh.*"))
    document = yaml.safe_load((base / f"database-{DB}.yaml").read_text().replace("!SHARDING", ""))
    document["rules"] = _rules(expression)
    (target / f"database-{DB}.yaml").write_text(dump_yaml(document))
    return target


def _wait_route(conns: list[Any], item_id: int, want: str, timeout: float) -> float:
    start = time.monotonic()
    pending = list(conns)
    while pending and time.monotonic() - start < timeout:
        pending = [c for c in pending if _route_of(c, item_id) != want]
        if pending:
            time.sleep(0.02)
    assert not pending, f"not applied within {timeout}s"
    return time.monotonic() - start


@pytest.fixture
def data(mariadb: MariaDB) -> None:
    for ds, db in PHYSICAL.items():
        mariadb.ensure_database(db)
        n = int(ds[-1])
        run_statements(mariadb, db, ["DROP TABLE IF EXISTS t_item", "CREATE TABLE t_item (id INT PRIMARY KEY, v INT)",
                                     f"INSERT INTO t_item (id, v) VALUES ({n}, {n}), ({n + 2}, {n + 2})"])


@contextlib.contextmanager
def _two_sidecars(tmp: Path, mariadb: MariaDB, ensemble: ZooKeeperEnsemble,
                  namespace: str) -> Iterator[tuple[DbMeshProcess, DbMeshProcess, Path]]:
    first = _sidecar_config(tmp, "a", mariadb, ensemble, namespace)
    a = start_sharded_dbmesh(first, postgresql=False)
    try:
        # The second sidecar's local rules differ: the registry, published by the first, must win.
        second = write_sharded_config(tmp / "b", mariadb, {DB: sharded_database(
            DB, "mysql", mariadb, PHYSICAL, _rules("ds_${(id + 1) % 2}"))}, global_overrides=_mode(ensemble, namespace))
        b = start_sharded_dbmesh(second, postgresql=False)
        try:
            yield a, b, first.config_dir
        finally:
            b.stop()
    finally:
        a.stop()


def test_push_is_applied_by_both_sidecars_within_a_second_without_client_errors(
        data: None, mariadb: MariaDB, zookeeper: ZooKeeperEnsemble, zk_namespace: str, tmp_path: Path) -> None:
    with _two_sidecars(tmp_path, mariadb, zookeeper, zk_namespace) as (a, b, base):
        probes = [_connect(a), _connect(b)]
        assert [_route_of(c, 1) for c in probes] == ["ds_1", "ds_1"]  # b took the registry's rules, not its own
        clients = [_Client(a), _Client(b)]
        for c in clients:
            c.start()
        time.sleep(0.5)
        pushed = _cli("push", "--message", "route odd ids to ds_0", config=_push_dir(tmp_path, base, "ds_${(id + 1) % 2}"))
        assert pushed.returncode == 0, pushed.stderr
        elapsed = _wait_route(probes, 1, "ds_0", timeout=5.0)
        assert elapsed < 1.0, elapsed
        time.sleep(0.5)
        for c in clients:
            c.finish()
        for c in clients:
            assert c.errors == [] and c.count > 10, (c.errors[:3], c.count)
        history = _cli("history", config=base)
        assert history.returncode == 0 and "route odd ids to ds_0" in history.stdout, history
        # Both nodes are registered, and report the version they applied.
        with probes[0].cursor() as cur:
            cur.execute("SHOW COMPUTE NODES")
            nodes = cur.fetchall()
        assert len(nodes) == 2 and {n[2] for n in nodes} == {"OK"}
        assert sorted(n[5] for n in nodes) == ["", "zone-a"]  # a's own labels; b has none
        assert len({n[4] for n in nodes}) == 2  # distinct Snowflake worker ids
        # Roll back: both return to the first rules.
        rolled = _cli("rollback", "--to", "1", config=base)
        assert rolled.returncode == 0, rolled.stderr
        _wait_route(probes, 1, "ds_1", timeout=5.0)
        for c in probes:
            c.close()


def test_invalid_push_is_refused_and_changes_nothing(
        data: None, mariadb: MariaDB, zookeeper: ZooKeeperEnsemble, zk_namespace: str, tmp_path: Path) -> None:
    with _two_sidecars(tmp_path, mariadb, zookeeper, zk_namespace) as (a, b, base):
        bad = _push_dir(tmp_path, base, "ds_${id % 2}")
        text = (bad / f"database-{DB}.yaml").read_text().replace("type: INLINE", "type: NO_SUCH_ALGORITHM")
        (bad / f"database-{DB}.yaml").write_text(text)
        before = _cli("history", config=base).stdout
        refused = _cli("push", config=bad)
        assert refused.returncode == 2 and "NO_SUCH_ALGORITHM" in refused.stderr, refused
        assert _cli("history", config=base).stdout == before
        assert _cli("diff", config=base).returncode == 0  # the registry still holds exactly the first config
        for proc in (a, b):
            conn = _connect(proc)
            assert _route_of(conn, 1) == "ds_1"
            conn.close()


def test_zookeeper_node_loss_and_full_outage_are_invisible_to_clients(
        data: None, mariadb: MariaDB, zookeeper3: ZooKeeperEnsemble, zk_namespace: str, tmp_path: Path) -> None:
    with _two_sidecars(tmp_path, mariadb, zookeeper3, zk_namespace) as (a, b, base):
        probes = [_connect(a), _connect(b)]
        clients = [_Client(a), _Client(b)]
        for c in clients:
            c.start()
        zookeeper3.stop_node(0)
        time.sleep(1.0)
        pushed = _cli("push", config=_push_dir(tmp_path, base, "ds_${(id + 1) % 2}"))
        assert pushed.returncode == 0, pushed.stderr
        _wait_route(probes, 1, "ds_0", timeout=5.0)
        zookeeper3.stop_all()
        time.sleep(2.0)  # both sidecars keep serving from their last good configuration
        assert [_route_of(c, 1) for c in probes] == ["ds_0", "ds_0"]
        zookeeper3.start_all()
        # A change made right after the ensemble is back reaches both, whenever they reconnect.
        pushed = _cli("push", config=_push_dir(tmp_path, base, "ds_${id % 2}"))
        assert pushed.returncode == 0, pushed.stderr
        _wait_route(probes, 1, "ds_1", timeout=30.0)
        deadline = time.monotonic() + 30
        nodes: tuple[Any, ...] = ()
        while time.monotonic() < deadline:
            with probes[0].cursor() as cur:
                cur.execute("SHOW COMPUTE NODES")
                nodes = cur.fetchall()
            if len(nodes) == 2:
                break
            time.sleep(0.2)
        assert len(nodes) == 2, nodes  # both re-registered
        for c in clients:
            c.finish()
        for c in clients:
            assert c.errors == [] and c.count > 10, (c.errors[:3], c.count)
        for c in probes:
            c.close()


def _health(proc: DbMeshProcess) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{proc.host}:{proc.admin_port}/healthz", timeout=10) as resp:
        return dict(json.loads(resp.read().decode()))


def test_data_sources_added_and_removed_live_open_and_drain_their_pools(
        data: None, mariadb: MariaDB, zookeeper: ZooKeeperEnsemble, zk_namespace: str, tmp_path: Path) -> None:
    mariadb.ensure_database("gov_extra_0")
    run_statements(mariadb, "gov_extra_0", ["DROP TABLE IF EXISTS t_x", "CREATE TABLE t_x (id INT PRIMARY KEY)",
                                            "INSERT INTO t_x VALUES (7)"])
    with _two_sidecars(tmp_path, mariadb, zookeeper, zk_namespace) as (a, _b, base):
        conn = _connect(a)
        added = _push_dir(tmp_path, base, "ds_${id % 2}")
        extra = {"databaseName": "gov_extra", "dataSources": {"ds_0": {
            "url": f"jdbc:mysql://{mariadb.host}:{mariadb.port}/gov_extra_0", "username": mariadb.user,
            "password": mariadb.password, "maxPoolSize": 5}}, "rules": []}
        (added / "database-gov_extra.yaml").write_text(dump_yaml(extra))
        pushed = _cli("push", config=added)
        assert pushed.returncode == 0, pushed.stderr
        deadline = time.monotonic() + 5
        rows: Any = None
        while time.monotonic() < deadline:
            try:
                with conn.cursor() as cur:
                    cur.execute("USE gov_extra")
                    cur.execute("SELECT id FROM t_x")
                    rows = cur.fetchall()
                break
            except pymysql.MySQLError as exc:
                assert exc.args[0] == 1049, exc  # Unknown database until the change arrives
                time.sleep(0.02)
        assert rows == ((7,),)
        assert "gov_extra.ds_0" in _health(a)["pools"]
        # The session stays on gov_extra while it is removed: its next statement is refused, its connection lives.
        removed = _push_dir(tmp_path, base, "ds_${id % 2}")
        pushed = _cli("push", config=removed)
        assert pushed.returncode == 0, pushed.stderr
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "gov_extra.ds_0" in _health(a)["pools"]:
            time.sleep(0.02)
        assert "gov_extra.ds_0" not in _health(a)["pools"]
        with pytest.raises(pymysql.MySQLError) as info:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM t_x")
        assert info.value.args[0] == 1049 and "gov_extra" in info.value.args[1]
        with conn.cursor() as cur:
            cur.execute(f"USE {DB}")
            cur.execute("SELECT COUNT(*) FROM t_item")
            assert cur.fetchall() == ((4,),)
        conn.close()
        # The data source's connections were closed on the server side too.
        processes = mariadb.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = 'gov_extra_0'")
        assert processes == [(0,)], processes


def _wait_for(check: Any, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not reached in time"
        time.sleep(0.02)
    return time.monotonic() - start


def test_operator_controls_through_sql_reach_every_sidecar(
        data: None, mariadb: MariaDB, zookeeper: ZooKeeperEnsemble, zk_namespace: str, tmp_path: Path) -> None:
    with _two_sidecars(tmp_path, mariadb, zookeeper, zk_namespace) as (a, b, _base):
        ca, cb = _connect(a), _connect(b)

        def rows(conn: Any, sql: str) -> Any:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()

        # SET DIST VARIABLE on one sidecar is validated, published and applied by both.
        with ca.cursor() as cur:
            cur.execute("SET DIST VARIABLE max_connections_size_per_query = 3")
        assert _wait_for(lambda: rows(cb, "SHOW DIST VARIABLE WHERE NAME = max_connections_size_per_query")
                         == (("max_connections_size_per_query", "3"),)) < 1.0
        with pytest.raises(pymysql.MySQLError) as info:
            with ca.cursor() as cur:
                cur.execute("SET DIST VARIABLE max_connections_size_per_query = 0")
        assert "max-connections-size-per-query" in info.value.args[1]
        assert rows(cb, "SHOW DIST VARIABLE WHERE NAME = max_connections_size_per_query")[0][1] == "3"
        # READ_ONLY set on a is enforced on b.
        with ca.cursor() as cur:
            cur.execute("SET CLUSTER STATE READ_ONLY")
        _wait_for(lambda: rows(cb, "SHOW CLUSTER STATE") == (("READ_ONLY",),))
        with pytest.raises(pymysql.MySQLError) as info:
            with cb.cursor() as cur:
                cur.execute("INSERT INTO t_item (id, v) VALUES (100, 1)")
        assert info.value.args[0] == 1290
        assert rows(cb, "SELECT COUNT(*) FROM t_item") == ((4,),)
        with cb.cursor() as cur:
            cur.execute("UNLOCK CLUSTER")
        _wait_for(lambda: rows(ca, "SHOW CLUSTER STATE") == (("OK",),))
        # a disables b: b refuses statements, a serves; a enables b again.
        b_id = next(n[0] for n in rows(ca, "SHOW COMPUTE NODES") if n[1].endswith(f":{b.port}"))
        with ca.cursor() as cur:
            cur.execute(f"DISABLE COMPUTE NODE '{b_id}'")

        def b_refuses() -> bool:
            try:
                rows(cb, "SELECT 1")
            except pymysql.MySQLError as exc:
                return bool(exc.args[0] == 30003)
            return False

        _wait_for(b_refuses)
        assert rows(ca, "SELECT COUNT(*) FROM t_item") == ((4,),)
        assert {n[0]: n[2] for n in rows(ca, "SHOW COMPUTE NODES")}[b_id] == "DISABLED"
        with ca.cursor() as cur:
            cur.execute(f"ENABLE COMPUTE NODE '{b_id}'")
        _wait_for(lambda: not b_refuses())
        assert rows(cb, "SELECT COUNT(*) FROM t_item") == ((4,),)
        ca.close()
        cb.close()
