"""The planner: parse a statement (shape cache), route it with the sharding rule, rewrite it per route unit, and
return a frozen Plan (see dbmesh.kernel.plan).

Fast path. Everything that depends only on a statement's shape (kind, tables, which literal or parameter slots
feed which sharding condition, INSERT rows, where the logic table names sit in the text) is analysed once per
parse-cache template and kept. A repeated statement then costs the parse cache lookup, the evaluation of a few
slots, the rule's routing, and, when no tree rewrite is needed (one unit; or DML/DDL/plain SELECT fanned out),
a splice of actual table names into the client's own text. A multi-node SELECT that needs derived columns or
LIMIT rewriting keeps its whole rewrite per shape when its literals allow it (rewrite/scatter.py): the merge facts
and the shard SQL with holes for table names, literals and the shard LIMIT, filled per statement. Other statements
(INSERT splitting, generated keys, shapes outside what scatter proves) are rewritten on sqlglot trees, generated
once for all units when they rename the same tables (rewrite/template.py), else once per unit. Statements with
parameter values also keep their marked text and parse per exact text.

Point statements go faster still (kernel/point.py): a statement on one sharded table whose only sharding condition
is `column = integer literal or parameter` is answered without the parse cache, from routes the general path's own
plans taught per shape and per point key of the rule; `plan_point` is that path alone.

>>> from dbmesh.config import load_config
>>> from dbmesh.sharding.rule import sharding_rule_for
>>> config = load_config("rules/sharding-mysql")
>>> planner = Planner(sharding_rule_for(config, config.databases["sharding_db"]), "mysql")
>>> plan = planner.plan("SELECT * FROM t_order WHERE user_id = 1 AND order_id = ?", [3])
>>> [(u.data_source, u.sql, u.params) for u in plan.units], plan.merge
([('ds_1', 'SELECT * FROM t_order_1 WHERE user_id = 1 AND order_id = ?', (3,))], None)
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from dbmesh.kernel.hint import merge_hints, parse_hint
from dbmesh.kernel.parse import ParseCache, ParsedStatement, SqlParseError, mark_parameters
from dbmesh.kernel.plan import MergeSpec, Plan, RouteUnit
from dbmesh.kernel.point import (
    MAX_POINT_TEXT,
    ParamPoint,
    PointFacts,
    TextPoint,
    point_facts,
    shape_key,
    split_literals,
)
from dbmesh.kernel.rewrite.generated_keys import add_generated_key
from dbmesh.kernel.rewrite.index_names import actual_index_name, rename_index
from dbmesh.kernel.rewrite.insert_rows import keep_rows
from dbmesh.kernel.rewrite.pagination import PaginationError, paginate
from dbmesh.kernel.rewrite.projections import plan_projections
from dbmesh.kernel.rewrite.scatter import (
    ScatterShape,
    build_scatter_shape,
    markable,
    scatter_merge,
    scatter_units,
)
from dbmesh.kernel.rewrite.tables import rename_tables
from dbmesh.kernel.rewrite.template import markers, split_markers, table_fills
from dbmesh.kernel.rewrite.text import render_markers, restore_markers, splice
from dbmesh.kernel.route.analysis import Analysis, Analyzer
from dbmesh.kernel.route.engine import Router, Routing, Target
from dbmesh.kernel.route.errors import syntax, unsupported
from dbmesh.kernel.route.protocols import ShardingRuleLike
from dbmesh.sharding.conditions import Hint

__all__ = ["Planner"]


_PG_MAINTENANCE = re.compile(
    r"^\s*(?P<head>(?:VACUUM|ANALYZE|ANALYSE)(?:\s*\([^)]*\))?(?:\s+(?:FULL|FREEZE|VERBOSE|ANALYZE|ANALYSE))*)"
    r"(?P<tables>(?:\s+[^;]*)?)\s*;?\s*$", re.I | re.S)
_MYSQL_MAINTENANCE = re.compile(
    r"^\s*(?P<head>(?:ANALYZE|OPTIMIZE|CHECK|REPAIR)(?:\s+(?:NO_WRITE_TO_BINLOG|LOCAL))?\s+TABLES?)"
    r"(?P<tables>\s+[^;]*?)\s*;?\s*$", re.I | re.S)
_V = TypeVar("_V")
_PLAIN_NAME = re.compile(r'^(?:"[^"]+"|`[^`]+`|[A-Za-z_][A-Za-z0-9_$]*)$')


class _Shape:
    """What the planner keeps per parse-cache template: the analysis, the multi-node SELECT rewrite once tried
    and the point facts once looked for (None: not yet; False: the shape does not qualify)."""

    __slots__ = ("analysis", "point", "scatter", "tree")

    def __init__(self, tree: exp.Expr, analysis: Analysis) -> None:
        self.tree = tree
        self.analysis = analysis
        self.scatter: ScatterShape | Literal[False] | None = None
        self.point: PointFacts | Literal[False] | None = None


class Planner:
    """Plans statements of one logical database and dialect against its sharding rule."""

    def __init__(self, rule: ShardingRuleLike, dialect: Literal["mysql", "postgres"],
                 cache: ParseCache | None = None, *, point_fast_path: bool = True) -> None:
        self.rule = rule
        self.dialect = dialect
        self.cache = cache if cache is not None else ParseCache()
        self._analyzer = Analyzer(rule, dialect)
        self._router = Router(rule)
        # Analyses by parse-cache template (identity checked: ids of evicted templates may be reused).
        self._shapes: OrderedDict[int, _Shape] = OrderedDict()
        self._max_shapes = self.cache.max_entries
        # Statements with parameter values (prepared or extended protocol) repeat their text exactly: the text with
        # its parameters marked, and its parse (immutable: a shared template and this text's literals), by text.
        self._parameterized: OrderedDict[str, tuple[str, ParsedStatement]] = OrderedDict()
        self._routes_tables = bool(rule.tables) or bool(rule.broadcast_tables)
        # Point statements (kernel.point): text-form shapes by shape key, parameter-form statements by exact text.
        # A None entry: a statement of a point shape that the form does not take (or whose learning failed).
        self._point_fast_path = point_fast_path
        self._text_points: dict[str, TextPoint | None] = {}
        self._param_points: dict[str, ParamPoint | None] = {}

    # ------------------------------------------------------------------------------------------------- API

    def plan(self, sql: str, params: Sequence[Any] = (), hint: Hint | None = None) -> Plan:
        """Route and rewrite one statement. `params` are the values of its placeholders (MySQL `?`, PostgreSQL
        `$n`), if any; `hint` is the session's hint (a SHARDINGSPHERE_HINT comment in `sql` overrides it)."""
        parts = None
        if hint is None and self._point_fast_path:
            if not params and len(sql) <= MAX_POINT_TEXT:
                parts = split_literals(sql)  # for the text form here and the parse cache below
            plan = self.plan_point(sql, params, parts)
            if plan is not None:
                return plan
        return self._plan(sql, params, hint, parts)

    def plan_point(self, sql: str, params: Sequence[Any] = (), parts: list[str] | None = None) -> Plan | None:
        """The plan of a point statement from what earlier statements of its shape taught (kernel.point): the
        plan `plan(sql, params)` gives without a hint, or None when the fast path does not answer this statement.
        `parts`: `split_literals(sql)`, when the caller has it."""
        if params:
            param_point = self._param_points.get(sql)
            return param_point.plan(params) if param_point is not None else None
        if len(sql) > MAX_POINT_TEXT:
            return None  # not worth splitting (an INSERT of many rows, say): the general path's
        if parts is None:
            parts = split_literals(sql)
        if len(parts) == 1:
            return None
        text_point = self._text_points.get(shape_key(parts))
        if text_point is None or len(parts) != text_point.n_parts:
            return None
        return text_point.plan(sql, parts)

    def _plan(self, sql: str, params: Sequence[Any], hint: Hint | None, parts: list[str] | None = None) -> Plan:
        """The general path. `parts`: `split_literals(sql)`, when the caller has it (a statement without
        parameters)."""
        learn = hint is None and self._point_fast_path
        dialect = self.dialect
        if "SHARDINGSPHERE_HINT" in sql:
            hint = merge_hints(hint, parse_hint(sql))
        values = tuple(params)
        memo = self._parameterized.get(sql) if values else None
        if memo is not None:
            # A prepared statement's text again: its marked text and parse are those of last time.
            self._parameterized.move_to_end(sql)
            text, parsed = memo
        else:
            maintenance = self._maintenance(sql)
            if maintenance is not None:
                return maintenance
            text = sql
            if values:
                try:
                    text, _ = mark_parameters(sql, dialect)
                except (SqlParseError, ValueError) as error:
                    raise syntax(str(error)) from error
            try:
                parsed = self.cache.get(text, dialect, parts if text is sql else None)
            except SqlParseError as error:
                if not self._routes_tables:
                    return Plan("other", (RouteUnit(self.rule.default_data_source, sql, values),))
                raise syntax(str(error.args_map.get("detail", error))) from error
            if values and parsed.cached:
                self._parameterized[sql] = (text, parsed)
                if len(self._parameterized) > self._max_shapes:
                    self._parameterized.popitem(last=False)
            split = self._split_multi_table_ddl(parsed.tree, values, hint)
            if split is not None:
                return split
        shape = self._shape(parsed, text)
        a = shape.analysis
        if hint is not None and hint.data_source is not None:
            # ShardingSphere's dataSourceName hint: the statement goes there as written.
            return Plan(a.kind, (RouteUnit(hint.data_source, sql, values),), tables=a.tables)
        routing = self._router.route(a, parsed, values, hint)
        if hint is not None and hint.skip_sql_rewrite:
            return self._unrewritten(a, routing, sql, values)
        if a.statement == "select" and routing.multi:
            units, merge = self._select_units(shape, routing, parsed, text, values)
            return Plan(a.kind, units, merge, tables=a.tables)
        if a.insert is not None and (routing.multi or routing.generated_keys):
            return Plan(a.kind, self._insert_units(a, routing, parsed, values), None, routing.generated_keys,
                        a.tables)
        targets = routing.targets
        if len(targets) > 1 and targets[0].tables and a.spans is None and not (a.index_ddl and a.sharded) \
                and _uniform(targets):
            units = self._tree_units(parsed.bound(), targets, values, markable(parsed, text))
        else:
            units = tuple(self._renamed(a, t, parsed, text, sql, values) for t in targets)
        plan = Plan(a.kind, units, None, routing.generated_keys, a.tables)
        if learn and len(units) == 1 and shape.point is not False and not routing.generated_keys:
            self._learn_point(shape, parsed, sql, values, plan)
        return plan

    def _maintenance(self, sql: str) -> Plan | None:
        """VACUUM / ANALYZE (PostgreSQL) and ANALYZE / OPTIMIZE / CHECK / REPAIR TABLE (MySQL), which sqlglot
        does not parse: each named table's actual tables get the same command on their data sources; without
        a table list every data source gets it as written."""
        m = (_PG_MAINTENANCE if self.dialect == "postgres" else _MYSQL_MAINTENANCE).match(sql)
        if m is None:
            return None
        head, names_text = m.group("head"), m.group("tables").strip()
        if not names_text:
            return Plan("other", tuple(RouteUnit(ds, sql) for ds in self.rule.data_sources))
        units: list[RouteUnit] = []
        logic: list[str] = []
        for raw in names_text.split(","):
            name = raw.strip()
            if not _PLAIN_NAME.match(name):
                raise unsupported(f"{head.split()[0].upper()} of {name!r}", [name],
                                  "only plain table names can be routed (no column lists or schemas)")
            bare = name.strip('"`')
            table_rule = self.rule.table_rule(bare)
            if table_rule is not None:
                for node in table_rule.data_nodes:
                    units.append(RouteUnit(node.data_source, f"{head} {node.table}", (), ((node.table, bare),)))
            elif self.rule.is_broadcast(bare):
                units.extend(RouteUnit(ds, f"{head} {name}") for ds in self.rule.data_sources)
            else:
                units.append(RouteUnit(self.rule.single_data_source(bare), f"{head} {name}"))
            logic.append(bare)
        return Plan("other", tuple(units), None, (), tuple(logic))

    def _split_multi_table_ddl(self, tree: exp.Expr, values: tuple[Any, ...], hint: Hint | None) -> Plan | None:
        """TRUNCATE / DROP TABLE naming several tables that live in different places (e.g. a sharded table and
        single tables, as `pgbench -i` truncates): one statement per table, each routed on its own, so every
        data source gets only the tables it holds. None when the statement names one table."""
        if values or (hint is not None and hint.data_source is not None):
            return None
        if isinstance(tree, exp.TruncateTable):
            key = "expressions"
        elif isinstance(tree, exp.Drop) and str(tree.args.get("kind") or "").upper() == "TABLE":
            key = "tables"
        else:
            return None
        tables = tree.args.get(key) or []
        if len(tables) < 2:
            return None
        units: list[RouteUnit] = []
        names: list[str] = []
        for table in tables:
            one = tree.copy()
            one.set(key, [table.copy()])
            plan = self.plan(one.sql(self.dialect), (), hint)
            units.extend(plan.units)
            names.extend(plan.tables)
        return Plan("ddl", tuple(units), None, (), tuple(dict.fromkeys(names)))

    # ----------------------------------------------------------------------------------------- analysis

    def _shape(self, parsed: ParsedStatement, text: str) -> _Shape:
        """The analysis of the statement's shape (kept per parse-cache template, identity checked: ids of evicted
        templates may be reused)."""
        tree = parsed.tree
        key = id(tree)
        entry = self._shapes.get(key)
        if entry is not None and entry.tree is tree:
            self._shapes.move_to_end(key)
            return entry
        try:
            positioned: exp.Expr | None = sqlglot.parse_one(text, read=self.dialect)
        except SqlglotError:  # pragma: no cover - the parse cache parsed the same text
            positioned = None
        literal_spans = [(lit.start, lit.start + len(lit.text)) for lit in parsed.literals]
        entry = _Shape(tree, self._analyzer.analyse(tree, text, positioned, literal_spans))
        if parsed.cached:
            self._shapes[key] = entry
            if len(self._shapes) > self._max_shapes:
                self._shapes.popitem(last=False)
        return entry

    def _learn_point(self, shape: _Shape, parsed: ParsedStatement, sql: str, values: tuple[Any, ...],
                     plan: Plan) -> None:
        """Let the point fast path learn from a single-unit plan of the general path (kernel.point)."""
        facts = shape.point
        if facts is None:
            facts = shape.point = point_facts(shape.analysis, self.rule) or False
        if facts is False or "SHARDINGSPHERE_HINT" in sql:
            return
        if values:
            param_point = self._param_points.get(sql)
            if param_point is None:
                if sql in self._param_points:
                    return
                param_point = ParamPoint.of(facts, sql, self.dialect)
                _bounded_put(self._param_points, sql, param_point, self._max_shapes)
                if param_point is None:
                    return
            param_point.learn(values, plan)
            if param_point.dead:  # pragma: no cover - see ParamPoint.learn
                self._param_points[sql] = None
            return
        key = shape_key(split_literals(sql))
        text_point = self._text_points.get(key)
        if text_point is None:
            if key in self._text_points:
                return
            text_point = TextPoint.of(facts, parsed, sql)
            _bounded_put(self._text_points, key, text_point, self._max_shapes)
            if text_point is None:
                return
        text_point.learn(sql, plan)
        if text_point.dead:  # pragma: no cover - see TextPoint.learn
            self._text_points[key] = None

    # -------------------------------------------------------------------------------------------- units

    @staticmethod
    def _pairs(target: Target) -> tuple[tuple[str, str], ...]:
        return tuple((actual, logic) for logic, actual in target.tables.items())

    def _renamed(self, a: Analysis, target: Target, parsed: ParsedStatement, text: str, sql: str,
                 values: tuple[Any, ...]) -> RouteUnit:
        """A unit whose SQL is the client's with logic tables renamed (in the text itself when possible)."""
        if not target.tables:
            return RouteUnit(target.data_source, sql, values)
        if a.spans is not None:
            literals = parsed.literals
            edits: list[tuple[int, int, str]] = []
            for span in a.spans:
                base = literals[span.anchor - 1].start + len(literals[span.anchor - 1].text) if span.anchor else 0
                actual = target.tables[span.logic]
                name = actual if span.kind == "table" else actual_index_name(span.name, actual)
                start = base + span.delta
                edits.append((start, start + span.length, f"{span.quote}{name}{span.quote}"))
            return RouteUnit(target.data_source, restore_markers(splice(text, edits), self.dialect), values,
                             self._pairs(target))
        tree = rename_tables(parsed.bound(), target.tables)
        if a.index_ddl and a.sharded:
            tree = rename_index(tree, target.tables[a.refs[a.sharded[0]].name])
        out, unit_values = render_markers(tree.sql(self.dialect), self.dialect, values)
        return RouteUnit(target.data_source, out, unit_values, self._pairs(target))

    def _select_units(self, shape: _Shape, routing: Routing, parsed: ParsedStatement, text: str,
                      values: tuple[Any, ...]) -> tuple[tuple[RouteUnit, ...], MergeSpec]:
        """A multi-node SELECT's units and merge: from the shape's cached rewrite when it has one, else rewritten
        on the tree (and the shape's rewrite built, checked against that result, and kept)."""
        a = shape.analysis
        targets = routing.targets
        logic = tuple(sorted(targets[0].tables))
        uniform = _uniform(targets)
        cached = shape.scatter
        if cached and uniform and cached.logic == logic and cached.n_values == len(values):
            if cached.text is None:
                return tuple(self._renamed(a, t, parsed, text, "", values) for t in targets), scatter_merge(cached,
                                                                                                            None)
            try:
                return scatter_units(cached, parsed, values, self._fill_targets(targets, logic), self.dialect)
            except PaginationError as error:
                raise unsupported("LIMIT/OFFSET", [a.refs[i].name for i in a.sharded], str(error)) from error
        units, merge = self._select_tree_units(a, routing, parsed, text, values)
        if cached is None and uniform and logic and parsed.cached and markable(parsed, text):
            names = [a.refs[i].name for i in a.sharded]
            built = build_scatter_shape(parsed, text, names, logic, self.dialect, values, a.spans is not None)
            if built is not None:
                if built.text is None:
                    same = scatter_merge(built, None) == merge
                else:
                    try:
                        same = scatter_units(built, parsed, values, self._fill_targets(targets, logic),
                                             self.dialect) == (units, merge)
                    except PaginationError:  # pragma: no cover - the tree path read the same values
                        same = False
                if not same:
                    built = None
            shape.scatter = built if built is not None else False
        return units, merge

    def _fill_targets(self, targets: list[Target], logic: tuple[str, ...]) \
            -> list[tuple[str, list[str], tuple[tuple[str, str], ...]]]:
        return [(t.data_source, [t.tables[name] for name in logic], self._pairs(t)) for t in targets]

    def _select_tree_units(self, a: Analysis, routing: Routing, parsed: ParsedStatement, text: str,
                           values: tuple[Any, ...]) -> tuple[tuple[RouteUnit, ...], MergeSpec]:
        names = [a.refs[i].name for i in a.sharded]
        bound = parsed.bound()
        assert isinstance(bound, exp.Select)
        projections = plan_projections(bound, self.dialect, names, values)
        keep_limit = not projections.grouped and not (projections.distinct and projections.derived)
        try:
            page = paginate(projections.tree, self.dialect, values, keep_limit, len(values))
        except PaginationError as error:
            raise unsupported("LIMIT/OFFSET", names, str(error)) from error
        merge = MergeSpec(
            visible=projections.visible, order_by=projections.order_by, group_by=projections.group_by,
            aggregates=projections.aggregates, grouped=projections.grouped,
            shards_sorted_by_group=projections.shards_sorted_by_group, distinct=projections.distinct,
            having=projections.having, offset=page.offset, limit=page.limit)
        paged = bound.args.get("limit") is not None or bound.args.get("offset") is not None
        if not projections.changed and not paged and a.spans is not None:
            units = tuple(self._renamed(a, t, parsed, text, "", values) for t in routing.targets)
            return units, merge
        all_values = values + tuple(page.extra_params)
        return self._tree_units(page.tree, routing.targets, all_values, markable(parsed, text)), merge

    def _tree_units(self, tree: exp.Expr, targets: list[Target], values: tuple[Any, ...], markable: bool) \
            -> tuple[RouteUnit, ...]:
        """One unit per target with `tree`'s logic tables renamed to the target's actual tables. When every
        target renames the same tables (and marker names cannot collide with the statement's text), the tree
        is renamed to markers and generated once, and each unit's SQL is that text with its names filled in."""
        dialect = self.dialect
        logic = tuple(targets[0].tables)
        if markable and len(targets) > 1 and logic and _uniform(targets):
            sql = rename_tables(tree, markers(logic)).sql(dialect)
            out, unit_values = render_markers(sql, dialect, values)
            split = split_markers(out, dialect, len(logic))
            if split is not None:
                return tuple(RouteUnit(t.data_source, split.fill(table_fills([t.tables[n] for n in logic], dialect)),
                                       unit_values, self._pairs(t)) for t in targets)
        units = []
        for target in targets:
            sql = rename_tables(tree, target.tables).sql(dialect)
            out, unit_values = render_markers(sql, dialect, values)
            units.append(RouteUnit(target.data_source, out, unit_values, self._pairs(target)))
        return tuple(units)

    def _insert_units(self, a: Analysis, routing: Routing, parsed: ParsedStatement,
                      values: tuple[Any, ...]) -> tuple[RouteUnit, ...]:
        info = a.insert
        assert info is not None
        tree: exp.Expr = parsed.bound()
        if info.generate_key is not None and routing.generated_keys:
            tree = add_generated_key(tree, info.generate_key, routing.generated_keys)
        units = []
        for target in routing.targets:
            unit_tree = keep_rows(tree, target.rows) if routing.multi and target.rows is not None else tree
            sql = rename_tables(unit_tree, target.tables).sql(self.dialect)
            out, unit_values = render_markers(sql, self.dialect, values)
            units.append(RouteUnit(target.data_source, out, unit_values, self._pairs(target)))
        return tuple(units)

    def _unrewritten(self, a: Analysis, routing: Routing, sql: str, values: tuple[Any, ...]) -> Plan:
        """skipSQLRewrite: the statement as written, once per data source the route reaches."""
        sources: list[str] = []
        for t in routing.targets:
            if t.data_source not in sources:
                sources.append(t.data_source)
        if len(sources) > 1 and a.statement == "select":
            raise unsupported("skipSQLRewrite", [a.refs[i].name for i in a.sharded],
                              "an unrewritten SELECT on several data sources cannot be merged")
        units = tuple(RouteUnit(ds, sql, values) for ds in sources)
        return Plan(a.kind, units, None, routing.generated_keys, a.tables)


def _bounded_put(cache: dict[str, _V], key: str, value: _V, limit: int) -> None:
    """Insert into a dict kept to `limit` entries by dropping the oldest (a miss only costs the general path)."""
    if len(cache) >= limit:
        del cache[next(iter(cache))]
    cache[key] = value


def _uniform(targets: list[Target]) -> bool:
    """Every target renames the same logic tables."""
    first = targets[0].tables.keys()
    return all(t.tables.keys() == first for t in targets)
