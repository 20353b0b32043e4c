"""Lanes: the per-data-source connection budget, units queued in plan order, pipelined lanes, connections given
back only when quiet."""

from __future__ import annotations

import asyncio

from dbmesh.kernel.execute import Lanes
from dbmesh.kernel.plan import RouteUnit


class _Cursor:
    def __init__(self, conn: str, unit: RouteUnit) -> None:
        self.conn = conn
        self.unit = unit
        self.exclusive: bool | None = None
        self.abandoned = False
        self.finished = asyncio.get_running_loop().create_future()

    async def wait_done(self) -> None:
        await self.finished

    def set_exclusive(self, exclusive: bool) -> None:
        self.exclusive = exclusive

    def abandon(self) -> None:
        self.abandoned = True


def _units() -> list[RouteUnit]:
    return [RouteUnit("ds_0", "q0"), RouteUnit("ds_1", "q1"), RouteUnit("ds_0", "q2"), RouteUnit("ds_1", "q3"),
            RouteUnit("ds_0", "q4")]


def test_sequential_lanes_start_the_next_unit_after_the_previous_one_is_done() -> None:
    async def run() -> None:
        started: list[str] = []
        given_back: list[str] = []

        async def lease(ds: str, lane: int) -> str:
            return f"{ds}/{lane}"

        def start(conn: str, unit: RouteUnit, i: int) -> _Cursor:
            started.append(unit.sql)
            return _Cursor(conn, unit)

        lanes = Lanes(_units(), 1, lease, start, lambda ds, lane, conn: given_back.append(conn))
        first = await lanes.cursor(0)
        await asyncio.sleep(0)
        assert started == ["q0", "q1"] and first.exclusive is False
        first.finished.set_result(None)
        third = await lanes.cursor(2)
        assert started == ["q0", "q1", "q2"]
        for i in (1, 2, 3, 4):
            cursor = await lanes.cursor(i)
            cursor.finished.set_result(None)
            await asyncio.sleep(0)
        assert third.exclusive is False
        await lanes.finish()
        assert sorted(given_back) == ["ds_0/0", "ds_1/0"]
        assert (await lanes.cursor(4)).exclusive is True

    asyncio.run(run())


def test_pipelined_lanes_send_all_their_units_at_once() -> None:
    async def run() -> None:
        batches: list[list[str]] = []
        given_back: list[str] = []

        async def lease(ds: str, lane: int) -> str:
            return f"{ds}/{lane}"

        def start(conn: str, unit: RouteUnit, i: int) -> _Cursor:
            raise AssertionError("a lane of several units is pipelined")

        def start_many(conn: str, units: list[tuple[RouteUnit, int]]) -> list[_Cursor]:
            batches.append([u.sql for u, _ in units])
            return [_Cursor(conn, u) for u, _ in units]

        all_units = _units()
        lanes = Lanes(all_units, 1, lease, start, lambda ds, lane, conn: given_back.append(conn), start_many)
        cursors = [await lanes.cursor(i) for i in range(len(all_units))]
        assert sorted(batches) == [["q0", "q2", "q4"], ["q1", "q3"]]
        assert [c.exclusive for c in cursors] == [False, False, False, True, True]
        # A connection goes back only once every response on it is complete.
        for c in cursors[:4]:
            c.finished.set_result(None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert given_back == ["ds_1/0"]
        cursors[4].finished.set_result(None)
        await lanes.finish()
        assert sorted(given_back) == ["ds_0/0", "ds_1/0"]

    asyncio.run(run())


def test_a_budget_of_two_spreads_units_over_two_lanes() -> None:
    async def run() -> None:
        batches: list[tuple[str, list[str]]] = []

        async def lease(ds: str, lane: int) -> str:
            return f"{ds}/{lane}"

        def start(conn: str, unit: RouteUnit, i: int) -> _Cursor:
            batches.append((conn, [unit.sql]))
            return _Cursor(conn, unit)

        def start_many(conn: str, units: list[tuple[RouteUnit, int]]) -> list[_Cursor]:
            batches.append((conn, [u.sql for u, _ in units]))
            return [_Cursor(conn, u) for u, _ in units]

        all_units = _units()
        lanes = Lanes(all_units, 2, lease, start, lambda ds, lane, conn: None, start_many)
        cursors = [await lanes.cursor(i) for i in range(len(all_units))]
        assert sorted(batches) == [("ds_0/0", ["q0", "q4"]), ("ds_0/1", ["q2"]), ("ds_1/0", ["q1"]),
                                   ("ds_1/1", ["q3"])]
        for c in cursors:
            c.finished.set_result(None)
        await lanes.finish()

    asyncio.run(run())


def test_a_ready_connection_starts_its_lane_at_once_and_is_given_back_by_finish() -> None:
    async def run() -> None:
        batches: list[list[str]] = []
        given_back: list[str] = []
        leased: list[str] = []

        async def lease(ds: str, lane: int) -> str:
            leased.append(ds)
            return f"{ds}/{lane}"

        def start(conn: str, unit: RouteUnit, i: int) -> _Cursor:
            batches.append([unit.sql])
            return _Cursor(conn, unit)

        def start_many(conn: str, units: list[tuple[RouteUnit, int]]) -> list[_Cursor]:
            batches.append([u.sql for u, _ in units])
            return [_Cursor(conn, u) for u, _ in units]

        def ready(ds: str, lane: int) -> str | None:
            return "held" if ds == "ds_0" else None

        all_units = _units()
        lanes = Lanes(all_units, 1, lease, start, lambda ds, lane, conn: given_back.append(conn), start_many, ready)
        # ds_0's lane went out while Lanes was built; ds_1's waits for its lease.
        assert batches == [["q0", "q2", "q4"]] and [lanes.cursors[i].done() for i in range(5)] == \
            [True, False, True, False, True]
        cursors = [await lanes.cursor(i) for i in range(5)]
        assert leased == ["ds_1"] and cursors[0].conn == "held"
        for c in cursors:
            c.finished.set_result(None)
        await lanes.finish()
        assert sorted(given_back) == ["ds_1/0", "held"]

    asyncio.run(run())


def test_a_ready_connection_without_pipelining_starts_only_a_single_unit_lane() -> None:
    async def run() -> None:
        leased: list[str] = []

        async def lease(ds: str, lane: int) -> str:
            leased.append(ds)
            return f"{ds}/{lane}"

        def start(conn: str, unit: RouteUnit, i: int) -> _Cursor:
            return _Cursor(conn, unit)

        units = [RouteUnit("ds_0", "q0"), RouteUnit("ds_1", "q1"), RouteUnit("ds_1", "q2")]
        lanes = Lanes(units, 1, lease, start, lambda ds, lane, conn: None, None, lambda ds, lane: "held")
        assert lanes.cursors[0].done() and not lanes.cursors[1].done()
        first = await lanes.cursor(0)
        second = await lanes.cursor(1)
        assert first.conn == "held" and second.conn == "ds_1/0" and leased == ["ds_1"]
        first.finished.set_result(None)
        second.finished.set_result(None)
        third = await lanes.cursor(2)
        third.finished.set_result(None)
        await lanes.finish()

    asyncio.run(run())
