"""Unit tests for dbmesh.observe: metrics, digests, the slow query log and the admin HTTP endpoint."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import dbmesh
from dbmesh.observe import Metrics, SlowQueryLog, digest, digest_hash, start_admin_http
from dbmesh.observe.admin_http import MAX_HEAD_BYTES

# -- metrics -------------------------------------------------------------------------------------------------------


def test_metrics_use_a_private_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_statement("shop", "ds_0", "select", 0.001)
    assert a.registry is not b.registry
    assert b.registry.get_sample_value(
        "dbmesh_statements_total", {"database": "shop", "data_source": "ds_0", "type": "select"}) is None
    registry = CollectorRegistry()
    assert Metrics(registry).registry is registry


def test_observe_statement_counts_durations_and_errors() -> None:
    m = Metrics()
    labels = {"database": "shop", "data_source": "ds_0", "type": "select"}
    m.observe_statement("shop", "ds_0", "select", 0.00004)
    m.observe_statement("shop", "ds_0", "select", 0.003)
    m.observe_statement("shop", "ds_0", "select", 20.0, error=True)
    value = m.registry.get_sample_value
    assert value("dbmesh_statements_total", labels) == 3
    assert value("dbmesh_statement_errors_total", labels) == 1
    assert value("dbmesh_statement_duration_seconds_count", labels) == 3
    assert value("dbmesh_statement_duration_seconds_sum", labels) == pytest.approx(20.00304)
    assert value("dbmesh_statement_duration_seconds_bucket", {**labels, "le": "5e-05"}) == 1
    assert value("dbmesh_statement_duration_seconds_bucket", {**labels, "le": "0.005"}) == 2
    assert value("dbmesh_statement_duration_seconds_bucket", {**labels, "le": "10.0"}) == 2
    assert value("dbmesh_statement_duration_seconds_bucket", {**labels, "le": "+Inf"}) == 3
    text = m.render().decode()
    assert 'dbmesh_statements_total{data_source="ds_0",database="shop",type="select"} 3.0' in text
    assert 'dbmesh_statement_errors_total{data_source="ds_0",database="shop",type="select"} 1.0' in text
    assert "# TYPE dbmesh_statement_duration_seconds histogram" in text


def test_error_counter_starts_at_zero_for_a_new_label_set() -> None:
    m = Metrics()
    m.observe_statement("shop", "ds_1", "insert", 0.01)
    assert m.registry.get_sample_value(
        "dbmesh_statement_errors_total", {"database": "shop", "data_source": "ds_1", "type": "insert"}) == 0


def test_statement_series_are_created_once_per_label_set() -> None:
    m = Metrics()
    m.observe_statement("shop", "ds_0", "select", 0.1)
    m.observe_statement("shop", "ds_0", "select", 0.2)
    m.observe_statement("shop", "ds_0", "update", 0.2)
    text = m.render().decode()
    assert text.count('dbmesh_statements_total{data_source="ds_0",database="shop",type="select"}') == 1
    assert 'dbmesh_statements_total{data_source="ds_0",database="shop",type="select"} 2.0' in text
    assert 'dbmesh_statements_total{data_source="ds_0",database="shop",type="update"} 1.0' in text


def test_error_client_backend_and_pool_metrics() -> None:
    m = Metrics()
    m.error("DBM-1201", "mysql")
    m.error("DBM-1201", "mysql")
    m.client_connected("mysql")
    m.client_connected("mysql")
    m.client_disconnected("mysql")
    idle, busy = m.backend_gauges("ds_0")
    assert m.backend_gauges("ds_0") == (idle, busy)
    idle.inc(3)
    busy.inc()
    idle.dec()
    m.pool_wait("ds_0", 0.02)
    m.pool_timeout("ds_0")
    m.backend_connect_error("ds_0")
    value = m.registry.get_sample_value
    assert value("dbmesh_errors_total", {"code": "DBM-1201", "protocol": "mysql"}) == 2
    assert value("dbmesh_client_connections", {"protocol": "mysql"}) == 1
    assert value("dbmesh_client_connections_accepted_total", {"protocol": "mysql"}) == 2
    assert value("dbmesh_backend_connections", {"data_source": "ds_0", "state": "idle"}) == 2
    assert value("dbmesh_backend_connections", {"data_source": "ds_0", "state": "busy"}) == 1
    assert value("dbmesh_pool_wait_seconds_count", {"data_source": "ds_0"}) == 1
    assert value("dbmesh_pool_wait_timeouts_total", {"data_source": "ds_0"}) == 1
    assert value("dbmesh_backend_connect_errors_total", {"data_source": "ds_0"}) == 1
    text = m.render().decode()
    assert 'dbmesh_errors_total{code="DBM-1201",protocol="mysql"} 2.0' in text
    assert 'dbmesh_backend_connections{data_source="ds_0",state="busy"} 1.0' in text


def test_build_info() -> None:
    m = Metrics()
    assert m.registry.get_sample_value("dbmesh_build_info", {"version": dbmesh.__version__}) == 1
    assert f'dbmesh_build_info{{version="{dbmesh.__version__}"}} 1.0' in m.render().decode()


# -- digest --------------------------------------------------------------------------------------------------------


def test_digest_doctests() -> None:
    # import_module: the package re-exports the digest() function under the submodule's name.
    digest_module = importlib.import_module("dbmesh.observe.digest")
    result = doctest.testmod(digest_module, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # strings: doubled quotes, backslash escapes, double quotes, introducers, unterminated
        ("SELECT * FROM t WHERE a = 'x' AND b = \"y\"", "SELECT * FROM t WHERE a = ? AND b = ?"),
        ("SELECT 'it''s', 'it\\'s', 'back\\\\'", "SELECT ?, ?, ?"),
        ("SELECT \"say \"\"hi\"\"\", _utf8mb4'x', N'y'", "SELECT ?, ?, ?"),
        ("SELECT 'a -- not a comment', 'b /* nor this */'", "SELECT ?, ?"),
        ("SELECT a FROM t WHERE b = 'never closed", "SELECT a FROM t WHERE b = ?"),
        # numbers, signs
        ("SELECT 1, 1.5, .5, 1e10, 3.e-2", "SELECT ?, ?, ?, ?, ?"),
        ("SELECT -1, +2, - -3 FROM t WHERE a = -4 AND b IN (-5)", "SELECT ?, ?, ? FROM t WHERE a = ? AND b IN (...)"),
        ("SELECT a-1, a - 1, (a)-1, 1-1 FROM t LIMIT -1", "SELECT a - ?, a - ?, (a) - ?, ? - ? FROM t LIMIT ?"),
        ("SELECT t1.c2, 1abc FROM t1", "SELECT t1.c2, 1abc FROM t1"),
        # hex and bit literals
        ("SELECT 0x1F, X'ab', x'', b'0101', 0b11", "SELECT ?, ?, ?, ?, ?"),
        # IN lists
        ("SELECT * FROM t WHERE a IN (1,2,3)", "SELECT * FROM t WHERE a IN (...)"),
        ("select * from t where a not in ( ?, ? )", "SELECT * FROM t WHERE a NOT IN (...)"),
        ("SELECT * FROM t WHERE a IN ('x')", "SELECT * FROM t WHERE a IN (...)"),
        ("SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = 1)",
         "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = ?)"),
        ("SELECT * FROM t WHERE a IN (1, b)", "SELECT * FROM t WHERE a IN (?, b)"),
        # comments and whitespace
        ("SELECT /* hint */ a\n\tFROM   t -- tail\nWHERE b = 1 # mysql comment", "SELECT a FROM t WHERE b = ?"),
        ("SELECT 1 /* never closed", "SELECT ?"),
        ("SELECT a--1 FROM t", "SELECT a - ? FROM t"),
        ("SELECT 1;", "SELECT ?"),
        # names and variables are kept
        ("SELECT `weird``name`, @v, @@session.sql_mode FROM `t`", "SELECT `weird``name`, @v, @@session.sql_mode FROM `t`"),
        ("INSERT INTO t(a,b) VALUES (1,'x')", "INSERT INTO t(a, b) VALUES (?, ?)"),
    ],
)
def test_digest_mysql(sql: str, expected: str) -> None:
    assert digest(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT \"Col\" FROM t WHERE a = $1 AND b = 'x'", "SELECT \"Col\" FROM t WHERE a = $1 AND b = ?"),
        ("SELECT 'C:\\' , E'it\\'s', $$dollar 'quoted'$$, $f$x$f$", "SELECT ?, ?, ?, ?"),
        ("SELECT x::int, j #> '{a}', a->>'k' FROM t --comment", "SELECT x::int, j #> ?, a ->> ? FROM t"),
        ("SELECT * FROM t WHERE id IN ($1, $2, $3)", "SELECT * FROM t WHERE id IN (...)"),
    ],
)
def test_digest_postgresql(sql: str, expected: str) -> None:
    assert digest(sql, dialect="postgresql") == expected


def test_digest_hash_groups_statements_by_digest() -> None:
    assert digest_hash("SELECT * FROM t WHERE id = 1") == digest_hash("select *  from t where id=2 -- x")
    assert digest_hash("SELECT * FROM t WHERE id = 1") != digest_hash("SELECT * FROM u WHERE id = 1")
    h = digest_hash("SELECT 1")
    assert len(h) == 32
    int(h, 16)


# -- slow query log ------------------------------------------------------------------------------------------------


def _record(log: SlowQueryLog, duration_s: float, sql: str = "SELECT * FROM t WHERE id = 7") -> bool:
    return log.maybe_record(start_time=1_700_000_000.25, user="app", database="shop", sql=sql,
                            duration_s=duration_s, rows=3, data_sources=("ds_0", "ds_1"))


def test_slowlog_writes_one_json_line_above_threshold(tmp_path: Path) -> None:
    path = tmp_path / "slow.log"
    log = SlowQueryLog(100.0, str(path))
    try:
        assert _record(log, 0.0999) is False
        assert path.read_text() == ""
        assert _record(log, 0.1234567) is True
        lines = path.read_text().splitlines()  # line buffered: visible before close()
    finally:
        log.close()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry == {
        "time": "2023-11-14T22:13:20.250000Z",
        "user": "app",
        "database": "shop",
        "digest": "SELECT * FROM t WHERE id = ?",
        "digest_hash": digest_hash("SELECT * FROM t WHERE id = 7"),
        "sql": "SELECT * FROM t WHERE id = 7",
        "duration_ms": 123.457,
        "rows": 3,
        "data_sources": ["ds_0", "ds_1"],
    }


def test_slowlog_threshold_is_inclusive_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "slow.log"
    path.write_text("earlier\n")
    log = SlowQueryLog(50.0, str(path))
    assert _record(log, 0.05) is True
    log.close()
    log.close()  # idempotent
    assert path.read_text().splitlines()[0] == "earlier"
    assert len(path.read_text().splitlines()) == 2


def test_slowlog_truncates_sql_and_keeps_one_line(tmp_path: Path) -> None:
    path = tmp_path / "slow.log"
    log = SlowQueryLog(0.0, str(path))
    sql = "SELECT 'line\nbreak', " + ", ".join(["c"] * 2000) + " FROM t"
    _record(log, 0.001, sql)
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["sql"] == sql[:1024]
    assert len(entry["digest"]) == 1024
    assert entry["digest_hash"] == digest_hash(sql)


def test_slowlog_without_path_logs(caplog: pytest.LogCaptureFixture) -> None:
    log = SlowQueryLog(10.0, None)
    with caplog.at_level(logging.WARNING, logger="dbmesh.slowlog"):
        assert _record(log, 0.001) is False
        assert _record(log, 0.5) is True
    records = [r for r in caplog.records if r.name == "dbmesh.slowlog"]
    assert len(records) == 1
    assert json.loads(records[0].getMessage())["duration_ms"] == 500.0


def test_slowlog_io_errors_do_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbmesh.slowlog"):
        unopenable = SlowQueryLog(0.0, str(tmp_path / "missing-dir" / "slow.log"))
        assert _record(unopenable, 1.0) is True
        broken = SlowQueryLog(0.0, str(tmp_path / "slow.log"))
        assert broken._file is not None
        broken._file.close()  # simulate a write failure: writing to a closed file raises ValueError
        assert _record(broken, 1.0) is True
        assert _record(broken, 1.0) is True
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # one for the failed open, one (not two) for the failed writes
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 3  # nothing is lost: every record reached the logger


# -- admin HTTP ----------------------------------------------------------------------------------------------------


async def _raw_request(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()  # half-close: the request is complete, the answer can still come back
        return await reader.read()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def _start(health_status: str = "ok") -> tuple[asyncio.Server, int, Metrics]:
    metrics = Metrics()
    metrics.observe_statement("shop", "ds_0", "select", 0.001)
    server = await start_admin_http("127.0.0.1", 0, metrics, lambda: {"status": health_status, "pools": 2})
    port = server.sockets[0].getsockname()[1]
    return server, port, metrics


def _urlopen(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.mark.timeout(20)
async def test_admin_metrics_and_healthz_with_urllib() -> None:
    server, port, _ = await _start()
    try:
        status, ctype, body = await asyncio.to_thread(_urlopen, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        assert b'dbmesh_statements_total{data_source="ds_0",database="shop",type="select"} 1.0' in body
        status, ctype, body = await asyncio.to_thread(_urlopen, f"http://127.0.0.1:{port}/healthz")
        assert (status, ctype) == (200, "application/json")
        assert json.loads(body) == {"status": "ok", "pools": 2}
        status, _, _ = await asyncio.to_thread(_urlopen, f"http://127.0.0.1:{port}/nope")
        assert status == 404
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
async def test_admin_raw_requests() -> None:
    server, port, _ = await _start()
    try:
        response = await _raw_request(port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head, _, body = response.partition(b"\r\n\r\n")
        assert _status(response) == 200
        assert b"Connection: close" in head
        assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
        assert b"dbmesh_build_info" in body
        response = await _raw_request(port, b"HEAD /healthz HTTP/1.0\r\n\r\n")
        assert _status(response) == 200
        assert response.endswith(b"\r\n\r\n")  # no body for HEAD
        assert _status(await _raw_request(port, b"GET /elsewhere HTTP/1.1\r\n\r\n")) == 404
        assert _status(await _raw_request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")) == 405
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"garbage\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\n",  # closed before the head ended
    ],
)
async def test_admin_malformed_request_is_400(request_bytes: bytes) -> None:
    server, port, _ = await _start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        writer.write_eof()
        response = await reader.read()
        writer.close()
        assert _status(response) == 400
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
async def test_admin_oversize_head_is_rejected() -> None:
    server, port, _ = await _start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES * 2))
        try:
            await writer.drain()
        except ConnectionError:
            pass
        try:
            response = await reader.read()
        except ConnectionError:
            response = b""  # the server closed with unread data in its buffer: a reset, also acceptable
        writer.close()
        assert response == b"" or _status(response) == 431
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
async def test_admin_healthz_reports_unhealthy_and_failing_checks() -> None:
    server, port, _ = await _start(health_status="draining")
    try:
        response = await _raw_request(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert _status(response) == 503
        assert json.loads(response.partition(b"\r\n\r\n")[2])["status"] == "draining"
    finally:
        server.close()
        await server.wait_closed()

    def failing() -> dict[str, object]:
        raise RuntimeError("boom")

    server = await start_admin_http("127.0.0.1", 0, Metrics(), failing)
    port = server.sockets[0].getsockname()[1]
    try:
        response = await _raw_request(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert _status(response) == 503
        assert json.loads(response.partition(b"\r\n\r\n")[2])["status"] == "error"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
async def test_admin_connect_and_close_without_request() -> None:
    server, port, _ = await _start()
    try:
        assert await _raw_request(port, b"") == b""
        # the server still answers afterwards
        assert _status(await _raw_request(port, b"GET /healthz HTTP/1.1\r\n\r\n")) == 200
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
async def test_admin_head_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbmesh.observe import admin_http

    monkeypatch.setattr(admin_http, "HEAD_TIMEOUT_SECONDS", 0.2)
    server, port, _ = await _start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # never finishes the head
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert _status(response) == 408
    finally:
        server.close()
        await server.wait_closed()
