"""PostgreSQL message codecs: byte layouts from the protocol documentation, round trips, and refusal of garbage."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from dbmesh import errors
from dbmesh._wire.pg_framing import FramingError
from dbmesh.protocol.postgresql import messages as m


def framed(t: bytes, payload: bytes) -> bytes:
    return t + struct.pack("!I", len(payload) + 4) + payload


# Each message with the payload the documentation describes for it, written out by hand.
FRONTEND_CASES: list[tuple[Any, bytes]] = [
    (m.Query("select 1"), b"select 1\x00"),
    (m.Parse("s1", "select $1", (23, 0)), b"s1\x00select $1\x00\x00\x02\x00\x00\x00\x17\x00\x00\x00\x00"),
    (m.Parse("", "select 1"), b"\x00select 1\x00\x00\x00"),
    (m.Bind("p", "s1", (1,), (b"\x00\x00\x00\x01", None), (0, 1)),
     b"p\x00s1\x00\x00\x01\x00\x01\x00\x02\x00\x00\x00\x04\x00\x00\x00\x01\xff\xff\xff\xff\x00\x02\x00\x00\x00\x01"),
    (m.Bind("", ""), b"\x00\x00\x00\x00\x00\x00\x00\x00"),
    (m.Describe("S", "s1"), b"Ss1\x00"),
    (m.Describe("P", ""), b"P\x00"),
    (m.Execute("", 0), b"\x00\x00\x00\x00\x00"),
    (m.Execute("c", 100), b"c\x00\x00\x00\x00\x64"),
    (m.Close("S", "s1"), b"Ss1\x00"),
    (m.Sync(), b""),
    (m.Flush(), b""),
    (m.Terminate(), b""),
    (m.CopyData(b"1\t2\n"), b"1\t2\n"),
    (m.CopyDone(), b""),
    (m.CopyFail("nope"), b"nope\x00"),
    (m.FunctionCall(1234, b"\x00\x00"), b"\x00\x00\x04\xd2\x00\x00"),
]

BACKEND_CASES: list[tuple[Any, bytes]] = [
    (m.ParameterStatus("TimeZone", "UTC"), b"TimeZone\x00UTC\x00"),
    (m.BackendKeyData(42, b"\x01\x02\x03\x04"), b"\x00\x00\x00\x2a\x01\x02\x03\x04"),
    (m.BackendKeyData(7, b"k" * 32), b"\x00\x00\x00\x07" + b"k" * 32),
    (m.ReadyForQuery("I"), b"I"),
    (m.ReadyForQuery("E"), b"E"),
    (m.CommandComplete("INSERT 0 5"), b"INSERT 0 5\x00"),
    (m.RowDescription((m.FieldDescription("id", 16384, 1, 23, 4, -1, 0),)),
     b"\x00\x01id\x00\x00\x00\x40\x00\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"),
    (m.RowDescription(()), b"\x00\x00"),
    (m.DataRow((b"1", None, b"")), b"\x00\x03\x00\x00\x00\x011\xff\xff\xff\xff\x00\x00\x00\x00"),
    (m.EmptyQueryResponse(), b""),
    (m.ParseComplete(), b""),
    (m.BindComplete(), b""),
    (m.CloseComplete(), b""),
    (m.NoData(), b""),
    (m.PortalSuspended(), b""),
    (m.ParameterDescription((23, 25)), b"\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19"),
    (m.NegotiateProtocolVersion(196608, ("_pq_.x",)), b"\x00\x03\x00\x00\x00\x00\x00\x01_pq_.x\x00"),
    (m.NotificationResponse(9, "ch", "hi"), b"\x00\x00\x00\x09ch\x00hi\x00"),
    (m.CopyInResponse(0, (0, 0)), b"\x00\x00\x02\x00\x00\x00\x00"),
    (m.CopyOutResponse(1, (1,)), b"\x01\x00\x01\x00\x01"),
    (m.CopyBothResponse(0, ()), b"\x00\x00\x00"),
    (m.ErrorResponse(m.ErrorFields({"S": "ERROR", "C": "42P01", "M": "no"})), b"SERROR\x00C42P01\x00Mno\x00\x00"),
    (m.NoticeResponse(m.ErrorFields({"S": "NOTICE", "M": "hi"})), b"SNOTICE\x00Mhi\x00\x00"),
]

AUTH_CASES: list[tuple[Any, bytes]] = [
    (m.AuthenticationOk(), b"\x00\x00\x00\x00"),
    (m.AuthenticationCleartextPassword(), b"\x00\x00\x00\x03"),
    (m.AuthenticationMD5Password(b"salt"), b"\x00\x00\x00\x05salt"),
    (m.AuthenticationSASL(("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")),
     b"\x00\x00\x00\x0aSCRAM-SHA-256\x00SCRAM-SHA-256-PLUS\x00\x00"),
    (m.AuthenticationSASLContinue(b"r=abc,s=x,i=1"), b"\x00\x00\x00\x0br=abc,s=x,i=1"),
    (m.AuthenticationSASLFinal(b"v=xyz"), b"\x00\x00\x00\x0cv=xyz"),
    (m.AuthenticationUnsupported(7), b"\x00\x00\x00\x07"),
]


@pytest.mark.parametrize(("message", "payload"), FRONTEND_CASES, ids=lambda x: type(x).__name__)
def test_frontend_layout_and_round_trip(message: Any, payload: bytes) -> None:
    assert message.payload() == payload
    assert message.encode() == framed(message.TYPE, payload)
    assert type(message).decode(payload) == message
    assert m.decode_frontend(message.TYPE[0], payload) == message


@pytest.mark.parametrize(("message", "payload"), BACKEND_CASES, ids=lambda x: type(x).__name__)
def test_backend_layout_and_round_trip(message: Any, payload: bytes) -> None:
    assert message.payload() == payload
    assert message.encode() == framed(message.TYPE, payload)
    assert type(message).decode(payload) == message
    assert m.decode_backend(message.TYPE[0], payload) == message


@pytest.mark.parametrize(("message", "payload"), AUTH_CASES, ids=lambda x: type(x).__name__)
def test_authentication_layout_and_round_trip(message: Any, payload: bytes) -> None:
    assert message.payload() == payload
    assert message.encode() == framed(b"R", payload)
    assert m.decode_authentication(payload) == message
    assert m.decode_backend(ord("R"), payload) == message


@pytest.mark.parametrize(("message", "payload"), FRONTEND_CASES + BACKEND_CASES, ids=lambda x: type(x).__name__)
def test_every_truncation_is_a_framing_error(message: Any, payload: bytes) -> None:
    for cut in range(len(payload)):
        try:
            type(message).decode(payload[:cut])
        except FramingError:
            pass


@pytest.mark.parametrize(("message", "payload"), FRONTEND_CASES + BACKEND_CASES, ids=lambda x: type(x).__name__)
def test_trailing_bytes_are_refused_where_the_layout_is_closed(message: Any, payload: bytes) -> None:
    if isinstance(message, m.CopyData | m.FunctionCall | m.BackendKeyData):
        return  # open-ended layouts: the rest of the payload is data
    with pytest.raises(FramingError):
        type(message).decode(payload + b"\x00x")


def test_password_messages() -> None:
    assert m.PasswordMessage(b"secret").encode() == framed(b"p", b"secret\x00")
    assert m.PasswordMessage.decode(b"md5abc\x00") == m.PasswordMessage(b"md5abc")
    init = m.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc")
    assert init.payload() == b"SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc"
    assert m.SASLInitialResponse.decode(init.payload()) == init
    assert m.SASLInitialResponse.decode(b"X\x00\xff\xff\xff\xff") == m.SASLInitialResponse("X", None)
    assert m.SASLResponse.decode(b"c=biws") == m.SASLResponse(b"c=biws")
    with pytest.raises(FramingError):
        m.SASLInitialResponse.decode(b"SCRAM-SHA-256\x00\x00\x00\x00\x10short")
    with pytest.raises(FramingError):
        m.PasswordMessage(b"a\x00b").payload()


def test_startup_packets() -> None:
    sm = m.StartupMessage(196608, {"user": "alice", "database": "db", "_pq_.x": "1"})
    body = struct.pack("!I", 196608) + b"user\x00alice\x00database\x00db\x00_pq_.x\x001\x00\x00"
    assert sm.body() == body
    assert sm.encode() == struct.pack("!I", len(body) + 4) + body
    assert m.decode_startup(body) == sm
    assert (sm.major, sm.minor) == (3, 0)
    assert m.decode_startup(struct.pack("!I", 80877103)) == m.SSLRequest()
    assert m.SSLRequest().encode() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert m.decode_startup(struct.pack("!I", 80877104)) == m.GSSENCRequest()
    assert m.GSSENCRequest().encode() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    cancel = struct.pack("!Ii", 80877102, 1234) + b"k" * 4
    assert m.decode_startup(cancel) == m.CancelRequest(1234, b"kkkk")
    assert m.CancelRequest(1234, b"kkkk").encode() == struct.pack("!I", 16) + cancel
    assert m.decode_startup(struct.pack("!Ii", 80877102, 1) + b"k" * 256) == m.CancelRequest(1, b"k" * 256)


@pytest.mark.parametrize("body", [
    b"",
    b"\x00\x03",
    struct.pack("!I", 196608) + b"user\x00alice\x00",  # no terminator
    struct.pack("!I", 196608) + b"user\x00alice",  # value unterminated
    struct.pack("!I", 196608) + b"user\x00alice\x00\x00extra",  # terminator not last
    struct.pack("!I", 80877103) + b"x",
    struct.pack("!Ii", 80877102, 1) + b"k" * 3,
    struct.pack("!Ii", 80877102, 1) + b"k" * 257,
])
def test_bad_startup_packets(body: bytes) -> None:
    with pytest.raises(FramingError):
        m.decode_startup(body)


def test_text_is_byte_exact() -> None:
    raw = b"select '\xff\xfe latin1 \xe9'\x00"
    q = m.Query.decode(raw)
    assert q.payload() == raw
    fields = b"SERROR\x00C22021\x00Minvalid byte \xc3\x28\x00\xf0weird code\x00\x00"
    assert m.ErrorFields.decode(fields).payload() == fields


def test_error_fields_mapping() -> None:
    payload = b"SERROR\x00VERROR\x00C42601\x00Msyntax\x00P7\x00Mlater\x00\x00"
    f = m.ErrorFields.decode(payload)
    assert f.payload() == payload  # duplicates and order preserved
    assert f["M"] == "later" and f.sqlstate == "42601" and f.severity == "ERROR" and f["P"] == "7"
    assert set(f) == {"S", "V", "C", "M", "P"} and len(f) == 5
    assert f == m.ErrorFields.decode(payload) and "D" not in f
    assert m.ErrorFields({"S": "ERROR"}) == {"S": "ERROR"}
    with pytest.raises(FramingError):
        m.ErrorFields.decode(b"SERROR\x00")  # no terminator
    with pytest.raises(FramingError):
        m.ErrorFields({"SS": "x"})


def test_error_response_and_render_error() -> None:
    assert m.error_response({"S": "ERROR", "C": "0A000", "M": "no"}) == b"SERROR\x00C0A000\x00Mno\x00\x00"
    exc = errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail="bad")
    f = m.ErrorFields.decode(m.render_error(exc))
    assert f.pairs == (("S", "ERROR"), ("V", "ERROR"), ("C", "08P01"), ("M", "malformed packet: bad"))
    fatal = m.ErrorFields.decode(m.render_error(errors.InternalError("x"), "FATAL"))
    assert fatal["S"] == "FATAL" and fatal.sqlstate == "XX000" and fatal.message == "[BUG] x"
    custom = m.ErrorFields.decode(m.render_error(exc, message="other words"))
    assert custom.message == "other words" and custom.sqlstate == "08P01"


def test_bind_format_rule() -> None:
    assert m.Bind("", "", (), (b"a", b"b")).param_format(1) == 0
    assert m.Bind("", "", (1,), (b"a", b"b")).param_format(1) == 1
    assert m.Bind("", "", (0, 1), (b"a", b"b")).param_format(1) == 1


def test_invalid_values_refused() -> None:
    for bad in (b"X\x00", b"", b"\x00"):
        with pytest.raises(FramingError):
            m.Describe.decode(bad)
    for bad in (b"", b"X", b"II"):
        with pytest.raises(FramingError):
            m.ReadyForQuery.decode(bad)
    with pytest.raises(FramingError):
        m.DataRow.decode(b"\x00\x01\xff\xff\xff\xfe")  # negative length other than -1
    with pytest.raises(FramingError):
        m.Bind.decode(b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xf0\x00\x00")
    with pytest.raises(FramingError):
        m.CopyInResponse.decode(b"\x05\x00\x00")
    with pytest.raises(FramingError):
        m.NegotiateProtocolVersion.decode(b"\x00\x03\x00\x00\x7f\xff\xff\xff")
    with pytest.raises(FramingError):
        m.decode_frontend(ord("Z"), b"")
    with pytest.raises(FramingError):
        m.decode_backend(ord("Q"), b"")
    with pytest.raises(FramingError):
        m.Query("a\x00b").payload()


def test_command_complete_rows() -> None:
    assert m.CommandComplete("INSERT 0 5").rows == 5
    assert m.CommandComplete("SELECT 12").rows == 12
    assert m.CommandComplete("BEGIN").rows is None
