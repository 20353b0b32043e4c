"""The running server: config snapshot, pools, listeners, admin HTTP, TLS, and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import secrets
import signal
import time
from collections.abc import Coroutine
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

if TYPE_CHECKING:
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

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
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


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    runtime = Runtime(config)
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
