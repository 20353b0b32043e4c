"""The configuration models: the frozen snapshot the server reads, and the YAML file shapes the loader validates.

Two layers, on purpose:

* The **snapshot** (`Config`, `Database`, `DataSource`, `PoolSettings`, `User`, ...) is what the rest of dbmesh
  uses. Names are Pythonic, units are explicit (`*_s` seconds, `*_ms` milliseconds), URLs are already parsed,
  defaults are filled in. Every model is frozen and every mapping is a read-only view, so one snapshot can be
  shared by all sessions and replaced atomically on reload.
* The **file shapes** (`GlobalYaml`, `DatabaseYaml`, ...) mirror ShardingSphere-Proxy's YAML keys exactly
  (camelCase, kebab-case props). They reject unknown keys, so a misspelt key is an error instead of a silently
  ignored setting. `GlobalYaml.model_json_schema()` gives a JSON schema of the files.

Passwords are plain `str` (code that authenticates needs them) but are excluded from `repr()`/`str()`,
because configs get logged.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WrapSerializer
from pydantic.alias_generators import to_camel

V = TypeVar("V")


def _freeze(value: Any) -> Any:
    """Deep-freeze plain YAML data: dicts become read-only views, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Inverse of `_freeze` for serialisation (model_dump / JSON)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# A read-only mapping field: validated as a Mapping, stored as a MappingProxyType (insertion order kept),
# serialised as a dict (pydantic would otherwise warn that a mappingproxy is not a dict).
FrozenMap = Annotated[
    Mapping[str, V],
    AfterValidator(MappingProxyType),
    WrapSerializer(lambda value, handler: handler(dict(value))),
]
# Arbitrary YAML data kept verbatim but deep-frozen (rule bodies, repository props).
FrozenData = Annotated[
    Mapping[str, Any],
    AfterValidator(_freeze),
    WrapSerializer(lambda value, handler: handler(_thaw(value))),
]

Port = Annotated[int, Field(ge=1, le=65535)]

MYSQL_AUTH_PLUGINS = ("mysql_native_password", "caching_sha2_password")
POSTGRESQL_AUTH_METHODS = ("scram-sha-256", "md5", "password")
AuthPlugin = Literal["mysql_native_password", "caching_sha2_password", "scram-sha-256", "md5", "password"]


class _Snapshot(BaseModel):
    """Base of the snapshot models: immutable, strict about keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------- snapshot


class PoolSettings(_Snapshot):
    """Connection pool of one data source (HikariCP's knobs, as ShardingSphere names them, in seconds)."""

    min_size: int = Field(default=1, ge=0, description="Connections kept open even when idle (minPoolSize).")
    max_size: int = Field(default=50, ge=1, description="Upper bound of open connections (maxPoolSize).")
    wait_timeout_s: float = Field(
        default=30.0, gt=0, description="How long a statement waits for a free pooled connection (connectionTimeoutMilliseconds).")
    idle_timeout_s: float = Field(
        default=60.0, ge=0, description="Idle connections above min_size are closed after this long; 0 = never (idleTimeoutMilliseconds).")
    max_lifetime_s: float = Field(
        default=1800.0, ge=0, description="A connection is retired after this long once idle; 0 = no limit (maxLifetimeMilliseconds).")
    health_check_interval_s: float = Field(
        default=30.0, ge=0, description="Idle connections are pinged this often; 0 disables the check (healthCheckIntervalMilliseconds).")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Limit for TCP connect plus handshake of a new backend connection (connectTimeoutMilliseconds).")


class DataSource(_Snapshot):
    """One physical database server (and database on it) that a logical database routes to."""

    name: str = Field(description="The data source name, the key under `dataSources:` (e.g. ds_0).")
    protocol: Literal["mysql", "postgresql"] = Field(description="Wire protocol spoken to the server.")
    host: str = Field(description="Server host name or IP address (IPv6 without brackets).")
    port: Port = Field(description="Server TCP port (3306/5432 when the URL has none).")
    database: str | None = Field(description="Physical database selected on connect; None when the URL names none.")
    username: str = Field(description="User dbmesh logs in as.")
    password: str = Field(default="", repr=False, description="Password for `username`; empty when none. Never shown in repr.")
    params: FrozenMap[str] = Field(
        default_factory=lambda: MappingProxyType({}), description="The URL's query parameters, in order (e.g. useSSL).")
    pool: PoolSettings = Field(default_factory=lambda: PoolSettings(), description="Connection pool settings.")


class Rule(_Snapshot):
    """A YAML-tagged rule (`!SHARDING`, `!READWRITE_SPLITTING`, ...) kept as written, deep-frozen."""

    kind: str = Field(description="The tag without '!', upper case as written (SHARDING, BROADCAST, ...).")
    body: FrozenData = Field(
        default_factory=lambda: MappingProxyType({}), description="The rule's mapping, read-only (lists become tuples).")


class Database(_Snapshot):
    """A logical database: what clients see and `USE`; backed by one or more data sources."""

    name: str = Field(description="The logical database name (databaseName).")
    data_sources: FrozenMap[DataSource] = Field(description="Data sources by name, in file order; never empty.")
    rules: tuple[Rule, ...] = Field(default=(), description="The rules of this database, in file order.")
    file: str = Field(description="The file this database was loaded from (for error messages).")

    @property
    def default_data_source(self) -> DataSource:
        """The first data source in the file: where statements go when no rule says otherwise."""
        return next(iter(self.data_sources.values()))


class User(_Snapshot):
    """A user allowed to log in to dbmesh (ShardingSphere `authority.users`)."""

    name: str = Field(description="User name, matched exactly (case-sensitive, as MySQL does).")
    host: str = Field(default="%", description="Host pattern: an exact host/IP, '%', or a MySQL LIKE pattern such as '192.168.%'.")
    password: str = Field(default="", repr=False, description="Plain-text password; never shown in repr.")
    auth_plugin: AuthPlugin = Field(
        default="mysql_native_password", description="Authentication method offered to this user's clients.")
    admin: bool = Field(default=False, description="ShardingSphere's `admin` flag, kept for distributed-SQL privileges.")

    def matches_host(self, client_host: str) -> bool:
        """True when `client_host` (an IP or name) falls under this user's host pattern, ignoring case."""
        return _host_rank(self.host, client_host) is not None


class ZooKeeperProps(_Snapshot):
    """The ZooKeeper registry of Cluster mode (ShardingSphere `mode.repository.props`)."""

    namespace: str = Field(default="governance_ds", description="Root znode under which dbmesh keeps its state.")
    server_lists: str = Field(description="Comma-separated host:port list (server-lists).")
    retry_interval_ms: int = Field(default=500, ge=0, description="Wait between reconnect attempts (retryIntervalMilliseconds).")
    max_retries: int = Field(default=3, ge=0, description="Reconnect attempts before giving up (maxRetries).")
    time_to_live_s: int = Field(default=60, ge=1, description="Lifetime of ephemeral nodes (timeToLiveSeconds).")
    operation_timeout_ms: int = Field(default=500, ge=1, description="Limit for one ZooKeeper call (operationTimeoutMilliseconds).")
    digest: str | None = Field(default=None, repr=False, description="'user:password' digest ACL credentials; never shown in repr.")


class Repository(_Snapshot):
    """A mode's persistence repository as written (type and raw props)."""

    type: str = Field(description="Repository type, e.g. ZooKeeper (Cluster) or JDBC (Standalone).")
    props: FrozenData = Field(
        default_factory=lambda: MappingProxyType({}), repr=False, description="Raw repository props (may hold a digest); not in repr.")


class Mode(_Snapshot):
    """How dbmesh keeps its metadata: alone, or shared through a registry with other instances."""

    type: Literal["Standalone", "Cluster"] = Field(default="Standalone", description="Standalone or Cluster.")
    repository: Repository | None = Field(default=None, description="The repository block as written, if any.")
    zookeeper: ZooKeeperProps | None = Field(default=None, description="Typed ZooKeeper settings; set exactly when type is Cluster.")
    overwrite: bool = Field(default=False, description="Cluster mode: local config overwrites the registry's on start.")


class Listener(_Snapshot):
    """A TCP address dbmesh listens on."""

    host: str = Field(description="Address to bind; 0.0.0.0 or :: for all interfaces.")
    port: Port = Field(description="TCP port, 1..65535.")


class TlsSettings(_Snapshot):
    """Frontend TLS for both protocols."""

    enabled: bool = Field(default=False, description="Offer TLS to clients (MySQL SSLRequest / PostgreSQL SSLRequest).")
    certificate_file: str | None = Field(
        default=None, description="PEM certificate chain, absolute path; None with enabled => a self-signed cert is made at start.")
    key_file: str | None = Field(default=None, description="PEM private key, absolute path; set exactly when certificate_file is.")


class SlowQueryLog(_Snapshot):
    """Where statements slower than a threshold are logged."""

    threshold_ms: int = Field(default=1000, ge=0, description="Statements taking at least this many milliseconds are logged.")
    path: str | None = Field(default=None, description="Absolute log file path; None => the 'dbmesh.slowlog' logger (stderr).")


class Limits(_Snapshot):
    """Resource limits that protect dbmesh from clients."""

    max_packet_size: int = Field(
        default=64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, description="Largest client packet/message accepted, bytes.")
    max_connections: int = Field(default=10000, ge=1, description="Most client connections open at once.")
    auth_timeout_seconds: float = Field(default=10.0, gt=0, description="A client must finish authentication within this.")
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0, description="On shutdown, running statements get this long.")


class ServerSettings(_Snapshot):
    """dbmesh's own settings (the `dbmesh:` block of global.yaml) with defaults filled in."""

    mysql: Listener = Field(
        default_factory=lambda: Listener(host="127.0.0.1", port=3307), description="MySQL protocol listener.")
    postgresql: Listener = Field(
        default_factory=lambda: Listener(host="127.0.0.1", port=5433), description="PostgreSQL protocol listener.")
    admin: Listener = Field(
        default_factory=lambda: Listener(host="127.0.0.1", port=9797), description="HTTP admin listener (/metrics).")
    tls: TlsSettings = Field(default_factory=lambda: TlsSettings(), description="Frontend TLS.")
    slow_query_log: SlowQueryLog = Field(default_factory=lambda: SlowQueryLog(), description="Slow query log.")
    limits: Limits = Field(default_factory=lambda: Limits(), description="Resource limits.")
    multiplexing: bool = Field(
        default=True, description="Share backend connections between idle sessions that hold no session state.")
    labels: tuple[str, ...] = Field(
        default=(), description="Labels of this compute node in the registry (SHOW COMPUTE NODES), e.g. zone or app.")


class Config(_Snapshot):
    """A complete, validated configuration snapshot loaded from one directory."""

    source_dir: str = Field(description="Absolute path of the directory this snapshot was loaded from.")
    mode: Mode = Field(default_factory=lambda: Mode(), description="Standalone or Cluster mode.")
    users: tuple[User, ...] = Field(description="Users allowed to log in, in file order; never empty.")
    privilege_type: Literal["ALL_PERMITTED"] = Field(
        default="ALL_PERMITTED", description="ShardingSphere privilege provider; only ALL_PERMITTED is implemented.")
    props: FrozenMap[object] = Field(
        default_factory=lambda: MappingProxyType({}), description="ShardingSphere props, every known prop with its default.")
    server: ServerSettings = Field(default_factory=lambda: ServerSettings(), description="dbmesh's own settings.")
    databases: FrozenMap[Database] = Field(
        default_factory=lambda: MappingProxyType({}), description="Logical databases by name, ordered by file name.")
    global_rules: tuple[Rule, ...] = Field(
        default=(), description="Global rules accepted from global.yaml (e.g. SQL_PARSER), kept for later use.")

    def find_user(self, name: str, client_host: str) -> User | None:
        """The user entry MySQL would pick for `name` connecting from `client_host`, or None.

        An exact host (or 'localhost' for a loopback client) wins, then the most specific wildcard pattern
        (most literal characters), then '%'.

        >>> cfg = Config(source_dir="/", users=(User(name="a", host="%"), User(name="a", host="10.0.%", password="x")))
        >>> cfg.find_user("a", "10.0.0.7").host, cfg.find_user("a", "192.0.2.1").host, cfg.find_user("b", "::1")
        ('10.0.%', '%', None)
        """
        best: tuple[tuple[int, int], User] | None = None
        for user in self.users:
            if user.name != name:
                continue
            rank = _host_rank(user.host, client_host)
            if rank is not None and (best is None or rank > best[0]):
                best = (rank, user)
        return best[1] if best else None


def _host_rank(pattern: str, client_host: str) -> tuple[int, int] | None:
    """How well a MySQL host pattern matches a client host; None if it does not. Higher is more specific."""
    pattern = pattern.lower()
    host = client_host.lower()
    if host.startswith("::ffff:") and "." in host:  # IPv4-mapped IPv6 address from a dual-stack socket
        host = host[len("::ffff:"):]
    if pattern == host:
        return (2, len(pattern))
    if pattern == "localhost":
        try:
            return (2, len(pattern)) if ipaddress.ip_address(host).is_loopback else None
        except ValueError:
            return None
    if pattern == "%":
        return (0, 0)
    if "%" in pattern or "_" in pattern:
        # MySQL LIKE: % = any run, _ = one character. fnmatch's '*' / '?' after escaping its own specials.
        glob = "".join({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(c, c) for c in pattern)
        if fnmatch.fnmatchcase(host, glob):
            # More literal characters = more specific: 192.168.1.% beats 192.168.% (MySQL sorts the same way).
            return (1, sum(c not in "%_" for c in pattern))
    return None


# ------------------------------------------------------------------------------------------- file shapes


class _Yaml(BaseModel):
    """Base of the YAML file shapes: camelCase keys as in ShardingSphere, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=False)


class YamlRepository(_Yaml):
    """`mode.repository`."""

    type: str = Field(description="ZooKeeper (Cluster) or JDBC (Standalone).")
    props: dict[str, Any] = Field(default_factory=dict, description="Repository props; checked per type.")


class YamlZooKeeperProps(_Yaml):
    """`mode.repository.props` for `type: ZooKeeper`."""

    namespace: str = Field(default="governance_ds", description="Root znode.")
    server_lists: str = Field(alias="server-lists", min_length=1, description="host:port[,host:port...].")
    retry_interval_milliseconds: int = Field(default=500, ge=0, description="Wait between reconnect attempts.")
    max_retries: int = Field(default=3, ge=0, description="Reconnect attempts.")
    time_to_live_seconds: int = Field(default=60, ge=1, description="Lifetime of ephemeral nodes.")
    operation_timeout_milliseconds: int = Field(default=500, ge=1, description="Limit for one ZooKeeper call.")
    digest: str | None = Field(default=None, description="'user:password' digest ACL credentials.")


class YamlMode(_Yaml):
    """`mode:`."""

    type: Literal["Standalone", "Cluster"] = Field(default="Standalone", description="Standalone or Cluster.")
    repository: YamlRepository | None = Field(default=None, description="Required for Cluster.")
    overwrite: bool = Field(default=False, description="Local config overwrites the registry's (ShardingSphere 5.1-5.3).")


class YamlUser(_Yaml):
    """One entry of `authority.users`."""

    user: str = Field(description="'name@host'; host defaults to %.")
    password: str | None = Field(default=None, description="Plain-text password; null = empty.")
    authentication_method_name: str | None = Field(
        default=None, description="An authenticator name from `authenticators:` or a method name (mysql_native_password, ...).")
    admin: bool = Field(default=False, description="ShardingSphere admin flag.")


class YamlAlgorithm(_Yaml):
    """A ShardingSphere typed SPI entry: `{type, props}`."""

    type: str = Field(description="The SPI type name.")
    props: dict[str, Any] = Field(default_factory=dict, description="SPI props.")


class YamlAuthority(_Yaml):
    """`authority:` (also the body of a global `!AUTHORITY` rule)."""

    users: list[YamlUser] = Field(default_factory=list, description="Users; none => root@% / root.")
    privilege: YamlAlgorithm | None = Field(default=None, description="Privilege provider; only ALL_PERMITTED.")
    authenticators: dict[str, YamlAlgorithm] = Field(default_factory=dict, description="Named authenticators.")
    default_authenticator: str | None = Field(default=None, description="Name of the authenticator for users without one.")


class YamlListener(_Yaml):
    """`dbmesh.listeners.<protocol>` / `dbmesh.admin`; omitted keys take the listener's default."""

    host: str | None = Field(default=None, min_length=1, description="Bind address.")
    port: Port | None = Field(default=None, description="TCP port.")


class YamlListeners(_Yaml):
    """`dbmesh.listeners`."""

    mysql: YamlListener = Field(default_factory=lambda: YamlListener(), description="Default 127.0.0.1:3307.")
    postgresql: YamlListener = Field(default_factory=lambda: YamlListener(), description="Default 127.0.0.1:5433.")


class YamlTls(_Yaml):
    """`dbmesh.tls`."""

    enabled: bool | None = Field(default=None, description="Default: props proxy-frontend-ssl-enabled, else false.")
    certificate_file: str | None = Field(default=None, description="PEM certificate; relative to the config directory.")
    key_file: str | None = Field(default=None, description="PEM private key; relative to the config directory.")


class YamlSlowQueryLog(_Yaml):
    """`dbmesh.slowQueryLog`."""

    threshold_milliseconds: int = Field(default=1000, ge=0, description="Threshold.")
    path: str | None = Field(default=None, description="Log file, relative to the config directory; null = stderr logger.")


class YamlLimits(_Yaml):
    """`dbmesh.limits`."""

    max_packet_size: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, description="Bytes.")
    max_connections: int | None = Field(
        default=None, ge=1, description="Default: props proxy-frontend-max-connections when > 0, else 10000.")
    auth_timeout_seconds: float = Field(default=10.0, gt=0, description="Seconds.")
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0, description="Seconds.")


class YamlDbMesh(_Yaml):
    """`dbmesh:` — dbmesh's own additions to global.yaml."""

    listeners: YamlListeners = Field(default_factory=lambda: YamlListeners(), description="Client listeners.")
    admin: YamlListener = Field(default_factory=lambda: YamlListener(), description="HTTP admin listener, default 127.0.0.1:9797.")
    tls: YamlTls = Field(default_factory=lambda: YamlTls(), description="Frontend TLS.")
    slow_query_log: YamlSlowQueryLog = Field(default_factory=lambda: YamlSlowQueryLog(), description="Slow query log.")
    limits: YamlLimits = Field(default_factory=lambda: YamlLimits(), description="Resource limits.")
    multiplexing: bool = Field(default=True, description="Share stateless backend connections between idle sessions.")
    labels: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Compute-node labels shown by SHOW COMPUTE NODES (Cluster mode).")


class YamlGlobal(_Yaml):
    """global.yaml. `rules` holds tagged global rules (legacy server.yaml shape: !AUTHORITY, !TRANSACTION, ...)."""

    mode: YamlMode = Field(default_factory=lambda: YamlMode(), description="Standalone or Cluster.")
    authority: YamlAuthority | None = Field(default=None, description="Users and privileges.")
    props: dict[str, Any] = Field(default_factory=dict, description="ShardingSphere props; unknown props are rejected.")
    rules: list[Any] = Field(default_factory=list, description="Tagged global rules.")
    transaction: dict[str, Any] | None = Field(default=None, description="ShardingSphere 5.2+ shape of the !TRANSACTION rule.")
    sql_parser: dict[str, Any] | None = Field(default=None, description="ShardingSphere 5.2+ shape of the !SQL_PARSER rule.")
    dbmesh: YamlDbMesh = Field(default_factory=lambda: YamlDbMesh(), description="dbmesh's own settings.")


class YamlDataSource(_Yaml):
    """One entry of `dataSources:` (ShardingSphere/HikariCP names)."""

    url: str | None = Field(default=None, description="JDBC or URI-style URL.")
    jdbc_url: str | None = Field(default=None, description="HikariCP's name for url.")
    username: str | None = Field(default=None, description="Required unless the URL carries user@.")
    password: str | None = Field(default=None, description="Null/omitted = empty.")
    data_source_class_name: str | None = Field(default=None, description="Java class; accepted and ignored.")
    driver_class_name: str | None = Field(default=None, description="Java class; accepted and ignored.")
    connection_timeout_milliseconds: int = Field(default=30000, gt=0, description="Wait for a pooled connection.")
    idle_timeout_milliseconds: int = Field(default=60000, ge=0, description="Idle connection lifetime; 0 = never closed.")
    max_lifetime_milliseconds: int = Field(default=1800000, ge=0, description="Connection lifetime; 0 = unlimited.")
    max_pool_size: int = Field(default=50, ge=1, description="Upper bound of connections.")
    min_pool_size: int = Field(default=1, ge=0, description="Connections kept open.")
    read_only: bool = Field(default=False, description="HikariCP readOnly; true is not supported yet.")
    custom_pool_props: dict[str, Any] = Field(
        default_factory=dict, description="HikariCP/JDBC driver tuning; accepted and ignored (no Java driver here).")
    health_check_interval_milliseconds: int = Field(default=30000, ge=0, description="dbmesh: idle ping period; 0 = off.")
    connect_timeout_milliseconds: int = Field(default=5000, gt=0, description="dbmesh: TCP connect + handshake limit.")


class YamlDatabase(_Yaml):
    """database-<name>.yaml."""

    database_name: str = Field(min_length=1, description="The logical database name.")
    data_sources: dict[str, YamlDataSource] = Field(min_length=1, description="Data sources by name, at least one.")
    rules: list[Any] = Field(default_factory=list, description="Tagged rules.")
