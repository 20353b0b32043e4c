"""dbmesh.config: good directories load into exact values; every kind of mistake is one precise ConfigError."""

from __future__ import annotations

import doctest
import textwrap
from pathlib import Path

import pydantic
import pytest

import dbmesh.config.loader
import dbmesh.config.models
import dbmesh.config.urls
from dbmesh.config import Config, Database, DataSource, PoolSettings, User, load_config, parse_url
from dbmesh.config.loader import RULE_VALIDATORS, RuleContext
from dbmesh.config.models import Rule
from dbmesh.config.urls import UrlError
from dbmesh.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD_DS = """\
databaseName: demo
dataSources:
  ds_0:
    url: jdbc:mysql://127.0.0.1:3306/demo_ds_0?serverTimezone=UTC&useSSL=false
    username: root
    password: ""
"""


def make_dir(tmp_path: Path, **files: str) -> Path:
    """Write a config directory; keyword names use '_' for '-' and '__' for '.' (database_demo__yaml)."""
    for name, text in files.items():
        (tmp_path / name.replace("__", ".").replace("_", "-")).write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def load_error(tmp_path: Path, **files: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(make_dir(tmp_path, **files))
    return info.value


# ------------------------------------------------------------------------------------------ good configs


def test_defaults_without_global_yaml(tmp_path: Path) -> None:
    cfg = load_config(tmp_path)
    assert cfg.source_dir == str(tmp_path.resolve())
    assert cfg.mode.type == "Standalone" and cfg.mode.zookeeper is None
    assert cfg.users == (User(name="root", host="%", password="root", auth_plugin="mysql_native_password"),)
    assert dict(cfg.databases) == {}
    s = cfg.server
    assert (s.mysql.host, s.mysql.port) == ("127.0.0.1", 3307)
    assert (s.postgresql.host, s.postgresql.port) == ("127.0.0.1", 5433)
    assert (s.admin.host, s.admin.port) == ("127.0.0.1", 9797)
    assert (s.tls.enabled, s.tls.certificate_file, s.tls.key_file) == (False, None, None)
    assert (s.slow_query_log.threshold_ms, s.slow_query_log.path) == (1000, None)
    assert (s.limits.max_packet_size, s.limits.max_connections) == (67108864, 10000)
    assert (s.limits.auth_timeout_seconds, s.limits.shutdown_timeout_seconds) == (10, 30)
    assert s.multiplexing is True
    assert cfg.props["sql-show"] is False and cfg.props["max-connections-size-per-query"] == 1
    assert cfg.props["proxy-mysql-default-version"] is None


def test_empty_global_yaml_is_all_defaults(tmp_path: Path) -> None:
    cfg = load_config(make_dir(tmp_path, global__yaml="# nothing\n"))
    assert cfg.users[0].name == "root" and cfg.server.mysql.port == 3307


def test_full_config_loads_exact_values(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "server.pem").write_text("x")
    (tmp_path / "certs" / "server.key").write_text("x")
    cfg = load_config(make_dir(
        tmp_path,
        global__yaml="""\
            mode:
              type: Cluster
              repository:
                type: ZooKeeper
                props:
                  namespace: dbmesh_ns
                  server-lists: zk1:2181,zk2:2181
                  retryIntervalMilliseconds: 100
                  maxRetries: 5
                  timeToLiveSeconds: 30
                  operationTimeoutMilliseconds: 200
                  digest: "u:zksecret"
            authority:
              users:
                - user: root@%
                  password: root
                - user: app@127.0.0.1
                  password: secret
                  authenticationMethodName: caching_sha2_password
                - user: pg
                  password: pgpw
                  authenticationMethodName: scram
                - user: nopw@10.0.%
              authenticators:
                scram: {type: SCRAM_SHA256}
                native: {type: MYSQL_NATIVE_PASSWORD}
              defaultAuthenticator: native
              privilege:
                type: ALL_PERMITTED
            props:
              sql-show: "true"
              kernel-executor-size: 16
              proxy-mysql-default-version: 8.0
            dbmesh:
              listeners:
                mysql: {host: 0.0.0.0, port: 13306}
                postgresql: {port: 15432}
              admin: {host: 0.0.0.0, port: 19797}
              tls: {enabled: true, certificateFile: certs/server.pem, keyFile: certs/server.key}
              slowQueryLog: {thresholdMilliseconds: 250, path: logs/slow.log}
              limits: {maxPacketSize: 1048576, maxConnections: 500, authTimeoutSeconds: 3, shutdownTimeoutSeconds: 5}
              multiplexing: false
            """,
        database_b__yaml="""\
            databaseName: shop
            dataSources:
              primary:
                jdbcUrl: postgresql://shopper:urlpw@[::1]:6432/shop?sslmode=disable
                dataSourceClassName: com.zaxxer.hikari.HikariDataSource
                driverClassName: org.postgresql.Driver
                connectionTimeoutMilliseconds: 2500
                idleTimeoutMilliseconds: 0
                maxLifetimeMilliseconds: 600000
                maxPoolSize: 8
                minPoolSize: 0
                healthCheckIntervalMilliseconds: 0
                connectTimeoutMilliseconds: 1500
                customPoolProps: {cachePrepStmts: true}
              replica:
                url: postgres://replica.internal/shop
                username: ro
                password: ~
            """,
        database_a__yaml=GOOD_DS,
    ))
    assert cfg.mode.type == "Cluster"
    zk = cfg.mode.zookeeper
    assert zk is not None
    assert (zk.namespace, zk.server_lists, zk.retry_interval_ms, zk.max_retries, zk.time_to_live_s,
            zk.operation_timeout_ms, zk.digest) == ("dbmesh_ns", "zk1:2181,zk2:2181", 100, 5, 30, 200, "u:zksecret")
    assert "zksecret" not in repr(cfg) and "zksecret" not in str(cfg.mode)

    assert [(u.name, u.host, u.password, u.auth_plugin) for u in cfg.users] == [
        ("root", "%", "root", "mysql_native_password"),
        ("app", "127.0.0.1", "secret", "caching_sha2_password"),
        ("pg", "%", "pgpw", "scram-sha-256"),
        ("nopw", "10.0.%", "", "mysql_native_password"),
    ]
    assert cfg.props["sql-show"] is True
    assert cfg.props["kernel-executor-size"] == 16
    assert cfg.props["proxy-mysql-default-version"] == "8.0"

    s = cfg.server
    assert (s.mysql.host, s.mysql.port, s.postgresql.host, s.postgresql.port) == ("0.0.0.0", 13306, "127.0.0.1", 15432)
    assert (s.admin.host, s.admin.port) == ("0.0.0.0", 19797)
    assert s.tls.enabled and s.tls.certificate_file == str(tmp_path.resolve() / "certs" / "server.pem")
    assert s.tls.key_file == str(tmp_path.resolve() / "certs" / "server.key")
    assert s.slow_query_log.threshold_ms == 250
    assert s.slow_query_log.path == str(tmp_path.resolve() / "logs" / "slow.log")
    assert (s.limits.max_packet_size, s.limits.max_connections, s.limits.auth_timeout_seconds,
            s.limits.shutdown_timeout_seconds) == (1048576, 500, 3, 5)
    assert s.multiplexing is False

    # Ordered by file name (database-a before database-b), not by databaseName.
    assert list(cfg.databases) == ["demo", "shop"]
    demo = cfg.databases["demo"]
    assert demo.file == "database-a.yaml" and demo.rules == ()
    assert demo.default_data_source == DataSource(
        name="ds_0", protocol="mysql", host="127.0.0.1", port=3306, database="demo_ds_0", username="root",
        password="", params={"serverTimezone": "UTC", "useSSL": "false"}, pool=PoolSettings(
            min_size=1, max_size=50, wait_timeout_s=30, idle_timeout_s=60, max_lifetime_s=1800,
            health_check_interval_s=30, connect_timeout_s=5))
    shop = cfg.databases["shop"]
    assert list(shop.data_sources) == ["primary", "replica"]
    primary = shop.default_data_source
    assert primary.name == "primary"
    assert (primary.protocol, primary.host, primary.port, primary.database) == ("postgresql", "::1", 6432, "shop")
    assert (primary.username, primary.password, dict(primary.params)) == ("shopper", "urlpw", {"sslmode": "disable"})
    assert primary.pool == PoolSettings(min_size=0, max_size=8, wait_timeout_s=2.5, idle_timeout_s=0,
                                        max_lifetime_s=600, health_check_interval_s=0, connect_timeout_s=1.5)
    replica = shop.data_sources["replica"]
    assert (replica.host, replica.port, replica.username, replica.password) == ("replica.internal", 5432, "ro", "")


def test_sharding_sphere_props_feed_dbmesh_defaults(tmp_path: Path) -> None:
    cfg = load_config(make_dir(tmp_path, global__yaml="""\
        props:
          proxy-default-port: 3310
          proxy-frontend-ssl-enabled: true
          proxy-frontend-max-connections: 42
        """))
    assert cfg.server.mysql.port == 3310 and cfg.server.postgresql.port == 5433
    assert cfg.server.tls.enabled is True and cfg.server.limits.max_connections == 42
    pg = load_config(make_dir(tmp_path, global__yaml="""\
        props: {proxy-default-port: 6543, proxy-frontend-database-protocol-type: PostgreSQL}
        dbmesh: {limits: {maxConnections: 7}}
        """))
    assert (pg.server.mysql.port, pg.server.postgresql.port, pg.server.limits.max_connections) == (3307, 6543, 7)


def test_legacy_authority_rule_and_accepted_global_rules(tmp_path: Path) -> None:
    cfg = load_config(make_dir(tmp_path, global__yaml="""\
        rules:
          - !AUTHORITY
            users: [{user: old@%, password: pw}]
            privilege: {type: ALL_PERMITTED}
          - !SQL_PARSER
            sqlCommentParseEnabled: true
          - !TRANSACTION
            defaultType: LOCAL
        """))
    assert [(u.name, u.host) for u in cfg.users] == [("old", "%")]
    assert [r.kind for r in cfg.global_rules] == ["SQL_PARSER", "TRANSACTION"]
    assert cfg.global_rules[0].body["sqlCommentParseEnabled"] is True


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    cfg = load_config(make_dir(tmp_path, database_demo__yaml="""\
        databaseName: demo
        dataSources:
          ds_0: &common
            url: mysql://db0/x
            username: u
            maxPoolSize: 4
          ds_1:
            <<: *common
            url: mysql://db1/x
        """))
    ds = cfg.databases["demo"].data_sources
    assert (ds["ds_1"].host, ds["ds_1"].pool.max_size) == ("db1", 4)


def test_rules_examples_load() -> None:
    examples = sorted(p for p in (REPO / "rules").iterdir() if p.is_dir())
    assert examples, "rules/ must hold example configuration directories"
    for example in examples:
        cfg = load_config(example)
        assert cfg.users
    cfg = load_config(REPO / "rules" / "single-mysql")
    demo = cfg.databases["demo"]
    assert demo.name == "demo"
    assert (demo.default_data_source.host, demo.default_data_source.port) == ("127.0.0.1", 3306)
    assert cfg.find_user("root", "203.0.113.9") is not None


def test_docstring_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # examples name rules/single-mysql relative to the repository
    for module in (dbmesh.config, dbmesh.config.urls, dbmesh.config.models, dbmesh.config.loader):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


# --------------------------------------------------------------------------------------- immutability


def test_everything_is_immutable(tmp_path: Path) -> None:
    cfg = load_config(make_dir(tmp_path, database_demo__yaml=GOOD_DS))
    db = cfg.databases["demo"]
    ds = db.default_data_source
    with pytest.raises(pydantic.ValidationError):
        cfg.mode = cfg.mode  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        ds.port = 1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        ds.pool.max_size = 1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        cfg.server.mysql.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.databases["x"] = db  # type: ignore[index]
    with pytest.raises(TypeError):
        db.data_sources["x"] = ds  # type: ignore[index]
    with pytest.raises(TypeError):
        ds.params["useSSL"] = "true"  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.props["sql-show"] = True  # type: ignore[index]
    with pytest.raises(AttributeError):
        cfg.users.append(cfg.users[0])  # type: ignore[attr-defined]
    rule = Rule(kind="X", body={"a": [1, {"b": 2}]})
    assert rule.body["a"] == (1, {"b": 2}) and isinstance(rule.body["a"], tuple)
    with pytest.raises(TypeError):
        rule.body["a"][1]["b"] = 3
    assert rule.model_dump() == {"kind": "X", "body": {"a": [1, {"b": 2}]}}


def test_models_reject_unknown_fields() -> None:
    with pytest.raises(pydantic.ValidationError):
        User(name="a", colour="red")  # type: ignore[call-arg]


def test_passwords_not_in_repr_or_str(tmp_path: Path) -> None:
    cfg = load_config(make_dir(
        tmp_path,
        global__yaml="authority: {users: [{user: a@%, password: S3cretUser}]}\n",
        database_demo__yaml=GOOD_DS.replace('password: ""', "password: S3cretDs"),
    ))
    ds = cfg.databases["demo"].default_data_source
    assert ds.password == "S3cretDs" and cfg.users[0].password == "S3cretUser"
    for text in (repr(cfg), str(cfg), repr(ds), str(ds), repr(cfg.users[0]), str(cfg.databases)):
        assert "S3cret" not in text
    assert "S3cret" not in repr(parse_url("mysql://u:S3cretUrl@h/db"))


def test_every_field_is_documented() -> None:
    for name in dir(dbmesh.config.models):
        model = getattr(dbmesh.config.models, name)
        if isinstance(model, type) and issubclass(model, pydantic.BaseModel) and model.__module__ == "dbmesh.config.models":
            assert model.__doc__, name
            for field_name, info in model.model_fields.items():
                assert info.description, f"{name}.{field_name}"


# ------------------------------------------------------------------------------------------ find_user


def test_find_user_host_matching() -> None:
    users = (
        User(name="app", host="%", password="any"),
        User(name="app", host="192.168.%", password="lan"),
        User(name="app", host="192.168.1.%", password="subnet"),
        User(name="app", host="192.168.1.10", password="exact"),
        User(name="admin", host="localhost", password="local"),
        User(name="Bob", host="10.0.0._", password="bob"),
    )
    cfg = Config(source_dir="/", users=users)

    def pw(name: str, host: str) -> str | None:
        user = cfg.find_user(name, host)
        return user.password if user else None

    assert pw("app", "192.168.1.10") == "exact"
    assert pw("app", "192.168.1.11") == "subnet"
    assert pw("app", "192.168.2.1") == "lan"
    assert pw("app", "8.8.8.8") == "any"
    assert pw("app", "::ffff:192.168.1.10") == "exact"
    assert pw("admin", "127.0.0.1") == "local"
    assert pw("admin", "::1") == "local"
    assert pw("admin", "10.1.1.1") is None
    assert pw("Bob", "10.0.0.7") == "bob"
    assert pw("Bob", "10.0.0.77") is None
    assert pw("bob", "10.0.0.7") is None  # user names are case-sensitive
    assert pw("nobody", "127.0.0.1") is None


# ------------------------------------------------------------------------------------------------ URLs


@pytest.mark.parametrize(("url", "expected"), [
    ("jdbc:mysql://h/db", ("mysql", "h", 3306, "db")),
    ("JDBC:MySQL://h:3310/", ("mysql", "h", 3310, None)),
    ("jdbc:mariadb://h", ("mysql", "h", 3306, None)),
    ("mysql://u:p@h:1/db%20x", ("mysql", "h", 1, "db x")),
    ("jdbc:postgresql://h/db?currentSchema=s", ("postgresql", "h", 5432, "db")),
    ("postgresql://[2001:db8::1]:6000/db", ("postgresql", "2001:db8::1", 6000, "db")),
    ("postgres://h/db", ("postgresql", "h", 5432, "db")),
])
def test_parse_url(url: str, expected: tuple[str, str, int, str | None]) -> None:
    u = parse_url(url)
    assert (u.protocol, u.host, u.port, u.database) == expected


@pytest.mark.parametrize(("url", "fragment"), [
    ("", "empty"),
    ("127.0.0.1:3306/db", "must look like"),
    ("jdbc:oracle://h/db", "unsupported URL scheme"),
    ("jdbc:mysql://h:99999/db", "port"),
    ("jdbc:mysql://h:0/db", "outside 1..65535"),
    ("jdbc:mysql://h:abc/db", "bad port"),
    ("jdbc:mysql://h1,h2/db", "several hosts"),
    ("jdbc:mysql:///db", "no host"),
    ("jdbc:mysql://h/a/b", "contains '/'"),
])
def test_parse_url_errors(url: str, fragment: str) -> None:
    with pytest.raises(UrlError, match=fragment):
        parse_url(url)


# -------------------------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(("files", "file", "key", "detail"), [
    # unknown keys, at every level
    ({"global.yaml": "bogus: 1\n"}, "global.yaml", "bogus", "unknown key 'bogus' (expected one of: mode, authority"),
    ({"global.yaml": "mode: {type: Standalone, colour: red}\n"}, "global.yaml", "mode.colour", "unknown key"),
    ({"global.yaml": "authority: {users: [{user: a, password: b, pasword: c}]}\n"},
     "global.yaml", "authority.users[0].pasword", "unknown key 'pasword' (did you mean 'password'?)"),
    ({"global.yaml": "dbmesh: {listeners: {mysql: {prot: 1}}}\n"}, "global.yaml", "dbmesh.listeners.mysql.prot",
     "did you mean 'port'?"),
    ({"global.yaml": "dbmesh: {limits: {maxPackets: 1}}\n"}, "global.yaml", "dbmesh.limits.maxPackets", "unknown key"),
    ({"global.yaml": "dbmesh: {limits: {zzz: 1}}\n"}, "global.yaml", "dbmesh.limits.zzz",
     "(expected one of: maxPacketSize, maxConnections, authTimeoutSeconds, shutdownTimeoutSeconds)"),
    ({"global.yaml": "dbmesh: {tls: {certFile: x}}\n"}, "global.yaml", "dbmesh.tls.certFile", "certificateFile"),
    ({"database-demo.yaml": GOOD_DS + "extra: 1\n"}, "database-demo.yaml", "extra", "unknown key 'extra'"),
    ({"database-demo.yaml": GOOD_DS + "    maxPoolSzie: 3\n"}, "database-demo.yaml", "dataSources.ds_0.maxPoolSzie",
     "maxPoolSize"),
    # bad values
    ({"global.yaml": "dbmesh: {listeners: {mysql: {port: 70000}}}\n"}, "global.yaml", "dbmesh.listeners.mysql.port",
     "70000"),
    ({"global.yaml": "dbmesh: {admin: {port: 0}}\n"}, "global.yaml", "dbmesh.admin.port", "got 0"),
    ({"global.yaml": "dbmesh: {listeners: {postgresql: {port: abc}}}\n"}, "global.yaml",
     "dbmesh.listeners.postgresql.port", "'abc'"),
    ({"global.yaml": "mode: {type: Distributed}\n"}, "global.yaml", "mode.type", "Distributed"),
    ({"global.yaml": "mode: {type: Cluster}\n"}, "global.yaml", "mode.repository", "needs a repository"),
    ({"global.yaml": "mode: {type: Cluster, repository: {type: Etcd}}\n"}, "global.yaml", "mode.repository.type",
     "'Etcd' is not supported"),
    ({"global.yaml": "mode: {type: Cluster, repository: {type: ZooKeeper, props: {namespace: x}}}\n"},
     "global.yaml", "mode.repository.props.server-lists", "required key is missing"),
    ({"global.yaml": "dbmesh: {limits: {maxPacketSize: 10}}\n"}, "global.yaml", "dbmesh.limits.maxPacketSize", "1024"),
    ({"global.yaml": "dbmesh: {tls: {enabled: true, certificateFile: a.pem}}\n"}, "global.yaml", "dbmesh.tls.keyFile",
     "together"),
    ({"global.yaml": "dbmesh: {tls: {enabled: true, certificateFile: a.pem, keyFile: a.key}}\n"}, "global.yaml",
     "dbmesh.tls.certificateFile", "file not found"),
    ({"global.yaml": "props: {sql-shw: true}\n"}, "global.yaml", "props.sql-shw", "unknown prop 'sql-shw' (did you mean 'sql-show'?)"),
    ({"global.yaml": "props: {sql-show: maybe}\n"}, "global.yaml", "props.sql-show", "'maybe'"),
    ({"global.yaml": "props: {max-connections-size-per-query: 0}\n"}, "global.yaml",
     "props.max-connections-size-per-query", "at least 1"),
    ({"global.yaml": "authority: {users: [{user: '@h', password: x}]}\n"}, "global.yaml", "authority.users[0].user",
     "empty"),
    ({"global.yaml": "authority: {users: [{user: a, password: x}, {user: a@%, password: y}]}\n"}, "global.yaml",
     "authority.users[1].user", "defined twice"),
    ({"global.yaml": "authority: {users: [{user: a, password: x, authenticationMethodName: kerberos}]}\n"},
     "global.yaml", "authority.users[0].authenticationMethodName", "'kerberos'"),
    ({"global.yaml": "authority: {users: [{user: a}], defaultAuthenticator: nope}\n"}, "global.yaml",
     "authority.defaultAuthenticator", "not a key of authenticators"),
    ({"global.yaml": "authority: {users: [{user: a}], privilege: {type: DATABASE_PERMITTED}}\n"}, "global.yaml",
     "authority.privilege.type", "DATABASE_PERMITTED"),
    ({"global.yaml": "rules: [!TRANSACTION {defaultType: XA}]\n"}, "global.yaml", "rules[0].defaultType", "'XA'"),
    ({"global.yaml": "rules: [!GLOBAL_CLOCK {}]\n"}, "global.yaml", "rules[0]",
     "global rule !GLOBAL_CLOCK is not supported by this version of dbmesh"),
    ({"database-demo.yaml": GOOD_DS.replace("jdbc:mysql://127.0.0.1:3306", "jdbc:mysql://127.0.0.1:99999")},
     "database-demo.yaml", "dataSources.ds_0.url", "99999"),
    ({"database-demo.yaml": GOOD_DS.replace("jdbc:mysql:", "jdbc:sqlserver:")},
     "database-demo.yaml", "dataSources.ds_0.url", "unsupported URL scheme 'jdbc:sqlserver'"),
    ({"database-demo.yaml": "databaseName: demo\ndataSources: {ds_0: {username: u}}\n"},
     "database-demo.yaml", "dataSources.ds_0.url", "required key is missing"),
    ({"database-demo.yaml": "databaseName: demo\ndataSources: {ds_0: {url: 'mysql://h/d', jdbcUrl: 'mysql://h/d', username: u}}\n"},
     "database-demo.yaml", "dataSources.ds_0.jdbcUrl", "not both"),
    ({"database-demo.yaml": "databaseName: demo\ndataSources: {ds_0: {url: 'mysql://h/d'}}\n"},
     "database-demo.yaml", "dataSources.ds_0.username", "required"),
    ({"database-demo.yaml": GOOD_DS + "    minPoolSize: 9\n    maxPoolSize: 3\n"}, "database-demo.yaml",
     "dataSources.ds_0.minPoolSize", "minPoolSize 9 is larger than maxPoolSize 3"),
    ({"database-demo.yaml": GOOD_DS + "    maxPoolSize: 0\n"}, "database-demo.yaml", "dataSources.ds_0.maxPoolSize",
     "greater than or equal to 1, got 0"),
    ({"database-demo.yaml": GOOD_DS + "    connectionTimeoutMilliseconds: -5\n"}, "database-demo.yaml",
     "dataSources.ds_0.connectionTimeoutMilliseconds", "-5"),
    ({"database-demo.yaml": GOOD_DS + "    readOnly: true\n"}, "database-demo.yaml", "dataSources.ds_0.readOnly",
     "not supported"),
    ({"database-demo.yaml": "databaseName: demo\ndataSources: {}\n"}, "database-demo.yaml", "dataSources",
     "at least 1"),
    ({"database-demo.yaml": "databaseName: demo\n"}, "database-demo.yaml", "dataSources", "required key is missing"),
    # rules
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !READWRITE_SPLITTING\n  dataSourceGroups: {}\n"},
     "database-demo.yaml", "rules[0]", "rule !READWRITE_SPLITTING is not supported by this version of dbmesh"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !SHARDING\n  tabels: {}\n"}, "database-demo.yaml",
     "rules[0].tabels", "unknown key 'tabels' (did you mean 'tables'?)"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !SHARDING\n  tables: {t: {actualDataNodes: ds_9.t}}\n"},
     "database-demo.yaml", "rules[0].tables.t.actualDataNodes", "'ds_9', which is not in dataSources (ds_0)"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !SHARDING\n  auditors: {a: {type: DML_SHARDING_CONDITIONS}}\n"},
     "database-demo.yaml", "rules[0].auditors", "not supported by this version of dbmesh"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !SHARDING\n  tables: {t: {tableStrategy: {standard: "
      "{shardingColumn: id, shardingAlgorithmName: nope}}}}\n"}, "database-demo.yaml",
     "rules[0].tables.t.tableStrategy.standard.shardingAlgorithmName", "'nope' is not defined"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !BROADCAST\n  tables: [t, T]\n"}, "database-demo.yaml",
     "rules[0].tables[1]", "listed twice"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !SHARDING\n  tables: {t: {}}\n- !BROADCAST\n  tables: [T]\n"},
     "database-demo.yaml", "rules[1].tables[0]", "both a broadcast table and a sharding table (rules[0].tables.t)"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- !SINGLE\n  tables: [ds_1.t_user]\n"}, "database-demo.yaml",
     "rules[0].tables[0]", "'ds_1', which is not in dataSources"),
    ({"global.yaml": "props: {merge-max-rows-in-memory: 0}\n"}, "global.yaml", "props.merge-max-rows-in-memory",
     "at least 1"),
    ({"database-demo.yaml": GOOD_DS + "rules:\n- tables: {}\n"}, "database-demo.yaml", "rules[0]",
     "YAML-tagged mapping"),
    # YAML shape
    ({"database-demo.yaml": "databaseName: demo\ndataSources:\n  ds_0: [\n"}, "database-demo.yaml", "line ",
     "invalid YAML"),
    ({"global.yaml": "mode:\n  type: Standalone\n type: x\n"}, "global.yaml", "line 3, column 2", "invalid YAML"),
    ({"global.yaml": "- a\n- b\n"}, "global.yaml", "(file)", "must be a mapping"),
    ({"database-demo.yaml": "just a string\n"}, "database-demo.yaml", "(file)", "must be a mapping"),
    ({"database-demo.yaml": ""}, "database-demo.yaml", "(file)", "empty"),
    ({"database-demo.yaml": GOOD_DS + "databaseName: again\n"}, "database-demo.yaml", "line 7, column 1",
     "duplicate key 'databaseName'"),
    ({"database-demo.yaml": "dataSources: {ds_0: {url: 'mysql://h/d', username: u}}\n"}, "database-demo.yaml",
     "databaseName", "required key is missing"),
    ({"database-demo.yaml": "databaseName: ''\ndataSources: {ds_0: {url: 'mysql://h/d', username: u}}\n"},
     "database-demo.yaml", "databaseName", "at least 1 character"),
    ({"database-demo.yaml": "databaseName: '  '\ndataSources: {ds_0: {url: 'mysql://h/d', username: u}}\n"},
     "database-demo.yaml", "databaseName", "blank"),
    ({"database-a.yaml": GOOD_DS, "database-b.yaml": GOOD_DS}, "database-b.yaml", "databaseName",
     "'demo' is already defined in database-a.yaml"),
])
def test_mistakes_give_one_precise_config_error(
        tmp_path: Path, files: dict[str, str], file: str, key: str, detail: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    err = info.value
    assert err.file == file
    assert err.key.startswith(key), err.key
    assert detail in err.detail, err.detail
    assert f"{file}: {err.key}: " in str(err)
    assert str(err).startswith("DBM-1401 ")


def test_error_mentions_line_number(tmp_path: Path) -> None:
    err = load_error(tmp_path, database_demo__yaml=GOOD_DS + "    maxPoolSize: 0\n")
    assert err.detail.endswith("(line 7)")


def test_password_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    err = load_error(tmp_path, database_demo__yaml=GOOD_DS.replace('password: ""', "password: [S3cret]"))
    assert err.key == "dataSources.ds_0.password" and "S3cret" not in str(err)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        load_config(tmp_path / "missing")


def test_other_files_are_ignored(tmp_path: Path) -> None:
    cfg = load_config(make_dir(tmp_path, README__md="# notes\n", database_demo__yml=GOOD_DS))
    assert list(cfg.databases) == ["demo"]


def test_rule_validator_registry_plugs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, list[str]]] = []

    def validate_single(rule: Rule, ctx: RuleContext) -> None:
        seen.append((rule.kind, ctx.key, list(ctx.data_sources)))
        if rule.body.get("defaultDataSource") not in ctx.data_sources:
            raise ConfigError(ctx.file, f"{ctx.key}.defaultDataSource", "unknown data source")

    monkeypatch.setitem(RULE_VALIDATORS, "SINGLE", validate_single)
    cfg = load_config(make_dir(tmp_path, database_demo__yaml=GOOD_DS + "rules:\n- !SINGLE\n  defaultDataSource: ds_0\n"))
    db: Database = cfg.databases["demo"]
    assert [(r.kind, dict(r.body)) for r in db.rules] == [("SINGLE", {"defaultDataSource": "ds_0"})]
    assert seen == [("SINGLE", "rules[0]", ["ds_0"])]
    err = load_error(tmp_path, database_demo__yaml=GOOD_DS + "rules:\n- !SINGLE\n  defaultDataSource: nope\n")
    assert err.key == "rules[0].defaultDataSource"
    err = load_error(tmp_path, database_demo__yaml=GOOD_DS + "rules:\n- !SINGLE {}\n- !SINGLE {}\n")
    assert (err.key, "appears twice" in err.detail) == ("rules[1]", True)


def test_sharding_rules_load_and_carry_the_global_props(tmp_path: Path) -> None:
    from dbmesh.sharding.rule import sharding_rule_for

    cfg = load_config(make_dir(
        tmp_path, global__yaml="props: {max-connections-size-per-query: 4, merge-max-rows-in-memory: 50}\n",
        database_demo__yaml=GOOD_DS + "rules:\n- !BROADCAST\n  tables: [t_dict]\n- !SINGLE\n  tables: [ds_0.t_user]\n"))
    assert cfg.props["merge-max-rows-in-memory"] == 50
    db = cfg.databases["demo"]
    assert [r.kind for r in db.rules] == ["BROADCAST", "SINGLE"]
    rule = sharding_rule_for(cfg, db)
    assert rule is not None and rule is sharding_rule_for(cfg, db)
    assert (rule.max_connections_size_per_query, rule.merge_max_rows_in_memory) == (4, 50)
    assert rule.is_broadcast("T_DICT") and rule.single_data_source("t_user") == "ds_0"
    assert load_config(make_dir(tmp_path, global__yaml="")).props["merge-max-rows-in-memory"] == 1_000_000
