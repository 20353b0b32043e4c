"""A PostgreSQL client session after startup: message relay, session parameters, backend leasing and multiplexing.

Guarantees:
- Client messages are forwarded in order, as framed; backend bytes come back untouched. The backend scanner counts
  ReadyForQuery messages, so the session knows when everything it forwarded has been answered.
- A session keeps its backend connection between requests. The pool may reclaim it for another session only when
  the session is idle (every Query/Sync answered, no extended-protocol messages pending), outside a transaction
  (ReadyForQuery 'I') and holds no state that cannot be replayed. Replayable state (startup parameters and plain
  `SET`s) is re-applied on whichever connection serves the session next.
- Protocol-level named statements do not pin: they are renamed to shared backend names and prepared on whichever
  connection serves the session (see _render). LISTEN, session advisory locks, temporary tables, SQL PREPARE and
  cursors WITH HOLD pin the connection to the session; a pinned connection is reset (ROLLBACK, DISCARD ALL)
  before reuse.
- A request that arrives alone in one read, in one of three shapes (a Query; Bind ... Sync; Parse of the unnamed
  statement, Bind ... Sync), takes a hot path that forwards it as framed, without taking it apart, when nothing
  would make the general path treat it otherwise; it sends and leaves exactly what the general path would.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from collections import deque
from collections.abc import Iterator
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from dbmesh import errors
from dbmesh._wire.pg_framing import bind_statement, build_message, rename_bind
from dbmesh.backend.pg_connection import (
    PgBackendConnection,
    PgQueryError,
    first_row,
    parameter_statuses,
    prepared_names,
)
from dbmesh.config import Database
from dbmesh.observe.metrics import observe_row
from dbmesh.protocol.postgresql.messages import render_error
from dbmesh.session import gate
from dbmesh.session.pg_classify import PgStatementInfo, classify, quick_classify
from dbmesh.session.pg_sharded import ShardedPg

if TYPE_CHECKING:
    from dbmesh.backend.pg_connection import PgPool
    from dbmesh.server.pg_frontend import PgFrontend
    from dbmesh.server.runtime import Runtime

log = logging.getLogger("dbmesh.session")

_Q, _P, _B, _D, _E, _C, _S, _H, _X, _F = (ord(c) for c in "QPBDECSHXF")
_COPY_DATA, _COPY_DONE, _COPY_FAIL = ord("d"), ord("c"), ord("f")
_I = ord("I")
_FORWARDED = frozenset({_P, _B, _D, _E, _C, _H, _COPY_DATA, _COPY_DONE, _COPY_FAIL})
# Startup parameters that are not session settings.
_NOT_SETTINGS = frozenset({"user", "database", "replication", "options"})
# A statement name no session uses: Close of it is answered CloseComplete without effect (PostgreSQL allows it).
_NEVER_A_STATEMENT = b"dbmesh_no_such_statement"
# Statements a backend connection keeps for the sessions it served; above this, a session taking the connection
# closes the ones it does not use.
MAX_CACHED_STATEMENTS = 256
# Pseudo message types for Queries that _render rewrites against the connection's prepared statements.
_Q_DEALLOCATE = -1  # payload: the backend name to deallocate
_Q_FORGET_ALL = -2  # DEALLOCATE ALL / DISCARD ALL: the connection holds no prepared statements afterwards
_P_TAKEN = -3  # Parse of a client name already in use: sent under the existing backend name, which the server refuses

_CLASSIFY_CACHE: dict[str, PgStatementInfo] = {}
# Plain statements (quick_classify() said yes) by their Query text less trailing semicolons and then trailing ASCII
# digits, looked up only when digits were there to strip: the point selects clients send differ only in a final
# number, so one entry serves them all, without decoding. Sound because quick_classify() of
# `head + digits + semicolons` depends on `head` alone: its first 7 characters come from the head (heads of 7 bytes
# or more only); rstrip(" \t\r\n;") removes the semicolons and stops at the digits, so a ';' is left inside
# exactly when the head has one; and no hint contains a digit or a ';', so one occurs exactly when it occurs in the
# head. Heads are ASCII only, so the bytes and the decoded text are the same characters.
_PLAIN_SHAPES: dict[bytes, PgStatementInfo] = {}
_PLAIN_SHAPES_MAX = 8192
_DIGITS = b"0123456789"
# Plain statements (quick_classify() said yes) by the Parse body of an unnamed statement (query, NUL, parameter
# types): parameterized texts repeat exactly, so the cache is exact.
_PLAIN_PARSES: dict[bytes, PgStatementInfo] = {}


def remember_shape(text: bytes, info: PgStatementInfo) -> None:
    """Note a Query text quick_classify() classified as `info` under its shape (see _PLAIN_SHAPES)."""
    body = text.rstrip(b";")
    head = body.rstrip(_DIGITS)
    if 7 <= len(head) < len(body) and head.isascii():
        if len(_PLAIN_SHAPES) >= _PLAIN_SHAPES_MAX:
            _PLAIN_SHAPES.clear()
        _PLAIN_SHAPES[head] = info


def classify_cached(sql: str) -> PgStatementInfo:
    info = quick_classify(sql)
    if info is not None:
        return info  # plain statements are not cached: their texts differ by literal values
    info = _CLASSIFY_CACHE.get(sql)
    if info is None:
        if len(_CLASSIFY_CACHE) > 8192:
            _CLASSIFY_CACHE.clear()
        info = _CLASSIFY_CACHE[sql] = classify(sql)
    return info


def _raise_statement(exc: errors.DbMeshError) -> str:
    """A statement that makes PostgreSQL raise a dbmesh error (its SQLSTATE and message) where it runs."""
    message = exc.message.replace("$dbmesh$", "")
    return (f"DO $dbmesh$BEGIN RAISE EXCEPTION USING ERRCODE = '{exc.entry.pg_sqlstate}', "
            f"MESSAGE = {quote_literal(message)}, DETAIL = '{exc.entry.code}'; END$dbmesh$")


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def startup_settings(params: dict[str, str]) -> dict[str, str]:
    """Session settings a client asked for at startup, as SQL literals (including `options=-c name=value`)."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if name in _NOT_SETTINGS or name.startswith("_pq_."):
            continue
        out[name.lower()] = quote_literal(value)
    options = params.get("options", "")
    words = options.replace("--", "-c ").split()
    for i, word in enumerate(words):
        if word == "-c" and i + 1 < len(words) and "=" in words[i + 1]:
            name, _, value = words[i + 1].partition("=")
            out[name.lower().replace("-", "_")] = quote_literal(value.replace("\\ ", " "))
    return out


class PgSession:
    """Everything a PostgreSQL client connection has after startup."""

    def __init__(self, runtime: Runtime, frontend: PgFrontend, *, user: str, database: Database,
                 params: dict[str, str]) -> None:
        self.runtime = runtime
        self.frontend = frontend
        self.user = user
        self.database = database
        self.data_source = database.default_data_source
        self.startup_vars = startup_settings(params)
        self.vars: dict[str, str] = dict(self.startup_vars)  # replayable settings, in the order they were made
        self.pinned: str | None = None
        self.conn: PgBackendConnection | None = None
        self.pool: PgPool | None = None
        self.reclaimable = False
        self.closed = False
        self.tx_status = _I
        self.awaiting = 0  # ReadyForQuery answers due for what we forwarded
        self.open_batch = False  # extended-protocol messages forwarded since the last Sync
        self._queued: list[tuple[int, bytes]] = []  # client messages waiting for a connection
        # Client statement name -> (dbmesh's backend name, Parse body after the name, statement type).
        self.statements: dict[bytes, tuple[bytes, bytes, str]] = {}
        self._new_on_conn: list[tuple[bytes, bytes]] = []  # (client name, backend name) this request prepares
        self._suspects: list[tuple[bytes, bytes]] = []  # ... of a request that failed: checked at the next replay
        self._queued_ready = 0
        self._attaching = False
        # The connection's settings or prepared statements no longer match ours (after RESET, a failed Parse):
        # replay before the next request, but only outside a transaction (a SET inside one would be rolled back
        # with it, and nothing runs in a failed one).
        self._needs_replay = False
        self._announce = False  # forward the ParameterStatus values the replay produces
        self._in_tx = False
        self._tx_state: list[PgStatementInfo] = []  # settings made in the open transaction, held until COMMIT
        self._tx_partial_rollback = False
        self._refresh: set[str] = set()  # settings whose values must be read back from the server
        self._client_paused = False
        # Per-request bookkeeping (a request = everything up to the ReadyForQuery that answers it).
        self._start = 0.0
        self._type = ""
        # The statement text, or its bytes (a Query's, or a Parse body up to its NUL), decoded for the slow log.
        self._sql: str | bytes = ""
        self._pending_state: list[PgStatementInfo] = []
        self._errors_at_start = 0
        self._stat_rows: dict[str, list[float]] = {}
        slow = runtime.slow_log
        self._slow_s = slow.threshold_ms / 1000.0 if slow is not None else float("inf")
        # Our own BackendKeyData for cancel requests (the backend's changes with the connection that serves us).
        self.forward = frontend.writer()  # type: ignore[method-assign,assignment]
        rule = runtime.sharding_rule(database)
        self.sharded: ShardedPg | None = ShardedPg(self, database, rule) if rule is not None else None
        # Live governance: the snapshot our objects come from, and the gate's serial queue (see _gate_worker).
        self._generation = runtime.generation
        self._removed_database: str | None = None
        self._held: list[tuple[int, bytes]] = []
        self._gate_task: asyncio.Task[None] | None = None
        self._unit_done: asyncio.Future[None] | None = None
        self._lost = False  # the request in the gate lost its data source connection (a breaker failure)
        self._continuing = False  # the gate passed the first part of a request; the rest follows unchecked
        self._skip_to_sync = False  # the gate refused the first part of a request; the rest is dropped
        self._local_statements: dict[bytes, str] = {}  # statements dbmesh answers itself (governance DistSQL)
        # Tickets of requests the gate admitted without a task, oldest first: [ReadyForQuery still due, tickets].
        self._inflight: deque[list[Any]] = deque()
        self.pid = runtime.next_pg_pid()
        self.secret = secrets.token_bytes(4)

    @property
    def running(self) -> bool:
        """Requests are in flight (shutdown waits for them)."""
        return bool(self.awaiting or self.open_batch or self._attaching or (
            self.sharded is not None and self.sharded.busy))

    # -- login ---------------------------------------------------------------------------------------------------

    async def start(self) -> dict[str, str]:
        """Lease a connection and apply the startup parameters; returns the ParameterStatus values to report."""
        conn = await self._attach()
        params = dict(conn.params)
        if self.sharded is not None:
            # The sharded path leases its own connections per data source; this one only gave the parameters.
            conn.detach()
            self.conn = None
            if self.pool is not None:
                self.pool.unhold(self)
                self.pool.release(conn)
            return params
        self._offer()
        return params

    def _offer(self) -> None:
        """Idle and holding nothing that ties the connection to us: the pool may take it for another session."""
        conn = self.conn
        if conn is None or self.pinned or self.tx_status != _I or self.open_batch or self.awaiting \
                or not self.runtime.multiplexing or conn.dirty:
            return
        self.reclaimable = True
        pool = self.pool
        if pool is not None and pool._waiters:
            pool.reclaim_for_waiters()

    # -- messages from the client --------------------------------------------------------------------------------

    # The two hot paths below take a request the client sent alone, as framed (see MessageReader.request_kind),
    # and forward it as it came: only when nothing can make the general path (on_messages) do otherwise, that is
    # no gate, no configuration change to take up, a connection held and in step with the session (no replay due,
    # no request being answered, no extended-protocol messages waiting for their Sync), and a client reading.
    # They return False to leave a request to the general path.

    def on_query_frame(self, frame: bytes) -> bool:
        """Hot path for one whole Query message."""
        rt = self.runtime
        if rt.guarded or self._generation != rt.generation or self._gate_task is not None or \
                self._removed_database is not None:
            return False
        if self.sharded is not None:
            if gate.is_governance_text(frame[5:]):
                return False
            self.sharded.on_messages([(_Q, frame[5:])])
            return True
        conn = self.conn
        if conn is None or conn.broken or self._start or self._attaching or self._needs_replay \
                or self._client_paused:
            return False
        text = frame[5:-1]
        body = text.rstrip(b";")
        head = body.rstrip(_DIGITS)
        info = _PLAIN_SHAPES.get(head) if len(head) < len(body) else None
        if info is None:
            # Plain DML only: no session state to track, and never governance DistSQL.
            info = quick_classify(text.decode("utf-8", "replace"))
            if info is None:
                return False
            remember_shape(text, info)
        self._start = perf_counter()
        self._sql = text
        self._type = info.type
        self._errors_at_start = conn.scanner.errors
        self.open_batch = False
        self.reclaimable = False
        self.awaiting += 1
        conn.send(frame, 1)
        return True

    def on_execute_frame(self, data: bytes) -> bool:
        """Hot path for executing a statement: Bind, Describe (portal)/Execute messages, Sync, nothing else. The
        Bind of a client's named statement is renamed to dbmesh's backend name; every other byte goes as it came."""
        rt = self.runtime
        conn = self.conn
        if conn is None or conn.broken or self._start or self.open_batch or self._attaching or self._needs_replay \
                or self._client_paused or rt.guarded or self._generation != rt.generation \
                or self._gate_task is not None or self._removed_database is not None or self.sharded is not None \
                or self._local_statements:
            return False
        name = bind_statement(data)
        if name is None:
            return False  # a malformed Bind: the general path forwards it as it is, for the server to refuse
        target = self._begin_execute(conn, name)
        if target is None:
            return False
        conn.send(rename_bind(data, target) if target else data, 1)
        return True

    def on_messages(self, messages: list[tuple[int, bytes]]) -> None:
        """Forward a batch of client messages (all that one read delivered), in order."""
        rt = self.runtime
        if self._generation != rt.generation and not self.running:
            self._refresh_config()
        if rt.guarded and self.sharded is None and self._gate_task is None and self._removed_database is None \
                and not self._skip_to_sync and rt.traffic_waits is False and not self._has_governance(messages):
            # The gate without a task: no rule can make a statement wait, so each is admitted or rewritten into
            # its refusal now, and the request is forwarded as usual (pipelining kept).
            tickets: list[gate.Ticket] = []
            messages = self._admit_now(messages, tickets)
            if tickets:
                ends = sum(1 for m, _ in messages if m == _Q or m == _S)
                if ends:
                    self._inflight.append([ends, tickets])
                else:
                    for ticket in tickets:
                        ticket.abandon(rt)  # a request whose end comes later: its outcome is not followed
            self._pass(messages)
            return
        if (rt.guarded and self.sharded is None) or self._removed_database is not None or \
                self._gate_task is not None or self._has_governance(messages):
            self._held.extend(messages)
            if self._gate_task is None:
                self._gate_task = rt.spawn(self._gate_worker())
            return
        self._pass(messages)

    def on_parse_execute_frame(self, data: bytes) -> bool:
        """Hot path for the unnamed statement: Parse, Bind, Describe (portal)/Execute messages, Sync, as clients
        that do not prepare send every statement (psycopg below its prepare threshold, JDBC, pgbench -M extended).
        Only plain DML into the unnamed statement and portal, which the general path forwards byte for byte too
        (there is no name to rename): this one only spares taking the request apart."""
        rt = self.runtime
        conn = self.conn
        if conn is None or conn.broken or self._start or self.open_batch or self._attaching or self._needs_replay \
                or self._client_paused or rt.guarded or self._generation != rt.generation \
                or self._gate_task is not None or self._removed_database is not None or self.sharded is not None \
                or data[5] != 0:
            return False
        bind_at = 1 + int.from_bytes(data[1:5], "big")
        if bind_statement(data[bind_at:]) != b"":
            return False
        body = data[6:bind_at]
        info = _PLAIN_PARSES.get(body)
        if info is None:
            text = body.partition(b"\x00")[0]
            info = quick_classify(text.decode("utf-8", "replace"))
            if info is None or gate.is_governance_text(text):
                return False
            if len(_PLAIN_PARSES) >= _PLAIN_SHAPES_MAX:
                _PLAIN_PARSES.clear()
            _PLAIN_PARSES[body] = info
        self._start = perf_counter()
        self._sql = body
        self._type = info.type
        self._errors_at_start = conn.scanner.errors
        self.reclaimable = False
        self.awaiting += 1
        conn.send(data, 1)
        return True

    # -- the statement gate ----------------------------------------------------------------------------------------
    #
    # While a gate applies (a disabled node, a cluster state, traffic rules) requests run one at a time: each is
    # checked, held for a QUEUE rate limit, refused (the error written in order, nothing being in flight), or passed
    # to the normal path and awaited, so that its concurrency permit and breaker outcome are known.

    async def _gate_worker(self) -> None:
        try:
            while self._held and not self.closed:
                unit = self._take_unit()
                if not unit:
                    continue
                terminated = unit[-1][0] in (_Q, _S)
                await self._gate_unit(unit, terminated)
        finally:
            self._gate_task = None

    def _has_governance(self, messages: list[tuple[int, bytes]]) -> bool:
        """Governance DistSQL in a batch (a Query, or a Parse dbmesh must answer itself): it takes the gate's path."""
        for mtype, payload in messages:
            if mtype == _Q:
                text = payload
            elif mtype == _P:
                text = payload.partition(b"\x00")[2]
            elif mtype == _B and self._local_statements:
                if payload.partition(b"\x00")[2].partition(b"\x00")[0] in self._local_statements:
                    return True
                continue
            else:
                continue
            if gate.is_governance_text(text):
                return True
        return False

    def _take_unit(self) -> list[tuple[int, bytes]]:
        if self._skip_to_sync:
            # A refused request's remaining messages, up to its Sync: dropped, and the Sync answered.
            for i, (mtype, _) in enumerate(self._held):
                if mtype == _S:
                    self._held = self._held[i + 1:]
                    self._skip_to_sync = False
                    status = self.sharded.status if self.sharded is not None else bytes((self.tx_status,))
                    self.frontend.write(build_message(ord("Z"), status))
                    break
            else:
                self._held = []
                return []
        """The next request: one Query, or extended-protocol messages up to and including Sync (or all there are)."""
        for i, (mtype, _) in enumerate(self._held):
            if mtype in (_Q, _S, _X):
                unit, self._held = self._held[:i + 1], self._held[i + 1:]
                return unit
        unit, self._held = self._held, []
        return unit

    def _unit_sql(self, unit: list[tuple[int, bytes]]) -> tuple[str | None, bool]:
        """The statement text a request runs (None when unknown) and whether it executes anything."""
        sql: str | None = None
        executes = False
        for mtype, payload in unit:
            if mtype == _Q:
                return payload[:-1].decode("utf-8", "replace"), True
            if mtype == _P:
                sql = payload.partition(b"\x00")[2].partition(b"\x00")[0].decode("utf-8", "replace")
            elif mtype == _B and sql is None:
                name = payload.partition(b"\x00")[2].partition(b"\x00")[0]
                sql = self._statement_sql(name)
            elif mtype == _E:
                executes = True
        return sql, executes

    def _statement_sql(self, name: bytes) -> str | None:
        local = self._local_statements.get(name)
        if local is not None:
            return local
        if self.sharded is not None:
            st = self.sharded.statements.get(name.decode("utf-8", "replace"))
            return st.sql if st is not None else None
        entry = self.statements.get(name)
        return entry[1].partition(b"\x00")[0].decode("utf-8", "replace") if entry is not None else None

    async def _gate_unit(self, unit: list[tuple[int, bytes]], terminated: bool) -> None:
        rt = self.runtime
        continuing, self._continuing = self._continuing, not terminated
        # A unit that continues a request already under way (a pipeline) cannot be refused as a whole: only its
        # statements are checked, below.
        if not continuing:
            sql, _ = self._unit_sql(unit)
            try:
                if self._removed_database is not None:
                    raise errors.AuthError(errors.AUTH_UNKNOWN_DATABASE, database=self._removed_database)
                if sql is not None and gate.is_governance_statement(sql):
                    # Answered by dbmesh on any database, whatever the gate says.
                    self._continuing = False
                    await self._governance(unit, sql)
                    return
            except errors.DbMeshError as exc:
                self._continuing = False
                await self._refuse(unit, exc)
                if not terminated:
                    self._skip_to_sync = True
                return
        if self.sharded is not None or not rt.guarded:
            self._pass(unit)  # a sharded session gates each statement itself (ShardedPg._statement)
            return
        tickets: list[gate.Ticket] = []
        unit = await self._admit_unit(unit, tickets)
        if not terminated:
            self._pass(unit)
            for ticket in tickets:
                ticket.abandon(rt)  # not awaited: its outcome tells the breakers nothing
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unit_done = done
        self._lost = False
        try:
            self._pass(unit)
            if not done.done():
                await done
        finally:
            self._unit_done = None
            for ticket in tickets:
                ticket.finish(rt, self._lost)

    def _executions(self, unit: list[tuple[int, bytes]]) -> Iterator[tuple[int, int, bytes, str | None, int, bytes]]:
        """Each message of a request that runs a statement: (index, type, payload, statement text, index of the Bind
        that made its portal in this request or -1, portal name)."""
        parsed: dict[bytes, str] = {}
        bind_at, bind_sql, portal = -1, None, b""
        for i, (mtype, payload) in enumerate(unit):
            if mtype == _P:
                name, _, rest = payload.partition(b"\x00")
                parsed[name] = rest.partition(b"\x00")[0].decode("utf-8", "replace")
            elif mtype == _B:
                portal, _, rest = payload.partition(b"\x00")
                statement = rest.partition(b"\x00")[0]
                bind_at, bind_sql = i, parsed.get(statement) or self._statement_sql(statement)
            elif mtype == _Q:
                yield i, mtype, payload, payload[:-1].decode("utf-8", "replace"), -1, b""
            elif mtype == _E:
                yield i, mtype, payload, bind_sql, bind_at, portal

    def _admit_one(self, sql: str | None) -> gate.Ticket | None:
        return gate.admit(self.runtime, user=self.user, database=self.database.name,
                          stmt_type=classify_cached(sql).type if sql else "other", sql=sql, dialect="postgres",
                          data_sources=(self.data_source.name,))

    def _refused(self, unit: list[tuple[int, bytes]], i: int, mtype: int, payload: bytes, bind_at: int,
                 portal: bytes, exc: errors.DbMeshError) -> list[tuple[int, bytes]]:
        """The request with its refused statement rewritten into a statement that makes the data source raise
        dbmesh's error: the error comes in its place, the statements before it are answered, the rest are skipped
        to Sync and a transaction fails, all exactly as on the server."""
        self.runtime.metrics.error(exc.entry.code, "postgresql")
        raise_sql = _raise_statement(exc).encode()
        if mtype == _Q:
            return [*unit[:i], (_Q, raise_sql + b"\x00"), *unit[i + 1:]]
        parse = (_P, b"\x00" + raise_sql + b"\x00\x00\x00")
        if bind_at < 0:  # Execute of a portal bound in an earlier request: bind that name anew
            portal = payload.partition(b"\x00")[0]
            return [*unit[:i], parse, (_B, portal + b"\x00\x00" + b"\x00\x00" * 3), *unit[i:]]
        return [*unit[:bind_at], parse, (_B, portal + b"\x00\x00" + b"\x00\x00" * 3), *unit[bind_at + 1:]]

    def _admit_now(self, unit: list[tuple[int, bytes]], tickets: list[gate.Ticket]) -> list[tuple[int, bytes]]:
        """The gate for every statement of a request, when no rule can make one wait (no QUEUE behaviour)."""
        for i, mtype, payload, sql, bind_at, portal in self._executions(unit):
            try:
                ticket = self._admit_one(sql)
            except errors.DbMeshError as exc:
                return self._refused(unit, i, mtype, payload, bind_at, portal, exc)
            if ticket is not None:
                tickets.append(ticket)
        return unit

    async def _admit_unit(self, unit: list[tuple[int, bytes]], tickets: list[gate.Ticket]) -> list[tuple[int, bytes]]:
        """The gate for every statement of a request, waiting where a QUEUE rule says so."""
        for i, mtype, payload, sql, bind_at, portal in self._executions(unit):
            ticket: gate.Ticket | None = None
            try:
                ticket = self._admit_one(sql)
                if ticket is not None and ticket.admission is not None:
                    await gate.wait_admission(ticket.admission)
            except errors.DbMeshError as exc:
                if ticket is not None:
                    ticket.abandon(self.runtime)
                return self._refused(unit, i, mtype, payload, bind_at, portal, exc)
            if ticket is not None:
                tickets.append(ticket)
        return unit

    def _finish_inflight(self, backend_failed: bool) -> None:
        inflight, self._inflight = self._inflight, deque()
        for _, tickets in inflight:
            for ticket in tickets:
                ticket.finish(self.runtime, backend_failed)

    async def _governance(self, unit: list[tuple[int, bytes]], sql: str) -> None:
        """Answer a request that runs one governance statement, in either query protocol."""
        from dbmesh.admin.governance import Done, execute_governance
        from dbmesh.session.admin_reply import pg_parts

        for mtype, payload in unit:
            if mtype == _P and not gate.is_governance_statement(
                    payload.partition(b"\x00")[2].partition(b"\x00")[0].decode("utf-8", "replace")):
                raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="a governance statement",
                                          detail="it must be sent alone, not in one pipeline with other statements")
        executes = any(m in (_Q, _E) for m, _ in unit)
        result = await execute_governance(sql, self.runtime, user=self.user) if executes else None
        while self.running and not self.closed:
            await asyncio.sleep(0.001)  # earlier requests are still being answered
        if self.closed:
            return
        if isinstance(result, Done):
            described, rows, complete = b"", b"", build_message(ord("C"), result.tag.encode() + b"\x00")
            no_data = build_message(ord("n"), b"")
        elif result is not None:
            described, rows, complete = pg_parts(result)
            no_data = described
        else:
            described = rows = complete = b""
            no_data = build_message(ord("n"), b"")
        out: list[bytes] = []
        status = self.sharded.status if self.sharded is not None else bytes((self.tx_status,))
        for mtype, payload in unit:
            if mtype == _Q:
                out += [described or b"", rows, complete, build_message(ord("Z"), status)]
            elif mtype == _P:
                name = payload.partition(b"\x00")[0]
                if name:
                    self._local_statements[name] = sql
                out.append(build_message(ord("1"), b""))
            elif mtype == _B:
                out.append(build_message(ord("2"), b""))
            elif mtype == _D:
                if payload[:1] == b"S":
                    out.append(build_message(ord("t"), b"\x00\x00"))
                out.append(no_data)
            elif mtype == _E:
                out += [rows, complete]
            elif mtype == _C:
                if payload[:1] == b"S":
                    self._local_statements.pop(payload[1:-1], None)
                out.append(build_message(ord("3"), b""))
            elif mtype == _S:
                out.append(build_message(ord("Z"), status))
        self.frontend.write(b"".join(out))

    def _complete_unit(self) -> None:
        inflight = self._inflight
        if inflight:
            head = inflight[0]
            head[0] -= 1
            if not head[0]:
                inflight.popleft()
                for ticket in head[1]:
                    ticket.finish(self.runtime, self._lost)
        done = self._unit_done
        if done is not None and not done.done():
            done.set_result(None)

    async def _refuse(self, unit: list[tuple[int, bytes]], exc: errors.DbMeshError) -> None:
        """Answer a refused request as the server answers a failed one: ErrorResponse, then ReadyForQuery."""
        while self.running and not self.closed:
            await asyncio.sleep(0.001)  # earlier requests are still being answered: the error must come after them
        if self.closed:
            return
        self.runtime.metrics.error(exc.entry.code, "postgresql")
        out = [build_message(ord("E"), render_error(exc))]
        if unit[-1][0] in (_Q, _S):
            if self.sharded is not None:
                if self.sharded.status == b"T":
                    self.sharded.status = b"E"  # an error inside a transaction fails it, as on the server
                status = self.sharded.status
            else:
                # The data source's transaction is untouched by a refusal dbmesh made alone: report it as it is.
                status = bytes((self.tx_status,))
            out.append(build_message(ord("Z"), status))
        elif unit[-1][0] == _X:
            self.frontend.close()
            return
        self.frontend.write(b"".join(out))

    def _refresh_config(self) -> None:
        """A new configuration snapshot: take up our database's new definition between transactions."""
        sharded = self.sharded
        if self.tx_status != _I or self.pinned or self.statements or (
                sharded is not None and (sharded.status != b"I" or sharded.busy)):
            return
        rt = self.runtime
        self._generation = rt.generation
        new = rt.config.databases.get(self.database.name)
        if new is None:
            self._removed_database = self.database.name
            return
        rule = rt.sharding_rule(new)
        if new == self.database and (sharded is None or sharded.rule is rule):
            return
        if new.default_data_source != self.data_source or (sharded is None) != (rule is None):
            self._drop_conn_for_refresh()
        self.database = new
        self.data_source = new.default_data_source
        if sharded is not None:
            statements, portals, hint = sharded.statements, sharded.portals, sharded.hint
            sharded.close()
            self.sharded = ShardedPg(self, new, rule) if rule is not None else None
            if self.sharded is not None:
                self.sharded.statements, self.sharded.portals, self.sharded.hint = statements, portals, hint
        elif rule is not None:
            self.sharded = ShardedPg(self, new, rule)
        self._stat_rows.clear()

    def _drop_conn_for_refresh(self) -> None:
        conn, pool = self.conn, self.pool
        self.conn = None
        self.reclaimable = False
        if pool is not None:
            pool.unhold(self)
            if conn is not None:
                pool.release(conn)

    def _pass(self, messages: list[tuple[int, bytes]]) -> None:
        if self.sharded is not None:
            self.sharded.on_messages(messages)
            return
        if len(messages) >= 3 and messages[0][0] == _B and messages[-1][0] == _S and self._execute_fast(messages):
            return
        items: list[tuple[int, bytes]] = []
        ready = 0
        for mtype, payload in messages:
            if mtype == _Q:
                sql = payload[:-1].decode("utf-8", "replace")
                info = classify_cached(sql)
                self._begin_request(sql, info)
                ready += 1
                self.open_batch = False
                if info.deallocate is not None or info.discard_all:
                    items.append(self._deallocate(info, payload))
                    continue
            elif mtype == _S:
                ready += 1
                self.open_batch = False
            elif mtype in _FORWARDED:
                if mtype == _P:
                    name = payload.partition(b"\x00")[0]
                    existing = self.statements.get(name) if name else None
                    self._on_parse(payload)
                    if existing is not None:
                        # The name is taken: let the server refuse it (42P05), as it would refuse the client.
                        mtype, payload = _P_TAKEN, existing[0] + b"\x00" + payload.partition(b"\x00")[2]
                        self.statements[name] = existing
                elif mtype == _B:
                    self._on_bind(payload)
                elif not self._start:
                    self._begin_request("", None)
                if mtype == _C and payload[:1] == b"S":
                    self.statements.pop(payload[1:-1], None)
                self.open_batch = True
            elif mtype == _F:
                self._begin_request("", None)
                ready += 1
            elif mtype == _X:
                self.frontend.close()
                return
            else:
                self._protocol_violation(f"unexpected message type {chr(mtype)!r}")
                return
            items.append((mtype, payload))
        if not items:
            return
        self.reclaimable = False
        conn = self.conn
        if conn is not None and not conn.broken and not self._attaching and not self._replay_due:
            self.awaiting += ready
            conn.send(self._render(items, conn), ready)
            if self._client_paused and conn.transport is not None:
                conn.transport.pause_reading()
            return
        self._queued.extend(items)
        self._queued_ready += ready
        if not self._attaching:
            self._attaching = True
            self.runtime.spawn(self._attach_and_flush())

    def _begin_execute(self, conn: PgBackendConnection, name: bytes) -> bytes | None:
        """Start the bookkeeping of executing the client's statement `name` (b"": the unnamed one) on `conn` and
        return the backend name its Bind must carry (b"": as sent), or None, changing nothing, when `conn` does not
        hold that statement yet (the general path prepares it there first)."""
        entry = self.statements.get(name) if name else None
        if entry is not None:
            if entry[0] not in conn.prepared:
                return None
            self._type = entry[2]
            self._sql = entry[1]
        else:
            self._type = "execute"
            self._sql = ""
        self._start = perf_counter()
        self._errors_at_start = conn.scanner.errors
        self.reclaimable = False
        self.awaiting += 1
        return entry[0] if entry is not None else b""

    def _execute_fast(self, messages: list[tuple[int, bytes]]) -> bool:
        """Hot path for executing a prepared statement: Bind, [Describe portal], Execute, Sync, nothing else."""
        conn = self.conn
        if conn is None or conn.broken or self._attaching or self._replay_due or self._client_paused \
                or self.open_batch or self._start:
            return False
        for mtype, payload in messages[1:-1]:
            if mtype != _E and not (mtype == _D and payload[:1] == b"P"):
                return False
        bind = messages[0][1]
        portal, _, rest = bind.partition(b"\x00")
        name, _, tail = rest.partition(b"\x00")
        target = self._begin_execute(conn, name)
        if target is None:
            return False
        if target:
            bind = portal + b"\x00" + target + b"\x00" + tail
        out = [build_message(_B, bind)]
        out += [build_message(t, p) for t, p in messages[1:]]
        conn.send(b"".join(out), 1)
        return True

    # -- prepared statements: client names over shared connections ------------------------------------------------
    #
    # A client's named statement is prepared on backends under a dbmesh name shared by every session that prepares
    # the same text and parameter types. Each connection remembers which dbmesh names it holds; a session that
    # moves to another connection prepares its statements there first (see _replay). Messages are rewritten in
    # place so the backend's answers keep the client's order: a Parse of a statement the connection already holds
    # becomes a Parse of the unnamed statement (still answered ParseComplete), and a Close of a client name becomes
    # a Close of a name that never exists (still answered CloseComplete; the backend copy stays for reuse).

    def _render(self, items: list[tuple[int, bytes]], conn: PgBackendConnection) -> bytes:
        out = []
        statements = self.statements
        for mtype, payload in items:
            if mtype < 0:
                if mtype == _P_TAKEN:
                    out.append(build_message(_P, payload))
                    continue
                if mtype == _Q_DEALLOCATE:
                    conn.prepared.discard(payload)
                    payload = b"DEALLOCATE " + payload + b"\x00"
                else:
                    conn.prepared.clear()
                mtype = _Q
            elif mtype == _P:
                name, _, body = payload.partition(b"\x00")
                if name:
                    server = statements[name][0] if name in statements else self.runtime.pg_statement_name(body)
                    if server in conn.prepared:
                        payload = b"\x00" + body
                    else:
                        conn.prepared.add(server)
                        self._new_on_conn.append((name, server))
                        payload = server + b"\x00" + body
            elif mtype == _B:
                portal, _, rest = payload.partition(b"\x00")
                name, _, tail = rest.partition(b"\x00")
                if name in statements:
                    payload = portal + b"\x00" + statements[name][0] + b"\x00" + tail
            elif mtype == _D or mtype == _C:
                if payload[:1] == b"S" and len(payload) > 2:
                    name = payload[1:-1]
                    if mtype == _D and name in statements:
                        payload = b"S" + statements[name][0] + b"\x00"
                    elif mtype == _C:
                        payload = b"S" + _NEVER_A_STATEMENT + b"\x00"
            out.append(build_message(mtype, payload))
        return b"".join(out)

    def _on_parse(self, payload: bytes) -> None:
        name, _, body = payload.partition(b"\x00")
        query = body.partition(b"\x00")[0].decode("utf-8", "replace")
        info = classify_cached(query)
        self._begin_request(query, info)
        if name:
            self.statements[name] = (self.runtime.pg_statement_name(body), body, info.type)

    def _on_bind(self, payload: bytes) -> None:
        if self._start:
            return
        name = payload.partition(b"\x00")[2].partition(b"\x00")[0]
        entry = self.statements.get(name)
        self._begin_request("", None)
        if entry is not None:
            self._type = entry[2]
            self._sql = entry[1].partition(b"\x00")[0].decode("utf-8", "replace")

    def _deallocate(self, info: PgStatementInfo, payload: bytes) -> tuple[int, bytes]:
        """SQL DEALLOCATE / DISCARD ALL against renamed statements: forget the client's names, and rewrite the
        statement so the server drops its copy under dbmesh's name (the tag the client sees stays the same)."""
        if info.discard_all or (info.deallocate or "").upper() == "ALL":
            self.statements.clear()
            return (_Q_FORGET_ALL, payload)
        key = (info.deallocate or "").strip('"').encode()
        entry = self.statements.pop(key, None)
        if entry is None:
            return (_Q, payload)  # not ours (an SQL PREPARE name, or unknown): the server answers
        if any(e[0] == entry[0] for e in self.statements.values()):
            self._needs_replay = True  # another client name shares the copy: prepare it again afterwards
        return (_Q_DEALLOCATE, entry[0])

    def _begin_request(self, sql: str, info: PgStatementInfo | None) -> None:
        if not self._start:
            self._start = perf_counter()
            self._sql = sql
            self._type = info.type if info is not None else "execute"
            conn = self.conn
            self._errors_at_start = conn.scanner.errors if conn is not None else 0
        if info is not None and (info.pin or info.set_vars or info.reset_vars or info.reset_all):
            self._pending_state.append(info)

    def _protocol_violation(self, detail: str) -> None:
        err = errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail=detail)
        self.runtime.metrics.error(err.entry.code, "postgresql")
        self.frontend.send_fatal(err)

    async def _attach_and_flush(self) -> None:
        try:
            conn = await self._attach()
        except errors.DbMeshError as exc:
            self._attaching = False
            self._fail_queued(exc)
            return
        except PgQueryError as exc:
            self._attaching = False
            self._fail_queued(errors.BackendError(errors.BACKEND_REPLAY_FAILED, data_source=self.data_source.name,
                                                  detail=str(exc)))
            return
        self._attaching = False
        if self.closed:
            return
        items, ready = list(self._queued), self._queued_ready
        if not items:
            self._offer()
            return
        self._queued.clear()
        self._queued_ready = 0
        if items:
            self.awaiting += ready
            self._errors_at_start = conn.scanner.errors
            conn.send(self._render(items, conn), ready)

    def _fail_queued(self, exc: errors.DbMeshError) -> None:
        """No connection could be had: answer what was queued with an error, as the server would after one."""
        ready = self._queued_ready
        self._queued.clear()
        self._queued_ready = 0
        self._finish_request(error=True, rows=0)
        self.runtime.metrics.error(exc.entry.code, "postgresql")
        out = [build_message(ord("E"), render_error(exc))]
        out += [build_message(ord("Z"), bytes((self.tx_status,)))] * max(1, ready)
        self.frontend.write(b"".join(out))

    async def _attach(self) -> PgBackendConnection:
        conn = self.conn
        if conn is not None and conn.broken:
            self._drop_conn()
            if self.pinned or self.tx_status != _I:
                raise errors.BackendError(errors.BACKEND_LOST, data_source=self.data_source.name,
                                          detail="the connection holding this session's state was lost")
            conn = None
        if conn is None:
            pool = self.runtime.pg_pool(self.database, self.data_source)
            conn = await pool.acquire((0, 0), self.data_source.database)
            if self.closed:
                pool.release(conn)
                raise errors.SessionError(errors.SESSION_SHUTTING_DOWN)
            self.conn, self.pool = conn, pool
            pool.hold(self)
        try:
            await self._replay(conn)
        except (PgQueryError, errors.DbMeshError):
            self._drop_conn()
            raise
        conn.attach(self)
        return conn

    @property
    def _replay_due(self) -> bool:
        return self._needs_replay and self.tx_status == _I

    async def _replay(self, conn: PgBackendConnection) -> None:
        """Bring the connection's settings to the session's: RESET ALL when it has some we lack, then SET."""
        if self.tx_status != _I and conn is self.conn:
            return  # inside the client's transaction: later (see _needs_replay)
        self._needs_replay = False
        if self._refresh and conn is self.conn:
            names = sorted(self._refresh)
            self._refresh.clear()
            if conn.holder is self:
                conn.detach()
            raw = await conn.run("SELECT " + ", ".join(f"current_setting({quote_literal(n)})" for n in names))
            values = first_row(raw)
            for name, value in zip(names, values, strict=False):
                if value is not None:
                    literal = quote_literal(value.decode("utf-8", "replace"))
                    self.vars.pop(name, None)
                    self.vars[name] = literal
                    conn.vars.pop(name, None)
                    conn.vars[name] = literal
        if conn.vars == self.vars and not conn.prepared_uncertain and not self._refresh \
                and len(conn.prepared) <= MAX_CACHED_STATEMENTS and all(
                server in conn.prepared for server, _b, _t in self.statements.values()):
            return
        if conn.holder is self:
            conn.detach()
        if any(self.vars.get(k) != v for k, v in conn.vars.items()):
            await conn.run("RESET ALL")
            conn.vars.clear()
        todo = [(k, v) for k, v in self.vars.items() if conn.vars.get(k) != v]
        if todo:
            raw = await conn.run("; ".join(f"SET {quote_ident(k)} TO {v}" for k, v in todo))
            conn.vars.update(todo)
            if self._announce:
                statuses = parameter_statuses(raw)
                if statuses:
                    self.frontend.write(b"".join(
                        build_message(ord("S"), k.encode() + b"\x00" + v.encode() + b"\x00") for k, v in statuses))
        self._announce = False
        if conn.prepared_uncertain:
            # A request that prepared statements failed part-way: ask the server which ones exist. Those of that
            # request that do not exist failed, and the client got the error for them: forget those names.
            rows = await conn.run("SELECT name FROM pg_prepared_statements")
            conn.prepared = set(prepared_names(rows))
            conn.prepared_uncertain = False
            for client_name, server in self._suspects:
                entry = self.statements.get(client_name)
                if entry is not None and entry[0] == server and server not in conn.prepared:
                    del self.statements[client_name]
            self._suspects.clear()
        ours = {server for server, _b, _t in self.statements.values()}
        if len(conn.prepared) > MAX_CACHED_STATEMENTS:
            # The connection still holds statements earlier sessions prepared; drop those we do not use, so a
            # pooled connection's cache stays bounded.
            await conn.unprepare(conn.prepared - ours)
        missing = {server: body for server, body, _t in self.statements.values() if server not in conn.prepared}
        if missing:
            await conn.prepare(missing)

    # -- backend side (PgSink) ------------------------------------------------------------------------------------

    def forward(self, data: bytes) -> None:
        # Replaced per instance by the frontend's write (one call less per chunk); kept for the sink protocol.
        self.frontend.write(data)

    def on_ready(self, conn: PgBackendConnection) -> None:
        sc = conn.scanner
        self.tx_status = sc.tx_status
        self.awaiting = 0
        if self.tx_status == _I and not self._in_tx and not self._new_on_conn and not self._pending_state \
                and not self._needs_replay and not self._client_paused and conn.vars == self.vars:
            # The common case: outside a transaction before and after, nothing this request did leaves state to
            # account for, nothing to replay. What the general case below does then, and no more (_offer inlined).
            errors = sc.errors
            error = errors != self._errors_at_start
            self._errors_at_start = errors
            self._finish_request(error, sc.rows)
            own = self.conn
            if own is not None and not self.pinned and not self.open_batch and not own.dirty \
                    and self.runtime.multiplexing:
                self.reclaimable = True
                pool = self.pool
                if pool is not None and pool._waiters:
                    pool.reclaim_for_waiters()
            return
        error = sc.errors != self._errors_at_start
        if self._new_on_conn:
            if error:
                conn.prepared_uncertain = True
                self._needs_replay = True
                self._suspects.extend(self._new_on_conn)
            self._new_on_conn.clear()
        was_in_tx = self._in_tx
        self._in_tx = self.tx_status != _I
        if self._pending_state:
            if not error or self._in_tx:
                for info in self._pending_state:
                    if self._in_tx:
                        # Inside a transaction a setting lasts only if the transaction commits: hold it until then.
                        self._tx_state.append(info)
                        if info.pin:
                            self.pinned = self.pinned or info.pin
                    else:
                        self._apply_state(conn, info)
            self._pending_state.clear()
        if self._in_tx and self._type == "rollback" and not error:
            self._tx_partial_rollback = True  # ROLLBACK TO SAVEPOINT: some settings of this transaction undone
        if was_in_tx and not self._in_tx:
            self._end_transaction(conn, committed=sc.last_command_tag.startswith(b"COMMIT"))
        self._finish_request(error, sc.rows)
        self._errors_at_start = sc.errors
        if self._client_paused and conn.transport is not None:
            conn.transport.resume_reading()
        if conn.vars != self.vars:
            # RESET put the connection back to dbmesh's defaults: restore the client's startup settings now, and
            # tell the client their values (the server reported its defaults when it reset them).
            self._needs_replay = True
            self._announce = True
        if self._replay_due and not self._attaching and not self.closed:
            self._attaching = True
            self.runtime.spawn(self._attach_and_flush())
            return
        self._offer()

    def _end_transaction(self, conn: PgBackendConnection, committed: bool) -> None:
        """The settings made in a transaction count only if it committed (the server undid them otherwise)."""
        infos, self._tx_state = self._tx_state, []
        partial, self._tx_partial_rollback = self._tx_partial_rollback, False
        if not committed or not infos:
            return
        if not partial:
            for info in infos:
                self._apply_state(conn, info)
            return
        # A savepoint was rolled back: which settings survived is the server's knowledge. Ask it.
        if any(info.reset_all for info in infos):
            self.pinned = self.pinned or "RESET ALL and ROLLBACK TO SAVEPOINT in one transaction"
            return
        for info in infos:
            for name in (*(info.reset_vars or ()), *(n for n, _v in info.set_vars or ())):
                self._refresh.add(name)
        self._needs_replay = True

    def _apply_state(self, conn: PgBackendConnection, info: PgStatementInfo) -> None:
        if info.pin:
            self.pinned = self.pinned or info.pin
        if info.reset_all:
            # A server resets to the session's startup values; ours went back to dbmesh's own startup, so the
            # client's startup settings are re-applied before its next request (see _needs_replay).
            self.vars = dict(self.startup_vars)
            conn.vars = {}
            if info.discard_all:
                self.pinned = None  # DISCARD ALL drops prepared statements, listeners, advisory locks, temp tables
                conn.prepared.clear()
        if info.reset_vars:
            for name in info.reset_vars:
                self.vars.pop(name, None)
                conn.vars.pop(name, None)
                if name in self.startup_vars:
                    self.vars[name] = self.startup_vars[name]
        if info.set_vars:
            for name, value in info.set_vars:
                self.vars.pop(name, None)
                self.vars[name] = value
                conn.vars.pop(name, None)
                conn.vars[name] = value

    def _finish_request(self, error: bool, rows: int) -> None:
        if self._inflight or self._unit_done is not None:
            self._complete_unit()
        start = self._start
        if not start:
            return
        self._start = 0.0
        elapsed = perf_counter() - start
        row = self._stat_rows.get(self._type)
        if row is None:
            row = self._stat_rows[self._type] = self.runtime.metrics.statement_row(
                self.database.name, self.data_source.name, self._type)
        observe_row(row, elapsed, error)
        if elapsed >= self._slow_s:
            self._slow(elapsed, rows)

    def _slow(self, elapsed: float, rows: int) -> None:
        slow_log = self.runtime.slow_log
        if slow_log is None:
            return
        sql = self._sql
        if isinstance(sql, bytes):
            sql = sql.partition(b"\x00")[0].decode("utf-8", "replace")
        slow_log.maybe_record(
            start_time=time() - elapsed, user=self.user, database=self.database.name, sql=sql,
            duration_s=elapsed, rows=rows, data_sources=(self.data_source.name,), dialect="postgresql")

    def backend_lost(self, conn: PgBackendConnection, detail: str) -> None:
        self._lost = True
        if self._inflight:
            self._finish_inflight(backend_failed=True)
        mid = conn.scanner.mid_message()
        in_txn = self.tx_status != _I or self.pinned
        awaiting = self.awaiting
        self._drop_conn()
        self.awaiting = 0
        self.open_batch = False
        self._pending_state.clear()
        self._finish_request(True, 0)
        if self.closed:
            return
        err = errors.BackendError(errors.BACKEND_LOST, data_source=conn.data_source.name, detail=detail)
        self.runtime.metrics.error(err.entry.code, "postgresql")
        if mid or in_txn:
            # Part of a message went out, or the transaction and session state died with the connection: the
            # client cannot go on as if nothing happened.
            self.frontend.send_fatal(err)
            return
        if awaiting:
            out = [build_message(ord("E"), render_error(err))]
            out += [build_message(ord("Z"), b"I")] * awaiting
            self.frontend.write(b"".join(out))
        self.tx_status = _I

    # -- connection ownership --------------------------------------------------------------------------------------

    def surrender(self) -> PgBackendConnection | None:
        conn = self.conn
        if conn is None or not self.reclaimable or self.awaiting or self.open_batch or self._attaching:
            return None
        self.conn = None
        self.reclaimable = False
        conn.detach()
        return conn

    def _drop_conn(self) -> None:
        conn, self.conn = self.conn, None
        self.reclaimable = False
        if self.pool is not None:
            self.pool.unhold(self)
            if conn is not None:
                conn.detach()
                self.pool.discard(conn)

    def on_client_paused(self, paused: bool) -> None:
        self._client_paused = paused
        if self.sharded is not None:
            self.sharded.client_paused(paused)
        conn = self.conn
        if conn is not None and conn.transport is not None:
            if paused:
                conn.transport.pause_reading()
            else:
                conn.transport.resume_reading()

    def cancel(self) -> None:
        """CancelRequest from the client: cancel what our backend connection runs, if anything."""
        if self.sharded is not None:
            self.sharded.cancel()
            return
        conn = self.conn
        if conn is not None and (self.awaiting or self.open_batch):
            self.runtime.spawn(conn.cancel())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._complete_unit()
        if self._inflight:
            self._finish_inflight(backend_failed=False)
        if self.sharded is not None:
            self.sharded.close()
        conn, self.conn = self.conn, None
        self.reclaimable = False
        if self.pool is None:
            return
        pool = self.pool
        pool.unhold(self)
        if conn is None:
            return
        conn.detach()
        if conn.broken or self.awaiting or self.open_batch or conn.busy:
            pool.discard(conn)  # mid-request: what the server still sends has nowhere to go
        elif self.pinned or self.tx_status != _I or conn.dirty:
            self.runtime.spawn(pool.reset_and_release(conn))
        else:
            pool.release(conn)

    def backend_key_data(self) -> bytes:
        return struct.pack("!I", self.pid) + self.secret
