"""Runs mysql-connector-python scenarios in its pure-Python mode or with its C extension.

Why a child process for the C extension: the ``_mysql_connector`` wheel bundles its own OpenSSL
(``mysql/vendor/libssl.so.3``, needing OPENSSL_3.2+ symbols) and resolves them against whatever
libcrypto the process loaded first. Once ``hashlib``/``ssl`` have loaded the system OpenSSL (3.0 on
Debian 12) — as they have in any pytest process — importing it fails with "version `OPENSSL_3.2.0' not
found", and mysql-connector silently reports ``HAVE_CEXT = False``. So ``drive("cext", ...)`` starts
``python -c "import _mysql_connector; ..."`` (the extension loaded first, before anything else touches
OpenSSL), runs the scenario there and sends the pickled result back; ``drive("pure", ...)`` runs it
in-process. Both run the same functions below, so the two modes see exactly the same statements.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD_BOOT = (
    "import _mysql_connector\n"  # first: see the module docstring
    "import sys\n"
    f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
    "from tests.clients.connector_driver import child_main\n"
    "child_main()\n"
)


def _connect(mode: str, params: dict[str, Any]) -> Any:
    import mysql.connector

    if mode == "cext" and not mysql.connector.HAVE_CEXT:
        raise RuntimeError("mysql-connector C extension requested but not importable")
    conn = mysql.connector.connect(use_pure=(mode == "pure"), **params)
    expected = "CMySQLConnection" if mode == "cext" else "MySQLConnection"
    if type(conn).__name__ != expected:  # never let a silent fallback pass as the other mode
        raise RuntimeError(f"{mode}: got {type(conn).__name__}, expected {expected}")
    return conn


def _run_steps(conn: Any, steps: Any, cursor_kwargs: dict[str, Any]) -> Any:
    import mysql.connector

    from tests.clients.common import run_dbapi_steps

    return run_dbapi_steps(conn, steps, errors=mysql.connector.Error,
                           cursor=lambda c: c.cursor(**cursor_kwargs))


# -- scenarios (each takes the mode and keyword arguments, returns something picklable) -------------------


def scenario_connect(mode: str, params: dict[str, Any]) -> Any:
    conn = _connect(mode, params)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1, DATABASE()")
        rows = cur.fetchall()
        cur.close()
        return {"class": type(conn).__name__, "rows": rows}
    finally:
        conn.close()


def scenario_connect_error(mode: str, params: dict[str, Any]) -> Any:
    import mysql.connector

    from tests.clients.common import error_info

    try:
        conn = _connect(mode, params)
    except mysql.connector.Error as exc:
        return {"error": error_info(exc), "type": type(exc).__name__, "text": str(exc)}
    conn.close()
    return {"error": None}


def scenario_steps(mode: str, params: dict[str, Any], steps: Any, cursor_kwargs: dict[str, Any],
                   client_flags: list[int] | None = None) -> Any:
    if client_flags:
        params = {**params, "client_flags": client_flags}
    conn = _connect(mode, params)
    try:
        return _run_steps(conn, steps, cursor_kwargs)
    finally:
        conn.close()


def scenario_transactions(mode: str, params: dict[str, Any], table: str, cursor_kwargs: dict[str, Any]) -> Any:
    from tests.clients.common import check_transactions

    check_transactions(lambda: _connect(mode, params), table, lambda c, s: _run_steps(c, s, cursor_kwargs))
    return "ok"


def scenario_long_data(mode: str, params: dict[str, Any], table: str, blob: bytes, text: str) -> Any:
    """Prepared INSERT whose parameters are file objects: the connector streams them with
    COM_STMT_SEND_LONG_DATA before COM_STMT_EXECUTE. Then read back through a prepared SELECT."""
    conn = _connect(mode, params)
    try:
        cur = conn.cursor(prepared=True)
        cur.execute(f"INSERT INTO `{table}` (bl, txt, i) VALUES (%s, %s, %s)",
                    (io.BytesIO(blob), io.BytesIO(text.encode("utf-8")), None))
        inserted = (cur.rowcount, cur.lastrowid)
        cur.close()
        cur = conn.cursor(prepared=True)
        cur.execute(f"SELECT id, bl, txt, i, LENGTH(bl) FROM `{table}` WHERE id = %s", (inserted[1],))
        rows = [tuple(bytes(v) if isinstance(v, bytearray) else v for v in r) for r in cur.fetchall()]
        description = cur.description
        cur.close()
        return {"inserted": inserted, "rows": rows, "description": description}
    finally:
        conn.close()


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in dict(globals()).items() if name.startswith("scenario_")}


def drive(mode: str, scenario: str, **kwargs: Any) -> Any:
    """Run ``scenario`` with the connector in ``mode`` ("pure" in-process, "cext" in a child process)."""
    if mode == "pure":
        return SCENARIOS[scenario](mode, **kwargs)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_BOOT],
        input=pickle.dumps((mode, scenario, kwargs)),
        capture_output=True,
        timeout=120,
        env=env,
        cwd=str(REPO_ROOT),
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"connector child exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    status, value = pickle.loads(proc.stdout)
    if status == "error":
        raise AssertionError(f"in the mysql-connector C-extension child:\n{value}")
    return value


def child_main() -> None:
    mode, scenario, kwargs = pickle.loads(sys.stdin.buffer.read())
    try:
        result: tuple[str, Any] = ("ok", SCENARIOS[scenario](mode, **kwargs))
    except BaseException:
        result = ("error", traceback.format_exc())
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()
