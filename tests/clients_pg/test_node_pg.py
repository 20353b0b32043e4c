"""Node's node-postgres ("pg") through dbmesh: unnamed (extended protocol with parameters, simple without)
and named prepared statements, transactions, errors with their fields, notices, logins (SCRAM, md5,
password), TLS — each compared with the same steps sent to PostgreSQL directly. The scenario runs in
node_pg_matrix.js (one node process); the tests below assert on its output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clients_pg.common import (
    BINARY,
    EMOJI_TEXT,
    TX_TABLE_DDL,
    Endpoint,
    crud_steps,
    dollar,
    dumps,
    table_ddl,
)
from tests.clients_pg.conftest import SELFCHECK

HERE = Path(__file__).parent
NODE_MODULES = HERE.parent / "clients" / "node" / "node_modules"
TABLE = "t_node_pg"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def _ep(ep: Endpoint) -> dict[str, Any]:
    return {"host": ep.host, "port": ep.port, "user": ep.user, "password": ep.password, "database": ep.database}


@pytest.fixture(scope="module")
def matrix(pg_direct: Endpoint, pg_proxy: Endpoint) -> Any:
    if not (NODE_MODULES / "pg").is_dir():
        pytest.fail(f"node-postgres is not installed: run `npm ci` in {NODE_MODULES.parent}")
    def param(v: Any) -> Any:  # int8 beyond 2**53 as text: a JSON number would reach node as a double
        return str(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53 else v

    steps = [{"label": s.label, "sql": dollar(s.sql),
              "params": [param(v) for v in s.params] if s.params is not None else None} for s in crud_steps(TABLE)]
    cfg = {"direct": _ep(pg_direct), "proxy": _ep(pg_proxy), "table": TABLE, "steps": steps,
           "ddl": {"drop": f"DROP TABLE IF EXISTS {TABLE}", "create": table_ddl(TABLE)},
           "txDdl": TX_TABLE_DDL.format(t=TABLE), "logins": not SELFCHECK}
    proc = subprocess.run(["node", str(HERE / "node_pg_matrix.js")], input=dumps(cfg), capture_output=True,
                          text=True, timeout=120, check=False, env=dict(os.environ, NODE_PATH=str(NODE_MODULES)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _paths(direct: Any, proxied: Any, path: str = "") -> list[str]:
    if isinstance(direct, dict) and isinstance(proxied, dict):
        return [line for k in sorted(set(direct) | set(proxied))
                for line in _paths(direct.get(k), proxied.get(k), f"{path}.{k}")]
    if isinstance(direct, list) and isinstance(proxied, list) and len(direct) == len(proxied):
        return [line for i, (a, b) in enumerate(zip(direct, proxied, strict=True)) for line in _paths(a, b, f"{path}[{i}]")]
    return [] if direct == proxied else [f"{path}: {direct!r:.160} -> {proxied!r:.160}"]


@pytest.mark.parametrize("key", ["crud query", "crud named", "crud named again"])
def test_crud_matches_direct(matrix: Any, key: str) -> None:
    direct, proxied = matrix["direct"][key], matrix["dbmesh"][key]
    o = {s["label"]: s for s in proxied}
    assert o["insert 3 rows returning"].get("rows") == [[1], [2], [3]], o["insert 3 rows returning"]
    assert (o["insert 1 row"]["command"], o["insert 1 row"]["rowCount"]) == ("INSERT", 1)
    rows = o["select all"]["rows"]
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows[0][5] == EMOJI_TEXT and rows[0][6] == {"hex": BINARY.hex()} and rows[0][2] == "9223372036854775807"
    assert all(v is None for v in rows[1][1:])
    assert [f[1] for f in o["select all"]["fields"]] == [23, 23, 20, 1700, 701, 25, 17, 1082, 1114, 1184, 1186,
                                                         2950, 3802, 1007, 1009, 16]
    assert [r[0] for r in o["select where params"]["rows"]] == [1, 4]
    assert o["update 2 rows"]["rowCount"] == 2 and o["update no match"]["rowCount"] == 0
    dup = o["duplicate key"]["error"]
    assert (dup["code"], dup["detail"], dup["constraint"]) == ("23505", "Key (i4)=(2147483647) already exists.",
                                                                "t_node_pg_i4_key")
    assert (o["missing table"]["error"]["code"], o["missing table"]["error"]["position"]) == ("42P01", "15")
    assert o["division by zero"]["error"]["code"] == "22012"
    assert o["syntax error"]["error"]["code"] == "42601"
    assert o["after errors"]["rows"] == [["still usable"]]
    assert o["delete 1 row"]["rowCount"] == 1
    diffs = [f"step {d['label']!r}: " + "; ".join(_paths(d, p)) for d, p in zip(direct, proxied, strict=True)
             if p != d]
    assert diffs == [], f"node-postgres {key}: {len(diffs)} step(s) differ from PostgreSQL direct\n" + "\n".join(diffs)


def test_transactions_and_notices(matrix: Any) -> None:
    assert matrix["dbmesh"]["transactions"] == matrix["direct"]["transactions"]
    assert dict(map(tuple, matrix["dbmesh"]["transactions"])) == {
        "after commit, other": ["committed"],
        "inside": ["committed", "rolled back"],
        "inside, other": ["committed"],
        "error in tx": "22012",
        "after error in tx": "25P02",
        "after rollback": ["committed"],
        "after rollback, other": ["committed"],
        "notices": [["NOTICE", "00000", "hi"]],
    }


def test_logins(matrix: Any, require_dbmesh: None) -> None:
    c = matrix["logins"]
    ok = [{"one": 1}]
    for name in ("root", "md5", "password"):
        assert c[name] == {"rows": ok, "tls": False}, (name, c[name])
    for name in ("root tls", "md5 tls"):
        assert c[name] == {"rows": ok, "tls": True}, (name, c[name])
    for name in ("wrong root", "wrong md5", "wrong password"):
        assert c[name]["error"]["code"] == "28P01", (name, c[name])
