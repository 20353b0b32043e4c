"""What both protocol frontends share: the client socket, TLS over memory BIOs, writing, closing and backpressure."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Protocol

from dbmesh.server.tls import TlsStream

log = logging.getLogger("dbmesh.server")


class _PausableSession(Protocol):
    def on_client_paused(self, paused: bool) -> None: ...


class ClientConnection(asyncio.Protocol):
    """Base of the per-client protocols. Subclasses set `session` once the client is logged in."""

    session: _PausableSession | None

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tls: TlsStream | None = None
        self.closed = False
        self.peer_host = ""
        self.session = None

    def _attach_transport(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop transports are not asyncio.Transport subclasses
        peer = transport.get_extra_info("peername")
        self.peer_host = peer[0] if isinstance(peer, tuple) else "localhost"

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            if self.tls is not None:
                if not self.tls.handshake_done:
                    return  # nothing can be said before the TLS handshake; the caller closes
                data = self.tls.encrypt(data)
            t.write(data)

    def writer(self) -> Callable[[bytes], None]:
        """A callable that does what write() does, for the rest of this connection's life (a logged-in session's
        per-chunk forwarder). Without TLS, which can no longer start once a session exists, it skips the TLS test
        and an attribute look-up per call; with TLS it is write() itself."""
        t = self.transport
        if t is None or self.tls is not None:
            return self.write
        is_closing, send = t.is_closing, t.write

        def write_plain(data: bytes) -> None:
            if not is_closing():
                send(data)

        return write_plain

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.on_client_paused(True)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.on_client_paused(False)

    def _decrypt(self, data: bytes) -> bytes:
        """Ciphertext in, plaintext out; handshake records and alerts are sent; a TLS failure closes."""
        tls = self.tls
        assert tls is not None
        try:
            plain = tls.receive(data)
        except ssl.SSLError as exc:
            log.info("TLS failure with %s: %s", self.peer_host, exc)
            out = tls.pending()
            if out and self.transport is not None:
                self.transport.write(out)
            self.close()
            return b""
        out = tls.pending()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
        if tls.closed:
            self.close()
        return plain
