"""A MySQL client session after authentication: command dispatch, session state, backend leasing and forwarding.

Guarantees:
- One command at a time; later client packets wait in order (clients may pipeline).
- A backend connection serves one session at a time. A session keeps ("sticks to") its connection between
  statements; while it holds no state that cannot be replayed, the pool may reclaim that connection for another
  session (multiplexing). Replayable state (schema, known session variables) is re-applied on whichever
  connection serves the session next; anything else pins the connection to the session until it ends or resets.
- Result bytes are forwarded as the data source sent them; the scanner only finds where the response ends.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING

from dbmesh import errors
from dbmesh._wire.mysql_framing import (
    RESPONSE_FIELD_LIST,
    RESPONSE_ONE_PACKET,
    RESPONSE_PREPARE,
    RESPONSE_RESULT,
    RESPONSE_ROWS,
    RESPONSE_SIMPLE,
    build_packet,
)
from dbmesh.backend.mysql_connection import BackendQueryError, MySQLBackendConnection
from dbmesh.config import Database, DataSource
from dbmesh.observe.metrics import ROW_COUNT, ROW_ERRORS, ROW_SECONDS, STATEMENT_BUCKETS, observe_row
from dbmesh.protocol.mysql.constants import (
    BACKEND_SHAPING_CAPABILITIES,
    Capability,
    ColumnType,
    Command,
    MariaDBCapability,
    Status,
)
from dbmesh.protocol.mysql.packets import ColumnDefinition41, OkPacket, text_result_set
from dbmesh.session import gate
from dbmesh.session.classify import StatementInfo, classify, quick_classify
from dbmesh.session.mysql_infile import FileSink, InfileRelay
from dbmesh.session.mysql_sharded import ShardedMySQL

IN_TRANS = int(Status.IN_TRANS)
AUTOCOMMIT = int(Status.AUTOCOMMIT)

if TYPE_CHECKING:
    from dbmesh.backend.mysql_connection import MySQLPool
    from dbmesh.server.mysql_frontend import MySQLFrontend
    from dbmesh.server.runtime import Runtime

log = logging.getLogger("dbmesh.session")

_CLASSIFY_CACHE: dict[str, StatementInfo] = {}
_CLASSIFY_CACHE_MAX = 8192

_NO_REPLY = {Command.STMT_CLOSE, Command.STMT_SEND_LONG_DATA}
_SHARDED_PREPARED = {Command.STMT_PREPARE, Command.STMT_EXECUTE, Command.STMT_CLOSE, Command.STMT_RESET,
                     Command.STMT_SEND_LONG_DATA}
_SHARDED_REFUSED = {Command.STMT_FETCH, Command.FIELD_LIST, Command.SET_OPTION}


# SQL bytes -> (text, info) for statements the hot path may forward without looking further.
_FAST_QUERIES: dict[bytes, tuple[str, StatementInfo]] = {}
# Plain statements (quick_classify() said yes) by their SQL bytes less trailing ASCII digits: the point selects
# and range scans clients send differ only in a final number, so one entry serves them all. Sound because
# quick_classify() of `head + digits` depends on `head` alone: its first 7 characters come from the head (heads
# of 7 bytes or more only), a ';' or a hint (none contains a digit) cannot start in the digits and end outside
# them, and a text ending in a digit has nothing for rstrip(" \t\r\n;") to remove. Heads are ASCII only, so the
# bytes and the decoded text are the same characters.
_PLAIN_SHAPES: dict[bytes, StatementInfo] = {}
_PLAIN_SHAPES_MAX = 8192
_DIGITS = b"0123456789"
_COM_QUERY = int(Command.QUERY)
# Commands that run statements: what node/cluster states and traffic rules gate.
_GATED = frozenset({Command.QUERY, Command.STMT_PREPARE, Command.STMT_EXECUTE})
_COM_STMT_EXECUTE = int(Command.STMT_EXECUTE)
_COM_STMT_PREPARE = int(Command.STMT_PREPARE)
_COM_STMT_RESET = int(Command.STMT_RESET)


def classify_cached(sql: str, raw: bytes | None = None) -> StatementInfo:
    info = quick_classify(sql)
    if info is not None:
        # Plain statements are not cached by text (their texts differ by literal values), only by shape.
        if raw is not None:
            head = raw.rstrip(_DIGITS)
            if 7 <= len(head) < len(raw) and head.isascii():
                if len(_PLAIN_SHAPES) >= _PLAIN_SHAPES_MAX:
                    _PLAIN_SHAPES.clear()
                _PLAIN_SHAPES[head] = info
        return info
    info = _CLASSIFY_CACHE.get(sql)
    if info is None:
        info = classify(sql)
        if len(_CLASSIFY_CACHE) >= _CLASSIFY_CACHE_MAX:
            _CLASSIFY_CACHE.clear()
            _FAST_QUERIES.clear()
        _CLASSIFY_CACHE[sql] = info
        if raw is not None and info.use_db is None and info.local is None and not info.history:
            _FAST_QUERIES[raw] = (sql, info)
    return info


class _Statement:
    """Book-keeping for the command in flight."""

    __slots__ = ("command", "data_source", "info", "sql", "start", "stmt_type")

    def __init__(self, command: int, sql: str, stmt_type: str, info: StatementInfo | None) -> None:
        self.command = command
        self.sql = sql
        self.stmt_type = stmt_type
        self.info = info
        self.start = perf_counter()
        self.data_source = ""


class MySQLSession:
    """Everything a client connection has after login."""

    def __init__(self, runtime: Runtime, frontend: MySQLFrontend, *, user: str, capabilities: int, collation: int,
                 database: Database | None, ext_capabilities: int = 0) -> None:
        self.runtime = runtime
        self.frontend = frontend
        self.user = user
        self.capabilities = capabilities
        self.collation = collation
        self.deprecate_eof = bool(capabilities & Capability.DEPRECATE_EOF)
        self.ext_capabilities = ext_capabilities
        # MariaDB's extended column metadata was negotiated: column definitions dbmesh writes itself carry it too.
        self.extended_metadata = bool(ext_capabilities & MariaDBCapability.EXTENDED_METADATA)
        # Backend connections must agree with the client on every flag that shapes the bytes we forward.
        self.key = (capabilities & int(BACKEND_SHAPING_CAPABILITIES) | (ext_capabilities << 32), collation)
        self.database = database
        self._ds: DataSource | None = None  # data source of the current logical database (cached)
        self._want_schema: str | None = None  # the schema a backend connection must be on for us
        self._db_label = ""
        self._generation = runtime.generation  # the configuration snapshot this session's objects come from
        self._removed_database: str | None = None  # our database left the configuration (USE another one)
        self._ticket: gate.Ticket | None = None  # the running statement's rate-limit admission / breaker probe
        self._select_database(database)
        self.reclaimable = False  # holding a connection the pool may take back (see MySQLPool.hold)
        self.status = int(Status.AUTOCOMMIT)
        self.vars: dict[str, str] = {}  # replayable session variables, in the order they were set
        self.pinned: str | None = None  # why the connection cannot be shared, if it cannot
        self.conn: MySQLBackendConnection | None = None
        self.pool: MySQLPool | None = None
        # The connection that served our previous statement: per-connection history (ROW_COUNT(), warnings,
        # FOUND_ROWS()) is ours only while we are still on it.
        self.history_conn: MySQLBackendConnection | None = None
        # Statement id (its 4 wire bytes, as COM_STMT_* carry it) -> statement type. The ids are the pinned
        # backend connection's own: a session that prepares keeps its connection.
        self.prepared: dict[bytes, str] = {}
        self.queue: deque[tuple[bytes, int]] = deque()
        self.current: _Statement | None = None
        self._infile: FileSink | None = None  # LOAD DATA LOCAL: client packets are the file until it ends
        self.closed = False
        self._client_paused = False
        self.forward = frontend.writer()  # type: ignore[method-assign,assignment]
        self._multiplexing = runtime.multiplexing  # fixed for the process's life (read once per statement)
        slow = runtime.slow_log
        self._slow_s = slow.threshold_ms / 1000.0 if slow is not None else float("inf")

    def _select_database(self, database: Database | None) -> None:
        self.database = database
        self._removed_database = None
        db = database if database is not None else self.runtime.default_database()
        self._ds = db.default_data_source if db is not None else None
        self._ds_name = self._ds.name if self._ds is not None else ""
        self._want_schema = self._ds.database if (database is not None and self._ds is not None) else None
        self._db_label = database.name if database is not None else ""
        self._stat_rows: dict[str, list[float]] = {}  # statement type -> metrics row for (database, data source)
        old = getattr(self, "sharded", None)
        if old is not None and old.database is not database:
            old.close()
            old = None
        rule = self.runtime.sharding_rule(database) if database is not None else None
        self.sharded: ShardedMySQL | None = old if old is not None else (
            ShardedMySQL(self, database, rule) if rule is not None and database is not None else None)

    @property
    def running(self) -> bool:
        """A statement is in flight (shutdown waits for it)."""
        return self.current is not None

    # -- entry points from the frontend --------------------------------------------------------------------------

    def on_packet(self, payload: bytes, seq: int) -> None:
        if self._infile is not None:
            self._relay_infile(payload, seq)
            return
        if self.current is not None or self.queue:
            self.queue.append((payload, seq))
            if len(self.queue) > 64:
                self.frontend.pause_reading_client()  # a flooding client waits for us
            return
        self._dispatch(payload, seq)

    def on_frame(self, frame: bytes) -> None:
        """Hot path: one whole single-chunk command frame with sequence id 0 arrived while we were idle.

        Takes the statements the general path would forward as they are (a prepared statement we know, a text
        statement already classified as forwardable, COM_STMT_RESET) straight to our connection; anything else,
        and any statement that may have to wait or be refused, goes through _dispatch().
        """
        cmd = frame[4]
        rt = self.runtime
        if self.sharded is not None or self._generation != rt.generation:
            if cmd == _COM_QUERY and self.sharded is not None and self._generation == rt.generation \
                    and not rt.guarded and self._removed_database is None:
                # A sharded session's plain statement of a known shape: what _dispatch_admitted would do with it.
                sql = frame[5:]
                info = _PLAIN_SHAPES.get(sql.rstrip(_DIGITS))
                if info is not None:
                    self._run_sharded(_Statement(cmd, sql.decode("ascii"), info.type, info))
                    return
            self._dispatch(frame[4:], 0)
            return
        kind = RESPONSE_RESULT
        if cmd == _COM_STMT_EXECUTE:
            stmt_type = self.prepared.get(frame[5:9])
            if stmt_type is None:
                self._dispatch(frame[4:], 0)
                return
            stmt = _Statement(cmd, "", stmt_type, None)
        elif cmd == _COM_QUERY:
            sql = frame[5:]
            hit = _FAST_QUERIES.get(sql)
            if hit is not None:
                stmt = _Statement(cmd, hit[0], hit[1].type, hit[1])
            else:
                info = _PLAIN_SHAPES.get(sql.rstrip(_DIGITS))
                if info is None:
                    self._dispatch(frame[4:], 0)
                    return
                stmt = _Statement(cmd, sql.decode("ascii"), info.type, info)  # an ASCII head and digits
        elif cmd == _COM_STMT_RESET and self.conn is not None:
            # Not a statement: no gate applies (see _GATED). Some clients send it before every execution.
            stmt = _Statement(cmd, "", "execute", None)
            kind = RESPONSE_SIMPLE
        else:
            self._dispatch(frame[4:], 0)
            return
        if (rt.guarded or self._removed_database is not None) and kind == RESPONSE_RESULT:
            if rt.traffic_waits or self._removed_database is not None:
                self._dispatch(frame[4:], 0)  # may have to wait, or to refuse: the general path does both
                return
            try:
                self._ticket = gate.admit(rt, user=self.user, database=self._db_label, stmt_type=stmt.stmt_type,
                                          sql=stmt.sql or None, dialect="mysql",
                                          data_sources=(self._ds_name,) if self._ds is not None else ())
            except errors.DbMeshError as exc:
                self._error(exc)
                return
        conn = self.conn
        # (conn.data_source is never None: being our data source implies we have one)
        if conn is not None and conn.data_source is self._ds and not conn.broken \
                and conn.schema == self._want_schema and conn.vars == self.vars and stmt.start < conn.expires_at \
                and not self._client_paused:
            # The common case, inlined: our sticky connection is ready for this statement.
            self.current = stmt
            self.reclaimable = False
            stmt.data_source = self._ds_name
            conn.start_command(frame, kind, self)
            return
        self._forward_frame(frame, kind, stmt)

    def on_client_paused(self, paused: bool) -> None:
        """Client socket buffer above/below its high-water mark: stop/start reading the data source."""
        self._client_paused = paused
        if self.sharded is not None:
            self.sharded.client_paused(paused)
        conn = self.conn
        if conn is not None and conn.transport is not None and conn.busy:
            if paused:
                conn.transport.pause_reading()
            else:
                conn.transport.resume_reading()

    def close(self) -> None:
        """Client went away: give the connection back (reset first if it holds state), drop everything."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        if self._ticket is not None:
            self._end_ticket()
        if self.sharded is not None:
            self.sharded.close()
        conn, self.conn = self.conn, None
        self.reclaimable = False
        if self.pool is not None:
            self.pool.unhold(self)
        if conn is None or self.pool is None:
            return
        pool = self.pool
        if conn.busy or conn.broken:
            # Mid-statement: the response has nowhere to go; the connection cannot be trusted again.
            pool.discard(conn)
        elif self.pinned or conn.dirty or self.status & Status.IN_TRANS:
            self.runtime.spawn(pool.reset_and_release(conn))
        else:
            pool.release(conn)

    # -- dispatch ------------------------------------------------------------------------------------------------

    def _dispatch(self, payload: bytes, seq: int) -> None:
        if not payload:
            self._fail_protocol("empty command packet")
            return
        rt = self.runtime
        if self._generation != rt.generation:
            self._refresh_config()
        if (rt.guarded or self._removed_database is not None) and payload[0] in _GATED:
            self._gate(payload, seq)
            return
        self._dispatch_admitted(payload, seq)

    def _gate(self, payload: bytes, seq: int) -> None:
        """A statement command while a gate applies: refuse it, hold it (a QUEUE rate limit), or run it."""
        cmd = payload[0]
        sql: str | None = None
        if cmd == Command.QUERY:
            sql = payload[1:].decode("utf-8", "replace")
            info = classify_cached(sql, payload[1:])
            if info.local is not None or info.use_db is not None:
                self._dispatch_admitted(payload, seq)  # answered by dbmesh itself: governance, USE, KILL, ...
                return
            stmt_type = info.type
        elif cmd == Command.STMT_EXECUTE:
            stmt_type = self._prepared_type(payload[1:5])
        else:
            stmt_type = "prepare"
        try:
            if self._removed_database is not None:
                raise errors.AuthError(errors.AUTH_UNKNOWN_DATABASE, database=self._removed_database)
            ds = self._ds
            ticket = gate.admit(self.runtime, user=self.user, database=self._db_label, stmt_type=stmt_type, sql=sql,
                                dialect="mysql",
                                data_sources=None if self.sharded is not None else (ds.name,) if ds is not None else ())
        except errors.DbMeshError as exc:
            self._error(exc)
            return
        self._ticket = ticket
        admission = ticket.admission if ticket is not None else None
        if admission is not None and (admission.wait_s > 0 or admission.waiter is not None):
            self.current = _Statement(cmd, sql or "", stmt_type, None)  # the queue waits behind the held one
            self.runtime.spawn(self._admit_later(payload, seq))
            return
        self._dispatch_admitted(payload, seq)

    async def _admit_later(self, payload: bytes, seq: int) -> None:
        ticket = self._ticket
        assert ticket is not None and ticket.admission is not None
        try:
            await gate.wait_admission(ticket.admission)
        except errors.DbMeshError as exc:
            self.current = None
            self._ticket = None
            ticket.abandon(self.runtime)
            self._error(exc)
            return
        self.current = None
        if not self.closed:
            self._dispatch_admitted(payload, seq)

    async def _governance(self, sql: str) -> None:
        """Governance DistSQL (compute nodes, dist variables, cluster state, traffic status) on any database."""
        from dbmesh.admin.governance import Done, execute_governance
        from dbmesh.session.admin_reply import mysql_reply

        try:
            result = await execute_governance(sql, self.runtime, user=self.user)
        except errors.DbMeshError as exc:
            self.current = None
            self._error(exc)
            return
        self.current = None
        if self.closed:
            return
        if isinstance(result, Done):
            self._ok()
            return
        self.frontend.write(mysql_reply(result, self.collation, self.status, self.deprecate_eof,
                                        self.extended_metadata))
        self._next()

    def _prepared_type(self, stmt_id: bytes) -> str:
        if self.sharded is not None:
            st = self.sharded.prepared.get(stmt_id)
            return classify_cached(st.sql).type if st is not None else "execute"
        return self.prepared.get(stmt_id) or "execute"

    def _end_ticket(self, backend_failed: bool = False) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            ticket.finish(self.runtime, backend_failed)

    def _refresh_config(self) -> None:
        """A new configuration snapshot: take up our database's new definition between transactions.

        A session inside a transaction, or holding state on a connection (prepared statements, temporary tables on
        a one-data-source database), finishes under the snapshot it started with and looks again next statement.
        """
        sharded = self.sharded
        if self.status & Status.IN_TRANS or (sharded is not None and sharded.txn_open) or (
                sharded is None and self.pinned):
            return
        rt = self.runtime
        self._generation = rt.generation
        db = self.database
        if db is None:
            self._select_database(None)  # the default database may be another one now
            return
        new = rt.config.databases.get(db.name)
        if new is None:
            self._removed_database = db.name
            return
        if new == db and (sharded is None or sharded.rule is rt.sharding_rule(new)):
            return
        prepared = sharded.prepared if sharded is not None else None
        hint = sharded.hint if sharded is not None else None
        self._select_database(new)
        if self.sharded is not None and sharded is not None and prepared is not None:
            # Prepared statements belong to the client, not to a snapshot: they keep working under the new rules.
            self.sharded.prepared = prepared
            self.sharded.hint = hint

    def _dispatch_admitted(self, payload: bytes, seq: int) -> None:
        cmd = payload[0]
        if cmd == Command.QUERY:
            sql = payload[1:].decode("utf-8", "replace")
            info = classify_cached(sql, payload[1:])
            if info.use_db is not None:
                self._use_database(info.use_db, Command.QUERY)
                return
            if info.local == "governance":
                self.current = _Statement(cmd, sql, "admin", info)
                self.runtime.spawn(self._governance(sql))
                return
            if info.local == "show_databases":
                self._show_databases()
                return
            if info.local is not None:
                self._kill(info)
                return
            if self.sharded is not None:
                self._run_sharded(_Statement(cmd, sql, info.type, info))
                return
            if info.history and (self.conn is None or self.conn is not self.history_conn or self.conn.broken):
                self._error(errors.SessionError(errors.SESSION_HISTORY_LOST, construct=info.history))
                return
            self._forward(payload, cmd, RESPONSE_RESULT, _Statement(cmd, sql, info.type, info))
            return
        if self.sharded is not None and cmd in _SHARDED_PREPARED:
            self._sharded_prepared(cmd, payload)
            return
        if cmd == Command.STMT_EXECUTE:
            stmt_id = int.from_bytes(payload[1:5], "little")
            stmt_type = self.prepared.get(payload[1:5])
            if stmt_type is None:
                self._error(errors.ProtocolError(errors.PROTOCOL_UNKNOWN_STATEMENT, stmt_id=stmt_id,
                                                 command="mysqld_stmt_execute"))
                return
            self._forward(payload, cmd, RESPONSE_RESULT, _Statement(cmd, "", stmt_type, None))
            return
        if self.sharded is not None and cmd in _SHARDED_REFUSED:
            self._error(errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct=f"COM_{Command(cmd).name}",
                                            detail="on a sharded logical database"))
            return
        if cmd == Command.STMT_PREPARE:
            sql = payload[1:].decode("utf-8", "replace")
            info = classify_cached(sql)
            # Statement ids belong to one backend connection: a session that prepares keeps its connection.
            self.pinned = self.pinned or "prepared statement"
            self._forward(payload, cmd, RESPONSE_PREPARE, _Statement(cmd, sql, info.type, info))
            return
        if cmd in _NO_REPLY:
            if self.conn is not None and not self.conn.broken:
                stmt_id = int.from_bytes(payload[1:5], "little")
                if cmd == Command.STMT_CLOSE:
                    self.prepared.pop(payload[1:5], None)
                self.conn.send_no_reply(build_packet(payload, seq))
            self._next()
            return
        if cmd == Command.STMT_RESET or cmd == Command.STMT_FETCH:
            kind = RESPONSE_SIMPLE if cmd == Command.STMT_RESET else RESPONSE_ROWS
            if self.conn is None:
                self._error(errors.ProtocolError(errors.PROTOCOL_UNKNOWN_STATEMENT,
                                                 stmt_id=int.from_bytes(payload[1:5], "little"),
                                                 command=Command(cmd).name.lower()))
                return
            self._forward(payload, cmd, kind, _Statement(cmd, "", "execute", None))
            return
        if cmd == Command.PING and self.sharded is not None:
            self.sharded._send_ok(0, 0, b"")
            self._next()
            return
        if cmd == Command.PING:
            conn = self.conn
            if conn is not None and not conn.broken and not conn.busy:
                # The server treats PING as a statement (it resets ROW_COUNT() and warnings): keep that.
                self._forward(payload, cmd, RESPONSE_SIMPLE, _Statement(cmd, "", "ping", None))
            else:
                self._ok()  # no connection of ours holds history, so a local answer is exact
            return
        if cmd == Command.PROCESS_KILL and len(payload) >= 5:
            self._kill(StatementInfo("admin", local="kill_connection", target=int.from_bytes(payload[1:5], "little")))
            return
        if cmd == Command.QUIT:
            self.frontend.close()
            return
        if cmd == Command.INIT_DB:
            self._use_database(payload[1:].decode("utf-8", "replace"), Command.INIT_DB)
            return
        if cmd == Command.RESET_CONNECTION:
            self.runtime.spawn(self._reset_connection())
            return
        if cmd == Command.CHANGE_USER:
            self.frontend.begin_change_user(payload)
            return
        if cmd == Command.SET_OPTION:
            # Toggles MULTI_STATEMENTS on the data source connection: it can no longer serve other sessions.
            self.pinned = self.pinned or "COM_SET_OPTION"
            self._forward(payload, cmd, RESPONSE_ONE_PACKET, _Statement(cmd, "", "other", None), poison=True)
            return
        if cmd == Command.STATISTICS:
            self._forward(payload, cmd, RESPONSE_ONE_PACKET, _Statement(cmd, "", "other", None))
            return
        if cmd == Command.FIELD_LIST:
            self._forward(payload, cmd, RESPONSE_FIELD_LIST, _Statement(cmd, "", "show", None))
            return
        try:
            name = Command(cmd).name
        except ValueError:
            name = f"0x{cmd:02x}"
        self._error(errors.ProtocolError(errors.PROTOCOL_UNSUPPORTED_COMMAND, command=f"COM_{name}"))

    def _next(self) -> None:
        if self._ticket is not None and self.current is None:
            self._end_ticket()
        while self.current is None and self.queue and not self.closed:
            payload, seq = self.queue.popleft()
            if len(self.queue) < 16:
                self.frontend.resume_reading_client()
            self._dispatch(payload, seq)

    # -- sharded logical databases --------------------------------------------------------------------------------

    def _sharded_prepared(self, cmd: int, payload: bytes) -> None:
        sharded = self.sharded
        assert sharded is not None
        if cmd == Command.STMT_CLOSE:
            sharded.close_prepared(payload[1:5])
            self._next()
            return
        if cmd == Command.STMT_SEND_LONG_DATA:
            # No reply is allowed; the EXECUTE that follows is refused (long data is not supported here).
            st = sharded.prepared.get(payload[1:5])
            if st is not None:
                st.types = b"long data"
            self._next()
            return
        if cmd == Command.STMT_RESET:
            sharded._send_ok(0, 0, b"")
            self._next()
            return
        stmt = _Statement(cmd, payload[1:].decode("utf-8", "replace") if cmd == Command.STMT_PREPARE else "",
                          "prepare" if cmd == Command.STMT_PREPARE else "execute", None)
        self.current = stmt
        if cmd == Command.STMT_EXECUTE and not self._client_paused and \
                sharded.try_fast_execute(payload, self._sharded_fast_done):
            return
        self.runtime.spawn(self._sharded_prepared_task(stmt, payload))

    async def _sharded_prepared_task(self, stmt: _Statement, payload: bytes) -> None:
        sharded = self.sharded
        assert sharded is not None
        try:
            if stmt.command == Command.STMT_PREPARE:
                await sharded.prepare(stmt.sql)
            else:
                await sharded.execute_prepared(payload)
        finally:
            self.current = None
            self.status = sharded.status
            self._account(stmt, 0, False)
            if not self.closed:
                sharded.idle()
                self._next()

    def _run_sharded(self, stmt: _Statement) -> None:
        self.current = stmt
        sharded = self.sharded
        assert sharded is not None and stmt.info is not None
        if not self._client_paused and sharded.try_fast(stmt.sql, stmt.info, self._sharded_fast_done):
            return
        self.runtime.spawn(self._sharded_statement(stmt))

    def _sharded_fast_done(self, error: bool) -> None:
        """A single-unit statement started by try_fast() has been answered (or its connection was lost)."""
        stmt, self.current = self.current, None
        sharded = self.sharded
        if sharded is not None:
            self.status = sharded.status
        if stmt is not None:
            self._account(stmt, 0, error)
        if not self.closed:
            if sharded is not None:
                sharded.idle()
            self._next()

    async def _sharded_statement(self, stmt: _Statement) -> None:
        sharded = self.sharded
        assert sharded is not None and stmt.info is not None
        error = True
        try:
            await sharded.query(stmt.sql, stmt.info)
            error = False
        finally:
            self.current = None
            self.status = sharded.status
            self._account(stmt, 0, error)
            if not self.closed:
                sharded.idle()
                self._next()

    # -- forwarding ----------------------------------------------------------------------------------------------

    def _forward(self, payload: bytes, cmd: int, kind: int, stmt: _Statement, poison: bool = False) -> None:
        self._forward_frame(build_packet(payload, 0), kind, stmt, poison)

    def _forward_frame(self, frame: bytes, kind: int, stmt: _Statement, poison: bool = False) -> None:
        ds = self._ds
        if ds is None:
            self._error(errors.SessionError(errors.NO_DATABASE_SELECTED))
            return
        self.current = stmt
        conn = self.conn
        if conn is not None and not conn.broken and conn.data_source is ds and conn.schema == self._want_schema \
                and conn.vars == self.vars and stmt.start < conn.expires_at:
            # Fast path: our sticky connection is ready; no task, no await.
            self.reclaimable = False
            if poison:
                conn.dirty = True
            stmt.data_source = ds.name
            conn.start_command(frame, kind, self)
            if self._client_paused and conn.transport is not None:
                conn.transport.pause_reading()
            return
        self.runtime.spawn(self._forward_slow(frame, kind, stmt, poison))

    async def _forward_slow(self, frame: bytes, kind: int, stmt: _Statement, poison: bool) -> None:
        try:
            conn = await self._attach()
        except errors.DbMeshError as exc:
            self.current = None
            if self._ticket is not None:
                self._end_ticket(backend_failed=gate.is_backend_failure(exc))
            self._error(exc)
            return
        except BackendQueryError as exc:
            self.current = None
            self.frontend.send_err_packet(exc.err.code, exc.err.sqlstate, exc.err.message, 1)
            self._next()
            return
        if self.closed:
            return
        if poison:
            conn.dirty = True
        stmt.data_source = conn.data_source.name
        conn.start_command(frame, kind, self)
        if self._client_paused and conn.transport is not None:
            conn.transport.pause_reading()

    async def _attach(self) -> MySQLBackendConnection:
        """Make self.conn a connection on our data source with this session's state applied."""
        ds = self._ds
        db = self.database or self.runtime.default_database()
        assert ds is not None and db is not None
        conn = self.conn
        if conn is not None and not conn.broken and conn.expires_at < perf_counter() and not (
                self.pinned or self.status & Status.IN_TRANS):
            # Past maxLifetime: hand it back (the pool closes it) and lease a fresh one.
            self.conn = None
            self.reclaimable = False
            if self.pool is not None:
                self.pool.unhold(self)
                self.pool.release(conn)
            conn = None
        if conn is not None and (conn.broken or conn.data_source is not ds):
            if self.pinned or self.status & Status.IN_TRANS:
                if conn.broken:
                    self._drop_conn()
                    raise errors.BackendError(errors.BACKEND_LOST, data_source=conn.data_source.name,
                                              detail="the connection holding this session's state was lost")
                raise errors.SessionError(errors.SESSION_DATABASE_SWITCH_IN_TRANSACTION, database=db.name)
            self._drop_conn()
            conn = None
        self.reclaimable = False
        if conn is not None and conn.schema != self._want_schema and self._want_schema is None:
            # A session without a database needs a connection without one; MySQL cannot unselect a schema.
            if self.pinned or self.status & Status.IN_TRANS:
                raise errors.SessionError(errors.NO_DATABASE_SELECTED)
            self._drop_conn()
            conn = None
        if conn is None:
            pool = self.runtime.mysql_pool(db, ds)
            conn = await pool.acquire(self.key, self._want_schema)
            if self.closed:
                pool.release(conn)
                raise errors.SessionError(errors.SESSION_SHUTTING_DOWN)
            self.conn, self.pool = conn, pool
            pool.hold(self)
        try:
            if conn.vars != self.vars:
                if any(conn.vars.get(k) != v for k, v in conn.vars.items() if k not in self.vars) or \
                        any(k not in self.vars for k in conn.vars):
                    await conn.reset()
                todo = [(k, v) for k, v in self.vars.items() if conn.vars.get(k) != v]
                if todo:
                    await conn.execute("SET " + ", ".join(
                        f"NAMES {v}" if k == "NAMES" else f"SESSION {k}={v}" for k, v in todo))
                    conn.vars.update(todo)
            if self._want_schema is not None and conn.schema != self._want_schema:
                await conn.init_db(self._want_schema)
        except (BackendQueryError, errors.DbMeshError):
            self._drop_conn()
            raise
        return conn

    # ResponseSink ------------------------------------------------------------------------------------------------

    def forward(self, data: bytes) -> None:
        # Replaced per instance by the frontend's writer() (one call less per chunk); kept for the sink protocol.
        self.frontend.write(data)

    def response_done(self, conn: MySQLBackendConnection) -> None:
        stmt = self.current
        self.current = None
        sc = conn.scanner
        clean = sc.clean_status()  # the status, or -1 after an ERR, a protocol error or a LAST_INSERT_ID
        if self._client_paused and conn.transport is not None:
            conn.transport.resume_reading()
        if stmt is not None:
            elapsed = perf_counter() - stmt.start
            error = False
            if clean >= 0:
                self.status = clean
            else:
                error = sc.is_error
                if not error:
                    self.status = sc.status
                elif stmt.command == _COM_QUERY and sc.status:
                    self.status = sc.status
            if not error:
                info = stmt.info
                if info is not None and (info.set_vars or info.pin):
                    self._apply_state(conn, info)
                if stmt.command == _COM_STMT_PREPARE:
                    self.prepared[sc.stmt_id.to_bytes(4, "little")] = stmt.stmt_type
                if clean < 0 and sc.last_insert_id:
                    self.pinned = self.pinned or "LAST_INSERT_ID"
            row = self._stat_rows.get(stmt.stmt_type)
            if row is None or stmt.data_source != self._ds_name:
                row = self._stat_row(stmt)
            # observe_row(), inlined: this runs once per statement.
            row[bisect_left(STATEMENT_BUCKETS, elapsed)] += 1.0
            row[ROW_SECONDS] += elapsed
            row[ROW_COUNT] += 1.0
            if error:
                row[ROW_ERRORS] += 1.0
            if elapsed >= self._slow_s:
                self._log_slow(stmt, elapsed, sc.rows)
            if self._ticket is not None:
                self._end_ticket()
        if clean < 0 and sc.protocol_error:
            log.warning("data source %s broke the protocol: %s", conn.data_source.name, sc.protocol_error)
            if sc.packets:
                self.frontend.close()
        status = self.status
        self.history_conn = conn
        if not self.pinned:
            if not (status & AUTOCOMMIT):
                self.pinned = "autocommit=0"
            elif not (status & IN_TRANS) and not self.closed and self._multiplexing and not conn.dirty:
                self.reclaimable = True
                pool = self.pool
                if pool is not None and pool._waiters:
                    pool.reclaim_for_waiters()
        if self.queue and not self.closed:
            self._next()

    def _stat_row(self, stmt: _Statement) -> list[float]:
        row = self.runtime.metrics.statement_row(self._db_label, stmt.data_source, stmt.stmt_type)
        if stmt.data_source == self._ds_name:
            self._stat_rows[stmt.stmt_type] = row
        return row

    def _apply_state(self, conn: MySQLBackendConnection, info: StatementInfo) -> None:
        if info.set_vars:
            for k, v in info.set_vars:
                self.vars.pop(k, None)
                self.vars[k] = v
            conn.vars = dict(self.vars)
        if info.pin:
            self.pinned = self.pinned or info.pin

    def infile_requested(self, conn: MySQLBackendConnection) -> None:
        """LOAD DATA LOCAL: the data source asked for the client's file (the request went to the client as it came)."""
        self.expect_file(InfileRelay(conn, self.frontend))

    def expect_file(self, sink: FileSink) -> None:
        """The client was sent a LOCAL INFILE request: its next packets are the file, up to an empty one."""
        self._infile = sink
        # Packets the client sent before the request reached it are read as the file, as the server would.
        while self.queue and self._infile is not None:
            payload, seq = self.queue.popleft()
            self._relay_infile(payload, seq)

    def _relay_infile(self, payload: bytes, seq: int) -> None:
        relay = self._infile
        assert relay is not None
        if relay.packet(payload, seq):
            self._infile = None

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None:
        stmt, self.current = self.current, None
        # In the middle of a file the client is sending, not reading: no reply can be placed in that exchange.
        mid = conn.scanner.mid_packet() or self._infile is not None
        self._infile = None
        seq = (conn.scanner.last_seq + 1) if conn.scanner.packets else 1
        self._drop_conn()
        err = errors.BackendError(errors.BACKEND_LOST, data_source=conn.data_source.name, detail=detail)
        in_txn = self.pinned or self.status & Status.IN_TRANS
        # The transaction and any pinned state died with the connection.
        self.pinned = None
        self.prepared.clear()
        self.status = int(Status.AUTOCOMMIT)
        if stmt is not None:
            self._account(stmt, 0, True)
        if self._ticket is not None:
            self._end_ticket(backend_failed=True)
        if self.closed:
            return
        if mid:
            # Part of a packet went out: no valid packet can follow it on this stream.
            self.frontend.close()
            return
        self.runtime.metrics.error(err.entry.code, "mysql")
        self.frontend.send_error(err, seq & 0xFF)
        if in_txn:
            log.info("session %s lost its data source connection (%s) holding state", self.frontend.conn_id, detail)
        self._next()

    # -- helpers -------------------------------------------------------------------------------------------------

    def _account(self, stmt: _Statement, rows: int, error: bool) -> None:
        elapsed = perf_counter() - stmt.start
        observe_row(self._stat_row(stmt), elapsed, error)
        if elapsed >= self._slow_s:
            self._log_slow(stmt, elapsed, rows)

    def _log_slow(self, stmt: _Statement, elapsed: float, rows: int) -> None:
        slow = self.runtime.slow_log
        assert slow is not None
        slow.maybe_record(start_time=time.time() - elapsed, user=self.user, database=self._db_label or None,
                          sql=stmt.sql, duration_s=elapsed, rows=rows,
                          data_sources=(stmt.data_source,) if stmt.data_source else ())

    def _offer(self) -> None:
        """Let the pool reclaim our idle connection if nothing ties it to us."""
        conn, pool = self.conn, self.pool
        if conn is None or pool is None or self.pinned or self.status & IN_TRANS or conn.dirty:
            return
        if self.runtime.multiplexing:
            self.reclaimable = True
            if pool._waiters:
                pool.reclaim_for_waiters()

    def surrender(self) -> MySQLBackendConnection | None:
        """The pool takes our idle connection for someone else; our next statement leases another."""
        conn = self.conn
        if conn is None or not self.reclaimable or self.current is not None or conn.busy:
            return None
        self.conn = None
        self.reclaimable = False
        return conn

    def _drop_conn(self) -> None:
        conn, self.conn = self.conn, None
        self.reclaimable = False
        if self.pool is not None:
            self.pool.unhold(self)
            if conn is not None:
                self.pool.discard(conn)

    def _ok(self, affected: int = 0) -> None:
        self.frontend.send_payload(OkPacket(affected, 0, self.status, 0).encode(), 1)
        self._next()

    def _error(self, exc: errors.DbMeshError) -> None:
        self.runtime.metrics.error(exc.entry.code, "mysql")
        self.frontend.send_error(exc, 1)
        self._next()

    def _fail_protocol(self, detail: str) -> None:
        exc = errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail=detail)
        self.runtime.metrics.error(exc.entry.code, "mysql")
        self.frontend.send_error(exc, 1)
        self.frontend.close()

    def _use_database(self, name: str, command: int) -> None:
        db = self.runtime.config.databases.get(name)
        if db is None:
            self._error(errors.AuthError(errors.AUTH_UNKNOWN_DATABASE, database=name))
            return
        if self.conn is not None and self.conn.data_source is not db.default_data_source and (
                self.pinned or self.status & Status.IN_TRANS):
            self._error(errors.SessionError(errors.SESSION_DATABASE_SWITCH_IN_TRANSACTION, database=name))
            return
        self._select_database(db)
        self._ok()

    def _kill(self, info: StatementInfo) -> None:
        """KILL [QUERY|CONNECTION] id, with dbmesh's connection ids (the ones handshakes and clients know)."""
        if info.local == "kill_unsupported":
            self._error(errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="KILL",
                                            detail="only KILL [CONNECTION | QUERY] <connection id> is supported"))
            return
        target = self.runtime.find_mysql_client(info.target)
        if target is None or target.session is None:
            self._error(errors.SessionError(errors.UNKNOWN_THREAD, thread=info.target))
            return
        self.runtime.spawn(target.session.cancel_running(close=info.local == "kill_connection"))
        self._ok()

    async def cancel_running(self, close: bool) -> None:
        """Stop the statement this session is running (KILL QUERY on a side connection), and maybe the session."""
        stmt, conn = self.current, self.conn
        if stmt is not None and conn is not None and conn.busy:
            killer = MySQLBackendConnection(conn.data_source, (0, conn.key[1]), None)
            try:
                await killer.connect(conn.data_source.pool.connect_timeout_s)
                # Re-check: the statement must still be the one we were asked to stop, on the same connection.
                if self.current is stmt and self.conn is conn and conn.busy:
                    await killer.execute(f"KILL QUERY {conn.thread_id}")
            except (errors.DbMeshError, BackendQueryError, OSError) as exc:
                log.info("KILL QUERY on %s failed: %s", conn.data_source.name, exc)
            finally:
                killer.quit()
        if close:
            self.frontend.close()

    def _show_databases(self) -> None:
        cols = [ColumnDefinition41("Database", ColumnType.VAR_STRING, self.collation, 256, 1, 0, "information_schema",
                                   "SCHEMATA", "SCHEMATA", "SCHEMA_NAME")]
        rows = [[name] for name in self.runtime.config.databases]
        payloads = text_result_set(cols, rows, self.status, self.deprecate_eof, self.extended_metadata)
        self.frontend.write(b"".join(build_packet(p, i + 1) for i, p in enumerate(payloads)))
        self._next()

    async def _reset_connection(self) -> None:
        """COM_RESET_CONNECTION: the session starts afresh (schema kept), its connection is reset or released."""
        self.current = _Statement(Command.RESET_CONNECTION, "", "other", None)
        try:
            await self.reset_state()
        finally:
            self.current = None
        if not self.closed:
            self._ok()

    async def reset_state(self) -> None:
        if self.sharded is not None:
            await self.sharded.reset()
        conn = self.conn
        if conn is not None and (self.pinned or self.status & Status.IN_TRANS or conn.vars or conn.dirty):
            try:
                await conn.reset()
            except (errors.DbMeshError, BackendQueryError, OSError):
                self._drop_conn()
        self.pinned = None
        self.vars = {}
        self.prepared.clear()
        self.status = int(Status.AUTOCOMMIT)
        self._offer()

    def run_after_change_user(self, user: str, database: Database | None, collation: int) -> None:
        """Called by the frontend once COM_CHANGE_USER authenticated: reset, then answer OK."""
        self.user = user
        if database is not None:
            self._select_database(database)
        self.collation = collation
        self.key = (self.capabilities & int(BACKEND_SHAPING_CAPABILITIES) | (self.ext_capabilities << 32), collation)
