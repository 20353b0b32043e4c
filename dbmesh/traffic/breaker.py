"""A circuit breaker with Sentinel's semantics (AbstractCircuitBreaker, ExceptionCircuitBreaker, ResponseTimeCircuitBreaker).

CLOSED: every statement passes; each completion is counted in a sliding window and, once the window holds at
least `minRequestAmount` statements, compared with the threshold, with Sentinel's exact comparisons:

* SLOW_REQUEST_RATIO: a statement is slow when its response time is above `count` ms; trips when the slow
  ratio is above `slowRatioThreshold`, or equal to it when the threshold is 1.0 (every statement slow).
* ERROR_RATIO: trips when errors / requests is above `count`.
* ERROR_COUNT: trips when the number of errors is above `count`.

OPEN: `try_pass()` is False for `timeWindow` seconds. After that the next `try_pass()` moves to HALF_OPEN and
lets that one statement through as the probe; every other statement is still refused. The probe's completion
decides: success (and, for SLOW_REQUEST_RATIO, not slow) closes the breaker and empties its window; an error
(or a slow probe) opens it for another `timeWindow`.

Two departures from Sentinel, both for statements that are not the probe or never report:

* Only the probe decides in HALF_OPEN. Sentinel lets any completion decide, including that of a statement that
  started long before the breaker opened; here such completions are only counted.
* A probe that is neither completed nor abandoned within `max(timeWindow, LOST_PROBE_AFTER_S)` is presumed lost
  (its task died without reporting) and the next statement becomes the probe, so a breaker can never stay
  HALF_OPEN for ever. A late report of the lost probe is then counted but decides nothing.

Sample counts follow Sentinel: one bucket for the slow-ratio window, two (SampleCountProperty.SAMPLE_COUNT) for
the error windows.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable

from dbmesh.traffic.rules import BreakerGrade, CircuitBreakerRule
from dbmesh.traffic.window import SlidingWindow, Totals

Clock = Callable[[], float]  # monotonic seconds

LOST_PROBE_AFTER_S = 60.0
SLOW_SAMPLE_COUNT = 1
ERROR_SAMPLE_COUNT = 2


class BreakerState(enum.Enum):
    """A breaker's state; values are those of the dbmesh_circuit_breaker_state gauge."""

    CLOSED = 0  # statements pass and are counted
    OPEN = 1  # statements fail fast until timeWindow has passed
    HALF_OPEN = 2  # one probe statement is in flight; the others fail fast


# (breaker, from, to): called after every transition, on the event loop, inside the call that caused it.
Listener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]

NOT_ADMITTED = -1  # enter(): the breaker refuses the statement
PASSED = 0  # enter(): a normal statement (not a probe)

# Module-level aliases: the per-statement path compares with these instead of looking members up on the classes.
_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
_SLOW_REQUEST_RATIO, _ERROR_RATIO = BreakerGrade.SLOW_REQUEST_RATIO, BreakerGrade.ERROR_RATIO


class CircuitBreaker:
    """One breaker for one resource. Not thread-safe: the event loop is the only caller."""

    __slots__ = ("_clock", "_count", "_grade", "_listeners", "_min_requests", "_next_retry", "_probe_started",
                 "_probe_ticket", "_slow_grade", "_window", "opened_at", "resource", "rule", "state", "trip_detail")

    def __init__(self, rule: CircuitBreakerRule, resource: str | None = None, clock: Clock = time.monotonic) -> None:
        self.rule = rule
        self.resource = resource if resource is not None else rule.resource  # the name in metrics and errors
        self._clock = clock
        # The rule's fields the completion path reads, copied once (the rule is frozen).
        self._grade = rule.grade
        self._slow_grade = rule.grade is _SLOW_REQUEST_RATIO
        self._count = rule.count
        self._min_requests = rule.min_request_amount
        sample_count = SLOW_SAMPLE_COUNT if self._slow_grade else ERROR_SAMPLE_COUNT
        self._window = SlidingWindow(sample_count, rule.stat_interval_ms)
        self.state = _CLOSED  # read it, never assign it: only the breaker's own transitions change it
        self._next_retry = 0.0  # clock time from which an OPEN breaker lets a probe through
        self._probe_ticket = 0  # ticket of the probe in flight (tickets grow; 0 = no probe ever)
        self._probe_started = 0.0
        self._listeners: list[Listener] = []
        self.opened_at: float | None = None  # clock time of the last CLOSED -> OPEN; None while CLOSED
        self.trip_detail = ""  # why it is open, e.g. "error ratio 0.8 > 0.5 over 1000 ms"

    # -- listeners ------------------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Remove a listener if present (bound methods compare equal when their object and function do)."""
        self._listeners = [fn for fn in self._listeners if fn != listener]

    def _transition(self, to: BreakerState, now: float) -> None:
        old = self.state
        self.state = to
        if to is _OPEN:
            self._next_retry = now + self.rule.time_window_s
            if old is _CLOSED:
                self.opened_at = now
        elif to is _CLOSED:
            self.opened_at = None
            self._window.reset()
        for listener in tuple(self._listeners):
            listener(self, old, to)

    # -- admission ------------------------------------------------------------------------------------------------

    def _probe_lost(self, now: float) -> bool:
        return now - self._probe_started >= max(self.rule.time_window_s, LOST_PROBE_AFTER_S)

    def would_pass(self) -> bool:
        """What `try_pass()` would answer now, without changing anything (to check several breakers first)."""
        state = self.state
        if state is _CLOSED:
            return True
        now = self._clock()
        if state is _OPEN:
            return now >= self._next_retry
        return self._probe_lost(now)

    def enter(self) -> int:
        """Admit a statement: NOT_ADMITTED, PASSED, or a probe ticket (> 0) to hand back to `on_complete`."""
        state = self.state
        if state is _CLOSED:
            return PASSED
        now = self._clock()
        if state is _OPEN:
            if now < self._next_retry:
                return NOT_ADMITTED
            self._probe_ticket += 1
            self._probe_started = now
            self._transition(_HALF_OPEN, now)
            return self._probe_ticket
        if not self._probe_lost(now):
            return NOT_ADMITTED
        self._probe_ticket += 1  # the old ticket's late report will decide nothing
        self._probe_started = now
        return self._probe_ticket

    def try_pass(self) -> bool:
        """Sentinel's tryPass: True when the statement may run (in HALF_OPEN only the probe may).

        A True that moved the breaker to HALF_OPEN makes this statement the probe; use `enter()` to get its
        ticket when the completion must be reported as the probe's.
        """
        return self.enter() != NOT_ADMITTED

    def retry_ms(self) -> int:
        """For a refused statement: ms until the breaker may let one through. OPEN: until HALF_OPEN. HALF_OPEN:
        timeWindow, the earliest a failing probe's re-opened breaker would probe again (sooner if it succeeds)."""
        if self.state is _OPEN:
            # Rounded first so that float noise (110 - 109.999 = 0.0010000000000048) does not add a millisecond.
            return max(0, math.ceil(round((self._next_retry - self._clock()) * 1000, 6)))
        if self.state is _HALF_OPEN:
            return math.ceil(self.rule.time_window_s * 1000)
        return 0

    def refusal_detail(self) -> str:
        if self.state is _HALF_OPEN:
            return f"half-open, a probe statement is in flight; opened on {self.trip_detail}"
        return self.trip_detail

    # -- completion -----------------------------------------------------------------------------------------------

    def abandon(self, ticket: int) -> None:
        """The statement admitted with `ticket` never ran (refused by a later check, cancelled before it was sent).

        A probe's breaker goes back to OPEN with its retry time already reached, so the next statement probes
        (Sentinel does the same when a probe is blocked by another rule). Other tickets need nothing.
        """
        if ticket > PASSED and ticket == self._probe_ticket and self.state is _HALF_OPEN:
            now = self._clock()
            self._transition(_OPEN, now)
            self._next_retry = now

    def on_complete(self, seconds: float, error: bool, ticket: int = PASSED) -> None:
        """Count a finished statement (`seconds` it took; `error` when the data source proved unhealthy)."""
        self.complete_at(self._clock(), seconds, error, ticket)

    def complete_at(self, now: float, seconds: float, error: bool, ticket: int = PASSED) -> None:
        """`on_complete` at clock time `now`, for a caller that read the clock once for several breakers."""
        slow = self._slow_grade and seconds * 1000.0 > self._count
        window = self._window
        window.add(now, error, slow)
        state = self.state
        if state is _CLOSED:
            requests = window.requests
            if requests < self._min_requests:
                return
            # Sentinel's comparisons, on the window's running sums; the words are built only when it trips.
            grade = self._grade
            if grade is _ERROR_RATIO:
                tripped = window.errors / requests > self._count
            elif grade is _SLOW_REQUEST_RATIO:
                ratio, threshold = window.slow / requests, self.rule.slow_ratio_threshold
                tripped = ratio > threshold or ratio == threshold == 1.0
            else:
                tripped = window.errors > self._count
            if tripped:
                detail = self._exceeded(Totals(requests, window.errors, window.slow))
                if detail is not None:
                    self.trip_detail = detail
                    self._transition(_OPEN, now)
            return
        if state is _OPEN:
            return
        if ticket <= PASSED or ticket != self._probe_ticket:
            return
        if error:
            self.trip_detail = "the probe statement failed"
            self._transition(_OPEN, now)
        elif slow:
            self.trip_detail = f"the probe statement took {seconds * 1000.0:.0f} ms > {self.rule.count:g} ms"
            self._transition(_OPEN, now)
        else:
            self._transition(_CLOSED, now)

    def _exceeded(self, t: Totals) -> str | None:
        """The trip reason when the window's counts pass the threshold, else None (Sentinel's comparisons)."""
        rule = self.rule
        over = f"over {rule.stat_interval_ms} ms"
        if rule.grade is BreakerGrade.SLOW_REQUEST_RATIO:
            ratio = t.slow / t.requests
            threshold = rule.slow_ratio_threshold
            if ratio > threshold:
                return f"slow request ratio {ratio:.3g} > {threshold:g} {over} (slow: above {rule.count:g} ms)"
            if ratio == threshold == 1.0:  # "every statement slow" must trip although 1.0 cannot be exceeded
                return f"slow request ratio 1 = {threshold:g} {over} (slow: above {rule.count:g} ms)"
            return None
        if rule.grade is BreakerGrade.ERROR_RATIO:
            ratio = t.errors / t.requests
            return f"error ratio {ratio:.3g} > {rule.count:g} {over}" if ratio > rule.count else None
        return f"error count {t.errors} > {rule.count:g} {over}" if t.errors > rule.count else None

    # -- inspection -----------------------------------------------------------------------------------------------

    def window_totals(self) -> Totals:
        """The counts in the statistics window now."""
        return self._window.totals(self._clock())
