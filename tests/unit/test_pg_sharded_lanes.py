"""Sharded PostgreSQL sessions: the per-shape memos (RowDescription fields, merge codecs, portal descriptions) give
what decoding/building every time gives, and the lane sink deals a pipelined batch's answers to the units'
cursors as if each unit had been sent alone."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dbmesh._wire.pg_framing import build_message
from dbmesh.kernel.merge.codec_pg import pg_codec
from dbmesh.kernel.plan import RouteUnit
from dbmesh.protocol.postgresql.messages import Bind, FieldDescription, Parse, RowDescription
from dbmesh.session import pg_sharded
from dbmesh.session.pg_sharded import (
    PgShardCursor,
    _codec_of,
    _fields_of,
    _LaneSink,
    _portal_description,
    _result_formats_bytes,
)

FIELDS = (FieldDescription("id", 16384, 1, 23, 4, -1, 0), FieldDescription("k", 16384, 2, 23, 4, -1, 0),
          FieldDescription("c", 16384, 3, 1042, -1, 124, 0))


def _uncached_portal_description(fields: tuple[FieldDescription, ...], result_formats: tuple[int, ...]) -> bytes:
    formats = pg_sharded._formats(result_formats, len(fields))
    described = tuple(FieldDescription(f.name, f.table_oid, f.column_attr, f.type_oid, f.type_size,
                                       f.type_modifier, formats[i]) for i, f in enumerate(fields))
    return build_message(0x54, RowDescription(described).payload())


def test_fields_memo_equals_decoding_and_refuses_malformed() -> None:
    payload = RowDescription(FIELDS).payload()
    first = _fields_of(payload)
    assert first == RowDescription.decode(payload).fields
    assert _fields_of(bytes(payload)) is first  # equal bytes, another object: the memo
    other = RowDescription(FIELDS[:2]).payload()
    assert _fields_of(other) == FIELDS[:2]  # another shape is not confused with the first
    with pytest.raises(ValueError):
        _fields_of(payload[:-3])
    assert payload[:-3] not in pg_sharded._ROW_DESCRIPTIONS


def test_fields_memo_is_bounded() -> None:
    pg_sharded._ROW_DESCRIPTIONS.clear()
    for i in range(pg_sharded._MEMO_SIZE + 10):
        payload = RowDescription((FieldDescription(f"c{i}"),)).payload()
        assert _fields_of(payload)[0].name == f"c{i}"
    assert len(pg_sharded._ROW_DESCRIPTIONS) <= pg_sharded._MEMO_SIZE


def test_codec_memo_per_description() -> None:
    payload = RowDescription(FIELDS).payload()
    codec = _codec_of(payload, FIELDS)
    assert codec.fields == pg_codec(FIELDS).fields
    assert _codec_of(bytes(payload), FIELDS) is codec
    binary = tuple(FieldDescription(f.name, f.table_oid, f.column_attr, f.type_oid, f.type_size, f.type_modifier, 1)
                   for f in FIELDS)
    other = _codec_of(RowDescription(binary).payload(), binary)
    assert other is not codec and other.decode(0, b"\x00\x00\x00\x07") == 7
    assert codec.decode(0, b"7") == 7


@pytest.mark.parametrize("formats", [(), (0,), (1,), (1, 0), (1, 1, 1), (0, 1, 0, 1)])
def test_portal_description_memo_equals_building(formats: tuple[int, ...]) -> None:
    fields = tuple(FIELDS)
    expected = _uncached_portal_description(fields, formats)
    assert _portal_description(fields, formats) == expected
    assert _portal_description(fields, formats) == expected  # from the memo
    # Equal fields in another tuple: built again (the memo holds tuples by identity), same answer.
    assert _portal_description(tuple(list(fields)), formats) == expected
    assert _portal_description(None, formats) == pg_sharded._NO_DATA


def test_portal_description_memo_tells_shapes_apart() -> None:
    a = tuple(FIELDS)
    b = tuple(FIELDS[:2])
    assert _portal_description(a, (1,)) == _uncached_portal_description(a, (1,))
    assert _portal_description(b, (1,)) == _uncached_portal_description(b, (1,))
    assert _portal_description(a, (0,)) == _uncached_portal_description(a, (0,))


# -- the messages a lane sends, and the lane sink ----------------------------------------------------------------


class _Runtime:
    def __init__(self) -> None:
        self.names: dict[bytes, bytes] = {}

    def pg_statement_name(self, body: bytes) -> bytes:
        return self.names.setdefault(body, b"dbmesh_%x" % len(self.names))


class _Owner:
    """What _Lanes reads of its session."""

    _prepare_named = pg_sharded.ShardedPg._prepare_named

    def __init__(self, status: bytes = b"I") -> None:
        self.status = status
        self.runtime = _Runtime()
        self._max_prepared = 256


class _Scanner:
    tx_status = ord("I")


class _Conn:
    """What cursors, lanes and the lane sink touch of a backend connection."""

    def __init__(self) -> None:
        self.transport = None
        self.scanner = _Scanner()
        self.detached = False
        self.tx_status = 0
        self.prepared: set[bytes] = set()
        self.prepared_uncertain = False
        self.sent: list[tuple[bytes, int]] = []
        self.sink: Any = None

    def attach(self, sink: Any) -> None:
        self.sink = sink

    def detach(self) -> None:
        self.detached = True

    def send(self, data: bytes, ready: int) -> None:
        self.sent.append((data, ready))


def _lane(owner: _Owner, conn: _Conn, units: list[RouteUnit], formats: tuple[int, ...] = ()) -> pg_sharded._Lanes:
    lanes = pg_sharded._Lanes(owner, units, 1, _result_formats_bytes(formats))  # type: ignore[arg-type]
    lanes._send("ds_0", 0, conn, list(range(len(units))))  # type: ignore[arg-type]
    return lanes


def _tail(name: str, params: tuple[Any, ...], formats: tuple[int, ...]) -> bytes:
    encoded = tuple(pg_sharded._encode_param(v) for v in params)
    return (build_message(0x42, Bind("", name, (), encoded, formats).payload()) + build_message(0x44, b"P\x00")
            + build_message(0x45, b"\x00\x00\x00\x00\x00") + build_message(0x53, b""))


SQL = "SELECT id, k, c FROM t_scan_0 WHERE k >= $1 ORDER BY k LIMIT 10"


@pytest.mark.parametrize("formats", [(), (0,), (1,), (1, 0, 1)])
@pytest.mark.parametrize("params", [(), (5,), (None, "x'y", 2.5, True), ("é", b"\x00\xff")])
def test_unnamed_unit_messages_equal_the_message_classes(formats: tuple[int, ...], params: tuple[Any, ...]) -> None:
    conn = _Conn()
    _lane(_Owner(b"T"), conn, [RouteUnit("ds_0", SQL, params)], formats)  # in a transaction: unnamed
    expected = build_message(0x50, Parse("", SQL, ()).payload()) + _tail("", params, formats)
    assert conn.sent == [(expected, 1)]
    assert conn.prepared == set()


def test_named_units_prepared_once_per_connection() -> None:
    conn = _Conn()
    owner = _Owner()
    units = [RouteUnit("ds_0", SQL, (5,)), RouteUnit("ds_0", SQL.replace("t_scan_0", "t_scan_1"), (5,))]
    _lane(owner, conn, units, (1,))
    [(data, ready)] = conn.sent
    assert ready == 2
    first = b""
    for n, unit in enumerate(units):
        name = f"dbmesh_{n:x}"
        first += (build_message(0x43, b"S" + name.encode() + b"\x00")
                  + build_message(0x50, Parse(name, unit.sql, ()).payload()) + _tail(name, unit.params, (1,)))
    assert data == first
    assert conn.prepared == {b"dbmesh_0", b"dbmesh_1"}
    _lane(owner, conn, units, (1,))  # again: Bind only
    assert conn.sent[1] == (_tail("dbmesh_0", (5,), (1,)) + _tail("dbmesh_1", (5,), (1,)), 2)
    conn.prepared_uncertain = True  # a failed prepare: unnamed until the connection is known again
    _lane(owner, conn, units[:1], (1,))
    assert conn.sent[2][0].startswith(build_message(0x50, Parse("", SQL, ()).payload()))


def _answer(rows: list[bytes], *, error: bytes | None = None, tag: bytes = b"SELECT", parse: bool = True) -> bytes:
    out = [build_message(0x31, b"")] if parse else []
    out += [build_message(0x32, b""), build_message(0x54, RowDescription(FIELDS).payload())]
    out += [build_message(0x44, r) for r in rows]
    if error is not None:
        out.append(build_message(0x45, error))
    else:
        out.append(build_message(0x43, tag + b" %d\x00" % len(rows)))
    out.append(build_message(0x5A, b"I"))
    return b"".join(out)


def _row(i: int) -> bytes:
    text = str(i).encode()
    return b"\x00\x01" + len(text).to_bytes(4, "big") + text


def _unnamed_lane(n: int) -> tuple[_Conn, list[PgShardCursor], _LaneSink]:
    conn = _Conn()
    lanes = _lane(_Owner(b"T"), conn, [RouteUnit("ds_0", SQL, (i,)) for i in range(n)])
    cursors = [c for c in lanes.cursors if c is not None]
    return conn, cursors, conn.sink


@pytest.mark.parametrize("seed", range(20))
def test_lane_sink_deals_answers_in_order_whatever_the_chunks(seed: int) -> None:
    rnd = random.Random(seed)
    n_units = rnd.randint(1, 4)
    rows = [[_row(rnd.randint(0, 999)) for _ in range(rnd.randint(0, 6))] for _ in range(n_units)]
    failing = rnd.randrange(n_units) if rnd.random() < 0.3 else None
    error = b"SERROR\x00C42P01\x00Mnope\x00\x00"
    stream = b"".join(_answer(r, error=error if u == failing else None) for u, r in enumerate(rows))
    conn, cursors, sink = _unnamed_lane(n_units)
    assert [c.exclusive for c in cursors] == [False] * (n_units - 1) + [True]
    pos = 0
    while pos < len(stream):
        step = rnd.randint(1, 40)
        sink.forward(stream[pos:pos + step])
        pos += step
        done = [c.done for c in cursors]
        assert done == sorted(done, reverse=True)  # units complete in order
    assert not cursors[-1].done  # the lane's last unit ends at the connection's ReadyForQuery
    sink.on_ready(conn)  # type: ignore[arg-type]
    assert conn.detached and conn.tx_status == ord("I")
    for u, cursor in enumerate(cursors):
        assert cursor.done and cursor.headed
        assert cursor.rows == rows[u]
        assert cursor.fields == FIELDS
        if u == failing:
            assert cursor.error == error and cursor.tag is None
        else:
            assert cursor.error is None and cursor.tag == b"SELECT %d" % len(rows[u])


def test_lane_sink_lost_connection_fails_the_unanswered_units() -> None:
    conn, cursors, sink = _unnamed_lane(3)
    sink.forward(_answer([_row(1)]) + _answer([_row(2)])[:20])
    sink.backend_lost(conn, "gone")  # type: ignore[arg-type]
    assert cursors[0].done and cursors[0].lost is None and cursors[0].rows == [_row(1)]
    assert [c.lost for c in cursors[1:]] == ["gone", "gone"]
    assert all(c.done for c in cursors)


def test_lane_sink_drops_rows_of_abandoned_units() -> None:
    conn, cursors, sink = _unnamed_lane(2)
    cursors[0].abandon()
    sink.forward(_answer([_row(1), _row(2)]) + _answer([_row(3)]))
    sink.on_ready(conn)  # type: ignore[arg-type]
    assert cursors[0].rows == [] and cursors[1].rows == [_row(3)]


STALE = b"SERROR\x00C0A000\x00Mcached plan must not change result type\x00\x00"
GONE = b"SERROR\x00C26000\x00Mprepared statement does not exist\x00\x00"


@pytest.mark.parametrize("stale", [(0,), (1,), (0, 2), (0, 1, 2)])
@pytest.mark.parametrize("error", [STALE, GONE])
def test_lane_sink_runs_stale_named_statements_again(stale: tuple[int, ...], error: bytes) -> None:
    conn = _Conn()
    owner = _Owner()
    units = [RouteUnit("ds_0", SQL.replace("t_scan_0", f"t_scan_{i}"), (i,)) for i in range(3)]
    _lane(owner, conn, units)  # prepares all three
    lanes = _lane(owner, conn, units)  # Bind only: a stale statement fails at Bind
    sink = conn.sink
    cursors = [c for c in lanes.cursors if c is not None]
    stream = b""
    for u in range(3):
        stream += build_message(0x45, error) + build_message(0x5A, b"I") if u in stale else \
            _answer([_row(u)], parse=False)
    sink.forward(stream)
    sink.on_ready(conn)  # type: ignore[arg-type]
    assert not conn.detached
    assert [c.done for c in cursors] == [u not in stale for u in range(3)]
    assert all(c.error is None for c in cursors)
    assert [c.exclusive for c in cursors] == [u == stale[-1] for u in range(3)]
    data, ready = conn.sent[-1]
    assert ready == len(stale)
    assert data == b"".join(build_message(0x43, b"S" + f"dbmesh_{u:x}".encode() + b"\x00")
                            + build_message(0x50, Parse(f"dbmesh_{u:x}", units[u].sql, ()).payload())
                            + _tail(f"dbmesh_{u:x}", (u,), ()) for u in stale)
    sink.forward(b"".join(build_message(0x33, b"") + _answer([_row(10 + u)]) for u in stale))
    sink.on_ready(conn)  # type: ignore[arg-type]
    assert conn.detached
    assert [c.rows for c in cursors] == [[_row(10 + u)] if u in stale else [_row(u)] for u in range(3)]
    assert all(c.done and c.error is None for c in cursors)


def test_lane_sink_reports_a_statement_stale_twice_and_errors_of_fresh_ones() -> None:
    conn = _Conn()
    owner = _Owner()
    units = [RouteUnit("ds_0", SQL, (1,)), RouteUnit("ds_0", SQL.replace("t_scan_0", "t_scan_1"), (2,))]
    lanes = _lane(owner, conn, units)  # prepared here: an error at Bind is the statement's own
    cursors = [c for c in lanes.cursors if c is not None]
    conn.sink.forward(b"".join(build_message(0x33, b"") + build_message(0x45, STALE) + build_message(0x5A, b"I")
                               for _ in units))
    conn.sink.on_ready(conn)
    assert conn.detached and [c.error for c in cursors] == [STALE, STALE]
    assert conn.prepared == set()  # the Parse may be what failed: prepared again next time
    lanes = _lane(owner, conn, units[:1])
    cursor = lanes.cursors[0]
    assert cursor is not None
    conn.sink.forward(build_message(0x33, b"") + build_message(0x31, b"") + build_message(0x45, STALE)
                      + build_message(0x5A, b"I"))
    conn.sink.on_ready(conn)
    assert cursor.error == STALE  # prepared again here: not run a third time


# -- the synchronous merge of complete answers -------------------------------------------------------------------


class _Shard:
    """A complete shard answer, readable by kernel.merge.merge (fetch) and by _merge_now (rows)."""

    def __init__(self, rows: list[bytes]) -> None:
        self.rows = list(rows)
        self.done = True

    async def fetch(self) -> list[bytes] | None:
        if not self.rows:
            return None
        rows, self.rows = self.rows, []
        return rows


_MERGE_FIELDS = (FieldDescription("a", type_oid=23), FieldDescription("b", type_oid=25),
                 FieldDescription("c", type_oid=23))


def _data_row(values: tuple[bytes | None, ...]) -> bytes:
    return pg_sharded._data_row(values)


async def _streamed(spec: Any, shards: list[list[bytes]]) -> tuple[list[bytes], str | None]:
    from dbmesh.kernel.merge import merge

    out: list[bytes] = []
    try:
        async for row in merge(spec, [_Shard(r) for r in shards], pg_codec(_MERGE_FIELDS), max_rows=10_000,
                               dialect="postgres"):
            out.append(row)
    except Exception as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


def _now(spec: Any, shards: list[list[bytes]]) -> tuple[list[bytes], str | None]:
    out: list[bytes] = []
    cursors = [_Shard(r) for r in shards]
    try:
        pg_sharded._merge_now(spec, cursors, pg_codec(_MERGE_FIELDS), out)  # type: ignore[arg-type]
    except Exception as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


@pytest.mark.parametrize("seed", range(300))
def test_merge_now_equals_kernel_merge(seed: int) -> None:
    import asyncio

    from dbmesh.kernel.plan import MergeSpec, SortKey

    rnd = random.Random(seed)
    keys = tuple(SortKey(rnd.randrange(3), rnd.random() < 0.4, rnd.random() < 0.5)
                 for _ in range(rnd.choice((0, 1, 1, 2))))
    limit = rnd.choice((None, None, 0, 1, 3, 10, 50))
    spec = MergeSpec(visible=rnd.randint(1, 3), order_by=keys, offset=rnd.choice((0, 0, 1, 4)), limit=limit)

    def value(column: int) -> bytes | None:
        if rnd.random() < 0.15:
            return None
        return str(rnd.randint(-5, 5)).encode() if column != 1 else rnd.choice((b"a", b"B", b"ab", b"\xc3\xa9", b""))

    codec = pg_codec(_MERGE_FIELDS)
    from dbmesh.kernel.merge import order_key

    key = order_key(codec, keys)
    shards = []
    for _ in range(rnd.randint(1, 4)):
        rows = [tuple(value(c) for c in range(3)) for _ in range(rnd.randint(0, 8))]
        if keys and rnd.random() < 0.85:  # sorted as the shard query sorts them; else maybe going backwards
            rows.sort(key=lambda r: key(list(r)))
        shards.append([_data_row(r) for r in rows])
    expected = asyncio.run(_streamed(spec, shards))
    assert _now(spec, shards) == expected


def test_lanes_wait_for_every_header_at_once() -> None:
    import asyncio

    async def run() -> None:
        owner = _Owner()
        conns = [_Conn(), _Conn()]
        lanes = pg_sharded._Lanes(owner, [RouteUnit("ds_0", SQL, (1,)), RouteUnit("ds_0", SQL, (2,)),  # type: ignore[arg-type]
                                          RouteUnit("ds_1", SQL, (3,))], 1, _result_formats_bytes(()))
        lanes._send("ds_0", 0, conns[0], [0, 1])  # type: ignore[arg-type]
        lanes._send("ds_1", 0, conns[1], [2])  # type: ignore[arg-type]
        waiting = asyncio.ensure_future(lanes.headers())
        await asyncio.sleep(0)
        conns[0].sink.forward(_answer([_row(1)]) + _answer([_row(2)]))
        await asyncio.sleep(0)
        assert not waiting.done()  # ds_1 has not answered yet
        conns[1].sink.backend_lost(conns[1], "gone")  # a lost unit counts as answered (its cursor reports it)
        await asyncio.wait_for(waiting, 1)
        assert lanes.unheaded == 0
        await lanes.headers()  # nothing left to wait for

    asyncio.run(run())
