"""The traffic governor: the `!TRAFFIC` rule of one configuration snapshot, turned into breakers and limiters.

Sessions call it around every statement:

```python
probe = governor.breaker_check(database, data_sources, tables)   # raises CIRCUIT_OPEN
admission = governor.admit(user, database, tables, digest)        # raises RATE_LIMITED
try:
    if admission.wait_s: await asyncio.sleep(admission.wait_s)
    if admission.waiter is not None: await admission.waiter
    ... run the statement ...
finally:
    admission.release()
    governor.record(probe, seconds, error=<the data source proved unhealthy>)   # or abandon(probe) if never sent
```

Breakers on data sources are per (logical database, data source): `ds_0` applies to the data source named ds_0
of every database, each with its own breaker, because each database's ds_0 is its own server;
`sharding_db.ds_0` names one and wins over a bare `ds_0` for it. Rules naming data sources that no database has
are ignored (the global rule cannot know them when it is loaded). A `table:` breaker is one breaker for the
logical table, whatever database the statement runs in.

`build(previous=...)` carries state over: a breaker whose rule (and data source definition) did not change
keeps its state and window, a limiter whose rule did not change keeps its tokens and permits. In-flight
statements of the previous snapshot report to the same objects, so nothing is counted twice or lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbmesh import errors
from dbmesh.traffic.breaker import PASSED, BreakerState, CircuitBreaker, Clock
from dbmesh.traffic.limiter import NO_ADMISSION, Admission, Limiter, make_limiter
from dbmesh.traffic.rules import (
    ALL_RESOURCES,
    DATABASE_PREFIX,
    DIGEST_PREFIX,
    TABLE_PREFIX,
    USER_PREFIX,
    BreakerGrade,
    CircuitBreakerRule,
    TrafficRules,
    traffic_rules,
)

if TYPE_CHECKING:
    from dbmesh.config.models import Config, DataSource
    from dbmesh.observe.metrics import Metrics

log = logging.getLogger("dbmesh.traffic")

_CLOSED = BreakerState.CLOSED
# (breaker, ticket from enter(), data source name or None for a table breaker): what a Probe holds per breaker.
Entry = tuple[CircuitBreaker, int, str | None]
# Users and databases are bounded by configuration; the cap (per level of the memo) only guards against a caller
# that passes something else, by starting that level afresh.
MAX_PLANS = 4096


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """One breaker, for SHOW CIRCUIT BREAKERS."""

    resource: str  # "sharding_db.ds_0" or "table:t_order" (the metrics label)
    rule: str  # the rule's resource as written in the configuration ("ds_0")
    state: str  # CLOSED | OPEN | HALF_OPEN
    strategy: str  # SLOW_REQUEST_RATIO | ERROR_RATIO | ERROR_COUNT
    threshold: str  # the trip condition in words
    requests: int  # statements completed in the statistics window
    errors: int  # of which failed
    slow: int  # of which slow (SLOW_REQUEST_RATIO; 0 for the other strategies)
    window_ms: int  # statIntervalMs
    opened_at: float | None  # wall-clock time (time.time()) the breaker last opened after being closed; None while CLOSED
    retry_ms: int  # OPEN: ms until a probe may pass; HALF_OPEN: see CircuitBreaker.retry_ms; CLOSED: 0
    detail: str  # why it opened ("error ratio 0.8 > 0.5 over 1000 ms"); "" if it never did


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """One flow rule, for SHOW RATE LIMITS."""

    resource: str  # "*", "user:app", "database:shop", "table:t_order", "digest:<hex>"
    grade: str  # QPS | THREAD
    count: float
    control_behavior: str  # REJECT | QUEUE
    passed: int  # since the rule was created (a reload with the rule unchanged keeps counting)
    rejected: int
    queued: int
    in_use: int  # THREAD: statements holding a permit now
    waiting: int  # THREAD + QUEUE: statements waiting for a permit now


class Probe:
    """The breakers a statement passed, to hand back to `record()` or `abandon()` once (later calls do nothing)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        self._entries = entries  # the governor may share this tuple between probes: it is never changed

    def take(self) -> tuple[Entry, ...]:
        entries, self._entries = self._entries, ()
        return entries

    @property
    def breakers(self) -> tuple[CircuitBreaker, ...]:
        return tuple(entry[0] for entry in self._entries)


def _threshold(rule: CircuitBreakerRule) -> str:
    if rule.grade is BreakerGrade.SLOW_REQUEST_RATIO:
        return f"slow request ratio > {rule.slow_ratio_threshold:g} (slow: above {rule.count:g} ms)"
    if rule.grade is BreakerGrade.ERROR_RATIO:
        return f"error ratio > {rule.count:g}"
    return f"error count > {rule.count:g}"


class TrafficGovernor:
    """Circuit breakers and flow rules of one configuration snapshot. Used from the event loop only."""

    __slots__ = ("_all_limit", "_breaker_order", "_clock", "_database_limits", "_digest_limits", "_ds_breakers",
                 "_ds_entries", "_limiters", "_metrics", "_per_statement_limits", "_plans", "_sources",
                 "_table_breakers", "_table_entries", "_table_limits", "_user_limits", "has_breakers",
                 "has_flow_rules", "has_table_rules", "needs_digest", "rules")

    def __init__(self, rules: TrafficRules, metrics: Metrics | None, clock: Clock) -> None:
        self.rules = rules
        self._metrics = metrics
        self._clock = clock
        self._ds_breakers: dict[str, dict[str, CircuitBreaker]] = {}  # database -> data source -> breaker
        self._sources: dict[tuple[str, str], DataSource] = {}  # the data source each breaker was built for
        self._table_breakers: dict[str, CircuitBreaker] = {}  # lower-case logical table -> breaker
        self._breaker_order: list[CircuitBreaker] = []
        self._limiters: list[Limiter] = []
        self._all_limit: Limiter | None = None
        self._user_limits: dict[str, Limiter] = {}
        self._database_limits: dict[str, Limiter] = {}
        self._table_limits: dict[str, Limiter] = {}
        self._digest_limits: dict[str, Limiter] = {}
        # The per-statement path reads these, derived once from the maps above (rules are immutable per governor):
        # database -> data source -> the one-entry tuple a probe of a CLOSED breaker holds, and the same per table;
        # user -> database -> the limiters of '*', the user and the database, in admit() order.
        self._ds_entries: dict[str, dict[str, tuple[Entry]]] = {}
        self._table_entries: dict[str, tuple[Entry]] = {}
        self._plans: dict[str, dict[str, tuple[Limiter, ...]]] = {}
        self._per_statement_limits = False  # whether table or digest limits exist (matched per statement)
        # Flags for callers, read per statement (plain attributes, set once by build(); never assign them).
        self.has_breakers = False  # whether any breaker exists (else `breaker_check` always returns None)
        self.has_flow_rules = False  # whether any flow rule exists (else `admit` always returns a no-op admission)
        self.has_table_rules = False  # whether a breaker or flow rule names a table (else callers may pass no tables)
        self.needs_digest = False  # whether a flow rule names a statement digest (else callers may pass digest=None)

    # -- building -------------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, config: Config, metrics: Metrics | None, previous: TrafficGovernor | None = None, *,
              clock: Clock = time.monotonic) -> TrafficGovernor | None:
        """The governor of `config`'s `!TRAFFIC` rule, or None when it has no rules (nothing to check per statement).

        State carries over from `previous` for every breaker and limiter whose rule did not change; the
        previous governor's breakers stop reporting to its listener (metrics and logs come from the new one).
        """
        rules = traffic_rules(config)
        gov = cls(rules, metrics, clock) if rules is not None else None
        if gov is not None and rules is not None:
            gov._build_breakers(rules, config, previous)
            gov._build_limiters(rules, previous)
            gov._derive()
        if previous is not None:
            previous._hand_over(gov)
        if gov is not None:
            for breaker in gov._breaker_order:
                breaker.add_listener(gov._on_breaker_change)
                if metrics is not None:
                    metrics.circuit_breaker_state(breaker.resource, breaker.state.value)
        return gov

    def _build_breakers(self, rules: TrafficRules, config: Config, previous: TrafficGovernor | None) -> None:
        by_resource = {rule.resource: rule for rule in rules.circuit_breakers if rule.table is None}
        old_ds = previous._ds_breakers if previous is not None else {}
        old_sources = previous._sources if previous is not None else {}
        if by_resource:
            for db_name, database in config.databases.items():
                for ds_name, source in database.data_sources.items():
                    rule = by_resource.get(f"{db_name}.{ds_name}") or by_resource.get(ds_name)
                    if rule is None:
                        continue
                    old = old_ds.get(db_name, {}).get(ds_name)
                    # A changed data source (another host, say) is a different server: its breaker starts afresh.
                    if old is None or old.rule != rule or old_sources.get((db_name, ds_name)) != source:
                        old = CircuitBreaker(rule, f"{db_name}.{ds_name}", self._clock)
                    self._ds_breakers.setdefault(db_name, {})[ds_name] = old
                    self._sources[(db_name, ds_name)] = source
                    self._breaker_order.append(old)
        old_tables = previous._table_breakers if previous is not None else {}
        for rule in rules.circuit_breakers:
            table = rule.table
            if table is None:
                continue
            breaker = old_tables.get(table)
            if breaker is None or breaker.rule != rule:
                breaker = CircuitBreaker(rule, rule.resource, self._clock)
            self._table_breakers[table] = breaker
            self._breaker_order.append(breaker)

    def _build_limiters(self, rules: TrafficRules, previous: TrafficGovernor | None) -> None:
        old = {limiter.resource: limiter for limiter in previous._limiters} if previous is not None else {}
        for rule in rules.flow_rules:
            limiter = old.get(rule.resource)
            if limiter is None or limiter.rule != rule:
                limiter = make_limiter(rule, self._clock)
            limiter.bind(self._metrics.rate_limit_row(rule.resource) if self._metrics is not None else None)
            self._limiters.append(limiter)
            resource = rule.resource
            if resource == ALL_RESOURCES:
                self._all_limit = limiter
            elif resource.startswith(USER_PREFIX):
                self._user_limits[resource[len(USER_PREFIX):]] = limiter
            elif resource.startswith(DATABASE_PREFIX):
                self._database_limits[resource[len(DATABASE_PREFIX):]] = limiter
            elif resource.startswith(TABLE_PREFIX):
                self._table_limits[resource[len(TABLE_PREFIX):]] = limiter
            elif resource.startswith(DIGEST_PREFIX):
                self._digest_limits[resource[len(DIGEST_PREFIX):]] = limiter

    def _derive(self) -> None:
        """The per-statement lookups and the callers' flags, from the breakers and limiters just built."""
        self._ds_entries = {db: {ds: ((breaker, PASSED, ds),) for ds, breaker in by_ds.items()}
                            for db, by_ds in self._ds_breakers.items()}
        self._table_entries = {table: ((breaker, PASSED, None),) for table, breaker in self._table_breakers.items()}
        self._per_statement_limits = bool(self._table_limits or self._digest_limits)
        self.has_breakers = bool(self._breaker_order)
        self.has_flow_rules = bool(self._limiters)
        self.has_table_rules = bool(self._table_breakers or self._table_limits)
        self.needs_digest = bool(self._digest_limits)

    def _hand_over(self, successor: TrafficGovernor | None) -> None:
        """Detach from this governor's breakers; drop the state gauges of breakers the successor does not have."""
        kept = set(successor._breaker_order) if successor is not None else set()
        kept_names = {breaker.resource for breaker in kept}
        for breaker in self._breaker_order:
            breaker.remove_listener(self._on_breaker_change)
            if breaker not in kept and breaker.resource not in kept_names and self._metrics is not None:
                self._metrics.circuit_breaker_removed(breaker.resource)

    def _on_breaker_change(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        if self._metrics is not None:
            self._metrics.circuit_breaker_transition(breaker.resource, new.name, new.value)
        if new is BreakerState.OPEN:
            log.warning("circuit breaker %s: %s -> OPEN for %g s: %s", breaker.resource, old.name,
                        breaker.rule.time_window_s, breaker.trip_detail)
        else:
            log.info("circuit breaker %s: %s -> %s", breaker.resource, old.name, new.name)

    # -- circuit breakers -----------------------------------------------------------------------------------------

    def breaker_check(self, database: str, data_sources: Iterable[str], tables: Iterable[str] = ()) -> Probe | None:
        """Check the breakers on a statement's way: its data sources (in `database`) and logical tables.

        Raises `DbMeshError(CIRCUIT_OPEN, data_source=<data source name or table:t>, detail=..., retry_ms=...)`
        when one of them refuses it; then no breaker's state has changed. Returns None when no breaker applies,
        else the Probe to hand to `record()` when the statement completes (or `abandon()` if it never runs).
        """
        first: tuple[Entry] | None = None  # the first breaker met, as the one-entry tuple a probe can hold
        more: list[Entry] | None = None  # the others, when the statement meets several
        by_ds = self._ds_entries.get(database)
        if by_ds is not None:
            for ds_name in data_sources:
                single = by_ds.get(ds_name)
                if single is not None:
                    if first is None:
                        first = single
                    elif more is None:
                        more = [single[0]]
                    else:
                        more.append(single[0])
        by_table = self._table_entries
        if by_table:
            for table in tables:
                single = by_table.get(table.lower())
                if single is not None:
                    if first is None:
                        first = single
                    elif more is None:
                        more = [single[0]]
                    else:
                        more.append(single[0])
        if first is None:
            return None
        if more is None:
            if first[0][0].state is _CLOSED:
                return Probe(first)  # a CLOSED breaker passes everything, hands out no ticket and changes nothing
            more = []
        found: dict[CircuitBreaker, Entry] = {}  # each breaker once, with the first name it was met by
        closed = True
        for entry in (first[0], *more):
            breaker = entry[0]
            if breaker not in found:
                found[breaker] = entry
                closed = closed and breaker.state is _CLOSED
        if closed:
            return Probe(tuple(found.values()))
        # All first, so that a refusal by one breaker never leaves another one's probe granted.
        for breaker, _, name in found.values():
            if not breaker.would_pass():
                raise errors.DbMeshError(errors.CIRCUIT_OPEN, data_source=name if name is not None else breaker.resource,
                                         detail=breaker.refusal_detail(), retry_ms=breaker.retry_ms())
        return Probe(tuple((breaker, breaker.enter(), name) for breaker, _, name in found.values()))

    def record(self, probe: Probe | None, seconds: float, error: bool, failed_data_sources: Iterable[str] = ()) -> None:
        """Report a statement's completion: how long it took, and whether it proved a data source unhealthy.

        Pass `error=True` only for errors that mean a data source is unhealthy: it could not be connected to,
        the connection was lost, or it timed out. An error the data source answered (a syntax error, a duplicate
        key, a deadlock) shows that it works and must be reported as `error=False`, or one bad client would open
        the breaker for everyone. `failed_data_sources`, when given with `error=True`, names the data sources
        that failed; the others in the probe count a success. Table breakers count the error either way.
        """
        if probe is None:
            return
        entries = probe._entries
        if not entries:
            return
        probe._entries = ()
        now = self._clock()  # once for every breaker (a governor's breakers run on its clock)
        if not error:
            for breaker, ticket, _ in entries:
                breaker.complete_at(now, seconds, False, ticket)
            return
        failed = frozenset(failed_data_sources)
        for breaker, ticket, name in entries:
            breaker.complete_at(now, seconds, not failed or name is None or name in failed, ticket)

    def abandon(self, probe: Probe | None) -> None:
        """The statement checked with `probe` never ran (refused by a rate limit, cancelled before sending):
        a half-open breaker whose probe it was goes back to OPEN, ready to let the next statement probe."""
        if probe is None:
            return
        for breaker, ticket, _ in probe.take():
            breaker.abandon(ticket)

    # -- flow rules -----------------------------------------------------------------------------------------------

    def admit(self, user: str, database: str, tables: Iterable[str], digest: str | None) -> Admission:
        """Apply the flow rules that match a statement ('*', its user, database, tables and digest).

        Raises `DbMeshError(RATE_LIMITED, resource=..., detail=...)` when a rule refuses it; nothing is then
        consumed from any rule. Otherwise returns the Admission (see `dbmesh.traffic.limiter.Admission`),
        which must be released when the statement finishes, fails, or is given up.
        """
        by_database = self._plans.get(user)
        plan = by_database.get(database) if by_database is not None else None
        if plan is None:
            plan = self._plan(user, database)
        matched: tuple[Limiter, ...] | list[Limiter] = plan
        if self._per_statement_limits:
            matched = list(plan)
            if self._table_limits:
                for table in tables:
                    limiter = self._table_limits.get(table.lower())
                    if limiter is not None and limiter not in matched:
                        matched.append(limiter)
            if digest is not None and self._digest_limits:
                limiter = self._digest_limits.get(digest.lower())
                if limiter is not None:
                    matched.append(limiter)
        if len(matched) == 1:
            return matched[0].admit(self._clock())  # one rule: decide and take in one call
        if not matched:
            return NO_ADMISSION
        now = self._clock()
        for limiter in matched:
            why = limiter.refusal(now)
            if why is not None:
                raise limiter.error(why)
        admission = Admission()
        for limiter in matched:
            limiter.take(now, admission)
        return admission

    def _plan(self, user: str, database: str) -> tuple[Limiter, ...]:
        """The limiters that apply to every statement of `user` in `database`, memoised."""
        plan = tuple(limiter for limiter in (self._all_limit, self._user_limits.get(user),
                                             self._database_limits.get(database)) if limiter is not None)
        by_database = self._plans.get(user)
        if by_database is None or len(by_database) >= MAX_PLANS:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            by_database = self._plans[user] = {}
        by_database[database] = plan
        return plan

    # -- inspection -----------------------------------------------------------------------------------------------

    def breaker(self, database: str, data_source: str) -> CircuitBreaker | None:
        """The breaker of one data source of one database, if a rule gives it one."""
        return self._ds_breakers.get(database, {}).get(data_source)

    def table_breaker(self, table: str) -> CircuitBreaker | None:
        return self._table_breakers.get(table.lower())

    def limiter(self, resource: str) -> Limiter | None:
        """The limiter of a flow rule, by its resource as normalised in the rule ("table:t_order")."""
        return next((limiter for limiter in self._limiters if limiter.resource == resource), None)

    def snapshot(self) -> list[BreakerStatus]:
        """Every breaker: data source breakers in database and data source order, then table breakers."""
        now, wall = self._clock(), time.time()
        out = []
        for breaker in self._breaker_order:
            totals = breaker.window_totals()
            opened = breaker.opened_at
            out.append(BreakerStatus(
                resource=breaker.resource,
                rule=breaker.rule.resource,
                state=breaker.state.name,
                strategy=breaker.rule.grade.name,
                threshold=_threshold(breaker.rule),
                requests=totals.requests,
                errors=totals.errors,
                slow=totals.slow,
                window_ms=breaker.rule.stat_interval_ms,
                opened_at=None if opened is None else wall - (now - opened),
                retry_ms=breaker.retry_ms(),
                detail=breaker.trip_detail,
            ))
        return out

    def limits_snapshot(self) -> list[LimitStatus]:
        """Every flow rule, in configuration order."""
        return [LimitStatus(
            resource=limiter.resource,
            grade=limiter.rule.grade.name,
            count=limiter.rule.count,
            control_behavior=limiter.rule.control_behavior.name,
            passed=limiter.passed,
            rejected=limiter.rejected,
            queued=limiter.queued,
            in_use=limiter.in_use,
            waiting=limiter.waiting,
        ) for limiter in self._limiters]

