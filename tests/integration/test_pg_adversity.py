"""Hostile PostgreSQL clients: each bad connection ends with a proper ErrorResponse (08P01) or a close, and a
well-behaved client on the same dbmesh keeps being served."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh.protocol.postgresql.client_startup import ClientStartup, Ready, Send
from tests.support import DbMeshProcess

PG_DB = "dbmesh_pg"


@pytest.fixture(scope="module")
def hostile_target(tmp_path_factory: pytest.TempPathFactory, mariadb: Any, postgres: Any) -> Iterator[DbMeshProcess]:
    from tests.conftest import PG_USERS, _start_pg_listening
    from tests.support import make_dbmesh_config

    config = make_dbmesh_config(tmp_path_factory.mktemp("pg-hostile"), mariadb, users=PG_USERS,
                                pg_databases={PG_DB: postgres}, tls=False,
                                limits={"authTimeoutSeconds": 1, "maxPacketSize": 1 << 20})
    proc = _start_pg_listening(DbMeshProcess(config), 30.0)
    yield proc
    proc.stop()


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (TimeoutError, ConnectionResetError):
        return out


def messages(data: bytes) -> list[tuple[str, bytes]]:
    out, i = [], 0
    while i + 5 <= len(data):
        length = struct.unpack_from("!I", data, i + 1)[0]
        out.append((chr(data[i]), data[i + 5:i + 1 + length]))
        i += 1 + length
    return out


def error_fields(payload: bytes) -> dict[str, str]:
    return {f[:1].decode(): f[1:].decode() for f in payload.split(b"\x00") if f}


def logged_in_socket(proc: DbMeshProcess) -> socket.socket:
    """A raw socket that completed startup (SCRAM) as root."""
    sock = socket.create_connection((proc.host, proc.pg_port), timeout=5)
    client = ClientStartup("root", "rootpw", PG_DB, {})
    sock.sendall(client.start())
    buf = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "closed during startup"
        buf += chunk
        while len(buf) >= 5:
            length = struct.unpack_from("!I", buf, 1)[0]
            if len(buf) < 1 + length:
                break
            mtype, payload, buf = buf[0], buf[5:1 + length], buf[1 + length:]
            for outcome in client.feed(mtype, payload):
                if isinstance(outcome, Send):
                    sock.sendall(outcome.data)
                elif isinstance(outcome, Ready):
                    return sock
                else:
                    raise AssertionError(f"login failed: {outcome}")


class Bystander:
    """A psycopg client querying in a loop while the hostile tests run."""

    def __init__(self, proc: DbMeshProcess) -> None:
        self.conn = psycopg.connect(host=proc.host, port=proc.pg_port, user="root", password="rootpw",
                                    dbname=PG_DB, sslmode="disable", autocommit=True)
        self.errors: list[Exception] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                assert self.conn.execute("SELECT 1").fetchone() == (1,)
                self.count += 1
            except Exception as exc:
                self.errors.append(exc)
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()
        assert not self.errors, self.errors
        assert self.count > 0


def assert_fatal_08p01(data: bytes) -> None:
    msgs = messages(data)
    errs = [error_fields(p) for t, p in msgs if t == "E"]
    assert errs, f"no ErrorResponse in {data[:200]!r}"
    assert errs[-1]["S"] == "FATAL" and errs[-1]["C"] == "08P01", errs


def test_unknown_message_type_after_login(hostile_target: DbMeshProcess) -> None:
    bystander = Bystander(hostile_target)
    sock = logged_in_socket(hostile_target)
    sock.sendall(b"?" + struct.pack("!I", 4))
    assert_fatal_08p01(recv_all(sock))
    bystander.stop()


@pytest.mark.parametrize("length", [0, 1, 3])
def test_message_length_below_four(hostile_target: DbMeshProcess, length: int) -> None:
    bystander = Bystander(hostile_target)
    sock = logged_in_socket(hostile_target)
    sock.sendall(b"Q" + struct.pack("!I", length) + b"SELECT 1\x00")
    assert_fatal_08p01(recv_all(sock))
    bystander.stop()


def test_oversized_message(hostile_target: DbMeshProcess) -> None:
    sock = logged_in_socket(hostile_target)
    sock.sendall(b"Q" + struct.pack("!I", (1 << 20) + 100) + b"x" * 1000)
    assert_fatal_08p01(recv_all(sock))


def test_startup_packet_that_never_ends(hostile_target: DbMeshProcess) -> None:
    bystander = Bystander(hostile_target)
    sock = socket.create_connection((hostile_target.host, hostile_target.pg_port), timeout=5)
    sock.sendall(struct.pack("!I", 200) + struct.pack("!I", 196608) + b"user\x00root\x00")
    started = time.monotonic()
    data = recv_all(sock, timeout=6)
    assert time.monotonic() - started < 5  # closed by the 1 s authentication timeout
    errs = [error_fields(p) for t, p in messages(data) if t == "E"]
    assert errs and errs[0]["S"] == "FATAL" and errs[0]["C"] == "08006", errs
    bystander.stop()


@pytest.mark.parametrize("length", [4, 7, 20000])
def test_invalid_startup_packet_length(hostile_target: DbMeshProcess, length: int) -> None:
    sock = socket.create_connection((hostile_target.host, hostile_target.pg_port), timeout=5)
    sock.sendall(struct.pack("!I", length) + struct.pack("!I", 196608))
    assert_fatal_08p01(recv_all(sock))


def test_bind_with_a_wrong_parameter_count_is_the_servers_error(hostile_target: DbMeshProcess) -> None:
    """The data source judges Bind: its 08P01 ErrorResponse comes through and the session goes on after Sync."""
    conn = psycopg.connect(host=hostile_target.host, port=hostile_target.pg_port, user="root", password="rootpw",
                           dbname=PG_DB, sslmode="disable", autocommit=True)
    pg = conn.pgconn
    assert pg.prepare(b"two", b"SELECT $1::int + $2::int").status == psycopg.pq.ExecStatus.COMMAND_OK
    res = pg.exec_prepared(b"two", [b"1"])
    assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
    assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"08P01"
    assert conn.execute("SELECT 3").fetchone() == (3,)
    conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=300))
def test_random_bytes_after_login_never_crash_the_server(hostile_target: DbMeshProcess, garbage: bytes) -> None:
    sock = logged_in_socket(hostile_target)
    try:
        sock.sendall(garbage + b"X\x00\x00\x00\x04")
    except OSError:
        pass
    recv_all(sock, timeout=2)
    sock.close()
    # The server keeps serving.
    with psycopg.connect(host=hostile_target.host, port=hostile_target.pg_port, user="root", password="rootpw",
                         dbname=PG_DB, sslmode="disable", autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_log_has_no_tracebacks(hostile_target: DbMeshProcess) -> None:
    text = hostile_target.stderr_text()
    assert "Traceback" not in text and "[BUG]" not in text, text[-4000:]
