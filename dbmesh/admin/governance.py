"""Governance DistSQL: compute nodes, dist variables, cluster state and traffic-rule status, answered on any database.

ShardingSphere-Proxy spellings where it has them, dbmesh's own where it has none:

* ``SHOW COMPUTE NODES``; ``DISABLE COMPUTE NODE 'id'`` / ``ENABLE COMPUTE NODE 'id'`` (a disabled node refuses
  every statement except governance DistSQL, so it can be enabled again through any node, itself included).
* ``SHOW DIST VARIABLES [LIKE 'pattern']``, ``SHOW DIST VARIABLE WHERE NAME = sql_show``,
  ``SET DIST VARIABLE sql_show = true``: the props, named with underscores as ShardingSphere shows them.
  A change is validated like a pushed configuration and, in Cluster mode, published to every sidecar.
* ``SHOW CLUSTER STATE``; ``SET CLUSTER STATE OK | READ_ONLY | UNAVAILABLE``; ShardingSphere's
  ``LOCK CLUSTER WITH LOCK_STRATEGY(TYPE="WRITE")`` (= READ_ONLY) and ``UNLOCK CLUSTER`` (= OK).
* ``SHOW CIRCUIT BREAKERS`` and ``SHOW RATE LIMITS``: the traffic rules and their live state on this node.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbmesh import __version__, errors
from dbmesh.admin.execute import AdminResult, Cell

if TYPE_CHECKING:
    from dbmesh.server.runtime import Runtime

CLUSTER_STATES = ("OK", "READ_ONLY", "UNAVAILABLE")
NODE_STATES = ("OK", "DISABLED")

_WS = r"\s*(?:/\*.*?\*/\s*)*"
_END = r"\s*;?\s*$"
_QUOTED = r"(?:'(?P<sq>(?:[^'\\]|''|\\.)*)'|\"(?P<dq>(?:[^\"\\]|\"\"|\\.)*)\"|`(?P<bq>[^`]*)`|(?P<bare>[\w.:-]+))"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(_WS + body + _END, re.I | re.S)) for name, body in (
    ("show_nodes", r"SHOW\s+COMPUTE\s+NODES"),
    ("node_state", r"(?P<verb>ENABLE|DISABLE)\s+COMPUTE\s+NODE\s+" + _QUOTED),
    ("show_vars", r"SHOW\s+DIST\s+VARIABLES(?:\s+LIKE\s+'(?P<like>(?:[^'\\]|''|\\.)*)')?"),
    ("show_var", r"SHOW\s+DIST\s+VARIABLE\s+WHERE\s+NAME\s*=\s*" + _QUOTED),
    ("set_var", r"SET\s+DIST\s+VARIABLE\s+(?P<name>[\w-]+)\s*=\s*(?P<value>'(?:[^'\\]|''|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[\w.+-]+)"),
    ("show_cluster", r"SHOW\s+CLUSTER\s+STATE"),
    ("set_cluster", r"SET\s+CLUSTER\s+STATE\s+(?P<state>\w+)"),
    ("lock_cluster", r"LOCK\s+CLUSTER\s+WITH\s+LOCK_STRATEGY\s*\(\s*TYPE\s*=\s*['\"]?(?P<strategy>\w+)['\"]?\s*\)"),
    ("unlock_cluster", r"UNLOCK\s+CLUSTER"),
    ("show_breakers", r"SHOW\s+CIRCUIT\s+BREAKERS"),
    ("show_limits", r"SHOW\s+RATE\s+LIMITS"),
))


@dataclass(frozen=True, slots=True)
class Done:
    """A governance statement that changed something: the session answers OK (PostgreSQL: the command tag)."""

    tag: str


def _unquote(m: re.Match[str]) -> str:
    for group, quote in (("sq", "'"), ("dq", '"')):
        value = m.group(group)
        if value is not None:
            return value.replace(quote * 2, quote).replace("\\" + quote, quote)
    return m.group("bq") if m.group("bq") is not None else m.group("bare")


def _value(text: str) -> Any:
    """A SET DIST VARIABLE value as YAML would read it: quoted text stays text, true/false/numbers are typed."""
    if text[:1] in "'\"":
        return text[1:-1].replace(text[0] * 2, text[0])
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        return text


def prop_name(variable: str) -> str:
    """ShardingSphere shows props with underscores (sql_show) and stores them with dashes (sql-show)."""
    return variable.strip().lower().replace("_", "-")


def variable_name(prop: str) -> str:
    return prop.replace("-", "_")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


async def execute_governance(sql: str, runtime: Runtime, *, user: str) -> AdminResult | Done:
    """Answer one governance statement (see the module docstring); raises the catalogue error on a mistake."""
    for name, pattern in _PATTERNS:
        m = pattern.match(sql)
        if m is not None:
            return await _HANDLERS[name](m, runtime, user)
    raise errors.DbMeshError(errors.SQL_SYNTAX, detail=f"unrecognised governance statement near {sql.strip()[:60]!r}")


async def _show_nodes(m: re.Match[str], rt: Runtime, user: str) -> AdminResult:
    columns = ("instance_id", "address", "status", "mode_type", "worker_id", "labels", "version", "config_version",
               "started_at", "error")
    rows: list[tuple[Cell, ...]] = []
    governor = rt.governor
    if governor is None:
        srv = rt.config.server
        rows.append((rt.node_id, f"{srv.mysql.host}:{srv.mysql.port}", rt.node_state, "Standalone", "",
                     ",".join(srv.labels),
                     __version__, str(rt.config_version), _started(rt.started_at), rt.config_error or ""))
    else:
        for node in governor.compute_nodes():
            rows.append((node.id, node.address, node.state, "Cluster", _cell(node.worker_id), ",".join(node.labels),
                         node.version, str(node.config_version), node.started_at, node.error or ""))
    return AdminResult(columns, tuple(rows))


def _started(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


async def _node_state(m: re.Match[str], rt: Runtime, user: str) -> Done:
    node_id = _unquote(m)
    state = "DISABLED" if m.group("verb").upper() == "DISABLE" else "OK"
    governor = rt.governor
    if governor is None:
        if node_id != rt.node_id:
            raise errors.DbMeshError(errors.GOVERNANCE_FAILED, detail=f"no compute node {node_id!r} (this standalone "
                                     f"node is {rt.node_id!r}; SHOW COMPUTE NODES lists it)")
        rt.apply_states(rt.cluster_state, state)
    else:
        await governor.set_node_state(node_id, state)
    return Done(m.group("verb").upper())


def _variables(rt: Runtime) -> list[tuple[str, str]]:
    rows = [(variable_name(k), _cell(v)) for k, v in sorted(rt.config.props.items())]
    rows.append(("cluster_state", rt.cluster_state))
    rows.append(("config_version", str(rt.config_version)))
    return sorted(rows)


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.I | re.S)


async def _show_vars(m: re.Match[str], rt: Runtime, user: str) -> AdminResult:
    rows = _variables(rt)
    like = m.group("like")
    if like is not None:
        pattern = _like(like.replace("''", "'"))
        rows = [r for r in rows if pattern.fullmatch(r[0])]
    return AdminResult(("variable_name", "variable_value"), tuple(rows))


async def _show_var(m: re.Match[str], rt: Runtime, user: str) -> AdminResult:
    name = variable_name(prop_name(_unquote(m)))
    rows = [r for r in _variables(rt) if r[0] == name]
    if not rows:
        raise errors.DbMeshError(errors.GOVERNANCE_FAILED, detail=f"unknown dist variable {name!r}")
    return AdminResult(("variable_name", "variable_value"), tuple(rows))


async def _set_var(m: re.Match[str], rt: Runtime, user: str) -> Done:
    prop = prop_name(m.group("name"))
    if prop == "cluster-state":
        return await _set_state(rt, str(_value(m.group("value"))).upper())
    if prop not in rt.config.props:
        raise errors.DbMeshError(errors.GOVERNANCE_FAILED, detail=f"unknown dist variable {m.group('name')!r}")
    await rt.set_props({prop: _value(m.group("value"))}, author=user)
    return Done("SET")


async def _set_state(rt: Runtime, state: str) -> Done:
    if state not in CLUSTER_STATES:
        raise errors.DbMeshError(errors.GOVERNANCE_FAILED,
                                 detail=f"cluster state must be one of {', '.join(CLUSTER_STATES)}, got {state!r}")
    governor = rt.governor
    if governor is None:
        rt.apply_states(state, rt.node_state)
    else:
        await governor.set_cluster_state(state)
    return Done("SET")


async def _show_cluster(m: re.Match[str], rt: Runtime, user: str) -> AdminResult:
    return AdminResult(("state",), ((rt.cluster_state,),))


async def _set_cluster(m: re.Match[str], rt: Runtime, user: str) -> Done:
    return await _set_state(rt, m.group("state").upper())


async def _lock_cluster(m: re.Match[str], rt: Runtime, user: str) -> Done:
    strategy = m.group("strategy").upper()
    if strategy != "WRITE":
        raise errors.DbMeshError(errors.STATEMENT_UNSUPPORTED, construct=f"LOCK_STRATEGY TYPE={strategy}",
                                 detail="only TYPE=\"WRITE\" (the cluster becomes READ_ONLY) is supported")
    return await _set_state(rt, "READ_ONLY")


async def _unlock_cluster(m: re.Match[str], rt: Runtime, user: str) -> Done:
    return await _set_state(rt, "OK")


async def _show_breakers(m: re.Match[str], rt: Runtime, user: str) -> AdminResult:
    columns = ("resource", "rule", "state", "strategy", "threshold", "requests", "errors", "slow", "window_ms",
               "retry_ms", "detail")
    gov = rt.traffic
    rows: list[tuple[Cell, ...]] = []
    if gov is not None:
        for b in gov.snapshot():
            rows.append(tuple(_cell(getattr(b, name, None)) for name in columns))
    return AdminResult(columns, tuple(rows))


async def _show_limits(m: re.Match[str], rt: Runtime, user: str) -> AdminResult:
    columns = ("resource", "grade", "count", "control_behavior", "passed", "rejected", "queued", "in_use", "waiting")
    gov = rt.traffic
    rows: list[tuple[Cell, ...]] = []
    if gov is not None:
        for limit in gov.limits_snapshot():
            rows.append(tuple(_cell(getattr(limit, name, None)) for name in columns))
    return AdminResult(columns, tuple(rows))


_HANDLERS: dict[str, Callable[[re.Match[str], Runtime, str], Awaitable[AdminResult | Done]]] = {
    "show_nodes": _show_nodes, "node_state": _node_state, "show_vars": _show_vars, "show_var": _show_var,
    "set_var": _set_var, "show_cluster": _show_cluster, "set_cluster": _set_cluster, "lock_cluster": _lock_cluster,
    "unlock_cluster": _unlock_cluster, "show_breakers": _show_breakers, "show_limits": _show_limits,
}
