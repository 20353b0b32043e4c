"""Builders of MySQL backend responses with an independent model of what the ResponseScanner must report.

The expected values are derived from the protocol documentation (PROTOCOL-NOTES §4), not from the scanner's
code: OK packets (and, under DEPRECATE_EOF, the 0xFE-headed OK that ends rows) set affected rows, last insert id,
status and warnings; a classic EOF sets warnings and status; ERR ends the response with its code; a terminator
whose status carries SERVER_MORE_RESULTS_EXISTS chains another result; the EOF after the column definitions of a
COM_STMT_EXECUTE that opened a cursor (SERVER_STATUS_CURSOR_EXISTS) ends the response.

Shared by tests/unit/test_wire_framing.py and the fuzz tests; also hypothesis strategies for them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from dbmesh._wire import mysql_framing as cy
from dbmesh._wire import pyframing as py
from dbmesh.protocol.mysql.packets import ColumnDefinition41, ErrPacket, OkPacket, text_row

IMPLS = (cy, py)
IMPL_IDS = ("cython", "python")

MORE_RESULTS = 0x0008
CURSOR_EXISTS = 0x0040
MAX_CHUNK = 0xFFFFFF

RESULT, PREPARE, SIMPLE, ROWS, FIELD_LIST, ONE_PACKET = (
    py.RESPONSE_RESULT, py.RESPONSE_PREPARE, py.RESPONSE_SIMPLE, py.RESPONSE_ROWS, py.RESPONSE_FIELD_LIST,
    py.RESPONSE_ONE_PACKET)

# The fields of the scanner compared with the model and between the two implementations.
SCANNER_FIELDS = ("done", "status", "warnings", "affected_rows", "last_insert_id", "is_error", "error_code", "rows",
                  "result_sets", "last_seq", "local_infile", "stmt_id", "num_columns", "num_params", "packets",
                  "more_results_seen", "protocol_error")


@dataclass
class Response:
    """A response as payloads plus the model's expectations; `wire()` frames it from a starting sequence id."""

    kind: int
    deprecate_eof: bool
    payloads: list[bytes] = field(default_factory=list)
    expect: dict[str, Any] = field(default_factory=lambda: {
        "done": True, "status": 0, "warnings": 0, "affected_rows": 0, "last_insert_id": 0, "is_error": False,
        "error_code": 0, "rows": 0, "result_sets": 0, "local_infile": False, "stmt_id": 0, "num_columns": 0,
        "num_params": 0, "more_results_seen": False, "protocol_error": None})

    # -- packets ----------------------------------------------------------------------------------------------------

    def ok(self, affected: int = 0, insert_id: int = 0, status: int = 0, warnings: int = 0, info: bytes = b"") -> None:
        self.payloads.append(OkPacket(affected, insert_id, status, warnings, info).encode())
        self.expect.update(affected_rows=affected, last_insert_id=insert_id, status=status, warnings=warnings)

    def err(self, code: int, message: str = "boom") -> None:
        self.payloads.append(ErrPacket(code, "HY000", message).encode())
        self.expect.update(is_error=True, error_code=code)

    def eof(self, status: int, warnings: int = 0) -> None:
        self.payloads.append(b"\xfe" + struct.pack("<HH", warnings, status))
        self.expect.update(status=status, warnings=warnings)

    def terminator(self, status: int, warnings: int = 0, affected: int = 0, insert_id: int = 0) -> None:
        """End of rows: classic EOF, or under DEPRECATE_EOF an OK packet with a 0xFE header."""
        if self.deprecate_eof:
            self.payloads.append(OkPacket(affected, insert_id, status, warnings).encode(0xFE))
            self.expect.update(affected_rows=affected, last_insert_id=insert_id, status=status, warnings=warnings)
        else:
            self.eof(status, warnings)

    def column_defs(self, n: int) -> None:
        self.payloads += [ColumnDefinition41(f"c{i}", schema="db", table="t").encode() for i in range(n)]

    def result_set(self, ncols: int, rows: list[bytes], status: int, warnings: int = 0,
                   coldef_eof_status: int = 0) -> None:
        """Column count, definitions, [EOF], rows (raw payloads), terminator."""
        self.payloads.append(cy.lenenc_int(ncols))
        self.expect["num_columns"] = ncols
        self.column_defs(ncols)
        if not self.deprecate_eof:
            self.eof(coldef_eof_status)
        self.payloads += rows
        self.expect["rows"] += len(rows)
        self.terminator(status, warnings)
        self.expect["result_sets"] += 1
        if status & MORE_RESULTS:
            self.expect["more_results_seen"] = True

    def ok_result(self, affected: int, insert_id: int, status: int, warnings: int = 0) -> None:
        self.ok(affected, insert_id, status, warnings)
        self.expect["result_sets"] += 1
        if status & MORE_RESULTS:
            self.expect["more_results_seen"] = True

    def err_mid_rows(self, ncols: int, rows: list[bytes], code: int) -> None:
        self.payloads.append(cy.lenenc_int(ncols))
        self.expect["num_columns"] = ncols
        self.column_defs(ncols)
        if not self.deprecate_eof:
            self.eof(0)
        self.payloads += rows
        self.expect["rows"] += len(rows)
        self.err(code)

    def cursor(self, ncols: int, status: int) -> None:
        """COM_STMT_EXECUTE that opened a cursor: metadata and an EOF with CURSOR_EXISTS, rows come by FETCH."""
        assert not self.deprecate_eof
        self.payloads.append(cy.lenenc_int(ncols))
        self.expect["num_columns"] = ncols
        self.column_defs(ncols)
        self.eof(status | CURSOR_EXISTS)
        self.expect["result_sets"] += 1

    def prepare_ok(self, stmt_id: int, nparams: int, ncols: int, warnings: int = 0) -> None:
        self.payloads.append(b"\x00" + struct.pack("<IHHBH", stmt_id, ncols, nparams, 0, warnings))
        self.expect.update(stmt_id=stmt_id, num_params=nparams, num_columns=ncols, warnings=warnings)
        self.column_defs(nparams)
        if nparams and not self.deprecate_eof:
            self.payloads.append(b"\xfe" + struct.pack("<HH", 0, 2))  # EOFs here are not read for status
        self.column_defs(ncols)
        if ncols and not self.deprecate_eof:
            self.payloads.append(b"\xfe" + struct.pack("<HH", 0, 2))

    # -- framing -----------------------------------------------------------------------------------------------------

    def wire(self, start_seq: int = 1) -> tuple[bytes, list[int], int]:
        """(bytes, offsets where each logical packet ends, sequence id of the last chunk)."""
        out = bytearray()
        ends = []
        seq = start_seq
        for p in self.payloads:
            out += py.build_packet(p, seq)
            seq += py.packet_count(len(p))
            ends.append(len(out))
        return bytes(out), ends, (seq - 1) & 0xFF

    def expected(self, start_seq: int = 1) -> dict[str, Any]:
        exp = dict(self.expect)
        exp["packets"] = len(self.payloads)
        exp["last_seq"] = self.wire(start_seq)[2]
        return exp


def scanner_state(s: Any) -> dict[str, Any]:
    out = {f: getattr(s, f) for f in SCANNER_FIELDS}
    out["mid_packet"] = s.mid_packet()
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """Cut data at the given offsets (any order, duplicates and out-of-range values ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    out, prev = [], 0
    for c in [*points, len(data)]:
        out.append(data[prev:c])
        prev = c
    return [c for c in out if c] or [b""]


def scan(impl: Any, kind: int, deprecate_eof: bool, chunks: list[bytes]) -> tuple[Any, int]:
    """Feed chunks until done (the rest of a chunk is left, as the session would hand it to the next reader)."""
    s = impl.ResponseScanner()
    s.start(kind, deprecate_eof)
    consumed = 0
    for c in chunks:
        if s.done:
            break
        n = s.feed(c)
        assert 0 <= n <= len(c)
        consumed += n
    return s, consumed


# -- hypothesis strategies ----------------------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u64 = st.one_of(st.integers(0, 300), st.integers(0, 0xFFFFFF), st.integers(0, 2**64 - 1))
_status = u16.map(lambda s: s & ~(MORE_RESULTS | CURSOR_EXISTS))
_value = st.one_of(st.none(), st.binary(max_size=8), st.binary(min_size=250, max_size=300))


@st.composite
def text_rows(draw: Any, ncols: int, deprecate_eof: bool) -> list[bytes]:
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        if not deprecate_eof and draw(st.integers(0, 7)) == 0:
            # A packet starting 0xFE that is a row, not an EOF: 9 bytes or more (an 8-byte lenenc follows).
            rows.append(b"\xfe" + draw(st.binary(min_size=8, max_size=30)))
        else:
            rows.append(text_row([draw(_value) for _ in range(ncols)]))
    return rows


@st.composite
def responses(draw: Any, kind: int | None = None, deprecate_eof: bool | None = None) -> Response:
    kind = draw(st.sampled_from((RESULT, PREPARE, SIMPLE, ROWS, FIELD_LIST, ONE_PACKET))) if kind is None else kind
    deprecate_eof = draw(st.booleans()) if deprecate_eof is None else deprecate_eof
    r = Response(kind, deprecate_eof)
    if kind == RESULT:
        n = draw(st.integers(1, 4))
        for i in range(n):
            more = MORE_RESULTS if i < n - 1 else 0
            shape = draw(st.sampled_from(("ok", "rs", "rs", "err", "err_rows", "cursor")))
            if shape == "cursor" and (deprecate_eof or i < n - 1):
                shape = "rs"
            if shape in ("err", "err_rows") and i < n - 1:
                shape = "ok"
            if shape == "ok":
                r.ok_result(draw(u64), draw(u64), draw(_status) | more, draw(u16))
            elif shape == "rs":
                ncols = draw(st.integers(1, 4))
                r.result_set(ncols, draw(text_rows(ncols, deprecate_eof)), draw(_status) | more, draw(u16),
                             coldef_eof_status=draw(_status))
            elif shape == "err":
                r.err(draw(st.integers(1000, 0xFFFE)))
            elif shape == "err_rows":
                ncols = draw(st.integers(1, 3))
                r.err_mid_rows(ncols, draw(text_rows(ncols, deprecate_eof)), draw(st.integers(1000, 0xFFFE)))
            else:
                r.cursor(draw(st.integers(1, 4)), draw(_status))
    elif kind == PREPARE:
        if draw(st.integers(0, 5)) == 0:
            r.err(draw(st.integers(1000, 0xFFFE)))
        else:
            r.prepare_ok(draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(u16))
    elif kind == SIMPLE:
        if draw(st.booleans()):
            r.ok(draw(u64), draw(u64), draw(u16), draw(u16), draw(st.binary(max_size=20)))
        else:
            r.err(draw(st.integers(1000, 0xFFFE)))
    elif kind == ROWS:
        r.payloads += draw(text_rows(draw(st.integers(1, 3)), deprecate_eof))
        r.expect["rows"] = len(r.payloads)
        if draw(st.integers(0, 4)) == 0:
            r.err(draw(st.integers(1000, 0xFFFE)))
        else:
            r.terminator(draw(u16), draw(u16))
    elif kind == FIELD_LIST:
        n = draw(st.integers(0, 4))
        r.column_defs(n)
        r.expect["rows"] = n  # the scanner counts the definitions as the "rows" of this response
        if draw(st.integers(0, 4)) == 0:
            r.err(draw(st.integers(1000, 0xFFFE)))
        else:
            r.terminator(draw(u16), draw(u16))
    else:
        which = draw(st.sampled_from(("stats", "eof", "err")))
        if which == "stats":
            r.payloads.append(b"Uptime: " + str(draw(st.integers(0, 10**9))).encode() + b"  Threads: 1")
        elif which == "eof":
            r.eof(draw(u16), draw(u16))
        else:
            r.err(draw(st.integers(1000, 0xFFFE)))
    return r


def cut_points(data_len: int) -> Any:
    return st.lists(st.integers(0, max(data_len, 1)), max_size=12)
