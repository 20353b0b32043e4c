"""One connection to a PostgreSQL data source: asyncio glue around the client startup and the backend scanner."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import Protocol

from dbmesh import errors
from dbmesh._wire.pg_framing import BackendScanner, FramingError, MessageReader, build_message, build_startup
from dbmesh.backend.pool import Pool
from dbmesh.config import DataSource
from dbmesh.protocol.postgresql.client_startup import ClientStartup, Failed, Ready, Send

log = logging.getLogger("dbmesh.backend")

CANCEL_REQUEST_CODE = 80877102
_QUERY = ord("Q")
_PARAMETER_STATUS = ord("S")
_ERROR = ord("E")


class PgSink(Protocol):
    """Where a PostgreSQL backend's bytes go while a session holds the connection."""

    def forward(self, data: bytes) -> None: ...

    def on_ready(self, conn: PgBackendConnection) -> None: ...

    def backend_lost(self, conn: PgBackendConnection, detail: str) -> None: ...


class PgQueryError(Exception):
    """The data source answered a statement dbmesh issued itself with an ErrorResponse."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{sqlstate} {message}")
        self.sqlstate = sqlstate
        self.message = message


def _drop(data: bytes) -> None:
    """Placeholder forwarder while no session holds the connection."""


class _Collector:
    """Sink for statements dbmesh runs itself: buffers the response until ReadyForQuery."""

    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future
        self.chunks: list[bytes] = []

    def forward(self, data: bytes) -> None:
        self.chunks.append(data)

    def on_ready(self, conn: PgBackendConnection) -> None:
        if not self.future.done():
            self.future.set_result(b"".join(self.chunks))

    def backend_lost(self, conn: PgBackendConnection, detail: str) -> None:
        if not self.future.done():
            self.future.set_exception(errors.BackendError(errors.BACKEND_LOST, data_source=conn.data_source.name,
                                                          detail=detail))


class PgBackendConnection(asyncio.Protocol):
    """A logged-in PostgreSQL connection. While a session holds it, every byte it receives goes to that session;
    the scanner counts ReadyForQuery messages so the session knows when all it asked for has been answered."""

    def __init__(self, data_source: DataSource, key: tuple[int, int], schema: str | None) -> None:
        self.data_source = data_source
        self.key = key  # no reply-shaping flags in PostgreSQL: every connection of a data source is alike
        self.schema = schema  # the database, fixed at startup
        self.vars: dict[str, str] = {}  # session parameters dbmesh has SET on it (name -> SQL literal)
        self.params: dict[str, str] = {}  # ParameterStatus values the server reported
        self.backend_pid = 0
        self.backend_key = b""
        self.tx_status = ord("I")
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.expires_at = time.perf_counter() + data_source.pool.max_lifetime_s
        self.broken = False
        self.closed = False
        self.dirty = False  # holds state a new user must not see: reset (DISCARD ALL) before reuse
        self.prepared: set[bytes] = set()  # dbmesh-named statements prepared on this connection
        self.prepared_uncertain = False  # a request that prepared some failed: ask the server before relying on it
        self.transport: asyncio.Transport | None = None
        self.scanner = BackendScanner()
        self._sink: PgSink | None = None
        self._forward: Callable[[bytes], None] = _drop
        self._startup: ClientStartup | None = None
        self._reader: MessageReader | None = None
        self._ready: asyncio.Future[None] | None = None

    # -- connection ----------------------------------------------------------------------------------------------

    async def connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        ds = self.data_source
        # No settings of our own: a connection starts at the server's defaults, and each session's settings
        # (its startup parameters and SETs) are applied on top, so reported values are the server's own.
        self._startup = ClientStartup(ds.username, ds.password, self.schema or None, {})
        self._reader = MessageReader()
        self._ready = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: self, ds.host, ds.port)
                await self._ready
        except TimeoutError as exc:
            self.close()
            raise errors.BackendError(errors.BACKEND_CONNECT_FAILED, data_source=ds.name,
                                      detail=f"timed out after {timeout:g} s") from exc
        except OSError as exc:
            self.close()
            raise errors.BackendError(errors.BACKEND_CONNECT_FAILED, data_source=ds.name, detail=str(exc)) from exc
        except PgQueryError as exc:
            self.close()
            raise errors.BackendError(errors.BACKEND_CONNECT_FAILED, data_source=ds.name, detail=str(exc)) from exc

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop transports are not asyncio.Transport subclasses
        if self._startup is not None:
            self._write(self._startup.start())

    def _on_startup_bytes(self, data: bytes) -> None:
        assert self._reader is not None and self._startup is not None and self._ready is not None
        self._reader.feed(data)
        while True:
            try:
                msg = self._reader.read()
            except FramingError as exc:
                self._fail_startup(f"malformed message: {exc}")
                return
            if msg is None:
                return
            for outcome in self._startup.feed(msg[0], msg[1]):
                if isinstance(outcome, Send):
                    self._write(outcome.data)
                elif isinstance(outcome, Ready):
                    self.params = dict(outcome.params)
                    self.backend_pid, self.backend_key = outcome.pid or 0, outcome.key or b""
                    self._startup = None
                    self._reader = None
                    if not self._ready.done():
                        self._ready.set_result(None)
                    return
                elif isinstance(outcome, Failed):
                    fields = outcome.fields
                    self._fail_startup(f"{fields.get('C', '')} {fields.get('M', '')}".strip())
                    return

    def _fail_startup(self, detail: str) -> None:
        self._startup = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(PgQueryError("08006", detail))
        self.close()

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            if self._startup is not None:
                self._on_startup_bytes(data)
                return
            # Bytes while nobody holds us (a FATAL from a shutting-down server, say): unusable from now on.
            self.broken = True
            self.close()
            return
        sc = self.scanner
        try:
            while True:
                used = sc.feed(data)
                whole = used == len(data)
                if whole:
                    self._forward(data)
                elif used:
                    self._forward(data[:used])
                if sc.protocol_error:
                    log.warning("data source %s broke the protocol: %s", self.data_source.name, sc.protocol_error)
                    self.broken = True
                    self.close()
                    return
                target = sc.target
                if target and sc.ready_count >= target:
                    sc.target = 0  # everything asked for is answered; later bytes are asynchronous messages
                    self.tx_status = sc.tx_status
                    sink.on_ready(self)
                    if whole or self._sink is not sink:
                        return
                    data = data[used:]
                    continue
                return
        except Exception:  # a bug must not escape into the event loop; drop this connection, keep serving
            log.exception("[BUG] unexpected error handling data from %s", self.data_source.name)
            self.broken = True
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.broken = True
        detail = str(exc) if exc else "connection closed by the data source"
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(OSError(detail))
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.backend_lost(self, detail)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def quit(self) -> None:
        """Polite close: Terminate, then close the socket."""
        if self._sink is None:
            self._write(build_message(ord("X"), b""))
        self.close()

    # -- use by a session ----------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Answers are still due for requests sent (the scanner waits for more ReadyForQuery messages)."""
        return self.scanner.target != 0

    @property
    def holder(self) -> PgSink | None:
        return self._sink

    def attach(self, sink: PgSink) -> None:
        """From now on every byte from the data source goes to `sink`."""
        self._sink = sink
        self._forward = sink.forward

    def detach(self) -> None:
        self._sink = None
        self._forward = _drop

    def send(self, data: bytes, ready_expected: int) -> None:
        """Write client messages; `ready_expected` ReadyForQuery answers are due for them (Query, Sync, ...)."""
        if ready_expected:
            sc = self.scanner
            sc.target = (sc.target or sc.ready_count) + ready_expected
        t = self.transport
        if t is None or t.is_closing():
            sink = self._sink
            self.broken = True
            if sink is not None:
                sink.backend_lost(self, "connection already closed")
            return
        t.write(data)

    async def run(self, sql: str) -> bytes:
        """Run a simple query dbmesh issues itself (no session attached); returns the raw response."""
        assert self._sink is None, "run() needs an unattached connection"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        collector = _Collector(future)
        self.attach(collector)
        errors_before = self.scanner.errors
        try:
            self.send(build_message(_QUERY, sql.encode() + b"\x00"), 1)
            raw = await future
        finally:
            if self._sink is collector:
                self.detach()
        self.tx_status = self.scanner.tx_status
        if self.scanner.errors != errors_before:
            raise PgQueryError(*_first_error(raw))
        for name, value in parameter_statuses(raw):
            self.params[name] = value
        return raw

    async def unprepare(self, names: set[bytes]) -> None:
        """Close dbmesh-named statements (the connection's cache of other sessions' statements) in one round trip."""
        assert self._sink is None, "unprepare() needs an unattached connection"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        collector = _Collector(future)
        self.attach(collector)
        try:
            closes = b"".join(build_message(ord("C"), b"S" + name + b"\x00") for name in names)
            self.send(closes + build_message(ord("S"), b""), 1)
            await future
        finally:
            if self._sink is collector:
                self.detach()
        self.prepared.difference_update(names)

    async def prepare(self, statements: dict[bytes, bytes]) -> None:
        """Prepare dbmesh-named statements (name -> Parse body after the name) in one round trip."""
        assert self._sink is None, "prepare() needs an unattached connection"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        collector = _Collector(future)
        self.attach(collector)
        errors_before = self.scanner.errors
        try:
            parses = b"".join(build_message(ord("P"), name + b"\x00" + body) for name, body in statements.items())
            self.send(parses + build_message(ord("S"), b""), 1)
            raw = await future
        finally:
            if self._sink is collector:
                self.detach()
        if self.scanner.errors != errors_before:
            self.prepared_uncertain = True
            raise PgQueryError(*_first_error(raw))
        self.prepared.update(statements)

    async def ping(self) -> None:
        await self.run("")

    async def reset(self) -> None:
        """Return to the state dbmesh opened the connection in (what PgBouncer's server_reset_query does)."""
        if self.tx_status != ord("I"):
            await self.run("ROLLBACK")
        await self.run("DISCARD ALL")
        self.vars.clear()
        self.prepared.clear()
        self.dirty = False

    async def cancel(self) -> None:
        """Send a CancelRequest for whatever this connection is running, on a new connection (no reply)."""
        ds = self.data_source
        body = struct.pack("!II", CANCEL_REQUEST_CODE, self.backend_pid) + self.backend_key
        try:
            async with asyncio.timeout(ds.pool.connect_timeout_s):
                _reader, writer = await asyncio.open_connection(ds.host, ds.port)
                writer.write(build_startup(body))
                await writer.drain()
                writer.close()
        except (OSError, TimeoutError) as exc:
            log.info("cancel request to %s failed: %s", ds.name, exc)


def parameter_statuses(raw: bytes) -> list[tuple[str, str]]:
    """ParameterStatus messages in a response (raw backend bytes)."""
    out = []
    reader = MessageReader()
    reader.feed(raw)
    while (msg := reader.read()) is not None:
        if msg[0] == _PARAMETER_STATUS:
            name, _, rest = msg[1].partition(b"\x00")
            out.append((name.decode("utf-8", "replace"), rest.rstrip(b"\x00").decode("utf-8", "replace")))
    return out


def first_row(raw: bytes) -> list[bytes | None]:
    """The values of the first DataRow in a response (raw backend bytes); [] when there is none."""
    reader = MessageReader()
    reader.feed(raw)
    while (msg := reader.read()) is not None:
        if msg[0] == ord("D"):
            payload = msg[1]
            count = struct.unpack_from("!h", payload, 0)[0]
            values: list[bytes | None] = []
            pos = 2
            for _ in range(count):
                length = struct.unpack_from("!i", payload, pos)[0]
                pos += 4
                if length < 0:
                    values.append(None)
                else:
                    values.append(payload[pos:pos + length])
                    pos += length
            return values
    return []


def prepared_names(raw: bytes) -> set[bytes]:
    """The values of the single text column of a simple query's DataRows (raw backend bytes)."""
    names = set()
    reader = MessageReader()
    reader.feed(raw)
    while (msg := reader.read()) is not None:
        if msg[0] == ord("D") and len(msg[1]) >= 6:
            length = struct.unpack_from("!i", msg[1], 2)[0]
            if length >= 0:
                names.add(msg[1][6:6 + length])
    return names


def _first_error(raw: bytes) -> tuple[str, str]:
    reader = MessageReader()
    reader.feed(raw)
    while (msg := reader.read()) is not None:
        if msg[0] == _ERROR:
            fields = {f[:1].decode(): f[1:].decode("utf-8", "replace") for f in msg[1].split(b"\x00") if f}
            return fields.get("C", "XX000"), fields.get("M", "")
    return "XX000", "unknown error"


PgPool = Pool[PgBackendConnection]
