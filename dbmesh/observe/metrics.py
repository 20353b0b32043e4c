"""Prometheus metrics for dbmesh, registered on a registry the caller owns.

Every ``Metrics`` gets its own ``CollectorRegistry`` unless one is passed in: several servers in one process
(and every test) then keep separate counters instead of colliding on prometheus-client's global registry.

Label cardinality is bounded by configuration, never by traffic: ``database`` and ``data_source`` are configured
names, ``type`` is a statement kind from a fixed set chosen by the caller (``select``, ``insert``, ...), ``code``
is a catalogue id from :mod:`dbmesh.errors`. Callers must not pass SQL text or client addresses as labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

# The exposition format generate_latest() writes; the admin endpoint sends it as Content-Type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """All dbmesh metrics on one registry, with cached label children for the per-statement hot path."""

    __slots__ = (
        "_backend_children",
        "_backend_connect_errors",
        "_backend_connections",
        "_client_children",
        "_client_connections",
        "_client_connections_accepted",
        "_errors",
        "_pool_timeouts",
        "_pool_wait",
        "_statement_children",
        "_statement_duration",
        "_statement_errors",
        "_statements",
        "registry",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        statement_labels = ("database", "data_source", "type")
        self._statement_duration = Histogram(
            "dbmesh_statement_duration_seconds",
            "Time from receiving a statement to sending the last byte of its answer, per logical database, "
            "data source and statement type.",
            statement_labels, registry=r, buckets=STATEMENT_BUCKETS)
        self._statements = Counter(
            "dbmesh_statements_total", "Statements executed.", statement_labels, registry=r)
        self._statement_errors = Counter(
            "dbmesh_statement_errors_total",
            "Statements that ended in an error (raised by dbmesh or passed through from the data source).",
            statement_labels, registry=r)
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
        build_info = Gauge("dbmesh_build_info", "Always 1; the labels carry the dbmesh build.", ("version",), registry=r)
        build_info.labels(__version__).set(1)

        # Label tuple -> (duration child, count child, error child). Filled once per label set, read on every
        # statement; never evicted because the label space is bounded by configuration (see module docstring).
        self._statement_children: dict[tuple[str, str, str], tuple[Histogram, Counter, Counter]] = {}
        self._client_children: dict[str, tuple[Gauge, Counter]] = {}
        self._backend_children: dict[str, tuple[Gauge, Gauge]] = {}

    # -- statements (hot path) ------------------------------------------------------------------------------------

    def observe_statement(self, database: str, data_source: str, stmt_type: str, seconds: float,
                          error: bool = False) -> None:
        """Record one finished statement: one dict lookup, one observe, one or two increments."""
        key = (database, data_source, stmt_type)
        children = self._statement_children.get(key)
        if children is None:
            children = self._statement_children_for(key)
        children[0].observe(seconds)
        children[1].inc()
        if error:
            children[2].inc()

    def _statement_children_for(self, key: tuple[str, str, str]) -> tuple[Histogram, Counter, Counter]:
        # The error child is created with the others so its series exists at 0 before the first error:
        # rate() and ratio queries then work from the start instead of seeing a missing series.
        children = (
            self._statement_duration.labels(*key),
            self._statements.labels(*key),
            self._statement_errors.labels(*key),
        )
        self._statement_children[key] = children
        return children

    def statement_children(self, database: str, data_source: str,
                           stmt_type: str) -> tuple[Histogram, Counter, Counter]:
        """The cached (duration, count, error) children for a label set; the same objects on every call."""
        key = (database, data_source, stmt_type)
        children = self._statement_children.get(key)
        return children if children is not None else self._statement_children_for(key)

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

    # -- exposition -----------------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format 0.0.4 (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
