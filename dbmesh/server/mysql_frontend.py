"""Per-client asyncio glue for the MySQL listener: reads frames into the Cython reader and drives the handshake and session."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dbmesh import errors
from dbmesh._wire.mysql_framing import FramingError, PacketReader, build_packet
from dbmesh.protocol.mysql.constants import CACHING_SHA2_PASSWORD, NATIVE_PASSWORD, Status
from dbmesh.protocol.mysql.packets import ErrPacket, OkPacket
from dbmesh.protocol.mysql.server_handshake import (
    Authenticated,
    Credential,
    Rejected,
    Reply,
    ServerHandshake,
    StartTls,
)
from dbmesh.server.client_connection import ClientConnection
from dbmesh.server.tls import TlsStream
from dbmesh.session.mysql_session import MySQLSession

if TYPE_CHECKING:
    from dbmesh.server.runtime import Runtime

log = logging.getLogger("dbmesh.mysql")


def render_error(exc: errors.DbMeshError) -> bytes:
    """The one place a dbmesh error becomes a MySQL ERR payload."""
    return ErrPacket(exc.entry.mysql_errno, exc.entry.mysql_sqlstate, exc.message).encode()


class MySQLFrontend(ClientConnection):
    """One client connection. Bytes go through a PacketReader; complete packets go to the handshake, then the session."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.conn_id = runtime.next_connection_id()
        self.reader = PacketReader(max_payload=runtime.config.server.limits.max_packet_size)
        self.handshake: ServerHandshake | None = None
        self.session: MySQLSession | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        self._reading_paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach_transport(transport)
        rt = self.runtime
        rt.metrics.client_connected("mysql")
        if not rt.admit(self):
            self.send_error(errors.AuthError(errors.AUTH_TOO_MANY_CONNECTIONS,
                                             limit=rt.config.server.limits.max_connections), 0)
            self.close()
            return
        if rt.draining:
            self.send_error(errors.SessionError(errors.SESSION_SHUTTING_DOWN), 0)
            self.close()
            return
        self.handshake = ServerHandshake(
            connection_id=self.conn_id, server_version=rt.mysql_server_version, collation=rt.mysql_collation,
            tls_available=rt.ssl_context is not None, users=self._lookup_user, client_host=self.peer_host,
            rsa_keys=rt.rsa_keys, default_plugin=NATIVE_PASSWORD, ext_capabilities=rt.mysql_ext_capabilities)
        self.write(build_packet(self.handshake.greeting(), 0))
        timeout = rt.config.server.limits.auth_timeout_seconds
        self._auth_timer = asyncio.get_running_loop().call_later(timeout, self._auth_timed_out, timeout)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is not None and session.current is None and self.handshake is None and self.tls is None:
            # Hot path: an idle session receives exactly one whole single-chunk command (seq 0).
            if self.reader.whole_command(data) and not session.queue:
                try:
                    session.on_frame(data)
                except Exception as exc:  # a bug must not take the server down or leak a traceback
                    log.exception("[BUG] unexpected error on connection %d", self.conn_id)
                    self.send_error(errors.InternalError(f"{type(exc).__name__}: {exc}"), 1)
                    self.close()
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
            while not self.closed:
                payload = reader.read()
                if payload is None:
                    return
                if self.session is not None and self.handshake is None:
                    self.session.on_packet(payload, reader.seq)
                else:
                    self._on_handshake_packet(payload, reader.seq)
        except FramingError as exc:
            code = errors.PROTOCOL_PACKET_TOO_LARGE if "exceeds the limit" in str(exc) else errors.PROTOCOL_MALFORMED
            err = (errors.ProtocolError(code, limit=reader.max_payload) if code is errors.PROTOCOL_PACKET_TOO_LARGE
                   else errors.ProtocolError(code, detail=str(exc)))
            self.runtime.metrics.error(err.entry.code, "mysql")
            self.send_error(err, (reader.last_seq + 1) & 0xFF)
            self.close()
        except Exception as exc:  # a bug must not take the server down or leak a traceback to the client
            log.exception("[BUG] unexpected error on connection %d", self.conn_id)
            self.send_error(errors.InternalError(f"{type(exc).__name__}: {exc}"), 1)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self.closed = True
        if self.session is not None:
            self.session.close()
        self.runtime.release(self)
        self.runtime.metrics.client_disconnected("mysql")

    # -- output --------------------------------------------------------------------------------------------------

    def send_payload(self, payload: bytes, seq: int) -> None:
        self.write(build_packet(payload, seq & 0xFF))

    def send_error(self, exc: errors.DbMeshError, seq: int) -> None:
        self.send_payload(render_error(exc), seq)

    def send_err_packet(self, code: int, sqlstate: str, message: str, seq: int) -> None:
        self.send_payload(ErrPacket(code, sqlstate, message).encode(), seq)

    def pause_reading_client(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading_client(self) -> None:
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()

    # -- connection phase ----------------------------------------------------------------------------------------

    def _lookup_user(self, name: str, host: str) -> Credential | None:
        user = self.runtime.config.find_user(name, host)
        if user is None:
            return None
        plugin = user.auth_plugin if user.auth_plugin in (NATIVE_PASSWORD, CACHING_SHA2_PASSWORD) else NATIVE_PASSWORD
        return Credential(user.name, user.password, plugin)

    def _auth_timed_out(self, seconds: float) -> None:
        if self.session is None and not self.closed:
            err = errors.AuthError(errors.AUTH_TIMEOUT, seconds=f"{seconds:g}")
            self.runtime.metrics.error(err.entry.code, "mysql")
            seq = self.handshake.expected_seq if self.handshake is not None else 0
            self.send_error(err, seq)
            self.close()

    def _on_handshake_packet(self, payload: bytes, seq: int) -> None:
        hs = self.handshake
        assert hs is not None
        for outcome in hs.feed(payload, seq):
            if isinstance(outcome, Reply):
                self.send_payload(outcome.payload, outcome.seq)
            elif isinstance(outcome, StartTls):
                ctx = self.runtime.ssl_context
                assert ctx is not None
                self.tls = TlsStream(ctx)
                # The ClientHello may have arrived in the same read as the SSLRequest: it belongs to TLS now.
                early = self.reader.take_buffered()
                if early:
                    plain = self._decrypt(early)
                    if plain:
                        self.reader.feed(plain)
                return
            elif isinstance(outcome, Rejected):
                self.runtime.metrics.error(outcome.error.entry.code, "mysql")
                self.send_error(outcome.error, outcome.seq)
                self.close()
                return
            elif isinstance(outcome, Authenticated):
                self._on_authenticated(outcome)
                return

    def _on_authenticated(self, outcome: Authenticated) -> None:
        rt = self.runtime
        database = None
        if outcome.database:
            database = rt.config.databases.get(outcome.database)
            if database is None:
                self.send_error(errors.AuthError(errors.AUTH_UNKNOWN_DATABASE, database=outcome.database),
                                outcome.ok.seq)
                self.close()
                return
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if self.session is None:
            self.session = MySQLSession(rt, self, user=outcome.user, capabilities=outcome.capabilities,
                                        collation=outcome.collation, database=database,
                                        ext_capabilities=outcome.ext_capabilities)
            self.handshake = None
            self.send_payload(outcome.ok.payload, outcome.ok.seq)
            return
        # COM_CHANGE_USER completed: reset the session, then OK.
        session = self.session
        self.handshake = None
        session.run_after_change_user(outcome.user, database, outcome.collation)
        seq = outcome.ok.seq

        async def finish() -> None:
            await session.reset_state()
            self.send_payload(OkPacket(0, 0, Status.AUTOCOMMIT, 0).encode(), seq)
            session.current = None
            session._next()

        session.current = None
        rt.spawn(finish())

    def begin_change_user(self, payload: bytes) -> None:
        """COM_CHANGE_USER: run a new connection phase on this socket; the session waits for it."""
        rt = self.runtime
        hs = ServerHandshake(
            connection_id=self.conn_id, server_version=rt.mysql_server_version, collation=rt.mysql_collation,
            tls_available=False, users=self._lookup_user, client_host=self.peer_host, rsa_keys=rt.rsa_keys,
            ext_capabilities=rt.mysql_ext_capabilities)
        hs.tls_active = self.tls is not None
        assert self.session is not None
        hs._p.capabilities = self.session.capabilities
        self.handshake = hs
        for outcome in hs.begin_change_user(payload):
            if isinstance(outcome, Reply):
                self.send_payload(outcome.payload, outcome.seq)
            elif isinstance(outcome, Rejected):
                self.send_error(outcome.error, outcome.seq)
                self.close()
