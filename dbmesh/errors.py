"""One error hierarchy and one catalogue of stable codes, each mapped to MySQL and PostgreSQL error identities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A stable catalogue entry: the identity an error keeps across releases and protocols."""

    code: str  # stable dbmesh id, e.g. "DBM-1001"
    template: str  # str.format template for the message
    mysql_errno: int  # server-range MySQL error number (never 2000-2999 / 5000-5999: client-only ranges)
    mysql_sqlstate: str
    pg_sqlstate: str
    description: str


_CATALOGUE: dict[str, ErrorCode] = {}


def _entry(code: str, template: str, mysql_errno: int, mysql_sqlstate: str, pg_sqlstate: str, description: str) -> ErrorCode:
    entry = ErrorCode(code, template, mysql_errno, mysql_sqlstate, pg_sqlstate, description)
    if code in _CATALOGUE:  # pragma: no cover - guarded at import time
        raise RuntimeError(f"duplicate error code {code}")
    _CATALOGUE[code] = entry
    return entry


# Protocol (client sent something we cannot accept). MySQL 1158/08S01 is the server's own "error reading packets".
PROTOCOL_MALFORMED = _entry(
    "DBM-1001", "malformed packet: {detail}", 1158, "08S01", "08P01",
    "The client sent bytes that do not form a valid protocol message; the connection is closed.")
PROTOCOL_PACKET_TOO_LARGE = _entry(
    "DBM-1002", "got a packet bigger than the configured maximum of {limit} bytes", 1153, "08S01", "08P01",
    "A client packet exceeded dbmesh.limits.maxPacketSize.")
PROTOCOL_UNSUPPORTED_COMMAND = _entry(
    "DBM-1003", "unsupported command {command}", 1047, "08S01", "0A000",
    "The client used a protocol command dbmesh does not implement.")
PROTOCOL_BAD_SEQUENCE = _entry(
    "DBM-1004", "packets out of order: expected sequence id {expected}, got {got}", 1156, "08S01", "08P01",
    "A packet arrived with a wrong sequence id.")
PROTOCOL_UNKNOWN_STATEMENT = _entry(
    "DBM-1005", "unknown prepared statement handler ({stmt_id}) given to {command}", 1243, "HY000", "26000",
    "A prepared-statement command named a statement id this session never prepared.")
# Authentication and connection admission.
AUTH_ACCESS_DENIED = _entry(
    "DBM-1101", "Access denied for user '{user}'@'{host}' (using password: {using_password})", 1045, "28000", "28P01",
    "Wrong user or password.")
AUTH_TIMEOUT = _entry(
    "DBM-1102", "authentication not completed within {seconds} seconds", 1043, "08S01", "08006",
    "The client did not finish the handshake within dbmesh.limits.authTimeoutSeconds.")
AUTH_UNKNOWN_DATABASE = _entry(
    "DBM-1103", "Unknown database '{database}'", 1049, "42000", "3D000",
    "The client asked for a logical database that is not configured.")
AUTH_TOO_MANY_CONNECTIONS = _entry(
    "DBM-1104", "Too many connections (limit {limit})", 1040, "08004", "53300",
    "dbmesh.limits.maxConnections client connections are already open.")
AUTH_PLUGIN_UNSUPPORTED = _entry(
    "DBM-1105", "authentication plugin '{plugin}' is not supported", 1251, "08004", "28000",
    "The client or data source asked for an authentication method dbmesh does not implement.")
AUTH_TLS_REQUIRED = _entry(
    "DBM-1106", "{detail}", 1045, "28000", "28000",
    "Full authentication needs TLS or an RSA key exchange that the client did not perform.")
NO_DATABASE_SELECTED = _entry(
    "DBM-1107", "No database selected", 1046, "3D000", "3D000",
    "A statement needs a logical database and none is selected.")
# Backend (data source) trouble.
BACKEND_CONNECT_FAILED = _entry(
    "DBM-1201", "cannot connect to data source '{data_source}': {detail}", 1105, "HY000", "08001",
    "Opening a connection to a data source failed.")
BACKEND_LOST = _entry(
    "DBM-1202", "lost connection to data source '{data_source}' during a statement: {detail}", 1158, "08S01", "08006",
    "The data source connection broke while it was serving a statement; the statement's outcome is unknown.")
BACKEND_POOL_TIMEOUT = _entry(
    "DBM-1203", "no connection to data source '{data_source}' became free within {seconds} seconds (pool size {size})",
    1040, "08004", "53300",
    "The data source's pool was exhausted for longer than connectionTimeoutMilliseconds.")
BACKEND_REPLAY_FAILED = _entry(
    "DBM-1205", "could not restore this session's settings or prepared statements on a connection to data source "
    "'{data_source}': {detail}", 1105, "HY000", "08006",
    "Multiplexing moved the session to another connection and re-applying its state there failed.")
BACKEND_PROTOCOL = _entry(
    "DBM-1204", "data source '{data_source}' answered with an unexpected packet: {detail}", 1105, "HY000", "08P01",
    "A data source broke the protocol.")
# Session and statement.
SESSION_HISTORY_LOST = _entry(
    "DBM-1301", "{construct} refers to the previous statement, which did not run on this session's current data source "
    "connection (it was given to another session); run both statements in one transaction", 1105, "HY000", "55000",
    "Connection multiplexing reassigned the backend connection, so per-connection history is gone.")
SESSION_DATABASE_SWITCH_IN_TRANSACTION = _entry(
    "DBM-1302", "cannot switch to logical database '{database}' on another data source inside a transaction", 1105, "HY000",
    "25001", "USE of a database on another data source while a transaction or session state pins the connection.")
SESSION_SHUTTING_DOWN = _entry(
    "DBM-1303", "dbmesh is shutting down", 1053, "08S01", "57P01",
    "The server is draining and refuses new statements.")
UNKNOWN_THREAD = _entry(
    "DBM-1305", "Unknown thread id: {thread}", 1094, "HY000", "42704",
    "KILL named a connection id that is not a dbmesh client connection.")
STATEMENT_UNSUPPORTED = _entry(
    "DBM-1304", "{construct} is not supported: {detail}", 1235, "42000", "0A000",
    "A statement uses a construct dbmesh refuses rather than answer wrongly.")
SQL_SYNTAX = _entry(
    "DBM-1306", "You have an error in your SQL syntax: {detail}", 1064, "42000", "42601",
    "dbmesh could not parse a statement it must route (sharded logical databases parse every statement).")
# Sharding: routing, rewriting and merging across data sources.
SHARDING_NULL_VALUE = _entry(
    "DBM-1501", "sharding value of {table}.{column} cannot be NULL", 1048, "23000", "23502",
    "A statement gives a sharding column NULL (an INSERT without it, IS NULL, = NULL): no data node holds it.")
SHARDING_ALGORITHM_FAILED = _entry(
    "DBM-1502", "sharding algorithm {algorithm} failed for {table}: {detail}", 1105, "HY000", "22023",
    "A sharding algorithm could not map a value (wrong type, expression error, a value outside every range).")
SHARDING_RANGE_REFUSED = _entry(
    "DBM-1503", "range condition on {table}.{column} cannot be routed by {algorithm}: {detail}", 1235, "42000",
    "0A000", "An INLINE algorithm got a range condition without allow-range-query-with-inline-sharding.")
SHARDING_NO_ROUTE = _entry(
    "DBM-1504", "no data node of {table} matches the sharding value {value}", 1105, "HY000", "22023",
    "The sharding value maps to a table or data source that is not among the table's data nodes.")
SHARDING_COLUMN_UPDATE = _entry(
    "DBM-1505", "cannot update sharding column {table}.{column}: {detail}", 1235, "42000", "0A000",
    "An UPDATE sets a sharding column to a value that would move the row to another data node.")
SHARDING_UNSUPPORTED = _entry(
    "DBM-1506", "{construct} across shards is not supported (tables: {tables}): {detail} (DBM-1506)", 1235, "42000", "0A000",
    "dbmesh refuses a statement it cannot answer exactly across shards rather than return a wrong answer.")
MERGE_LIMIT_EXCEEDED = _entry(
    "DBM-1507", "merging the shard results needs more than {limit} rows in memory ({construct}); raise "
    "props.merge-max-rows-in-memory or add a sharding condition", 1105, "HY000", "54000",
    "A merge that must hold rows (hash GROUP BY, DISTINCT) exceeded its configured cap.")
KEY_GENERATE_FAILED = _entry(
    "DBM-1508", "key generator {generator} failed: {detail}", 1105, "HY000", "XX000",
    "A key generator could not produce a key (the clock moved backwards beyond the tolerated offset).")
# Governance: traffic rules, compute-node and cluster states, the registry. MySQL numbers 30001+ are dbmesh's own
# (HY000, as the clients expect for a vendor error); read-only keeps MySQL's own 1290 so frameworks that
# recognise --read-only refusals recognise this one.
CIRCUIT_OPEN = _entry(
    "DBM-1601", "circuit breaker for data source '{data_source}' is open ({detail}); retry after {retry_ms} ms",
    30001, "HY000", "57P03",
    "A circuit breaker tripped for the data source the statement needs; statements fail fast until a probe succeeds.")
RATE_LIMITED = _entry(
    "DBM-1602", "rate limit exceeded for {resource}: {detail}", 30002, "HY000", "53400",
    "A flow rule (QPS or concurrency) of the traffic rules rejected the statement.")
COMPUTE_NODE_DISABLED = _entry(
    "DBM-1603", "compute node '{node}' is disabled by an operator; connect to another dbmesh", 30003, "HY000", "57P03",
    "DISABLE COMPUTE NODE put this dbmesh out of service: every statement is refused until it is enabled again.")
CLUSTER_READ_ONLY = _entry(
    "DBM-1604", "the cluster is READ_ONLY: {statement} is refused", 1290, "HY000", "25006",
    "The cluster state is READ_ONLY, so statements that write are refused on every compute node.")
CLUSTER_UNAVAILABLE = _entry(
    "DBM-1605", "the cluster is UNAVAILABLE: statements are refused until an operator sets it back to OK", 30005,
    "HY000", "57P03", "The cluster state is UNAVAILABLE.")
GOVERNANCE_FAILED = _entry(
    "DBM-1606", "governance registry: {detail}", 30006, "HY000", "58000",
    "A change through the registry could not be made (ZooKeeper unreachable, a conflicting change, no such node).")
# Configuration.
CONFIG_INVALID = _entry(
    "DBM-1401", "{file}: {key}: {detail}", 1105, "HY000", "F0000",
    "A configuration file is invalid.")
# Unexpected: a bug in dbmesh. The message asks for a report rather than hiding the fault.
BUG = _entry(
    "DBM-1999", "[BUG] {detail}", 1105, "HY000", "XX000",
    "An internal error; please report it with the log line that carries the same text.")


def catalogue() -> dict[str, ErrorCode]:
    """Every error code, keyed by its stable id (a copy: the catalogue is fixed at import time)."""
    return dict(_CATALOGUE)


class DbMeshError(Exception):
    """Root of every error dbmesh raises on purpose; carries a catalogue entry and its message arguments."""

    layer = "dbmesh"

    def __init__(self, entry: ErrorCode, **args: Any) -> None:
        self.entry = entry
        self.args_map = args
        try:
            message = entry.template.format(**args)
        except (KeyError, IndexError):  # a wrong call site must not hide the real error
            message = f"{entry.template} {args!r}"
        self.message = message
        super().__init__(f"{entry.code} {message}")


class ProtocolError(DbMeshError):
    """The peer broke the wire protocol; the connection ends after the error is sent."""

    layer = "protocol"


class AuthError(DbMeshError):
    """Authentication or admission failed; the connection ends after the error is sent."""

    layer = "auth"


class BackendError(DbMeshError):
    """A data source could not be reached or broke during a statement."""

    layer = "backend"


class SessionError(DbMeshError):
    """A statement cannot run in the session's current state."""

    layer = "session"


class ConfigError(DbMeshError):
    """A configuration file or value is invalid; nothing starts half-configured."""

    layer = "config"

    def __init__(self, file: str, key: str, detail: str) -> None:
        super().__init__(CONFIG_INVALID, file=file, key=key, detail=detail)
        self.file = file
        self.key = key
        self.detail = detail


class InternalError(DbMeshError):
    """A [BUG]: an invariant broke. Rendered to clients as such, never as a bare traceback."""

    layer = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(BUG, detail=detail)
