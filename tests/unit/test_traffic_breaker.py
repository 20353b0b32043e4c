"""Unit tests for the sliding window and the circuit breaker, on a fake clock (Sentinel's thresholds and states)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dbmesh.traffic.breaker import LOST_PROBE_AFTER_S, NOT_ADMITTED, PASSED, BreakerState, CircuitBreaker
from dbmesh.traffic.rules import BreakerGrade, CircuitBreakerRule
from dbmesh.traffic.window import SlidingWindow

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(grade: BreakerGrade, count: float, *, clock: FakeClock, slow_ratio: float = 1.0, window_s: float = 10.0,
         min_requests: int = 1, interval_ms: int = 1000) -> CircuitBreaker:
    rule = CircuitBreakerRule("ds_0", grade, count, slow_ratio, window_s, min_requests, interval_ms)
    return CircuitBreaker(rule, "db.ds_0", clock)


def complete(breaker: CircuitBreaker, n: int, *, error: bool = False, seconds: float = 0.001) -> None:
    for _ in range(n):
        breaker.on_complete(seconds, error)


# -- window --------------------------------------------------------------------------------------------------------


def test_window_rolls_bucket_by_bucket() -> None:
    w = SlidingWindow(sample_count=4, interval_ms=1000)  # 250 ms buckets
    for t in (0.0, 0.3, 0.6, 0.9):
        w.current(t).requests += 1
    assert w.totals(0.99).requests == 4
    assert w.totals(1.0).requests == 3  # the bucket of 0.0 left the window
    assert w.totals(1.74).requests == 1
    assert w.totals(1.75).requests == 0
    w.current(2.0).errors += 1  # reuses (resets) a slot that held an old count
    assert (w.totals(2.0).requests, w.totals(2.0).errors) == (0, 1)
    w.reset()
    assert w.totals(2.0).errors == 0


def test_window_interval_need_not_divide_by_sample_count() -> None:
    w = SlidingWindow(sample_count=3, interval_ms=1000)
    w.current(0.0).slow += 1
    w.current(0.5).slow += 1
    assert w.totals(0.9).slow == 2
    assert w.totals(1.0).slow == 1


# -- thresholds (Sentinel's comparisons) ---------------------------------------------------------------------------


def test_error_ratio_trips_only_above_the_ratio() -> None:
    clock = FakeClock()
    b = make(BreakerGrade.ERROR_RATIO, 0.5, clock=clock, min_requests=10)
    complete(b, 5)
    complete(b, 5, error=True)
    assert b.state is CLOSED  # 5/10 = 0.5 is not above 0.5
    complete(b, 1, error=True)
    assert b.state is OPEN
    assert b.trip_detail == "error ratio 0.545 > 0.5 over 1000 ms"


def test_error_count_trips_only_above_the_count() -> None:
    clock = FakeClock()
    b = make(BreakerGrade.ERROR_COUNT, 3, clock=clock)
    complete(b, 3, error=True)
    complete(b, 20)
    assert b.state is CLOSED  # 3 errors is not above 3
    complete(b, 1, error=True)
    assert b.state is OPEN
    assert b.trip_detail == "error count 4 > 3 over 1000 ms"


def test_slow_ratio_counts_slow_strictly_above_count_ms() -> None:
    clock = FakeClock()
    b = make(BreakerGrade.SLOW_REQUEST_RATIO, 100, clock=clock, slow_ratio=0.5, min_requests=4)
    complete(b, 2, seconds=0.1)  # exactly 100 ms: not slow
    complete(b, 2, seconds=0.101)
    assert b.state is CLOSED  # 2/4 = 0.5 is not above 0.5
    assert b.window_totals().slow == 2
    complete(b, 1, seconds=0.5)
    assert b.state is OPEN  # 3/5
    assert b.trip_detail.startswith("slow request ratio 0.6 > 0.5 over 1000 ms")


def test_slow_ratio_of_one_trips_when_every_statement_is_slow() -> None:
    clock = FakeClock()
    b = make(BreakerGrade.SLOW_REQUEST_RATIO, 10, clock=clock, slow_ratio=1.0, min_requests=3)
    complete(b, 2, seconds=1.0)
    complete(b, 1, seconds=0.001)
    complete(b, 3, seconds=1.0)
    assert b.state is CLOSED  # 5 of 6 slow
    clock.advance(1.0)  # one-bucket window: a new second starts empty
    complete(b, 3, seconds=1.0)
    assert b.state is OPEN


def test_slow_strategy_ignores_errors_and_error_strategies_ignore_time() -> None:
    clock = FakeClock()
    slow = make(BreakerGrade.SLOW_REQUEST_RATIO, 100, clock=clock, slow_ratio=0.0)
    complete(slow, 10, error=True)
    assert slow.state is CLOSED
    errs = make(BreakerGrade.ERROR_COUNT, 0, clock=clock)
    complete(errs, 10, seconds=60.0)
    assert errs.state is CLOSED and errs.window_totals().slow == 0
    complete(errs, 1, error=True)
    assert errs.state is OPEN


def test_min_request_amount_holds_the_breaker_closed() -> None:
    clock = FakeClock()
    b = make(BreakerGrade.ERROR_RATIO, 0.1, clock=clock, min_requests=5)
    complete(b, 4, error=True)
    assert b.state is CLOSED  # ratio 1.0, but only 4 statements
    complete(b, 1, error=True)
    assert b.state is OPEN


def test_errors_that_left_the_window_do_not_count() -> None:
    clock = FakeClock(0.0)
    b = make(BreakerGrade.ERROR_COUNT, 2, clock=clock)  # two 500 ms buckets
    clock.now = 0.1
    complete(b, 2, error=True)
    clock.now = 1.2  # the window is now [0.5, 1.5): the first two errors are out
    complete(b, 2, error=True)
    assert b.state is CLOSED
    clock.now = 1.3
    complete(b, 1, error=True)
    assert b.state is OPEN


def test_errors_within_the_window_add_up_across_buckets() -> None:
    clock = FakeClock(0.0)
    b = make(BreakerGrade.ERROR_COUNT, 2, clock=clock)
    clock.now = 0.1
    complete(b, 2, error=True)
    clock.now = 0.6
    complete(b, 1, error=True)
    assert b.state is OPEN


# -- OPEN, HALF_OPEN, probes ---------------------------------------------------------------------------------------


def tripped(clock: FakeClock, grade: BreakerGrade = BreakerGrade.ERROR_COUNT, count: float = 0) -> CircuitBreaker:
    b = make(grade, count, clock=clock, window_s=10.0)
    if grade is BreakerGrade.SLOW_REQUEST_RATIO:
        complete(b, 1, seconds=10.0)
    else:
        complete(b, 1, error=True)
    assert b.state is OPEN
    return b


def test_open_refuses_for_time_window_then_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    b = tripped(clock)
    assert not b.try_pass()
    assert b.retry_ms() == 10_000
    clock.advance(9.999)
    assert not b.would_pass() and not b.try_pass()
    assert b.retry_ms() == 1
    clock.now = 110.0  # tripped at 100.0 with timeWindow 10 s
    assert b.would_pass()
    assert b.state is OPEN  # would_pass changes nothing
    assert b.try_pass()
    assert b.state is HALF_OPEN
    assert [b.try_pass() for _ in range(5)] == [False] * 5
    assert not b.would_pass()
    assert b.retry_ms() == 10_000
    assert "a probe statement is in flight" in b.refusal_detail()


def test_successful_probe_closes_and_empties_the_window() -> None:
    clock = FakeClock()
    b = tripped(clock)
    clock.advance(10)
    ticket = b.enter()
    assert ticket > PASSED
    b.on_complete(0.001, False, ticket)
    assert b.state is CLOSED
    assert b.window_totals().requests == 0 and b.opened_at is None
    assert b.enter() == PASSED


def test_failed_probe_reopens_for_another_time_window() -> None:
    clock = FakeClock()
    b = tripped(clock)
    clock.advance(10)
    ticket = b.enter()
    clock.advance(2)
    b.on_complete(0.001, True, ticket)
    assert b.state is OPEN
    assert b.trip_detail == "the probe statement failed"
    assert b.retry_ms() == 10_000  # counted from the probe's completion
    clock.advance(9.9)
    assert not b.try_pass()
    clock.advance(0.1)
    assert b.try_pass()


def test_slow_probe_reopens_a_slow_ratio_breaker() -> None:
    clock = FakeClock()
    b = tripped(clock, BreakerGrade.SLOW_REQUEST_RATIO, 100)
    clock.advance(10)
    ticket = b.enter()
    b.on_complete(0.25, False, ticket)
    assert b.state is OPEN
    assert b.trip_detail == "the probe statement took 250 ms > 100 ms"
    clock.advance(10)
    ticket = b.enter()
    b.on_complete(0.1, True, ticket)  # a failed probe re-opens whatever the strategy
    assert b.state is OPEN
    clock.advance(10)
    ticket = b.enter()
    b.on_complete(0.1, False, ticket)
    assert b.state is CLOSED


def test_only_the_probe_decides_in_half_open() -> None:
    clock = FakeClock()
    b = tripped(clock)
    clock.advance(10)
    ticket = b.enter()
    b.on_complete(0.001, False)  # a statement admitted before the breaker opened
    assert b.state is HALF_OPEN
    b.on_complete(0.001, False, ticket + 1)  # not this probe's ticket
    assert b.state is HALF_OPEN
    b.on_complete(0.001, False, ticket)
    assert b.state is CLOSED


def test_completions_while_open_are_counted_but_decide_nothing() -> None:
    clock = FakeClock()
    b = tripped(clock)
    complete(b, 3)
    assert b.state is OPEN
    assert b.window_totals().requests == 4


def test_abandoned_probe_returns_to_open_and_the_next_statement_probes() -> None:
    clock = FakeClock()
    b = tripped(clock)
    clock.advance(10)
    ticket = b.enter()
    b.abandon(PASSED)  # abandoning a non-probe does nothing
    assert b.state is HALF_OPEN
    b.abandon(ticket)
    assert b.state is OPEN
    second = b.enter()
    assert second > ticket and b.state is HALF_OPEN


def test_a_lost_probe_is_replaced_after_the_grace_period() -> None:
    clock = FakeClock()
    b = tripped(clock)
    clock.advance(10)
    lost = b.enter()
    clock.advance(LOST_PROBE_AFTER_S - 0.5)
    assert b.enter() == NOT_ADMITTED
    clock.advance(0.5)
    fresh = b.enter()
    assert fresh > lost and b.state is HALF_OPEN
    assert b.enter() == NOT_ADMITTED
    b.on_complete(0.001, False, lost)  # the late report decides nothing
    assert b.state is HALF_OPEN
    b.on_complete(0.001, True, fresh)
    assert b.state is OPEN


def test_listeners_see_every_transition_and_can_be_removed() -> None:
    clock = FakeClock()
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    b = make(BreakerGrade.ERROR_COUNT, 0, clock=clock)

    def listener(breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        seen.append((breaker.resource, old, new))

    b.add_listener(listener)
    complete(b, 1, error=True)
    clock.advance(10)
    ticket = b.enter()
    b.on_complete(0.0, True, ticket)
    clock.advance(10)
    ticket = b.enter()
    b.on_complete(0.0, False, ticket)
    assert seen == [("db.ds_0", CLOSED, OPEN), ("db.ds_0", OPEN, HALF_OPEN), ("db.ds_0", HALF_OPEN, OPEN),
                    ("db.ds_0", OPEN, HALF_OPEN), ("db.ds_0", HALF_OPEN, CLOSED)]
    b.remove_listener(listener)
    complete(b, 1, error=True)
    assert b.state is OPEN and len(seen) == 5


def test_opened_at_is_the_first_opening_of_an_outage() -> None:
    clock = FakeClock(50.0)
    b = tripped(clock)
    assert b.opened_at == 50.0
    clock.advance(10)
    ticket = b.enter()
    b.on_complete(0.0, True, ticket)
    assert b.opened_at == 50.0


# -- property: the state machine against a recount ---------------------------------------------------------------

_EVENTS = st.lists(st.tuples(st.sampled_from(["enter", "ok", "error", "slow", "probe_ok", "probe_error", "abandon"]),
                             st.floats(min_value=0.0, max_value=3.0)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(events=_EVENTS, count=st.integers(min_value=0, max_value=4), min_requests=st.integers(min_value=1, max_value=4))
def test_error_count_breaker_agrees_with_a_recount(events: list[tuple[str, float]], count: int, min_requests: int) -> None:
    """Random traffic: the breaker trips exactly when a recount of its window says so, moves only along the edges
    of the state machine, and lets at most one probe through per HALF_OPEN period."""
    clock = FakeClock(0.0)
    b = make(BreakerGrade.ERROR_COUNT, count, clock=clock, window_s=2.0, min_requests=min_requests)
    bucket_s = 0.5  # two buckets over 1000 ms
    counted: list[tuple[float, bool]] = []  # completions since the window was last reset
    moves: list[tuple[BreakerState, BreakerState]] = []
    b.add_listener(lambda _b, old, new: moves.append((old, new)))
    probe = 0
    probes_granted = 0
    for action, dt in events:
        clock.advance(dt)
        if action == "enter":
            before = b.state
            ticket = b.enter()
            if ticket > PASSED:
                assert before in (OPEN, HALF_OPEN)
                probe = ticket
                probes_granted += 1
            elif ticket == NOT_ADMITTED:
                assert before is not CLOSED
            continue
        if action == "abandon":
            b.abandon(probe)
            continue
        error = action in ("error", "probe_error")
        ticket = probe if action.startswith("probe") else PASSED
        state = b.state
        b.on_complete(0.0, error, ticket)
        index = int(clock.now // bucket_s)
        counted.append((clock.now, error))
        in_window = [e for t, e in counted if index - 1 <= int(t // bucket_s) <= index]
        if state is CLOSED:
            expect_open = len(in_window) >= min_requests and sum(in_window) > count
            assert b.state is (OPEN if expect_open else CLOSED)
        elif state is HALF_OPEN and ticket == probe and ticket > PASSED:
            assert b.state is (OPEN if error else CLOSED)
        else:
            assert b.state is state
        if b.state is CLOSED and state is not CLOSED:
            counted.clear()
    allowed = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}
    assert set(moves) <= allowed
    half_opens = sum(1 for move in moves if move == (OPEN, HALF_OPEN))
    assert probes_granted >= half_opens
    if clock.now < LOST_PROBE_AFTER_S:  # no probe can have been presumed lost: one probe per HALF_OPEN
        assert probes_granted == half_opens


_WINDOW_OPS = st.lists(st.tuples(st.sampled_from(["add", "add", "add", "error", "slow", "current", "reset"]),
                                 st.floats(min_value=0.0, max_value=0.7)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(ops=_WINDOW_OPS, sample_count=st.integers(min_value=1, max_value=4),
       interval_ms=st.sampled_from([100, 250, 1000, 1500]))
def test_window_running_sums_agree_with_totals(ops: list[tuple[str, float]], sample_count: int,
                                               interval_ms: int) -> None:
    """The O(1) sums that add() leaves behind are always what totals() recounts from the buckets, also after
    current() changed a bucket behind add()'s back and after reset()."""
    w = SlidingWindow(sample_count, interval_ms)
    now = 0.0
    for op, dt in ops:
        now += dt
        if op == "current":
            w.current(now).errors += 1
            continue
        if op == "reset":
            w.reset()
            continue
        w.add(now, op == "error", op == "slow")
        totals = w.totals(now)
        assert (w.requests, w.errors, w.slow) == (totals.requests, totals.errors, totals.slow)
