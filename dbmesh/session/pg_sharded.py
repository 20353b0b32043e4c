"""Statements of a PostgreSQL session on a sharded logical database: simple and extended query protocol answered by
dbmesh itself, each statement planned, run on its data sources with the extended protocol, and merged.

Guarantees:
- Client messages are processed strictly in order; answers keep the protocol's order (ParseComplete,
  BindComplete, RowDescription/NoData, DataRow..., CommandComplete, ReadyForQuery). After an error in an
  extended-protocol batch every message up to Sync is skipped, as PostgreSQL does.
- Transactions: BEGIN is replayed on each data source the transaction touches; COMMIT/ROLLBACK go to all of them;
  after an error the transaction is failed ('E') and statements are refused until ROLLBACK, as on one server.
  A write touching several data sources outside a transaction runs in an implicit one.
- Rows reach the client as the data source encoded them (text or binary, as the client bound them), unless a
  merge must compute a value.
- A point statement (one unit, no merge) on a connection the session holds is sent as soon as its messages arrive
  and its answer relayed as the data source gives it (see _try_fast); messages arriving meanwhile wait for it.
  Outside transactions, extended-protocol statements run as named statements prepared once per data source
  connection (under the names every session shares, see Runtime.pg_statement_name), at most
  MAX_CACHED_STATEMENTS per connection.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dbmesh import errors
from dbmesh._wire.pg_framing import MessageReader, build_message
from dbmesh.backend.pg_connection import PgBackendConnection, PgQueryError
from dbmesh.config import Database, DataSource
from dbmesh.kernel.execute import assign_lanes
from dbmesh.kernel.merge.buffered import all_buffered, merge_buffered, mergeable_buffered
from dbmesh.kernel.merge.codec_pg import PostgresCodec, pg_codec
from dbmesh.kernel.plan import MergeSpec, Plan, RouteUnit
from dbmesh.protocol.postgresql.messages import (
    Bind,
    DataRow,
    ErrorFields,
    FieldDescription,
    ParameterDescription,
    Parse,
    RowDescription,
    render_error,
)
from dbmesh.session import gate
from dbmesh.session.pg_classify import quick_classify
from dbmesh.session.savepoints import SavepointStack, parse_savepoint
from dbmesh.sharding.autotables import DataNode
from dbmesh.sharding.conditions import Hint

if TYPE_CHECKING:
    from dbmesh.backend.pg_connection import PgPool
    from dbmesh.session.pg_session import PgSession
    from dbmesh.sharding.rule import ShardingRule

log = logging.getLogger("dbmesh.session")

_ROWS_BUFFERED = 256
_FLUSH_BYTES = 1 << 16
_TXN = re.compile(r"^\s*(?:(?P<begin>BEGIN|START\s+TRANSACTION)|(?P<commit>COMMIT|END)|(?P<rollback>ROLLBACK|ABORT))"
                  r"(?P<rest>(?:\s+(?:WORK|TRANSACTION))?(?:\s+[^;]*)?)\s*;?\s*$", re.I | re.S)
_SAVEPOINT = re.compile(r"^\s*(?:SAVEPOINT|RELEASE|ROLLBACK\s+(?:WORK\s+|TRANSACTION\s+)?TO)\b", re.I)
_ROLLBACK_TO = re.compile(r"^\s*ROLLBACK\s+(?:WORK\s+|TRANSACTION\s+)?TO\b", re.I)
_TAG_COUNT = re.compile(rb"^(INSERT \d+|[A-Z ]+?) (\d+)$")

# Type OIDs used to decode bound parameters into values the sharding algorithms understand.
_INT_OIDS = {20, 21, 23, 26}
_FLOAT_OIDS = {700, 701}
_NUMERIC = 1700
_BOOL = 16
_DATE = 1082
_TIMESTAMP = {1114, 1184}
_PG_EPOCH = datetime.datetime(2000, 1, 1)
_PG_EPOCH_DATE = datetime.date(2000, 1, 1)


def _msg(t: bytes, payload: bytes = b"") -> bytes:
    return build_message(t[0], payload)


_PARSE_COMPLETE = _msg(b"1")
_BIND_COMPLETE = _msg(b"2")
_CLOSE_COMPLETE = _msg(b"3")
_NO_DATA = _msg(b"n")
_PORTAL_SUSPENDED = _msg(b"s")
_EMPTY_QUERY = _msg(b"I")
_DESCRIBE_PORTAL = _msg(b"D", b"P\x00")
_EXECUTE_ALL = _msg(b"E", b"\x00\x00\x00\x00\x00")
_SYNC = _msg(b"S")
_READY = {status: _msg(b"Z", status) for status in (b"I", b"T", b"E")}
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")


class _Lease:
    """The session's connection to one data source, kept between statements while reclaimable."""

    __slots__ = ("conn", "ds", "pool", "reclaimable")

    def __init__(self, ds: DataSource, pool: PgPool) -> None:
        self.ds = ds
        self.pool = pool
        self.conn: PgBackendConnection | None = None
        self.reclaimable = False

    def surrender(self) -> PgBackendConnection | None:
        conn = self.conn
        if conn is None or not self.reclaimable or conn.busy or conn.holder is not None:
            return None
        self.conn = None
        self.reclaimable = False
        return conn


class PgShardCursor:
    """Sink for one unit run with the extended protocol: RowDescription, DataRows, CommandComplete or an error.
    Attached to its connection on its own, or one of the units of a lane (see _LaneSink)."""

    def __init__(self, conn: PgBackendConnection, index: int) -> None:
        self.conn = conn
        self.index = index
        self.reader = MessageReader()
        self.row_description: bytes | None = None
        self.fields: tuple[FieldDescription, ...] = ()
        self.rows: list[bytes] = []
        self.tag: bytes | None = None
        self.param_oids: tuple[int, ...] = ()
        self.error: bytes | None = None  # ErrorResponse payload
        self.notices: list[bytes] = []
        self.lost: str | None = None
        self.headed = False  # the answer's first message (RowDescription, NoData, CommandComplete, ...) arrived
        self.on_head: Callable[[], None] | None = None  # told once, when headed
        self.done = False
        self.exclusive = False
        self.abandoned = False
        self.paused = False
        # Futures only for what someone waits for before it happened (most answers are complete when looked at).
        self._waiter: asyncio.Future[None] | None = None
        self._header: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] | None = None

    # PgSink
    def forward(self, data: bytes) -> None:
        self.reader.feed(data)
        while (m := self.reader.read()) is not None:
            self.message(m[0], m[1])
        self.received()

    def message(self, t: int, payload: bytes) -> None:
        """One message of this unit's answer."""
        if t == 0x44:  # 'D'
            if not self.abandoned:
                self.rows.append(payload)
        elif t == 0x54:  # 'T'
            self.row_description = payload
            self.fields = _fields_of(payload)
            self._ready()
        elif t == 0x74:  # 't' ParameterDescription
            self.param_oids = ParameterDescription.decode(payload).type_oids
        elif t == 0x47:  # 'G' CopyInResponse: the data source waits for CopyData
            self._ready()
        elif t == 0x6E:  # 'n' NoData
            self._ready()
        elif t == 0x43:  # 'C'
            self.tag = payload[:-1]
            self._ready()
        elif t == 0x45:  # 'E'
            if self.error is None:
                self.error = payload
            self._ready()
        elif t == 0x4E:  # 'N'
            self.notices.append(payload)
        elif t == 0x49:  # 'I' empty query
            self.tag = b""
            self._ready()

    def received(self) -> None:
        """After a chunk of the answer: pause the data source when enough rows wait, wake a fetch."""
        if len(self.rows) >= _ROWS_BUFFERED and self.exclusive and not self.paused and not self.done:
            transport = self.conn.transport
            if transport is not None:
                self.paused = True
                transport.pause_reading()
        self._wake()

    def on_ready(self, conn: PgBackendConnection) -> None:
        conn.detach()
        conn.tx_status = conn.scanner.tx_status
        self._finish()

    def backend_lost(self, conn: PgBackendConnection, detail: str) -> None:
        self.lost = detail
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self._ready()
        self._wake()
        f = self._finished
        if f is not None and not f.done():
            f.set_result(None)

    def _ready(self) -> None:
        if not self.headed:
            self.headed = True
            f = self._header
            if f is not None and not f.done():
                f.set_result(None)
            if self.on_head is not None:
                self.on_head()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            transport = self.conn.transport
            if transport is not None:
                transport.resume_reading()

    async def wait_done(self) -> None:
        if not self.done:
            f = self._finished
            if f is None or f.done():  # (done here only if a waiter was cancelled)
                f = self._finished = asyncio.get_running_loop().create_future()
            await f

    def set_exclusive(self, exclusive: bool) -> None:
        self.exclusive = exclusive

    def abandon(self) -> None:
        self.abandoned = True
        self.rows.clear()
        self._resume()

    async def header(self) -> None:
        if not self.headed:
            f = self._header
            if f is None or f.done():
                f = self._header = asyncio.get_running_loop().create_future()
            await f

    async def fetch(self) -> list[bytes] | None:
        while not self.rows:
            if self.done:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            self._resume()
            await self._waiter
            self._waiter = None
        rows, self.rows = self.rows, []
        self._resume()
        return rows


class _LaneUnit:
    """One unit of a lane: its cursor, and what running it again needs when its named statement went stale."""

    __slots__ = ("bound", "cursor", "name", "parse", "prepared_here", "retry", "tail")

    def __init__(self, cursor: PgShardCursor, name: bytes | None, parse: bytes, prepared_here: bool,
                 tail: bytes) -> None:
        self.cursor = cursor
        self.name = name  # the named statement it runs, None for an unnamed one
        self.parse = parse  # the Parse payload preparing `name`
        self.prepared_here = prepared_here  # its messages prepare `name` (so a failure at Bind is not staleness)
        self.tail = tail  # Bind, Describe, Execute, Sync
        self.bound = False
        self.retry = False


class _LaneSink:
    """Sink of a lane: the answers to several units sent at once on one connection, each unit its own
    [Parse] Bind Describe Execute Sync and so its answer ending at its own ReadyForQuery, dealt to the units'
    cursors in order. The data source answers such a batch exactly as it would answer each unit sent after the
    previous unit's ReadyForQuery (an error ends at the unit's Sync; a transaction's state carries over), so
    pipelining changes nothing but the round trips.

    A named statement the connection held may have gone stale (its result type changed: 0A000; or the server
    dropped it: 26000). Such an error comes at Bind, before the unit ran: it is kept from the cursor, and once the
    lane is answered those units are prepared again and run again, once (as _FastRelay does for one unit)."""

    __slots__ = ("at", "conn", "pending", "reader", "units")

    def __init__(self, conn: PgBackendConnection, units: list[_LaneUnit]) -> None:
        self.conn = conn
        self.units = units
        self.pending = units  # the units whose answers are due, in order
        self.at = 0  # the unit being answered
        self.reader = MessageReader()

    # PgSink
    def forward(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        last = len(pending) - 1
        first = at = self.at
        unit = pending[at]
        cursor = unit.cursor
        while (m := reader.read()) is not None:
            t, payload = m
            if t == 0x44:  # DataRow: the common case, inline
                if not cursor.abandoned:
                    cursor.rows.append(payload)
            elif t == 0x5A:  # ReadyForQuery: this unit is answered (the lane's last one at on_ready)
                if at < last:
                    if not unit.retry:
                        cursor._finish()
                    at += 1
                    unit = pending[at]
                    cursor = unit.cursor
            elif t == 0x32:  # BindComplete
                unit.bound = True
            elif t == 0x45 and unit.name is not None and not unit.bound:
                if not unit.prepared_here and _sqlstate(payload) in ("0A000", "26000"):
                    unit.retry = True
                    for other in self.units:  # its answer now comes last: no other unit may pause the lane
                        other.cursor.exclusive = False
                else:
                    if unit.prepared_here:  # the Parse may be what failed: prepare again next time
                        self.conn.prepared.discard(unit.name)
                    cursor.message(t, payload)
            else:
                cursor.message(t, payload)
        self.at = at
        for i in range(first, at + 1):
            pending[i].cursor.received()

    def on_ready(self, conn: PgBackendConnection) -> None:
        retry = [unit for unit in self.pending if unit.retry]
        if retry:
            for unit in self.pending[self.at:]:  # the batch's last unit, unless it runs again
                if not unit.retry:
                    unit.cursor._finish()
            out = []
            for unit in retry:
                assert unit.name is not None
                unit.retry = False
                unit.prepared_here = True
                conn.prepared.add(unit.name)
                out += [_msg(b"C", b"S" + unit.name + b"\x00"), _msg(b"P", unit.parse), unit.tail]
            retry[-1].cursor.exclusive = True
            self.pending = retry
            self.at = 0
            self.reader = MessageReader()
            conn.send(b"".join(out), len(retry))
            return
        conn.detach()
        conn.tx_status = conn.scanner.tx_status
        for unit in self.pending[self.at:]:
            unit.cursor._finish()

    def backend_lost(self, conn: PgBackendConnection, detail: str) -> None:
        for unit in self.units:
            if not unit.cursor.done:
                unit.cursor.lost = detail
                unit.cursor._finish()


class _Lanes:
    """A plan's units run as kernel.execute.Lanes runs them (at most `budget` connections per data source, units
    beyond that queue on the same connection in plan order, a cursor whose lane still has units after it never
    pauses the data source, every connection quiet before it is given back), except that all units of a lane are
    sent at once (see _LaneSink): one round trip per lane instead of one per unit. A lane whose connection the
    session holds ready is started at once, without a task."""

    __slots__ = ("cursors", "failures", "held", "lanes", "owner", "tail", "unheaded", "units", "waiter")

    def __init__(self, owner: ShardedPg, units: Sequence[RouteUnit], budget: int, tail: bytes) -> None:
        self.owner = owner
        self.units = units
        self.tail = tail  # the result-format part of each unit's Bind
        self.lanes = assign_lanes(units, budget)
        self.cursors: list[PgShardCursor | None] = [None] * len(units)
        self.failures: dict[int, BaseException] = {}
        self.held: list[tuple[str, int, PgBackendConnection, _LaneSink]] = []
        self.unheaded = 0  # started cursors not headed yet
        self.waiter: asyncio.Future[None] | None = None  # headers() waiting for them

    async def headers(self) -> None:
        """Wait until every started unit's answer has begun (one wakeup, however many lanes answer apart)."""
        if self.unheaded:
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.waiter = None

    def _headed(self) -> None:
        self.unheaded -= 1
        waiter = self.waiter
        if not self.unheaded and waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def start(self) -> None:
        """Get every lane a connection and send it its units. A lane that gets none fails its units' cursors."""
        owner = self.owner
        waiting: list[tuple[str, int, list[int]]] = []
        for (ds, lane), indexes in self.lanes.items():
            conn = owner._ready_conn(ds) if lane == 0 else None
            if conn is None:
                waiting.append((ds, lane, indexes))
            else:
                self._send(ds, lane, conn, indexes)
        if not waiting:
            return
        results: list[PgBackendConnection | BaseException]
        if len(waiting) == 1:
            try:
                results = [await owner._lane_conn(waiting[0][0], waiting[0][1])]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(*(owner._lane_conn(ds, lane) for ds, lane, _ in waiting),
                                           return_exceptions=True)
        for (ds, lane, indexes), result in zip(waiting, results, strict=True):
            if isinstance(result, BaseException):
                for i in indexes:
                    self.failures[i] = result
            else:
                self._send(ds, lane, result, indexes)

    def _send(self, ds: str, lane: int, conn: PgBackendConnection, indexes: list[int]) -> None:
        owner = self.owner
        # Named statements only outside transactions: a stale one is prepared again and its unit run again
        # (see _LaneSink), which an error inside a transaction would not allow.
        named = owner.status == b"I" and not conn.prepared_uncertain
        out = []
        units = []
        headed = self._headed
        self.unheaded += len(indexes)
        for i in indexes:
            unit = self.units[i]
            cursor = self.cursors[i] = PgShardCursor(conn, i)
            cursor.on_head = headed
            body = _parse_body(unit.sql)
            bind = [b"\x00", b"", b"\x00\x00\x00", _U16.pack(len(unit.params))]  # parameters in text
            for v in unit.params:
                raw = _encode_param(v)
                bind.append(b"\xff\xff\xff\xff" if raw is None else _I32.pack(len(raw)) + raw)
            bind.append(self.tail)
            name = None
            prepared_here = False
            if named:
                name = bind[1] = owner.runtime.pg_statement_name(body)
                if name not in conn.prepared:
                    out.append(owner._prepare_named(conn, name, body))
                    prepared_here = True
            else:
                out.append(_msg(b"P", b"\x00" + body))
            tail = _msg(b"B", b"".join(bind)) + _DESCRIBE_PORTAL + _EXECUTE_ALL + _SYNC
            out.append(tail)
            units.append(_LaneUnit(cursor, name, (name or b"") + b"\x00" + body, prepared_here, tail))
        units[-1].cursor.exclusive = True
        sink = _LaneSink(conn, units)
        self.held.append((ds, lane, conn, sink))
        conn.attach(sink)
        conn.send(b"".join(out), len(indexes))

    def cursor(self, i: int) -> PgShardCursor:
        """Unit `i`'s cursor; raises what kept its lane from a connection."""
        cursor = self.cursors[i]
        if cursor is None:
            raise self.failures.get(i) or errors.InternalError(f"unit {i} was never started")
        return cursor

    async def finish(self) -> None:
        """Drop whatever is still coming and wait until every connection is quiet, then give them back."""
        for cursor in self.cursors:
            if cursor is not None:
                cursor.abandon()
        held, self.held = self.held, []
        for ds, lane, conn, sink in held:
            for unit in sink.units:
                await unit.cursor.wait_done()
            self.owner._lane_done(ds, lane, conn)


@dataclass
class _Statement:
    sql: str
    param_oids: tuple[int, ...]  # as the client declared them (0 = unspecified)
    described: tuple[tuple[int, ...], tuple[FieldDescription, ...] | None, int] | None = None
    fast: bool | None = None  # may take the fast path (see _fast_text), once known


@dataclass(slots=True)
class _Portal:
    statement: _Statement
    params: tuple[Any, ...]
    result_formats: tuple[int, ...]
    plan: Plan | None = None
    error: errors.DbMeshError | None = None
    rows: AsyncIterator[bytes] | None = None  # a suspended SELECT's remaining rows
    sent: int = 0
    finished: tuple[Any, ...] = ()  # a suspended SELECT's lanes, cursors and plan


class _Failed(Exception):
    """A statement failed; carries the ErrorResponse payload to send."""

    def __init__(self, payload: bytes) -> None:
        super().__init__("statement failed")
        self.payload = payload


# Describe results by SQL text (shared: the shape of a statement does not depend on who runs it).
_DESCRIBED: dict[str, tuple[tuple[int, ...], tuple[FieldDescription, ...] | None, int]] = {}


class ShardedPg:
    """The sharding side of one PostgreSQL session."""

    def __init__(self, session: PgSession, database: Database, rule: ShardingRule) -> None:
        from dbmesh.kernel.planner import Planner

        self.session = session
        self.runtime = session.runtime
        self.database = database
        self.rule = rule
        self.planner = Planner(rule, "postgres", self.runtime.parse_cache("postgres"))
        self.leases: dict[str, _Lease] = {}
        self.status = b"I"
        self.begin_sql = "BEGIN"
        self.joined: list[str] = []
        self.hint: Hint | None = None
        self.savepoints = SavepointStack(replace_same_name=False)
        self.statements: dict[str, _Statement] = {}
        self.portals: dict[str, _Portal] = {}
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.out: list[bytes] = []
        self.skipping = False  # after an error in an extended batch: skip to Sync
        self._worker: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.busy = False
        self.in_batch = False  # extended-protocol messages processed since the last Sync
        self._fast: _FastRelay | None = None  # the statement _try_fast sent, until its ReadyForQuery
        # The plan _try_fast made for a statement it then left to the worker (several units, a merge), keyed by
        # exactly what the worker plans it from (Bind payload or Query text, statement text, parameter types,
        # hint); kept only until the next batch of client messages, so the worker does not plan it again.
        self._planned: tuple[bytes | str, str, tuple[int, ...], Hint | None, Plan] | None = None
        self._unfast_plan: Plan | None = None
        from dbmesh.session.pg_session import MAX_CACHED_STATEMENTS

        self._max_prepared = MAX_CACHED_STATEMENTS

    # -- plumbing ----------------------------------------------------------------------------------------------

    def on_messages(self, messages: list[tuple[int, bytes]]) -> None:
        self._planned = None
        if self._worker is None and self._fast is None and self._try_fast(messages):
            return
        for m in messages:
            self.queue.put_nowait(m)
        if self._worker is None and self._fast is None:
            self.busy = True
            self._worker = self.runtime.spawn(self._work())

    def client_paused(self, paused: bool) -> None:
        if paused:
            self._writable.clear()
        else:
            self._writable.set()
            if self._fast is not None:
                self._fast.resume()

    def _flush(self) -> None:
        if self.out:
            self.session.frontend.write(b"".join(self.out))
            self.out.clear()

    async def _work(self, first: Sequence[tuple[int, bytes]] = ()) -> None:
        """Process client messages in order, `first` (messages that would have been queued first) and then the
        queue; ends when the queue is empty, so that the next batch may take the fast path (a statement _try_fast
        sent always completes before the worker starts again)."""
        try:
            for mtype, payload in first:
                if self.session.closed:
                    break
                await self._message(mtype, payload)
                if sum(len(b) for b in self.out) >= _FLUSH_BYTES:
                    self._flush()
                    await self._writable.wait()
            while not self.session.closed:
                try:
                    mtype, payload = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                await self._message(mtype, payload)
                if sum(len(b) for b in self.out) >= _FLUSH_BYTES:
                    self._flush()
                    await self._writable.wait()
        finally:
            self._worker = None
            self.busy = False
        self._flush()
        self.idle()

    async def _message(self, mtype: int, payload: bytes) -> None:
        if mtype == 0x51:  # 'Q'
            self.skipping = False
            self.in_batch = False
            await self._simple_query(payload[:-1].decode("utf-8", "replace"))
            self._ready()
            return
        if mtype == 0x53:  # 'S' Sync
            self.skipping = False
            self.in_batch = False
            self._ready()
            return
        if mtype == 0x58:  # 'X'
            self.session.frontend.close()
            return
        self.in_batch = True
        if mtype == 0x48:  # 'H' Flush
            self._flush()
            return
        if self.skipping:
            return
        try:
            if mtype == 0x50:
                self._parse(payload)
            elif mtype == 0x42:
                await self._bind(payload)
            elif mtype == 0x44:
                await self._describe(payload)
            elif mtype == 0x45:
                await self._execute(payload)
            elif mtype == 0x43:
                kind, name = payload[:1], payload[1:-1].decode()
                if kind == b"S":
                    self.statements.pop(name, None)
                else:
                    self.portals.pop(name, None)
                self.out.append(_CLOSE_COMPLETE)
            else:
                raise errors.ProtocolError(errors.PROTOCOL_UNSUPPORTED_COMMAND,
                                           command=f"message {chr(mtype)!r} on a sharded logical database")
        except _Failed as exc:
            self._extended_error(exc.payload)
        except errors.DbMeshError as exc:
            self._extended_error(render_error(exc))
        except PgQueryError as exc:
            self._extended_error(_error_payload(exc.sqlstate, exc.message))
        except Exception as exc:  # a bug must still answer the client, or it waits forever
            log.exception("[BUG] sharded PostgreSQL message %r failed", chr(mtype))
            self._extended_error(render_error(errors.InternalError(f"{type(exc).__name__}: {exc}")))

    def _extended_error(self, payload: bytes) -> None:
        self.out.append(_msg(b"E", payload))
        self.skipping = True
        if self.status == b"T":
            self.status = b"E"

    def _ready(self) -> None:
        self.out.append(_msg(b"Z", self.status))
        self._flush()
        self.session._complete_unit()

    # -- fast path ---------------------------------------------------------------------------------------------
    #
    # A point statement (one route unit, no merge) on a connection the session already holds and that is ready for
    # it is sent as soon as its messages arrive, without the worker, and the data source's answer is relayed as it
    # comes (see _FastRelay): no task, no queue, no await per message. Only statements whose answer the general
    # path would produce from the data source's answer alone take it; everything else (and anything that would need
    # a round trip first: a connection, settings, a transaction joining a data source, a statement description)
    # goes to the worker unchanged.

    def _try_fast(self, messages: list[tuple[int, bytes]]) -> bool:
        """Send one statement now, when `messages` are a Query or [Parse] Bind [Describe portal] Execute Sync for a
        point statement. Everything is checked before anything is recorded or sent: False leaves no trace."""
        if self.skipping or self.in_batch or self.status == b"E" or self.session.closed \
                or not self._writable.is_set() or self.runtime.guarded:
            return False
        first = messages[0][0]
        if first == 0x51:  # 'Q'
            if len(messages) != 1:
                return False
            sql = messages[0][1][:-1].decode("utf-8", "replace")
            m = None if sql[:6].upper() in _PLAIN_HEADS else _TXN.match(sql)  # (no such head starts one)
            if m is not None:
                if not m.group("begin"):
                    return False
                self._begin(m, sql)  # no data source is involved yet
                self._ready()
                return True
            if not _fast_text(sql):
                return False
            route = self._fast_route(sql, ())
            if route is None:
                if self._unfast_plan is not None:
                    self._planned = (sql, sql, (), self.hint, self._unfast_plan)
                    self._unfast_plan = None
                return False
            self._fast_send(*route, b"\x00\x00", simple=True, describe=True,
                            query=messages[0][1] if route[2].sql == sql else None)
            return True
        return self._try_fast_extended(messages)

    def _try_fast_extended(self, messages: list[tuple[int, bytes]]) -> bool:
        n = len(messages)
        if n < 3 or n > 5 or messages[-1][0] != 0x53 or messages[-2][0] != 0x45:  # ... Execute, Sync
            return False
        i = 0
        parse: Parse | None = None
        if messages[0][0] == 0x50:
            try:
                parse = Parse.decode(messages[0][1])
            except ValueError:
                return False  # the worker reports it
            if parse.name and parse.name in self.statements:
                return False  # the worker refuses it (42P05)
            i = 1
        if messages[i][0] != 0x42:
            return False
        bind = messages[i][1]
        try:
            portal, statement, param_formats, raw_params, result_at = _bind_parts(bind)
            result_formats = _result_formats(bind, result_at)
            portal_text, statement_name = _text(portal), _text(statement)
        except (ValueError, IndexError, struct.error):
            return False  # the worker reports it
        portal_name = portal + b"\x00"
        describe = False
        if i + 1 < n - 2:
            if i + 2 != n - 2 or messages[i + 1][0] != 0x44 or messages[i + 1][1] != b"P" + portal_name:
                return False
            describe = True
        if messages[n - 2][1] != portal_name + b"\x00\x00\x00\x00":  # Execute of this portal, all rows
            return False
        st: _Statement | None
        if parse is not None and statement_name == parse.name:
            st = _Statement(parse.query, parse.param_oids)
        else:
            st = self.statements.get(statement_name)
        if st is None:
            return False
        if st.fast is None:
            st.fast = _fast_text(st.sql)
        if not st.fast:
            return False
        oids = st.param_oids
        if raw_params and (len(oids) != len(raw_params) or 0 in oids):
            described = _described_now(st)
            if described is None:
                return False
            oids = described[0]
        try:
            nf = len(param_formats)
            values = tuple(_decode_param(raw, 0 if nf == 0 else param_formats[0] if nf == 1 else param_formats[k],
                                         oids[k] if k < len(oids) else 0) for k, raw in enumerate(raw_params))
        except Exception:  # whatever it is, the worker decodes again and reports it
            return False
        route = self._fast_route(st.sql, values)
        if route is None:
            plan, self._unfast_plan = self._unfast_plan, None
            if plan is None:
                return False
            described = _described_now(st) if describe else None
            if describe and described is None:
                self._planned = (bind, st.sql, oids, self.hint, plan)  # the worker asks a data source first
                return False
            # Several units or a merge: Parse, Bind and Describe answered here as the worker would answer them
            # (nothing among them waits), Execute and Sync left to the worker, which runs the plan made here.
            if parse is not None:
                self.statements[parse.name] = st if statement_name == parse.name else _Statement(parse.query,
                                                                                                parse.param_oids)
                self.out.append(_PARSE_COMPLETE)
            portal_obj = self.portals[portal_text] = _Portal(st, values, result_formats, plan=plan)
            self.out.append(_BIND_COMPLETE)
            if described is not None:
                self.out.append(_portal_description(described[1], portal_obj.result_formats))
            self.in_batch = True
            self.busy = True
            self._worker = self.runtime.spawn(self._work(messages[n - 2:]))
            return True
        if parse is not None:
            self.statements[parse.name] = st if statement_name == parse.name else _Statement(parse.query,
                                                                                            parse.param_oids)
            self.out.append(_PARSE_COMPLETE)
        self.portals[portal_text] = _Portal(st, values, result_formats, plan=route[3])
        self._fast_send(*route, bind[result_at:], simple=False, describe=describe)
        return True

    def _fast_route(self, sql: str, values: tuple[Any, ...]) -> tuple[_Lease, PgBackendConnection, RouteUnit,
                                                                       Plan] | None:
        """The one unit of a point statement and the held connection that can run it now, or None (and, when the
        statement has several units or a merge, its plan in _unfast_plan)."""
        self._unfast_plan = None
        try:
            plan = self.planner.plan(sql, values, hint=self.hint)
        except Exception:  # whatever it is, the worker plans again and reports it
            return None
        if len(plan.units) != 1 or plan.merge is not None:
            self._unfast_plan = plan
            return None
        unit = plan.units[0]
        lease = self.leases.get(unit.data_source)
        if lease is None:
            return None
        conn = lease.conn
        if conn is None or conn.broken or conn.busy or conn.holder is not None or conn.vars != self.session.vars:
            return None
        if self.status != b"I" and unit.data_source not in self.joined:
            return None
        return lease, conn, unit, plan

    def _fast_send(self, lease: _Lease, conn: PgBackendConnection, unit: RouteUnit, plan: Plan,
                   result_formats: bytes, *, simple: bool, describe: bool, query: bytes | None = None) -> None:
        """Send one unit as the worker would, except that the data source gets Describe only when the client's answer
        needs the RowDescription (a Describe of the portal: the data source's own description of the portal is the
        answer, current even after its table changed), that a statement of the extended protocol outside a
        transaction runs as a named statement prepared once per connection, and that a simple Query's unit goes as
        a simple Query (`query`: the client's own Query payload, when the unit's SQL is its text).
        `result_formats` is the result-format part of a Bind payload, as the client sent it."""
        lease.reclaimable = False
        if simple:
            # The data source answers a Query of one statement (_fast_text refuses several) with what it answers
            # Parse, Bind, Describe, Execute, Sync with, less ParseComplete, BindComplete and NoData, which the
            # relay drops for a Query anyway: [RowDescription] DataRow... CommandComplete, or an error.
            relay = _FastRelay(self, lease, simple=True, name=None, prepared_here=False, tail=b"", body=b"")
            conn.attach(relay)
            self._fast = relay
            self.busy = True
            conn.send(build_message(0x51, query if query is not None else unit.sql.encode() + b"\x00"), 1)
            return
        body = _parse_body(unit.sql)
        name = b""
        prepare = b""
        if not simple and self.status == b"I" and not conn.prepared_uncertain:
            # Named only outside transactions: a stale named statement (its result type changed under it) is
            # re-prepared and run again (see _FastRelay), which an error inside a transaction would not allow.
            name = self.runtime.pg_statement_name(body)
            if name not in conn.prepared:
                prepare = self._prepare_named(conn, name, body)
        bind = [b"\x00", name, b"\x00\x00\x00", _U16.pack(len(unit.params))]  # parameters in text
        for v in unit.params:
            raw = _encode_param(v)
            bind.append(b"\xff\xff\xff\xff" if raw is None else _I32.pack(len(raw)) + raw)
        bind.append(result_formats)
        tail = _msg(b"B", b"".join(bind)) + (_DESCRIBE_PORTAL if describe else b"") + _EXECUTE_ALL + _SYNC
        relay = _FastRelay(self, lease, simple=simple, name=name or None, prepared_here=bool(prepare), tail=tail,
                           body=body)
        head = prepare if name else _msg(b"P", b"\x00" + body)
        conn.attach(relay)
        self._fast = relay
        self.busy = True
        conn.send(head + tail, 1)

    def _prepare_named(self, conn: PgBackendConnection, name: bytes, body: bytes) -> bytes:
        """Messages preparing `name` on `conn` (recorded as prepared; _FastRelay forgets it if the Parse fails).
        The connection's cache is bounded: at the bound, every statement it holds is closed first."""
        out = []
        if len(conn.prepared) >= self._max_prepared:
            out += [_msg(b"C", b"S" + old + b"\x00") for old in conn.prepared]
            conn.prepared.clear()
        # Close first: a name the connection's record does not know may still exist on the server.
        out.append(_msg(b"C", b"S" + name + b"\x00"))
        out.append(_msg(b"P", name + b"\x00" + body))
        conn.prepared.add(name)
        return b"".join(out)

    def _fast_finished(self, relay: _FastRelay) -> None:
        self._fast = None
        if relay.error is not None and self.status == b"T":
            self.status = b"E"
        self.out.append(_READY[self.status])
        self._flush()
        self.busy = False
        self.session._complete_unit()
        if self.session.closed:
            return
        if not self.queue.empty():
            self.busy = True
            self._worker = self.runtime.spawn(self._work())
        else:
            self.idle()

    # -- connections -------------------------------------------------------------------------------------------

    def _lease_of(self, ds_name: str) -> _Lease:
        lease = self.leases.get(ds_name)
        if lease is None:
            ds = self.database.data_sources.get(ds_name)
            if ds is None:
                raise errors.InternalError(f"route unit names unknown data source {ds_name!r}")
            lease = self.leases[ds_name] = _Lease(ds, self.runtime.pg_pool(self.database, ds))
        return lease

    async def _prepare_conn(self, conn: PgBackendConnection) -> None:
        from dbmesh.session.pg_session import quote_ident

        want = self.session.vars
        if conn.vars == want:
            return
        if any(want.get(k) != v for k, v in conn.vars.items()):
            await conn.run("RESET ALL")
            conn.vars.clear()
        todo = [(k, v) for k, v in want.items() if conn.vars.get(k) != v]
        if todo:
            await conn.run("; ".join(f"SET {quote_ident(k)} TO {v}" for k, v in todo))
            conn.vars.update(todo)

    async def _sticky(self, ds_name: str) -> PgBackendConnection:
        lease = self._lease_of(ds_name)
        lease.reclaimable = False
        conn = lease.conn
        if conn is not None and conn.broken:
            self._drop(lease)
            conn = None
            if self.status != b"I" and ds_name in self.joined:
                raise errors.BackendError(errors.BACKEND_LOST, data_source=ds_name,
                                          detail="the connection holding this session's transaction was lost")
        if conn is None:
            conn = await lease.pool.acquire((0, 0), lease.ds.database)
            if self.session.closed:
                lease.pool.release(conn)
                raise errors.SessionError(errors.SESSION_SHUTTING_DOWN)
            lease.conn = conn
            lease.pool.hold(lease)
        try:
            await self._prepare_conn(conn)
            if self.status != b"I" and ds_name not in self.joined:
                await conn.run(self.begin_sql)
                for sp in self.savepoints.entries:  # a late joiner gets the transaction's savepoints too
                    await conn.run(f"SAVEPOINT {sp.name}")
                self.joined.append(ds_name)
        except (PgQueryError, errors.DbMeshError):
            self._drop(lease)
            raise
        return conn

    def _drop(self, lease: _Lease) -> None:
        conn, lease.conn = lease.conn, None
        lease.reclaimable = False
        lease.pool.unhold(lease)
        if conn is not None:
            lease.pool.discard(conn)

    async def _lane_conn(self, ds_name: str, lane: int) -> PgBackendConnection:
        if lane == 0:
            return await self._sticky(ds_name)
        lease = self._lease_of(ds_name)
        conn = await lease.pool.acquire((0, 0), lease.ds.database)
        try:
            await self._prepare_conn(conn)
        except (PgQueryError, errors.DbMeshError):
            lease.pool.discard(conn)
            raise
        return conn

    def _lane_done(self, ds_name: str, lane: int, conn: PgBackendConnection) -> None:
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
        if self.status != b"I":
            return
        for lease in self.leases.values():
            if lease.conn is not None and not lease.conn.dirty and self.runtime.multiplexing:
                lease.reclaimable = True
                if lease.pool._waiters:
                    lease.pool.reclaim_for_waiters()

    def cancel(self) -> None:
        """CancelRequest: cancel whatever our connections are running."""
        for lease in self.leases.values():
            conn = lease.conn
            if conn is not None and conn.busy:
                self.runtime.spawn(conn.cancel())

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for lease in self.leases.values():
            conn, lease.conn = lease.conn, None
            lease.pool.unhold(lease)
            if conn is None:
                continue
            if conn.busy or conn.broken:
                lease.pool.discard(conn)
            elif self.status != b"I" or conn.dirty or conn.vars or conn.tx_status != ord("I"):
                self.runtime.spawn(lease.pool.reset_and_release(conn))
            else:
                lease.pool.release(conn)
        self.leases.clear()

    # -- simple query ------------------------------------------------------------------------------------------

    async def _simple_query(self, sql: str) -> None:
        if not sql.strip().strip(";").strip():
            self.out.append(_EMPTY_QUERY)
            return
        try:
            await self._statement(sql, (), None, describe=True, max_rows=0, portal=None)
        except _Failed as exc:
            self.out.append(_msg(b"E", exc.payload))
            if self.status == b"T":
                self.status = b"E"
        except errors.DbMeshError as exc:
            self.out.append(_msg(b"E", render_error(exc)))
            if self.status == b"T":
                self.status = b"E"
        except PgQueryError as exc:
            self.out.append(_msg(b"E", _error_payload(exc.sqlstate, exc.message)))
            if self.status == b"T":
                self.status = b"E"
        except Exception as exc:  # a bug must still answer the client, or it waits forever
            log.exception("[BUG] sharded query failed: %s", sql)
            self.out.append(_msg(b"E", render_error(errors.InternalError(f"{type(exc).__name__}: {exc}"))))
            if self.status == b"T":
                self.status = b"E"

    async def _statement(self, sql: str, params: tuple[Any, ...], result_formats: tuple[int, ...] | None, *,
                         describe: bool, max_rows: int, portal: _Portal | None, plan: Plan | None = None) -> None:
        """Run one statement and append its answer (RowDescription if `describe`, rows, CommandComplete)."""
        rt = self.runtime
        if not rt.guarded:
            await self._admitted(sql, params, result_formats, describe=describe, max_rows=max_rows, portal=portal,
                                 plan=plan)
            return
        # The statement gate, per statement: a refusal is this statement's error (a pipeline skips to Sync after
        # it, as after any error), and statements before it were answered already.
        ticket = gate.admit(rt, user=self.session.user, database=self.database.name, stmt_type=_classify(sql).type,
                            sql=sql, dialect="postgres")
        if ticket is not None and ticket.admission is not None:
            try:
                await gate.wait_admission(ticket.admission)
            except errors.DbMeshError:
                ticket.abandon(rt)
                raise
        try:
            await self._admitted(sql, params, result_formats, describe=describe, max_rows=max_rows, portal=portal,
                                 plan=plan)
        finally:
            if ticket is not None:
                ticket.finish(rt, False)

    async def _admitted(self, sql: str, params: tuple[Any, ...], result_formats: tuple[int, ...] | None, *,
                        describe: bool, max_rows: int, portal: _Portal | None, plan: Plan | None = None) -> None:
        if _SAVEPOINT.match(sql):  # before _TXN: ROLLBACK TO SAVEPOINT is not a ROLLBACK
            await self._savepoint(sql)
            return
        m = _TXN.match(sql)
        if m is not None:
            await self._transaction_control(m, sql)
            return
        if self.status == b"E":
            raise _aborted()
        if portal is None and sql.lstrip()[:4].upper() == "COPY":
            await self._copy(sql)
            return
        admin = _admin_parse(sql)
        if admin is not None:
            self._admin(admin)
            return
        info = _classify(sql)
        if info is not None and info.pin:
            raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct=info.pin,
                                      detail="it leaves state on one data source connection, which a sharded "
                                             "logical database cannot keep consistent across data sources")
        if info is not None and (info.set_vars or info.reset_vars or info.reset_all):
            if self.status != b"I":
                raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="SET inside a transaction",
                                          detail="on a sharded logical database, change settings outside "
                                                 "transactions")
            await self._setting(sql, info)
            return
        if plan is None:
            memo, self._planned = self._planned, None
            if memo is not None and memo[0] == sql and not params and memo[3] is self.hint:
                plan = memo[4]  # what _try_fast planned for this very Query text
            else:
                plan = self.planner.plan(sql, params, hint=self.hint)
        await self._execute_plan(plan, result_formats, describe=describe, max_rows=max_rows, portal=portal)

    async def _setting(self, sql: str, info: Any) -> None:
        """SET/RESET outside a transaction: run on the default data source (its ParameterStatus reaches the client)
        and remember it, so every connection the session uses gets it."""
        conn = await self._sticky(self.rule.default_data_source)
        raw = await conn.run(sql)
        for mtype, payload in _messages(raw):
            if mtype in (0x53, 0x43, 0x4E):  # ParameterStatus, CommandComplete, Notice
                self.out.append(_msg(bytes((mtype,)), payload))
        s = self.session
        if info.reset_all:
            s.vars = dict(s.startup_vars)
            conn.vars = {}
        for name in info.reset_vars or ():
            s.vars.pop(name, None)
            conn.vars.pop(name, None)
            if name in s.startup_vars:
                s.vars[name] = s.startup_vars[name]
        for name, value in info.set_vars or ():
            s.vars.pop(name, None)
            s.vars[name] = value
            conn.vars.pop(name, None)
            conn.vars[name] = value

    def _admin(self, stmt: Any) -> None:
        from dbmesh.admin import AdminResult, apply_hint_change, execute_admin

        result = execute_admin(stmt, config=self.runtime.config, database=self.database, dialect="postgres",
                               hint=self.hint)
        if isinstance(result, AdminResult):
            from dbmesh.session.admin_reply import pg_reply

            self.out.append(pg_reply(result))
        else:
            self.hint = apply_hint_change(self.hint, result)
            self.out.append(_msg(b"C", b"SET\x00"))

    def _begin(self, m: re.Match[str], sql: str) -> None:
        """BEGIN / START TRANSACTION: nothing runs yet; each data source gets it when the transaction first
        touches it (see _sticky)."""
        if self.status != b"I":
            self.out.append(_msg(b"N", _error_payload("25001", "there is already a transaction in progress",
                                                      severity="WARNING")))
        else:
            self.status = b"T"
            self.begin_sql = sql.strip().rstrip(";")
            self.joined = []
            self.savepoints.clear()
        tag = b"START TRANSACTION" if m.group("begin").upper().startswith("START") else b"BEGIN"
        self.out.append(_msg(b"C", tag + b"\x00"))

    async def _transaction_control(self, m: re.Match[str], sql: str) -> None:
        if m.group("begin"):
            if self.status == b"E":
                raise _aborted()  # only COMMIT, ROLLBACK and ROLLBACK TO run in a failed transaction
            self._begin(m, sql)
            return
        rollback = bool(m.group("rollback")) or self.status == b"E"
        if self.status == b"I":
            self.out.append(_msg(b"N", _error_payload("25P01", "there is no transaction in progress",
                                                      severity="WARNING")))
            self.out.append(_msg(b"C", (b"ROLLBACK" if m.group("rollback") else b"COMMIT") + b"\x00"))
            return
        await self._end_transaction("ROLLBACK" if rollback else "COMMIT")
        self.out.append(_msg(b"C", (b"ROLLBACK" if rollback else b"COMMIT") + b"\x00"))

    async def _savepoint(self, sql: str) -> None:
        sp = parse_savepoint(sql)
        if sp is None:
            raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="savepoint statement",
                                      detail="write SAVEPOINT name, RELEASE [SAVEPOINT] name or ROLLBACK TO name")
        verb = {"save": "SAVEPOINT", "release": "RELEASE", "rollback": "ROLLBACK"}[sp.action]
        if self.status == b"I":
            raise _Failed(_error_payload("25P01", f"{verb if sp.action != 'rollback' else 'ROLLBACK TO SAVEPOINT'}"
                                                  " can only be used in transaction blocks"))
        if self.status == b"E" and sp.action != "rollback":
            raise _aborted()
        if sp.action != "save" and self.savepoints.find(sp.key) is None:
            raise _Failed(_error_payload("3B001", f'savepoint "{sp.key}" does not exist'))
        results = await asyncio.gather(*(self._end_on(ds, sql) for ds in self.joined), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        self.savepoints.apply(sp)
        if sp.action == "rollback":
            self.status = b"T"  # ROLLBACK TO recovers a failed transaction, as on one server
        self.out.append(_msg(b"C", verb.encode() + b"\x00"))

    async def _end_transaction(self, verb: str) -> None:
        joined, self.joined = self.joined, []
        self.savepoints.clear()
        self.status = b"I"
        results = await asyncio.gather(*(self._end_on(ds, verb) for ds in joined), return_exceptions=True)
        failures = [r for r in results if r is not None]
        if failures:
            first = failures[0]
            if verb == "COMMIT" and len(failures) < len(results):
                log.error("session %s: COMMIT failed on some data sources after others committed: %s",
                          self.session.pid, first)
            if isinstance(first, (errors.DbMeshError, PgQueryError)):
                raise first
            raise errors.BackendError(errors.BACKEND_LOST, data_source="?", detail=str(first))

    async def _end_on(self, ds_name: str, verb: str) -> None:
        lease = self._lease_of(ds_name)
        conn = lease.conn
        if conn is None or conn.broken:
            raise errors.BackendError(errors.BACKEND_LOST, data_source=ds_name,
                                      detail="the connection holding this session's transaction was lost")
        await conn.run(verb)

    # -- COPY --------------------------------------------------------------------------------------------------

    async def _copy(self, sql: str) -> None:
        m = _COPY_FROM.match(sql)
        if m is None:
            # COPY ... TO STDOUT and COPY (query): only where one data source holds everything.
            plan = self.planner.plan(sql, (), hint=self.hint)
            if len(plan.units) != 1:
                raise errors.DbMeshError(errors.SHARDING_UNSUPPORTED, construct="COPY TO", tables=", ".join(
                    plan.tables) or "?", detail="copying out of several data nodes; SELECT the rows instead")
            raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="COPY TO STDOUT",
                                      detail="on a sharded logical database; SELECT the rows instead")
        table = _unquote(m.group("table").split(".")[-1])
        options = _copy_options(m.group("opts") or "")
        csv_format = options.get("format", "text") == "csv"
        if options.get("format") == "binary":
            raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="COPY FROM STDIN (FORMAT binary)",
                                      detail="into a sharded logical database; use text or csv")
        if options.get("header", "false") not in ("false", "off", "0"):
            raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="COPY FROM STDIN with HEADER",
                                      detail="into a sharded logical database; send the rows without a header")
        delimiter = options.get("delimiter", "," if csv_format else "\t")
        delimiter = "\t" if delimiter == "\\t" else delimiter
        null = options.get("null", "" if csv_format else "\\N")
        rule_t = self.rule.table_rule(table)
        if rule_t is not None:
            nodes = list(rule_t.data_nodes)
        elif self.rule.is_broadcast(table):
            nodes = [DataNode(ds, table) for ds in self.rule.data_sources]
        else:
            nodes = [DataNode(self.rule.single_data_source(table), table)]
        implicit = self.status == b"I" and len({n.data_source for n in nodes}) > 1
        if implicit:
            self.status, self.begin_sql, self.joined = b"T", "BEGIN", []
        failed = True
        try:
            columns = [c.strip() for c in m.group("cols").split(",")] if m.group("cols") else None
            meta = await self._columns(nodes[0])
            if columns is None:
                columns = [name for name, _t in meta]
            types = dict(meta)
            names = [_unquote(c).lower() for c in columns]
            key_positions: list[tuple[int, str, str]] = []
            if rule_t is not None:
                for col in sorted(rule_t.sharding_columns):
                    if col not in names:
                        raise errors.DbMeshError(errors.SHARDING_NULL_VALUE, table=table, column=col)
                    key_positions.append((names.index(col), col, types.get(col, "text")))
            col_list = ", ".join(columns)
            self.out.append(_msg(b"G", struct.pack(f"!bH{len(columns)}h", 0, len(columns), *([0] * len(columns)))))
            self._flush()
            copier = _Copier(self, nodes, col_list, m.group("opts") or "", self.rule.merge_max_rows_in_memory)
            splitter = _RecordSplitter(csv_format)
            total = 0
            while True:
                mtype, payload = await self.queue.get()
                if mtype == 0x64:  # CopyData
                    for record in splitter.feed(payload):
                        total += 1
                        await copier.add(self._copy_target(rule_t, nodes, record, key_positions, csv_format,
                                                           delimiter, null, table), record)
                elif mtype == 0x63:  # CopyDone
                    rest = splitter.finish()
                    if rest is not None:
                        total += 1
                        await copier.add(self._copy_target(rule_t, nodes, rest, key_positions, csv_format,
                                                           delimiter, null, table), rest)
                    await copier.done()
                    break
                elif mtype == 0x66:  # CopyFail
                    await copier.fail(payload[:-1].decode("utf-8", "replace"))
                    raise _Failed(_error_payload("57014", "COPY from stdin failed: "
                                                 + payload[:-1].decode("utf-8", "replace")))
                elif mtype in (0x48, 0x53):  # Flush and Sync are ignored during COPY, as the server does
                    continue
                else:
                    await copier.fail("unexpected message during COPY")
                    raise errors.ProtocolError(errors.PROTOCOL_MALFORMED,
                                               detail=f"unexpected message type {chr(mtype)!r} during COPY")
            if broadcast_count := (len(nodes) if rule_t is None and self.rule.is_broadcast(table) else 0):
                total = copier.rows // max(1, broadcast_count)
            self.out.append(_msg(b"C", f"COPY {total}".encode() + b"\x00"))
            failed = False
        finally:
            if implicit:
                await self._end_transaction("ROLLBACK" if failed else "COMMIT")

    def _copy_target(self, rule_t: Any, nodes: list[DataNode], record: bytes, keys: list[tuple[int, str, str]],
                     csv_format: bool, delimiter: str, null: str, table: str) -> list[DataNode]:
        if rule_t is None:
            return nodes
        fields = _split_record(record, csv_format, delimiter, null)
        values = {}
        for pos, col, type_name in keys:
            if pos >= len(fields):
                raise _Failed(_error_payload("22P04", f"missing data for column \"{col}\""))
            values[col] = _typed(fields[pos], type_name)
        return [rule_t.route_value(values, self.hint)]

    async def _columns(self, node: DataNode) -> list[tuple[str, str]]:
        conn = await self._sticky(node.data_source)
        raw = await conn.run(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
            f"AND table_name = '{node.table.replace(chr(39), chr(39) * 2)}' ORDER BY ordinal_position")
        out = []
        for mtype, payload in _messages(raw):
            if mtype == 0x44:
                row = DataRow.decode(payload).values
                out.append(((row[0] or b"").decode(), (row[1] or b"").decode()))
        if not out:
            raise _Failed(_error_payload("42P01", f'relation "{node.table}" does not exist'))
        return out

    # -- extended query ----------------------------------------------------------------------------------------

    def _parse(self, payload: bytes) -> None:
        p = Parse.decode(payload)
        if p.name and p.name in self.statements:
            raise _Failed(_error_payload("42P05", f'prepared statement "{p.name}" already exists'))
        self.statements[p.name] = _Statement(p.query, p.param_oids)
        self.out.append(_PARSE_COMPLETE)

    async def _describe_statement(self, st: _Statement) -> tuple[tuple[int, ...], tuple[FieldDescription, ...] | None,
                                                                   int]:
        """Parameter types, visible result columns and shard row width of a statement, learnt from a data source
        once per SQL text."""
        described = _described_now(st)
        if described is not None:
            return described
        hit = await self._describe_on_backend(st)
        if len(_DESCRIBED) > 4096:
            _DESCRIBED.clear()
        _DESCRIBED[st.sql] = hit
        described = _described_now(st)
        assert described is not None
        return described

    async def _describe_on_backend(self, st: _Statement) -> tuple[tuple[int, ...], tuple[FieldDescription, ...] | None,
                                                                    int]:
        n = _param_count(st.sql)
        plan: Plan | None = None
        first_error: Exception | None = None
        for dummy in (0, "0", datetime.datetime(2000, 1, 1)):
            try:
                plan = self.planner.plan(st.sql, (dummy,) * n, hint=self.hint)
                break
            except errors.DbMeshError as exc:
                first_error = first_error or exc
        if plan is None:
            assert first_error is not None
            raise first_error
        unit = plan.units[0]
        conn = await self._sticky(unit.data_source)
        cursor = PgShardCursor(conn, 0)
        conn.attach(cursor)
        oids = st.param_oids + (0,) * max(0, n - len(st.param_oids)) if len(unit.params) == n else ()
        conn.send(_msg(b"P", Parse("", unit.sql, oids).payload()) + _msg(b"D", b"S\x00") + _msg(b"S"), 1)
        await cursor.wait_done()
        if cursor.lost is not None:
            self._drop(self._lease_of(unit.data_source))
            raise errors.BackendError(errors.BACKEND_LOST, data_source=unit.data_source, detail=cursor.lost)
        if cursor.error is not None:
            raise _Failed(cursor.error)
        fields = cursor.fields if cursor.row_description is not None else None
        width = len(fields) if fields else 0
        visible = plan.merge.visible if plan.merge is not None else width
        if fields is not None:
            fields = fields[:visible]
        params = cursor.param_oids if len(cursor.param_oids) == n else (0,) * n
        return params, fields, width

    async def _bind(self, payload: bytes) -> None:
        b = Bind.decode(payload)
        st = self.statements.get(b.statement)
        if st is None:
            raise _Failed(_error_payload("26000", f'prepared statement "{b.statement}" does not exist'))
        txn = _TXN.match(st.sql)
        if self.status == b"E" and not ((txn is not None and not txn.group("begin")) or _ROLLBACK_TO.match(st.sql)):
            # As PostgreSQL: in a failed transaction only COMMIT, ROLLBACK and ROLLBACK TO can even be bound.
            raise _aborted()
        oids: tuple[int, ...] = st.param_oids
        if b.params and (len(oids) != len(b.params) or 0 in oids):
            oids = (await self._describe_statement(st))[0]
        values = tuple(_decode_param(b.params[i], b.param_format(i), oids[i] if i < len(oids) else 0)
                       for i in range(len(b.params)))
        portal = _Portal(st, values, b.result_formats)
        if txn is None and self.status != b"E" and not _SAVEPOINT.match(st.sql):
            memo, self._planned = self._planned, None
            if memo is not None and memo[0] == payload and memo[1] == st.sql and memo[2] == oids \
                    and memo[3] is self.hint:
                portal.plan = memo[4]  # what _try_fast planned for this very Bind of this statement
            else:
                try:
                    portal.plan = self.planner.plan(st.sql, values, hint=self.hint)
                except errors.DbMeshError as exc:
                    raise _Failed(render_error(exc)) from exc
        self.portals[b.portal] = portal
        self.out.append(_BIND_COMPLETE)

    async def _describe(self, payload: bytes) -> None:
        kind, name = payload[:1], payload[1:-1].decode()
        if kind == b"S":
            st = self.statements.get(name)
            if st is None:
                raise _Failed(_error_payload("26000", f'prepared statement "{name}" does not exist'))
            oids, fields, _w = await self._describe_statement(st)
            self.out.append(_msg(b"t", struct.pack(f"!H{len(oids)}I", len(oids), *oids)))
            self.out.append(_NO_DATA if fields is None else _msg(b"T", RowDescription(fields).payload()))
            return
        portal = self.portals.get(name)
        if portal is None:
            raise _Failed(_error_payload("34000", f'portal "{name}" does not exist'))
        if _TXN.match(portal.statement.sql):
            self.out.append(_NO_DATA)
            return
        _oids, fields, _w = await self._describe_statement(portal.statement)
        self.out.append(_portal_description(fields, portal.result_formats))

    async def _execute(self, payload: bytes) -> None:
        name = payload[:payload.index(b"\x00")].decode()
        max_rows = struct.unpack_from("!i", payload, len(name) + 1)[0]
        portal = self.portals.get(name)
        if portal is None:
            raise _Failed(_error_payload("34000", f'portal "{name}" does not exist'))
        if portal.rows is not None:
            await self._emit_rows(portal.rows, max_rows, portal, tag_prefix=b"SELECT")
            return
        await self._statement(portal.statement.sql, portal.params, portal.result_formats, describe=False,
                              max_rows=max_rows, portal=portal, plan=portal.plan)

    # -- execution ---------------------------------------------------------------------------------------------

    def _lanes(self, plan: Plan, result_formats: tuple[int, ...], width: int | None) -> _Lanes:
        budget = 1 if self.status != b"I" else self.rule.max_connections_size_per_query
        formats = result_formats
        if len(formats) > 1 and width is not None and len(formats) < width:
            formats = formats + (0,) * (width - len(formats))  # derived columns come back as text
        return _Lanes(self, plan.units, budget, _result_formats_bytes(formats))

    def _ready_conn(self, ds_name: str) -> PgBackendConnection | None:
        """The connection _sticky would give for `ds_name` when it needs no round trip first, else None."""
        lease = self.leases.get(ds_name)
        if lease is None:
            return None
        conn = lease.conn
        if conn is None or conn.broken or conn.busy or conn.holder is not None or conn.vars != self.session.vars:
            return None
        if self.status != b"I" and ds_name not in self.joined:
            return None
        lease.reclaimable = False
        return conn

    async def _execute_plan(self, plan: Plan, result_formats: tuple[int, ...] | None, *, describe: bool,
                            max_rows: int, portal: _Portal | None) -> None:
        if self.runtime.traffic is None:
            await self._run_plan(plan, result_formats, describe=describe, max_rows=max_rows, portal=portal)
            return
        with gate.breakers(self.runtime, self.database.name, plan):
            await self._run_plan(plan, result_formats, describe=describe, max_rows=max_rows, portal=portal)

    async def _run_plan(self, plan: Plan, result_formats: tuple[int, ...] | None, *, describe: bool,
                        max_rows: int, portal: _Portal | None) -> None:
        if plan.kind == "ddl":
            # Descriptions learnt by statement text may be stale once a table changes (PostgreSQL's own prepared
            # statements are re-planned then): forget them all.
            _DESCRIBED.clear()
        implicit = plan.kind == "dml" and self.status == b"I" and len({u.data_source for u in plan.units}) > 1
        if implicit:
            self.status = b"T"
            self.begin_sql = "BEGIN"
            self.joined = []
        formats = result_formats or ()
        width = None
        if plan.merge is not None and len(formats) > 1 and portal is not None:
            width = (await self._describe_statement(portal.statement))[2]
        lanes = self._lanes(plan, formats, width)
        failed = False
        try:
            await lanes.start()
            cursors = [lanes.cursor(i) for i in range(len(plan.units))]
            await lanes.headers()
            self._check(plan, cursors)
            head = next((c for c in cursors if c.row_description is not None), None)
            if head is None:
                # No result set: wait for every unit, then one CommandComplete summing their counts.
                for c in cursors:
                    await c.wait_done()
                self._check(plan, cursors)
                for c in cursors:
                    for n in c.notices:
                        self.out.append(_msg(b"N", n))
                self.out.append(_msg(b"C", _sum_tags([c.tag for c in cursors if c.tag is not None]) + b"\x00"))
                return
            visible = plan.merge.visible if plan.merge is not None else len(head.fields)
            if portal is not None:
                _check_description(portal.statement, head.fields[:visible])
            if describe:
                rd = head.row_description if visible == len(head.fields) else RowDescription(
                    head.fields[:visible]).payload()
                assert rd is not None
                self.out.append(_msg(b"T", rd))
            if plan.merge is None and len(cursors) == 1:
                rows: AsyncIterator[bytes] = _drain(cursors[0])
            else:
                from dbmesh.kernel.merge import merge

                spec = plan.merge
                if spec is None:
                    spec = MergeSpec(visible=visible)
                assert head.row_description is not None
                codec = _codec_of(head.row_description, head.fields)
                if not (portal is not None and max_rows > 0) and _mergeable_now(spec, cursors):
                    await self._emit_merged_now(spec, cursors, codec)
                    for c in cursors:
                        await c.wait_done()
                    self._check(plan, cursors)
                    return
                rows = merge(spec, cursors, codec, max_rows=self.rule.merge_max_rows_in_memory, dialect="postgres")
            single = cursors[0] if plan.merge is None and len(cursors) == 1 else None
            if portal is not None and max_rows > 0:
                portal.finished = (lanes, cursors, plan)
                suspended = await self._emit_rows(rows, max_rows, portal, tag_prefix=b"SELECT", single=single)
                if suspended:
                    lanes = None  # type: ignore[assignment]  # the portal owns them until it completes
                    return
            else:
                await self._emit_rows(rows, 0, None, tag_prefix=b"SELECT", single=single)
            for c in cursors:
                await c.wait_done()
            self._check(plan, cursors)
        except BaseException:
            failed = True
            raise
        finally:
            if lanes is not None:
                await lanes.finish()
            if implicit:
                await self._end_transaction("ROLLBACK" if failed else "COMMIT")

    async def _emit_rows(self, rows: AsyncIterator[bytes], max_rows: int, portal: _Portal | None, *,
                         tag_prefix: bytes, single: PgShardCursor | None = None) -> bool:
        """Send rows; with a row limit, stop and answer PortalSuspended. True when suspended. `single`: the one
        unit's cursor, when its rows go to the client as they are: its error, notices and command tag (INSERT ...
        RETURNING, SHOW, FETCH) are the answer's, as if the client ran the statement on that data source."""
        out = self.out
        n = portal.sent if portal is not None else 0
        count = 0
        size = 0
        async for row in rows:
            out.append(build_message(0x44, row))
            n += 1
            count += 1
            size += len(row)
            if size >= _FLUSH_BYTES:
                self._flush()
                size = 0
                await self._writable.wait()
            if max_rows and count >= max_rows:
                assert portal is not None
                portal.sent = n
                portal.rows = rows
                out.append(_PORTAL_SUSPENDED)
                return True
        if portal is not None and portal.rows is not None:
            # The portal's last batch: its lanes can now be released.
            lanes, cursors, plan = portal.finished
            portal.rows = None
            for c in cursors:
                await c.wait_done()
            await lanes.finish()
            self._check(plan, cursors)
        tag = tag_prefix + b" " + str(n).encode()
        if single is not None:
            await single.wait_done()  # at once: its rows were drained to the end
            if single.lost is not None:
                raise errors.BackendError(errors.BACKEND_LOST, data_source=single.conn.data_source.name,
                                          detail=single.lost)
            if single.error is not None:
                raise _Failed(single.error)  # instead of CommandComplete, as the data source answered
            for notice in single.notices:
                out.append(_msg(b"N", notice))
            if single.tag:
                tag = single.tag
        out.append(build_message(0x43, tag + b"\x00"))
        return False

    async def _emit_merged_now(self, spec: MergeSpec, cursors: Sequence[PgShardCursor], codec: PostgresCodec) -> None:
        """_emit_rows of kernel.merge.merge's rows when _mergeable_now (see _merge_now): the same messages, the
        same flushes, and rows merged before a merge error are sent before it, as the streamed merge sends them."""
        merged: list[bytes] = []
        failure: Exception | None = None
        try:
            _merge_now(spec, cursors, codec, merged)
        except Exception as exc:
            failure = exc
        out = self.out
        size = 0
        for row in merged:
            out.append(build_message(0x44, row))
            size += len(row)
            if size >= _FLUSH_BYTES:
                self._flush()
                size = 0
                await self._writable.wait()
        if failure is not None:
            raise failure
        out.append(build_message(0x43, b"SELECT %d\x00" % len(merged)))

    def _check(self, plan: Plan, cursors: Sequence[PgShardCursor]) -> None:
        for c in cursors:
            if c.lost is not None:
                raise errors.BackendError(errors.BACKEND_LOST, data_source=plan.units[c.index].data_source,
                                          detail=c.lost)
            if c.error is not None:
                raise _Failed(c.error)


class _FastRelay:
    """Sink of a statement ShardedPg._try_fast sent: relays the data source's answer as it arrives, as the answer
    to the client's messages (its Parse was answered when sent; ReadyForQuery is the session's own; a simple Query
    gets no BindComplete or NoData).

    A named statement the connection held may have gone stale (its result type changed: 0A000; or the server
    dropped it: 26000). Such an error comes at Bind, before anything was relayed and before the statement ran:
    the statement is prepared again and the unit runs again, once."""

    __slots__ = ("body", "bound", "error", "lease", "name", "owner", "paused", "prepared_here", "reader",
                 "retried", "retry", "simple", "size", "tail")

    def __init__(self, owner: ShardedPg, lease: _Lease, *, simple: bool, name: bytes | None, prepared_here: bool,
                 tail: bytes, body: bytes) -> None:
        self.owner = owner
        self.lease = lease
        self.simple = simple
        self.name = name
        self.prepared_here = prepared_here
        self.tail = tail
        self.body = body
        self.reader = MessageReader()
        self.error: bytes | None = None  # the data source's ErrorResponse payload, or dbmesh's for a lost connection
        self.retry = False
        self.retried = False
        self.bound = False  # the data source answered the Bind
        self.paused = False
        self.size = 0

    # PgSink
    def forward(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        out = self.owner.out
        while (m := reader.read()) is not None:
            t, payload = m
            if t == 0x44 or t == 0x43 or t == 0x4E or t == 0x54:  # DataRow, CommandComplete, Notice, RowDescription
                out.append(build_message(t, payload))
                self.size += len(payload)
            elif t == 0x32 or t == 0x6E:  # BindComplete, NoData
                self.bound = True
                if not self.simple:
                    out.append(_BIND_COMPLETE if t == 0x32 else _NO_DATA)
            elif t == 0x45:  # ErrorResponse: sent at ReadyForQuery, unless the connection is lost first
                if self.name is not None and not self.bound and not self.prepared_here and not self.retried \
                        and _sqlstate(payload) in ("0A000", "26000"):
                    self.retry = True
                elif self.error is None:
                    self.error = payload
            elif t == 0x49:  # EmptyQueryResponse
                out.append(_EMPTY_QUERY)
            # ParseComplete and CloseComplete answer dbmesh's own messages; ParameterStatus and notifications are
            # the worker's to drop as well.
        if self.size >= _FLUSH_BYTES:
            self.size = 0
            self.owner._flush()
            if not self.owner._writable.is_set() and not self.paused:
                transport = self.lease.conn.transport if self.lease.conn is not None else None
                if transport is not None:
                    self.paused = True
                    transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            conn = self.lease.conn
            if conn is not None and conn.transport is not None:
                conn.transport.resume_reading()

    def on_ready(self, conn: PgBackendConnection) -> None:
        if self.retry:
            self.retry = False
            self.retried = True
            self.reader = MessageReader()
            self.prepared_here = True
            assert self.name is not None
            conn.prepared.add(self.name)
            conn.send(_msg(b"C", b"S" + self.name + b"\x00") + _msg(b"P", self.name + b"\x00" + self.body)
                      + self.tail, 1)
            return
        conn.detach()
        if self.error is not None:
            self.owner.out.append(_msg(b"E", self.error))
            if self.prepared_here and self.name is not None:
                # The Parse may be what failed: prepare again next time (Close first makes that safe either way).
                conn.prepared.discard(self.name)
        self.owner._fast_finished(self)

    def backend_lost(self, conn: PgBackendConnection, detail: str) -> None:
        # As the worker reports it: the loss, not whatever the data source said before closing (a FATAL).
        owner = self.owner
        if self.lease.conn is conn:
            owner._drop(self.lease)
        self.error = render_error(errors.BackendError(errors.BACKEND_LOST, data_source=self.lease.ds.name,
                                                      detail=detail))
        owner.out.append(_msg(b"E", self.error))
        owner._fast_finished(self)


def _sqlstate(error_payload: bytes) -> str:
    for part in error_payload.split(b"\x00"):
        if part[:1] == b"C":
            return part[1:].decode("ascii", "replace")
    return ""


class _Copier:
    """Streams COPY rows to their data nodes: one COPY open per data source at a time (a connection runs one
    statement); rows for a node that must wait are held in memory, bounded by the merge row cap."""

    def __init__(self, owner: ShardedPg, nodes: list[DataNode], columns: str, options: str, cap: int) -> None:
        self.owner = owner
        self.columns = columns
        self.options = options
        self.cap = cap
        self.open: dict[str, tuple[DataNode, PgShardCursor]] = {}
        self.pending: dict[DataNode, list[bytes]] = {}
        self.held = 0
        self.rows = 0
        self.tags: list[bytes] = []
        self.out: dict[str, list[bytes]] = {}

    async def add(self, targets: list[DataNode], record: bytes) -> None:
        for node in targets:
            self.rows += 1
            current = self.open.get(node.data_source)
            if current is None:
                await self._start(node)
                current = self.open[node.data_source]
            if current[0] == node:
                buf = self.out.setdefault(node.data_source, [])
                buf.append(record)
                if len(buf) >= 512:
                    self._send(node.data_source)
            else:
                self.pending.setdefault(node, []).append(record)
                self.held += 1
                if self.held > self.cap:
                    raise errors.DbMeshError(errors.MERGE_LIMIT_EXCEEDED, limit=self.cap,
                                             construct="COPY into several tables on one data source")

    async def _start(self, node: DataNode) -> None:
        conn = await self.owner._sticky(node.data_source)
        cursor = PgShardCursor(conn, 0)
        conn.attach(cursor)
        sql = f'COPY "{node.table}" ({self.columns}) FROM STDIN {self.options}'
        conn.send(build_message(0x51, sql.encode() + b"\x00"), 1)
        await cursor.header()
        if cursor.error is not None or cursor.lost is not None:
            await cursor.wait_done()
            self._raise(cursor)
        self.open[node.data_source] = (node, cursor)

    def _send(self, ds: str) -> None:
        buf = self.out.get(ds)
        if buf:
            _node, cursor = self.open[ds]
            cursor.conn.send(build_message(0x64, b"".join(buf)), 0)
            buf.clear()

    async def _close(self, ds: str) -> None:
        self._send(ds)
        _node, cursor = self.open.pop(ds)
        cursor.conn.send(build_message(0x63, b""), 0)
        await cursor.wait_done()
        self._raise(cursor)

    @staticmethod
    def _raise(cursor: PgShardCursor) -> None:
        if cursor.lost is not None:
            raise errors.BackendError(errors.BACKEND_LOST, data_source=cursor.conn.data_source.name,
                                      detail=cursor.lost)
        if cursor.error is not None:
            raise _Failed(cursor.error)

    async def done(self) -> None:
        for ds in list(self.open):
            await self._close(ds)
        while self.pending:
            node, records = next(iter(self.pending.items()))
            del self.pending[node]
            await self._start(node)
            self.out[node.data_source] = records
            await self._close(node.data_source)

    async def fail(self, reason: str) -> None:
        for _node, cursor in list(self.open.values()):
            cursor.conn.send(build_message(0x66, reason.encode() + b"\x00"), 0)
            await cursor.wait_done()
        self.open.clear()


class _RecordSplitter:
    """Cuts a COPY data stream into records (lines; in CSV a quoted field may hold newlines)."""

    def __init__(self, csv_format: bool) -> None:
        self.csv = csv_format
        self.buf = b""
        self.in_quotes = False
        self.scan = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        start = 0
        i = self.scan
        buf = self.buf
        while True:
            nl = buf.find(b"\n", i)
            if nl < 0:
                break
            if self.csv:
                self.in_quotes ^= buf.count(b'"', i, nl) % 2 == 1
                if self.in_quotes:
                    i = nl + 1
                    continue
            record = buf[start:nl + 1]
            if record not in (b"\\.\n", b"\\.\r\n"):
                out.append(record)
            start = i = nl + 1
        self.buf = buf[start:]
        self.scan = i - start
        return out

    def finish(self) -> bytes | None:
        rest = self.buf
        self.buf = b""
        if not rest or rest in (b"\\.",):
            return None
        return rest + b"\n"


def _split_record(record: bytes, csv_format: bool, delimiter: str, null: str) -> list[str | None]:
    text = record.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
    if not text:
        return [None if null == "" else ""]  # an empty line is one field: NULL when NULL is the empty string
    if csv_format:
        import csv

        reader = csv.reader([text], delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
        raw = next(reader, [])
        # csv drops the quoting that tells '' (empty string) from an unquoted empty field (NULL): look again.
        fields: list[str | None] = []
        for value, piece in zip(raw, _csv_pieces(text, delimiter), strict=False):
            fields.append(None if value == null and not piece.startswith('"') else value)
        return fields
    parts = text.split(delimiter)
    return [None if p == null else _unescape(p) for p in parts]


def _csv_pieces(text: str, delimiter: str) -> list[str]:
    pieces: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == delimiter and not quoted:
            pieces.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    pieces.append("".join(cur))
    return pieces


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        ch = field[i]
        if ch == "\\" and i + 1 < len(field):
            nxt = field[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt.isdigit():
                j = i + 1
                while j < len(field) and j < i + 4 and field[j] in "01234567":
                    j += 1
                out.append(chr(int(field[i + 1:j], 8)))
                i = j
                continue
            out.append(nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _typed(text: str | None, type_name: str) -> Any:
    """A COPY field as the Python value the sharding algorithms expect for its column type."""
    if text is None:
        return None
    t = type_name.lower()
    if t in ("integer", "bigint", "smallint"):
        return int(text)
    if t == "numeric":
        return Decimal(text)
    if t in ("real", "double precision"):
        return float(text)
    if t == "date":
        return datetime.date.fromisoformat(text)
    if t.startswith("timestamp"):
        return datetime.datetime.fromisoformat(text)
    return text


_COPY_FROM = re.compile(r"^\s*COPY\s+(?P<table>\"[^\"]+\"|[\w.]+)\s*(?:\((?P<cols>[^)]*)\))?\s*FROM\s+STDIN\b"
                        r"(?P<opts>[^;]*?)\s*;?\s*$", re.I | re.S)
_OPTION = re.compile(r"(\w+)\s+('(?:[^']|'')*'|\w+)", re.S)


def _copy_options(text: str) -> dict[str, str]:
    """COPY options in both syntaxes: `WITH (FORMAT csv, DELIMITER ';')` and the old `CSV DELIMITER ';'`."""
    body = text.strip()
    if body.upper().startswith("WITH"):
        body = body[4:].strip()
    body = body.strip("()")
    opts: dict[str, str] = {}
    words = body.replace(",", " ").split()
    if words and words[0].lower() in ("csv", "binary"):
        opts["format"] = words[0].lower()
    for key, value in _OPTION.findall(body):
        k = key.lower()
        v = value[1:-1].replace("''", "'") if value.startswith("'") else value.lower()
        if k in ("format", "delimiter", "null", "header", "quote", "escape", "encoding"):
            opts[k] = v
    if "header" not in opts and re.search(r"\bheader\b", body, re.I):
        opts["header"] = "true"
    return opts


def _unquote(name: str) -> str:
    name = name.strip()
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _mergeable_now(spec: MergeSpec, cursors: Sequence[PgShardCursor]) -> bool:
    """Whether _merge_now can merge: an ungrouped, non-DISTINCT merge over answers that are all complete and
    small (every row already buffered: nothing to wait for, no backpressure to apply)."""
    return mergeable_buffered(spec) and all_buffered(cursors, _ROWS_BUFFERED)


def _merge_now(spec: MergeSpec, shards: Sequence[PgShardCursor], codec: PostgresCodec, out: list[bytes]) -> None:
    """kernel.merge.merge's rows for an ungrouped, non-DISTINCT `spec` over complete shard answers, appended to
    `out` in one synchronous pass (kernel.merge.buffered: an error leaves in `out` the rows merge() yields before
    raising it); the shards' buffered rows are taken."""
    batches = []
    for shard in shards:
        rows, shard.rows = shard.rows, []
        batches.append(rows)
    merge_buffered(spec, batches, codec, out)


async def _drain(cursor: PgShardCursor) -> AsyncIterator[bytes]:
    while (batch := await cursor.fetch()) is not None:
        for row in batch:
            yield row


def _sum_tags(tags: Sequence[bytes]) -> bytes:
    """One CommandComplete tag for several units: counts summed ("INSERT 0 n", "UPDATE n", ...)."""
    if not tags:
        return b""
    first = tags[0]
    m = _TAG_COUNT.match(first)
    if m is None:
        return first
    total = 0
    for t in tags:
        mm = _TAG_COUNT.match(t)
        if mm is not None:
            total += int(mm.group(2))
    return m.group(1) + b" " + str(total).encode()


def _fast_text(sql: str) -> bool:
    """Whether a statement's text allows the fast path: no transaction control, savepoint, COPY, admin statement,
    setting or statement with session state, and not empty (each has its own handling in the worker)."""
    if sql[:6].upper() in _PLAIN_HEADS:
        info = quick_classify(sql)  # what _classify answers first, without its layers
        if info is not None:
            return not (info.pin or info.set_vars or info.reset_vars or info.reset_all or info.discard_all
                        or info.deallocate is not None)
    else:
        if _SAVEPOINT.match(sql) or _TXN.match(sql) or sql.lstrip()[:4].upper() == "COPY" \
                or not sql.strip().strip(";").strip():
            return False
        try:
            if _admin_parse(sql) is not None:
                return False
        except errors.DbMeshError:
            return False
    info = _classify(sql)
    return not (info is not None and (info.pin or info.set_vars or info.reset_vars or info.reset_all
                                      or info.discard_all or info.deallocate is not None))


def _bind_parts(payload: bytes) -> tuple[bytes, bytes, tuple[int, ...], list[bytes | None], int]:
    """Portal, statement, parameter formats and parameters of a Bind payload, and where its result formats start.
    Raises ValueError, IndexError or struct.error when it is malformed."""
    end = payload.index(0)
    portal = payload[:end]
    pos = end + 1
    end = payload.index(0, pos)
    statement = payload[pos:end]
    pos = end + 1
    (nf,) = _U16.unpack_from(payload, pos)
    formats = struct.unpack_from(f"!{nf}h", payload, pos + 2)
    pos += 2 + 2 * nf
    (n,) = _U16.unpack_from(payload, pos)
    pos += 2
    params: list[bytes | None] = []
    for _ in range(n):
        (length,) = _I32.unpack_from(payload, pos)
        pos += 4
        if length == -1:
            params.append(None)
        elif length < 0:
            raise ValueError(f"invalid parameter length {length}")
        else:
            if pos + length > len(payload):
                raise ValueError("parameter past the end of Bind")
            params.append(payload[pos:pos + length])
            pos += length
    return portal, statement, formats, params, pos


def _text(name: bytes) -> str:
    """A portal or statement name as the protocol messages decode it."""
    return name.decode("utf-8", "surrogateescape")


def _result_formats(bind: bytes, at: int) -> tuple[int, ...]:
    (n,) = _U16.unpack_from(bind, at)
    if at + 2 + 2 * n != len(bind):
        raise ValueError("trailing bytes in Bind")
    return struct.unpack_from(f"!{n}h", bind, at + 2)


# Heads no transaction control, savepoint, COPY or admin statement starts with.
_PLAIN_HEADS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
_BODIES: dict[str, bytes] = {}


def _parse_body(sql: str) -> bytes:
    """A Parse payload after the statement name: the query, no parameter types (the data source infers them)."""
    body = _BODIES.get(sql)
    if body is None:
        if len(_BODIES) > 4096:
            _BODIES.clear()
        body = _BODIES[sql] = sql.encode() + b"\x00\x00\x00"
    return body


def _check_description(st: _Statement, fields: Sequence[FieldDescription]) -> None:
    """The result columns a data source sends must be the ones the statement was described with (told to the
    client, or learnt for its text). After DDL they may not be: as PostgreSQL does for a prepared statement whose
    result changed, the statement fails with 0A000, and the stale description is forgotten so the client's next
    Parse/Describe learns the new one."""
    described = st.described
    if described is None or described[1] is None:
        return
    old = described[1]
    if len(old) == len(fields) and all(a.name == b.name and a.type_oid == b.type_oid and
                                       a.type_modifier == b.type_modifier for a, b in zip(old, fields, strict=True)):
        return
    st.described = None
    if _DESCRIBED.get(st.sql) is not None and _DESCRIBED[st.sql][1] is old:
        del _DESCRIBED[st.sql]
    raise _Failed(_error_payload("0A000", "cached plan must not change result type"))


def _described_now(st: _Statement) -> tuple[tuple[int, ...], tuple[FieldDescription, ...] | None, int] | None:
    """The statement's description if it is known without asking a data source (see _describe_statement)."""
    if st.described is not None:
        return st.described
    hit = _DESCRIBED.get(st.sql)
    if hit is None:
        return None
    oids, fields, width = hit
    if st.param_oids and len(st.param_oids) == len(oids):
        oids = tuple(d or o for d, o in zip(st.param_oids, oids, strict=True))
    st.described = (oids, fields, width)
    return st.described


def _portal_description(fields: tuple[FieldDescription, ...] | None, result_formats: tuple[int, ...]) -> bytes:
    """The answer to Describe of a portal: its columns in the formats the client bound, or NoData."""
    if fields is None:
        return _NO_DATA
    key = (id(fields), result_formats)
    hit = _PORTAL_DESCRIPTIONS.get(key)
    if hit is not None and hit[0] is fields:  # the very tuple (an id may be reused once a tuple is gone)
        return hit[1]
    formats = _formats(result_formats, len(fields))
    described = tuple(FieldDescription(f.name, f.table_oid, f.column_attr, f.type_oid, f.type_size,
                                       f.type_modifier, formats[i]) for i, f in enumerate(fields))
    message = _msg(b"T", RowDescription(described).payload())
    if len(_PORTAL_DESCRIPTIONS) >= _MEMO_SIZE:
        _PORTAL_DESCRIPTIONS.clear()
    _PORTAL_DESCRIPTIONS[key] = (fields, message)  # holds `fields`, so its id stays its own while cached
    return message


# Per statement shape, work whose result depends only on bytes that repeat from one statement to the next
# (a RowDescription payload, a described statement's fields): done once and looked up by those exact bytes or
# that very object. Bounded: emptied when full.
_MEMO_SIZE = 1024
_ROW_DESCRIPTIONS: dict[bytes, tuple[FieldDescription, ...]] = {}
_CODECS: dict[bytes, PostgresCodec] = {}
_PORTAL_DESCRIPTIONS: dict[tuple[int, tuple[int, ...]], tuple[tuple[FieldDescription, ...], bytes]] = {}


def _fields_of(row_description: bytes) -> tuple[FieldDescription, ...]:
    """The fields of a RowDescription payload (decoded once per distinct payload; FieldDescription is frozen).
    A malformed payload raises as RowDescription.decode does, and is not remembered."""
    fields = _ROW_DESCRIPTIONS.get(row_description)
    if fields is None:
        fields = RowDescription.decode(row_description).fields
        if len(_ROW_DESCRIPTIONS) >= _MEMO_SIZE:
            _ROW_DESCRIPTIONS.clear()
        _ROW_DESCRIPTIONS[row_description] = fields
    return fields


def _codec_of(row_description: bytes, fields: tuple[FieldDescription, ...]) -> PostgresCodec:
    """The merge codec of a result described by `row_description` (whose decoded fields are `fields`); codecs
    hold no state of their own between rows, so one serves every statement of a shape."""
    codec = _CODECS.get(row_description)
    if codec is None:
        codec = pg_codec(fields)
        if len(_CODECS) >= _MEMO_SIZE:
            _CODECS.clear()
        _CODECS[row_description] = codec
    return codec


def _result_formats_bytes(formats: tuple[int, ...]) -> bytes:
    """The result-format part of a Bind payload."""
    return _U16.pack(len(formats)) + struct.pack(f"!{len(formats)}h", *formats)


def _formats(codes: tuple[int, ...], n: int) -> tuple[int, ...]:
    if not codes:
        return (0,) * n
    if len(codes) == 1:
        return codes * n
    return codes[:n] + (0,) * max(0, n - len(codes))


def _data_row(values: Sequence[bytes | None]) -> bytes:
    out = [struct.pack("!H", len(values))]
    for v in values:
        if v is None:
            out.append(b"\xff\xff\xff\xff")
        else:
            out.append(struct.pack("!i", len(v)) + v)
    return b"".join(out)


def _aborted() -> _Failed:
    return _Failed(_error_payload("25P02", "current transaction is aborted, commands ignored until end of "
                                           "transaction block"))


def _error_payload(sqlstate: str, message: str, severity: str = "ERROR") -> bytes:
    return ErrorFields((("S", severity), ("V", severity), ("C", sqlstate), ("M", message))).payload()


def _messages(raw: bytes) -> list[tuple[int, bytes]]:
    reader = MessageReader()
    reader.feed(raw)
    out = []
    while (m := reader.read()) is not None:
        out.append(m)
    return out


_PARAM = re.compile(r"\$(\d+)")


def _param_count(sql: str) -> int:
    return max((int(n) for n in _PARAM.findall(sql)), default=0)


def _decode_param(raw: bytes | None, fmt: int, oid: int) -> Any:
    """A bound parameter as a Python value for routing (the data sources receive it re-encoded as text)."""
    if raw is None:
        return None
    if fmt == 0:
        text = raw.decode("utf-8", "replace")
        if oid in _INT_OIDS:
            return int(text)
        if oid == _NUMERIC:
            return Decimal(text)
        if oid in _FLOAT_OIDS:
            return float(text)
        if oid == _BOOL:
            return text.lower() in ("t", "true", "1", "yes", "on")
        if oid == _DATE:
            return datetime.date.fromisoformat(text)
        if oid in _TIMESTAMP:
            return datetime.datetime.fromisoformat(text)
        return text
    if oid in _INT_OIDS:
        return int.from_bytes(raw, "big", signed=oid != 26)
    if oid == 700:
        return struct.unpack("!f", raw)[0]
    if oid == 701:
        return struct.unpack("!d", raw)[0]
    if oid == _BOOL:
        return raw != b"\x00"
    if oid == _NUMERIC:
        return _decode_numeric(raw)
    if oid == _DATE:
        return _PG_EPOCH_DATE + datetime.timedelta(days=struct.unpack("!i", raw)[0])
    if oid in _TIMESTAMP:
        return _PG_EPOCH + datetime.timedelta(microseconds=struct.unpack("!q", raw)[0])
    if oid in (25, 1043, 1042, 19, 0):
        return raw.decode("utf-8", "replace")
    raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct=f"binary parameter of type OID {oid}",
                              detail="bind it in text format on a sharded logical database")


def _decode_numeric(raw: bytes) -> Decimal:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", raw)
    if sign == 0xC000:
        return Decimal("NaN")
    digits = struct.unpack_from(f"!{ndigits}h", raw, 8)
    value = Decimal(0)
    for i, d in enumerate(digits):
        value += Decimal(d).scaleb(4 * (weight - i))
    if sign == 0x4000:
        value = -value
    return value.quantize(Decimal(1).scaleb(-dscale)) if dscale else value.quantize(Decimal(1))


def _encode_param(v: Any) -> bytes | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return b"true" if v else b"false"
    if isinstance(v, bytes):
        return b"\\x" + v.hex().encode()
    if isinstance(v, float):
        return repr(v).encode()
    if isinstance(v, datetime.datetime):
        return v.isoformat(" ").encode()
    if isinstance(v, datetime.date):
        return v.isoformat().encode()
    return str(v).encode()


def _classify(sql: str) -> Any:
    global _classify_cached
    if _classify_cached is None:
        from dbmesh.session.pg_session import classify_cached  # (pg_session imports this module)

        _classify_cached = classify_cached
    return _classify_cached(sql)


_classify_cached: Callable[[str], Any] | None = None
_parse_admin: Callable[[str], Any] | None = None


def _admin_parse(sql: str) -> Any:
    global _parse_admin
    if _parse_admin is None:
        try:
            from dbmesh.admin import parse_admin
        except ImportError:
            return None
        _parse_admin = parse_admin
    return _parse_admin(sql)
