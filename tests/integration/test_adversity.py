"""Hostile clients against a real dbmesh: every bad connection gets a proper MySQL ERR packet or is closed, a
well-behaved client keeps working before, during and after, and dbmesh logs no traceback and no [BUG].

A private dbmesh runs with small limits (maxPacketSize 1 MiB, authTimeoutSeconds 1, maxConnections 5); the
maxConnections test starts its own with a limit of 3 so that it cannot disturb the others.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest

from dbmesh._wire.mysql_framing import RESPONSE_RESULT, PacketReader, ResponseScanner, build_packet
from dbmesh.protocol.mysql.client_handshake import ClientHandshake, Failed, Ready, Send
from dbmesh.protocol.mysql.constants import BACKEND_BASE_CAPABILITIES, Capability
from dbmesh.protocol.mysql.packets import HandshakeResponse41, HandshakeV10, ssl_request
from tests.support import DEFAULT_DATABASE, DbMeshProcess, MariaDB, make_dbmesh_config

MAX_PACKET = 1024 * 1024
AUTH_TIMEOUT = 1
MAX_CONNECTIONS = 5
IO_TIMEOUT = 10.0

pytestmark = pytest.mark.timeout(120)


# -- fixtures -------------------------------------------------------------------------------------------------------


def assert_clean_stderr(proc: DbMeshProcess, since: int) -> None:
    """What dbmesh logged while the test ran holds no traceback and no [BUG]."""
    text = proc.stderr_text()[since:]
    assert "Traceback" not in text, text[-4000:]
    assert "[BUG]" not in text, text[-4000:]


@pytest.fixture(scope="module")
def small_proc(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB) -> Iterator[DbMeshProcess]:
    cfg = make_dbmesh_config(tmp_path_factory.mktemp("adversity"), mariadb, limits={
        "maxPacketSize": MAX_PACKET, "authTimeoutSeconds": AUTH_TIMEOUT, "maxConnections": MAX_CONNECTIONS})
    proc = DbMeshProcess(cfg).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def small(small_proc: DbMeshProcess) -> Iterator[DbMeshProcess]:
    """The shared small-limits dbmesh; checks its stderr for what this test caused."""
    since = len(small_proc.stderr_text())
    yield small_proc
    time.sleep(0.1)  # let late log lines (closes, timers) land
    assert small_proc.is_running(), f"dbmesh exited with {small_proc.returncode}"
    assert_clean_stderr(small_proc, since)


# -- a well-behaved client ------------------------------------------------------------------------------------------


def good_query(proc: DbMeshProcess) -> None:
    conn = pymysql.connect(host=proc.host, port=proc.port, user="root", password="rootpw",
                           database=DEFAULT_DATABASE, connect_timeout=IO_TIMEOUT, read_timeout=IO_TIMEOUT)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 + 1")
            assert cur.fetchone() == (2,)
    finally:
        conn.close()


@dataclass
class Witness:
    """A pymysql client querying in a loop on its own thread while a test misbehaves."""

    proc: DbMeshProcess
    errors: list[BaseException] = field(default_factory=list)
    queries: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            conn = pymysql.connect(host=self.proc.host, port=self.proc.port, user="sha2user", password="sha2pw",
                                   database=DEFAULT_DATABASE, connect_timeout=IO_TIMEOUT,
                                   read_timeout=IO_TIMEOUT, ssl={"check_hostname": False, "verify_mode": 0})
        except BaseException as exc:
            self.errors.append(exc)
            return
        try:
            while not self._stop.is_set():
                with conn.cursor() as cur:
                    cur.execute("SELECT %s", (self.queries,))
                    assert cur.fetchone() == (self.queries,)
                self.queries += 1
                time.sleep(0.01)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            conn.close()


@contextmanager
def witnessed(proc: DbMeshProcess) -> Iterator[Witness]:
    """Good client before, concurrently, and after the block."""
    good_query(proc)
    w = Witness(proc)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    deadline = time.monotonic() + IO_TIMEOUT
    while w.queries == 0 and not w.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.queries > 0 and not w.errors, w.errors
    try:
        yield w
    finally:
        before = w.queries
        time.sleep(0.1)
        w._stop.set()
        t.join(IO_TIMEOUT)
    assert not w.errors, w.errors
    assert w.queries > before, "the concurrent client stalled"
    good_query(proc)


# -- raw protocol helpers -------------------------------------------------------------------------------------------


class Raw:
    """A raw TCP client speaking MySQL framing by hand."""

    def __init__(self, proc: DbMeshProcess) -> None:
        self.sock = socket.create_connection((proc.host, proc.port), timeout=IO_TIMEOUT)
        self.reader = PacketReader(max_payload=1 << 30)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_packet(self, payload: bytes, seq: int) -> None:
        self.sock.sendall(build_packet(payload, seq))

    def recv_packet(self, timeout: float = IO_TIMEOUT) -> tuple[bytes, int] | None:
        """Next packet, or None when the server closed the connection."""
        self.sock.settimeout(timeout)
        while True:
            p = self.reader.read()
            if p is not None:
                return p, self.reader.seq
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.reader.feed(data)

    def greeting(self) -> HandshakeV10:
        got = self.recv_packet()
        assert got is not None and got[1] == 0
        return HandshakeV10.decode(got[0])

    def expect_closed(self, timeout: float = IO_TIMEOUT) -> None:
        """The server closes: EOF (or a reset) arrives with no further packet."""
        got = self.recv_packet(timeout)
        assert got is None, f"expected the connection to close, got packet {got!r}"

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Err:
    code: int
    sqlstate: str
    message: str
    seq: int


def parse_err(payload: bytes, seq: int) -> Err:
    """Parse an ERR packet by hand: 0xFF, int2 code, '#', 5-char SQLSTATE, message."""
    assert payload[0] == 0xFF, f"expected ERR, got {payload[:40]!r}"
    code = struct.unpack_from("<H", payload, 1)[0]
    assert payload[3:4] == b"#", payload
    sqlstate = payload[4:9].decode("ascii")
    assert len(sqlstate) == 5 and sqlstate.isalnum()
    return Err(code, sqlstate, payload[9:].decode("utf-8", "replace"), seq)


def expect_err_then_close(raw: Raw, timeout: float = IO_TIMEOUT) -> Err:
    got = raw.recv_packet(timeout)
    assert got is not None, "closed without an ERR packet"
    err = parse_err(*got)
    raw.expect_closed()
    return err


def expect_err_or_close(raw: Raw) -> Err | None:
    """Either a well-formed ERR and then close, or a close without a reply."""
    got = raw.recv_packet()
    if got is None:
        return None
    err = parse_err(*got)
    raw.expect_closed()
    return err


CLIENT_CAPS = int(BACKEND_BASE_CAPABILITIES | Capability.MULTI_STATEMENTS)  # no DEPRECATE_EOF: classic EOFs


def raw_login(proc: DbMeshProcess, user: str = "root", password: str = "rootpw") -> Raw:
    """Log in with dbmesh's own client state machine over a raw socket; returns the authenticated socket."""
    raw = Raw(proc)
    client = ClientHandshake(user=user, password=password, database=DEFAULT_DATABASE, capabilities=CLIENT_CAPS,
                             collation=45)
    got = raw.recv_packet()
    assert got is not None
    outs = client.feed(*got)
    while True:
        for o in outs:
            if isinstance(o, Send):
                raw.send_packet(o.payload, o.seq)
            elif isinstance(o, Ready):
                return raw
            elif isinstance(o, Failed):
                raise AssertionError(f"login failed: {o.err}")
        got = raw.recv_packet()
        assert got is not None, "closed during login"
        outs = client.feed(*got)


def raw_query(raw: Raw, sql: str) -> ResponseScanner:
    raw.send_packet(b"\x03" + sql.encode(), 0)
    s = ResponseScanner()
    s.start(RESPONSE_RESULT, False)
    while not s.done:
        got = raw.recv_packet()
        assert got is not None, "closed during a query"
        s.feed(build_packet(got[0], got[1]))
    assert s.protocol_error is None
    return s


def handshake_response(greeting: HandshakeV10, caps: int = CLIENT_CAPS) -> bytes:
    from dbmesh.protocol.mysql.auth import native_password_response

    return HandshakeResponse41(caps, 1 << 24, 45, "root", native_password_response("rootpw", greeting.auth_data),
                               DEFAULT_DATABASE, "mysql_native_password", {"_client_name": "adversity"}).encode()


# -- (a) garbage instead of a HandshakeResponse -----------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [
    build_packet(b"\x00" * 40, 1),  # framed, but no PROTOCOL_41
    build_packet(b"\xff\xff\xff\xff" + os.urandom(20), 1),  # framed, all flags, truncated body
    build_packet(b"", 1),  # an empty packet
    b"GET / HTTP/1.1\r\nHost: dbmesh\r\n\r\n",  # not MySQL at all: its "length" is far over the limit
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(40),  # a TLS ClientHello without SSLRequest
], ids=["no-protocol41", "truncated-body", "empty", "http", "tls-hello"])
def test_garbage_instead_of_handshake_response(small: DbMeshProcess, garbage: bytes) -> None:
    with witnessed(small):
        raw = Raw(small)
        raw.greeting()
        raw.send(garbage)
        err = expect_err_or_close(raw)
        raw.close()
    if garbage.startswith(b"GET"):
        assert err is not None and (err.code, err.sqlstate) == (1153, "08S01")
    elif garbage[3] == 1 and len(garbage) >= 4 and int.from_bytes(garbage[:3], "little") <= 64:
        # A framed but malformed response: a protocol error answered with the next sequence id.
        assert err is not None and err.code == 1158 and err.sqlstate == "08S01" and err.seq == 2, err


# -- (b) a truncated packet, then close -----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["handshake", "command"])
@pytest.mark.parametrize("cut", ["header", "payload"])
def test_truncated_packet_then_close(small: DbMeshProcess, stage: str, cut: str) -> None:
    with witnessed(small):
        for _ in range(3):
            if stage == "handshake":
                raw = Raw(small)
                packet = build_packet(handshake_response(raw.greeting()), 1)
            else:
                raw = raw_login(small)
                packet = build_packet(b"\x03SELECT 'this never arrives whole'", 0)
            raw.send(packet[:2] if cut == "header" else packet[:len(packet) // 2])
            time.sleep(0.05)
            raw.close()
    # The slots of the abandoned connections were given back (maxConnections is 5).
    conns = [raw_login(small) for _ in range(MAX_CONNECTIONS - 1)]
    for c in conns:
        c.close()


# -- (c) wrong sequence ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 2, 200])
def test_wrong_sequence_id_in_handshake(small: DbMeshProcess, seq: int) -> None:
    with witnessed(small):
        raw = Raw(small)
        raw.send_packet(handshake_response(raw.greeting()), seq)
        err = expect_err_then_close(raw)
        raw.close()
    assert (err.code, err.sqlstate) == (1156, "08S01"), err


def test_wrong_sequence_id_after_auth_switch(small: DbMeshProcess) -> None:
    with witnessed(small):
        raw = Raw(small)
        greeting = raw.greeting()
        # sha2user is a caching_sha2 user: answering as native makes dbmesh switch plugins (seq 2).
        resp = HandshakeResponse41(CLIENT_CAPS, 1 << 24, 45, "sha2user", bytes(20), DEFAULT_DATABASE,
                                   "mysql_native_password").encode()
        raw.send_packet(resp, 1)
        got = raw.recv_packet()
        assert got is not None and got[0][:1] == b"\xfe" and got[1] == 2
        assert greeting.auth_data
        raw.send_packet(bytes(32), 7)  # should be 3
        err = expect_err_then_close(raw)
        raw.close()
    assert err.code == 1156


# -- (d) garbage after a successful handshake -----------------------------------------------------------------------


@pytest.mark.parametrize("garbage,expect_code", [
    (build_packet(b"", 0), 1158),  # an empty command packet: malformed, closed
    (b"\xff\xff\x7f\x00" + os.urandom(100), 1153),  # a header claiming ~8 MiB
    (b"GET / HTTP/1.1\r\n\r\n", 1153),
])
def test_garbage_after_login_raw(small: DbMeshProcess, garbage: bytes, expect_code: int) -> None:
    with witnessed(small):
        raw = raw_login(small)
        assert raw_query(raw, "SELECT 1").rows == 1
        raw.send(garbage)
        err = expect_err_then_close(raw)
        raw.close()
    assert err.code == expect_code and err.sqlstate == "08S01", err


def test_random_command_packets_after_login(small: DbMeshProcess) -> None:
    """Random payloads as commands: each gets an answer (result, OK or ERR) or the connection is closed."""
    rnd = __import__("random").Random(1234)
    with witnessed(small):
        for _ in range(5):
            raw = raw_login(small)
            for _ in range(20):
                cmd = rnd.choice([0x00, 0x05, 0x06, 0x07, 0x08, 0x0A, 0x0D, 0x0F, 0x10, 0x1D, 0x1E, 0xFA, 0xFE, 0xFF,
                                  0x2A, 0x80])
                raw.send_packet(bytes((cmd,)) + rnd.randbytes(rnd.randrange(0, 40)), 0)
                got = raw.recv_packet()
                if got is None:
                    break
                parse_err(*got)  # none of these commands is supported: a proper ERR
            raw.close()


def test_garbage_on_a_pymysql_socket(small: DbMeshProcess) -> None:
    with witnessed(small):
        conn = pymysql.connect(host=small.host, port=small.port, user="root", password="rootpw",
                               database=DEFAULT_DATABASE, connect_timeout=IO_TIMEOUT, read_timeout=IO_TIMEOUT)
        with conn.cursor() as cur:
            cur.execute("SELECT 41 + 1")
            assert cur.fetchone() == (42,)
        sock = conn._sock
        assert sock is not None
        sock.sendall(b"\x05\x00\x00\x00" + b"\x00" * 5 + b"\x00\x00\x00\x00\xee\xee\xee")
        raw = Raw.__new__(Raw)
        raw.sock, raw.reader = sock, PacketReader(max_payload=1 << 30)
        got = raw.recv_packet()
        assert got is not None
        parse_err(*got)  # COM_SLEEP (0x00) is not a client command: ERR
        conn.close()


# -- (e) an oversized packet -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MAX_PACKET + 1, 4 * MAX_PACKET])
def test_oversized_packet_after_login(small: DbMeshProcess, size: int) -> None:
    with witnessed(small):
        raw = raw_login(small)
        payload = b"\x03SELECT '" + b"x" * (size - 10) + b"'"
        assert len(payload) == size
        try:
            raw.send(build_packet(payload, 0))
        except (BrokenPipeError, ConnectionResetError):
            pass  # dbmesh may answer and close before all of it is sent; the ERR is still in our buffer
        err = expect_err_then_close(raw)
        raw.close()
    assert (err.code, err.sqlstate) == (1153, "08S01"), err
    assert str(MAX_PACKET) in err.message
    # The reply continues the offending command's numbering (it had sequence id 0), or clients see
    # "packets out of order" instead of the error.
    assert err.seq == 1


def test_packet_at_the_limit_is_accepted(small: DbMeshProcess) -> None:
    with witnessed(small):
        raw = raw_login(small)
        sql = "SELECT LENGTH('" + "y" * (MAX_PACKET - 100) + "')"
        s = raw_query(raw, sql + " " * (MAX_PACKET - 1 - len(sql)))
        assert s.rows == 1 and not s.is_error
        raw.close()


def test_oversized_packet_during_handshake(small: DbMeshProcess) -> None:
    with witnessed(small):
        raw = Raw(small)
        raw.greeting()
        raw.send(struct.pack("<I", MAX_PACKET + 1)[:3] + b"\x01" + b"z" * 1000)
        err = expect_err_then_close(raw)
        raw.close()
    assert err.code == 1153
    assert err.seq == 2  # the oversized HandshakeResponse had sequence id 1


# -- (f) authentication that never finishes --------------------------------------------------------------------------


@pytest.mark.parametrize("stall", ["silent", "partial-response", "after-switch"])
def test_authentication_timeout(small: DbMeshProcess, stall: str) -> None:
    with witnessed(small):
        raw = Raw(small)
        greeting = raw.greeting()
        t0 = time.monotonic()
        if stall == "partial-response":
            raw.send(build_packet(handshake_response(greeting), 1)[:20])
        elif stall == "after-switch":
            resp = HandshakeResponse41(CLIENT_CAPS, 1 << 24, 45, "sha2user", bytes(20), DEFAULT_DATABASE,
                                       "mysql_native_password").encode()
            raw.send_packet(resp, 1)
            got = raw.recv_packet()
            assert got is not None and got[0][:1] == b"\xfe"
        err = expect_err_then_close(raw, timeout=AUTH_TIMEOUT + 5)
        elapsed = time.monotonic() - t0
        raw.close()
    assert (err.code, err.sqlstate) == (1043, "08S01"), err
    assert AUTH_TIMEOUT * 0.8 <= elapsed <= AUTH_TIMEOUT + 4
    if stall == "after-switch":
        assert err.seq == 3  # the sequence id the client's next packet would have had


def test_authentication_timeout_after_ssl_request(small: DbMeshProcess) -> None:
    """SSLRequest, then no TLS handshake: the connection must still be closed after the timeout."""
    with witnessed(small):
        raw = Raw(small)
        raw.greeting()
        raw.send_packet(ssl_request(CLIENT_CAPS, 1 << 24, 45), 1)
        raw.sock.settimeout(AUTH_TIMEOUT + 5)
        closed = False
        while True:  # whatever arrives (it would be TLS records), the socket must end
            try:
                if not raw.sock.recv(65536):
                    closed = True
                    break
            except ConnectionResetError:
                closed = True
                break
            except TimeoutError:
                break
        raw.close()
        assert closed, f"still open {AUTH_TIMEOUT + 5} s after an SSLRequest with no TLS handshake (timeout {AUTH_TIMEOUT} s)"


# -- (g) more than maxConnections clients ------------------------------------------------------------------------------


@pytest.fixture
def tight(tmp_path: Any, mariadb: MariaDB) -> Iterator[DbMeshProcess]:
    cfg = make_dbmesh_config(tmp_path / "tight", mariadb, limits={"maxConnections": 3, "authTimeoutSeconds": 5})
    proc = DbMeshProcess(cfg).start()
    try:
        yield proc
        time.sleep(0.1)
        assert proc.is_running(), f"dbmesh exited with {proc.returncode}"
        assert_clean_stderr(proc, 0)
    finally:
        proc.stop()


def test_too_many_connections(tight: DbMeshProcess) -> None:
    good_query(tight)
    w = Witness(tight)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    deadline = time.monotonic() + IO_TIMEOUT
    while w.queries == 0 and not w.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.queries > 0 and not w.errors, w.errors
    held = [raw_login(tight), Raw(tight)]  # one logged in, one idle in its handshake: both count
    held[1].greeting()
    refused = []
    for _ in range(3):
        raw = Raw(tight)
        refused.append(expect_err_then_close(raw))
        raw.close()
    for err in refused:
        assert (err.code, err.sqlstate, err.seq) == (1040, "08004", 0), err
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host=tight.host, port=tight.port, user="root", password="rootpw", connect_timeout=IO_TIMEOUT)
    assert info.value.args[0] == 1040
    for raw in held:
        raw.close()
    time.sleep(0.3)  # let dbmesh see the closes
    again = raw_login(tight)
    assert raw_query(again, "SELECT 1").rows == 1
    again.close()
    before = w.queries
    time.sleep(0.1)
    w._stop.set()
    t.join(IO_TIMEOUT)
    assert not w.errors and w.queries > before
    good_query(tight)


# -- (h) an unknown command byte ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", [0xEE, 0x1D, 0x00, 0x08, 0x20])
def test_unknown_command_keeps_the_connection(small: DbMeshProcess, cmd: int) -> None:
    with witnessed(small):
        raw = raw_login(small)
        raw.send_packet(bytes((cmd,)) + b"junk", 0)
        got = raw.recv_packet()
        assert got is not None, "closed after an unknown command"
        err = parse_err(*got)
        assert (err.code, err.sqlstate, err.seq) == (1047, "08S01", 1), err
        s = raw_query(raw, "SELECT 2")
        assert s.rows == 1 and not s.is_error
        raw.close()
