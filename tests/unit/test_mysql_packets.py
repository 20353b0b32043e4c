"""Encode/decode of the MySQL connection-phase and response packets (dbmesh.protocol.mysql.packets)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbmesh._wire.mysql_framing import RESPONSE_RESULT, FramingError, ResponseScanner, build_packet
from dbmesh.protocol.mysql.constants import SERVER_CAPABILITIES, Capability, ColumnType, Status
from dbmesh.protocol.mysql.packets import (
    AuthSwitchRequest,
    ColumnDefinition41,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    PayloadReader,
    auth_more_data,
    eof_packet,
    is_ssl_request,
    lenenc_bytes,
    result_terminator,
    ssl_request,
    text_result_set,
    text_row,
)

C = Capability
SCRAMBLE = bytes(range(1, 21))

# -- HandshakeV10 ---------------------------------------------------------------------------------------------------


def test_handshake_v10_layout() -> None:
    hs = HandshakeV10(b"5.7.0-dbmesh", 0x01020304, SCRAMBLE, int(SERVER_CAPABILITIES | C.SSL), 45,
                      Status.AUTOCOMMIT, "mysql_native_password")
    p = hs.encode()
    assert p[0] == 0x0A
    end = p.index(b"\x00", 1)
    assert p[1:end] == b"5.7.0-dbmesh"
    pos = end + 1
    assert struct.unpack_from("<I", p, pos)[0] == 0x01020304
    pos += 4
    assert p[pos:pos + 8] == SCRAMBLE[:8] and p[pos + 8] == 0
    pos += 9
    caps_lo, collation, status, caps_hi, auth_len = struct.unpack_from("<HBHHB", p, pos)
    assert caps_lo | caps_hi << 16 == int(SERVER_CAPABILITIES | C.SSL)
    assert (collation, status, auth_len) == (45, Status.AUTOCOMMIT, 21)
    pos += 8
    assert p[pos:pos + 10] == bytes(10)
    pos += 10
    assert p[pos:pos + 13] == SCRAMBLE[8:] + b"\x00"  # max(13, auth_len - 8) bytes
    assert p[pos + 13:] == b"mysql_native_password\x00"


@given(version=st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"")),
       conn_id=st.integers(0, 2**32 - 1), scramble=st.binary(min_size=20, max_size=20).map(
           lambda b: bytes(x or 1 for x in b)),
       caps=st.integers(0, 2**32 - 1), collation=st.integers(0, 255), status=st.integers(0, 0xFFFF),
       plugin=st.sampled_from(["mysql_native_password", "caching_sha2_password", "x"]))
@settings(max_examples=200, deadline=None)
def test_handshake_v10_round_trip(version: bytes, conn_id: int, scramble: bytes, caps: int, collation: int,
                                  status: int, plugin: str) -> None:
    caps |= C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.PROTOCOL_41
    hs = HandshakeV10(version, conn_id, scramble, caps, collation, status, plugin)
    assert HandshakeV10.decode(hs.encode()) == hs


def test_handshake_v10_decode_mysql8_greeting() -> None:
    """A greeting as MySQL 8 sends it (caching_sha2_password, 21-byte auth data length)."""
    caps = 0xDFFFFFFF
    payload = (b"\x0a8.0.36\x00" + struct.pack("<I", 11) + b"abcdefgh\x00" + struct.pack("<HBHH", caps & 0xFFFF, 255,
               2, caps >> 16) + b"\x15" + bytes(10) + b"ijklmnopqrst\x00" + b"caching_sha2_password\x00")
    hs = HandshakeV10.decode(payload)
    assert hs.server_version == b"8.0.36" and hs.connection_id == 11
    assert hs.auth_data == b"abcdefghijklmnopqrst"
    assert hs.capabilities == caps and hs.collation == 255 and hs.status == 2
    assert hs.auth_plugin == "caching_sha2_password"


@pytest.mark.parametrize("payload", [b"", b"\x09", b"\x0a5.7", b"\x0a5.7\x00\x01\x02", b"\x0a5.7\x00" + bytes(8)])
def test_handshake_v10_decode_rejects_truncated(payload: bytes) -> None:
    with pytest.raises(FramingError):
        HandshakeV10.decode(payload)


# -- HandshakeResponse41 ------------------------------------------------------------------------------------------

BASE = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.LONG_PASSWORD


@pytest.mark.parametrize("extra", [
    0,
    C.CONNECT_WITH_DB,
    C.PLUGIN_AUTH,
    C.CONNECT_ATTRS,
    C.PLUGIN_AUTH_LENENC_CLIENT_DATA,
    C.CONNECT_WITH_DB | C.PLUGIN_AUTH | C.CONNECT_ATTRS | C.PLUGIN_AUTH_LENENC_CLIENT_DATA,
    C.PLUGIN_AUTH | C.CONNECT_ATTRS,
])
def test_handshake_response_round_trip(extra: int) -> None:
    caps = int(BASE | extra)
    resp = HandshakeResponse41(
        caps, 16 * 1024 * 1024, 45, "app_user", bytes(range(20)),
        "shop" if caps & C.CONNECT_WITH_DB else None,
        "caching_sha2_password" if caps & C.PLUGIN_AUTH else None,
        {"_client_name": "libmysql", "_pid": "42", "program_name": "x" * 300} if caps & C.CONNECT_ATTRS else {})
    payload = resp.encode()
    assert payload[:4] == struct.pack("<I", caps)
    assert payload[9:32] == bytes(23)
    assert HandshakeResponse41.decode(payload) == resp
    assert not is_ssl_request(payload)


def test_handshake_response_lenenc_auth_data_over_250_bytes() -> None:
    caps = int(BASE | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.PLUGIN_AUTH)
    resp = HandshakeResponse41(caps, 1 << 24, 33, "u", bytes(300), None, "mysql_clear_password")
    payload = resp.encode()
    assert b"u\x00\xfc\x2c\x01" in payload  # lenenc 300
    assert HandshakeResponse41.decode(payload) == resp


def test_handshake_response_without_secure_connection_round_trips() -> None:
    """Without SECURE_CONNECTION (and LENENC data) the auth response is a NUL-terminated string [M-hs]."""
    caps = int(C.PROTOCOL_41 | C.PLUGIN_AUTH)
    resp = HandshakeResponse41(caps, 1 << 24, 45, "old", b"secret", None, "mysql_clear_password")
    assert HandshakeResponse41.decode(resp.encode()) == resp


def test_handshake_response_empty_optional_fields() -> None:
    caps = int(BASE | C.CONNECT_WITH_DB | C.PLUGIN_AUTH)
    # Trailing optional fields may be absent altogether: decoded as missing, not as an error.
    payload = struct.pack("<IIB", caps, 0, 45) + bytes(23) + b"root\x00\x00"
    resp = HandshakeResponse41.decode(payload)
    assert (resp.user, resp.auth_response, resp.database, resp.auth_plugin) == ("root", b"", None, None)


def test_handshake_response_rejects_pre41_and_truncation() -> None:
    with pytest.raises(FramingError, match=r"pre-4\.1"):
        HandshakeResponse41.decode(struct.pack("<IIB", int(C.SECURE_CONNECTION), 0, 8) + bytes(23) + b"u\x00\x00")
    good = HandshakeResponse41(int(BASE | C.CONNECT_ATTRS), 0, 45, "user", bytes(20), None, None, {"k": "v"}).encode()
    for cut in (0, 3, 8, 20, 32, 36, 38, 50):
        with pytest.raises(FramingError):
            HandshakeResponse41.decode(good[:cut])


def test_ssl_request() -> None:
    p = ssl_request(int(BASE), 1 << 24, 45)
    assert len(p) == 32 and is_ssl_request(p)
    assert struct.unpack_from("<I", p)[0] & C.SSL
    assert not is_ssl_request(p[:31])
    assert not is_ssl_request(struct.pack("<IIB", int(BASE), 0, 45) + bytes(23))  # 32 bytes but no SSL bit


# -- OK / ERR / EOF -----------------------------------------------------------------------------------------------


@given(affected=st.integers(0, 2**64 - 1), insert_id=st.integers(0, 2**64 - 1), status=st.integers(0, 0xFFFF),
       warnings=st.integers(0, 0xFFFF), info=st.binary(max_size=40), header=st.sampled_from([0x00, 0xFE]))
@settings(max_examples=200, deadline=None)
def test_ok_round_trip(affected: int, insert_id: int, status: int, warnings: int, info: bytes, header: int) -> None:
    ok = OkPacket(affected, insert_id, status, warnings, info)
    payload = ok.encode(header)
    assert payload[0] == header
    assert OkPacket.decode(payload) == ok


def test_ok_layout_and_defaults() -> None:
    assert OkPacket().encode() == b"\x00\x00\x00\x02\x00\x00\x00"
    assert OkPacket(251, 0x10000, 0x4000, 1).encode() == b"\x00\xfc\xfb\x00\xfd\x00\x00\x01\x00\x40\x01\x00"
    assert OkPacket.decode(b"\x00\x01\x02") == OkPacket(1, 2, 0, 0, b"")  # pre-4.1 style short OK


@given(code=st.integers(0, 0xFFFF), state=st.text("0123456789ABCDEFHYZ", min_size=5, max_size=5),
       message=st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_err_round_trip(code: int, state: str, message: str) -> None:
    err = ErrPacket(code, state, message)
    payload = err.encode()
    assert payload[:4] == b"\xff" + struct.pack("<H", code) + b"#"
    assert ErrPacket.decode(payload) == err


def test_err_without_sqlstate_marker_and_padding() -> None:
    assert ErrPacket.decode(b"\xff\x15\x04Access denied") == ErrPacket(1045, "HY000", "Access denied")
    assert ErrPacket(1045, "28", "m").encode() == b"\xff\x15\x04#28000m"  # a short SQLSTATE is padded
    with pytest.raises(FramingError):
        ErrPacket.decode(b"\xff\x15")


def test_eof_and_terminators() -> None:
    assert eof_packet(0x0022, 3) == b"\xfe\x03\x00\x22\x00"
    assert result_terminator(0x0002, False) == b"\xfe\x00\x00\x02\x00"
    term = result_terminator(0x000A, True, 1)
    assert term[0] == 0xFE and len(term) >= 7
    assert OkPacket.decode(term) == OkPacket(0, 0, 0x000A, 1)


# -- AuthSwitchRequest, AuthMoreData --------------------------------------------------------------------------------


@pytest.mark.parametrize("plugin,data", [("caching_sha2_password", SCRAMBLE + b"\x00"),
                                         ("mysql_native_password", SCRAMBLE + b"\x00"), ("mysql_clear_password", b"")])
def test_auth_switch_round_trip(plugin: str, data: bytes) -> None:
    sw = AuthSwitchRequest(plugin, data)
    payload = sw.encode()
    assert payload == b"\xfe" + plugin.encode() + b"\x00" + data
    assert AuthSwitchRequest.decode(payload) == sw


def test_auth_more_data() -> None:
    assert auth_more_data(b"\x03") == b"\x01\x03"


# -- column definitions and text result sets ----------------------------------------------------------------------


def decode_column(payload: bytes) -> dict[str, object]:
    """Independent decoder of ColumnDefinition41 (protocol layout), to check the encoder."""
    r = PayloadReader(payload)
    out: dict[str, object] = {}
    for key in ("catalog", "schema", "table", "org_table", "name", "org_name"):
        out[key] = r.lenenc_bytes().decode()
    assert r.lenenc() == 0x0C
    out["charset"], out["length"], out["type"], out["flags"], out["decimals"] = struct.unpack(
        "<HIBHB", r.take(10))
    assert r.take(2) == b"\x00\x00" and r.remaining() == 0
    return out


def test_column_definition_encode() -> None:
    col = ColumnDefinition41("total", ColumnType.LONGLONG, 63, 21, 0x20 | 0x1, 0, "shop", "o", "orders", "amount")
    assert decode_column(col.encode()) == {
        "catalog": "def", "schema": "shop", "table": "o", "org_table": "orders", "name": "total",
        "org_name": "amount", "charset": 63, "length": 21, "type": ColumnType.LONGLONG, "flags": 0x21, "decimals": 0}
    assert decode_column(ColumnDefinition41("n").encode())["org_name"] == "n"  # org_name defaults to the name


def test_text_row() -> None:
    assert text_row(["a", None, b"", "x" * 251]) == b"\x01a\xfb\x00\xfc\xfb\x00" + b"x" * 251


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_text_result_set_shape_and_scanner(deprecate_eof: bool) -> None:
    cols = [ColumnDefinition41("Database"), ColumnDefinition41("n", ColumnType.LONG)]
    rows = [["a", "1"], ["b", None]]
    payloads = text_result_set(cols, rows, Status.AUTOCOMMIT, deprecate_eof)
    assert payloads[0] == b"\x02"
    assert payloads[1:3] == [c.encode() for c in cols]
    i = 3
    if not deprecate_eof:
        assert payloads[3] == eof_packet(Status.AUTOCOMMIT)
        i = 4
    assert payloads[i:i + 2] == [text_row(r) for r in rows]
    assert payloads[-1] == result_terminator(Status.AUTOCOMMIT, deprecate_eof)
    assert len(payloads) == i + 3
    # What dbmesh generates is what its own scanner accepts as one complete response.
    wire = b"".join(build_packet(p, 1 + n) for n, p in enumerate(payloads))
    s = ResponseScanner()
    s.start(RESPONSE_RESULT, deprecate_eof)
    assert s.feed(wire) == len(wire)
    assert s.done and s.protocol_error is None and s.rows == 2 and s.num_columns == 2
    assert s.status == Status.AUTOCOMMIT


# -- PayloadReader ------------------------------------------------------------------------------------------------


def test_payload_reader_bounds() -> None:
    r = PayloadReader(b"\x01\x02abc\x00rest")
    assert r.uint(2) == 0x0201
    assert r.nul_bytes() == b"abc"
    assert r.remaining() == 4
    with pytest.raises(FramingError):
        r.take(5)
    with pytest.raises(FramingError):
        r.take(-1)
    with pytest.raises(FramingError):
        r.uint(8)
    with pytest.raises(FramingError):
        r.nul_bytes()
    assert r.nul_bytes_or_rest() == b"rest" and r.remaining() == 0
    assert PayloadReader(lenenc_bytes(b"x" * 300)).lenenc_bytes() == b"x" * 300
    with pytest.raises(FramingError):
        PayloadReader(b"\xfc\x10\x00abc").lenenc_bytes()
