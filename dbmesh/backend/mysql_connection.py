"""One connection to a MySQL/MariaDB data source: asyncio glue around the client handshake and response scanner."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from dbmesh import errors
from dbmesh._wire.mysql_framing import (
    RESPONSE_RESULT,
    RESPONSE_SIMPLE,
    PacketReader,
    ResponseScanner,
    build_packet,
)
from dbmesh.backend.pool import Pool
from dbmesh.config import DataSource
from dbmesh.protocol.mysql.client_handshake import ClientHandshake, Failed, Ready, Send
from dbmesh.protocol.mysql.constants import BACKEND_BASE_CAPABILITIES, Capability, Command
from dbmesh.protocol.mysql.packets import ErrPacket

log = logging.getLogger("dbmesh.backend")


class ResponseSink(Protocol):
    """Where a forwarded response goes (the client session)."""

    def forward(self, data: bytes) -> None: ...

    def response_done(self, conn: MySQLBackendConnection) -> None: ...

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None: ...


def _drop(data: bytes) -> None:
    """Placeholder forwarder while no command is running."""


class BackendQueryError(Exception):
    """The data source answered an internal statement with an ERR packet."""

    def __init__(self, err: ErrPacket) -> None:
        super().__init__(f"{err.code} ({err.sqlstate}) {err.message}")
        self.err = err


class _Collector:
    """Sink for statements dbmesh runs itself: buffers the (small) response and resolves a future."""

    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future
        self.chunks: list[bytes] = []

    def forward(self, data: bytes) -> None:
        self.chunks.append(data)

    def response_done(self, conn: MySQLBackendConnection) -> None:
        if not self.future.done():
            self.future.set_result(b"".join(self.chunks))

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None:
        if not self.future.done():
            self.future.set_exception(errors.BackendError(errors.BACKEND_LOST, data_source=conn.data_source.name,
                                                          detail=detail))


class MySQLBackendConnection(asyncio.Protocol):
    """A logged-in connection. One command at a time; its response is scanned for its end and forwarded.

    `key` is (shaping capabilities, collation): only sessions with the same key may use this connection, so the
    bytes it sends are already in the format their client negotiated.
    """

    def __init__(self, data_source: DataSource, key: tuple[int, int], schema: str | None) -> None:
        self.data_source = data_source
        self.key = key
        self.schema = schema  # the connection's current default database
        self.vars: dict[str, str] = {}  # session variables dbmesh has set on it (name -> SQL value)
        self.thread_id = 0
        self.server_version = b""
        self.capabilities = 0
        self.ext_capabilities = 0
        self.server_ext_capabilities = 0  # what the data source offered (MariaDB), learned at connect
        self.deprecate_eof = bool(key[0] & Capability.DEPRECATE_EOF)
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        # When it should be replaced (maxLifetime), on the perf_counter clock the statement path already reads.
        self.expires_at = time.perf_counter() + data_source.pool.max_lifetime_s
        self.broken = False
        self.closed = False
        self.dirty = False  # holds state a new user must not see: reset before reuse
        self.transport: asyncio.Transport | None = None
        self.write_paused = False  # the socket's write buffer is above its high-water mark (a file being sent)
        self._writable_waiters: list[Callable[[], None]] = []
        self.scanner = ResponseScanner()
        self._sink: ResponseSink | None = None
        self._forward: Callable[[bytes], None] = _drop
        # Pipelined commands whose responses follow the current one, in order: (response kind, sink).
        self._queued: deque[tuple[int, ResponseSink]] = deque()
        self._handshake: ClientHandshake | None = None
        self._hs_reader: PacketReader | None = None
        self._ready: asyncio.Future[None] | None = None
        self.charset_sql = ""  # "SET NAMES cs COLLATE coll" restoring the handshake charset after a reset
        # Statements the sharded path prepared here: SQL -> this connection's 4 statement-id bytes (oldest first).
        self.unit_statements: dict[str, bytes] = {}

    # -- connection --------------------------------------------------------------------------------------------

    async def connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        ds = self.data_source
        shaping, collation = self.key
        self._handshake = ClientHandshake(
            user=ds.username, password=ds.password, database=self.schema,
            capabilities=int(BACKEND_BASE_CAPABILITIES) | (shaping & 0xFFFFFFFF), collation=collation,
            ext_capabilities=shaping >> 32)
        self._hs_reader = PacketReader(max_payload=1 << 24)
        self._ready = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: self, ds.host, ds.port)
                await self._ready
                # Learn the charset the handshake set, to restore it after COM_RESET_CONNECTION.
                rows = await self.query_rows("SELECT @@character_set_client, @@collation_connection")
                if rows and rows[0][0] and rows[0][1]:
                    self.charset_sql = f"SET NAMES {rows[0][0].decode()} COLLATE {rows[0][1].decode()}"
        except TimeoutError as exc:
            self.close()
            raise errors.BackendError(errors.BACKEND_CONNECT_FAILED, data_source=ds.name,
                                      detail=f"timed out after {timeout:g} s") from exc
        except OSError as exc:
            self.close()
            raise errors.BackendError(errors.BACKEND_CONNECT_FAILED, data_source=ds.name, detail=str(exc)) from exc
        except BackendQueryError as exc:
            self.close()
            raise errors.BackendError(errors.BACKEND_CONNECT_FAILED, data_source=ds.name, detail=str(exc)) from exc

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            try:
                scanner = self.scanner
                used = scanner.feed(data)
                whole = used == len(data)
                self._forward(data if whole else data[:used])
                if whole and not scanner.done:
                    return  # the common middle of a response
                if scanner.done:
                    if scanner.local_infile:
                        self._infile_requested(sink, not whole or bool(self._queued))
                        return
                    self._sink = None
                    if self._queued and not scanner.protocol_error:
                        # Pipelined: the next response starts right after this one.
                        kind, following = self._queued.popleft()
                        scanner.start(kind, self.deprecate_eof)
                        self._sink = following
                        self._forward = following.forward
                        sink.response_done(self)
                        if not whole and self._sink is following:
                            self.data_received(data[used:])
                        return
                    if not whole or scanner.protocol_error:
                        # More bytes than one response, or a response we cannot follow: the connection's framing
                        # can no longer be trusted. The client got what belonged to its command.
                        self.broken = True
                        self.close()
                    sink.response_done(self)
            except Exception:  # a bug must not escape into the event loop; drop this connection, keep serving
                log.exception("[BUG] unexpected error handling data from %s", self.data_source.name)
                self.broken = True
                self.close()
            return
        if self._handshake is not None:
            self._on_handshake_bytes(data)
            return
        # Bytes while idle (a server-side kill notice, for instance): the connection is unusable.
        self.broken = True
        self.close()

    def _infile_requested(self, sink: ResponseSink, extra: bool) -> None:
        """The server answered with a LOCAL INFILE request and now waits for a file; the sink stays attached."""
        if extra:
            # Bytes after the request: the server is not waiting for us, so the framing cannot be trusted. The
            # sink hears of it through backend_lost() when the socket closes.
            self.broken = True
            self.close()
            return
        handler: Callable[[MySQLBackendConnection], None] | None = getattr(sink, "infile_requested", None)
        if handler is not None:
            handler(self)
            return
        # A command whose sink takes no file (dbmesh's own statements): send an empty one, as a client that
        # refuses does. dbmesh never reads a file itself.
        self.send_infile_end((self.scanner.last_seq + 1) & 0xFF)

    def send_infile_end(self, seq: int) -> None:
        """End the file of a LOCAL INFILE exchange with the empty packet `seq`; the server's answer follows."""
        self.scanner.infile_sent(seq)
        self._write(build_packet(b"", seq))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiters, self._writable_waiters = self._writable_waiters, []
        for wake in waiters:
            wake()

    def when_writable(self, wake: Callable[[], None]) -> None:
        """Call `wake` once the socket's write buffer drains below its low-water mark (now, if it is not full)."""
        if self.write_paused and not self.closed:
            self._writable_waiters.append(wake)
        else:
            wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.broken = True
        detail = str(exc) if exc else "connection closed by the data source"
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(OSError(detail))
        sink, self._sink = self._sink, None
        queued, self._queued = self._queued, deque()
        self.resume_writing()  # nobody waits for a socket that is gone
        if sink is not None:
            sink.backend_lost(self, detail)
        for _, waiting in queued:
            waiting.backend_lost(self, detail)

    def _on_handshake_bytes(self, data: bytes) -> None:
        assert self._hs_reader is not None and self._handshake is not None and self._ready is not None
        reader = self._hs_reader
        reader.feed(data)
        while True:
            try:
                payload = reader.read()
            except ValueError as exc:
                self._fail_handshake(ErrPacket(0, "08S01", str(exc)))
                return
            if payload is None:
                return
            for outcome in self._handshake.feed(payload, reader.seq):
                if isinstance(outcome, Send):
                    self._write(build_packet(outcome.payload, outcome.seq))
                elif isinstance(outcome, Ready):
                    self.thread_id = outcome.server.connection_id
                    self.server_version = outcome.server.server_version
                    self.capabilities = outcome.capabilities
                    self.ext_capabilities = outcome.ext_capabilities
                    self.server_ext_capabilities = outcome.server.ext_capabilities
                    self.deprecate_eof = bool(outcome.capabilities & Capability.DEPRECATE_EOF)
                    self._handshake = None
                    self._hs_reader = None
                    if not self._ready.done():
                        self._ready.set_result(None)
                    return
                elif isinstance(outcome, Failed):
                    self._fail_handshake(outcome.err)
                    return

    def _fail_handshake(self, err: ErrPacket) -> None:
        assert self._ready is not None
        self._handshake = None
        if not self._ready.done():
            self._ready.set_exception(BackendQueryError(err))
        self.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def quit(self) -> None:
        """Polite close: COM_QUIT, then close the socket."""
        if self.transport is not None and not self.transport.is_closing() and self._sink is None:
            self.transport.write(build_packet(bytes((Command.QUIT,)), 0))
        self.close()

    # -- commands ----------------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._sink is not None

    def start_command(self, framed: bytes, kind: int, sink: ResponseSink) -> None:
        """Send one framed command; its response goes to `sink` as it arrives, ending with response_done()."""
        self.scanner.start(kind, self.deprecate_eof)
        self._sink = sink
        self._forward = sink.forward
        transport = self.transport
        if transport is None or transport.is_closing():
            self._sink = None
            sink.backend_lost(self, "connection already closed")
            return
        transport.write(framed)

    def start_pipeline(self, commands: Sequence[tuple[bytes, int, ResponseSink]]) -> None:
        """Send several framed commands in one write; the data source answers them in order and each response goes
        to its own sink, as start_command() would deliver it. For statements whose outcome does not depend on the
        ones before them (the units of one read-only query): the server runs the next even if one fails."""
        framed, kind, sink = commands[0]
        if len(commands) == 1:
            self.start_command(framed, kind, sink)
            return
        self.scanner.start(kind, self.deprecate_eof)
        self._sink = sink
        self._forward = sink.forward
        self._queued.extend((k, s) for _, k, s in commands[1:])
        transport = self.transport
        if transport is None or transport.is_closing():
            self._sink = None
            queued, self._queued = self._queued, deque()
            sink.backend_lost(self, "connection already closed")
            for _, waiting in queued:
                waiting.backend_lost(self, "connection already closed")
            return
        transport.write(b"".join(c[0] for c in commands))

    def send_no_reply(self, framed: bytes) -> None:
        """Commands that have no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA)."""
        self._write(framed)

    async def run(self, payload: bytes, kind: int = RESPONSE_RESULT) -> bytes:
        """Run a command dbmesh issues itself; returns the raw response bytes. Raises BackendQueryError on ERR."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.start_command(build_packet(payload, 0), kind, _Collector(future))
        raw = await future
        if self.scanner.is_error:
            reader = PacketReader(max_payload=1 << 30)
            reader.feed(raw)
            last = b""
            while (p := reader.read()) is not None:
                last = p
            raise BackendQueryError(ErrPacket.decode(last))
        return raw

    async def execute(self, sql: str) -> None:
        await self.run(bytes((Command.QUERY,)) + sql.encode())

    async def init_db(self, schema: str) -> None:
        await self.run(bytes((Command.INIT_DB,)) + schema.encode(), RESPONSE_SIMPLE)
        self.schema = schema

    async def ping(self) -> None:
        await self.run(bytes((Command.PING,)), RESPONSE_SIMPLE)

    async def reset(self) -> None:
        """COM_RESET_CONNECTION, then restore the handshake charset (the reset reverts SET NAMES too)."""
        await self.run(bytes((Command.RESET_CONNECTION,)), RESPONSE_SIMPLE)
        self.unit_statements.clear()  # the reset closed them
        if self.charset_sql:
            await self.execute(self.charset_sql)
        self.vars.clear()
        self.dirty = False

    async def query_rows(self, sql: str) -> list[list[bytes | None]]:
        """A small text query's rows, decoded just enough for control-plane use."""
        from dbmesh.protocol.mysql.packets import PayloadReader

        raw = await self.run(bytes((Command.QUERY,)) + sql.encode())
        reader = PacketReader(max_payload=1 << 30)
        reader.feed(raw)
        payloads = []
        while (p := reader.read()) is not None:
            payloads.append(p)
        if not payloads or payloads[0][:1] == b"\x00":
            return []
        ncols = payloads[0][0]
        body = payloads[1 + ncols + (0 if self.deprecate_eof else 1):-1]
        rows: list[list[bytes | None]] = []
        for p in body:
            r = PayloadReader(p)
            row: list[bytes | None] = []
            for _ in range(ncols):
                if p[r.pos:r.pos + 1] == b"\xfb":
                    r.pos += 1
                    row.append(None)
                else:
                    row.append(r.lenenc_bytes())
            rows.append(row)
        return rows


MySQLPool = Pool[MySQLBackendConnection]
