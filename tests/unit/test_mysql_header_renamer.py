"""The sharded MySQL relay's column-definition renaming: memo hits give the bytes parsing gives, chunking never
matters, and a response the memo does not know is parsed."""

from __future__ import annotations

import pytest

from dbmesh._wire.mysql_framing import build_packet
from dbmesh.protocol.mysql.packets import ColumnDefinition41
from dbmesh.session import mysql_sharded
from dbmesh.session.mysql_sharded import _HeaderRenamer

TABLES = (("t_order_1", "t_order"),)


def _result(columns: list[str], rows: list[bytes], deprecate_eof: bool, schema: str, table: str) -> bytes:
    out = [build_packet(bytes([len(columns)]), 1)]
    seq = 2
    for name in columns:
        col = ColumnDefinition41(name=name, schema=schema, table=table, org_table=table, org_name=name)
        out.append(build_packet(col.encode(), seq))
        seq += 1
    if not deprecate_eof:
        out.append(build_packet(b"\xfe\x00\x00\x02\x00", seq))
        seq += 1
    for row in rows:
        out.append(build_packet(row, seq))
        seq += 1
    out.append(build_packet(b"\xfe\x00\x00\x02\x00" if not deprecate_eof else b"\xfe\x00\x00\x02\x00\x00\x00", seq))
    return b"".join(out)


def _response(columns: list[str], rows: list[bytes], deprecate_eof: bool, table: str = "t_order_1") -> bytes:
    """What data source ds_1 sends for its actual table."""
    return _result(columns, rows, deprecate_eof, "ds_1", table)


def _expected(columns: list[str], rows: list[bytes], deprecate_eof: bool) -> bytes:
    """What one server holding the logic table `t_order` in schema `logic_db` sends."""
    return _result(columns, rows, deprecate_eof, "logic_db", "t_order")


def _relay(response: bytes, chunks: list[int], deprecate_eof: bool) -> bytes:
    got: list[bytes] = []
    renamer = _HeaderRenamer(got.append, TABLES, "logic_db", deprecate_eof)
    pos = 0
    for size in [*chunks, len(response)]:
        if pos >= len(response):
            break
        renamer(response[pos:pos + size])
        pos += size
    return b"".join(got)


@pytest.fixture(autouse=True)
def _empty_memo() -> None:
    mysql_sharded._HEADER_MEMO.clear()


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_memo_hit_gives_the_parsed_bytes(deprecate_eof: bool) -> None:
    rows = [b"\x011\x03abc", b"\x012\x03def"]
    response = _response(["id", "c"], rows, deprecate_eof)
    first = _relay(response, [], deprecate_eof)
    assert first == _expected(["id", "c"], rows, deprecate_eof)
    assert len(mysql_sharded._HEADER_MEMO) == 1
    # The second time the header comes from the memo; other rows follow it untouched.
    other = [b"\x017\x03xyz"]
    assert _relay(_response(["id", "c"], other, deprecate_eof), [], deprecate_eof) == \
        _expected(["id", "c"], other, deprecate_eof)


@pytest.mark.parametrize("chunk", [1, 3, 5, 17, 40])
def test_any_chunking_gives_the_same_bytes(chunk: int) -> None:
    rows = [b"\x011\x03abc"]
    response = _response(["id", "c"], rows, False)
    want = _expected(["id", "c"], rows, False)
    for _ in range(2):  # parsed, then with the memo filled
        assert _relay(response, [chunk] * (len(response) // chunk + 1), False) == want


def test_other_shapes_of_the_same_table_are_not_confused() -> None:
    rows = [b"\x011"]
    assert _relay(_response(["id"], rows, True), [], True) == _expected(["id"], rows, True)
    assert _relay(_response(["k"], rows, True), [], True) == _expected(["k"], rows, True)
    assert _relay(_response(["id", "k"], [b"\x011\x012"], True), [], True) == \
        _expected(["id", "k"], [b"\x011\x012"], True)
    assert _relay(_response(["id"], rows, True), [], True) == _expected(["id"], rows, True)
    assert len(mysql_sharded._HEADER_MEMO[(TABLES, "logic_db", True)]) == 3


def test_a_header_from_another_table_is_not_renamed() -> None:
    rows = [b"\x011"]
    response = _response(["id"], rows, True, table="t_other")
    got = _relay(response, [], True)
    assert b"t_other" in got and got.endswith(response[-11:])
    assert _relay(response, [], True) == got


def test_ok_and_error_responses_pass_through() -> None:
    ok = build_packet(b"\x00\x01\x00\x02\x00\x00\x00", 1)
    err = build_packet(b"\xff\x15\x04#42000boom", 1)
    for response in (ok, err):
        assert _relay(response, [], True) == response
        assert _relay(response, [], True) == response
