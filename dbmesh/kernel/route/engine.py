"""Routing one statement: evaluate the shape's condition slots and ask the rule for data nodes, then decide the
route units: where each runs and which actual table stands for each logic table there.

Decisions (ShardingSphere's, see the compatibility notes): one sharded table routes by its conditions (no
condition: every node); bound tables follow the primary table's nodes, each partner on its bound node; broadcast
tables ride along wherever the sharded tables go (alone: reads on the first data source, writes and DDL on every
data source); single tables go to their data source, and a statement mixing them with sharded tables elsewhere is
refused. A statement whose every table resolves to one data node runs there whole, whatever it contains."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dbmesh.kernel.parse import ParsedStatement
from dbmesh.kernel.route.analysis import Analysis
from dbmesh.kernel.route.conditions import evaluate
from dbmesh.kernel.route.errors import column_update, unsupported
from dbmesh.kernel.route.protocols import ShardingRuleLike
from dbmesh.kernel.route.values import UNKNOWN
from dbmesh.sharding.autotables import DataNode
from dbmesh.sharding.conditions import ConditionGroup, Hint, Values


@dataclass(slots=True)
class Target:
    """One route unit before rewriting: a data source, the actual table of each logic table, and (INSERT) rows."""

    data_source: str
    tables: dict[str, str] = field(default_factory=dict)
    rows: list[int] | None = None


@dataclass(slots=True)
class Routing:
    targets: list[Target]
    generated_keys: tuple[Any, ...] = ()
    multi: bool = False  # several sharded data nodes: the statement is split and merged


def _dedupe(nodes: Sequence[DataNode]) -> list[DataNode]:
    seen: set[DataNode] = set()
    out: list[DataNode] = []
    for n in nodes:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


class Router:
    def __init__(self, rule: ShardingRuleLike) -> None:
        self.rule = rule
        # Per logic table, the nodes of an unconstrained statement without a hint: every algorithm is left
        # uncalled then (no sharding values), so the answer is the rule's alone, and the rule is immutable.
        self._every: dict[str, list[DataNode]] = {}

    def ref_nodes(self, a: Analysis, ref: int, parsed: ParsedStatement | None, params: Sequence[Any],
                  hint: Hint | None) -> list[DataNode]:
        name = a.refs[ref].name
        table_rule = self.rule.table_rule(name)
        groups = evaluate(a.conditions.get(ref, ((),)), parsed, params)
        if groups is None:  # provably matches nothing: any one node answers that
            return [table_rule.data_nodes[0]]
        if not groups and hint is None:
            every = self._every.get(name)
            if every is None:
                every = self._every[name] = self._routed(table_rule.route(groups, None), table_rule.data_nodes)
            return list(every)
        return self._routed(table_rule.route(groups, hint), table_rule.data_nodes)

    @staticmethod
    def _routed(nodes: list[DataNode], data_nodes: Sequence[DataNode]) -> list[DataNode]:
        if len(nodes) > 1:
            nodes = _dedupe(nodes)
        return nodes or [data_nodes[0]]

    def route(self, a: Analysis, parsed: ParsedStatement | None, params: Sequence[Any], hint: Hint | None) -> Routing:
        rule = self.rule
        if a.write_error is not None:
            raise a.write_error
        if a.insert is not None:
            return self._insert(a, parsed, params, hint)
        write = a.statement in ("insert", "update", "delete", "ddl", "merge")
        if not a.sharded:
            return Routing(self._unsharded(a, write))
        if a.statement == "ddl":
            return self._ddl(a)
        if a.statement == "other":  # DESCRIBE, SHOW ... FROM t: every actual table answers the same
            first = a.refs[a.sharded[0]].name
            node = rule.table_rule(first).data_nodes[0]
            return Routing([Target(node.data_source, {first: node.table})])
        if len(a.sharded) == 1 and not a.singles and not a.sets:
            # The common case (one sharded table): no pairing, no single-table data source to agree with.
            ref = a.sharded[0]
            found = self.ref_nodes(a, ref, parsed, params, hint)
            name = a.refs[ref].name
            if len(found) > 1 and a.multi_error is not None:
                raise a.multi_error
            return Routing([Target(n.data_source, {name: n.table}) for n in found], multi=len(found) > 1)
        nodes = {i: self.ref_nodes(a, i, parsed, params, hint) for i in a.sharded}
        if a.sets:
            self._check_sets(a, nodes, parsed, params, hint)
        # One data node for every table: the statement runs there whole.
        names = {a.refs[i].name for i in a.sharded}
        per_name: dict[str, set[DataNode]] = {}
        for i, ns in nodes.items():
            per_name.setdefault(a.refs[i].name, set()).update(ns)
        if all(len(ns) == 1 for ns in per_name.values()):
            chosen = {name: next(iter(ns)) for name, ns in per_name.items()}
            sources = {n.data_source for n in chosen.values()} | {rule.single_data_source(s) for s in a.singles}
            if len(sources) == 1:
                return Routing([Target(sources.pop(), {name: n.table for name, n in chosen.items()})])
        if a.multi_error is not None:
            raise a.multi_error
        assert a.primary is not None
        primary = a.refs[a.primary].name
        targets: list[Target] = []
        for node in nodes[a.primary]:
            mapping = {primary: node.table}
            for name in names - {primary}:
                mapping[name] = rule.bound_node(primary, node, name).table
            targets.append(Target(node.data_source, mapping))
        if a.singles:
            single_sources = {rule.single_data_source(s) for s in a.singles}
            if len(single_sources) > 1 or any(t.data_source not in single_sources for t in targets):
                raise unsupported("join of single tables with sharded tables on other data sources",
                                  [*sorted(names), *a.singles], "a statement runs on one data source at a time")
        return Routing(targets, multi=len(targets) > 1)

    def _unsharded(self, a: Analysis, write: bool) -> list[Target]:
        rule = self.rule
        if a.singles:
            sources = {rule.single_data_source(s) for s in a.singles}
            if len(sources) > 1:
                raise unsupported("join of single tables on different data sources", a.singles,
                                  "a statement runs on one data source at a time")
            return [Target(sources.pop())]
        if a.broadcast:
            if write or a.statement == "ddl":
                return [Target(ds) for ds in rule.data_sources]
            return [Target(rule.data_sources[0])]
        return [Target(rule.default_data_source)]

    def _ddl(self, a: Analysis) -> Routing:
        rule = self.rule
        if a.extra.get("drop_index_without_table"):
            raise unsupported("DROP INDEX without ON <table>", sorted({a.refs[i].name for i in a.sharded}),
                              "the index's table must be named")
        assert a.sharded
        primary = a.refs[a.sharded[0]].name
        table_rule = rule.table_rule(primary)
        names = {a.refs[i].name for i in a.sharded}
        targets = []
        for node in table_rule.data_nodes:
            mapping = {primary: node.table}
            for name in names - {primary}:
                if not rule.are_bound(primary, name):
                    raise unsupported("DDL naming several sharded tables that are not bound", sorted(names),
                                      "each actual table can only reference its bound partner")
                mapping[name] = rule.bound_node(primary, node, name).table
            targets.append(Target(node.data_source, mapping))
        return Routing(targets, multi=len(targets) > 1)

    def _insert(self, a: Analysis, parsed: ParsedStatement | None, params: Sequence[Any], hint: Hint | None) \
            -> Routing:
        info = a.insert
        assert info is not None
        table_rule = self.rule.table_rule(info.logic)
        keys: list[Any] = []
        by_node: dict[DataNode, list[int]] = {}
        for r, row in enumerate(info.rows):
            values: dict[str, Any] = {c: None for c in info.missing}
            for column, slot in row:
                value = slot.evaluate(parsed, params) if slot is not None else UNKNOWN
                if value is UNKNOWN:
                    raise unsupported("INSERT with a computed sharding value", [info.logic],
                                      f"{column} must be a literal or a parameter")
                values[column] = value
            if info.generate_key is not None:
                key = table_rule.next_key()
                keys.append(key)
                if info.generate_key in table_rule.sharding_columns:
                    values[info.generate_key] = key
            node = table_rule.route_value(values, hint)
            by_node.setdefault(node, []).append(r)
        if a.singles:
            sources = {self.rule.single_data_source(s) for s in a.singles}
            if any(n.data_source not in sources for n in by_node):
                raise unsupported("INSERT reading single tables on other data sources", [info.logic, *a.singles],
                                  "a statement runs on one data source at a time")
        targets = [Target(n.data_source, {info.logic: n.table}, rows) for n, rows in by_node.items()]
        return Routing(targets, tuple(keys), multi=len(targets) > 1)

    def _check_sets(self, a: Analysis, nodes: dict[int, list[DataNode]], parsed: ParsedStatement | None,
                    params: Sequence[Any], hint: Hint | None) -> None:
        """An UPDATE may set a sharding column only to a value that routes to the very nodes its WHERE does."""
        ref = a.refs[0].index
        table = a.refs[0].name
        table_rule = self.rule.table_rule(table)
        where_nodes = set(nodes[ref])
        changed = [s for s in a.sets if not s.same]
        if not changed:
            return
        for s in changed:
            value = s.slot.evaluate(parsed, params) if s.slot is not None else UNKNOWN
            if value is UNKNOWN:
                raise column_update(table, s.column, "the new value is not a literal or a parameter, so dbmesh "
                                    "cannot prove the row stays on its data node")
        groups = evaluate(a.conditions.get(ref, ((),)), parsed, params)
        if groups is None:
            return  # the WHERE matches nothing: no row moves
        base = groups or [ConditionGroup({})]
        new_groups = []
        for g in base:
            columns = dict(g.columns)
            for s in changed:
                assert s.slot is not None
                columns[s.column] = Values((s.slot.evaluate(parsed, params),))
            new_groups.append(ConditionGroup(columns))
        new_nodes = set(table_rule.route(new_groups, hint))
        if new_nodes != where_nodes:
            column = changed[0].column
            raise column_update(table, column, "the new value routes to other data nodes than the rows it updates")
