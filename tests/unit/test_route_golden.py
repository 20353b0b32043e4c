"""Golden routing cases: tests/fixtures/route/*.yaml (SQL, dialect, parameters, hint) -> kind, route units (data
source, SQL, parameters), key MergeSpec facts and generated keys, or the refusal's error code and message.

Each case file names its rules (a `database-*.yaml` in the same folder, loaded with the real config loader and
rule compiler). Every case is planned twice on the same planner: the second run takes the cached-shape path and
must give the same plan.

Every case is also planned with its literals changed (same shape), on the planner that cached the case's shape and
on a fresh one: the cached rewrite of a shape must plan every statement of the shape as the tree path does.

Regenerate for review with `DBMESH_UPDATE_GOLDEN=1 pytest tests/unit/test_route_golden.py`: the files are
rewritten with what the planner does now; read the diff before committing, every expectation must be right.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from dbmesh.config import load_config
from dbmesh.errors import DbMeshError
from dbmesh.kernel.parse import DECIMAL, INT, STRING, ShapeError, normalize
from dbmesh.kernel.plan import MergeSpec, Plan
from dbmesh.kernel.planner import Planner
from dbmesh.sharding.conditions import Hint
from dbmesh.sharding.rule import sharding_rule_for

FIXTURES = Path(__file__).parent.parent / "fixtures" / "route"
UPDATE = os.environ.get("DBMESH_UPDATE_GOLDEN") == "1"
CONFIG = load_config(FIXTURES)


def _case_files() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("*.yaml") if not p.name.startswith("database-"))


def _planner(rules_file: str, dialect: str) -> Planner:
    name = yaml.safe_load((FIXTURES / rules_file).read_text().split("\n- !", 1)[0])["databaseName"]
    rule = sharding_rule_for(CONFIG, CONFIG.databases[name])
    assert rule is not None
    return Planner(rule, dialect)  # type: ignore[arg-type]


def _hint(spec: dict[str, Any] | None) -> Hint | None:
    if spec is None:
        return None
    return Hint(
        data_source=spec.get("data_source"),
        database_values=MappingProxyType({k: tuple(v) for k, v in (spec.get("database_values") or {}).items()}),
        table_values=MappingProxyType({k: tuple(v) for k, v in (spec.get("table_values") or {}).items()}),
        skip_sql_rewrite=bool(spec.get("skip_sql_rewrite", False)),
    )


def _merge_facts(merge: MergeSpec | None) -> dict[str, Any] | None:
    if merge is None:
        return None
    facts: dict[str, Any] = {"visible": merge.visible}
    if merge.order_by:
        facts["order_by"] = [[k.column, "DESC" if k.descending else "ASC", "NULLS FIRST" if k.nulls_first
                              else "NULLS LAST"] for k in merge.order_by]
    if merge.group_by:
        facts["group_by"] = list(merge.group_by)
    if merge.aggregates:
        facts["aggregates"] = [[a.function, a.column, list(a.sources)] for a in merge.aggregates]
    for flag in ("grouped", "shards_sorted_by_group", "distinct"):
        if getattr(merge, flag):
            facts[flag] = True
    if merge.having is not None:
        facts["having"] = merge.having.sql()
    if merge.offset:
        facts["offset"] = merge.offset
    if merge.limit is not None:
        facts["limit"] = merge.limit
    return facts


def _keyed(sql: str, keys: tuple[Any, ...]) -> str:
    for i, key in enumerate(keys):
        sql = sql.replace(str(key), f"<key{i}>")
    return sql


def _outcome(plan: Plan) -> dict[str, Any]:
    keys = plan.generated_keys
    out: dict[str, Any] = {"kind": plan.kind, "units": [
        {"data_source": u.data_source, "sql": _keyed(u.sql, keys), **({"params": list(u.params)} if u.params else {})}
        for u in plan.units]}
    merge = _merge_facts(plan.merge)
    if merge is not None:
        out["merge"] = merge
    if keys:
        out["generated_keys"] = len(keys)
    return out


def _run(planner: Planner, case: dict[str, Any]) -> dict[str, Any]:
    try:
        plan = planner.plan(case["sql"], case.get("params") or (), _hint(case.get("hint")))
    except DbMeshError as error:
        return {"error": error.entry.code, "message": error.message}
    return _outcome(plan)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and "rules" in data and "cases" in data, path
    return data


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" not in value and (
        value.strip() != value or ": " in value or value[:1] in "'\"[{&*!|>%@`#-?" or "#" in value) else None)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    flat = all(not isinstance(v, (dict, list)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def _regenerate(path: Path) -> None:
    data = _load(path)
    header = "".join(line + "\n" for line in path.read_text().splitlines() if line.startswith("#"))
    planners: dict[str, Planner] = {}
    for case in data["cases"]:
        dialect = case.get("dialect", data.get("dialect", "mysql"))
        planner = planners.setdefault(dialect, _planner(data["rules"], dialect))
        case["expect"] = _run(planner, case)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)
    path.write_text(header + body)


if UPDATE:
    for _path in _case_files():
        _regenerate(_path)


def _cases() -> list[Any]:
    out = []
    for path in _case_files():
        data = _load(path)
        for case in data["cases"]:
            dialect = case.get("dialect", data.get("dialect", "mysql"))
            out.append(pytest.param(data["rules"], dialect, case, id=f"{path.stem}:{case['id']}"))
    return out


_PLANNERS: dict[tuple[str, str], Planner] = {}


@pytest.mark.parametrize(("rules", "dialect", "case"), _cases())
def test_route_golden(rules: str, dialect: str, case: dict[str, Any]) -> None:
    planner = _PLANNERS.setdefault((rules, dialect), _planner(rules, dialect))
    expected = case["expect"]
    assert _run(planner, case) == expected
    # The same statement again: its shape is cached now, and the plan must not change.
    assert _run(planner, case) == expected


def _varied(sql: str, dialect: str, delta: int) -> str | None:
    """`sql` with every integer and decimal literal moved by `delta` and every plain quoted string extended, so
    the statement keeps its shape (same kinds, same quote forms); None when it has no such literal."""
    try:
        literals = normalize(sql, dialect).literals
    except ShapeError:
        return None
    parts: list[str] = []
    last = 0
    changed = False
    for lit in literals:
        if lit.kind == INT:
            new = str(int(lit.text) + delta)
        elif lit.kind == DECIMAL:
            new = str(Decimal(lit.text) + delta)
        elif lit.kind == STRING and lit.prefix in ("'", '"') and not any(c in lit.text[1:-1] for c in "'\\\""):
            new = lit.text[:-1] + f"v{delta}" + lit.text[-1]
        else:
            continue
        parts += [sql[last:lit.start], new]
        last = lit.start + len(lit.text)
        changed = True
    parts.append(sql[last:])
    return "".join(parts) if changed else None


@pytest.mark.parametrize(("rules", "dialect", "case"), _cases())
def test_cached_shape_plans_other_literals_like_a_fresh_planner(rules: str, dialect: str, case: dict[str, Any]) \
        -> None:
    if "generated_keys" in case["expect"]:
        return  # generated keys differ per planner (and route the row)
    shared = _planner(rules, dialect)
    _run(shared, case)
    _run(shared, case)
    varied = 0
    for delta in (1, 6, 1000):
        sql = _varied(case["sql"], dialect, delta)
        if sql is None:
            break
        other = {**case, "sql": sql}
        assert _run(shared, other) == _run(_planner(rules, dialect), other), sql
        varied += 1
    assert varied in (0, 3)


def test_case_ids_are_unique() -> None:
    seen: set[str] = set()
    for path in _case_files():
        for case in _load(path)["cases"]:
            key = f"{path.stem}:{case['id']}"
            assert key not in seen, key
            seen.add(key)
