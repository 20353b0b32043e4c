"""The cluster governor: the asyncio side of Cluster mode, keeping a runtime in step with the ZooKeeper registry.

A `ClusterGovernor` joins the registry (publishing the local configuration to an empty namespace), registers
the compute node, reserves a Snowflake worker id and then follows three watches: ``config_version`` (new change
sets), the compute nodes, and the cluster and node states. Guarantees:

* **In order, never backwards.** Change sets are read and applied by one task, one at a time; a change set
  whose number is not above the last applied one is never applied, so an older configuration never replaces
  a newer one. Reconnecting (after a connection loss, a session expiry or a full ensemble restart) triggers a
  read, so changes made meanwhile are caught up.
* **Last good config kept.** A change set that fails validation is not applied: the runtime keeps its
  snapshot, gets `report_config_error`, and the node's registry entry shows the error until a valid change.
* **Runtime calls on the loop thread.** kazoo's threads only hand events to the loop (`call_soon_threadsafe`);
  `apply_config`, `apply_states` and `report_config_error` run on the loop, in order. Blocking registry calls
  run in worker threads (`asyncio.to_thread`).
* **A registry outage does not stop serving.** When ZooKeeper is unreachable at start, `start` returns the
  local configuration after a bounded wait and joins in the background when it can.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dbmesh import errors
from dbmesh.config import Config, read_config_files
from dbmesh.governance.layout import CLUSTER_STATES, NODE_STATES, PROPS_ITEM
from dbmesh.governance.registry import ComputeNode, Registry, governance_error, new_node_id
from dbmesh.governance.snapshot import dump_props, load_items, parse_props, split_files
from dbmesh.sharding import keygen

log = logging.getLogger(__name__)
T = TypeVar("T")


class GovernedRuntime(Protocol):
    """What the governor drives; every method is called on the event loop thread."""

    def apply_config(self, config: Config, version: int) -> None: ...

    def apply_states(self, cluster_state: str, node_state: str) -> None: ...

    def report_config_error(self, version: int, message: str) -> None: ...


class ClusterGovernor:
    """One process's membership of the cluster (see the module docstring for its guarantees)."""

    def __init__(self, runtime: GovernedRuntime, bootstrap: Config, local_global: str | None, *, address: str,
                 labels: Sequence[str] = (), loop: asyncio.AbstractEventLoop | None = None,
                 connect_timeout: float | None = None) -> None:
        zk = bootstrap.mode.zookeeper
        if bootstrap.mode.type != "Cluster" or zk is None:
            raise governance_error("the cluster governor needs mode.type Cluster with a ZooKeeper repository")
        self.runtime = runtime
        self.bootstrap = bootstrap
        self.local_global = local_global
        self.node_id = new_node_id()
        self.worker_id: int | None = None
        self.config_version = 0
        self.last_error: str | None = None
        self._loop = loop
        self._zk = zk
        self._registry = Registry(zk)
        self._connect_timeout = connect_timeout if connect_timeout is not None else min(
            max(zk.retry_interval_ms * zk.max_retries / 1000, zk.operation_timeout_ms / 1000, 2.0), 30.0)
        self._retry_delay = max(zk.retry_interval_ms / 1000, 0.1)
        self._node = ComputeNode(id=self.node_id, address=address, labels=tuple(labels))
        self._nodes: list[ComputeNode] = []
        self._states: tuple[str, str] | None = None  # last (cluster, node) given to the runtime
        self._failed_version: int | None = None
        self._joined = False
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- public ----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._registry.connected

    @property
    def registry(self) -> Registry:
        return self._registry

    async def start(self) -> Config:
        """Join the registry and return the configuration to serve with (see the module docstring)."""
        loop = self._loop = self._loop or asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._registry.add_state_listener(self._on_state)
        self._registry.add_worker_id_listener(lambda n: self._threadsafe(self._set_worker_id, n))
        self._registry.start_background()
        config = self.bootstrap
        if await asyncio.to_thread(self._registry.wait_connected, self._connect_timeout):
            try:
                config = await self._join(initial=True)
            except errors.DbMeshError as exc:
                log.warning("cluster mode: joining the registry failed (%s); serving the local configuration and "
                            "retrying in the background", exc.message)
            except Exception:  # serving goes first; the background task retries the join
                log.exception("cluster mode: joining the registry failed; serving the local configuration and "
                              "retrying in the background")
        else:
            log.warning("cluster mode: ZooKeeper at %s not reachable within %g s; serving the local configuration "
                        "and joining when it answers", self._zk.server_lists, self._connect_timeout)
        self._task = loop.create_task(self._run(), name="dbmesh-cluster-governor")
        return config

    def compute_nodes(self) -> list[ComputeNode]:
        """The online compute nodes, from the watch (this node alone until the registry answered)."""
        return list(self._nodes) if self._nodes else [self._node]

    async def set_node_state(self, node_id: str, state: str) -> None:
        """ENABLE/DISABLE COMPUTE NODE: OK | DISABLED for an online node; GOVERNANCE_FAILED when there is none."""
        state = state.upper()
        if state not in NODE_STATES:
            raise governance_error(f"compute node state must be one of {', '.join(NODE_STATES)}, got {state!r}")
        await asyncio.to_thread(self._registry.set_node_state, node_id, state)
        if node_id == self.node_id:  # read-your-writes; the watch delivers the same value again, ignored
            self._deliver_states(self._states[0] if self._states else "OK", state)

    async def set_cluster_state(self, state: str) -> None:
        """SET CLUSTER STATE: OK | READ_ONLY | UNAVAILABLE on every compute node."""
        state = state.upper()
        if state not in CLUSTER_STATES:
            raise governance_error(f"cluster state must be one of {', '.join(CLUSTER_STATES)}, got {state!r}")
        await asyncio.to_thread(self._registry.set_cluster_state, state)
        self._deliver_states(state, self._states[1] if self._states else "OK")

    async def set_props(self, changes: Mapping[str, object], author: str) -> int:
        """SET DIST VARIABLE: a new props version, validated with the whole configuration before anything is
        written, published as a change set (None removes a prop). Returns the new configuration version, applied
        here before returning."""
        def publish() -> int:
            seq, items = self._registry.active_items()
            props = parse_props(items.get(PROPS_ITEM, ""))
            for name, value in changes.items():
                if value is None:
                    props.pop(name, None)
                else:
                    props[name] = value
            new_items = {**items, PROPS_ITEM: dump_props(props)}
            load_items(new_items, self.bootstrap.source_dir, self.local_global)  # ConfigError: nothing written
            listed = ", ".join(f"{k}={v}" for k, v in changes.items())
            result = self._registry.publish(new_items, author, f"SET DIST VARIABLE {listed}", expected_version=seq)
            return result.seq

        seq = await asyncio.to_thread(publish)
        await self._refresh()
        return seq

    async def stop(self) -> None:
        """Leave the cluster: the compute node and worker id disappear from the registry at once."""
        self._stopping = True
        tasks = [t for t in (self._task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await asyncio.to_thread(self._registry.stop)
        if self.worker_id is not None:
            keygen.set_instance_worker_id(None)

    # -- joining ---------------------------------------------------------------------------------

    def _join_blocking(self) -> tuple[int, dict[str, str], tuple[str, str], int]:
        """Publish to an empty namespace, read the active items and states, register, reserve a worker id."""
        reg = self._registry
        overwrite = self.bootstrap.mode.overwrite
        if overwrite or reg.is_empty():
            what = "local configuration (mode.overwrite)" if overwrite else "initial configuration"
            try:
                items = split_files(read_config_files(self.bootstrap.source_dir))
                reg.publish(items, self.node_id, f"{what} of compute node {self.node_id}")
            except errors.ConfigError as exc:  # the local files cannot be stored: serve them, publish nothing
                log.error("cluster mode: the local configuration cannot be published: %s", exc.message)
            except errors.DbMeshError as exc:  # another node published first: take the registry's
                log.info("cluster mode: not publishing the local configuration: %s", exc.message)
        seq, items = reg.active_items()
        states = (reg.cluster_state(), reg.node_state(self.node_id))
        worker = reg.allocate_worker_id(self.node_id)
        reg.register_node(replace(self._node, worker_id=worker))
        self._nodes = reg.compute_nodes()
        return seq, items, states, worker

    async def _join(self, initial: bool) -> Config:
        """Join the cluster; returns the configuration now to serve. After the first start (`initial` False) a
        newer registry configuration is applied to the runtime here."""
        seq, items, states, worker = await asyncio.to_thread(self._join_blocking)
        self._set_worker_id(worker)
        config = self.bootstrap
        loaded = await asyncio.to_thread(self._load, seq, items) if seq > 0 else None  # None: nothing published
        if loaded is None:
            pass
        elif isinstance(loaded, Config):
            if initial:
                config = loaded
                self.config_version = seq
                await self._report_node(config_version=seq, error=None)
            else:
                await self._apply(seq, loaded)
        else:
            await self._fail(seq, loaded)
        self._deliver_states(*states)
        reg = self._registry
        reg.watch_config(lambda n: self._threadsafe(self._on_config_version, n))
        reg.watch_nodes(lambda nodes: self._threadsafe(self._set_nodes, nodes))
        reg.watch_states(self.node_id, lambda c, n: self._threadsafe(self._deliver_states, c, n))
        self._joined = True
        log.info("cluster mode: joined %s as compute node %s (worker id %d, configuration version %d)",
                 reg.layout.root, self.node_id, worker, self.config_version)
        return config

    # -- following the registry ------------------------------------------------------------------

    def _threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the loop thread (from kazoo's threads); dropped once the governor stops."""
        if self._stopping or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the process is shutting down
            pass

    def _on_state(self, state: str) -> None:
        if state == "CONNECTED":  # catch up on whatever changed while disconnected
            self._threadsafe(self._poke)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _on_config_version(self, seq: int) -> None:
        if seq > self.config_version:
            self._poke()

    def _set_nodes(self, nodes: list[ComputeNode]) -> None:
        self._nodes = nodes

    def _set_worker_id(self, worker: int) -> None:
        self.worker_id = worker
        self._node = replace(self._node, worker_id=worker)
        keygen.set_instance_worker_id(worker)

    def _deliver_states(self, cluster_state: str, node_state: str) -> None:
        if self._stopping or self._states == (cluster_state, node_state):
            return
        self._states = (cluster_state, node_state)
        self.runtime.apply_states(cluster_state, node_state)

    async def _run(self) -> None:
        """The one task that joins (when start could not) and applies change sets, one at a time."""
        assert self._wake is not None
        self._wake.set()
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if not self._registry.connected:
                continue  # the CONNECTED state event wakes us again
            try:
                if not self._joined:
                    await self._join(initial=False)
                else:
                    await self._refresh()
            except errors.DbMeshError as exc:
                log.warning("cluster mode: %s; retrying in %g s", exc.message, self._retry_delay)
                self._loop.call_later(self._retry_delay, self._poke)  # type: ignore[union-attr]
            except Exception:  # a bug must not end the task that keeps the node in step
                log.exception("cluster mode: following the registry failed; retrying")
                self._loop.call_later(self._retry_delay, self._poke)  # type: ignore[union-attr]

    async def _refresh(self) -> None:
        """Read the active change set and apply it when it is newer than the one applied."""
        assert self._lock is not None
        async with self._lock:
            seq, items = await asyncio.to_thread(self._registry.active_items)
            if seq <= self.config_version or seq == self._failed_version:
                return
            loaded = await asyncio.to_thread(self._load, seq, items)
            if isinstance(loaded, Config):
                await self._apply(seq, loaded)
            else:
                await self._fail(seq, loaded)

    def _load(self, seq: int, items: Mapping[str, str]) -> Config | str:
        """The Config of a change set, or why it is invalid (ConfigError messages never quote a password)."""
        try:
            return load_items(items, Path(self.bootstrap.source_dir), self.local_global)
        except errors.DbMeshError as exc:
            return exc.message

    async def _apply(self, seq: int, config: Config) -> None:
        if seq <= self.config_version or self._stopping:
            return
        self.config_version = seq
        self.last_error = None
        self._failed_version = None
        self.runtime.apply_config(config, seq)
        log.info("cluster mode: configuration version %d applied", seq)
        await self._report_node(config_version=seq, error=None)

    async def _fail(self, seq: int, message: str) -> None:
        self._failed_version = seq
        self.last_error = f"configuration version {seq}: {message}"
        log.error("cluster mode: configuration version %d is invalid and was not applied (keeping version %d): %s",
                  seq, self.config_version, message)
        self.runtime.report_config_error(seq, message)
        await self._report_node(config_version=self.config_version, error=self.last_error)

    async def _report_node(self, *, config_version: int, error: str | None) -> None:
        """Record what this node applied in its registry entry; a failure here is logged, not raised."""
        self._node = node = replace(self._node, config_version=config_version, error=error, worker_id=self.worker_id)
        # The cached list shows it at once; the watch confirms it from the registry.
        self._nodes = [replace(node, state=n.state) if n.id == node.id else n for n in self._nodes]
        try:
            await asyncio.to_thread(self._registry.update_node, node)
        except errors.DbMeshError as exc:
            log.warning("cluster mode: could not update the compute node entry: %s", exc.message)


__all__ = ["ClusterGovernor", "GovernedRuntime"]
