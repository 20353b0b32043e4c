"""The running server: config snapshot and its live replacement, pools, listeners, admin HTTP, TLS, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import secrets
import signal
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from dbmesh import errors
from dbmesh.backend.mysql_connection import MySQLBackendConnection, MySQLPool
from dbmesh.backend.pg_connection import PgBackendConnection, PgPool
from dbmesh.config import Config, Database, DataSource
from dbmesh.kernel.parse import ParseCache
from dbmesh.observe.admin_http import start_admin_http
from dbmesh.observe.metrics import Metrics
from dbmesh.observe.slowlog import SlowQueryLog
from dbmesh.protocol.mysql.auth import RsaKeyPair
from dbmesh.protocol.mysql.constants import MARIADB_OFFERED, UTF8MB4_GENERAL_CI
from dbmesh.server.mysql_frontend import MySQLFrontend
from dbmesh.server.pg_frontend import PgFrontend
from dbmesh.server.tls import server_context
from dbmesh.session.pg_session import PgSession
from dbmesh.traffic.governor import TrafficGovernor
from dbmesh.traffic.rules import ControlBehavior

if TYPE_CHECKING:
    from dbmesh.governance.cluster import ClusterGovernor
    from dbmesh.sharding.rule import ShardingRule

log = logging.getLogger("dbmesh.server")

# Version string clients see when no data source answered at start and none is configured.
FALLBACK_MYSQL_VERSION = b"8.0.36-dbmesh"


class Runtime:
    """Shared state of one dbmesh process. The config snapshot is immutable; pools are created on first use."""

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        sq = config.server.slow_query_log
        self.slow_log: SlowQueryLog | None = SlowQueryLog(sq.threshold_ms, sq.path)
        self.ssl_context = server_context(config.server.tls)
        self.rsa_keys = RsaKeyPair()
        self.multiplexing = config.server.multiplexing
        version = config.props.get("proxy-mysql-default-version")
        self.mysql_server_version = str(version).encode() if version else FALLBACK_MYSQL_VERSION
        self.mysql_collation = UTF8MB4_GENERAL_CI
        self.mysql_ext_capabilities = 0  # MariaDB extended capabilities offered to clients (see warm_up)
        self.draining = False
        self._ids = itertools.count(1)
        self._clients: set[MySQLFrontend | PgFrontend] = set()
        self._by_id: dict[int, MySQLFrontend] = {}
        self._pg_sessions: dict[int, PgSession] = {}  # our BackendKeyData pid -> session, for CancelRequest
        self._pg_pids = itertools.count(secrets.randbelow(1 << 20) + 1000)
        self._pools: dict[tuple[str, str], MySQLPool] = {}
        self._pg_pools: dict[tuple[str, str], PgPool] = {}
        self._pg_statements: dict[bytes, bytes] = {}  # Parse body -> backend statement name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.Server] = []
        self.started_at = time.time()
        self._parse_caches: dict[str, ParseCache] = {}
        # Live governance. Sessions compare `generation` with the one they last saw before each statement and pick
        # up a new snapshot between transactions; `guarded` is true while any statement gate (a disabled node, a
        # cluster state other than OK, traffic rules) applies, so the common path checks one attribute.
        self.generation = 0
        self.config_version = 0
        self.config_error: str | None = None
        self.node_state = "OK"
        self.cluster_state = "OK"
        self.governor: ClusterGovernor | None = None
        self._standalone_id: str | None = None
        self.traffic: TrafficGovernor | None = TrafficGovernor.build(config, self.metrics, None)
        self.guarded = False
        self.traffic_waits = False
        self._update_guard()
        # The file texts the snapshot was loaded from (standalone SET DIST VARIABLE rebuilds from them, not from
        # whatever the directory holds by then); read at start when the caller did not pass them.
        self.config_files: dict[str, str] | None = None

    def parse_cache(self, dialect: str) -> ParseCache:
        """The process-wide statement-shape cache of one SQL dialect (shared by every sharded session)."""
        cache = self._parse_caches.get(dialect)
        if cache is None:
            cache = self._parse_caches[dialect] = ParseCache()
        return cache

    def sharding_rule(self, database: Database) -> ShardingRule | None:
        """The compiled sharding rule of a logical database in the current snapshot, None when it has none."""
        if not database.rules:
            return None
        from dbmesh.sharding.rule import sharding_rule_for

        return sharding_rule_for(self.config, database)

    # -- live configuration and states (called on the event loop thread) -----------------------------------------

    def apply_config(self, config: Config, version: int = 0) -> None:
        """Swap in a new snapshot: new statements see it; running ones finish under the one they started with.

        Pools of data sources that were removed or changed are retired (they drain and close); pools of new ones
        open on first use. Listener, TLS and mode settings are read at start only.
        """
        old = self.config
        if config.server != old.server:
            log.warning("configuration version %d changes listener/TLS/limit settings of this process; they apply "
                        "after a restart", version)
        self.config = config
        self.config_version = version
        self.config_error = None
        def stale(key: tuple[str, str], current: DataSource) -> bool:
            db = config.databases.get(key[0])
            return (db.data_sources.get(key[1]) if db is not None else None) != current

        for key, pool in list(self._pools.items()):
            if stale(key, pool.data_source):
                del self._pools[key]
                pool.retire()
        for key, pg_pool in list(self._pg_pools.items()):
            if stale(key, pg_pool.data_source):
                del self._pg_pools[key]
                pg_pool.retire()
        self.traffic = TrafficGovernor.build(config, self.metrics, self.traffic)
        self.generation += 1
        self._update_guard()
        self.metrics.config_applied()
        self.metrics.config_version(version)
        log.info("configuration version %d applied (%d logical database(s))", version, len(config.databases))

    async def set_props(self, changes: Mapping[str, object], author: str) -> None:
        """SET DIST VARIABLE: validate the props change like a pushed configuration, then apply it everywhere.

        In Cluster mode the registry gets a new props version and every sidecar (this one included) applies it from
        its watch; standalone, this process applies it at once.
        """
        if self.governor is not None:
            await self.governor.set_props(changes, author)
            return
        from dbmesh.config import load_config_files, read_config_files

        if self.config_files is None:
            self.config_files = read_config_files(self.config.source_dir)
        props = {k: v for k, v in {**self.config.props, **changes}.items() if v is not None}  # None = unset
        config = load_config_files(self.config_files, self.config.source_dir, props=props)
        self.apply_config(config, self.config_version + 1)

    def report_config_error(self, version: int, message: str) -> None:
        """A registry version did not validate: the last good snapshot stays in force."""
        self.config_error = f"version {version}: {message}"
        self.metrics.config_error()
        log.error("configuration version %d rejected, keeping version %d: %s", version, self.config_version, message)

    def apply_states(self, cluster_state: str, node_state: str) -> None:
        """Operator-set states: the cluster's (OK / READ_ONLY / UNAVAILABLE) and this node's (OK / DISABLED)."""
        if (cluster_state, node_state) != (self.cluster_state, self.node_state):
            log.info("cluster state %s, compute node state %s", cluster_state, node_state)
        self.cluster_state = cluster_state
        self.node_state = node_state
        self.metrics.cluster_state(cluster_state)
        self.metrics.compute_node_disabled(node_state == "DISABLED")
        self._update_guard()

    def _update_guard(self) -> None:
        self.guarded = self.node_state != "OK" or self.cluster_state != "OK" or self.traffic is not None
        traffic = self.traffic
        # Whether some flow rule may make a statement wait (QUEUE): sessions then admit statements in a task.
        self.traffic_waits = traffic is not None and any(
            rule.control_behavior is ControlBehavior.QUEUE for rule in traffic.rules.flow_rules)

    @property
    def node_id(self) -> str:
        """This compute node's id: the registry's in Cluster mode, one of the same form (host-pid-random) alone."""
        if self.governor is not None:
            return self.governor.node_id
        if self._standalone_id is None:
            from dbmesh.governance.registry import new_node_id

            self._standalone_id = new_node_id()
        return self._standalone_id

    # -- used by sessions ----------------------------------------------------------------------------------------

    def next_connection_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF

    def admit(self, client: MySQLFrontend | PgFrontend) -> bool:
        if len(self._clients) >= self.config.server.limits.max_connections:
            return False
        self._clients.add(client)
        if isinstance(client, MySQLFrontend):
            self._by_id[client.conn_id] = client
        return True

    def release(self, client: MySQLFrontend | PgFrontend) -> None:
        self._clients.discard(client)
        if isinstance(client, MySQLFrontend):
            self._by_id.pop(client.conn_id, None)
        elif client.session is not None:
            self._pg_sessions.pop(client.session.pid, None)

    def next_pg_pid(self) -> int:
        return next(self._pg_pids) & 0x7FFFFFFF

    def register_pg_session(self, session: PgSession) -> None:
        self._pg_sessions[session.pid] = session

    def cancel_pg(self, pid: int, key: bytes) -> None:
        """A CancelRequest: only the matching secret cancels (as the server checks it)."""
        session = self._pg_sessions.get(pid)
        if session is not None and hmac.compare_digest(session.secret, key):
            session.cancel()

    def pg_statement_name(self, body: bytes) -> bytes:
        """dbmesh's backend name for a Parse body (query + parameter types): the same for every session."""
        name = self._pg_statements.get(body)
        if name is None:
            name = self._pg_statements[body] = b"dbmesh_%x" % len(self._pg_statements)
        return name

    def pg_pool(self, db: Database, ds: DataSource) -> PgPool:
        key = (db.name, ds.name)
        pool = self._pg_pools.get(key)
        if pool is None:
            pool = PgPool(ds, self.metrics, PgBackendConnection)
            pool.start()
            self._pg_pools[key] = pool
        return pool

    def find_mysql_client(self, conn_id: int) -> MySQLFrontend | None:
        return self._by_id.get(conn_id)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background step of some session; failures are logged as bugs, never lost silently."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("[BUG] background task failed: %r", exc, exc_info=exc)

    def default_database(self) -> Database | None:
        """Where statements of a session with no database selected run: the first logical database."""
        for db in self.config.databases.values():
            return db
        return None

    def mysql_pool(self, db: Database, ds: DataSource) -> MySQLPool:
        key = (db.name, ds.name)
        pool = self._pools.get(key)
        if pool is None:
            if ds.protocol != "mysql":
                raise errors.BackendError(errors.BACKEND_CONNECT_FAILED, data_source=ds.name,
                                          detail="a PostgreSQL data source cannot serve the MySQL protocol")
            pool = MySQLPool(ds, self.metrics, MySQLBackendConnection)
            pool.start()
            self._pools[key] = pool
        return pool

    def health(self) -> dict[str, object]:
        return {
            "status": "draining" if self.draining else "ok",
            "clients": len(self._clients),
            "pools": {**{f"{db}.{ds}": {"total": p.total, "idle": p.idle_count} for (db, ds), p in self._pools.items()},
                      **{f"{db}.{ds}": {"total": p.total, "idle": p.idle_count}
                         for (db, ds), p in self._pg_pools.items()}},
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Open min-size connections and learn the server version from the first MySQL data source."""
        learned = False
        for db in self.config.databases.values():
            for ds in db.data_sources.values():
                if ds.protocol != "mysql":
                    continue
                pool = self.mysql_pool(db, ds)
                key = (0, UTF8MB4_GENERAL_CI)
                conns = []
                try:
                    for _ in range(max(1, ds.pool.min_size) if not learned else ds.pool.min_size):
                        conns.append(await pool.acquire(key, ds.database))
                except errors.DbMeshError as exc:
                    log.warning("data source %s is not reachable yet: %s", ds.name, exc.message)
                for conn in conns:
                    if not learned:
                        if not self.config.props.get("proxy-mysql-default-version"):
                            self.mysql_server_version = conn.server_version
                        # Greet as the data source does: a MariaDB gets MariaDB's extended metadata offered.
                        self.mysql_ext_capabilities = conn.server_ext_capabilities & int(MARIADB_OFFERED)
                        learned = True
                    pool.release(conn)

    async def start_governance(self) -> None:
        """Cluster mode: join the registry, take its configuration (or publish ours to an empty namespace)."""
        if self.config.mode.type != "Cluster" or self.governor is not None:
            return
        from pathlib import Path

        from dbmesh.governance.cluster import ClusterGovernor

        local = Path(self.config.source_dir) / "global.yaml"
        local_global = local.read_text(encoding="utf-8") if local.is_file() else None
        srv = self.config.server
        self.governor = ClusterGovernor(self, self.config, local_global,
                                        address=f"{srv.mysql.host}:{srv.mysql.port}", labels=srv.labels)
        config = await self.governor.start()
        if config is not self.config:
            self.apply_config(config, self.governor.config_version)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.start_governance()
        await self.warm_up()
        srv = self.config.server
        server = await loop.create_server(lambda: MySQLFrontend(self), srv.mysql.host, srv.mysql.port,
                                          reuse_address=True, backlog=1024)
        self._servers.append(server)
        pg_server = await loop.create_server(lambda: PgFrontend(self), srv.postgresql.host, srv.postgresql.port,
                                             reuse_address=True, backlog=1024)
        self._servers.append(pg_server)
        admin = await start_admin_http(srv.admin.host, srv.admin.port, self.metrics, self.health)
        self._servers.append(admin)
        log.info("dbmesh listening: MySQL %s:%d, PostgreSQL %s:%d, admin http://%s:%d/metrics", srv.mysql.host,
                 srv.mysql.port, srv.postgresql.host, srv.postgresql.port, srv.admin.host, srv.admin.port)

    @property
    def mysql_port(self) -> int:
        sock = self._servers[0].sockets[0]
        return int(sock.getsockname()[1])

    async def shutdown(self) -> None:
        """Stop accepting, let running statements finish (up to the timeout), then close clients and pools."""
        self.draining = True
        if self.governor is not None:
            await self.governor.stop()
        for server in self._servers:
            server.close()
        deadline = time.monotonic() + self.config.server.limits.shutdown_timeout_seconds
        while time.monotonic() < deadline and any(c.session is not None and c.session.running
                                                  for c in self._clients):
            await asyncio.sleep(0.05)
        for client in list(self._clients):
            client.close()
        await asyncio.sleep(0)
        for pool in self._pools.values():
            await pool.close()
        for pg in self._pg_pools.values():
            await pg.close()
        for task in list(self._tasks):
            task.cancel()
        if self.slow_log is not None:
            self.slow_log.close()


async def serve(config: Config, ready: asyncio.Event | None = None,
                files: Mapping[str, str] | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully. `files`: the texts `config` was loaded from."""
    runtime = Runtime(config)
    runtime.config_files = dict(files) if files is not None else None
    await runtime.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down")
    await runtime.shutdown()
