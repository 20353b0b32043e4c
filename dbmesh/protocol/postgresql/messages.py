"""PostgreSQL message codecs (protocol 3): one frozen dataclass per message, named as in the protocol documentation."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from dbmesh import errors
from dbmesh._wire.pg_framing import FramingError, build_message, build_startup

# Conventions. `decode(payload)` takes the bytes after the type byte and length (for startup-phase packets: after
# the length); `payload()` is the inverse; `encode()` returns the framed message. Text is decoded as UTF-8 with
# surrogateescape, so any bytes survive a decode/encode round trip unchanged (client_encoding need not be UTF-8).
# Decoders raise FramingError on truncation, trailing bytes or garbage, and nothing else.

PROTOCOL_3_0 = 196608  # 3 << 16
PROTOCOL_3_2 = 196610  # PG 18: variable-length cancel keys
SSL_REQUEST_CODE = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678
MAX_CANCEL_KEY = 256  # protocol 3.2 allows 4..256 bytes; 3.0 keys are exactly 4

FORMAT_TEXT = 0
FORMAT_BINARY = 1


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _cstr(s: str) -> bytes:
    b = _bytes(s)
    if b"\x00" in b:
        raise FramingError(f"string {s[:40]!r} contains NUL and cannot be sent")
    return b + b"\x00"


class Reader:
    """Cursor over one payload; big-endian reads check bounds and raise FramingError on truncation."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _unpack(self, fmt: str, size: int) -> int:
        if self.pos + size > len(self.data):
            raise FramingError(f"truncated: needed {size} bytes at offset {self.pos}")
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(v)

    def byte(self) -> int:
        return self._unpack("!B", 1)

    def int16(self) -> int:
        return self._unpack("!h", 2)

    def uint16(self) -> int:
        return self._unpack("!H", 2)

    def int32(self) -> int:
        return self._unpack("!i", 4)

    def uint32(self) -> int:
        return self._unpack("!I", 4)

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise FramingError(f"truncated: needed {size} bytes at offset {self.pos}")
        v = self.data[self.pos:self.pos + size]
        self.pos += size
        return v

    def cbytes(self) -> bytes:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise FramingError(f"unterminated string at offset {self.pos}")
        v = self.data[self.pos:end]
        self.pos = end + 1
        return v

    def cstr(self) -> str:
        return _text(self.cbytes())

    def rest(self) -> bytes:
        v = self.data[self.pos:]
        self.pos = len(self.data)
        return v

    def end(self) -> None:
        """The message must be fully consumed (the server's pq_getmsgend): trailing bytes are garbage."""
        if self.pos != len(self.data):
            raise FramingError(f"{len(self.data) - self.pos} unexpected trailing bytes")


def _int16s(r: Reader) -> tuple[int, ...]:
    return tuple(r.int16() for _ in range(r.uint16()))


def _pack_int16s(values: tuple[int, ...]) -> bytes:
    return struct.pack(f"!H{len(values)}h", len(values), *values)


class _Message:
    """Shared framing: subclasses define TYPE and payload()."""

    __slots__ = ()
    TYPE: ClassVar[bytes]

    def payload(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        return build_message(self.TYPE[0], self.payload())


class _Empty(_Message):
    """A message with no payload."""

    __slots__ = ()

    def payload(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        if payload:
            raise FramingError(f"{cls.__name__} carries {len(payload)} unexpected bytes")
        return cls()


# -- startup phase (frontend, untyped) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """Asks the server to switch to TLS; answered with one byte, 'S' or 'N'."""

    def encode(self) -> bytes:
        return build_startup(struct.pack("!I", SSL_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    """Asks for GSSAPI encryption; answered with 'G' or 'N' (dbmesh always says 'N')."""

    def encode(self) -> bytes:
        return build_startup(struct.pack("!I", GSSENC_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancels the query running on the connection with this backend pid and secret key; no reply."""

    pid: int
    key: bytes

    def encode(self) -> bytes:
        return build_startup(struct.pack("!Ii", CANCEL_REQUEST_CODE, self.pid) + self.key)


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """Opens a session: protocol version and parameters (user required; database, options, GUCs, `_pq_.` ones)."""

    protocol_version: int
    params: dict[str, str]

    def body(self) -> bytes:
        out = [struct.pack("!I", self.protocol_version)]
        for name, value in self.params.items():
            out.append(_cstr(name))
            out.append(_cstr(value))
        out.append(b"\x00")
        return b"".join(out)

    def encode(self) -> bytes:
        return build_startup(self.body())

    @property
    def major(self) -> int:
        return self.protocol_version >> 16

    @property
    def minor(self) -> int:
        return self.protocol_version & 0xFFFF


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def decode_startup(body: bytes) -> StartupPacket:
    """Decode a startup-phase packet body (what MessageReader.read_startup returns) by its code or version."""
    r = Reader(body)
    code = r.uint32()
    if code == SSL_REQUEST_CODE:
        r.end()
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        r.end()
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        pid = r.int32()
        key = r.rest()
        if not 4 <= len(key) <= MAX_CANCEL_KEY:
            raise FramingError(f"cancel key of {len(key)} bytes (must be 4..{MAX_CANCEL_KEY})")
        return CancelRequest(pid, key)
    params: dict[str, str] = {}
    while True:
        name = r.cbytes()
        if not name:
            break
        params[_text(name)] = r.cstr()
    # The server insists that the terminator is the last byte ("invalid startup packet layout").
    r.end()
    return StartupMessage(code, params)


# -- frontend (client to server) typed messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordMessage(_Message):
    """'p' answering AuthenticationCleartextPassword or MD5Password: the (hashed) password, NUL-terminated."""

    TYPE: ClassVar[bytes] = b"p"
    password: bytes

    def payload(self) -> bytes:
        if b"\x00" in self.password:
            raise FramingError("password contains NUL")
        return self.password + b"\x00"

    @classmethod
    def decode(cls, payload: bytes) -> PasswordMessage:
        r = Reader(payload)
        pw = r.cbytes()
        r.end()
        return cls(pw)


@dataclass(frozen=True, slots=True)
class SASLInitialResponse(_Message):
    """'p' after AuthenticationSASL: the chosen mechanism and the client-first message (None = length -1)."""

    TYPE: ClassVar[bytes] = b"p"
    mechanism: str
    data: bytes | None

    def payload(self) -> bytes:
        if self.data is None:
            return _cstr(self.mechanism) + struct.pack("!i", -1)
        return _cstr(self.mechanism) + struct.pack("!i", len(self.data)) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> SASLInitialResponse:
        r = Reader(payload)
        mechanism = r.cstr()
        n = r.int32()
        data = None if n == -1 else r.take(n)
        r.end()
        return cls(mechanism, data)


@dataclass(frozen=True, slots=True)
class SASLResponse(_Message):
    """'p' after AuthenticationSASLContinue: mechanism-specific data (the client-final message)."""

    TYPE: ClassVar[bytes] = b"p"
    data: bytes

    def payload(self) -> bytes:
        return self.data

    @classmethod
    def decode(cls, payload: bytes) -> SASLResponse:
        return cls(payload)


@dataclass(frozen=True, slots=True)
class Query(_Message):
    """'Q': a simple query, possibly several statements."""

    TYPE: ClassVar[bytes] = b"Q"
    query: str

    def payload(self) -> bytes:
        return _cstr(self.query)

    @classmethod
    def decode(cls, payload: bytes) -> Query:
        r = Reader(payload)
        q = r.cstr()
        r.end()
        return cls(q)


@dataclass(frozen=True, slots=True)
class Parse(_Message):
    """'P': prepare `query` as statement `name` ("" = unnamed) with parameter type OIDs (0 = unspecified)."""

    TYPE: ClassVar[bytes] = b"P"
    name: str
    query: str
    param_oids: tuple[int, ...] = ()

    def payload(self) -> bytes:
        return (_cstr(self.name) + _cstr(self.query)
                + struct.pack(f"!H{len(self.param_oids)}I", len(self.param_oids), *self.param_oids))

    @classmethod
    def decode(cls, payload: bytes) -> Parse:
        r = Reader(payload)
        name, query = r.cstr(), r.cstr()
        oids = tuple(r.uint32() for _ in range(r.uint16()))
        r.end()
        return cls(name, query, oids)


@dataclass(frozen=True, slots=True)
class Bind(_Message):
    """'B': bind parameters (None = NULL) to a statement, creating a portal.

    Format-code lists follow the protocol's rule: empty = all text, one = for all, else one per value.
    """

    TYPE: ClassVar[bytes] = b"B"
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def payload(self) -> bytes:
        out = [_cstr(self.portal), _cstr(self.statement), _pack_int16s(self.param_formats),
               struct.pack("!H", len(self.params))]
        for p in self.params:
            if p is None:
                out.append(b"\xff\xff\xff\xff")
            else:
                out.append(struct.pack("!i", len(p)))
                out.append(p)
        out.append(_pack_int16s(self.result_formats))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> Bind:
        r = Reader(payload)
        portal, statement = r.cstr(), r.cstr()
        param_formats = _int16s(r)
        params: list[bytes | None] = []
        for _ in range(r.uint16()):
            n = r.int32()
            if n == -1:
                params.append(None)
            elif n < 0:
                raise FramingError(f"invalid parameter length {n}")
            else:
                params.append(r.take(n))
        result_formats = _int16s(r)
        r.end()
        return cls(portal, statement, param_formats, tuple(params), result_formats)

    def param_format(self, i: int) -> int:
        """The format of parameter i under the protocol's 0/1/n rule."""
        if not self.param_formats:
            return FORMAT_TEXT
        return self.param_formats[0] if len(self.param_formats) == 1 else self.param_formats[i]


def _target(r: Reader) -> str:
    kind = r.byte()
    if kind not in (0x53, 0x50):  # 'S' statement, 'P' portal
        raise FramingError(f"invalid target kind {kind:#x} (expected 'S' or 'P')")
    return chr(kind)


@dataclass(frozen=True, slots=True)
class Describe(_Message):
    """'D': describe a statement ('S') or a portal ('P')."""

    TYPE: ClassVar[bytes] = b"D"
    kind: str
    name: str

    def payload(self) -> bytes:
        return self.kind.encode("ascii") + _cstr(self.name)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = Reader(payload)
        kind = _target(r)
        name = r.cstr()
        r.end()
        return cls(kind, name)


@dataclass(frozen=True, slots=True)
class Close(_Message):
    """'C': close a statement ('S') or a portal ('P'); answered with CloseComplete even if it did not exist."""

    TYPE: ClassVar[bytes] = b"C"
    kind: str
    name: str

    def payload(self) -> bytes:
        return self.kind.encode("ascii") + _cstr(self.name)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = Reader(payload)
        kind = _target(r)
        name = r.cstr()
        r.end()
        return cls(kind, name)


@dataclass(frozen=True, slots=True)
class Execute(_Message):
    """'E': run a portal, returning at most `max_rows` rows (0 = all; PortalSuspended when the limit is hit)."""

    TYPE: ClassVar[bytes] = b"E"
    portal: str
    max_rows: int = 0

    def payload(self) -> bytes:
        return _cstr(self.portal) + struct.pack("!i", self.max_rows)

    @classmethod
    def decode(cls, payload: bytes) -> Execute:
        r = Reader(payload)
        portal = r.cstr()
        max_rows = r.int32()
        r.end()
        return cls(portal, max_rows)


@dataclass(frozen=True, slots=True)
class Sync(_Empty):
    """'S': end of an extended-query batch; answered with ReadyForQuery."""

    TYPE: ClassVar[bytes] = b"S"


@dataclass(frozen=True, slots=True)
class Flush(_Empty):
    """'H': send pending output now; no reply, and not a transaction boundary."""

    TYPE: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True)
class Terminate(_Empty):
    """'X': the client is leaving."""

    TYPE: ClassVar[bytes] = b"X"


@dataclass(frozen=True, slots=True)
class CopyData(_Message):
    """'d' (both directions): a chunk of COPY data."""

    TYPE: ClassVar[bytes] = b"d"
    data: bytes

    def payload(self) -> bytes:
        return self.data

    @classmethod
    def decode(cls, payload: bytes) -> CopyData:
        return cls(payload)


@dataclass(frozen=True, slots=True)
class CopyDone(_Empty):
    """'c' (both directions): end of COPY data."""

    TYPE: ClassVar[bytes] = b"c"


@dataclass(frozen=True, slots=True)
class CopyFail(_Message):
    """'f': the client aborts COPY FROM STDIN with a message."""

    TYPE: ClassVar[bytes] = b"f"
    message: str

    def payload(self) -> bytes:
        return _cstr(self.message)

    @classmethod
    def decode(cls, payload: bytes) -> CopyFail:
        r = Reader(payload)
        m = r.cstr()
        r.end()
        return cls(m)


@dataclass(frozen=True, slots=True)
class FunctionCall(_Message):
    """'F': the legacy fast-path call. Decoded only far enough to name it in the refusal."""

    TYPE: ClassVar[bytes] = b"F"
    function_oid: int
    rest: bytes = b""

    def payload(self) -> bytes:
        return struct.pack("!I", self.function_oid) + self.rest

    @classmethod
    def decode(cls, payload: bytes) -> FunctionCall:
        r = Reader(payload)
        oid = r.uint32()
        return cls(oid, r.rest())


# -- backend (server to client) -------------------------------------------------------------------------------------

AUTH_OK = 0
AUTH_CLEARTEXT_PASSWORD = 3
AUTH_MD5_PASSWORD = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


@dataclass(frozen=True, slots=True)
class AuthenticationOk(_Message):
    """'R' 0: authentication succeeded."""

    TYPE: ClassVar[bytes] = b"R"

    def payload(self) -> bytes:
        return struct.pack("!i", AUTH_OK)


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword(_Message):
    """'R' 3: send the password in clear."""

    TYPE: ClassVar[bytes] = b"R"

    def payload(self) -> bytes:
        return struct.pack("!i", AUTH_CLEARTEXT_PASSWORD)


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password(_Message):
    """'R' 5: send md5(md5(password + user) + salt)."""

    TYPE: ClassVar[bytes] = b"R"
    salt: bytes

    def payload(self) -> bytes:
        if len(self.salt) != 4:
            raise FramingError("MD5 salt must be 4 bytes")
        return struct.pack("!i", AUTH_MD5_PASSWORD) + self.salt


@dataclass(frozen=True, slots=True)
class AuthenticationSASL(_Message):
    """'R' 10: start SASL with one of these mechanisms."""

    TYPE: ClassVar[bytes] = b"R"
    mechanisms: tuple[str, ...]

    def payload(self) -> bytes:
        return struct.pack("!i", AUTH_SASL) + b"".join(_cstr(m) for m in self.mechanisms) + b"\x00"


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue(_Message):
    """'R' 11: a SASL challenge (SCRAM server-first message)."""

    TYPE: ClassVar[bytes] = b"R"
    data: bytes

    def payload(self) -> bytes:
        return struct.pack("!i", AUTH_SASL_CONTINUE) + self.data


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal(_Message):
    """'R' 12: SASL outcome data (SCRAM server-final message); AuthenticationOk follows."""

    TYPE: ClassVar[bytes] = b"R"
    data: bytes

    def payload(self) -> bytes:
        return struct.pack("!i", AUTH_SASL_FINAL) + self.data


@dataclass(frozen=True, slots=True)
class AuthenticationUnsupported(_Message):
    """'R' with a method dbmesh does not implement (Kerberos 2, SCM 6, GSS 7/8, SSPI 9, or unknown)."""

    TYPE: ClassVar[bytes] = b"R"
    code: int
    data: bytes = b""

    def payload(self) -> bytes:
        return struct.pack("!i", self.code) + self.data


Authentication = (AuthenticationOk | AuthenticationCleartextPassword | AuthenticationMD5Password
                  | AuthenticationSASL | AuthenticationSASLContinue | AuthenticationSASLFinal
                  | AuthenticationUnsupported)


def decode_authentication(payload: bytes) -> Authentication:
    """Decode any 'R' message by its code."""
    r = Reader(payload)
    code = r.int32()
    if code == AUTH_OK:
        r.end()
        return AuthenticationOk()
    if code == AUTH_CLEARTEXT_PASSWORD:
        r.end()
        return AuthenticationCleartextPassword()
    if code == AUTH_MD5_PASSWORD:
        salt = r.take(4)
        r.end()
        return AuthenticationMD5Password(salt)
    if code == AUTH_SASL:
        mechanisms: list[str] = []
        while (m := r.cbytes()) != b"":
            mechanisms.append(_text(m))
        r.end()
        return AuthenticationSASL(tuple(mechanisms))
    if code == AUTH_SASL_CONTINUE:
        return AuthenticationSASLContinue(r.rest())
    if code == AUTH_SASL_FINAL:
        return AuthenticationSASLFinal(r.rest())
    return AuthenticationUnsupported(code, r.rest())


@dataclass(frozen=True, slots=True)
class ParameterStatus(_Message):
    """'S': a reported run-time parameter's current value (at startup, after SET, or anytime)."""

    TYPE: ClassVar[bytes] = b"S"
    name: str
    value: str

    def payload(self) -> bytes:
        return _cstr(self.name) + _cstr(self.value)

    @classmethod
    def decode(cls, payload: bytes) -> ParameterStatus:
        r = Reader(payload)
        name, value = r.cstr(), r.cstr()
        r.end()
        return cls(name, value)


@dataclass(frozen=True, slots=True)
class BackendKeyData(_Message):
    """'K': the process id and secret key a CancelRequest must quote (key: 4 bytes in 3.0, up to 256 in 3.2)."""

    TYPE: ClassVar[bytes] = b"K"
    pid: int
    key: bytes

    def payload(self) -> bytes:
        return struct.pack("!i", self.pid) + self.key

    @classmethod
    def decode(cls, payload: bytes) -> BackendKeyData:
        r = Reader(payload)
        pid = r.int32()
        key = r.rest()
        if not 4 <= len(key) <= MAX_CANCEL_KEY:
            raise FramingError(f"cancel key of {len(key)} bytes (must be 4..{MAX_CANCEL_KEY})")
        return cls(pid, key)


TX_IDLE = "I"  # idle, not in a transaction block
TX_IN_TRANSACTION = "T"  # in a transaction block
TX_FAILED = "E"  # in a failed transaction block: queries are rejected until it ends


@dataclass(frozen=True, slots=True)
class ReadyForQuery(_Message):
    """'Z': the backend is ready for a new query; status is 'I', 'T' or 'E'."""

    TYPE: ClassVar[bytes] = b"Z"
    status: str

    def payload(self) -> bytes:
        return self.status.encode("ascii")

    @classmethod
    def decode(cls, payload: bytes) -> ReadyForQuery:
        if payload not in (b"I", b"T", b"E"):
            raise FramingError(f"invalid ReadyForQuery status {payload[:8]!r}")
        return cls(payload.decode("ascii"))


# Field codes of ErrorResponse and NoticeResponse.
FIELD_SEVERITY = "S"  # localized severity
FIELD_SEVERITY_RAW = "V"  # non-localized severity (9.6+)
FIELD_SQLSTATE = "C"
FIELD_MESSAGE = "M"
FIELD_DETAIL = "D"
FIELD_HINT = "H"
FIELD_POSITION = "P"
FIELD_INTERNAL_POSITION = "p"
FIELD_INTERNAL_QUERY = "q"
FIELD_WHERE = "W"
FIELD_SCHEMA = "s"
FIELD_TABLE = "t"
FIELD_COLUMN = "c"
FIELD_DATA_TYPE = "d"
FIELD_CONSTRAINT = "n"
FIELD_FILE = "F"
FIELD_LINE = "L"
FIELD_ROUTINE = "R"


class ErrorFields(Mapping[str, str]):
    """The fields of an ErrorResponse/NoticeResponse, keyed by their one-character code.

    Keeps the fields in wire order, duplicates included, so decode(payload()) round-trips byte-exactly; lookup
    returns the last occurrence of a code.
    """

    __slots__ = ("_index", "pairs")

    def __init__(self, fields: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items = fields.items() if isinstance(fields, Mapping) else fields
        self.pairs: tuple[tuple[str, str], ...] = tuple(items)
        for code, _ in self.pairs:
            if len(_bytes(code)) != 1 or code == "\x00":
                raise FramingError(f"invalid error field code {code!r}")
        self._index = {code: value for code, value in self.pairs}

    def __getitem__(self, code: str) -> str:
        return self._index[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"ErrorFields({list(self.pairs)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ErrorFields):
            return self.pairs == other.pairs
        return Mapping.__eq__(self, other)

    def __hash__(self) -> int:
        return hash(self.pairs)

    @property
    def severity(self) -> str:
        return self._index.get(FIELD_SEVERITY_RAW) or self._index.get(FIELD_SEVERITY, "")

    @property
    def sqlstate(self) -> str:
        return self._index.get(FIELD_SQLSTATE, "")

    @property
    def message(self) -> str:
        return self._index.get(FIELD_MESSAGE, "")

    def payload(self) -> bytes:
        return b"".join(_bytes(code) + _cstr(value) for code, value in self.pairs) + b"\x00"

    @classmethod
    def decode(cls, payload: bytes) -> ErrorFields:
        r = Reader(payload)
        pairs: list[tuple[str, str]] = []
        while True:
            code = r.byte()
            if code == 0:
                break
            pairs.append((_text(bytes((code,))), r.cstr()))
        r.end()
        return cls(pairs)


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Message):
    """'E': an error; FATAL and PANIC end the session."""

    TYPE: ClassVar[bytes] = b"E"
    fields: ErrorFields

    def payload(self) -> bytes:
        return self.fields.payload()

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return cls(ErrorFields.decode(payload))


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Message):
    """'N': a notice (warning, info); may arrive at any time."""

    TYPE: ClassVar[bytes] = b"N"
    fields: ErrorFields

    def payload(self) -> bytes:
        return self.fields.payload()

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return cls(ErrorFields.decode(payload))


def error_response(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """The payload of an ErrorResponse (or NoticeResponse) holding these fields in this order."""
    return ErrorFields(fields).payload()


def render_error(exc: errors.DbMeshError, severity: str = "ERROR", *, message: str | None = None) -> bytes:
    """The one place a dbmesh error becomes an ErrorResponse payload: S/V severity, C SQLSTATE, M message.

    `message` replaces the catalogue text where PostgreSQL clients expect the server's own wording (drivers and
    users match `password authentication failed for user "x"`); the SQLSTATE still comes from the catalogue.
    """
    return error_response(((FIELD_SEVERITY, severity), (FIELD_SEVERITY_RAW, severity),
                           (FIELD_SQLSTATE, exc.entry.pg_sqlstate),
                           (FIELD_MESSAGE, exc.message if message is None else message)))


@dataclass(frozen=True, slots=True)
class CommandComplete(_Message):
    """'C': a statement finished; the tag is e.g. "SELECT 5", "INSERT 0 1", "UPDATE 3"."""

    TYPE: ClassVar[bytes] = b"C"
    tag: str

    def payload(self) -> bytes:
        return _cstr(self.tag)

    @classmethod
    def decode(cls, payload: bytes) -> CommandComplete:
        r = Reader(payload)
        tag = r.cstr()
        r.end()
        return cls(tag)

    @property
    def rows(self) -> int | None:
        """The row count at the end of the tag, when there is one."""
        last = self.tag.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() and " " in self.tag else None


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription."""

    name: str
    table_oid: int = 0
    column_attr: int = 0
    type_oid: int = 25  # text
    type_size: int = -1
    type_modifier: int = -1
    format: int = FORMAT_TEXT

    def payload(self) -> bytes:
        return _cstr(self.name) + struct.pack("!IhIhih", self.table_oid, self.column_attr, self.type_oid,
                                              self.type_size, self.type_modifier, self.format)


@dataclass(frozen=True, slots=True)
class RowDescription(_Message):
    """'T': the columns of the rows that follow."""

    TYPE: ClassVar[bytes] = b"T"
    fields: tuple[FieldDescription, ...]

    def payload(self) -> bytes:
        return struct.pack("!H", len(self.fields)) + b"".join(f.payload() for f in self.fields)

    @classmethod
    def decode(cls, payload: bytes) -> RowDescription:
        r = Reader(payload)
        out = []
        for _ in range(r.uint16()):
            name = r.cstr()
            out.append(FieldDescription(name, r.uint32(), r.int16(), r.uint32(), r.int16(), r.int32(), r.int16()))
        r.end()
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class DataRow(_Message):
    """'D': one row; each value is its bytes in the column's format, or None for NULL."""

    TYPE: ClassVar[bytes] = b"D"
    values: tuple[bytes | None, ...]

    def payload(self) -> bytes:
        out = [struct.pack("!H", len(self.values))]
        for v in self.values:
            if v is None:
                out.append(b"\xff\xff\xff\xff")
            else:
                out.append(struct.pack("!i", len(v)))
                out.append(v)
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> DataRow:
        r = Reader(payload)
        values: list[bytes | None] = []
        for _ in range(r.uint16()):
            n = r.int32()
            if n == -1:
                values.append(None)
            elif n < 0:
                raise FramingError(f"invalid value length {n}")
            else:
                values.append(r.take(n))
        r.end()
        return cls(tuple(values))


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(_Empty):
    """'I': the query string was empty (replaces CommandComplete)."""

    TYPE: ClassVar[bytes] = b"I"


@dataclass(frozen=True, slots=True)
class ParseComplete(_Empty):
    """'1': Parse succeeded."""

    TYPE: ClassVar[bytes] = b"1"


@dataclass(frozen=True, slots=True)
class BindComplete(_Empty):
    """'2': Bind succeeded."""

    TYPE: ClassVar[bytes] = b"2"


@dataclass(frozen=True, slots=True)
class CloseComplete(_Empty):
    """'3': Close succeeded."""

    TYPE: ClassVar[bytes] = b"3"


@dataclass(frozen=True, slots=True)
class NoData(_Empty):
    """'n': the described statement or portal returns no rows."""

    TYPE: ClassVar[bytes] = b"n"


@dataclass(frozen=True, slots=True)
class PortalSuspended(_Empty):
    """'s': Execute hit its row limit; Execute the portal again for more."""

    TYPE: ClassVar[bytes] = b"s"


@dataclass(frozen=True, slots=True)
class ParameterDescription(_Message):
    """'t': the parameter type OIDs of a described statement."""

    TYPE: ClassVar[bytes] = b"t"
    type_oids: tuple[int, ...]

    def payload(self) -> bytes:
        return struct.pack(f"!H{len(self.type_oids)}I", len(self.type_oids), *self.type_oids)

    @classmethod
    def decode(cls, payload: bytes) -> ParameterDescription:
        r = Reader(payload)
        oids = tuple(r.uint32() for _ in range(r.uint16()))
        r.end()
        return cls(oids)


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(_Message):
    """'v': the newest protocol version the server supports (full number, e.g. 196608) and unrecognized options."""

    TYPE: ClassVar[bytes] = b"v"
    newest_version: int
    unrecognized: tuple[str, ...] = ()

    def payload(self) -> bytes:
        return struct.pack("!Ii", self.newest_version, len(self.unrecognized)) + b"".join(
            _cstr(o) for o in self.unrecognized)

    @classmethod
    def decode(cls, payload: bytes) -> NegotiateProtocolVersion:
        r = Reader(payload)
        version = r.uint32()
        n = r.int32()
        if n < 0 or n > r.remaining():
            raise FramingError(f"invalid option count {n}")
        options = tuple(r.cstr() for _ in range(n))
        r.end()
        return cls(version, options)


@dataclass(frozen=True, slots=True)
class NotificationResponse(_Message):
    """'A': a NOTIFY delivered to this session."""

    TYPE: ClassVar[bytes] = b"A"
    pid: int
    channel: str
    payload_text: str

    def payload(self) -> bytes:
        return struct.pack("!i", self.pid) + _cstr(self.channel) + _cstr(self.payload_text)

    @classmethod
    def decode(cls, payload: bytes) -> NotificationResponse:
        r = Reader(payload)
        pid = r.int32()
        channel, text = r.cstr(), r.cstr()
        r.end()
        return cls(pid, channel, text)


class _CopyResponse(_Message):
    """Overall format (0 text, 1 binary) and one format per column."""

    __slots__ = ()
    format: int
    column_formats: tuple[int, ...]

    def payload(self) -> bytes:
        return struct.pack("!b", self.format) + _pack_int16s(self.column_formats)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = Reader(payload)
        fmt = r.byte()
        if fmt not in (FORMAT_TEXT, FORMAT_BINARY):
            raise FramingError(f"invalid COPY format {fmt}")
        cols = _int16s(r)
        r.end()
        return cls(fmt, cols)  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    """'G': COPY FROM STDIN started; the client sends CopyData then CopyDone or CopyFail."""

    TYPE: ClassVar[bytes] = b"G"
    format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    """'H': COPY TO STDOUT started; CopyData follows, then CopyDone and CommandComplete."""

    TYPE: ClassVar[bytes] = b"H"
    format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    """'W': streaming replication's two-way COPY."""

    TYPE: ClassVar[bytes] = b"W"
    format: int
    column_formats: tuple[int, ...]


# Decoders by type byte, per direction (type bytes are reused: 'D' is DataRow or Describe, 'S' ParameterStatus
# or Sync, ...). 'p' is absent: what it holds depends on the authentication exchange in progress.
FRONTEND: dict[bytes, type[_Message]] = {c.TYPE: c for c in (
    Query, Parse, Bind, Describe, Execute, Close, Sync, Flush, Terminate, CopyData, CopyDone, CopyFail, FunctionCall)}
BACKEND: dict[bytes, type[_Message]] = {c.TYPE: c for c in (
    ParameterStatus, BackendKeyData, ReadyForQuery, ErrorResponse, NoticeResponse, CommandComplete, RowDescription,
    DataRow, EmptyQueryResponse, ParseComplete, BindComplete, CloseComplete, NoData, ParameterDescription,
    PortalSuspended, NegotiateProtocolVersion, NotificationResponse, CopyInResponse, CopyOutResponse,
    CopyBothResponse, CopyData, CopyDone)}


def decode_frontend(type: int, payload: bytes) -> _Message:
    """Decode a typed client message (not 'p'); unknown types raise FramingError."""
    cls = FRONTEND.get(bytes((type,)))
    if cls is None:
        raise FramingError(f"invalid frontend message type {type}")
    return cls.decode(payload)  # type: ignore[attr-defined,no-any-return]


def decode_backend(type: int, payload: bytes) -> _Message:
    """Decode a typed server message ('R' through decode_authentication); unknown types raise FramingError."""
    if type == 0x52:
        return decode_authentication(payload)
    cls = BACKEND.get(bytes((type,)))
    if cls is None:
        raise FramingError(f"invalid backend message type {type}")
    return cls.decode(payload)  # type: ignore[attr-defined,no-any-return]
