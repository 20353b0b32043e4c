"""MySQL packet payload codecs: one dataclass per message, named as in the protocol documentation."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from dbmesh._wire.mysql_framing import FramingError, lenenc_int, read_lenenc
from dbmesh.protocol.mysql.constants import Capability, ColumnType, Status


class PayloadReader:
    """Cursor over one payload; every read checks bounds and raises FramingError on truncation."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def uint(self, size: int) -> int:
        if self.pos + size > len(self.data):
            raise FramingError(f"truncated: needed {size} bytes at offset {self.pos}")
        v = int.from_bytes(self.data[self.pos:self.pos + size], "little")
        self.pos += size
        return v

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise FramingError(f"truncated: needed {size} bytes at offset {self.pos}")
        v = self.data[self.pos:self.pos + size]
        self.pos += size
        return v

    def lenenc(self) -> int:
        v, self.pos = read_lenenc(self.data, self.pos)
        return int(v)

    def lenenc_bytes(self) -> bytes:
        return self.take(self.lenenc())

    def nul_bytes(self) -> bytes:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise FramingError(f"unterminated string at offset {self.pos}")
        v = self.data[self.pos:end]
        self.pos = end + 1
        return v

    def nul_bytes_or_rest(self) -> bytes:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            end = len(self.data)
            v = self.data[self.pos:end]
            self.pos = end
            return v
        v = self.data[self.pos:end]
        self.pos = end + 1
        return v

    def rest(self) -> bytes:
        v = self.data[self.pos:]
        self.pos = len(self.data)
        return v


def lenenc_bytes(b: bytes) -> bytes:
    return lenenc_int(len(b)) + b


@dataclass(frozen=True, slots=True)
class HandshakeV10:
    """Initial handshake the server sends first (sequence id 0)."""

    server_version: bytes
    connection_id: int
    auth_data: bytes  # the 20-byte scramble (nonce)
    capabilities: int
    collation: int
    status: int
    auth_plugin: str
    # MariaDB capability bits 32-63, sent in the last 4 reserved bytes when CLIENT_MYSQL (bit 0) is clear.
    ext_capabilities: int = 0

    def encode(self) -> bytes:
        caps = self.capabilities
        data = self.auth_data
        ext = self.ext_capabilities if not caps & Capability.LONG_PASSWORD else 0
        return b"".join((
            b"\x0a", self.server_version, b"\x00",
            struct.pack("<I", self.connection_id),
            data[:8], b"\x00",
            struct.pack("<HBHH", caps & 0xFFFF, self.collation, self.status, (caps >> 16) & 0xFFFF),
            bytes((len(data) + 1,)),
            b"\x00" * 6, struct.pack("<I", ext),
            data[8:], b"\x00",
            self.auth_plugin.encode(), b"\x00",
        ))

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeV10:
        r = PayloadReader(payload)
        if r.uint(1) != 10:
            raise FramingError("unsupported handshake protocol version")
        version = r.nul_bytes()
        conn_id = r.uint(4)
        part1 = r.take(8)
        r.uint(1)
        caps = r.uint(2)
        collation = r.uint(1) if r.remaining() else 0
        status = r.uint(2) if r.remaining() >= 2 else 0
        caps |= (r.uint(2) << 16) if r.remaining() >= 2 else 0
        auth_len = r.uint(1) if r.remaining() else 0
        reserved = r.take(10) if r.remaining() >= 10 else r.rest()
        ext = int.from_bytes(reserved[6:10], "little") if len(reserved) == 10 and not caps & 1 else 0
        part2 = b""
        if caps & Capability.SECURE_CONNECTION and r.remaining():
            part2 = r.take(max(13, auth_len - 8))
            if part2.endswith(b"\x00"):
                part2 = part2[:-1]
        plugin = r.nul_bytes_or_rest().decode() if caps & Capability.PLUGIN_AUTH else "mysql_native_password"
        return cls(version, conn_id, part1 + part2, caps, collation, status, plugin, ext)


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    """The client's reply to the handshake (sequence id 1, or 2 after an SSLRequest)."""

    capabilities: int
    max_packet: int
    collation: int
    user: str
    auth_response: bytes
    database: str | None
    auth_plugin: str | None
    attributes: dict[str, str] = field(default_factory=dict)
    # MariaDB capability bits 32-63 in the last 4 filler bytes (meaningful when the server cleared CLIENT_MYSQL).
    ext_capabilities: int = 0

    @property
    def is_ssl_request(self) -> bool:
        return False

    def encode(self) -> bytes:
        caps = self.capabilities
        out = [struct.pack("<IIB", caps, self.max_packet, self.collation), b"\x00" * 19,
               struct.pack("<I", self.ext_capabilities), self.user.encode(), b"\x00"]
        if caps & Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out.append(lenenc_bytes(self.auth_response))
        elif caps & Capability.SECURE_CONNECTION:
            out.append(bytes((len(self.auth_response),)) + self.auth_response)
        else:
            out += [self.auth_response, b"\x00"]
        if caps & Capability.CONNECT_WITH_DB:
            out += [(self.database or "").encode(), b"\x00"]
        if caps & Capability.PLUGIN_AUTH:
            out += [(self.auth_plugin or "").encode(), b"\x00"]
        if caps & Capability.CONNECT_ATTRS:
            attrs = b"".join(lenenc_bytes(k.encode()) + lenenc_bytes(v.encode()) for k, v in self.attributes.items())
            out.append(lenenc_bytes(attrs))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeResponse41:
        r = PayloadReader(payload)
        caps = r.uint(4)
        if not caps & Capability.PROTOCOL_41:
            raise FramingError("pre-4.1 clients are not supported")
        max_packet = r.uint(4)
        collation = r.uint(1)
        filler = r.take(23)
        ext = int.from_bytes(filler[19:23], "little")
        user = r.nul_bytes().decode("utf-8", "replace")
        if caps & Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth = r.lenenc_bytes()
        elif caps & Capability.SECURE_CONNECTION:
            auth = r.take(r.uint(1))
        else:
            auth = r.nul_bytes()
        database = None
        if caps & Capability.CONNECT_WITH_DB and r.remaining():
            database = r.nul_bytes_or_rest().decode("utf-8", "replace") or None
        plugin = None
        if caps & Capability.PLUGIN_AUTH and r.remaining():
            plugin = r.nul_bytes_or_rest().decode("utf-8", "replace")
        attrs: dict[str, str] = {}
        if caps & Capability.CONNECT_ATTRS and r.remaining():
            blob = PayloadReader(r.lenenc_bytes())
            while blob.remaining():
                k = blob.lenenc_bytes().decode("utf-8", "replace")
                attrs[k] = blob.lenenc_bytes().decode("utf-8", "replace")
        return cls(caps, max_packet, collation, user, auth, database, plugin, attrs, ext)


def is_ssl_request(payload: bytes) -> bool:
    """An SSLRequest is the first 32 bytes of a HandshakeResponse41 with CLIENT_SSL set."""
    return len(payload) == 32 and bool(int.from_bytes(payload[:4], "little") & Capability.SSL)


def ssl_request(capabilities: int, max_packet: int, collation: int) -> bytes:
    return struct.pack("<IIB", capabilities | Capability.SSL, max_packet, collation) + b"\x00" * 23


@dataclass(frozen=True, slots=True)
class OkPacket:
    affected_rows: int = 0
    last_insert_id: int = 0
    status: int = Status.AUTOCOMMIT
    warnings: int = 0
    info: bytes = b""

    def encode(self, header: int = 0x00) -> bytes:
        return (bytes((header,)) + lenenc_int(self.affected_rows) + lenenc_int(self.last_insert_id)
                + struct.pack("<HH", self.status, self.warnings) + self.info)

    @classmethod
    def decode(cls, payload: bytes) -> OkPacket:
        r = PayloadReader(payload, 1)
        affected = r.lenenc()
        insert_id = r.lenenc()
        status = r.uint(2) if r.remaining() >= 2 else 0
        warnings = r.uint(2) if r.remaining() >= 2 else 0
        return cls(affected, insert_id, status, warnings, r.rest())


@dataclass(frozen=True, slots=True)
class ErrPacket:
    code: int
    sqlstate: str
    message: str

    def encode(self) -> bytes:
        return (b"\xff" + struct.pack("<H", self.code) + b"#" + self.sqlstate.encode()[:5].ljust(5, b"0")
                + self.message.encode("utf-8", "replace"))

    @classmethod
    def decode(cls, payload: bytes) -> ErrPacket:
        r = PayloadReader(payload, 1)
        code = r.uint(2)
        state = "HY000"
        if r.remaining() and payload[r.pos:r.pos + 1] == b"#":
            r.pos += 1
            state = r.take(5).decode("ascii", "replace")
        return cls(code, state, r.rest().decode("utf-8", "replace"))


def eof_packet(status: int, warnings: int = 0) -> bytes:
    return b"\xfe" + struct.pack("<HH", warnings, status)


def result_terminator(status: int, deprecate_eof: bool, warnings: int = 0) -> bytes:
    """EOF, or (CLIENT_DEPRECATE_EOF) the OK packet with a 0xFE header that replaces it."""
    if deprecate_eof:
        return OkPacket(0, 0, status, warnings).encode(0xFE)
    return eof_packet(status, warnings)


@dataclass(frozen=True, slots=True)
class ColumnDefinition41:
    name: str
    type: int = ColumnType.VAR_STRING
    charset: int = 45  # utf8mb4_general_ci
    length: int = 255
    flags: int = 0
    decimals: int = 0
    schema: str = ""
    table: str = ""
    org_table: str = ""
    org_name: str = ""

    def encode(self, extended_metadata: bool = False) -> bytes:
        """The payload; with MariaDB's MARIADB_CLIENT_EXTENDED_METADATA negotiated, an (empty) type-info string
        sits between the names and the fixed-length fields, as MariaDB sends it and Connector/C expects it."""
        return b"".join((
            lenenc_bytes(b"def"), lenenc_bytes(self.schema.encode()), lenenc_bytes(self.table.encode()),
            lenenc_bytes(self.org_table.encode()), lenenc_bytes(self.name.encode()),
            lenenc_bytes((self.org_name or self.name).encode()),
            b"\x00\x0c" if extended_metadata else b"\x0c", struct.pack("<HIBHB", self.charset, self.length, self.type, self.flags, self.decimals), b"\x00\x00",
        ))

    @classmethod
    def decode(cls, payload: bytes, extended_metadata: bool = False) -> ColumnDefinition41:
        """Parse a Protocol::ColumnDefinition41 payload (the catalog is always "def" and is not kept).
        `extended_metadata`: MariaDB's MARIADB_CLIENT_EXTENDED_METADATA was negotiated, so a length-encoded
        type-info string sits between the names and the fixed-length fields (it is skipped)."""
        r = PayloadReader(payload)
        r.lenenc_bytes()  # catalog
        schema, table, org_table, name, org_name = (r.lenenc_bytes().decode("utf-8", "replace") for _ in range(5))
        if extended_metadata:
            r.lenenc_bytes()
        r.lenenc()  # length of the fixed fields (0x0c)
        charset, length, type_, flags, decimals = struct.unpack_from("<HIBHB", payload, r.pos)
        return cls(name, type_, charset, length, flags, decimals, schema, table, org_table, org_name)


def text_row(values: Sequence[str | bytes | None]) -> bytes:
    out = []
    for v in values:
        if v is None:
            out.append(b"\xfb")
        else:
            out.append(lenenc_bytes(v.encode() if isinstance(v, str) else v))
    return b"".join(out)


def text_result_set(columns: Sequence[ColumnDefinition41], rows: Sequence[Sequence[str | bytes | None]],
                    status: int, deprecate_eof: bool, extended_metadata: bool = False) -> list[bytes]:
    """Payloads of a complete text result set (column count, definitions, [EOF], rows, terminator)."""
    out = [lenenc_int(len(columns))]
    out += [c.encode(extended_metadata) for c in columns]
    if not deprecate_eof:
        out.append(eof_packet(status))
    out += [text_row(r) for r in rows]
    out.append(result_terminator(status, deprecate_eof))
    return out


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    plugin: str
    data: bytes

    def encode(self) -> bytes:
        return b"\xfe" + self.plugin.encode() + b"\x00" + self.data

    @classmethod
    def decode(cls, payload: bytes) -> AuthSwitchRequest:
        r = PayloadReader(payload, 1)
        plugin = r.nul_bytes_or_rest().decode()
        return cls(plugin, r.rest())


def auth_more_data(data: bytes) -> bytes:
    return b"\x01" + data
