"""LOAD DATA LOCAL on a one-data-source database: the client's file packets relayed to the data source that asked.

The exchange (PROTOCOL-NOTES §6): the server answers the COM_QUERY with 0xFB + file name (forwarded to the client
as it came); the client streams the file as packets whose sequence ids continue, ends it with an empty packet, and
the server then answers OK/ERR. dbmesh never opens a file: what the server gets is exactly what the client chose
to send (nothing, if it refuses), packet for packet with the client's own sequence ids. A data source only asks
when its connection negotiated CLIENT_LOCAL_FILES, which dbmesh requests only for clients that negotiated it, so a
client without it gets the server's own refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from dbmesh._wire.mysql_framing import build_packet

if TYPE_CHECKING:
    from dbmesh.backend.mysql_connection import MySQLBackendConnection
    from dbmesh.server.mysql_frontend import MySQLFrontend


class FileSink(Protocol):
    """Where the client's file packets go while a LOAD DATA LOCAL statement waits for them."""

    def packet(self, payload: bytes, seq: int) -> bool:
        """One packet of the file; True when it was the empty packet that ends it (the session reads commands
        again from the next packet on)."""
        ...


class InfileRelay:
    """Relays one file from the client to the data source connection waiting for it.

    Backpressure: when the data source reads slower than the client sends, the connection's write buffer passes
    its high-water mark; the client socket is then paused until the buffer drains, so a large file is never held
    in memory."""

    __slots__ = ("conn", "frontend", "paused")

    def __init__(self, conn: MySQLBackendConnection, frontend: MySQLFrontend) -> None:
        self.conn = conn
        self.frontend = frontend
        self.paused = False

    def packet(self, payload: bytes, seq: int) -> bool:
        """Relay one client packet of the file; True when it was the empty packet that ends the file."""
        conn = self.conn
        if not payload:
            # The scanner resumes before the server can answer: its answer follows this packet.
            conn.send_infile_end(seq)
            return True
        # Re-framed from the reassembled payload: the same chunks and sequence ids the client sent.
        conn.send_no_reply(build_packet(payload, seq))
        if conn.write_paused and not self.paused:
            self.paused = True
            self.frontend.pause_reading_client()
            conn.when_writable(self._resume)
        return False

    def _resume(self) -> None:
        self.paused = False
        self.frontend.resume_reading_client()
