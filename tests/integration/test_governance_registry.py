"""The ZooKeeper registry against real ZooKeeper servers: change sets, history, rollback, the CLI, ACLs, ephemeral
compute nodes and worker ids across session expiry, a quorum losing a node, and the cluster governor following
pushed changes (and catching up after the whole ensemble went away)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError

from dbmesh import cli, errors
from dbmesh.config import Config, ZooKeeperProps, load_config
from dbmesh.governance.cluster import ClusterGovernor
from dbmesh.governance.registry import ComputeNode, Registry
from dbmesh.governance.snapshot import split_files
from dbmesh.sharding import keygen
from tests.support.ports import free_port
from tests.support.zookeeper import ZooKeeperEnsemble

pytestmark = pytest.mark.timeout(90)

DATABASE = """\
databaseName: sharding_db
dataSources:
  ds_0:
    url: jdbc:mysql://127.0.0.1:1/demo_ds_0
    username: root
    password: ds-secret-0
  ds_1:
    url: jdbc:mysql://127.0.0.1:1/demo_ds_1
    username: root
    password: ds-secret-1
rules:
  - !SHARDING
    tables:
      t_order:
        actualDataNodes: ds_${0..1}.t_order
        databaseStrategy:
          standard: {shardingColumn: order_id, shardingAlgorithmName: by_order}
    shardingAlgorithms:
      by_order: {type: INLINE, props: {algorithm-expression: "ds_${order_id % 2}"}}
"""


def _mode(ensemble: ZooKeeperEnsemble | str, namespace: str, **props: Any) -> str:
    servers = ensemble if isinstance(ensemble, str) else ensemble.server_lists
    lines = ["mode:", "  type: Cluster", "  repository:", "    type: ZooKeeper", "    props:",
             f"      namespace: {namespace}", f"      server-lists: {servers}",
             "      retryIntervalMilliseconds: 100", "      maxRetries: 5", "      operationTimeoutMilliseconds: 2000"]
    lines += [f"      {key}: {value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def write_config(directory: Path, ensemble: ZooKeeperEnsemble | str, namespace: str, *, sql_show: bool = False,
                 database: str = DATABASE, extra: dict[str, str] | None = None, **mode_props: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("database-*.yaml"):
        old.unlink()
    (directory / "global.yaml").write_text(
        _mode(ensemble, namespace, **mode_props)
        + "authority:\n  users:\n    - {user: root@%, password: root-secret}\n"
        + f"props:\n  sql-show: {str(sql_show).lower()}\n"
        + "dbmesh:\n  listeners:\n    mysql: {port: 13307}\n")
    (directory / "database-sharding_db.yaml").write_text(database)
    for name, text in (extra or {}).items():
        (directory / name).write_text(text)
    return directory


def zk_props(ensemble: ZooKeeperEnsemble, namespace: str, **overrides: Any) -> ZooKeeperProps:
    settings: dict[str, Any] = {"namespace": namespace, "server_lists": ensemble.server_lists,
                                "retry_interval_ms": 100, "max_retries": 5, "operation_timeout_ms": 2000,
                                "time_to_live_s": 10}
    settings.update(overrides)
    return ZooKeeperProps(**settings)


@pytest.fixture
def registries() -> Iterator[Callable[..., Registry]]:
    """Factory of started registries, stopped at test end."""
    started: list[Registry] = []

    def start(props: ZooKeeperProps) -> Registry:
        registry = Registry(props)
        started.append(registry)
        registry.start(timeout=10)
        return registry

    yield start
    for registry in started:
        registry.stop()


def dump_namespace(ensemble: ZooKeeperEnsemble, namespace: str, digest: str | None = None) -> dict[str, bytes]:
    """Every znode below /namespace with its data (to show that nothing was written)."""
    client = KazooClient(hosts=ensemble.server_lists, auth_data=[("digest", digest)] if digest else None)
    client.start(10)
    out: dict[str, bytes] = {}

    def walk(path: str) -> None:
        if not client.exists(path):
            return
        out[path] = client.get(path)[0]
        for child in client.get_children(path):
            walk(f"{path}/{child}")

    try:
        walk(f"/{namespace}")
    finally:
        client.stop()
        client.close()
    return out


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["governance", *args])
    out, err = capsys.readouterr()
    return code, out, err


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


def expire_session(ensemble: ZooKeeperEnsemble, registry: Registry, states: list[str]) -> None:
    """Expire the registry's session on the server: another client takes the session over (same id and password)
    and closes it. The registry's own client takes its session back on every reconnect, so under load the
    takeover may lose that race: try again until the registry reports the session LOST."""
    session_id, password = registry.client.client_id
    deadline = time.monotonic() + 30
    while "LOST" not in states:
        assert time.monotonic() < deadline, "could not expire the session"
        thief = KazooClient(hosts=ensemble.server_lists, client_id=(session_id, password))
        try:
            thief.start(3)
            thief.stop()  # closes the session: ZooKeeper deletes its ephemeral nodes
        except KazooTimeoutError:
            pass
        finally:
            thief.close()
        with contextlib.suppress(AssertionError):
            wait_for(lambda: "LOST" in states, 3, "the registry notices the expired session")


# ----------------------------------------------------------------------------------------- change sets


def test_publish_and_read_back_only_changed_items_get_versions(
        tmp_path: Path, zookeeper: ZooKeeperEnsemble, zk_namespace: str,
        registries: Callable[..., Registry]) -> None:
    registry = registries(zk_props(zookeeper, zk_namespace))
    assert registry.is_empty() and registry.active_items() == (0, {})
    config_dir = write_config(tmp_path / "conf", zookeeper, zk_namespace)
    from dbmesh.config import read_config_files

    items = split_files(read_config_files(config_dir))
    first = registry.publish(items, "alice@host", "first version")
    assert (first.seq, first.changed, first.removed) == (1, ("rules", "props", "metadata/sharding_db"), ())
    assert registry.active_items() == (1, items)
    assert not registry.is_empty()

    # Same texts again: nothing is written, no change set.
    again = registry.publish(items, "alice@host", "same")
    assert again.no_change and again.seq == 1 and registry.config_version() == 1

    # One prop changes: only the props item gets a new version; the others keep version 0.
    changed = dict(items, props="sql-show: true\n")
    second = registry.publish(changed, "bob@host", "show SQL")
    assert (second.seq, second.changed, second.removed) == (2, ("props",), ())
    assert registry.active_items() == (2, changed)
    record = registry.change(2)
    assert record.changed == {"props": 1}
    assert record.active == {"rules": 0, "props": 1, "metadata/sharding_db": 0}

    # A database removed from the push: its active_version goes, its versions stay for rollback.
    removed = {k: v for k, v in changed.items() if k != "metadata/sharding_db"}
    third = registry.publish(removed, "bob@host", "drop sharding_db")
    assert (third.seq, third.changed, third.removed) == (3, (), ("metadata/sharding_db",))
    assert registry.active_items() == (3, removed)
    assert registry.client.exists(registry.layout.version("metadata/sharding_db", 0))
    assert not registry.client.exists(registry.layout.active_version("metadata/sharding_db"))

    history = registry.history()
    assert [(r.seq, r.author, r.message) for r in history] == [
        (1, "alice@host", "first version"), (2, "bob@host", "show SQL"), (3, "bob@host", "drop sharding_db")]
    assert all(r.time.endswith("+00:00") and r.time[:4].isdigit() for r in history)
    assert history[2].changed == {"metadata/sharding_db": None}

    # Rollback to 1: a new change set re-activating version 0 of props and the database; no new versions.
    back = registry.rollback(1, "carol@host")
    assert (back.seq, back.changed, back.removed) == (4, ("props", "metadata/sharding_db"), ())
    assert registry.active_items() == (4, items)
    assert registry.change(4).rollback_of == 1 and "rollback to configuration version 1" in registry.change(4).message
    assert sorted(registry.client.get_children(registry.layout.versions("props"))) == ["0", "1"]
    assert registry.rollback(1, "carol@host").no_change
    with pytest.raises(errors.DbMeshError, match="no configuration version 99"):
        registry.rollback(99, "carol@host")


def test_concurrent_publishes_one_fails_with_a_clear_error(
        zookeeper: ZooKeeperEnsemble, zk_namespace: str, registries: Callable[..., Registry]) -> None:
    props = zk_props(zookeeper, zk_namespace)
    a, b = registries(props), registries(props)
    base = {"rules": "", "props": "{}\n"}
    assert a.publish(base, "a", "base").seq == 1
    # A read-modify-write that lost the race: the version it read is no longer current.
    assert b.publish(dict(base, props="sql-show: true\n"), "b", "b wins", expected_version=1).seq == 2
    with pytest.raises(errors.DbMeshError, match=r"concurrent change was published meanwhile \(configuration version is now 2\)"):
        a.publish(dict(base, props="sql-show: false\n"), "a", "a loses", expected_version=1)
    assert a.active_items() == (2, dict(base, props="sql-show: true\n"))

    # A real race: several writers at once, each a different text. Every change set that commits is whole,
    # the losers get the conflict error, and config_version counts exactly the winners.
    writers = [registries(props) for _ in range(4)]
    barrier = threading.Barrier(len(writers))
    outcomes: list[object] = [None] * len(writers)

    def write(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = writers[i].publish(dict(base, props=f"kernel-executor-size: {i + 1}\n"), f"w{i}", "race")
        except errors.DbMeshError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    wins = [o for o in outcomes if not isinstance(o, errors.DbMeshError)]
    losses = [o for o in outcomes if isinstance(o, errors.DbMeshError)]
    assert wins and len(wins) + len(losses) == len(writers), outcomes
    assert all("concurrent change" in loss.message for loss in losses)
    seq, items = a.active_items()
    assert seq == 2 + len(wins) and [r.seq for r in a.history()] == list(range(1, seq + 1))
    assert items["props"] in {f"kernel-executor-size: {i + 1}\n" for i in range(len(writers))}


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_push_diff_pull_history_rollback_status(
        tmp_path: Path, zookeeper: ZooKeeperEnsemble, zk_namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_config(tmp_path / "conf", zookeeper, zk_namespace)
    code, out, _ = run_cli("diff", "--config", str(conf), capsys=capsys)
    assert code == 1 and "+++ local: database-sharding_db.yaml" in out
    assert "ds-secret" not in out and "root-secret" not in out and "password: ******" in out
    code, out, err = run_cli("push", "--config", str(conf), "--no-check-connect", "--author", "ops", "--message",
                             "initial",
                             capsys=capsys)
    assert code == 0, err
    assert "published configuration version 1" in out and "ds-secret" not in out
    code, out, _ = run_cli("diff", "--config", str(conf), capsys=capsys)
    assert code == 0 and "no change (configuration version 1)" in out
    code, out, _ = run_cli("push", "--config", str(conf), "--no-check-connect", capsys=capsys)
    assert code == 0 and "no change (configuration version 1)" in out

    # A change of the local listener port is not a change of the shared configuration.
    (conf / "global.yaml").write_text((conf / "global.yaml").read_text().replace("13307", "13308"))
    assert run_cli("diff", "--config", str(conf), capsys=capsys)[0] == 0

    write_config(conf, zookeeper, zk_namespace, sql_show=True)
    code, out, _ = run_cli("diff", "--config", str(conf), capsys=capsys)
    assert code == 1 and "-sql-show: false\n+sql-show: true" in out and "sharding_db" not in out
    code, out, err = run_cli("push", "--config", str(conf), "--no-check-connect", "--message", "show SQL",
                             capsys=capsys)
    assert code == 0 and "published configuration version 2 (changed: props; removed: -)" in out, err

    code, out, _ = run_cli("history", "--config", str(conf), capsys=capsys)
    lines = out.splitlines()
    assert lines[0] == "version\ttime\tauthor\tmessage\tchanges"
    assert lines[1].split("\t")[0::2] == ["1", "ops", "rules v0, props v0, metadata/sharding_db v0"]
    assert lines[2].split("\t")[3:] == ["show SQL", "props v1"] and len(lines) == 3

    pulled = tmp_path / "pulled"
    code, out, err = run_cli("pull", "--config", str(conf), "--out", str(pulled), capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in pulled.iterdir()) == ["database-sharding_db.yaml", "global.yaml"]
    assert (pulled / "database-sharding_db.yaml").read_text() == DATABASE
    cfg = load_config(pulled)
    assert cfg.props["sql-show"] is True and cfg.mode.type == "Cluster" and cfg.server.mysql.port == 13307
    assert run_cli("diff", "--config", str(pulled), capsys=capsys)[0] == 0  # the pulled copy is what is active
    code, _, err = run_cli("pull", "--config", str(conf), "--out", str(pulled), capsys=capsys)
    assert code == 2 and "not empty" in err

    code, out, err = run_cli("rollback", "--config", str(conf), "--to", "1", "--author", "ops", capsys=capsys)
    assert code == 0 and "configuration version 3 re-activates the item versions of 1" in out, err
    code, out, _ = run_cli("diff", "--config", str(conf), capsys=capsys)
    assert code == 1 and "+sql-show: true" in out  # the directory still has the rolled-back change
    code, _, err = run_cli("rollback", "--config", str(conf), "--to", "17", capsys=capsys)
    assert code == 4 and "no configuration version 17" in err

    code, out, _ = run_cli("set-cluster-state", "read_only", "--config", str(conf), capsys=capsys)
    assert code == 0
    code, out, _ = run_cli("status", "--config", str(conf), capsys=capsys)
    assert code == 0 and "cluster state: READ_ONLY" in out and "configuration version: 3" in out
    code, _, err = run_cli("node", "disable", "no-such-node", "--config", str(conf), capsys=capsys)
    assert code == 4 and "no compute node 'no-such-node' is online" in err


def test_cli_refuses_an_invalid_push_and_writes_nothing(
        tmp_path: Path, zookeeper: ZooKeeperEnsemble, zk_namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_config(tmp_path / "conf", zookeeper, zk_namespace)
    assert run_cli("push", "--config", str(conf), "--no-check-connect", capsys=capsys)[0] == 0
    before = dump_namespace(zookeeper, zk_namespace)
    assert f"/{zk_namespace}/config_version" in before

    bad = write_config(tmp_path / "bad", zookeeper, zk_namespace,
                       database=DATABASE.replace("type: INLINE", "type: NO_SUCH_ALGORITHM"))
    code, out, err = run_cli("push", "--config", str(bad), "--no-check-connect", capsys=capsys)
    assert code == 2 and "database-sharding_db.yaml" in err and "NO_SUCH_ALGORITHM" in err, err
    assert "published" not in out
    typo = write_config(tmp_path / "typo", zookeeper, zk_namespace, extra={
        "database-x.yaml": "databaseName: x\ndataSources:\n  ds: {url: 'mysql://u@h/d', maxPoolSiz: 3}\n"})
    code, _, err = run_cli("push", "--config", str(typo), "--no-check-connect", capsys=capsys)
    assert code == 2 and "database-x.yaml: dataSources.ds.maxPoolSiz: unknown key" in err, err

    # New data sources must answer --check-connect; nothing listens on 127.0.0.1:1.
    added = DATABASE.replace("ds_1:\n", "ds_2:\n    url: jdbc:mysql://127.0.0.1:1/d2\n    username: u\n  ds_1:\n", 1)
    new_ds = write_config(tmp_path / "new_ds", zookeeper, zk_namespace, database=added)
    code, out, err = run_cli("push", "--config", str(new_ds), capsys=capsys)  # checked by default
    assert code == 3 and "sharding_db.ds_2: UNREACHABLE" in out and "ds_0" not in out, (out, err)
    assert dump_namespace(zookeeper, zk_namespace) == before

    # Data sources the registry already has are not probed again: a props change passes --check-connect.
    props_only = write_config(tmp_path / "props_only", zookeeper, zk_namespace, sql_show=True)
    code, out, err = run_cli("push", "--config", str(props_only), "--check-connect", capsys=capsys)
    assert code == 0 and "no data source is new or changed" in out, err


def test_cli_reports_an_unreachable_registry(tmp_path: Path, zk_namespace: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_config(tmp_path / "conf", f"127.0.0.1:{free_port()}", zk_namespace)  # nothing listens there
    started = time.monotonic()
    code, _, err = run_cli("history", "--config", str(conf), capsys=capsys)
    assert code == 4 and "cannot reach ZooKeeper" in err
    assert time.monotonic() - started < 10
    standalone = tmp_path / "standalone"
    standalone.mkdir()
    (standalone / "global.yaml").write_text("mode:\n  type: Standalone\n")
    code, _, err = run_cli("status", "--config", str(standalone), capsys=capsys)
    assert code == 2 and "Cluster mode" in err


# ------------------------------------------------------------------------------------------------- ACLs


def test_digest_acl_keeps_configs_from_clients_without_credentials(
        zookeeper: ZooKeeperEnsemble, zk_namespace: str, registries: Callable[..., Registry]) -> None:
    registry = registries(zk_props(zookeeper, zk_namespace, digest="dbmesh:s3cret"))
    registry.publish({"rules": "", "props": "{}\n", "metadata/db": "password: ds-secret\n"}, "a", "with ACL")
    registry.register_node(ComputeNode(id="n1", address="h:1"))
    for path in (registry.layout.root, registry.layout.version("metadata/db", 0), registry.layout.online_node("n1")):
        acl, _ = registry.client.get_acls(path)
        assert [(a.id.scheme, a.id.id.split(":")[0], a.perms) for a in acl] == [("digest", "dbmesh", 31)], path

    anonymous = KazooClient(hosts=zookeeper.server_lists)
    anonymous.start(10)
    try:
        for path in (registry.layout.version("metadata/db", 0), registry.layout.config_version,
                     registry.layout.online_node("n1")):
            assert anonymous.exists(path) is not None  # existence is not protected by ACLs in ZooKeeper
            with pytest.raises(NoAuthError):
                anonymous.get(path)
        with pytest.raises(NoAuthError):
            anonymous.get_children(registry.layout.metadata)
        with pytest.raises(NoAuthError):  # ZooKeeper 3.6+: not even the ACL itself
            anonymous.get_acls(registry.layout.version("metadata/db", 0))
    finally:
        anonymous.stop()
        anonymous.close()

    wrong = registries(zk_props(zookeeper, zk_namespace, digest="dbmesh:wrong", max_retries=0))
    with pytest.raises(errors.DbMeshError, match="not authorised"):
        wrong.active_items()
    assert registries(zk_props(zookeeper, zk_namespace, digest="dbmesh:s3cret")).active_items()[0] == 1


# --------------------------------------------------------------------------------- nodes and worker ids


def test_compute_node_is_ephemeral_and_worker_ids_are_unique(
        zookeeper: ZooKeeperEnsemble, zk_namespace: str, registries: Callable[..., Registry]) -> None:
    props = zk_props(zookeeper, zk_namespace)
    observer = registries(props)
    seen: list[list[str]] = []
    observer.watch_nodes(lambda nodes: seen.append([n.id for n in nodes]))

    members = [registries(props) for _ in range(6)]
    ids: list[int | None] = [None] * len(members)

    def join(i: int) -> None:
        ids[i] = members[i].allocate_worker_id(f"node{i}")
        members[i].register_node(ComputeNode(id=f"node{i}", address=f"127.0.0.1:{3307 + i}", worker_id=ids[i]))

    threads = [threading.Thread(target=join, args=(i,)) for i in range(len(members))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(i for i in ids if i is not None) == list(range(len(members)))  # unique, lowest first
    assert members[0].allocate_worker_id("node0") == ids[0]  # asking again keeps the reservation
    nodes = observer.compute_nodes()
    assert [(n.id, n.worker_id, n.state) for n in nodes] == [(f"node{i}", ids[i], "OK") for i in range(6)]
    wait_for(lambda: bool(seen) and len(seen[-1]) == 6, 5, "the node watch sees all six")

    observer.set_node_state("node2", "disabled")
    assert {n.id: n.state for n in observer.compute_nodes()}["node2"] == "DISABLED"
    members[2].stop()  # its ephemeral node and worker id go with its session
    wait_for(lambda: "node2" not in seen[-1], 5, "the node watch sees node2 leave")
    assert [n.id for n in observer.compute_nodes()] == [f"node{i}" for i in (0, 1, 3, 4, 5)]
    assert registries(props).allocate_worker_id("late") == ids[2]  # its worker id is free again
    with pytest.raises(errors.DbMeshError, match="no compute node 'node2' is online"):
        observer.set_node_state("node2", "OK")


def test_session_expiry_registers_the_node_and_worker_id_again(
        zookeeper: ZooKeeperEnsemble, zk_namespace: str, registries: Callable[..., Registry]) -> None:
    props = zk_props(zookeeper, zk_namespace)
    observer = registries(props)
    registry = registries(props)
    worker = registry.allocate_worker_id("n1")
    registry.register_node(ComputeNode(id="n1", address="h:1", worker_id=worker, config_version=7))
    states: list[str] = []
    registry.add_state_listener(states.append)
    old_session = registry.client.client_id[0]

    expire_session(zookeeper, registry, states)
    wait_for(lambda: registry.connected and registry.client.client_id not in (None, ())
             and registry.client.client_id[0] != old_session, 10, "a new session")

    def registered_again() -> bool:
        got = observer.client.exists(observer.layout.online_node("n1"))
        return got is not None and got.ephemeralOwner == registry.client.client_id[0]

    wait_for(registered_again, 10, "the compute node is created again on the new session")
    node = observer.compute_nodes()[0]
    assert (node.id, node.worker_id, node.config_version) == ("n1", worker, 7)
    holder = observer.client.exists(observer.layout.worker_id(worker))
    assert holder is not None and holder.ephemeralOwner == registry.client.client_id[0]
    assert observer.client.get_children(observer.layout.worker_ids) == [str(worker)]


# --------------------------------------------------------------------------------------------- a quorum


def test_quorum_losing_a_node_keeps_publish_and_watch_working(
        zookeeper3: ZooKeeperEnsemble, zk_namespace: str, registries: Callable[..., Registry]) -> None:
    props = zk_props(zookeeper3, zk_namespace)
    writer, watcher = registries(props), registries(props)
    seen: list[int] = []
    watcher.watch_config(seen.append)
    assert writer.publish({"rules": "", "props": "{}\n"}, "w", "one").seq == 1
    wait_for(lambda: 1 in seen, 5, "the watch sees version 1")

    # Stop the server the watcher is connected to: it moves to another one and keeps its watch.
    port = watcher.client._connection._socket.getpeername()[1]
    index = next(i for i, node in enumerate(zookeeper3.nodes) if node.client_port == port)
    zookeeper3.stop_node(index)
    try:
        result = writer.publish({"rules": "", "props": "sql-show: true\n"}, "w", "two")
        assert result.seq == 2
        wait_for(lambda: 2 in seen, 10, "the watch sees version 2 with one server down")
        assert watcher.active_items() == (2, {"rules": "", "props": "sql-show: true\n"})
    finally:
        zookeeper3.start_node(index)


# ------------------------------------------------------------------------------------- cluster governor


class FakeRuntime:
    """Records what the governor asks of a runtime, and on which thread."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, Config, float]] = []
        self.states: list[tuple[str, str]] = []
        self.errors: list[tuple[int, str]] = []
        self.threads: set[int] = set()

    def apply_config(self, config: Config, version: int) -> None:
        self.threads.add(threading.get_ident())
        self.applied.append((version, config, time.monotonic()))

    def apply_states(self, cluster_state: str, node_state: str) -> None:
        self.threads.add(threading.get_ident())
        self.states.append((cluster_state, node_state))

    def report_config_error(self, version: int, message: str) -> None:
        self.threads.add(threading.get_ident())
        self.errors.append((version, message))

    @property
    def versions(self) -> list[int]:
        return [v for v, _, _ in self.applied]


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {timeout}s: {what}")


async def until_async(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """`until` for a predicate that blocks (registry reads): evaluated in a worker thread."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


def _items(conf: Path) -> dict[str, str]:
    from dbmesh.config import read_config_files

    return split_files(read_config_files(conf))


async def test_governor_follows_pushes_keeps_the_last_good_config_and_catches_up(
        tmp_path: Path, zookeeper: ZooKeeperEnsemble, zk_namespace: str,
        registries: Callable[..., Registry]) -> None:
    conf = write_config(tmp_path / "conf", zookeeper, zk_namespace)
    local_global = (conf / "global.yaml").read_text()
    bootstrap = load_config(conf)
    runtime = FakeRuntime()
    governor = ClusterGovernor(runtime, bootstrap, local_global, address="127.0.0.1:13307", labels=("blue",))
    try:
        config = await governor.start()
        loop_thread = threading.get_ident()
        # The namespace was empty: the governor published the local files as version 1 and serves them.
        assert governor.config_version == 1 and config.props == bootstrap.props and runtime.applied == []
        assert governor.worker_id == 0 and keygen.instance_worker_id() == 0
        assert runtime.states == [("OK", "OK")]
        pusher = await asyncio.to_thread(registries, zk_props(zookeeper, zk_namespace))
        history = await asyncio.to_thread(pusher.history)
        assert [(r.seq, r.author) for r in history] == [(1, governor.node_id)]
        await until(lambda: [(n.id, n.config_version) for n in governor.compute_nodes()] == [(governor.node_id, 1)],
                    5, "own node listed")
        me = governor.compute_nodes()[0]
        assert (me.address, me.labels, me.worker_id, me.config_version) == ("127.0.0.1:13307", ("blue",), 0, 1)

        # A pushed change is applied within a second.
        write_config(conf, zookeeper, zk_namespace, sql_show=True)
        pushed_at = time.monotonic()
        assert (await asyncio.to_thread(pusher.publish, _items(conf), "ops", "show SQL")).seq == 2
        await until(lambda: runtime.versions == [2], 5, "version 2 applied")
        assert runtime.applied[0][2] - pushed_at < 1.0
        assert runtime.applied[0][1].props["sql-show"] is True
        assert runtime.applied[0][1].server.mysql.port == 13307  # this process's own dbmesh: block

        # An invalid version written straight into the registry (no validation on the way) is not applied.
        broken = dict(_items(conf), **{"metadata/sharding_db": DATABASE.replace("ds_${0..1}", "ds_${0..5}")})
        assert (await asyncio.to_thread(pusher.publish, broken, "ops", "broken")).seq == 3
        await until(lambda: bool(runtime.errors), 5, "the error is reported")
        assert runtime.errors[0][0] == 3 and "database-sharding_db.yaml" in runtime.errors[0][1]
        assert runtime.versions == [2] and governor.config_version == 2
        assert governor.last_error is not None and "configuration version 3" in governor.last_error
        def entry() -> tuple[int, str | None]:
            node = pusher.compute_nodes()[0]
            return node.config_version, node.error

        await until_async(lambda: entry() == (2, governor.last_error), 5, "the node's registry entry shows the error")

        # States reach the runtime on the loop thread.
        await governor.set_cluster_state("read_only")
        await asyncio.to_thread(pusher.set_node_state, governor.node_id, "DISABLED")
        await until(lambda: runtime.states[-1] == ("READ_ONLY", "DISABLED"), 5, "states delivered")
        await governor.set_node_state(governor.node_id, "OK")
        assert runtime.states[-1] == ("READ_ONLY", "OK")
        with pytest.raises(errors.DbMeshError, match="no compute node 'ghost'"):
            await governor.set_node_state("ghost", "DISABLED")

        # SET DIST VARIABLE: validated with the whole active configuration first, so nothing is written while the
        # active version is invalid, nor for a bad value; then it is applied here before returning.
        with pytest.raises(errors.ConfigError, match=r"database-sharding_db\.yaml"):
            await governor.set_props({"kernel-executor-size": 8}, "sql-user")
        assert (await asyncio.to_thread(pusher.publish, _items(conf), "ops", "fixed")).seq == 4
        await until(lambda: runtime.versions == [2, 4], 5, "version 4 applied")
        assert governor.last_error is None
        with pytest.raises(errors.ConfigError, match="kernel-executor-size"):
            await governor.set_props({"kernel-executor-size": -3}, "sql-user")
        assert await asyncio.to_thread(pusher.config_version) == 4
        seq = await governor.set_props({"kernel-executor-size": 8}, "sql-user")
        assert seq == 5 and runtime.versions == [2, 4, 5]
        assert runtime.applied[-1][1].props["kernel-executor-size"] == 8
        assert (await asyncio.to_thread(pusher.change, 5)).author == "sql-user"

        # The whole ensemble goes away; a change is pushed after it comes back; the governor catches up.
        zookeeper.stop_all()
        await until(lambda: not governor.connected, 10, "disconnected")
        await asyncio.to_thread(zookeeper.start_all)
        write_config(conf, zookeeper, zk_namespace, sql_show=False)
        assert (await asyncio.to_thread(pusher.publish, _items(conf), "ops", "after outage")).seq == 6
        await until(lambda: runtime.versions[-1:] == [6], 20, "version 6 applied after the outage")
        assert runtime.applied[-1][1].props["sql-show"] is False
        assert runtime.versions == sorted(runtime.versions)  # never an older version after a newer one
        assert runtime.threads == {loop_thread}
    finally:
        await governor.stop()
    assert keygen.instance_worker_id() is None
    assert await asyncio.to_thread(lambda: registries(zk_props(zookeeper, zk_namespace)).compute_nodes()) == []


async def test_governor_serves_the_local_config_while_zookeeper_is_down_and_joins_later(
        tmp_path: Path, zookeeper: ZooKeeperEnsemble, zk_namespace: str,
        registries: Callable[..., Registry]) -> None:
    conf = write_config(tmp_path / "conf", zookeeper, zk_namespace)
    bootstrap = load_config(conf)
    runtime = FakeRuntime()
    governor = ClusterGovernor(runtime, bootstrap, (conf / "global.yaml").read_text(), address="h:1",
                               connect_timeout=1.0)
    zookeeper.stop_all()
    try:
        started = time.monotonic()
        config = await governor.start()
        assert config is bootstrap and time.monotonic() - started < 5 and not governor.connected
        assert governor.config_version == 0 and governor.compute_nodes()[0].id == governor.node_id
        await asyncio.to_thread(zookeeper.start_all)
        # It joins: publishes its files to the empty namespace, registers, and applies version 1.
        await until(lambda: runtime.versions == [1], 20, "joined and applied version 1")
        assert runtime.applied[0][1].databases == bootstrap.databases
        pusher = await asyncio.to_thread(registries, zk_props(zookeeper, zk_namespace))
        await until_async(lambda: [(n.id, n.config_version) for n in pusher.compute_nodes()] == [(governor.node_id, 1)],
                          5, "registered with version 1")
    finally:
        await governor.stop()
        await asyncio.to_thread(zookeeper.start_all)
