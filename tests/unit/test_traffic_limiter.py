"""Unit tests for the flow-rule limiters: token bucket, evenly spaced queueing, concurrency permits and waits."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbmesh import errors
from dbmesh.traffic.limiter import (
    Admission,
    ConcurrencyLimiter,
    Limiter,
    RateLimiter,
    TokenBucket,
    make_limiter,
)
from dbmesh.traffic.rules import ControlBehavior, FlowGrade, FlowRule


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def qps(count: float, *, queue_ms: int | None = None, resource: str = "user:app") -> FlowRule:
    if queue_ms is None:
        return FlowRule(resource, FlowGrade.QPS, count)
    return FlowRule(resource, FlowGrade.QPS, count, ControlBehavior.QUEUE, queue_ms)


def thread(count: float, *, queue_ms: int | None = None) -> FlowRule:
    if queue_ms is None:
        return FlowRule("*", FlowGrade.THREAD, count)
    return FlowRule("*", FlowGrade.THREAD, count, ControlBehavior.QUEUE, queue_ms)


def offer(limiter: Limiter, now: float) -> Admission | None:
    """One statement at `now`: its admission, or None when refused."""
    if limiter.refusal(now) is not None:
        limiter.error("refused")
        return None
    admission = Admission()
    limiter.take(now, admission)
    return admission


def test_make_limiter_picks_the_controller() -> None:
    clock = FakeClock()
    assert type(make_limiter(qps(1), clock)) is TokenBucket
    assert type(make_limiter(qps(1, queue_ms=10), clock)) is RateLimiter
    assert type(make_limiter(thread(1), clock)) is ConcurrencyLimiter
    assert type(make_limiter(thread(1, queue_ms=10), clock)) is ConcurrencyLimiter


# -- QPS + REJECT: token bucket -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 50, 400])
def test_token_bucket_holds_the_rate_under_five_times_the_load(n: int) -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(qps(n), clock)
    seconds, offered = 20, 5 * n
    passed = 0
    for i in range(seconds * offered):
        clock.now = i / offered
        passed += offer(bucket, clock.now) is not None
    assert abs(passed - n * seconds) <= 0.1 * n * seconds, passed
    assert bucket.passed == passed and bucket.rejected == seconds * offered - passed


def test_token_bucket_allows_one_seconds_burst_then_refills_at_count_per_second() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(qps(10), clock)
    assert [offer(bucket, 0.0) is not None for _ in range(11)] == [True] * 10 + [False]
    assert offer(bucket, 0.05) is None  # half a token
    assert offer(bucket, 0.1) is not None
    assert offer(bucket, 0.1) is None
    assert [offer(bucket, 100.0) is not None for _ in range(11)] == [True] * 10 + [False]  # capped at count


def test_token_bucket_below_one_qps_and_zero() -> None:
    clock = FakeClock(0.0)
    slow = TokenBucket(qps(0.5), clock)
    assert offer(slow, 0.0) is not None
    assert offer(slow, 1.9) is None
    assert offer(slow, 2.0) is not None
    never = TokenBucket(qps(0), clock)
    assert all(offer(never, t) is None for t in (0.0, 1.0, 1000.0))


@settings(max_examples=200, deadline=None)
@given(count=st.integers(min_value=1, max_value=100),
       gaps=st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=300))
def test_token_bucket_never_passes_more_than_burst_plus_rate(count: int, gaps: list[float]) -> None:
    """Over any stretch of time [a, b], at most count + count * (b - a) statements pass."""
    clock = FakeClock(0.0)
    bucket = TokenBucket(qps(count), clock)
    times: list[float] = []
    for gap in gaps:
        clock.now += gap
        if offer(bucket, clock.now) is not None:
            times.append(clock.now)
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= count + count * (times[j] - start) + 1e-6


# -- QPS + QUEUE: evenly spaced -------------------------------------------------------------------------------------


def test_rate_limiter_spaces_statements_and_bounds_the_wait() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(qps(10, queue_ms=500), clock)
    waits = []
    for _ in range(5):
        admission = offer(limiter, 0.0)
        assert admission is not None
        waits.append(admission.wait_s)
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    why = limiter.refusal(0.0)
    assert why == "it would wait 500 ms, maxQueueingTimeMs is 500"  # Sentinel refuses a wait >= the maximum
    assert offer(limiter, 0.0) is None
    later = offer(limiter, 0.35)  # the refused statement reserved nothing: next slot is 0.5
    assert later is not None and later.wait_s == pytest.approx(0.15)
    assert offer(limiter, 10.0) is not None and limiter.queued == 5 and limiter.passed == 7 and limiter.rejected == 1
    assert offer(limiter, 10.0).wait_s == pytest.approx(0.1)  # type: ignore[union-attr]


def test_rate_limiter_handles_rates_above_a_thousand_per_second() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(qps(4000, queue_ms=1), clock)  # Sentinel's rounded ms cost would be 0: no limit
    passed = sum(offer(limiter, 0.0) is not None for _ in range(10))
    assert passed == 4  # waits 0, 0.25, 0.5, 0.75 ms pass; 1 ms is the maximum


def test_rate_limiter_at_zero_refuses() -> None:
    limiter = RateLimiter(qps(0, queue_ms=500), FakeClock())
    assert limiter.refusal(0.0) == "it would wait for ever, maxQueueingTimeMs is 500"


# -- THREAD -------------------------------------------------------------------------------------------------------


def test_concurrency_permits_are_released_once() -> None:
    limiter = ConcurrencyLimiter(thread(2), FakeClock())
    a, b = offer(limiter, 0.0), offer(limiter, 0.0)
    assert a is not None and b is not None
    assert limiter.in_use == 2
    assert limiter.refusal(0.0) == "2 statements running"
    assert offer(limiter, 0.0) is None
    a.release()
    a.release()  # idempotent: frees one permit, not two
    assert a.released and limiter.in_use == 1
    c = offer(limiter, 0.0)
    assert c is not None and limiter.in_use == 2
    assert offer(limiter, 0.0) is None
    b.release()
    c.release()
    assert limiter.in_use == 0
    assert (limiter.passed, limiter.rejected) == (3, 2)


def test_rejection_error_names_the_rule() -> None:
    bucket = TokenBucket(qps(100), FakeClock())
    error = bucket.error("no token left")
    assert isinstance(error, errors.DbMeshError) and error.entry is errors.RATE_LIMITED
    assert error.args_map["resource"] == "user:app"
    assert str(error) == "DBM-1602 rate limit exceeded for user:app: QPS limit 100, no token left"


async def test_queued_concurrency_wait_gets_the_next_free_permit() -> None:
    limiter = ConcurrencyLimiter(thread(1, queue_ms=5000), FakeClock())
    first = offer(limiter, 0.0)
    second = offer(limiter, 0.0)
    assert first is not None and second is not None
    assert first.waiter is None and second.waiter is not None
    assert limiter.waiting == 1 and limiter.queued == 1
    waiting = asyncio.ensure_future(asyncio.wait_for(second.waiter, 5))
    await asyncio.sleep(0)
    assert not waiting.done()
    first.release()  # hands the permit straight over
    await waiting
    assert limiter.in_use == 1 and limiter.waiting == 0 and limiter.passed == 2
    second.release()
    second.release()
    assert limiter.in_use == 0


async def test_queued_concurrency_waits_are_fifo() -> None:
    limiter = ConcurrencyLimiter(thread(1, queue_ms=5000), FakeClock())
    holder = offer(limiter, 0.0)
    w1, w2 = offer(limiter, 0.0), offer(limiter, 0.0)
    assert holder and w1 and w2 and w1.waiter and w2.waiter
    t1 = asyncio.ensure_future(asyncio.wait_for(w1.waiter, 5))
    t2 = asyncio.ensure_future(asyncio.wait_for(w2.waiter, 5))
    await asyncio.sleep(0)
    holder.release()
    await t1
    await asyncio.sleep(0.01)
    assert not t2.done() and limiter.in_use == 1
    w1.release()
    await t2
    w2.release()
    assert limiter.in_use == 0


async def test_queued_concurrency_wait_times_out_with_rate_limited() -> None:
    limiter = ConcurrencyLimiter(thread(1, queue_ms=50), FakeClock())
    holder = offer(limiter, 0.0)
    queued = offer(limiter, 0.0)
    assert holder is not None and queued is not None and queued.waiter is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(errors.DbMeshError) as info:
        await asyncio.wait_for(queued.waiter, 5)
    assert loop.time() - started >= 0.045
    assert info.value.entry is errors.RATE_LIMITED
    assert "no permit became free within maxQueueingTimeMs 50" in str(info.value)
    assert queued.released  # a refused statement holds nothing
    assert limiter.rejected == 1 and limiter.waiting == 0 and limiter.in_use == 1
    holder.release()
    assert limiter.in_use == 0


async def test_cancelled_wait_gives_nothing_back_twice() -> None:
    limiter = ConcurrencyLimiter(thread(1, queue_ms=5000), FakeClock())
    holder = offer(limiter, 0.0)
    queued = offer(limiter, 0.0)
    assert holder is not None and queued is not None and queued.waiter is not None

    async def wait() -> None:
        assert queued.waiter is not None
        await queued.waiter

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queued.released and limiter.waiting == 0
    holder.release()  # nobody live is waiting: the permit is freed, not handed to the cancelled wait
    assert limiter.in_use == 0
    queued.release()
    assert limiter.in_use == 0


async def test_release_before_awaiting_withdraws_the_wait() -> None:
    limiter = ConcurrencyLimiter(thread(1, queue_ms=5000), FakeClock())
    holder = offer(limiter, 0.0)
    queued = offer(limiter, 0.0)
    assert holder is not None and queued is not None
    queued.release()  # the statement was given up before it waited
    assert limiter.waiting == 0
    holder.release()
    assert limiter.in_use == 0


async def test_several_queued_waits_in_one_admission() -> None:
    clock = FakeClock()
    a = ConcurrencyLimiter(thread(1, queue_ms=5000), clock)
    b = ConcurrencyLimiter(FlowRule("user:app", FlowGrade.THREAD, 1, ControlBehavior.QUEUE, 5000), clock)
    hold_a, hold_b = offer(a, 0.0), offer(b, 0.0)
    assert hold_a is not None and hold_b is not None
    both = Admission()
    a.take(0.0, both)
    b.take(0.0, both)
    assert both.waiter is not None
    task = asyncio.ensure_future(asyncio.wait_for(both.waiter, 5))
    await asyncio.sleep(0)
    hold_b.release()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for a
    hold_a.release()
    await task
    assert a.in_use == 1 and b.in_use == 1
    both.release()
    assert a.in_use == 0 and b.in_use == 0


# -- the fused admit() against refusal() + take() -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["qps", "qps_queue", "thread"]), count=st.sampled_from([0, 0.5, 1, 3, 10]),
       steps=st.lists(st.tuples(st.floats(min_value=0.0, max_value=0.4), st.booleans()), max_size=120))
def test_fused_admit_agrees_with_the_two_phases(kind: str, count: float, steps: list[tuple[float, bool]]) -> None:
    """A statement under one rule takes `admit(now)`; it must decide, count and wait exactly as `refusal(now)`
    then `take(now, admission)` do on an identical limiter."""
    rule = {"qps": qps(count), "qps_queue": qps(count, queue_ms=300), "thread": thread(count)}[kind]
    clock = FakeClock(0.0)
    fused, phased = make_limiter(rule, clock), make_limiter(rule, clock)
    fused_held: list[Admission] = []
    phased_held: list[Admission] = []
    for dt, release in steps:
        clock.now += dt
        if release and fused_held:  # a running statement finishes first
            fused_held.pop(0).release()
            phased_held.pop(0).release()
        try:
            got: Admission | None = fused.admit(clock.now)
        except errors.DbMeshError as exc:
            assert exc.entry is errors.RATE_LIMITED
            got = None
        expected = offer(phased, clock.now)
        assert (got is None) == (expected is None)
        if got is not None and expected is not None:
            assert got.wait_s == expected.wait_s and got.waiter is None and expected.waiter is None
            fused_held.append(got)
            phased_held.append(expected)
        assert (fused.passed, fused.rejected, fused.queued, fused.in_use) == \
            (phased.passed, phased.rejected, phased.queued, phased.in_use)
    for a in fused_held + phased_held:
        a.release()
    assert fused.in_use == 0 and phased.in_use == 0
