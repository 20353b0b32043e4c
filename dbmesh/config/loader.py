"""Load a ShardingSphere-Proxy style configuration directory into a frozen `Config` snapshot.

The directory holds `global.yaml` (optional: every key has a default) and one `database-<name>.yaml` per
logical database. Loading is all-or-nothing: the first problem raises one `ConfigError(file, key, detail)`
naming the file, the dotted key path (list items as `[i]`) and the bad value, with the YAML line when known.

Rules are YAML-tagged mappings (`- !SHARDING {...}`). Each kind needs a validator in `RULE_VALIDATORS`
before a database may use it: a database whose rules dbmesh cannot apply would route statements to the
wrong place and give wrong answers, so an unknown or unimplemented rule is an error, never ignored.
`!SHARDING`, `!BROADCAST` and `!SINGLE` are compiled by `dbmesh.sharding.rule`: each rule on its own by its
validator, then a database's rules together with the global props, so a configuration that loads always
builds its sharding rules (they are kept for `sharding_rule_for`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from dbmesh.config.models import (
    AuthPlugin,
    Config,
    Database,
    DataSource,
    Limits,
    Listener,
    Mode,
    PoolSettings,
    Repository,
    Rule,
    ServerSettings,
    SlowQueryLog,
    TlsSettings,
    User,
    YamlAuthority,
    YamlDatabase,
    YamlDataSource,
    YamlGlobal,
    YamlMode,
    YamlZooKeeperProps,
    ZooKeeperProps,
)
from dbmesh.config.urls import UrlError, parse_url
from dbmesh.errors import ConfigError
from dbmesh.sharding import rule as sharding_rule

GLOBAL_FILE = "global.yaml"
DATABASE_FILE_RE = re.compile(r"^database-(?P<name>.+)\.ya?ml$")
WHOLE_FILE = "(file)"  # the key used for errors about a file as a whole
# Keys of global.yaml that belong to one process, never to a shared registry copy.
LOCAL_GLOBAL_KEYS = ("mode", "dbmesh")

# ShardingSphere's default login when global.yaml defines no users.
DEFAULT_USER = User(name="root", host="%", password="root")


# ----------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule validator may look at: where the rule is, and the database's data sources."""

    file: str  # file name for ConfigError
    key: str  # key path of the rule, e.g. "rules[0]"
    data_sources: Mapping[str, DataSource]  # the database's data sources (empty for global rules)


RuleValidator = Callable[[Rule, RuleContext], None]
"""Checks one rule of its kind; raises ConfigError(ctx.file, ctx.key + ".<key>", detail) on a mistake."""

def _validate_sharding_kind(rule: Rule, ctx: RuleContext) -> None:
    """!SHARDING, !BROADCAST and !SINGLE: compiled on their own here; cross-rule checks (a table in two rules)
    run when the database's rules are built together in `load_config`."""
    sharding_rule.validate_rule(rule.kind, rule.body, ctx.file, ctx.key, list(ctx.data_sources))


# Database rule kinds this version can apply, kind -> validator.
RULE_VALIDATORS: dict[str, RuleValidator] = {kind: _validate_sharding_kind for kind in sharding_rule.RULE_KINDS}


def _accept(rule: Rule, ctx: RuleContext) -> None:
    """Validator for global rules that cannot change a statement's result."""


def _validate_transaction(rule: Rule, ctx: RuleContext) -> None:
    """Only LOCAL transactions (each data source commits on its own) are what dbmesh does today."""
    default_type = str(rule.body.get("defaultType", "LOCAL"))
    if default_type.upper() != "LOCAL":
        raise ConfigError(ctx.file, f"{ctx.key}.defaultType",
                          f"transaction type {default_type!r} is not supported by this version of dbmesh (only LOCAL)")


def _validate_traffic(rule: Rule, ctx: RuleContext) -> None:
    """!TRAFFIC: circuit breakers and flow rules (imported here, not at the top: dbmesh.traffic uses the models)."""
    from dbmesh.traffic.rules import validate_traffic_rule

    validate_traffic_rule(rule, ctx)


# Global rule kinds (global.yaml `rules:` or the 5.2+ top-level keys), kind -> validator. AUTHORITY is not
# here: it is folded into `authority:` by the loader.
GLOBAL_RULE_VALIDATORS: dict[str, RuleValidator] = {
    "SQL_PARSER": _accept,  # parser cache sizes only; dbmesh has its own parser caches
    "TRANSACTION": _validate_transaction,
    "TRAFFIC": _validate_traffic,
}


# ------------------------------------------------------------------------------------------------ YAML


class _Tagged:
    """A `!KIND` node as read from YAML, before it becomes a Rule."""

    __slots__ = ("body", "kind")

    def __init__(self, kind: str, body: Any) -> None:
        self.kind = kind
        self.body = body

    def __repr__(self) -> str:
        return f"!{self.kind} {self.body!r}"


class _Loader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]  # Any without types-PyYAML
    """SafeLoader that reads `!KIND` tags as `_Tagged` and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # A repeated key is almost always a mistake (two `password:` lines); PyYAML would keep the last one
        # silently. Keys merged in with `<<:` may legitimately be overridden, so only explicit keys count.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
    body: Any
    if isinstance(node, yaml.MappingNode):
        body = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        body = loader.construct_sequence(node, deep=True)
    else:
        body = loader.construct_scalar(node)  # type: ignore[arg-type,unused-ignore]
        body = None if body == "" else body
    return _Tagged(suffix, body)


_Loader.add_multi_constructor("!", _construct_tagged)


@dataclass(frozen=True, slots=True)
class _Document:
    """One parsed YAML file: its data and node tree (kept to report line numbers)."""

    file: str
    data: Any
    node: yaml.Node | None

    def line(self, loc: tuple[str | int, ...]) -> int | None:
        """1-based line of the deepest node on the key path `loc` (the parent if the key is missing)."""
        node = self.node
        if node is None:
            return None
        line = int(node.start_mark.line) + 1
        for part in loc:
            nxt: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                        nxt = value_node
                        line = int(key_node.start_mark.line) + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                nxt = node.value[part]
                line = int(nxt.start_mark.line) + 1
            if nxt is None:
                break
            node = nxt
        return line

    def error(self, loc: tuple[str | int, ...], detail: str) -> ConfigError:
        """A ConfigError for key path `loc` in this file, with the line appended when known."""
        line = self.line(loc)
        return ConfigError(self.file, _key(loc), f"{detail} (line {line})" if line else detail)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path.name, WHOLE_FILE, f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path.name, WHOLE_FILE, f"the file is not UTF-8: {exc.reason} at byte {exc.start}") from None


def _read_yaml(path: Path) -> _Document:
    return _parse_yaml(path.name, _read_text(path))


def _parse_yaml(name: str, text: str) -> _Document:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else WHOLE_FILE
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise ConfigError(name, where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(name, WHOLE_FILE, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call,unused-ignore]
    return _Document(name, data, node)


# -------------------------------------------------------------------------------------- pydantic errors

_SECRET_KEYS = frozenset({"password", "digest"})


def _key(loc: tuple[str | int, ...]) -> str:
    """('dataSources', 'ds_0', 'maxPoolSize') -> 'dataSources.ds_0.maxPoolSize'; ints become '[i]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or WHOLE_FILE


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model class a field annotation leads to, and whether a container (list/dict) sits in between."""
    for arg in (annotation, *get_args(annotation)):  # Optional[X] / X | None: look at the members too
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, False
        if get_origin(arg) in (list, dict) and get_args(arg):
            inner = get_args(arg)[-1]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner, True
    return None, False


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The YAML keys allowed at key path `loc` below `model` (empty when the path leaves typed models)."""
    current: type[BaseModel] | None = model
    skip = False  # the next path element is a list index or dict key, not a field
    for part in loc:
        if skip:
            skip = False
            continue
        if current is None:
            return []
        info = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if info is None:
            return []
        current, skip = _model_of(info.annotation)
    if current is None or skip:
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _suggest(word: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for a near miss, else the list of choices, else ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(choices)})" if choices else ""


def _validate(model: type[Any], data: Any, doc: _Document, prefix: tuple[str | int, ...] = ()) -> Any:
    """`model.model_validate(data)`, with the first pydantic error turned into a precise ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = prefix + tuple(err["loc"])
        last = loc[-1] if loc else None
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, tuple(err["loc"])[:-1])
            detail = f"unknown key {last!r}" + _suggest(str(last), allowed)
        elif err["type"] == "missing":
            detail = "required key is missing"
        elif last in _SECRET_KEYS:
            detail = err["msg"]  # never echo a password, even a malformed one
        else:
            detail = f"{err['msg']}, got {err['input']!r}"
        raise doc.error(loc, detail) from None


# ----------------------------------------------------------------------------------------------- props


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("expected true or false")


def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError("expected an integer")


def _as_str(value: Any) -> str:
    # ShardingSphere converts prop values with toString(), so `8.0` means "8.0" and `true` means "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError("expected a string")


def _at_least(n: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= n else f"must be at least {n}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    folded = {c.lower() for c in choices}
    return lambda v: None if v.lower() in folded else f"must be one of: {', '.join(c or repr(c) for c in choices)}"


def _port_check(v: Any) -> str | None:
    return None if 1 <= v <= 65535 else "must be within 1..65535"


# ShardingSphere-Proxy props (ConfigurationPropertyKey across 5.x): name -> (converter, default, extra check).
# Every known prop appears in Config.props with its default. None as a default means "unset": for
# proxy-mysql-default-version that means "report the data source's own version", as ShardingSphere does.
KNOWN_PROPS: Mapping[str, tuple[Callable[[Any], Any], Any, Callable[[Any], str | None] | None]] = MappingProxyType({
    "sql-show": (_as_bool, False, None),
    "sql-simple": (_as_bool, False, None),
    "kernel-executor-size": (_as_int, 0, _at_least(0)),
    "max-connections-size-per-query": (_as_int, 1, _at_least(1)),
    "check-table-metadata-enabled": (_as_bool, False, None),
    "check-duplicate-table-enabled": (_as_bool, False, None),
    "load-table-metadata-batch-size": (_as_int, 1000, _at_least(1)),
    "proxy-frontend-flush-threshold": (_as_int, 128, _at_least(1)),
    "proxy-hint-enabled": (_as_bool, False, None),
    "proxy-backend-query-fetch-size": (_as_int, -1, _at_least(-1)),
    "proxy-frontend-executor-size": (_as_int, 0, _at_least(0)),
    "proxy-backend-executor-suitable": (_as_str, "OLAP", _one_of("OLAP", "OLTP")),
    "proxy-frontend-max-connections": (_as_int, 0, _at_least(0)),
    "proxy-default-port": (_as_int, 3307, _port_check),
    "proxy-netty-backlog": (_as_int, 1024, _at_least(0)),
    "proxy-frontend-database-protocol-type": (_as_str, "", _one_of("", "MySQL", "MariaDB", "PostgreSQL", "openGauss")),
    "proxy-frontend-ssl-enabled": (_as_bool, False, None),
    "proxy-frontend-ssl-version": (_as_str, "TLSv1.2,TLSv1.3", None),
    "proxy-frontend-ssl-cipher": (_as_str, "", None),
    "proxy-mysql-default-version": (_as_str, None, None),
    "proxy-instance-type": (_as_str, "Proxy", None),
    "proxy-backend-driver-type": (_as_str, "JDBC", None),
    "proxy-meta-data-collector-enabled": (_as_bool, False, None),
    "sql-federation-type": (_as_str, "NONE", _one_of("NONE", "ORIGINAL", "ADVANCED")),
    "sql-federation-enabled": (_as_bool, False, None),
    "show-process-list-enabled": (_as_bool, False, None),
    "system-log-level": (_as_str, "INFO", _one_of("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF")),
    "system-schema-metadata-enabled": (_as_bool, True, None),
    "system-schema-metadata-assembly-enabled": (_as_bool, True, None),
    "persist-schemas-to-repository-enabled": (_as_bool, True, None),
    "agent-plugins-enabled": (_as_bool, True, None),
    "cdc-server-port": (_as_int, 33071, _port_check),
    # dbmesh's own: the most rows a merge may hold in memory (hash GROUP BY, DISTINCT) before refusing.
    "merge-max-rows-in-memory": (_as_int, 1_000_000, _at_least(1)),
})


def _load_props(raw: Mapping[str, Any], doc: _Document) -> dict[str, Any]:
    props = {name: default for name, (_, default, _) in KNOWN_PROPS.items()}
    for name, value in raw.items():
        if name not in KNOWN_PROPS:
            raise doc.error(("props", str(name)), f"unknown prop {name!r}" + _suggest(str(name), list(KNOWN_PROPS)))
        convert, _, check = KNOWN_PROPS[name]
        try:
            converted = convert(value)
        except ValueError as exc:
            raise doc.error(("props", name), f"{exc}, got {value!r}") from None
        problem = check(converted) if check else None
        if problem:
            raise doc.error(("props", name), f"{problem}, got {value!r}")
        props[name] = converted
    return props


# -------------------------------------------------------------------------------------------- global.yaml


_RuleItem = tuple[tuple[str | int, ...], str, dict[str, Any]]  # (key path, kind, body as read)


def _rules(items: list[Any], doc: _Document, base: tuple[str | int, ...]) -> list[_RuleItem]:
    """Check a `rules:` list: each item a `!KIND` mapping, each kind at most once per file (as ShardingSphere)."""
    out: list[_RuleItem] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        loc = (*base, i)
        if not isinstance(item, _Tagged):
            raise doc.error(loc, f"a rule must be a YAML-tagged mapping such as '- !SHARDING', got {item!r}")
        if item.kind in seen:
            raise doc.error(loc, f"rule !{item.kind} appears twice (also at {_key((*base, seen[item.kind]))})")
        seen[item.kind] = i
        body = {} if item.body is None else item.body
        if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
            raise doc.error(loc, f"rule !{item.kind} must be a mapping with string keys, got {item.body!r}")
        out.append((loc, item.kind, body))
    return out


_AUTH_PLUGINS: tuple[AuthPlugin, ...] = get_args(AuthPlugin)


def _resolve_plugin(method: str, authenticators: Mapping[str, Any], doc: _Document, loc: tuple[str | int, ...]) -> AuthPlugin:
    """An authenticationMethodName: an authenticator's name (use its type) or a method name itself."""
    if method in authenticators:
        method = authenticators[method].type
    folded = re.sub(r"[-_]", "", method.lower())
    for plugin in _AUTH_PLUGINS:
        if re.sub(r"[-_]", "", plugin) == folded:
            return plugin
    known = ", ".join(authenticators) if authenticators else "none defined"
    raise doc.error(loc, f"unknown authentication method {method!r}: not an authenticator name ({known}) and not one of "
                         "mysql_native_password, caching_sha2_password, scram-sha-256, md5, password")


def _load_users(authority: YamlAuthority | None, doc: _Document, base: tuple[str | int, ...]) -> tuple[User, ...]:
    if authority is None or not authority.users:
        return (DEFAULT_USER,)
    if authority.privilege is not None and authority.privilege.type.upper() != "ALL_PERMITTED":
        raise doc.error((*base, "privilege", "type"), f"privilege type {authority.privilege.type!r} is not supported by "
                                                      "this version of dbmesh (only ALL_PERMITTED)")
    default_plugin: AuthPlugin = "mysql_native_password"
    if authority.default_authenticator is not None:
        if authority.default_authenticator not in authority.authenticators:
            raise doc.error((*base, "defaultAuthenticator"), f"{authority.default_authenticator!r} is not a key of authenticators")
        default_plugin = _resolve_plugin(authority.default_authenticator, authority.authenticators, doc,
                                         (*base, "defaultAuthenticator"))
    users: list[User] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(authority.users):
        loc = (*base, "users", i, "user")
        name, at, host = entry.user.rpartition("@")
        if not at:
            name, host = entry.user, "%"
        host = host or "%"
        if not name:
            raise doc.error(loc, f"the user name is empty in {entry.user!r} (expected name@host)")
        if (name, host.lower()) in seen:
            raise doc.error(loc, f"user {name}@{host} is defined twice")
        seen.add((name, host.lower()))
        plugin = default_plugin
        if entry.authentication_method_name is not None:
            plugin = _resolve_plugin(entry.authentication_method_name, authority.authenticators, doc,
                                     (*base, "users", i, "authenticationMethodName"))
        users.append(User(name=name, host=host, password=entry.password or "", auth_plugin=plugin, admin=entry.admin))
    return tuple(users)


def _load_mode(mode: YamlMode, doc: _Document) -> Mode:
    repo = mode.repository
    repository = Repository(type=repo.type, props=repo.props) if repo is not None else None
    if mode.type == "Standalone":
        # A Standalone repository (ShardingSphere's JDBC/H2 persistence) is accepted and unused: dbmesh keeps
        # standalone metadata in memory, rebuilt from these files on start.
        return Mode(type="Standalone", repository=repository, overwrite=mode.overwrite)
    if repo is None:
        raise doc.error(("mode", "repository"), "Cluster mode needs a repository (type: ZooKeeper)")
    if repo.type.lower() != "zookeeper":
        raise doc.error(("mode", "repository", "type"),
                        f"repository type {repo.type!r} is not supported by this version of dbmesh (only ZooKeeper)")
    zk: YamlZooKeeperProps = _validate(YamlZooKeeperProps, repo.props, doc, ("mode", "repository", "props"))
    zookeeper = ZooKeeperProps(
        namespace=zk.namespace, server_lists=zk.server_lists, retry_interval_ms=zk.retry_interval_milliseconds,
        max_retries=zk.max_retries, time_to_live_s=zk.time_to_live_seconds,
        operation_timeout_ms=zk.operation_timeout_milliseconds, digest=zk.digest)
    return Mode(type="Cluster", repository=repository, zookeeper=zookeeper, overwrite=mode.overwrite)


def _resolve_file(base_dir: Path, value: str | None, doc: _Document, loc: tuple[str | int, ...], must_exist: bool) -> str | None:
    if value is None:
        return None
    path = (base_dir / os.path.expanduser(value)).resolve()
    if must_exist and not path.is_file():
        raise doc.error(loc, f"file not found: {str(path)!r}")
    return str(path)


def _load_server(g: YamlGlobal, props: Mapping[str, Any], doc: _Document, base_dir: Path) -> ServerSettings:
    d = g.dbmesh
    # ShardingSphere's proxy-default-port is the port of its one listener, whose protocol is
    # proxy-frontend-database-protocol-type (MySQL when empty). An explicit dbmesh listener port wins.
    pg_front = str(props["proxy-frontend-database-protocol-type"]).lower() in ("postgresql", "opengauss")
    raw = g.props
    mysql_port = d.listeners.mysql.port or (
        props["proxy-default-port"] if "proxy-default-port" in raw and not pg_front else 3307)
    pg_port = d.listeners.postgresql.port or (props["proxy-default-port"] if "proxy-default-port" in raw and pg_front else 5433)
    tls_loc: tuple[str, ...] = ("dbmesh", "tls")
    if (d.tls.certificate_file is None) != (d.tls.key_file is None):
        missing = "keyFile" if d.tls.key_file is None else "certificateFile"
        raise doc.error((*tls_loc, missing), "certificateFile and keyFile must be given together")
    limits = d.limits
    max_connections = limits.max_connections
    if max_connections is None:
        max_connections = props["proxy-frontend-max-connections"] or Limits().max_connections
    return ServerSettings(
        mysql=Listener(host=d.listeners.mysql.host or "127.0.0.1", port=mysql_port),
        postgresql=Listener(host=d.listeners.postgresql.host or "127.0.0.1", port=pg_port),
        admin=Listener(host=d.admin.host or "127.0.0.1", port=d.admin.port or 9797),
        tls=TlsSettings(
            enabled=d.tls.enabled if d.tls.enabled is not None else bool(props["proxy-frontend-ssl-enabled"]),
            certificate_file=_resolve_file(base_dir, d.tls.certificate_file, doc, (*tls_loc, "certificateFile"), True),
            key_file=_resolve_file(base_dir, d.tls.key_file, doc, (*tls_loc, "keyFile"), True),
        ),
        slow_query_log=SlowQueryLog(
            threshold_ms=d.slow_query_log.threshold_milliseconds,
            path=_resolve_file(base_dir, d.slow_query_log.path, doc, ("dbmesh", "slowQueryLog", "path"), False),
        ),
        limits=Limits(
            max_packet_size=limits.max_packet_size, max_connections=max_connections,
            auth_timeout_seconds=limits.auth_timeout_seconds, shutdown_timeout_seconds=limits.shutdown_timeout_seconds),
        multiplexing=d.multiplexing,
        labels=tuple(d.labels),
    )


def _global_mapping(doc: _Document) -> dict[str, Any]:
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise doc.error((), f"the top level must be a mapping of keys (mode, authority, props, dbmesh, ...), got {type(data).__name__}")
    return data


def _load_global(base_dir: Path, text: str | None, local_text: str | None,
                 props_override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Config fields that come from global.yaml (all defaults when the file is absent or empty).

    `local_text`, when given, is this process's own global.yaml: its `mode:` and `dbmesh:` blocks (how to reach
    the registry, where to listen, TLS files) win over the shared text's, which may come from another host.
    `props_override`, when given, replaces the text's `props:` block (a registry keeps props as an item of their own).
    """
    doc = _parse_yaml(GLOBAL_FILE, text) if text is not None else _Document(GLOBAL_FILE, None, None)
    data = _global_mapping(doc)
    if local_text is not None:
        local = _global_mapping(_parse_yaml(GLOBAL_FILE, local_text))
        data = {k: v for k, v in data.items() if k not in LOCAL_GLOBAL_KEYS}
        data.update({k: v for k, v in local.items() if k in LOCAL_GLOBAL_KEYS})
    if props_override is not None:
        data = {**data, "props": dict(props_override)}
    g: YamlGlobal = _validate(YamlGlobal, data, doc)
    props = _load_props(g.props, doc)

    authority = g.authority
    authority_loc: tuple[str | int, ...] = ("authority",)
    global_rules: list[Rule] = []
    tagged = _rules(g.rules, doc, ("rules",))
    for key, kind, top_level in (("transaction", "TRANSACTION", g.transaction), ("sqlParser", "SQL_PARSER", g.sql_parser)):
        if top_level is not None:  # ShardingSphere 5.2+ writes global rules as plain top-level keys
            if any(k == kind for _, k, _ in tagged):
                raise doc.error((key,), f"{key} is given both as a key and as a !{kind} rule")
            tagged.append(((key,), kind, top_level))
    for loc, kind, body in tagged:
        if kind == "AUTHORITY":  # ShardingSphere 5.0/5.1 server.yaml shape of `authority:`
            if authority is not None:
                raise doc.error(loc, "!AUTHORITY repeats the authority: block; keep one of them")
            authority = _validate(YamlAuthority, body, doc, loc)
            authority_loc = loc
            continue
        validator = GLOBAL_RULE_VALIDATORS.get(kind)
        if validator is None:
            raise doc.error(loc, f"global rule !{kind} is not supported by this version of dbmesh")
        rule = Rule(kind=kind, body=body)
        validator(rule, RuleContext(doc.file, _key(loc), MappingProxyType({})))
        global_rules.append(rule)

    return {
        "mode": _load_mode(g.mode, doc),
        "users": _load_users(authority, doc, authority_loc),
        "props": props,
        "server": _load_server(g, props, doc, base_dir),
        "global_rules": tuple(global_rules),
    }


# ------------------------------------------------------------------------------------- database-*.yaml


def _load_data_source(name: str, ds: YamlDataSource, doc: _Document) -> DataSource:
    loc: tuple[str, ...] = ("dataSources", name)
    if ds.url is not None and ds.jdbc_url is not None:
        raise doc.error((*loc, "jdbcUrl"), "give either url or jdbcUrl, not both")
    url = ds.url if ds.url is not None else ds.jdbc_url
    url_key = "url" if ds.url is not None or ds.jdbc_url is None else "jdbcUrl"
    if url is None:
        raise doc.error((*loc, "url"), "required key is missing")
    try:
        parsed = parse_url(url)
    except UrlError as exc:
        raise doc.error((*loc, url_key), f"{exc} (url {url!r})") from None
    username = ds.username if ds.username is not None else parsed.username
    if not username:
        raise doc.error((*loc, "username"), "required key is missing (and the URL has no user@)")
    if ds.min_pool_size > ds.max_pool_size:
        raise doc.error((*loc, "minPoolSize"), f"minPoolSize {ds.min_pool_size} is larger than maxPoolSize {ds.max_pool_size}")
    if ds.read_only:
        raise doc.error((*loc, "readOnly"), "readOnly: true is not supported by this version of dbmesh")
    password = ds.password if ds.password is not None else parsed.password
    return DataSource(
        name=name, protocol=parsed.protocol, host=parsed.host, port=parsed.port, database=parsed.database,
        username=username, password=password or "", params=parsed.params,
        pool=PoolSettings(
            min_size=ds.min_pool_size, max_size=ds.max_pool_size,
            wait_timeout_s=ds.connection_timeout_milliseconds / 1000,
            idle_timeout_s=ds.idle_timeout_milliseconds / 1000,
            max_lifetime_s=ds.max_lifetime_milliseconds / 1000,
            health_check_interval_s=ds.health_check_interval_milliseconds / 1000,
            connect_timeout_s=ds.connect_timeout_milliseconds / 1000,
        ),
    )


def _load_database(name: str, text: str) -> Database:
    doc = _parse_yaml(name, text)
    if doc.data is None:
        raise doc.error((), "the file is empty; expected databaseName, dataSources and rules")
    if not isinstance(doc.data, dict):
        raise doc.error((), f"the top level must be a mapping (databaseName, dataSources, rules), got {type(doc.data).__name__}")
    db: YamlDatabase = _validate(YamlDatabase, doc.data, doc)
    if not db.database_name.strip():
        raise doc.error(("databaseName",), f"must not be blank, got {db.database_name!r}")
    for name in db.data_sources:
        if not str(name).strip():
            raise doc.error(("dataSources",), f"a data source name is blank: {name!r}")
    data_sources = {name: _load_data_source(name, ds, doc) for name, ds in db.data_sources.items()}
    rules: list[Rule] = []
    for loc, kind, body in _rules(db.rules, doc, ("rules",)):
        validator = RULE_VALIDATORS.get(kind)
        if validator is None:
            raise doc.error(loc, f"rule !{kind} is not supported by this version of dbmesh")
        rule = Rule(kind=kind, body=body)
        validator(rule, RuleContext(doc.file, _key(loc), MappingProxyType(data_sources)))
        rules.append(rule)
    return Database(name=db.database_name, data_sources=data_sources, rules=tuple(rules), file=doc.file)


def _database_files(base_dir: Path) -> Iterator[Path]:
    for path in sorted(base_dir.iterdir(), key=lambda p: p.name):
        if path.is_file() and DATABASE_FILE_RE.match(path.name):
            yield path


def read_config_files(path: Path | str) -> dict[str, str]:
    """The texts of a configuration directory's files (global.yaml first when present), by file name."""
    base_dir = Path(path).expanduser()
    if not base_dir.is_dir():
        raise ConfigError(str(path), "(directory)", "not a directory (expected global.yaml and database-<name>.yaml files)")
    files: dict[str, str] = {}
    if (base_dir / GLOBAL_FILE).is_file():
        files[GLOBAL_FILE] = _read_text(base_dir / GLOBAL_FILE)
    for file in _database_files(base_dir):
        files[file.name] = _read_text(file)
    return files


# -------------------------------------------------------------------------------------------------- API


def load_config(path: Path | str) -> Config:
    """Load and validate the configuration directory `path` into a frozen Config; raise ConfigError.

    >>> cfg = load_config("rules/single-mysql")
    >>> cfg.databases["demo"].default_data_source.port, cfg.server.mysql.port
    (3306, 3307)
    """
    files = read_config_files(path)
    return load_config_files(files, Path(path).expanduser().resolve())


def load_config_files(files: Mapping[str, str], source_dir: Path | str, local_global: str | None = None,
                      props: Mapping[str, Any] | None = None) -> Config:
    """Load a configuration given as file texts (`global.yaml`, `database-<name>.yaml`) into a frozen Config.

    This is how a registry's copy is loaded: relative paths resolve against `source_dir`, and `local_global`
    (this process's own global.yaml) supplies the `mode:` and `dbmesh:` blocks; `props`, when given, replaces
    global.yaml's `props:` block before validation (the registry keeps props apart). Unknown file names are an error.

    >>> cfg = load_config_files({"database-a.yaml": "databaseName: a\\ndataSources: {ds: {url: 'mysql://u@h/d'}}"}, "/")
    >>> list(cfg.databases), cfg.databases["a"].default_data_source.host
    (['a'], 'h')
    """
    base_dir = Path(source_dir)
    for name in files:
        if name != GLOBAL_FILE and not DATABASE_FILE_RE.match(name):
            raise ConfigError(name, WHOLE_FILE, "not a configuration file name (global.yaml or database-<name>.yaml)")
    fields = _load_global(base_dir, files.get(GLOBAL_FILE), local_global, props)
    databases: dict[str, Database] = {}
    for name in sorted(n for n in files if n != GLOBAL_FILE):
        database = _load_database(name, files[name])
        if database.name in databases:
            raise ConfigError(name, "databaseName",
                              f"database {database.name!r} is already defined in {databases[database.name].file}")
        databases[database.name] = database
    # The database's sharding rules together, with the real props: validates what no single rule can show
    # (a table in two rules) and builds what the router will use.
    rules = {name: sharding_rule.build_sharding_rule(db, fields["props"]) for name, db in databases.items()}
    config = Config(source_dir=str(base_dir), databases=databases, **fields)
    sharding_rule.remember_sharding_rules(config, rules)
    return config
