"""Flow-rule limiters (Sentinel's traffic shaping controllers) and the `Admission` a statement holds while it runs.

* QPS + REJECT: a token bucket. It holds up to `count` tokens (at least one), refills `count` per second, and
  a statement takes one or is refused: bursts of up to one second's worth pass, the long-run rate is `count`.
* QPS + QUEUE: Sentinel's RateLimiterController. Statements are spaced evenly, `1/count` s apart: each gets
  the time it may pass at (the previous one's plus the spacing, or now if that is past) and waits until then,
  unless that wait would be `maxQueueingTimeMs` or more (Sentinel's comparison), which refuses it.
* THREAD + REJECT: a counter of running statements; one more than `count` is refused. The permit is given
  back by `Admission.release()` when the statement finishes.
* THREAD + QUEUE: as THREAD, but a statement over the limit waits (FIFO) for a permit up to
  `maxQueueingTimeMs`. A finishing statement hands its permit straight to the oldest waiter, so a newcomer can
  never overtake the queue.

Deciding is split in two so that one statement under several rules is refused without side effects:
`refusal()` asks every limiter first (nothing changes), and only when all agree does `take()` consume tokens
and permits. Single-threaded: both run on the event loop with nothing awaited in between. A statement under
one rule only (the common case) takes the fused `admit()`, which decides and takes in one call.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from dbmesh import errors
from dbmesh.traffic.rules import ControlBehavior, FlowGrade, FlowRule

Clock = Callable[[], float]  # monotonic seconds
# [passed, rejected, queued] of one resource in the metrics (Metrics.rate_limit_row), incremented in place.
RateRow = list[int]

# Token arithmetic is in floats: a bucket refilled for exactly 1/count s may hold 0.9999999 tokens.
_EPSILON = 1e-9
_MIN_TOKENS = 1.0 - _EPSILON  # what a statement needs


class Admission:
    """What `admit()` gave a statement: a wait before it may run, and the concurrency permits it holds.

    * `wait_s`: seconds to sleep before running (QPS + QUEUE), 0.0 when none.
    * `waiter`: None, or an awaitable that resolves once every THREAD + QUEUE permit is granted and raises
      `DbMeshError(RATE_LIMITED)` when one is not granted within its maxQueueingTimeMs (everything the
      admission holds is then released). Await it after (or while) sleeping `wait_s`.
    * `release()`: give back the permits when the statement finishes, fails, or is never run; idempotent,
      and it also withdraws waits still queued.
    """

    __slots__ = ("_pending", "_permits", "_released", "wait_s", "waiter")

    def __init__(self, permit: ConcurrencyLimiter | None = None) -> None:
        self.wait_s = 0.0
        self.waiter: Awaitable[None] | None = None
        self._permits: list[ConcurrencyLimiter] = [permit] if permit is not None else []  # one entry per permit
        self._pending: list[_QueuedWait] | None = None  # created by the first queued wait
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._pending:
            for wait in self._pending:
                wait.withdraw()
        permits = self._permits
        if permits:
            self._permits = []
            for limiter in permits:
                limiter.release_permit()


# The admission of a statement that holds nothing and need not wait (no flow rule applies, or only token
# buckets do): sharing it is safe, since releasing it has nothing to give back.
NO_ADMISSION = Admission()


class _QueuedWait:
    """One statement queued at one THREAD + QUEUE limiter."""

    __slots__ = ("admission", "future", "limiter", "timer")

    def __init__(self, limiter: ConcurrencyLimiter, admission: Admission, future: asyncio.Future[bool]) -> None:
        self.limiter = limiter
        self.admission = admission
        self.future = future  # True: permit granted (already recorded on the admission); False: timed out
        self.timer: asyncio.TimerHandle | None = None

    def withdraw(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.future.done():
            self.future.cancel()


class _Waiter:
    """Awaitable of an admission's queued waits; see `Admission.waiter`."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def __await__(self) -> Generator[Any, None, None]:
        admission = self._admission
        try:
            for wait in tuple(admission._pending or ()):
                # The waits were queued together, so awaiting them one after another costs the longest, not the sum.
                granted = yield from wait.future.__await__()
                if not granted:
                    raise wait.limiter.error(f"no permit became free within maxQueueingTimeMs "
                                             f"{wait.limiter.rule.max_queueing_time_ms}", count=False)
        except BaseException:
            admission.release()  # refused or cancelled: the statement will not run
            raise


class Limiter:
    """Base of the four limiters: the rule, its counters, and the two-phase decision."""

    __slots__ = ("_clock", "_metrics", "passed", "queued", "rejected", "resource", "rule")

    def __init__(self, rule: FlowRule, clock: Clock) -> None:
        self.rule = rule
        self.resource = rule.resource
        self._clock = clock
        self._metrics: RateRow | None = None
        self.passed = 0  # statements let through, at once or after waiting
        self.rejected = 0  # statements refused (for THREAD + QUEUE: also those whose wait ran out)
        self.queued = 0  # statements that had to wait

    def bind(self, row: RateRow | None) -> None:
        """Count into this metrics row from now on (a limiter carried over to a new governor rebinds)."""
        self._metrics = row

    def error(self, detail: str, *, count: bool = True) -> errors.DbMeshError:
        """The RATE_LIMITED error of this rule, counting the refusal unless it was counted already."""
        if count:
            self._rejected()
        return errors.DbMeshError(errors.RATE_LIMITED, resource=self.resource, detail=f"{self.rule.describe()}, {detail}")

    def _rejected(self) -> None:
        self.rejected += 1
        if self._metrics is not None:
            self._metrics[1] += 1

    def _passed(self) -> None:
        self.passed += 1
        if self._metrics is not None:
            self._metrics[0] += 1

    def _queued(self) -> None:
        self.queued += 1
        if self._metrics is not None:
            self._metrics[2] += 1

    def refusal(self, now: float) -> str | None:
        """Why a statement arriving at `now` would be refused, or None; changes nothing."""
        raise NotImplementedError

    def take(self, now: float, admission: Admission) -> None:
        """Let the statement through (after `refusal(now)` said None): consume, reserve or queue."""
        raise NotImplementedError

    def admit(self, now: float) -> Admission:
        """`refusal()` then `take()` for a statement no other rule applies to: its Admission, or raises the
        RATE_LIMITED error (counted). Subclasses fuse the two where it saves work."""
        why = self.refusal(now)
        if why is not None:
            raise self.error(why)
        admission = Admission()
        self.take(now, admission)
        return admission

    @property
    def in_use(self) -> int:
        """Permits held now (THREAD rules; 0 for QPS)."""
        return 0

    @property
    def waiting(self) -> int:
        """Statements waiting now (THREAD + QUEUE; 0 for the others)."""
        return 0


class TokenBucket(Limiter):
    """QPS + REJECT."""

    __slots__ = ("_capacity", "_last", "_rate", "_tokens")

    def __init__(self, rule: FlowRule, clock: Clock) -> None:
        super().__init__(rule, clock)
        self._rate = rule.count  # tokens per second
        # At least one token, or a rule below 1 QPS (count 0.5: one statement every 2 s) would never pass.
        self._capacity = max(rule.count, 1.0) if rule.count > 0 else 0.0
        self._tokens = self._capacity
        self._last = clock()

    # The refill (the tokens accrued since the last statement, up to the capacity) is written out in both
    # refusal() and admit(): they run per statement, and a helper call would cost as much as the arithmetic.

    def refusal(self, now: float) -> str | None:
        tokens = self._tokens
        if now > self._last:
            tokens += (now - self._last) * self._rate
            if tokens > self._capacity:
                tokens = self._capacity
            self._tokens = tokens
            self._last = now
        return None if tokens >= _MIN_TOKENS else "no token left"

    def take(self, now: float, admission: Admission) -> None:
        self._tokens -= 1.0
        self.passed += 1
        if self._metrics is not None:
            self._metrics[0] += 1

    def admit(self, now: float) -> Admission:
        # refusal() and take() in one; a token bucket gives the statement nothing to hold or wait for.
        tokens = self._tokens
        if now > self._last:
            tokens += (now - self._last) * self._rate
            if tokens > self._capacity:
                tokens = self._capacity
            self._last = now
        if tokens < _MIN_TOKENS:
            self._tokens = tokens
            raise self.error("no token left")
        self._tokens = tokens - 1.0
        self.passed += 1
        if self._metrics is not None:
            self._metrics[0] += 1
        return NO_ADMISSION


class RateLimiter(Limiter):
    """QPS + QUEUE (Sentinel's RateLimiterController, in float seconds instead of rounded milliseconds, so a
    count above 1000 still spaces statements)."""

    __slots__ = ("_cost", "_latest")

    def __init__(self, rule: FlowRule, clock: Clock) -> None:
        super().__init__(rule, clock)
        self._cost = 1.0 / rule.count if rule.count > 0 else float("inf")
        self._latest = float("-inf")  # the time the last admitted statement may pass at

    def refusal(self, now: float) -> str | None:
        if self.rule.count <= 0:  # no statement may ever pass (and -inf + inf would be NaN below)
            return f"it would wait for ever, maxQueueingTimeMs is {self.rule.max_queueing_time_ms}"
        expected = self._latest + self._cost
        if expected <= now:
            return None
        wait_ms = (expected - now) * 1000.0
        if wait_ms >= self.rule.max_queueing_time_ms:
            return f"it would wait {wait_ms:.0f} ms, maxQueueingTimeMs is {self.rule.max_queueing_time_ms}"
        return None

    def take(self, now: float, admission: Admission) -> None:
        expected = self._latest + self._cost
        if expected <= now:
            self._latest = now
        else:
            self._latest = expected
            admission.wait_s = max(admission.wait_s, expected - now)
            self._queued()
        self._passed()


class ConcurrencyLimiter(Limiter):
    """THREAD + REJECT and THREAD + QUEUE."""

    __slots__ = ("_count", "_in_use", "_queue", "_waits")

    def __init__(self, rule: FlowRule, clock: Clock) -> None:
        super().__init__(rule, clock)
        self._count = rule.count
        self._queue = rule.control_behavior is ControlBehavior.QUEUE
        self._in_use = 0
        self._waits: deque[_QueuedWait] = deque()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return sum(1 for wait in self._waits if not wait.future.done())

    # A permit is free when `_in_use + 1 <= _count` (Sentinel refuses when curThreadNum + 1 > count); the test
    # is written out where it is needed, since these methods run per statement.

    def refusal(self, now: float) -> str | None:
        if self._in_use + 1 <= self._count or self._queue:
            return None
        return f"{self._in_use} statements running"

    def take(self, now: float, admission: Admission) -> None:
        if self._in_use + 1 <= self._count:
            self._in_use += 1
            admission._permits.append(self)
            self.passed += 1
            if self._metrics is not None:
                self._metrics[0] += 1
            return
        loop = asyncio.get_running_loop()
        wait = _QueuedWait(self, admission, loop.create_future())
        wait.timer = loop.call_later(self.rule.max_queueing_time_ms / 1000.0, self._expire, wait)
        self._waits.append(wait)
        if admission._pending is None:
            admission._pending = []
        admission._pending.append(wait)
        if admission.waiter is None:
            admission.waiter = _Waiter(admission)
        self._queued()

    def admit(self, now: float) -> Admission:
        if self._in_use + 1 <= self._count:  # a permit is free
            self._in_use += 1
            self.passed += 1
            if self._metrics is not None:
                self._metrics[0] += 1
            return Admission(self)
        return super().admit(now)  # refused, or queued

    def _expire(self, wait: _QueuedWait) -> None:
        if not wait.future.done():
            wait.future.set_result(False)
            self._rejected()  # here, not when the waiter raises: a wait nobody awaits ran out all the same
        # Waits share one timeout, so the ones that ran out are at the front; dropping them here keeps the queue
        # as long as the live waits even while no permit comes back.
        waits = self._waits
        while waits and waits[0].future.done():
            waits.popleft()

    def release_permit(self) -> None:
        """A statement finished: hand its permit to the oldest live waiter, or free it."""
        while self._waits:
            wait = self._waits.popleft()
            if wait.future.done():  # timed out or withdrawn
                continue
            if wait.timer is not None:
                wait.timer.cancel()
            wait.admission._permits.append(self)  # recorded now, so a release() racing the wake-up returns it
            wait.future.set_result(True)
            self._passed()
            return
        self._in_use -= 1


def make_limiter(rule: FlowRule, clock: Clock = time.monotonic) -> Limiter:
    """The limiter for a flow rule."""
    if rule.grade is FlowGrade.THREAD:
        return ConcurrencyLimiter(rule, clock)
    if rule.control_behavior is ControlBehavior.QUEUE:
        return RateLimiter(rule, clock)
    return TokenBucket(rule, clock)
