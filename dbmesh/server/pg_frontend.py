"""Per-client asyncio glue for the PostgreSQL listener: startup (TLS, auth, cancel), then message relay to the session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from dbmesh import errors
from dbmesh._wire.pg_framing import FramingError, MessageReader, build_message
from dbmesh.backend.pg_connection import PgQueryError
from dbmesh.protocol.postgresql.messages import render_error
from dbmesh.protocol.postgresql.server_startup import (
    Authenticated,
    Cancel,
    Credential,
    Rejected,
    Reply,
    ServerStartup,
    StartTls,
)
from dbmesh.server.client_connection import ClientConnection
from dbmesh.server.tls import TlsStream
from dbmesh.session.pg_session import PgSession

if TYPE_CHECKING:
    from dbmesh.server.runtime import Runtime

log = logging.getLogger("dbmesh.postgresql")

PG_METHODS = ("scram-sha-256", "md5", "password")
_QUERY, _BIND, _PARSE = ord("Q"), ord("B"), ord("P")


class PgFrontend(ClientConnection):
    """One PostgreSQL client connection."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.reader = MessageReader(runtime.config.server.limits.max_packet_size)
        self.startup: ServerStartup | None = None
        self.session: PgSession | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        self._starting = False  # authenticated; the session is leasing its first connection
        self._relay: PgSession | None = None  # the session, once requests may take its hot paths (no TLS, started)

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach_transport(transport)
        rt = self.runtime
        rt.metrics.client_connected("postgresql")
        if not rt.admit(self):
            self.send_fatal(errors.AuthError(errors.AUTH_TOO_MANY_CONNECTIONS,
                                             limit=rt.config.server.limits.max_connections), startup=True)
            return
        if rt.draining:
            self.send_fatal(errors.SessionError(errors.SESSION_SHUTTING_DOWN), startup=True)
            return
        self.startup = ServerStartup(users=self._lookup_user, tls_available=rt.ssl_context is not None,
                                     method_for=self._method_for, client_host=self.peer_host)
        timeout = rt.config.server.limits.auth_timeout_seconds
        self._auth_timer = asyncio.get_running_loop().call_later(timeout, self._auth_timed_out, timeout)

    def data_received(self, data: bytes) -> None:
        session = self._relay
        if session is not None:
            # Hot path: a whole request of one of the two shapes the session relays as framed (see
            # MessageReader.request_kind); anything else, or a request the session declines, takes the general path.
            kind = self.reader.request_kind(data)
            try:
                if (kind == _QUERY and session.on_query_frame(data)) or (
                        kind == _BIND and session.on_execute_frame(data)) or (
                        kind == _PARSE and session.on_parse_execute_frame(data)):
                    return
            except Exception as exc:  # a bug must not take the server down or leak a traceback
                log.exception("[BUG] unexpected error on a PostgreSQL connection")
                self.send_fatal(errors.InternalError(f"{type(exc).__name__}: {exc}"))
                return
        if self.closed:
            return
        if self.tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        reader = self.reader
        reader.feed(data)
        try:
            session = self.session
            if session is not None and not self._starting:
                batch = []
                while (msg := reader.read()) is not None:
                    batch.append(msg)
                if batch:
                    session.on_messages(batch)
                return
            self._on_startup_bytes()
        except FramingError as exc:
            self._protocol_violation(str(exc))
        except Exception as exc:  # a bug must not take the server down or leak a traceback to the client
            log.exception("[BUG] unexpected error on a PostgreSQL connection")
            self.send_fatal(errors.InternalError(f"{type(exc).__name__}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay = None
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self.closed = True
        if self.session is not None:
            self.session.close()
        self.runtime.release(self)
        self.runtime.metrics.client_disconnected("postgresql")

    # -- output --------------------------------------------------------------------------------------------------

    def send_fatal(self, exc: errors.DbMeshError, startup: bool = False) -> None:
        """A FATAL ErrorResponse, then close (the one way dbmesh ends a PostgreSQL connection on an error)."""
        if not startup or self.tls is None or self.tls.handshake_done:
            self.write(build_message(ord("E"), render_error(exc, "FATAL")))
        self.close()

    def writer(self) -> Callable[[bytes], None]:
        """The cheapest way to write to this client once TLS is settled: write() itself under TLS."""
        return self.write if self.tls is not None else self._write_plain

    def _write_plain(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def close(self) -> None:
        self._relay = None
        super().close()

    # -- startup -------------------------------------------------------------------------------------------------

    def _lookup_user(self, name: str, database: str) -> Credential | None:
        user = self.runtime.config.find_user(name, self.peer_host)
        return None if user is None else Credential(user.name, user.password)

    def _method_for(self, name: str) -> str:
        user = self.runtime.config.find_user(name, self.peer_host)
        method = (user.auth_plugin if user is not None else "").lower()
        return method if method in PG_METHODS else "scram-sha-256"

    def _auth_timed_out(self, seconds: float) -> None:
        if self.session is None and not self.closed:
            err = errors.AuthError(errors.AUTH_TIMEOUT, seconds=f"{seconds:g}")
            self.runtime.metrics.error(err.entry.code, "postgresql")
            self.send_fatal(err, startup=True)

    def _protocol_violation(self, detail: str) -> None:
        err = errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail=detail)
        self.runtime.metrics.error(err.entry.code, "postgresql")
        self.send_fatal(err, startup=self.session is None)

    def _on_startup_bytes(self) -> None:
        st = self.startup
        if st is None:
            return
        reader = self.reader
        while not self.closed and self.session is None:
            if st.expects_startup_packet:
                body = reader.read_startup()
                if body is None:
                    return
                outcomes = st.feed_startup(body)
            else:
                msg = reader.read()
                if msg is None:
                    return
                outcomes = st.feed(msg[0], msg[1])
            for outcome in outcomes:
                if isinstance(outcome, Reply):
                    self.write(outcome.data)
                elif isinstance(outcome, StartTls):
                    ctx = self.runtime.ssl_context
                    assert ctx is not None
                    if reader.buffered():
                        # Bytes sent before the TLS handshake would be taken as if they came over TLS
                        # (CVE-2021-23214): refuse.
                        self._protocol_violation("data received before the TLS handshake")
                        return
                    self.tls = TlsStream(ctx)
                    st.on_tls_established()
                elif isinstance(outcome, Cancel):
                    self.runtime.cancel_pg(outcome.pid, outcome.key)
                    self.close()
                    return
                elif isinstance(outcome, Rejected):
                    self.runtime.metrics.error(outcome.error.entry.code, "postgresql")
                    self.write(outcome.message)
                    self.close()
                    return
                elif isinstance(outcome, Authenticated):
                    self._on_authenticated(outcome)
                    return

    def _on_authenticated(self, outcome: Authenticated) -> None:
        rt = self.runtime
        database = rt.config.databases.get(outcome.database)
        if database is None or database.default_data_source.protocol != "postgresql":
            self.send_fatal(errors.AuthError(errors.AUTH_UNKNOWN_DATABASE, database=outcome.database))
            return
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.session = PgSession(rt, self, user=outcome.user, database=database, params=outcome.params)
        rt.register_pg_session(self.session)
        self._starting = True
        rt.spawn(self._finish_startup(outcome))

    async def _finish_startup(self, outcome: Authenticated) -> None:
        session = self.session
        assert session is not None
        try:
            params = await session.start()
        except (errors.DbMeshError, PgQueryError) as exc:
            err = exc if isinstance(exc, errors.DbMeshError) else errors.BackendError(
                errors.BACKEND_CONNECT_FAILED, data_source=session.data_source.name, detail=str(exc))
            self.runtime.metrics.error(err.entry.code, "postgresql")
            self.write(outcome.ok)
            self.send_fatal(err)
            return
        if self.closed:
            return
        out = [outcome.ok]
        out += [build_message(ord("S"), k.encode() + b"\x00" + v.encode() + b"\x00") for k, v in params.items()]
        out.append(build_message(ord("K"), session.backend_key_data()))
        out.append(build_message(ord("Z"), b"I"))
        self.write(b"".join(out))
        self._starting = False
        if self.tls is None and not self.closed:
            self._relay = session
        # Messages the client pipelined behind its startup are waiting in the reader.
        if self.reader.buffered():
            batch = []
            try:
                while (msg := self.reader.read()) is not None:
                    batch.append(msg)
            except FramingError as exc:
                self._protocol_violation(str(exc))
                return
            if batch:
                session.on_messages(batch)

