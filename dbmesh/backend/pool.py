"""Connection pool per data source (either protocol): bounded size, keyed idle lists, wait timeout, expiry, health checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from dbmesh import errors
from dbmesh.config import DataSource
from dbmesh.observe.metrics import Metrics

log = logging.getLogger("dbmesh.pool")

Key = tuple[int, int]


class PooledConnection(Protocol):
    """What the pool needs of a backend connection, whatever its protocol."""

    key: Key
    schema: str | None
    broken: bool
    closed: bool
    dirty: bool
    created_at: float
    last_used: float

    @property
    def busy(self) -> bool: ...

    async def connect(self, timeout: float) -> None: ...

    async def ping(self) -> None: ...

    async def reset(self) -> None: ...

    def quit(self) -> None: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=PooledConnection)
C_co = TypeVar("C_co", bound=PooledConnection, covariant=True)
Factory = Callable[[DataSource, Key, "str | None"], C]


class Holder(Protocol[C_co]):
    """A session keeping a connection between statements; `reclaimable` while nothing ties it there."""

    reclaimable: bool

    def surrender(self) -> C_co | None: ...


class Pool(Generic[C]):
    """Connections to one data source. At most `max_size` exist at once, whatever their key.

    Sessions keep their connection between statements ("sticky") while it is clean; under pressure the pool
    reclaims such idle-but-attached connections before making anyone wait, so idle clients do not hold
    connections that busy ones need (multiplexing).
    """

    def __init__(self, data_source: DataSource, metrics: Metrics, factory: Factory[C]) -> None:
        self.data_source = data_source
        self.factory = factory
        self.settings = data_source.pool
        self.metrics = metrics
        self._idle: deque[C] = deque()
        self._total = 0  # open + opening connections
        self._waiters: deque[asyncio.Future[C | None]] = deque()
        self._holders: dict[int, Holder[C]] = {}  # sessions keeping a connection, by id(), oldest first
        self._idle_gauge, self._busy_gauge = metrics.backend_gauges(data_source.name)
        self._maintenance: asyncio.Task[None] | None = None
        self.closing = False
        # A new configuration no longer names this data source as it was: no new statement leases from us, so
        # connections close as they come back (statements that started under the old rules still finish).
        self.retired = False

    @property
    def total(self) -> int:
        return self._total

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def start(self) -> None:
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    # -- reclaiming idle sticky connections ---------------------------------------------------------------------

    def hold(self, holder: Holder[C]) -> None:
        """A session now keeps one of our connections between statements."""
        self._holders[id(holder)] = holder

    def unhold(self, holder: Holder[C]) -> None:
        self._holders.pop(id(holder), None)

    def _reclaim_one(self) -> C | None:
        # Oldest holder first: the session idle the longest is the least likely to speak next.
        for key, holder in list(self._holders.items()):
            if holder.reclaimable:
                conn = holder.surrender()
                if conn is not None:
                    del self._holders[key]
                    return conn
        return None

    def reclaim_for_waiters(self) -> None:
        """Called when a holder became reclaimable while others wait."""
        while self._waiters:
            conn = self._reclaim_one()
            if conn is None:
                return
            if not self._hand_over(conn):
                self.release(conn)
                return

    # -- lease / release ---------------------------------------------------------------------------------------

    async def acquire(self, key: Key, schema: str | None) -> C:
        """A connection with this key, preferably already on `schema`. Raises BackendError."""
        if self.closing:
            raise errors.SessionError(errors.SESSION_SHUTTING_DOWN)
        conn = self._take_idle(key, schema)
        if conn is not None:
            return conn
        if self._total < self.settings.max_size:
            return await self._open(key, schema)
        # Sticky connections count as busy: a reclaimed one changes hands without touching the gauges.
        conn = self._reclaim_one()
        if conn is None:
            conn = await self._wait(key, schema)
        if conn.key != key or (schema is None and conn.schema is not None):
            # Wrong shape for this session: trade it for a new one (the count stays within max_size).
            self.discard(conn)
            return await self._open(key, schema)
        return conn

    def _take_idle(self, key: Key, schema: str | None) -> C | None:
        # LIFO: the most recently used connection is the warmest and least likely to have timed out.
        fallback = None
        now = time.monotonic()
        for conn in reversed(self._idle):
            if conn.key != key:
                continue
            if conn.broken or self._expired(conn, now):
                continue
            if conn.schema == schema:
                fallback = conn
                break
            if fallback is None and (schema is not None or conn.schema is None):
                fallback = conn
        # Drop dead or expired idle connections while we are here.
        for conn in [c for c in self._idle if c.broken or self._expired(c, now)]:
            self._idle.remove(conn)
            self._idle_gauge.dec()
            self._discard(conn)
        if fallback is not None:
            self._idle.remove(fallback)
            self._idle_gauge.dec()
            self._busy_gauge.inc()
        return fallback

    def _expired(self, conn: C, now: float) -> bool:
        return now - conn.created_at > self.settings.max_lifetime_s

    async def _open(self, key: Key, schema: str | None, reserved: bool = False) -> C:
        if not reserved:
            self._total += 1
        conn = self.factory(self.data_source, key, schema)
        try:
            await conn.connect(self.settings.connect_timeout_s)
        except BaseException:
            self._total -= 1
            self.metrics.backend_connect_error(self.data_source.name)
            self._wake_for_capacity()
            raise
        self._busy_gauge.inc()
        return conn

    async def _wait(self, key: Key, schema: str | None) -> C:
        fut: asyncio.Future[C | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.wait_timeout_s):
                conn = await fut
        except TimeoutError:
            self.metrics.pool_timeout(self.data_source.name)
            raise errors.BackendError(errors.BACKEND_POOL_TIMEOUT, data_source=self.data_source.name,
                                      seconds=f"{self.settings.wait_timeout_s:g}", size=self.settings.max_size
                                      ) from None
        except asyncio.CancelledError:
            # Cancelled after being served: give back what we were handed, so nothing leaks.
            if fut.done() and not fut.cancelled():
                handed = fut.result()
                if handed is None:
                    self._total -= 1
                    self._wake_for_capacity()
                else:
                    self.release(handed)
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        self.metrics.pool_wait(self.data_source.name, time.monotonic() - started)
        if conn is None:  # a slot was freed and reserved for us: open into it
            return await self._open(key, schema, reserved=True)
        return conn

    def _hand_over(self, conn: C) -> bool:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return True
        return False

    def _wake_for_capacity(self) -> None:
        while self._waiters and self._total < self.settings.max_size:
            fut = self._waiters.popleft()
            if not fut.done():
                self._total += 1  # the slot is reserved for the waiter, which opens into it
                fut.set_result(None)
                return

    def release(self, conn: C) -> None:
        """Return a connection. Broken, dirty, busy or expired connections are closed instead."""
        self._busy_gauge.dec()
        conn.last_used = time.monotonic()
        if conn.broken or conn.closed or conn.busy or conn.dirty or self.closing or self._expired(conn, conn.last_used) \
                or (self.retired and not self._waiters):
            self._discard(conn)
            return
        if self._hand_over(conn):
            self._busy_gauge.inc()
            return
        self._idle.append(conn)
        self._idle_gauge.inc()

    def _discard(self, conn: C) -> None:
        if conn.broken:
            conn.close()
        else:
            conn.quit()
        self._total -= 1
        self._wake_for_capacity()

    async def reset_and_release(self, conn: C) -> None:
        """Return a connection that held a session's state: reset it first; one that cannot be reset is closed."""
        try:
            await conn.reset()
        except Exception:  # any failure (an error answer, a lost connection): it must not serve anyone again
            self.discard(conn)
            return
        self.release(conn)

    def discard(self, conn: C) -> None:
        """A leased connection that must not be reused (broken mid-statement, or state we cannot undo)."""
        self._busy_gauge.dec()
        self._discard(conn)

    # -- upkeep ------------------------------------------------------------------------------------------------

    async def _maintain(self) -> None:
        interval = max(0.5, min(self.settings.health_check_interval_s, self.settings.idle_timeout_s) / 2)
        while not self.closing:
            await asyncio.sleep(interval)
            if self.retired and self._total == 0:
                return
            now = time.monotonic()
            keep = self.settings.min_size
            for conn in list(self._idle):
                idle_for = now - conn.last_used
                too_many = self._total > keep
                if conn.broken or self._expired(conn, now) or (too_many and idle_for > self.settings.idle_timeout_s):
                    self._idle.remove(conn)
                    self._idle_gauge.dec()
                    self._discard(conn)
                elif idle_for > self.settings.health_check_interval_s:
                    # Health check: COM_PING an idle connection; a dead one is dropped before a client gets it.
                    self._idle.remove(conn)
                    self._idle_gauge.dec()
                    try:
                        async with asyncio.timeout(self.settings.connect_timeout_s):
                            await conn.ping()
                    except (errors.DbMeshError, TimeoutError, OSError, Exception):
                        self._discard(conn)
                        continue
                    conn.last_used = time.monotonic()
                    if self._hand_over(conn):
                        self._busy_gauge.inc()
                    else:
                        self._idle.append(conn)
                        self._idle_gauge.inc()

    def retire(self) -> None:
        """Drain for a configuration change: close idle connections now, leased ones when they are released.

        Waiters already queued (statements that began under the old configuration) are still served; the pool is
        unreachable for new statements because the runtime dropped it.
        """
        self.retired = True
        while self._idle:
            conn = self._idle.pop()
            self._idle_gauge.dec()
            conn.quit()
            self._total -= 1
        for holder in list(self._holders.values()):
            # Sticky connections of idle sessions go back now (they would only come back at their next statement).
            if holder.reclaimable:
                surrendered = holder.surrender()
                if surrendered is not None:
                    self.discard(surrendered)
        self._holders.clear()

    async def close(self) -> None:
        self.closing = True
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        while self._idle:
            conn = self._idle.pop()
            self._idle_gauge.dec()
            conn.quit()
            self._total -= 1
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(errors.SessionError(errors.SESSION_SHUTTING_DOWN))
