"""Runs a plan's route units on backend connections, within a per-statement connection budget per data source.

Protocol-neutral: a session supplies how to get a connection for a data source (`lease`), how to give back one
it leased only for this statement (`give_back`), and how to start one unit on a connection (`start`), which
returns a cursor that completes when the data source has sent its whole response.

Guarantees:
- At most `budget` connections per data source serve one statement (ShardingSphere's
  max-connections-size-per-query); units beyond that queue behind each other on the same connection ("lanes")
  in plan order.
- A cursor whose lane still has queued units never applies backpressure (it buffers instead), so a merge that
  needs the first row of every unit cannot deadlock on a shared connection.
- Every connection is quiet (its response fully read) before `run` returns it, whatever happened.
- With `start_many`, a lane's units are sent together (pipelined) and answered in order on its connection: one
  round trip instead of one per unit. Only for units whose outcome does not depend on each other (a read-only
  query outside a transaction); the cursors complete in order, so the rules above hold unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from dbmesh.kernel.plan import RouteUnit


class UnitCursor(Protocol):
    """One unit's response as it arrives."""

    async def wait_done(self) -> None: ...

    def set_exclusive(self, exclusive: bool) -> None:
        """True once no other unit waits for this cursor's connection: it may then pause the data source."""

    def abandon(self) -> None:
        """The statement no longer needs the rows: drop them as they come (the response still runs to its end)."""


Conn = TypeVar("Conn")
Cur = TypeVar("Cur", bound=UnitCursor)


def assign_lanes(units: Sequence[RouteUnit], budget: int) -> dict[tuple[str, int], list[int]]:
    """(data source, lane) -> the indexes of the units that lane runs, in plan order: a data source's units are
    dealt round-robin over at most `budget` lanes (connections)."""
    lanes: dict[tuple[str, int], list[int]] = {}
    per_ds: dict[str, int] = {}
    for i, unit in enumerate(units):
        n = per_ds.get(unit.data_source, 0)
        per_ds[unit.data_source] = n + 1
        lanes.setdefault((unit.data_source, n % max(1, budget)), []).append(i)
    return lanes


class Lanes(Generic[Conn, Cur]):
    """The cursors of one statement's units, started lane by lane."""

    def __init__(self, units: Sequence[RouteUnit], budget: int,
                 lease: Callable[[str, int], Awaitable[Conn]],
                 start: Callable[[Conn, RouteUnit, int], Cur],
                 give_back: Callable[[str, int, Conn], None],
                 start_many: Callable[[Conn, list[tuple[RouteUnit, int]]], list[Cur]] | None = None,
                 ready: Callable[[str, int], Conn | None] | None = None) -> None:
        """`ready(data_source, lane)`: the lane's connection when it can be used at once (no lease to wait for);
        such a lane starts here, without a task, when all its units can be sent now."""
        self.units = units
        loop = asyncio.get_running_loop()
        self.cursors: list[asyncio.Future[Cur]] = [loop.create_future() for _ in units]
        self._lease = lease
        self._start = start
        self._start_many = start_many
        self._give_back = give_back
        lanes = assign_lanes(units, budget)
        self._tasks: list[asyncio.Task[None]] = []
        # Lanes started here: (data source, lane, connection, cursors), given back by finish().
        self._started: list[tuple[str, int, Conn, list[Cur]]] = []
        for (ds, lane), idx in lanes.items():
            conn = ready(ds, lane) if ready is not None and (len(idx) == 1 or start_many is not None) else None
            if conn is None:
                self._tasks.append(loop.create_task(self._run_lane(ds, lane, idx)))
                continue
            if len(idx) == 1:
                cursors = [start(conn, units[idx[0]], idx[0])]
            else:
                assert start_many is not None
                cursors = start_many(conn, [(units[i], i) for i in idx])
            for pos, (i, cursor) in enumerate(zip(idx, cursors, strict=True)):
                cursor.set_exclusive(pos == len(idx) - 1)
                self.cursors[i].set_result(cursor)
            self._started.append((ds, lane, conn, cursors))

    async def _run_lane(self, ds: str, lane: int, indexes: list[int]) -> None:
        conn: Conn | None = None
        try:
            conn = await self._lease(ds, lane)
            if self._start_many is not None and len(indexes) > 1:
                cursors = self._start_many(conn, [(self.units[i], i) for i in indexes])
                for pos, (i, cursor) in enumerate(zip(indexes, cursors, strict=True)):
                    cursor.set_exclusive(pos == len(indexes) - 1)
                    self.cursors[i].set_result(cursor)
                for cursor in cursors:
                    await cursor.wait_done()
                return
            for pos, i in enumerate(indexes):
                cursor = self._start(conn, self.units[i], i)
                cursor.set_exclusive(pos == len(indexes) - 1)
                self.cursors[i].set_result(cursor)
                await cursor.wait_done()
        except BaseException as exc:
            for i in indexes:
                if not self.cursors[i].done():
                    self.cursors[i].set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            if conn is not None:
                self._give_back(ds, lane, conn)

    async def cursor(self, i: int) -> Cur:
        return await self.cursors[i]

    async def finish(self) -> None:
        """Drop whatever is still coming and wait until every connection is quiet and given back."""
        for fut in self.cursors:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().abandon()
            else:
                fut.add_done_callback(_abandon_when_ready)
        try:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            for _, _, _, cursors in self._started:
                for cursor in cursors:
                    await cursor.wait_done()
        finally:
            started, self._started = self._started, []
            for ds, lane, conn, _ in started:
                self._give_back(ds, lane, conn)
        for fut in self.cursors:
            if fut.done() and not fut.cancelled():
                fut.exception()  # mark retrieved


def _abandon_when_ready(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().abandon()
