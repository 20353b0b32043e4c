"""Node's mysql2 through dbmesh: ``query`` (text protocol) and ``execute`` (prepared statements), each
compared with the same steps sent to MariaDB directly. The scenario lives in node/mysql2_matrix.js and
runs once per test session (it is one node process); the tests below assert on its output."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clients.common import Endpoint, table_ddl

NODE_DIR = Path(__file__).parent / "node"
TABLE = "t_node_mysql2"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def _ep(ep: Endpoint) -> dict[str, Any]:
    return {"host": ep.host, "port": ep.port, "user": ep.user, "password": ep.password, "database": ep.database}


@pytest.fixture(scope="module")
def matrix(direct: Endpoint, proxy: Endpoint, sha2_proxy: Endpoint, proxy_ca_file: str,
           mariadb: Any) -> Any:
    if not (NODE_DIR / "node_modules" / "mysql2").is_dir():
        pytest.fail(f"mysql2 is not installed: run `npm ci` in {NODE_DIR} (scripts/install.sh does)")
    cfg = {
        "direct": _ep(direct), "proxy": _ep(proxy), "sha2": _ep(sha2_proxy), "caFile": proxy_ca_file,
        "table": TABLE,
        "ddl": {"drop": f"DROP TABLE IF EXISTS {TABLE}", "create": table_ddl(TABLE)},
        "largeDdl": {"drop": f"DROP TABLE IF EXISTS {TABLE}",
                     "create": f"CREATE TABLE {TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, bl LONGBLOB, i INT)"},
    }
    try:
        proc = subprocess.run(["node", "mysql2_matrix.js"], input=json.dumps(cfg), capture_output=True, text=True,
                              cwd=NODE_DIR, timeout=120, check=False)
    finally:
        mariadb.execute(f"DROP TABLE IF EXISTS {TABLE}", "dbmesh_test")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _paths(direct: Any, proxied: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as 'path: direct -> dbmesh' lines."""
    if isinstance(direct, dict) and isinstance(proxied, dict):
        return [line for k in sorted(set(direct) | set(proxied))
                for line in _paths(direct.get(k), proxied.get(k), f"{path}.{k}")]
    if isinstance(direct, list) and isinstance(proxied, list) and len(direct) == len(proxied):
        return [line for i, (a, b) in enumerate(zip(direct, proxied, strict=True)) for line in _paths(a, b, f"{path}[{i}]")]
    return [] if direct == proxied else [f"{path}: {direct!r:.120} -> {proxied!r:.120}"]


def _by_label(trace: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["label"]: s for s in trace}


@pytest.mark.parametrize("kind", ["query", "execute"])
@pytest.mark.parametrize("flags", ["+FOUND_ROWS", "-FOUND_ROWS"])
def test_crud_matches_direct(matrix: Any, kind: str, flags: str) -> None:
    key = f"crud {kind} {flags}"
    direct, proxied = matrix["direct"][key], matrix["dbmesh"][key]
    diffs = [f"step {d['label']!r}: " + "; ".join(_paths(d, p)) for d, p in zip(direct, proxied, strict=True) if p != d]
    o = _by_label(proxied)
    assert (o["insert 2"]["affectedRows"], o["insert 2"]["insertId"]) == (2, 1)
    rows = o["select all"]["rows"]
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["vc"] == "héllo wörld 😀 — ✓ 中文" and rows[0]["bu"] == "18446744073709551615"
    assert rows[0]["bl"]["hex"] == (bytes(range(256)) + b"\x00\xff\x00").hex()
    assert all(v is None for k, v in rows[1].items() if k != "id")
    assert [r["id"] for r in o["select by null param"]["rows"]] == [2]
    assert o["update"]["affectedRows"] == (2 if flags == "+FOUND_ROWS" else 1)
    assert o["insert ignore"]["warningStatus"] == 1
    assert o["show warnings"]["rows"][0]["Code"] == 1265
    assert (o["missing table"]["error"]["errno"], o["missing table"]["error"]["sqlState"]) == (1146, "42S02")
    assert (o["duplicate"]["error"]["errno"], o["duplicate"]["error"]["sqlState"]) == (1062, "23000")
    assert (o["syntax"]["error"]["errno"], o["syntax"]["error"]["sqlState"]) == (1064, "42000")
    assert o["delete"]["affectedRows"] == 1
    assert o["count"]["rows"] == [{"n": "2"}]  # COUNT(*) is BIGINT: a string with bigNumberStrings
    assert diffs == [], f"mysql2 {key}: {len(diffs)} step(s) differ from MariaDB direct\n" + "\n".join(diffs)


def test_large_parameters_match_direct(matrix: Any) -> None:
    assert matrix["dbmesh"]["large"] == matrix["direct"]["large"]
    o = _by_label(matrix["dbmesh"]["large"])
    assert o["insert large execute"]["affectedRows"] == 1 and o["insert large query"]["affectedRows"] == 1
    assert [(r["id"], r["n"]) for r in o["read back"]["rows"]] == [(1, 2 * 1024 * 1024 + 5), (2, 2 * 1024 * 1024 + 5)]


def test_transactions(matrix: Any) -> None:
    assert matrix["dbmesh"]["transactions"] == matrix["direct"]["transactions"]
    assert dict(map(tuple, matrix["dbmesh"]["transactions"])) == {
        "after commit, other": ["committed"],
        "inside": ["committed", "rolled back"],
        "inside, other": ["committed"],
        "after rollback": ["committed"],
        "after rollback, other": ["committed"],
    }


def test_connections(matrix: Any) -> None:
    c = matrix["connect"]
    ok = [{"one": 1, "db": "dbmesh_test"}]
    assert c["plain root"] == {"rows": ok, "tls": False}
    assert c["tls root"] == {"rows": ok, "tls": True}
    assert c["tls sha2"] == {"rows": ok, "tls": True}
    assert c["plain sha2"] == {"rows": ok, "tls": False}
    for name in ("wrong root", "wrong sha2 tls"):
        assert (c[name]["error"]["errno"], c[name]["error"]["sqlState"]) == (1045, "28000"), c[name]
