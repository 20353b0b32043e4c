"""Prometheus metrics for dbmesh, registered on a registry the caller owns.

Every ``Metrics`` gets its own ``CollectorRegistry`` unless one is passed in: several servers in one process
(and every test) then keep separate counters instead of colliding on prometheus-client's global registry.

Label cardinality is bounded by configuration, never by traffic: ``database`` and ``data_source`` are configured
names, ``type`` is a statement kind from a fixed set chosen by the caller (``select``, ``insert``, ...), ``code``
is a catalogue id from :mod:`dbmesh.errors`. Callers must not pass SQL text or client addresses as labels.
``resource`` is a traffic rule's resource (``sharding_db.ds_0``, ``table:t_order``, ``user:app``, ``digest:<hex>``):
configured, so bounded by configuration too. ``to`` and ``state`` come from fixed sets of state names.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dbmesh import __version__

# A proxy hop costs tens of microseconds; a statement that takes longer than ten seconds is an outlier
# whatever its exact time, so the buckets span 50 µs .. 10 s with a 1-2.5-5 progression per decade.
STATEMENT_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)
# Pool waits are only observed when a lease actually waited, so there is no sub-100 µs detail worth having.
POOL_WAIT_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
)

# ShardingSphere's cluster states; every one gets a dbmesh_cluster_state series once a state is set.
CLUSTER_STATES: tuple[str, ...] = ("OK", "READ_ONLY", "UNAVAILABLE")

# The exposition format generate_latest() writes; the admin endpoint sends it as Content-Type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_STATEMENT_LABELS = ["database", "data_source", "type"]


class StatementStats(Collector):
    """Per-statement counters kept as plain lists and turned into Prometheus families only when scraped.

    The statement path runs tens of thousands of times a second; prometheus-client's labelled children take a
    lock and several calls per update. Here an update is a bisect and three list increments (single-threaded:
    the event loop is the only writer, and a scrape reads numbers that are at worst one statement old).
    Series layout: [count per bucket..., count above the last bucket, sum, count, errors].
    """

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, str], list[float]] = {}
        self._n = len(STATEMENT_BUCKETS)

    def new_series(self, key: tuple[str, str, str]) -> list[float]:
        row = [0.0] * (self._n + 4)
        self.series[key] = row
        return row

    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        hist = HistogramMetricFamily(
            "dbmesh_statement_duration_seconds",
            "Time from receiving a statement to sending the last byte of its answer, per logical database, "
            "data source and statement type.", labels=_STATEMENT_LABELS)
        total = CounterMetricFamily("dbmesh_statements", "Statements executed.", labels=_STATEMENT_LABELS)
        errs = CounterMetricFamily(
            "dbmesh_statement_errors",
            "Statements that ended in an error (raised by dbmesh or passed through from the data source).",
            labels=_STATEMENT_LABELS)
        n = self._n
        for key, row in list(self.series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(STATEMENT_BUCKETS, row[:n], strict=True):
                cumulative += count
                buckets.append((repr(float(bound)), cumulative))
            buckets.append(("+Inf", row[n + 2]))
            hist.add_metric(list(key), buckets, row[n + 1])
            total.add_metric(list(key), row[n + 2])
            errs.add_metric(list(key), row[n + 3])
        yield hist
        yield total
        yield errs


class RateLimitStats(Collector):
    """Flow-rule counters per resource as plain lists [passed, rejected, queued], exported when scraped.

    A limiter counts every statement a rule lets through; a list increment keeps that off the statement path's
    budget where a labelled Counter child's inc() (a lock and several calls) would not. Single writer: the
    event loop.
    """

    _FAMILIES = (
        ("dbmesh_rate_limit_passed", "Statements a flow rule let through (at once or after waiting)."),
        ("dbmesh_rate_limit_rejected", "Statements a flow rule refused (including waits that ran out)."),
        ("dbmesh_rate_limit_queued", "Statements a flow rule made wait."),
    )

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        rows = list(self.rows.items())
        for i, (name, documentation) in enumerate(self._FAMILIES):
            family = CounterMetricFamily(name, documentation, labels=["resource"])
            for resource, row in rows:
                family.add_metric([resource], row[i])
            yield family


_N_BUCKETS = len(STATEMENT_BUCKETS)
# Layout of a statement row after its bucket counts (hot paths that inline observe_row() index with these).
ROW_SECONDS = _N_BUCKETS + 1
ROW_COUNT = _N_BUCKETS + 2
ROW_ERRORS = _N_BUCKETS + 3


def observe_row(row: list[float], seconds: float, error: bool) -> None:
    """Record one statement in a row from Metrics.statement_row (the per-statement hot path)."""
    # Rows hold floats: adding 1.0 skips an int-to-float conversion per increment (same values).
    row[bisect_left(STATEMENT_BUCKETS, seconds)] += 1.0
    row[ROW_SECONDS] += seconds
    row[ROW_COUNT] += 1.0
    if error:
        row[ROW_ERRORS] += 1.0


class Metrics:
    """All dbmesh metrics on one registry, with cached label children for the per-statement hot path."""

    __slots__ = (
        "_backend_children",
        "_backend_connect_errors",
        "_backend_connections",
        "_breaker_state",
        "_breaker_transitions",
        "_client_children",
        "_client_connections",
        "_client_connections_accepted",
        "_cluster_state",
        "_cluster_states_seen",
        "_compute_node_disabled",
        "_config_applied",
        "_config_errors",
        "_config_version",
        "_errors",
        "_pool_timeouts",
        "_pool_wait",
        "_rate_stats",
        "_statement_stats",
        "registry",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._statement_stats = StatementStats()
        r.register(self._statement_stats)
        self._errors = Counter(
            "dbmesh_errors_total", "Errors dbmesh itself raised, by catalogue code and client protocol.",
            ("code", "protocol"), registry=r)
        self._client_connections = Gauge(
            "dbmesh_client_connections", "Client connections currently open.", ("protocol",), registry=r)
        # Not "dbmesh_client_connections_total": a counter registers its family name without the suffix too,
        # which is the gauge's name above, and prometheus-client rejects the duplicate.
        self._client_connections_accepted = Counter(
            "dbmesh_client_connections_accepted_total", "Client connections accepted since start.",
            ("protocol",), registry=r)
        self._backend_connections = Gauge(
            "dbmesh_backend_connections", "Data source connections held by the pool, by state.",
            ("data_source", "state"), registry=r)
        self._pool_wait = Histogram(
            "dbmesh_pool_wait_seconds", "Time a lease waited for a free data source connection (only leases that waited).",
            ("data_source",), registry=r, buckets=POOL_WAIT_BUCKETS)
        self._pool_timeouts = Counter(
            "dbmesh_pool_wait_timeouts_total", "Leases that gave up waiting for a free data source connection.",
            ("data_source",), registry=r)
        self._backend_connect_errors = Counter(
            "dbmesh_backend_connect_errors_total", "Failed attempts to open a data source connection.",
            ("data_source",), registry=r)
        self._breaker_state = Gauge(
            "dbmesh_circuit_breaker_state", "State of a circuit breaker: 0 closed, 1 open, 2 half-open.",
            ("resource",), registry=r)
        self._breaker_transitions = Counter(
            "dbmesh_circuit_breaker_transitions_total", "Circuit breaker state changes, by the state entered.",
            ("resource", "to"), registry=r)
        self._rate_stats = RateLimitStats()
        r.register(self._rate_stats)
        self._config_version = Gauge(
            "dbmesh_config_version", "Version of the configuration in use (the registry's; 0 when standalone).",
            registry=r)
        self._config_errors = Counter(
            "dbmesh_config_errors_total", "Configuration changes that were refused because they did not load.",
            registry=r)
        self._config_applied = Counter(
            "dbmesh_config_applied_total", "Configuration changes applied since start.", registry=r)
        self._cluster_state = Gauge(
            "dbmesh_cluster_state", "1 for the cluster's current state (OK, READ_ONLY, UNAVAILABLE), 0 for the others.",
            ("state",), registry=r)
        self._compute_node_disabled = Gauge(
            "dbmesh_compute_node_disabled", "1 while an operator has disabled this compute node, else 0.", registry=r)
        build_info = Gauge("dbmesh_build_info", "Always 1; the labels carry the dbmesh build.", ("version",), registry=r)
        build_info.labels(__version__).set(1)

        self._client_children: dict[str, tuple[Gauge, Counter]] = {}
        self._backend_children: dict[str, tuple[Gauge, Gauge]] = {}
        self._cluster_states_seen: set[str] = set(CLUSTER_STATES)

    # -- statements (hot path) ------------------------------------------------------------------------------------

    def statement_row(self, database: str, data_source: str, stmt_type: str) -> list[float]:
        """The counters of one label set, for callers that keep it and update it with `observe_row`."""
        stats = self._statement_stats
        key = (database, data_source, stmt_type)
        row = stats.series.get(key)
        return row if row is not None else stats.new_series(key)

    def observe_statement(self, database: str, data_source: str, stmt_type: str, seconds: float,
                          error: bool = False) -> None:
        """Record one finished statement: a dict lookup, a bisect and three increments."""
        stats = self._statement_stats
        key = (database, data_source, stmt_type)
        row = stats.series.get(key)
        if row is None:
            row = stats.new_series(key)
        n = stats._n
        row[bisect_left(STATEMENT_BUCKETS, seconds)] += 1
        row[n + 1] += seconds
        row[n + 2] += 1
        if error:
            row[n + 3] += 1

    # -- errors and clients ---------------------------------------------------------------------------------------

    def error(self, code: str, protocol: str) -> None:
        """Count an error dbmesh raised, by catalogue code (``"DBM-1201"``) and client protocol."""
        self._errors.labels(code, protocol).inc()

    def _client(self, protocol: str) -> tuple[Gauge, Counter]:
        children = self._client_children.get(protocol)
        if children is None:
            children = (self._client_connections.labels(protocol), self._client_connections_accepted.labels(protocol))
            self._client_children[protocol] = children
        return children

    def client_connected(self, protocol: str) -> None:
        gauge, accepted = self._client(protocol)
        gauge.inc()
        accepted.inc()

    def client_disconnected(self, protocol: str) -> None:
        self._client(protocol)[0].dec()

    # -- backends and pools ---------------------------------------------------------------------------------------

    def backend_gauges(self, data_source: str) -> tuple[Gauge, Gauge]:
        """The (idle, busy) gauge children of a data source's pool; the pool calls inc()/dec() on them.

        Both series are created at 0, and the same pair is returned on every call, so a pool rebuilt on a
        configuration change keeps counting on the same series (the old pool must have given its counts back).
        """
        children = self._backend_children.get(data_source)
        if children is None:
            children = (self._backend_connections.labels(data_source, "idle"),
                        self._backend_connections.labels(data_source, "busy"))
            self._backend_children[data_source] = children
        return children

    def pool_wait(self, data_source: str, seconds: float) -> None:
        """Record how long a lease waited; only called when it had to wait."""
        self._pool_wait.labels(data_source).observe(seconds)

    def pool_timeout(self, data_source: str) -> None:
        self._pool_timeouts.labels(data_source).inc()

    def backend_connect_error(self, data_source: str) -> None:
        self._backend_connect_errors.labels(data_source).inc()

    # -- traffic governance ---------------------------------------------------------------------------------------

    def circuit_breaker_state(self, resource: str, state: int) -> None:
        """Set a breaker's state gauge (0 closed, 1 open, 2 half-open)."""
        self._breaker_state.labels(resource).set(state)

    def circuit_breaker_transition(self, resource: str, to: str, state: int) -> None:
        """Count a breaker's change to state `to` (``CLOSED``, ``OPEN``, ``HALF_OPEN``) and set its gauge."""
        self._breaker_transitions.labels(resource, to).inc()
        self._breaker_state.labels(resource).set(state)

    def circuit_breaker_removed(self, resource: str) -> None:
        """Drop a breaker's state gauge when its rule is gone, so no stale state is exported (counters stay)."""
        try:
            self._breaker_state.remove(resource)
        except KeyError:
            pass

    def rate_limit_row(self, resource: str) -> list[int]:
        """The [passed, rejected, queued] counts of a flow rule's resource, created at 0; the limiter keeps the
        list and increments it. The same list is returned on every call, so a rebuilt limiter counts on."""
        row = self._rate_stats.rows.get(resource)
        if row is None:
            row = self._rate_stats.rows[resource] = [0, 0, 0]
        return row

    def rate_limit_passed(self, resource: str) -> None:
        self.rate_limit_row(resource)[0] += 1

    def rate_limit_rejected(self, resource: str) -> None:
        self.rate_limit_row(resource)[1] += 1

    def rate_limit_queued(self, resource: str) -> None:
        self.rate_limit_row(resource)[2] += 1

    # -- configuration and cluster governance ---------------------------------------------------------------------

    def config_version(self, version: int) -> None:
        self._config_version.set(version)

    def config_error(self) -> None:
        """Count a configuration change that was refused."""
        self._config_errors.inc()

    def config_applied(self) -> None:
        """Count a configuration change that was applied."""
        self._config_applied.inc()

    def cluster_state(self, state: str) -> None:
        """Make `state` the current cluster state: its series 1, every state seen before 0."""
        self._cluster_states_seen.add(state)
        for seen in self._cluster_states_seen:
            self._cluster_state.labels(seen).set(1 if seen == state else 0)

    def compute_node_disabled(self, disabled: bool) -> None:
        self._compute_node_disabled.set(1 if disabled else 0)

    # -- exposition -----------------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format 0.0.4 (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
