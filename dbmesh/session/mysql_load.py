"""LOAD DATA LOCAL INFILE on a sharded logical database: dbmesh asks the client for the file, cuts it into rows as
the server would read them, and loads each data node's rows with its own LOAD DATA LOCAL, acting as the client.

The design follows the PostgreSQL COPY FROM STDIN split (pg_sharded._copy): the target table's rule decides the
data nodes; a sharded table's rows are routed one by one by their sharding values (rule.route_value, as INSERT
rows are); a broadcast table gets the whole file on every data source, a single table on its own; everything
runs in one transaction (an implicit one unless the client has one open, which the loads join).

Guarantees:
- dbmesh never reads a file: it sends the client the LOCAL INFILE request (only after the statement passed a
  dry run on a data node, so a statement the server refuses is refused before any file is asked for, with the
  server's own error) and splits exactly the bytes the client sent.
- Rows reach their data node byte for byte, in file order, under an explicit FIELDS/LINES clause and character
  set that make the node read them as the splitter did (kernel/load_rows.py). Broadcast and single tables get the
  client's statement and file unchanged.
- A connection runs one statement at a time: one LOAD is open per data source; rows for another node of the same
  data source wait in memory (bounded) and, past a threshold, the open LOAD ends and the other node's starts.
  Several LOADs into one node keep its rows in order, so the result is the same.
- After the request the client is sending, not reading: whatever fails, the rest of its file is read (and
  dropped) before the one answer, OK or ERR, whose sequence id follows its last packet.
- Inside the client's transaction the statement is atomic as on one server: each data source's rows follow a
  savepoint, rolled back to if the statement fails.
- The OK sums the data nodes' affected rows and "Records/Deleted/Skipped/Warnings" (a broadcast table reports
  one data source's counts, as one server would).
"""

from __future__ import annotations

import asyncio
import datetime
import re
from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from dbmesh import errors
from dbmesh._wire.mysql_framing import RESPONSE_RESULT, PacketReader, build_packet, lenenc_int, read_lenenc
from dbmesh.backend.mysql_connection import BackendQueryError, MySQLBackendConnection
from dbmesh.kernel.load_data import LoadData, hex_literal, parse_load_data, quote_ident
from dbmesh.kernel.load_rows import MISSING, FieldRules, RowSplitter
from dbmesh.protocol.mysql.constants import Status
from dbmesh.protocol.mysql.packets import ErrPacket, OkPacket
from dbmesh.sharding.autotables import DataNode

if TYPE_CHECKING:
    from dbmesh.session.mysql_sharded import ShardedMySQL
    from dbmesh.sharding.rule import TableRule

_PACKET = 1 << 16  # file bytes per packet dbmesh sends a data node
_SWITCH = 1 << 20  # bytes a waiting node may hold before the open LOAD on its data source gives way
_CLIENT_HIGH, _CLIENT_LOW = 8 << 20, 1 << 20  # client file bytes buffered: pause reading above, resume below
_INFO_NUMBERS = re.compile(rb"(\w+): (\d+)")
_CODECS = {"utf8": "utf-8", "utf8mb3": "utf-8", "utf8mb4": "utf-8", "latin1": "cp1252", "ascii": "ascii",
           "binary": "latin-1"}
_INTEGER = re.compile(rb"[+-]?[0-9]+")
_NUMBER = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"})
_COM_QUERY = b"\x03"
_ROUTES_KEPT = 1 << 16
_SAVEPOINT = "`dbmesh_load_data`"
_SESSION_STATE_CHANGED = int(Status.SESSION_STATE_CHANGED)


async def load_data(owner: ShardedMySQL, sql: str) -> None:
    """Answer one LOAD DATA statement. Errors raised here come before the file request (sequence id 1)."""
    stmt = await _parse(owner, sql)
    table = stmt.table
    if stmt.schema is not None and stmt.schema.lower() != owner.database.name.lower():
        raise errors.SessionError(errors.STATEMENT_UNSUPPORTED, construct="LOAD DATA into another database",
                                  detail=f"{stmt.schema}.{table} is not in logical database {owner.database.name}")
    if not stmt.local:
        raise errors.DbMeshError(errors.SHARDING_UNSUPPORTED, construct="LOAD DATA INFILE without LOCAL",
                                 tables=table, detail="a file on the server would be a different file on each data "
                                 "source; use LOAD DATA LOCAL INFILE")
    rule = owner.rule
    rule_t = rule.table_rule(table)
    if rule_t is not None and not rule_t.sharding_columns:
        # No sharding column (a hint strategy): every row goes to the one node the hint names.
        nodes = [rule_t.route_value({}, owner.hint)]
        rule_t = None
    elif rule_t is not None:
        nodes = list(rule_t.data_nodes)
    elif rule.is_broadcast(table):
        nodes = [DataNode(ds, table) for ds in rule.data_sources]
    else:
        nodes = [DataNode(rule.single_data_source(table), table)]
    if not owner.autocommit and not owner.txn_open:
        owner._open_transaction("BEGIN")
    plan = _Plan(owner, stmt, nodes, rule_t)
    await plan.prepare()
    await plan.run()


async def _parse(owner: ShardedMySQL, sql: str) -> LoadData:
    """Parse under the session's sql_mode (string literals read differently under NO_BACKSLASH_ESCAPES and
    ANSI_QUOTES): read from the default data source's connection, which carries the session's variables."""
    conn = await owner._sticky(owner.rule.default_data_source)
    rows = await conn.query_rows("SELECT @@sql_mode")
    mode = (rows[0][0] or b"").decode().upper() if rows else ""
    return parse_load_data(sql, backslash_escapes="NO_BACKSLASH_ESCAPES" not in mode,
                           ansi_quotes="ANSI_QUOTES" in mode)


class _Plan:
    """One LOAD DATA statement on a sharded database, from the dry run to the answer."""

    def __init__(self, owner: ShardedMySQL, stmt: LoadData, nodes: list[DataNode], rule_t: TableRule | None) -> None:
        self.owner = owner
        self.stmt = stmt
        self.nodes = nodes
        self.rule_t = rule_t  # set when rows are split by sharding value
        self.template = OkPacket(0, 0, 0, 0, b"Records: 0  Deleted: 0  Skipped: 0  Warnings: 0")
        self.splitter: RowSplitter | None = None
        self.keys: list[tuple[str, str]] = []  # the sharding columns' (name, data type), in splitter field order
        self.codec = "utf-8"
        self.node_sql: dict[DataNode, str] = {}
        # Sharding fields as read -> data node: the same values route the same way for the whole statement.
        self.routes: dict[tuple[Any, ...], DataNode] = {}

    # -- before the file ---------------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Dry-run the statement on a data node (an empty file), so that what the server refuses (an unknown table
        or column, a bad SET or separator, no CLIENT_LOCAL_FILES) is refused with its own error before any file is
        asked for; then check the rows can be routed exactly."""
        stmt, first = self.stmt, self.nodes[0]
        conn = await self.owner._sticky(first.data_source)
        check = None
        if self.rule_t is None:
            for node in self.nodes:
                self.node_sql[node] = stmt.for_table(node.table)
        else:
            check = await self._prepare_split(conn, first)
        raw = await _dry_run(conn, self.node_sql[first])
        self.template = OkPacket.decode(raw)
        if check is not None:
            check()

    async def _prepare_split(self, conn: MySQLBackendConnection, first: DataNode) -> Callable[[], None]:
        """The data nodes' statement and the row splitter; returns the routing checks to run after the dry run."""
        stmt, rule_t = self.stmt, self.rule_t
        assert rule_t is not None
        table = rule_t.logic_table
        rows = await conn.query_rows(
            "SELECT COLUMN_NAME, DATA_TYPE, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = CONVERT({hex_literal(first.table.encode())} USING utf8mb4) ORDER BY ORDINAL_POSITION")
        info = await conn.query_rows("SELECT @@character_set_database, @@sql_mode")
        meta = [((r[0] or b"").decode(), (r[1] or b"").decode().lower(), (r[2] or b"").decode().upper())
                for r in rows]
        types = {name.lower(): data_type for name, data_type, _extra in meta}
        if stmt.columns is None:
            fields = [name.lower() for name, _t, extra in meta if "INVISIBLE" not in extra]
        else:
            fields = [c.lower() for c in stmt.columns]
        charset = stmt.charset or ((info[0][0] or b"").decode().lower() if info else "utf8mb4")
        if charset == "utf8":
            charset = "utf8mb3"
        mode = (info[0][1] or b"").decode().upper() if info else ""
        rules = FieldRules(stmt.field_term, stmt.enclosed, stmt.escape_char("NO_BACKSLASH_ESCAPES" in mode),
                           stmt.line_start, stmt.line_term, charset)
        head = " ".join(w for w in ("LOAD DATA", stmt.priority, "LOCAL INFILE", stmt.file_literal,
                                    stmt.duplicates, "INTO TABLE") if w)
        tail = " ".join(w for w in (f"CHARACTER SET {charset}", rules.clause(), stmt.column_list_sql, stmt.set_sql)
                        if w)
        for node in self.nodes:
            self.node_sql[node] = f"{head} {quote_ident(node.table)} {tail}"
        sharding = sorted(rule_t.sharding_columns)

        def check() -> None:
            if stmt.partition:
                raise _refuse("LOAD DATA ... PARTITION", table, "partitions are per actual table")
            computed = [c for c in stmt.set_targets if c in rule_t.sharding_columns]
            if computed:
                raise _refuse("LOAD DATA ... SET of a sharding column", table,
                              f"SET computes {', '.join(computed)}, so dbmesh cannot tell each row's data node")
            missing = [c for c in sharding if c not in fields]
            if missing:
                raise _refuse("LOAD DATA without the sharding column", table,
                              f"the column list has no {', '.join(missing)}; every row needs its sharding value")
            key = rule_t.key_column
            if key is not None and rule_t.key_generator is not None and key not in fields and \
                    key not in stmt.set_targets:
                raise _refuse("LOAD DATA without the generated key column", table,
                              f"{key} is filled by a key generator on INSERT; give it in the file")
            reason = rules.unsplittable()
            if reason is not None:
                raise _refuse("LOAD DATA with these FIELDS/LINES options", table, reason)
            self.codec = _CODECS.get(charset, "ascii")
            self.keys = [(c, types.get(c, "varchar")) for c in sharding]
            self.splitter = RowSplitter(rules, len(fields), [fields.index(c) for c in sharding], stmt.ignore_lines)

        return check

    # -- the file ------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        owner = self.owner
        session = owner.session
        implicit = not owner.txn_open
        if implicit:
            owner._open_transaction("BEGIN")
        source = _ClientFile(session)
        session.frontend.send_payload(b"\xfb" + self.stmt.file_name, 1)
        session.expect_file(source)
        # Inside the client's transaction a failed statement must leave nothing behind, as on one server: each
        # data source's rows sit after a savepoint until the statement is answered.
        loads = _Loads(self, savepoint=not implicit)
        failure: BaseException | None = None
        try:
            if self.splitter is None:
                await self._copy_everywhere(source, loads)
            else:
                await self._split(source, loads)
            await loads.finish()
        except (errors.DbMeshError, BackendQueryError, OSError) as exc:
            failure = exc
        except Exception as exc:  # a bug must still end the exchange with an answer
            failure = errors.InternalError(f"{type(exc).__name__}: {exc}")
        if failure is not None:
            await loads.abandon()
            await source.drain()
        if session.closed:
            return
        await loads.end_savepoints(rollback=failure is not None)
        if implicit:
            try:
                await owner._finish_transaction("ROLLBACK" if failure is not None else "COMMIT", reply=False)
            except (errors.DbMeshError, BackendQueryError, OSError) as exc:
                failure = failure or exc
        seq = (source.last_seq + 1) & 0xFF
        if failure is not None:
            _send_failure(owner, failure, seq)
            return
        self._reply(loads.results, seq)

    async def _copy_everywhere(self, source: _ClientFile, loads: _Loads) -> None:
        """Broadcast and single tables: every target node reads the client's file as it came."""
        for node in self.nodes:
            await loads.open_for(node)
        while (data := await source.next()) is not None:
            for node in self.nodes:
                await loads.write(node, data)

    async def _split(self, source: _ClientFile, loads: _Loads) -> None:
        splitter = self.splitter
        assert splitter is not None
        route = self._route
        while True:
            data = await source.next()
            rows = splitter.feed(data) if data is not None else splitter.finish()
            # One write per data node per piece of the file: each node's rows keep their order.
            batch: dict[DataNode, list[bytes]] = {}
            for row, fields in rows:
                node = route(fields, splitter.rows)
                parts = batch.get(node)
                if parts is None:
                    batch[node] = [row]
                else:
                    parts.append(row)
            for node, parts in batch.items():
                await loads.write(node, b"".join(parts))
            if data is None:
                return

    def _route(self, fields: tuple[Any, ...], rows: int) -> DataNode:
        node = self.routes.get(fields)
        if node is not None:
            return node
        rule_t = self.rule_t
        assert rule_t is not None
        values: dict[str, Any] = {}
        for (column, data_type), raw in zip(self.keys, fields, strict=True):
            if raw is MISSING:
                raise _refuse("LOAD DATA row without its sharding value", rule_t.logic_table,
                              f"a row near row {rows} ends before column {column}")
            values[column] = None if raw is None else _typed(raw, data_type, self.codec, column, rule_t.logic_table)
        node = rule_t.route_value(values, self.owner.hint)
        if len(self.routes) >= _ROUTES_KEPT:
            self.routes.clear()
        self.routes[fields] = node
        return node

    def _reply(self, results: Sequence[OkPacket], seq: int) -> None:
        owner = self.owner
        if self.rule_t is None and results:
            results = results[:1]  # a broadcast table: every data source holds the same rows, report one
        affected = sum(ok.affected_rows for ok in results)
        warnings = sum(ok.warnings for ok in results)
        sums: dict[bytes, int] = {}
        for ok in results:
            for name, value in _INFO_NUMBERS.findall(_info_text(ok)[0]):
                sums[name] = sums.get(name, 0) + int(value)
        text, prefixed = _info_text(self.template)
        text = _INFO_NUMBERS.sub(lambda m: m.group(1) + b": " + str(sums.get(m.group(1), 0)).encode(), text)
        info = lenenc_int(len(text)) + text if prefixed else text
        owner.session.frontend.send_payload(
            OkPacket(affected, 0, owner.status, min(warnings, 0xFFFF), info).encode(), seq)


def _refuse(construct: str, table: str, detail: str) -> errors.DbMeshError:
    return errors.DbMeshError(errors.SHARDING_UNSUPPORTED, construct=construct, tables=table, detail=detail)


def _info_text(ok: OkPacket) -> tuple[bytes, bool]:
    """An OK packet's info as text, and whether it was length-prefixed (MariaDB prefixes it; session-state
    changes may follow it, and are not carried over)."""
    info = ok.info
    if info:
        try:
            n, pos = read_lenenc(info, 0)
        except ValueError:
            return info, False
        if pos + n == len(info) or (pos + n < len(info) and ok.status & _SESSION_STATE_CHANGED):
            return info[pos:pos + n], True
    return info, False


def _typed(raw: bytes, data_type: str, codec: str, column: str, table: str) -> Any:
    """A sharding field as the value the sharding algorithms get for an INSERT of that column's type. A spelling
    the server would convert (spaces, a fraction in an integer column ...) is refused: its data node would depend
    on the server's conversion."""
    try:
        if data_type in _INTEGER_TYPES:
            if _INTEGER.fullmatch(raw):
                return int(raw)
        elif data_type in ("decimal", "numeric"):
            if _NUMBER.fullmatch(raw) and b"e" not in raw.lower():
                return Decimal(raw.decode())
        elif data_type in ("float", "double", "real"):
            if _NUMBER.fullmatch(raw):
                return float(raw)
        elif data_type == "date":
            return datetime.date.fromisoformat(raw.decode("ascii"))
        elif data_type in ("datetime", "timestamp"):
            text = raw.decode("ascii")
            if len(text) >= 19 and text[10] == " ":
                return datetime.datetime.fromisoformat(text)
        else:
            return raw.decode(codec)
    except (ValueError, InvalidOperation, UnicodeDecodeError):
        pass
    shown = raw[:40].decode("utf-8", "replace")
    raise _refuse("LOAD DATA sharding value", table,
                  f"{shown!r} is not a plain {data_type} value for {column}; the data source would convert it, and "
                  "the data node depends on the converted value")


async def _dry_run(conn: MySQLBackendConnection, sql: str) -> bytes:
    """Run a LOAD DATA LOCAL with an empty file (the connection sends one when nobody takes the file); returns
    the OK payload, raises BackendQueryError with the server's error."""
    raw = await conn.run(_COM_QUERY + sql.encode())
    reader = PacketReader(max_payload=1 << 30)
    reader.feed(raw)
    last = b""
    while (p := reader.read()) is not None:
        last = p
    if not last or last[0] != 0x00:
        raise errors.BackendError(errors.BACKEND_PROTOCOL, data_source=conn.data_source.name,
                                  detail="no OK after an empty LOAD DATA LOCAL file")
    return last


def _send_failure(owner: ShardedMySQL, exc: BaseException, seq: int) -> None:
    frontend = owner.session.frontend
    if isinstance(exc, BackendQueryError):
        frontend.send_err_packet(exc.err.code, exc.err.sqlstate, exc.err.message, seq)
        return
    if not isinstance(exc, errors.DbMeshError):
        exc = errors.BackendError(errors.BACKEND_LOST, data_source="?", detail=str(exc))
    owner.runtime.metrics.error(exc.entry.code, "mysql")
    frontend.send_error(exc, seq)


class _ClientFile:
    """The client's file packets, queued by the session (FileSink) for the loading task."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.ended = False
        self.last_seq = 1
        self.paused = False
        self._wake = asyncio.Event()

    # FileSink (called by the session for each client packet)
    def packet(self, payload: bytes, seq: int) -> bool:
        self.last_seq = seq
        if not payload:
            self.ended = True
        else:
            self.chunks.append(payload)
            self.buffered += len(payload)
            if self.buffered > _CLIENT_HIGH and not self.paused:
                self.paused = True
                self.session.frontend.pause_reading_client()
        self._wake.set()
        return self.ended

    async def next(self) -> bytes | None:
        """The next piece of the file, or None at its end. Raises when the client went away."""
        while not self.chunks:
            if self.ended:
                return None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                if self.session.closed:
                    raise errors.SessionError(errors.SESSION_SHUTTING_DOWN) from None
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered < _CLIENT_LOW:
            self.paused = False
            self.session.frontend.resume_reading_client()
        return data

    async def drain(self) -> None:
        """Read and drop the rest of the file (after a failure the client still sends it)."""
        try:
            while await self.next() is not None:
                pass
        except errors.DbMeshError:
            pass


class _NodeLoad:
    """One LOAD DATA LOCAL statement on a data node's connection, dbmesh acting as the client."""

    def __init__(self, conn: MySQLBackendConnection, node: DataNode, sql: str) -> None:
        self.conn = conn
        self.node = node
        self.sql = sql
        self.seq = 1
        self.out: list[bytes] = []
        self.size = 0
        self.sink = _LoadSink()

    async def start(self) -> None:
        self.conn.start_command(build_packet(_COM_QUERY + self.sql.encode(), 0), RESPONSE_RESULT, self.sink)
        await self.sink.asked
        if not self.sink.requested:
            self._raise()  # the server answered without asking for the file
            raise errors.BackendError(errors.BACKEND_PROTOCOL, data_source=self.node.data_source,
                                      detail="LOAD DATA LOCAL answered without a LOCAL INFILE request")
        self.seq = self.conn.scanner.last_seq

    async def write(self, data: bytes) -> None:
        self.out.append(data)
        self.size += len(data)
        if self.size >= _PACKET:
            await self.flush()

    async def flush(self) -> None:
        if not self.size:
            return
        data = b"".join(self.out)
        self.out.clear()
        self.size = 0
        conn = self.conn
        for off in range(0, len(data), _PACKET):
            self.seq += 1
            conn.send_no_reply(build_packet(data[off:off + _PACKET], self.seq & 0xFF))
        if conn.write_paused and not conn.closed:
            writable: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def wake() -> None:
                if not writable.done():
                    writable.set_result(None)

            conn.when_writable(wake)
            await writable

    async def end(self) -> OkPacket:
        await self.flush()
        self.seq += 1
        self.conn.send_infile_end(self.seq & 0xFF)
        await self.sink.done
        self._raise()
        return OkPacket.decode(self.sink.last_packet())

    def _raise(self) -> None:
        sink = self.sink
        if sink.lost is not None:
            raise errors.BackendError(errors.BACKEND_LOST, data_source=self.node.data_source, detail=sink.lost)
        if self.conn.scanner.is_error:
            raise BackendQueryError(ErrPacket.decode(sink.last_packet()))


class _LoadSink:
    """ResponseSink of a data node's LOAD DATA LOCAL: notes the file request, keeps the final answer."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.asked: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.requested = False
        self.lost: str | None = None
        self.chunks: list[bytes] = []

    def forward(self, data: bytes) -> None:
        self.chunks.append(data)

    def infile_requested(self, conn: MySQLBackendConnection) -> None:
        self.requested = True
        self.chunks.clear()  # the request itself; the answer after the file is what counts
        if not self.asked.done():
            self.asked.set_result(None)

    def response_done(self, conn: MySQLBackendConnection) -> None:
        for f in (self.asked, self.done):
            if not f.done():
                f.set_result(None)

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None:
        self.lost = detail
        self.response_done(conn)

    def last_packet(self) -> bytes:
        reader = PacketReader(max_payload=1 << 30)
        reader.feed(b"".join(self.chunks))
        last = b""
        while (p := reader.read()) is not None:
            last = p
        return last


class _Loads:
    """The LOADs of one statement: at most one open per data source (its session connection); rows for the other
    nodes of a busy data source wait, and take the connection over once they pass _SWITCH bytes."""

    def __init__(self, plan: _Plan, savepoint: bool) -> None:
        self.plan = plan
        self.savepoint = savepoint
        self.saved: dict[str, MySQLBackendConnection] = {}  # data sources with the statement's savepoint
        self.open: dict[str, _NodeLoad] = {}
        self.waiting: dict[DataNode, list[bytes]] = {}
        self.waiting_size: dict[DataNode, int] = {}
        self.results: list[OkPacket] = []

    async def open_for(self, node: DataNode) -> _NodeLoad:
        current = self.open.get(node.data_source)
        if current is not None:
            if current.node == node:
                return current
            await self._close(node.data_source)
        conn = await self.plan.owner._sticky(node.data_source)
        if self.savepoint and node.data_source not in self.saved:
            await conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            self.saved[node.data_source] = conn
        load = _NodeLoad(conn, node, self.plan.node_sql[node])
        self.open[node.data_source] = load  # before start: abandon() must see a load that is half started
        await load.start()
        return load

    async def write(self, node: DataNode, data: bytes) -> None:
        current = self.open.get(node.data_source)
        if current is None or current.node == node:
            load = current if current is not None else await self.open_for(node)
            await load.write(data)
            return
        self.waiting.setdefault(node, []).append(data)
        size = self.waiting_size[node] = self.waiting_size.get(node, 0) + len(data)
        if size >= _SWITCH:
            await self._take_over(node)

    async def _take_over(self, node: DataNode) -> None:
        load = await self.open_for(node)
        rows = self.waiting.pop(node, [])
        self.waiting_size.pop(node, None)
        for data in rows:
            await load.write(data)

    async def _close(self, ds: str) -> None:
        load = self.open.pop(ds)
        self.results.append(await load.end())

    async def finish(self) -> None:
        for ds in list(self.open):
            await self._close(ds)
        while self.waiting:
            node = next(iter(self.waiting))
            await self._take_over(node)
            await self._close(node.data_source)

    async def end_savepoints(self, rollback: bool) -> None:
        """Release the statement's savepoints, after rolling back to them when it failed. A connection that
        fails here has lost the transaction; the next statement on it reports that."""
        saved, self.saved = self.saved, {}
        for conn in saved.values():
            try:
                if rollback:
                    await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                await conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            except (errors.DbMeshError, BackendQueryError, OSError):
                conn.broken = True

    async def abandon(self) -> None:
        """After a failure: end the open LOADs' files so their connections are back at a command boundary (their
        rows go with the implicit transaction's rollback, or back to the statement's savepoints)."""
        for load in self.open.values():
            conn, sink = load.conn, load.sink
            if sink.done.done():
                continue
            if sink.requested and not conn.closed:
                load.seq += 1
                conn.send_infile_end(load.seq & 0xFF)
                await sink.done
            else:
                conn.broken = True  # no clean way back to a command boundary: never reuse it
                conn.close()
        self.open.clear()
        self.waiting.clear()
