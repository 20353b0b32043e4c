"""Statements of a MySQL session on a sharded logical database: plan, run on each data source, merge, answer.

Guarantees:
- The session keeps at most one connection per data source between statements ("sticky", reclaimable by the
  pool while no transaction or state ties it); a transaction joins each data source on first use (the
  client's own BEGIN text is replayed there) and COMMIT/ROLLBACK go to every data source it joined.
- A statement that writes on several data sources outside a transaction runs in an implicit one, so it applies
  everywhere or nowhere (as on one server), up to the commit itself.
- A single-unit plan's response is forwarded as the data source sent it; several units are merged.
- Replayable session variables (SET) apply on every connection the session uses; state that cannot be replayed
  across data sources is refused rather than half applied.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbmesh import errors
from dbmesh._wire.mysql_framing import (
    RESPONSE_PREPARE,
    RESPONSE_RESULT,
    PacketReader,
    build_packet,
    lenenc_int,
    read_lenenc,
)
from dbmesh.backend.mysql_connection import BackendQueryError, MySQLBackendConnection
from dbmesh.config import Database, DataSource
from dbmesh.kernel.execute import Lanes
from dbmesh.kernel.load_data import is_load_data
from dbmesh.kernel.plan import MergeSpec, Plan, RouteUnit
from dbmesh.protocol.mysql.binary import binary_row, decode_params, execute_payload, inline_params
from dbmesh.protocol.mysql.constants import ColumnType, MariaDBCapability, Status
from dbmesh.protocol.mysql.packets import (
    ColumnDefinition41,
    ErrPacket,
    OkPacket,
    eof_packet,
    lenenc_bytes,
    result_terminator,
)
from dbmesh.session import gate
from dbmesh.session.classify import StatementInfo, classify
from dbmesh.session.savepoints import SavepointStack, parse_savepoint
from dbmesh.sharding.conditions import Hint

if TYPE_CHECKING:
    from dbmesh.backend.mysql_connection import MySQLPool
    from dbmesh.kernel.merge.codec_mysql import MySQLTextCodec
    from dbmesh.session.mysql_session import MySQLSession
    from dbmesh.sharding.rule import ShardingRule

log = logging.getLogger("dbmesh.session")

IN_TRANS = int(Status.IN_TRANS)
AUTOCOMMIT = int(Status.AUTOCOMMIT)
_MORE_RESULTS = int(Status.MORE_RESULTS_EXISTS)

_TXN = re.compile(
    r"^\s*(?:(?P<begin>BEGIN(?:\s+WORK)?|START\s+TRANSACTION\b[^;]*)"
    r"|(?P<commit>COMMIT(?:\s+WORK)?)|(?P<rollback>ROLLBACK(?:\s+WORK)?)"
    r"|SET\s+(?:@@(?:SESSION\.)?|SESSION\s+|LOCAL\s+)?autocommit\s*=\s*(?P<autocommit>\S+?))\s*;?\s*$",
    re.I)
_SAVEPOINT = re.compile(r"^\s*(?:SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+(?:WORK\s+)?TO\b)", re.I)
_INFO_NUMBERS = re.compile(rb"(\w+): (\d+)")
_SHOW_TABLES = re.compile(r"^\s*SHOW\s+(FULL\s+)?TABLES\s*;?\s*$", re.I)
_ALL_COLUMNS = 2**31 - 1
_UNIT_STATEMENTS_PER_CONNECTION = 256
# Statements whose first word needs the general path (transaction control, savepoints, SET, admin SQL).
_NOT_FAST_HEADS = frozenset({"BEGI", "STAR", "COMM", "ROLL", "SAVE", "RELE", "SET ", "SET\t", "SET\n", "LOAD"})
_ROWS_BUFFERED = 256  # rows a cursor holds before it pauses its data source (when it may)
_FLUSH_BYTES = 1 << 16


@dataclass
class _Prepared:
    """A prepared statement dbmesh owns on a sharded database."""

    sql: str
    param_count: int
    columns: list[bytes]  # column definitions the client was told (visible, renamed)
    types: bytes | None = None  # parameter types from the last execution that sent them


class _Lease:
    """The session's connection to one data source, kept between statements; the pool may reclaim it while
    `reclaimable` (no transaction, no statement running)."""

    __slots__ = ("conn", "ds", "pool", "reclaimable")

    def __init__(self, ds: DataSource, pool: MySQLPool) -> None:
        self.ds = ds
        self.pool = pool
        self.conn: MySQLBackendConnection | None = None
        self.reclaimable = False

    def surrender(self) -> MySQLBackendConnection | None:
        conn = self.conn
        if conn is None or not self.reclaimable or conn.busy:
            return None
        self.conn = None
        self.reclaimable = False
        return conn


class MySQLShardCursor:
    """Sink for one unit's response: splits it into packets, keeps the header and buffers rows for the merger."""

    def __init__(self, conn: MySQLBackendConnection, index: int, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.loop = loop
        self.index = index
        self.reader = PacketReader(max_payload=1 << 30)
        self.ncols = -1
        self.columns: list[bytes] = []
        self.rows: list[bytes] = []
        self.ok: OkPacket | None = None  # the OK of a statement without a result set
        self.terminator: bytes = b""  # the EOF/OK ending a result set
        self.error: ErrPacket | None = None
        self.lost: str | None = None
        self.done = False
        self.exclusive = False
        self.abandoned = False
        self.paused = False
        self._eof_seen = False
        self._waiter: asyncio.Future[None] | None = None
        self._header: asyncio.Future[None] = loop.create_future()
        self._finished: asyncio.Future[None] = loop.create_future()

    # ResponseSink
    def forward(self, data: bytes) -> None:
        self.reader.feed(data)
        deprecate_eof = self.conn.deprecate_eof
        while (p := self.reader.read()) is not None:
            if self.ncols < 0:
                first = p[0]
                if first == 0x00:
                    self.ok = OkPacket.decode(p)
                    self._ready()
                elif first == 0xFF:
                    self.error = ErrPacket.decode(p)
                    self._ready()
                elif first == 0xFB:
                    self.error = ErrPacket(1235, "42000", "LOAD DATA LOCAL INFILE is not supported here")
                    self._ready()
                else:
                    self.ncols = _lenenc_value(p)
            elif len(self.columns) < self.ncols:
                self.columns.append(p)
                if len(self.columns) == self.ncols and deprecate_eof:
                    self._ready()
            elif not deprecate_eof and not self._eof_seen:
                self._eof_seen = True
                self._ready()
            elif p[0] == 0xFE and len(p) < 0xFFFFFF:
                self.terminator = p
            elif p[0] == 0xFF:
                self.error = ErrPacket.decode(p)
            elif not self.abandoned:
                self.rows.append(p)
        if len(self.rows) >= _ROWS_BUFFERED and self.exclusive and not self.paused and not self.done:
            transport = self.conn.transport
            if transport is not None:
                self.paused = True
                transport.pause_reading()
        self._wake()

    def response_done(self, conn: MySQLBackendConnection) -> None:
        self.done = True
        self._ready()
        self._wake()
        if not self._finished.done():
            self._finished.set_result(None)

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None:
        self.lost = detail
        self.response_done(conn)

    def _ready(self) -> None:
        if not self._header.done():
            self._header.set_result(None)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # Lanes' UnitCursor
    async def wait_done(self) -> None:
        await self._finished

    def set_exclusive(self, exclusive: bool) -> None:
        self.exclusive = exclusive

    def abandon(self) -> None:
        self.abandoned = True
        self.rows.clear()
        self._resume()

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            transport = self.conn.transport
            if transport is not None:
                transport.resume_reading()

    # merge's ShardResult
    async def header(self) -> None:
        await self._header

    async def fetch(self) -> list[bytes] | None:
        while not self.rows:
            if self.done:
                return None
            self._waiter = self.loop.create_future()
            self._resume()
            await self._waiter
            self._waiter = None
        rows, self.rows = self.rows, []
        self._resume()
        return rows


def _lenenc_value(p: bytes) -> int:
    return int(read_lenenc(p, 0)[0])


class ShardedMySQL:
    """The sharding side of one MySQL session (one per logical database the session uses)."""

    def __init__(self, session: MySQLSession, database: Database, rule: ShardingRule) -> None:
        from dbmesh.kernel.planner import Planner

        self.session = session
        self.runtime = session.runtime
        self.database = database
        self.rule = rule
        self.planner = Planner(rule, "mysql", self.runtime.parse_cache("mysql"))
        self.leases: dict[str, _Lease] = {}
        self.txn_open = False  # the client is inside a transaction (BEGIN, or autocommit=0 and a statement ran)
        self.autocommit = True
        self.begin_sql = "BEGIN"
        self.joined: list[str] = []  # data sources the open transaction has begun on, in join order
        self.hint: Hint | None = None
        self._writable: asyncio.Event | None = None
        self.prepared: dict[bytes, _Prepared] = {}
        self.current_sql = ""
        self.savepoints = SavepointStack()
        # A plan try_fast() made for the statement it then left to the general path (same text object).
        self._planned: tuple[str, Plan] | None = None
        self._next_stmt = 0

    # -- status ------------------------------------------------------------------------------------------------

    @property
    def status(self) -> int:
        return (AUTOCOMMIT if self.autocommit else 0) | (IN_TRANS if self.txn_open else 0)

    def client_paused(self, paused: bool) -> None:
        if self._writable is None:
            self._writable = asyncio.Event()
            self._writable.set()
        if paused:
            self._writable.clear()
        else:
            self._writable.set()

    # -- connections -------------------------------------------------------------------------------------------

    def _lease_of(self, ds_name: str) -> _Lease:
        lease = self.leases.get(ds_name)
        if lease is None:
            ds = self.database.data_sources.get(ds_name)
            if ds is None:
                raise errors.InternalError(f"route unit names unknown data source {ds_name!r}")
            lease = self.leases[ds_name] = _Lease(ds, self.runtime.mysql_pool(self.database, ds))
        return lease

    async def _prepare_conn(self, conn: MySQLBackendConnection, ds: DataSource) -> None:
        """Apply the session's variables and the data source's schema to `conn`."""
        vars_ = self.session.vars
        if conn.vars != vars_:
            if any(k not in vars_ or vars_[k] != v for k, v in conn.vars.items()):
                await conn.reset()
            todo = [(k, v) for k, v in vars_.items() if conn.vars.get(k) != v]
            if todo:
                await conn.execute("SET " + ", ".join(
                    f"NAMES {v}" if k == "NAMES" else f"SESSION {k}={v}" for k, v in todo))
                conn.vars.update(todo)
        if ds.database is not None and conn.schema != ds.database:
            await conn.init_db(ds.database)

    async def _sticky(self, ds_name: str) -> MySQLBackendConnection:
        """The session's connection to `ds_name`, leased if needed, state applied, transaction joined."""
        lease = self._lease_of(ds_name)
        lease.reclaimable = False
        conn = lease.conn
        if conn is not None and conn.broken:
            lease.conn = None
            lease.pool.unhold(lease)
            lease.pool.discard(conn)
            conn = None
            if self.txn_open and ds_name in self.joined:
                raise errors.BackendError(errors.BACKEND_LOST, data_source=ds_name,
                                          detail="the connection holding this session's transaction was lost")
        if conn is None:
            conn = await lease.pool.acquire(self.session.key, lease.ds.database)
            if self.session.closed:
                lease.pool.release(conn)
                raise errors.SessionError(errors.SESSION_SHUTTING_DOWN)
            lease.conn = conn
            lease.pool.hold(lease)
        try:
            await self._prepare_conn(conn, lease.ds)
            if self.txn_open and ds_name not in self.joined:
                await conn.execute(self.begin_sql)
                for sp in self.savepoints.entries:  # a late joiner gets the transaction's savepoints too
                    await conn.execute(f"SAVEPOINT {sp.name}")
                self.joined.append(ds_name)
        except (BackendQueryError, errors.DbMeshError):
            self._drop(lease)
            raise
        return conn

    def _drop(self, lease: _Lease) -> None:
        conn, lease.conn = lease.conn, None
        lease.reclaimable = False
        lease.pool.unhold(lease)
        if conn is not None:
            lease.pool.discard(conn)

    async def _lane_conn(self, ds_name: str, lane: int) -> MySQLBackendConnection:
        if lane == 0:
            return await self._sticky(ds_name)
        lease = self._lease_of(ds_name)
        conn = await lease.pool.acquire(self.session.key, lease.ds.database)
        try:
            await self._prepare_conn(conn, lease.ds)
        except (BackendQueryError, errors.DbMeshError):
            lease.pool.discard(conn)
            raise
        return conn

    def _lane_done(self, ds_name: str, lane: int, conn: MySQLBackendConnection) -> None:
        lease = self._lease_of(ds_name)
        if lane == 0:
            if conn.broken:
                self._drop(lease)
            return
        if conn.busy or conn.broken:
            lease.pool.discard(conn)
        else:
            lease.pool.release(conn)

    def idle(self) -> None:
        """Between statements: connections not tied by a transaction become reclaimable."""
        if self.txn_open or not self.runtime.multiplexing:
            return
        for lease in self.leases.values():
            if lease.conn is not None and not lease.conn.dirty:
                lease.reclaimable = True
                if lease.pool._waiters:
                    lease.pool.reclaim_for_waiters()

    def close(self) -> None:
        for lease in self.leases.values():
            conn, lease.conn = lease.conn, None
            lease.pool.unhold(lease)
            if conn is None:
                continue
            if conn.busy or conn.broken:
                lease.pool.discard(conn)
            elif self.txn_open or conn.dirty or conn.vars:
                self.runtime.spawn(lease.pool.reset_and_release(conn))
            else:
                lease.pool.release(conn)
        self.leases.clear()

    async def reset(self) -> None:
        """COM_RESET_CONNECTION / COM_CHANGE_USER: roll back and forget everything."""
        for lease in list(self.leases.values()):
            conn = lease.conn
            if conn is not None and (self.txn_open or conn.vars or conn.dirty):
                try:
                    await conn.reset()
                except (errors.DbMeshError, BackendQueryError, OSError):
                    self._drop(lease)
        self.txn_open = False
        self.autocommit = True
        self.joined.clear()
        self.hint = None

    # -- statements --------------------------------------------------------------------------------------------

    async def query(self, sql: str, info: StatementInfo) -> None:
        """Answer one COM_QUERY completely (the session's queue waits until this returns)."""
        try:
            await self._query(sql, info)
        except errors.DbMeshError as exc:
            self._send_error(exc)
        except BackendQueryError as exc:
            self.session.frontend.send_err_packet(exc.err.code, exc.err.sqlstate, exc.err.message, 1)
        except OSError as exc:
            self._send_error(errors.BackendError(errors.BACKEND_LOST, data_source="?", detail=str(exc)))
        except Exception as exc:  # a bug must still answer the client, or it waits forever
            log.exception("[BUG] sharded statement failed: %s", sql)
            self._send_error(errors.InternalError(f"{type(exc).__name__}: {exc}"))

    def _send_error(self, exc: errors.DbMeshError) -> None:
        self.runtime.metrics.error(exc.entry.code, "mysql")
        self.session.frontend.send_error(exc, 1)

    async def _query(self, sql: str, info: StatementInfo) -> None:
        self.current_sql = sql
        m = _TXN.match(sql)
        if m is not None:
            await self._transaction_control(m)
            return
        if _SAVEPOINT.match(sql):
            await self._broadcast_savepoint(sql)
            return
        admin = _admin_parse(sql)
        if admin is not None:
            await self._admin(admin)
            return
        show = _SHOW_TABLES.match(sql)
        if show is not None:
            await self._show_tables(sql, bool(show.group(1)))
            return
        if info.type == "load" and is_load_data(sql):
            from dbmesh.session.mysql_load import load_data

            await load_data(self, sql)
            return
        if info.pin:
            raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct=info.pin,
                                      detail="it leaves state on one data source connection, which a sharded "
                                             "logical database cannot keep consistent across data sources")
        if info.set_vars:
            # Replayable variables: applied on every connection the session uses from now on.
            for k, v in info.set_vars:
                self.session.vars.pop(k, None)
                self.session.vars[k] = v
            self._send_ok(0, 0, b"")
            return
        planned, self._planned = self._planned, None
        plan = planned[1] if planned is not None and planned[0] is sql else self.planner.plan(sql, hint=self.hint)
        if not self.autocommit and not self.txn_open and plan.kind != "other":
            self._open_transaction("BEGIN")
        await self.execute(plan)

    def try_fast(self, sql: str, info: StatementInfo, done: Callable[[bool], None]) -> bool:
        """Start a statement without a task when it is one unit on a connection that is ready for it (the common
        point statement). False: nothing was sent; the caller takes the general path."""
        if info.pin or info.set_vars or (not self.autocommit and not self.txn_open) or self.runtime.traffic is not None:
            return False
        head = sql.lstrip()[:4].upper()
        if head in _NOT_FAST_HEADS or head[:3] in _ADMIN_HEADS:
            return False
        try:
            plan = self.planner.plan(sql, hint=self.hint)
        except errors.DbMeshError:
            return False  # the general path plans again and reports the error
        units = plan.units
        if len(units) != 1 or plan.merge is not None or plan.generated_keys:
            self._planned = (sql, plan)  # the general path runs it without planning again
            return False
        unit = units[0]
        lease = self.leases.get(unit.data_source)
        if lease is None:
            self._planned = (sql, plan)
            return False
        conn = lease.conn
        if conn is None or conn.broken or conn.busy or conn.vars != self.session.vars or \
                conn.schema != lease.ds.database or (self.txn_open and unit.data_source not in self.joined):
            self._planned = (sql, plan)
            return False
        lease.reclaimable = False
        self.current_sql = sql
        conn.start_command(build_packet(b"\x03" + unit.sql.encode(), 0), RESPONSE_RESULT,
                           _FastRelay(self, lease, done, unit))
        return True

    def try_fast_execute(self, payload: bytes, done: Callable[[bool], None]) -> bool:
        """try_fast() for COM_STMT_EXECUTE: a prepared statement whose plan is one unit with the client's own
        parameters, on a connection that is ready and already has that unit prepared, is executed there without a
        task. False: nothing was sent and nothing changed; the caller takes the general path (execute_prepared)."""
        if (not self.autocommit and not self.txn_open) or self.runtime.traffic is not None:
            return False
        st = self.prepared.get(payload[1:5])
        if st is None or st.types == b"long data" or not st.param_count:
            return False
        try:
            params, types = decode_params(payload[1:], st.param_count, st.types)
            plan = self.planner.plan(st.sql, params, hint=self.hint)
        except errors.DbMeshError:
            return False  # the general path decodes and plans again and reports the error
        units = plan.units
        if len(units) != 1 or plan.merge is not None or plan.generated_keys or units[0].params != tuple(params):
            return False
        unit = units[0]
        lease = self.leases.get(unit.data_source)
        if lease is None:
            return False
        conn = lease.conn
        if conn is None or conn.broken or conn.busy or conn.vars != self.session.vars or \
                conn.schema != lease.ds.database or (self.txn_open and unit.data_source not in self.joined):
            return False
        statement_id = conn.unit_statements.get(unit.sql)
        if statement_id is None:
            return False  # the general path prepares it on this connection first
        st.types = types
        lease.reclaimable = False
        self.current_sql = st.sql
        conn.start_command(build_packet(execute_payload(payload, st.param_count, types, statement_id), 0),
                           RESPONSE_RESULT, _FastRelay(self, lease, done, unit))
        return True

    def _open_transaction(self, begin_sql: str) -> None:
        self.txn_open = True
        self.begin_sql = begin_sql
        self.joined = []
        self.savepoints.clear()

    async def _end_transaction(self, verb: str) -> list[BaseException | None]:
        joined, self.joined = self.joined, []
        self.savepoints.clear()
        self.txn_open = False
        results = await asyncio.gather(*(self._end_on(ds, verb) for ds in joined), return_exceptions=True)
        return list(results)

    async def _end_on(self, ds_name: str, verb: str) -> None:
        lease = self._lease_of(ds_name)
        conn = lease.conn
        if conn is None or conn.broken:
            raise errors.BackendError(errors.BACKEND_LOST, data_source=ds_name,
                                      detail="the connection holding this session's transaction was lost")
        await conn.execute(verb)

    async def _transaction_control(self, m: re.Match[str]) -> None:
        if m.group("begin"):
            if self.txn_open:  # BEGIN inside a transaction commits it first, as MySQL does
                await self._finish_transaction("COMMIT", reply=False)
            self._open_transaction(m.group("begin"))
            self._send_ok(0, 0, b"")
        elif m.group("commit"):
            await self._finish_transaction("COMMIT")
        elif m.group("rollback"):
            await self._finish_transaction("ROLLBACK")
        else:
            value = m.group("autocommit").strip("'\"").lower()
            if value in ("0", "off", "false"):
                self.autocommit = False
            elif value in ("1", "on", "true"):
                if self.txn_open:  # switching autocommit on commits the open transaction
                    await self._finish_transaction("COMMIT", reply=False)
                self.autocommit = True
            else:
                raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="SET autocommit",
                                          detail=f"value {value!r} is not 0/1/ON/OFF")
            self._send_ok(0, 0, b"")

    async def _finish_transaction(self, verb: str, reply: bool = True) -> None:
        results = await self._end_transaction(verb)
        failures = [r for r in results if r is not None]
        if failures:
            first = failures[0]
            if verb == "COMMIT" and len(failures) < len(results):
                log.error("session %s: COMMIT failed on some data sources after others committed: %s",
                          self.session.frontend.conn_id, first)
            if isinstance(first, BackendQueryError):
                raise first
            if isinstance(first, errors.DbMeshError):
                raise first
            raise errors.BackendError(errors.BACKEND_LOST, data_source="?", detail=str(first))
        if reply:
            self._send_ok(0, 0, b"")

    async def _broadcast_savepoint(self, sql: str) -> None:
        if not self.txn_open:
            # Outside a transaction MySQL accepts SAVEPOINT as a no-op; ROLLBACK TO fails: let one server answer.
            await self.execute(Plan("other", (RouteUnit(self.rule.default_data_source, sql),)))
            return
        sp = parse_savepoint(sql)
        if sp is None:
            raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="savepoint statement",
                                      detail="write SAVEPOINT name, RELEASE SAVEPOINT name or ROLLBACK TO name")
        if sp.action != "save" and self.savepoints.find(sp.key) is None:
            # The server's own answer (ER_SP_DOES_NOT_EXIST), whichever data sources the transaction touched.
            self.session.frontend.send_err_packet(1305, "42000", f"SAVEPOINT {sp.name.strip('`')} does not exist", 1)
            return
        results = await asyncio.gather(*(self._end_on(ds, sql) for ds in self.joined), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        self.savepoints.apply(sp)
        self._send_ok(0, 0, b"")

    async def _show_tables(self, sql: str, full: bool) -> None:
        """SHOW [FULL] TABLES as one server holding the logic tables answers it: every data source's tables, actual
        tables shown once under their logic name, sorted, in a column named after the logical database."""
        logic_of = {node.table: rule.logic_table for rule in self.rule.tables.values() for node in rule.data_nodes}
        plan = Plan("other", tuple(RouteUnit(ds, sql) for ds in self.rule.data_sources))
        lanes = self._lanes(plan)
        try:
            cursors = [await lanes.cursor(i) for i in range(len(plan.units))]
            rows: dict[str, list[bytes | None]] = {}
            for c in cursors:
                await c.wait_done()
            self._raise_first_error(plan, cursors)
            head = cursors[0]
            from dbmesh.kernel.merge import mysql_text_codec

            extended = bool(self.session.ext_capabilities & MariaDBCapability.EXTENDED_METADATA)
            codec = mysql_text_codec([ColumnDefinition41.decode(p, extended) for p in head.columns])
            for c in cursors:
                for payload in c.rows:
                    fields = codec.split(payload)
                    name = (fields[0] or b"").decode()
                    logic = logic_of.get(name, name)
                    rows.setdefault(logic, [logic.encode(), *fields[1:]])
        finally:
            await lanes.finish()
        columns = [_rename_field(head.columns[0], 4, f"Tables_in_{self.database.name}"), *head.columns[1:]]
        out = [lenenc_int(len(columns)), *columns]
        if not self.session.deprecate_eof:
            out.append(eof_packet(self.status))
        out += [codec.join(rows[name]) for name in sorted(rows)]
        out.append(result_terminator(self.status, self.session.deprecate_eof))
        self.session.frontend.write(b"".join(build_packet(p, (i + 1) & 0xFF) for i, p in enumerate(out)))

    async def _admin(self, stmt: Any) -> None:
        from dbmesh.admin import AdminResult, apply_hint_change, execute_admin

        result = execute_admin(stmt, config=self.runtime.config, database=self.database, dialect="mysql",
                               hint=self.hint)
        if isinstance(result, AdminResult):
            from dbmesh.session.admin_reply import mysql_reply

            self.session.frontend.write(mysql_reply(result, self.session.collation, self.status,
                                                    self.session.deprecate_eof, self.session.extended_metadata))
        else:
            self.hint = apply_hint_change(self.hint, result)
            self._send_ok(0, 0, b"")

    # -- server-side prepared statements -----------------------------------------------------------------------
    #
    # dbmesh owns the statement: its id, its parameter count and its result columns (learnt once from a data source
    # preparing one route unit). Each execution is planned with the bound values and run as text statements with the
    # values inlined; rows come back in the text protocol and are re-encoded as binary rows, as the server would.

    async def prepare(self, sql: str) -> None:
        try:
            await self._prepare(sql)
        except Exception as exc:  # a bug must still answer the client
            log.exception("[BUG] sharded prepare failed: %s", sql)
            self._send_error(errors.InternalError(f"{type(exc).__name__}: {exc}"))

    async def _prepare(self, sql: str) -> None:
        try:
            shape = self.runtime.parse_cache("mysql").get_prepared(sql, "mysql")
            n = shape.param_count
            plan = self._dummy_plan(sql, n)
            unit = plan.units[0]
            conn = await self._sticky(unit.data_source)
            raw = await conn.run(b"\x16" + unit.sql.encode(), RESPONSE_PREPARE)
        except errors.DbMeshError as exc:
            self._send_error(exc)
            return
        except BackendQueryError as exc:
            self.session.frontend.send_err_packet(exc.err.code, exc.err.sqlstate, exc.err.message, 1)
            return
        reader = PacketReader(max_payload=1 << 30)
        reader.feed(raw)
        packets = []
        while (p := reader.read()) is not None:
            packets.append(p)
        head = packets[0]
        backend_id = head[1:5]
        ncols, nparams = struct.unpack_from("<HH", head, 5)
        conn.send_no_reply(build_packet(b"\x19" + backend_id, 0))
        eof = 0 if conn.deprecate_eof else 1
        param_defs = packets[1:1 + nparams]
        col_start = 1 + nparams + (eof if nparams else 0)
        columns = packets[col_start:col_start + ncols]
        visible = plan.merge.visible if plan.merge is not None else ncols
        tables = {a: lg for u in plan.units for a, lg in u.tables}
        columns = [_rename_column(c, tables, self.database.name) for c in columns[:visible]]
        if len(param_defs) != n:
            param_def = ColumnDefinition41("?", ColumnType.VAR_STRING, 63, 0)
            param_defs = [param_def.encode(self.session.extended_metadata)] * n
        self._next_stmt += 1
        stmt_id = self._next_stmt
        self.prepared[stmt_id.to_bytes(4, "little")] = _Prepared(sql, n, columns)
        out = [b"\x00" + stmt_id.to_bytes(4, "little") + struct.pack("<HH", len(columns), n) + b"\x00\x00\x00"]
        deprecate_eof = self.session.deprecate_eof
        if n:
            out += param_defs
            if not deprecate_eof:
                out.append(eof_packet(self.status))
        if columns:
            out += columns
            if not deprecate_eof:
                out.append(eof_packet(self.status))
        self.session.frontend.write(b"".join(build_packet(p, i + 1) for i, p in enumerate(out)))

    def _dummy_plan(self, sql: str, n: int) -> Plan:
        """A plan for learning a statement's shape: any values that route will do."""
        first: errors.DbMeshError | None = None
        for dummy in (0, "0", datetime.datetime(2000, 1, 1)):
            try:
                return self.planner.plan(sql, (dummy,) * n, hint=self.hint)
            except errors.DbMeshError as exc:
                first = first or exc
        assert first is not None
        raise first

    async def execute_prepared(self, payload: bytes) -> None:
        st = self.prepared.get(payload[1:5])
        if st is None:
            self._send_error(errors.ProtocolError(errors.PROTOCOL_UNKNOWN_STATEMENT,
                                                  stmt_id=int.from_bytes(payload[1:5], "little"),
                                                  command="mysqld_stmt_execute"))
            return
        try:
            if st.types == b"long data":
                st.types = None
                raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="COM_STMT_SEND_LONG_DATA",
                                          detail="on a sharded logical database; bind the value directly")
            params, st.types = decode_params(payload[1:], st.param_count, st.types)
            self.current_sql = st.sql
            if not params:
                info = classify_cached(st.sql)
                if _TXN.match(st.sql) or _SAVEPOINT.match(st.sql) or info.set_vars or info.pin:
                    # Session and transaction control answer OK packets, the same in both protocols.
                    await self._query(st.sql, info)
                    return
            plan = self.planner.plan(st.sql, params, hint=self.hint)
            if not self.autocommit and not self.txn_open and plan.kind != "other":
                self._open_transaction("BEGIN")
            units = plan.units
            if len(units) == 1 and plan.merge is None and not plan.generated_keys and \
                    units[0].params == tuple(params):
                # One unit with the client's own parameters: run it as a prepared statement on the data source
                # and forward its binary rows as they come (only column metadata is renamed).
                await self._single_prepared(units[0], payload, st)
                return
            escapes = "NO_BACKSLASH_ESCAPES" not in self.session.vars.get("sql_mode", "").upper()
            units = tuple(RouteUnit(u.data_source, inline_params(u.sql, u.params, backslash_escapes=escapes),
                                    (), u.tables) for u in plan.units)
            plan = Plan(plan.kind, units, plan.merge, plan.generated_keys, plan.tables)
            if plan.kind == "query" or st.columns:
                await self._merged_query(plan, binary_columns=st.columns)
            else:
                await self.execute(plan)
        except errors.DbMeshError as exc:
            self._send_error(exc)
        except BackendQueryError as exc:
            self.session.frontend.send_err_packet(exc.err.code, exc.err.sqlstate, exc.err.message, 1)
        except Exception as exc:  # a bug must still answer the client
            log.exception("[BUG] sharded prepared statement failed: %s", st.sql)
            self._send_error(errors.InternalError(f"{type(exc).__name__}: {exc}"))

    async def _single_prepared(self, unit: RouteUnit, payload: bytes, st: _Prepared) -> None:
        conn = await self._sticky(unit.data_source)
        statement_id = conn.unit_statements.get(unit.sql)
        if statement_id is None:
            raw = await conn.run(b"\x16" + unit.sql.encode(), RESPONSE_PREPARE)
            reader = PacketReader(max_payload=1 << 30)
            reader.feed(raw)
            head = reader.read()
            assert head is not None
            statement_id = head[1:5]
            statements = conn.unit_statements
            if len(statements) >= _UNIT_STATEMENTS_PER_CONNECTION:
                # Bounded per connection: close the oldest (COM_STMT_CLOSE has no answer).
                oldest = next(iter(statements))
                conn.send_no_reply(build_packet(b"\x19" + statements.pop(oldest), 0))
            statements[unit.sql] = statement_id
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sink = _Relay(self, done, unit)
        conn.start_command(build_packet(execute_payload(payload, st.param_count, st.types, statement_id), 0),
                           RESPONSE_RESULT, sink)
        await done
        if sink.lost is not None:
            self._drop(self._lease_of(unit.data_source))
            raise errors.BackendError(errors.BACKEND_LOST, data_source=unit.data_source, detail=sink.lost)

    def close_prepared(self, stmt_id: bytes) -> None:
        self.prepared.pop(stmt_id, None)

    # -- execution ---------------------------------------------------------------------------------------------

    async def execute(self, plan: Plan) -> None:
        if self.runtime.traffic is None:
            await self._execute(plan)
            return
        with gate.breakers(self.runtime, self.database.name, plan):
            await self._execute(plan)

    async def _execute(self, plan: Plan) -> None:
        units = plan.units
        if len(units) == 1 and plan.merge is None and not plan.generated_keys:
            await self._single(units[0])
            return
        if plan.kind == "query" and plan.merge is not None:
            await self._merged_query(plan)
            return
        if plan.kind == "other":
            # Maintenance and other statements sent to several data sources: their result sets (ANALYZE TABLE,
            # CHECK TABLE ...) are concatenated; statements without one answer one summed OK.
            await self._merged_query(plan, ok_fallback=True)
            return
        await self._multi_update(plan)

    async def _single(self, unit: RouteUnit) -> None:
        conn = await self._sticky(unit.data_source)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sink = _Relay(self, done, unit)
        conn.start_command(build_packet(b"\x03" + unit.sql.encode(), 0), RESPONSE_RESULT, sink)
        await done
        if sink.lost is not None:
            self._drop(self._lease_of(unit.data_source))
            raise errors.BackendError(errors.BACKEND_LOST, data_source=unit.data_source, detail=sink.lost)

    def _lanes(self, plan: Plan) -> Lanes[MySQLBackendConnection, MySQLShardCursor]:
        budget = 1 if self.txn_open else self.rule.max_connections_size_per_query

        # (Looked up once: asyncio.get_running_loop() makes a getpid() system call each time.)
        loop = asyncio.get_running_loop()

        def start(conn: MySQLBackendConnection, unit: RouteUnit, i: int) -> MySQLShardCursor:
            cursor = MySQLShardCursor(conn, i, loop)
            conn.start_command(build_packet(b"\x03" + unit.sql.encode(), 0), RESPONSE_RESULT, cursor)
            return cursor

        def start_many(conn: MySQLBackendConnection, units: list[tuple[RouteUnit, int]]) -> list[MySQLShardCursor]:
            cursors = [MySQLShardCursor(conn, i, loop) for _, i in units]
            conn.start_pipeline([(build_packet(b"\x03" + unit.sql.encode(), 0), RESPONSE_RESULT, cursor)
                                 for (unit, _), cursor in zip(units, cursors, strict=True)])
            return cursors

        # A query outside a transaction, where each unit is a transaction of its own: the units sharing a connection
        # go out together and come back in order.
        pipelined = start_many if plan.kind == "query" and not self.txn_open else None
        return Lanes(plan.units, budget, self._lane_conn, start, self._lane_done, pipelined, self._ready_conn)

    def _ready_conn(self, ds_name: str, lane: int) -> MySQLBackendConnection | None:
        """The session's own connection to `ds_name` when it can take a command now, as _sticky() would leave it
        (state applied, transaction joined); None when getting it needs a wait."""
        if lane != 0:
            return None
        lease = self.leases.get(ds_name)
        if lease is None:
            return None
        conn = lease.conn
        if conn is None or conn.broken or conn.busy or conn.vars != self.session.vars or \
                conn.schema != lease.ds.database or (self.txn_open and ds_name not in self.joined):
            return None
        lease.reclaimable = False
        return conn

    async def _merged_query(self, plan: Plan, binary_columns: list[bytes] | None = None,
                            ok_fallback: bool = False) -> None:
        from dbmesh.kernel.merge import merge
        from dbmesh.kernel.merge.buffered import all_buffered, merge_buffered, mergeable_buffered

        spec = plan.merge
        if spec is None:
            spec = MergeSpec(visible=_ALL_COLUMNS)
        lanes = self._lanes(plan)
        try:
            cursors = [await lanes.cursor(i) for i in range(len(plan.units))]
            for c in cursors:
                await c.header()
            self._raise_first_error(plan, cursors)
            head = next((c for c in cursors if c.ncols >= 0), None)
            if head is None:
                if not ok_fallback:
                    raise errors.InternalError("a sharded SELECT returned no result set")
                for c in cursors:
                    await c.wait_done()
                self._raise_first_error(plan, cursors)
                self._reply_ok_sum(plan, cursors)
                return
            extended = bool(self.session.ext_capabilities & MariaDBCapability.EXTENDED_METADATA)
            ncols = len(head.columns)
            # The planner cannot count `*` columns: "all" is a huge number, and derived columns after a `*` are
            # counted from the end (a negative number).
            visible = min(spec.visible, ncols) if spec.visible >= 0 else ncols + spec.visible
            names = _expression_names(self.current_sql, visible)
            header_key = (tuple(head.columns), tuple(u.tables for u in plan.units), self.database.name, visible,
                          tuple(names), extended)
            merged_header = _MERGED_HEADERS.get(header_key)
            if merged_header is None:
                merged_header = _merged_header(head.columns, plan, self.database.name, visible, names, extended)
                if len(_MERGED_HEADERS) >= 1024:
                    _MERGED_HEADERS.clear()
                _MERGED_HEADERS[header_key] = merged_header
            header_bytes, codec, visible_defs = merged_header
            out = [header_bytes]
            seq = 2 + visible
            deprecate_eof = self.session.deprecate_eof
            if not deprecate_eof:
                out.append(build_packet(eof_packet(self.status), seq & 0xFF))
                seq += 1
            write = self.session.frontend.write
            size = 0
            if mergeable_buffered(spec) and all_buffered(cursors, _ROWS_BUFFERED):
                # Every answer is in and small: merge in one pass (kernel.merge.buffered gives merge()'s rows).
                merged: list[bytes] = []
                merge_buffered(spec, [c.rows for c in cursors], codec, merged)
                for row in merged:
                    if binary_columns is not None:
                        row = binary_row(codec.split(row), visible_defs)
                    out.append(build_packet(row, seq & 0xFF))
                    seq += 1
            else:
                async for row in merge(spec, cursors, codec, max_rows=self.rule.merge_max_rows_in_memory,
                                       dialect="mysql"):
                    if binary_columns is not None:
                        row = binary_row(codec.split(row), visible_defs)
                    frame = build_packet(row, seq & 0xFF)
                    seq += 1
                    out.append(frame)
                    size += len(frame)
                    if size >= _FLUSH_BYTES:
                        write(b"".join(out))
                        out.clear()
                        size = 0
                        if self._writable is not None and not self._writable.is_set():
                            await self._writable.wait()
            # Errors that arrived after the header (a shard failing mid-result) must not end as a short result.
            for c in cursors:
                await c.wait_done()
            self._raise_first_error(plan, cursors, after_rows=bool(out) or seq > 2)
            warnings = sum(_terminator_warnings(c.terminator, c.conn.deprecate_eof) for c in cursors)
            out.append(build_packet(result_terminator(self.status, deprecate_eof, min(warnings, 0xFFFF)),
                                    seq & 0xFF))
            write(b"".join(out))
        finally:
            await lanes.finish()

    def _raise_first_error(self, plan: Plan, cursors: Sequence[MySQLShardCursor], after_rows: bool = False) -> None:
        for c in cursors:
            if c.lost is not None:
                raise errors.BackendError(errors.BACKEND_LOST, data_source=plan.units[c.index].data_source,
                                          detail=c.lost)
            if c.error is not None:
                raise BackendQueryError(c.error)

    async def _multi_update(self, plan: Plan) -> None:
        """DML/DDL/other on several units: every unit runs; one OK sums them, as one server would report."""
        implicit = plan.kind == "dml" and not self.txn_open and len({u.data_source for u in plan.units}) > 1
        if implicit:
            self._open_transaction("BEGIN")
        lanes = self._lanes(plan)
        error: BaseException | None = None
        cursors: list[MySQLShardCursor] = []
        try:
            for i in range(len(plan.units)):
                try:
                    cursors.append(await lanes.cursor(i))
                except (errors.DbMeshError, BackendQueryError, OSError) as exc:
                    error = error or exc
            for c in cursors:
                await c.wait_done()
        finally:
            await lanes.finish()
        if error is None:
            for c in cursors:
                if c.lost is not None:
                    error = errors.BackendError(errors.BACKEND_LOST, data_source=plan.units[c.index].data_source,
                                                detail=c.lost)
                    break
                if c.error is not None:
                    error = BackendQueryError(c.error)
                    break
        if implicit:
            await self._finish_transaction("ROLLBACK" if error is not None else "COMMIT", reply=False)
        if error is not None:
            raise error
        self._reply_ok_sum(plan, cursors)

    def _reply_ok_sum(self, plan: Plan, cursors: Sequence[MySQLShardCursor]) -> None:
        """One OK for several units: counts summed, the insert id a single server would report."""
        affected = 0
        last_id = 0
        warnings = 0
        info_sums: dict[bytes, int] = {}
        info_format: bytes | None = None
        for c in cursors:
            ok = c.ok
            if ok is None:
                continue
            affected += ok.affected_rows
            warnings += ok.warnings
            if ok.last_insert_id and not last_id:
                last_id = ok.last_insert_id
            if ok.info:
                info_format = info_format or ok.info
                for name, value in _INFO_NUMBERS.findall(ok.info):
                    info_sums[name] = info_sums.get(name, 0) + int(value)
        if plan.generated_keys and isinstance(plan.generated_keys[0], int):
            last_id = plan.generated_keys[0]
        info = b""
        if info_format is not None:
            info = _INFO_NUMBERS.sub(lambda mm: mm.group(1) + b": " + str(info_sums.get(mm.group(1), 0)).encode(),
                                     info_format)
        self._send_ok(affected, last_id, info, warnings)

    def _send_ok(self, affected: int, last_id: int, info: bytes, warnings: int = 0) -> None:
        self.session.frontend.send_payload(
            OkPacket(affected, last_id, self.status, min(warnings, 0xFFFF), info).encode(), 1)


def _terminator_warnings(p: bytes, deprecate_eof: bool) -> int:
    if not p:
        return 0
    if deprecate_eof:
        return OkPacket.decode(p).warnings
    return int(struct.unpack_from("<H", p, 1)[0]) if len(p) >= 3 else 0


_MergedHeader = tuple[bytes, "MySQLTextCodec", list[ColumnDefinition41]]
# (shard column definitions, unit tables, schema, visible, names, extended metadata) -> what a merged result
# sends and decodes with: the same statement shape gets the same shard header every time.
_MERGED_HEADERS: dict[tuple[Any, ...], _MergedHeader] = {}


def _merged_header(columns: list[bytes], plan: Plan, schema: str, visible: int, names: list[str | None],
                   extended: bool) -> _MergedHeader:
    """The column count and visible column definitions of a merged result (renamed as one server holding the logic
    tables names them), the codec of the shard rows and the visible columns' definitions."""
    from dbmesh.kernel.merge import mysql_text_codec

    column_defs = [ColumnDefinition41.decode(p, extended) for p in columns]
    tables = {a: lg for u in plan.units for a, lg in u.tables}
    frames = [build_packet(lenenc_int(visible), 1)]
    for i, p in enumerate(columns[:visible]):
        frames.append(build_packet(_rename_column(p, tables, schema, names[i] if i < len(names) else None),
                                   (2 + i) & 0xFF))
    return b"".join(frames), mysql_text_codec(column_defs), column_defs[:visible]


def _expression_names(sql: str, visible: int) -> list[str | None]:
    """MySQL names an unaliased expression column by the expression's text as the client wrote it; a merged plan's
    shard SQL was regenerated (function names upper-cased, spacing normalised), so take the names from the
    client's own text."""
    if not sql:
        return []
    m = _PLAIN_SELECT_LIST.match(sql)
    if m is None:
        return select_item_names(sql)[:visible]
    # Without quotes, brackets or comments the select list ends at the first FROM: the names depend on this
    # prefix alone, so statements differing only after it (their WHERE values) share one entry.
    names = _NAMES_BY_PREFIX.get(m.group(0))
    if names is None:
        names = select_item_names(sql)
        if len(_NAMES_BY_PREFIX) >= 4096:
            _NAMES_BY_PREFIX.clear()
        _NAMES_BY_PREFIX[m.group(0)] = names
    return names[:visible]


_PLAIN_SELECT_LIST = re.compile(r"\s*SELECT\s[^'\"`()/#;\\-]*?\sFROM\s", re.I)
_NAMES_BY_PREFIX: dict[str, list[str | None]] = {}


def select_item_names(sql: str) -> list[str | None]:
    """For each top-level select item: its text when it is an unaliased expression (not a column or `*`), else
    None. Empty when the statement is not a plain SELECT."""
    import sqlglot
    from sqlglot import exp

    texts = _top_level_items(sql)
    key = "\x00".join(texts)
    cached = _NAMES.get(key)
    if cached is not None:
        return cached
    try:
        # The select list alone decides the names: parse just it (cached by its text, so a statement shape
        # repeated with other WHERE values costs one scan).
        tree = sqlglot.parse_one("SELECT " + ", ".join(texts), read="mysql") if texts else None
    except Exception:  # names are cosmetic here; the planner already accepted the statement
        return []
    if not isinstance(tree, exp.Select) or len(texts) != len(tree.expressions):
        return []
    out: list[str | None] = []
    for node, text in zip(tree.expressions, texts, strict=True):
        plain = isinstance(node, (exp.Alias, exp.Column, exp.Star))
        out.append(None if plain else text)
    if len(_NAMES) > 4096:
        _NAMES.clear()
    _NAMES[key] = out
    return out


_NAMES: dict[str, list[str | None]] = {}


_SELECT_HEAD = re.compile(r"^\s*(?:/\*.*?\*/\s*)*SELECT\s+(?:(?:ALL|DISTINCT|DISTINCTROW|HIGH_PRIORITY|STRAIGHT_JOIN|"
                          r"SQL_SMALL_RESULT|SQL_BIG_RESULT|SQL_BUFFER_RESULT|SQL_NO_CACHE|SQL_CACHE|"
                          r"SQL_CALC_FOUND_ROWS)\s+)*", re.I | re.S)
_ITEMS_END = re.compile(r"(?:FROM|INTO|WHERE|GROUP|HAVING|ORDER|LIMIT|FOR|LOCK|UNION|WINDOW)\b", re.I)


def _top_level_items(sql: str) -> list[str]:
    m = _SELECT_HEAD.match(sql)
    if m is None:
        return []
    items: list[str] = []
    depth = 0
    i = start = m.end()
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" and ch != "`" else 1
            i = j + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch == ",":
            items.append(sql[start:i].strip())
            start = i + 1
        elif depth == 0 and ch == ";":
            break
        elif depth == 0 and (ch.isspace() or ch == ")") and _ITEMS_END.match(sql, i + 1):
            items.append(sql[start:i].strip())
            return items
        i += 1
    items.append(sql[start:i].strip())
    return items


def _rename_column(payload: bytes, tables: dict[str, str], schema: str, name: str | None = None) -> bytes:
    """A column definition as one server holding the logic tables would send it: actual table names in `table`
    and `org_table` become logic names, the schema becomes the logical database, and (for merged results) an
    expression column gets the client's own spelling as its name."""
    if not tables and name is None:
        return payload
    col = ColumnDefinition41.decode(payload)  # only the names are read: extended metadata does not matter
    table = tables.get(col.table, col.table)
    org_table = tables.get(col.org_table, col.org_table)
    if table == col.table and org_table == col.org_table and (name is None or name == col.name) and (
            not col.schema or col.schema == schema):
        return payload
    changes = {2: table, 3: org_table}
    if name is not None:
        changes[4] = name
    if col.schema:
        changes[1] = schema
    return _replace_names(payload, changes)


def _rename_field(payload: bytes, index: int, value: str) -> bytes:
    """A column definition with one of its six leading strings (catalog, schema, table, org_table, name,
    org_name) replaced."""
    return _replace_names(payload, {index: value})


def _replace_names(payload: bytes, changes: dict[int, str]) -> bytes:
    """Replace some of a column definition's six leading strings by index; the rest is kept byte for byte."""
    pos = 0
    fields = []
    for _ in range(6):
        n, start = read_lenenc(payload, pos)
        fields.append(payload[start:start + n])
        pos = start + n
    for index, value in changes.items():
        fields[index] = value.encode()
    return b"".join(lenenc_bytes(f) for f in fields) + payload[pos:]


def _forwarder(owner: ShardedMySQL, unit: RouteUnit) -> Callable[[bytes], None]:
    write = owner.session.frontend.write
    if not unit.tables:
        return write
    return _HeaderRenamer(write, unit.tables, owner.database.name, owner.session.deprecate_eof)


class _HeaderRenamer:
    """Forwards one response, renaming actual tables to logic ones in its column definitions, as one server
    holding the logic tables would name them; everything after the column definitions passes untouched.

    The same statement shape gets the same column definitions every time: a response that begins with a header
    already renamed for the same tables is answered from the memo by one prefix comparison. The renamed bytes are
    a function of the raw header bytes and the key alone, so a prefix match gives exactly what parsing would."""

    __slots__ = ("buf", "deprecate_eof", "done", "key", "schema", "tables", "write")

    def __init__(self, write: Callable[[bytes], None], tables: tuple[tuple[str, str], ...], schema: str,
                 deprecate_eof: bool) -> None:
        self.write = write
        self.tables = tables
        self.schema = schema
        self.deprecate_eof = deprecate_eof
        self.key = (tables, schema, deprecate_eof)
        self.buf = b""
        self.done = False

    def __call__(self, data: bytes) -> None:
        if self.done:
            self.write(data)
            return
        if not self.buf:
            for raw, renamed in _HEADER_MEMO.get(self.key, ()):
                if data.startswith(raw):
                    self.done = True
                    self.write(renamed + data[len(raw):] if len(data) > len(raw) else renamed)
                    return
        buf = self.buf + data if self.buf else data
        pos = 0
        packets: list[tuple[int, bytes]] = []
        need = 0
        while True:
            if len(buf) - pos < 4:
                self.buf = buf
                return
            n = int.from_bytes(buf[pos:pos + 3], "little")
            if n == 0xFFFFFF or len(buf) - pos - 4 < n:
                if n == 0xFFFFFF:  # a header this large is not a column definition list: pass it on as it is
                    self.done = True
                    self.write(buf)
                    return
                self.buf = buf
                return
            payload = buf[pos + 4:pos + 4 + n]
            packets.append((buf[pos + 3], payload))
            pos += 4 + n
            if len(packets) == 1:
                if not payload or payload[0] in (0x00, 0xFF, 0xFB, 0xFE):
                    self.done = True  # OK, ERR: no column definitions
                    self.write(buf)
                    return
                need = 1 + _lenenc_value(payload) + (0 if self.deprecate_eof else 1)
            if len(packets) == need:
                break
        self.done = True
        self.buf = b""
        ncols = need - 1 - (0 if self.deprecate_eof else 1)
        tables = dict(self.tables)
        header = b"".join(build_packet(p if not 1 <= i <= ncols else _rename_column(p, tables, self.schema), seq)
                          for i, (seq, p) in enumerate(packets))
        _remember_header(self.key, buf[:pos], header)
        self.write(header + buf[pos:] if pos < len(buf) else header)


_HeaderKey = tuple[tuple[tuple[str, str], ...], str, bool]
# (unit tables, schema, deprecate_eof) -> recent (raw header, renamed header), most recent first.
_HEADER_MEMO: dict[_HeaderKey, list[tuple[bytes, bytes]]] = {}
_HEADER_MEMO_KEYS = 2048
_HEADER_MEMO_SHAPES = 8  # headers kept per key: the statement shapes of one table that run often


def _remember_header(key: _HeaderKey, raw: bytes, renamed: bytes) -> None:
    shapes = _HEADER_MEMO.get(key)
    if shapes is None:
        if len(_HEADER_MEMO) >= _HEADER_MEMO_KEYS:
            _HEADER_MEMO.clear()
        shapes = _HEADER_MEMO[key] = []
    shapes.insert(0, (raw, renamed))
    del shapes[_HEADER_MEMO_SHAPES:]


class _FastRelay:
    """Sink of a statement started by try_fast(): forwards the response and tells the session when it ends."""

    __slots__ = ("done", "forward", "lease", "owner")

    def __init__(self, owner: ShardedMySQL, lease: _Lease, done: Callable[[bool], None], unit: RouteUnit) -> None:
        self.owner = owner
        self.lease = lease
        self.done = done
        self.forward = _forwarder(owner, unit)

    def response_done(self, conn: MySQLBackendConnection) -> None:
        self.done(conn.scanner.is_error)

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None:
        self.owner._drop(self.lease)
        if conn.scanner.mid_packet():
            self.owner.session.frontend.close()
        else:
            self.owner._send_error(errors.BackendError(errors.BACKEND_LOST, data_source=conn.data_source.name,
                                                       detail=detail))
        self.done(True)


class _Relay:
    """Sink forwarding one unit's response to the client unchanged."""

    __slots__ = ("done", "forward", "lost")

    def __init__(self, owner: ShardedMySQL, done: asyncio.Future[None], unit: RouteUnit) -> None:
        self.forward = _forwarder(owner, unit)
        self.done = done
        self.lost: str | None = None

    def response_done(self, conn: MySQLBackendConnection) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None:
        self.lost = detail
        self.response_done(conn)


def classify_cached(sql: str) -> StatementInfo:
    """The statement's session effects (cached per text: prepared statements repeat)."""
    info = _CLASSIFIED.get(sql)
    if info is None:
        if len(_CLASSIFIED) > 4096:
            _CLASSIFIED.clear()
        info = _CLASSIFIED[sql] = classify(sql)
    return info


_CLASSIFIED: dict[str, StatementInfo] = {}


def _admin_head(sql: str) -> bool:
    """Could `sql` be an admin statement? (Admin statements start with PREVIEW, SHOW, SET, ADD or CLEAR.)"""
    return sql.lstrip()[:3].upper() in _ADMIN_HEADS


_ADMIN_HEADS = frozenset({"PRE", "SHO", "ADD", "CLE"})


def _admin_parse(sql: str) -> Any:
    try:
        from dbmesh.admin import parse_admin
    except ImportError:  # admin SQL not available in this build
        return None
    return parse_admin(sql)

