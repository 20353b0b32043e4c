"""Render an admin result table as the reply of either protocol (MySQL text result set, PostgreSQL messages)."""

from __future__ import annotations

import struct

from dbmesh._wire.mysql_framing import build_packet
from dbmesh._wire.pg_framing import build_message
from dbmesh.admin.execute import AdminResult
from dbmesh.protocol.mysql.constants import ColumnType
from dbmesh.protocol.mysql.packets import ColumnDefinition41, text_result_set
from dbmesh.protocol.postgresql.messages import FieldDescription, RowDescription


def mysql_reply(result: AdminResult, collation: int, status: int, deprecate_eof: bool,
                extended_metadata: bool = False) -> bytes:
    """The whole text result set, sequence ids from 1, as the server sends one for a COM_QUERY."""
    cols = [ColumnDefinition41(name, ColumnType.VAR_STRING, collation, 1024) for name in result.columns]
    payloads = text_result_set(cols, [list(r) for r in result.rows], status, deprecate_eof, extended_metadata)
    return b"".join(build_packet(p, (i + 1) & 0xFF) for i, p in enumerate(payloads))


def pg_reply(result: AdminResult) -> bytes:
    """RowDescription, one DataRow per row (text cells) and CommandComplete `SHOW n`."""
    return b"".join(pg_parts(result))


def pg_parts(result: AdminResult) -> tuple[bytes, bytes, bytes]:
    """The RowDescription, the DataRows and the CommandComplete of a result, apart (the extended protocol sends
    the description for Describe and the rows for Execute)."""
    fields = tuple(FieldDescription(name) for name in result.columns)
    out = []
    for row in result.rows:
        body = [struct.pack("!H", len(row))]
        for cell in row:
            if cell is None:
                body.append(b"\xff\xff\xff\xff")
            else:
                raw = cell.encode()
                body.append(struct.pack("!i", len(raw)) + raw)
        out.append(build_message(ord("D"), b"".join(body)))
    return (build_message(ord("T"), RowDescription(fields).payload()), b"".join(out),
            build_message(ord("C"), f"SHOW {len(result.rows)}".encode() + b"\x00"))
