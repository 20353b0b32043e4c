"""Connection phase, client side: how dbmesh logs in to a MySQL/MariaDB data source, as a state machine."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from dbmesh._wire.mysql_framing import FramingError
from dbmesh.protocol.mysql import auth
from dbmesh.protocol.mysql.constants import CACHING_SHA2_PASSWORD, CLEAR_PASSWORD, NATIVE_PASSWORD, Capability
from dbmesh.protocol.mysql.packets import (
    AuthSwitchRequest,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
)


@dataclass(frozen=True, slots=True)
class Send:
    payload: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class Ready:
    """Logged in. `capabilities` is what both sides agreed on."""

    server: HandshakeV10
    capabilities: int
    ok: OkPacket
    ext_capabilities: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """The server refused (its ERR), or broke the protocol (a synthesized ERR with code 0)."""

    err: ErrPacket


ClientOutcome = Send | Ready | Failed


class _State(Enum):
    AWAIT_GREETING = auto()
    AWAIT_AUTH_RESULT = auto()
    AWAIT_PUBLIC_KEY = auto()
    DONE = auto()


class ClientHandshake:
    """Logs in with a user and password; feed each server payload with its sequence id."""

    def __init__(self, *, user: str, password: str, database: str | None, capabilities: int, collation: int,
                 max_packet: int = 1 << 30, attributes: dict[str, str] | None = None,
                 ext_capabilities: int = 0) -> None:
        self.user = user
        self.password = password
        self.database = database
        self.requested = capabilities
        self.requested_ext = ext_capabilities
        self.ext_capabilities = 0
        self.collation = collation
        self.max_packet = max_packet
        self.attributes = attributes or {"_client_name": "dbmesh"}
        self.state = _State.AWAIT_GREETING
        self.server: HandshakeV10 | None = None
        self.capabilities = 0
        self.nonce = b""
        self.plugin = NATIVE_PASSWORD

    def feed(self, payload: bytes, seq: int) -> list[ClientOutcome]:
        try:
            return self._feed(payload, seq)
        except (FramingError, ValueError) as exc:
            self.state = _State.DONE
            return [Failed(ErrPacket(0, "08S01", f"malformed handshake packet: {exc}"))]

    def _feed(self, payload: bytes, seq: int) -> list[ClientOutcome]:
        if payload[:1] == b"\xff":
            self.state = _State.DONE
            return [Failed(ErrPacket.decode(payload))]
        if self.state is _State.AWAIT_GREETING:
            server = HandshakeV10.decode(payload)
            self.server = server
            self.nonce = server.auth_data
            caps = self.requested & server.capabilities
            if self.database:
                caps |= Capability.CONNECT_WITH_DB
            else:
                caps &= ~Capability.CONNECT_WITH_DB
            caps |= Capability.PROTOCOL_41 | Capability.LONG_PASSWORD
            if not server.capabilities & Capability.LONG_PASSWORD and self.requested_ext & server.ext_capabilities:
                # A MariaDB server: extended capabilities travel in the filler, and only with CLIENT_MYSQL clear.
                self.ext_capabilities = self.requested_ext & server.ext_capabilities
                caps &= ~Capability.LONG_PASSWORD
            self.capabilities = caps
            self.plugin = server.auth_plugin or NATIVE_PASSWORD
            if self.plugin not in (NATIVE_PASSWORD, CACHING_SHA2_PASSWORD):
                self.plugin = NATIVE_PASSWORD
            resp = HandshakeResponse41(self.capabilities, self.max_packet, self.collation, self.user,
                                       self._scramble(self.plugin), self.database, self.plugin, self.attributes,
                                       self.ext_capabilities)
            self.state = _State.AWAIT_AUTH_RESULT
            return [Send(resp.encode(), seq + 1)]
        if self.state is _State.AWAIT_AUTH_RESULT:
            head = payload[:1]
            if head == b"\x00" and len(payload) >= 7:
                self.state = _State.DONE
                assert self.server is not None
                return [Ready(self.server, self.capabilities, OkPacket.decode(payload), self.ext_capabilities)]
            if head == b"\xfe":
                switch = AuthSwitchRequest.decode(payload)
                self.plugin = switch.plugin
                if switch.data:
                    self.nonce = switch.data[:-1] if switch.data.endswith(b"\x00") else switch.data
                if self.plugin == CLEAR_PASSWORD:
                    return [Send(self.password.encode() + b"\x00", seq + 1)]
                if self.plugin not in (NATIVE_PASSWORD, CACHING_SHA2_PASSWORD):
                    self.state = _State.DONE
                    return [Failed(ErrPacket(1251, "08004",
                                             f"data source asked for unsupported plugin {self.plugin}"))]
                return [Send(self._scramble(self.plugin), seq + 1)]
            if head == b"\x01" and self.plugin == CACHING_SHA2_PASSWORD:
                if payload[1:2] == b"\x03":  # fast auth OK; the OK packet follows
                    return []
                if payload[1:2] == b"\x04":  # full auth: ask for the RSA key (data-source legs run without TLS)
                    self.state = _State.AWAIT_PUBLIC_KEY
                    return [Send(b"\x02", seq + 1)]
            self.state = _State.DONE
            return [Failed(ErrPacket(0, "08S01", f"unexpected authentication packet 0x{payload[:1].hex()}"))]
        if self.state is _State.AWAIT_PUBLIC_KEY:
            if payload[:1] != b"\x01":
                self.state = _State.DONE
                return [Failed(ErrPacket(0, "08S01", "expected the server's public key"))]
            self.state = _State.AWAIT_AUTH_RESULT
            return [Send(auth.rsa_encrypt_password(payload[1:], self.password, self.nonce), seq + 1)]
        self.state = _State.DONE
        return [Failed(ErrPacket(0, "08S01", "packet after the handshake ended"))]

    def _scramble(self, plugin: str) -> bytes:
        if plugin == CACHING_SHA2_PASSWORD:
            return auth.caching_sha2_response(self.password, self.nonce)
        return auth.native_password_response(self.password, self.nonce)
