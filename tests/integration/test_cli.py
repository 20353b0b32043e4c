"""The command line: --version, check-config (with and without --connect), and serve refusing a bad config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from dbmesh import __version__
from tests.support import MariaDB, make_dbmesh_config

ROOT = Path(__file__).resolve().parents[2]


def dbmesh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dbmesh", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, stdin=subprocess.DEVNULL, check=False)


def test_version() -> None:
    res = dbmesh("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"dbmesh {__version__}"


def test_check_config_ok_and_connect(tmp_path: Path, mariadb: MariaDB) -> None:
    cfg = make_dbmesh_config(tmp_path / "conf", mariadb)
    res = dbmesh("check-config", "--config", str(cfg.config_dir), "--connect")
    assert res.returncode == 0, res.stderr
    assert "OK (1 logical database(s)" in res.stdout
    assert "dbmesh_test.ds_0: reachable (" in res.stdout and "MariaDB" in res.stdout


def test_check_config_reports_unreachable_data_source(tmp_path: Path, mariadb: MariaDB) -> None:
    class Dead:
        host, port, user, password = "127.0.0.1", 1, "root", ""

    cfg = make_dbmesh_config(tmp_path / "conf", Dead(), create_backend_databases=False)
    res = dbmesh("check-config", "--config", str(cfg.config_dir), "--connect")
    assert res.returncode == 3
    assert "dbmesh_test.ds_0: UNREACHABLE" in res.stdout and "1 data source(s) unreachable" in res.stderr


def test_invalid_config_names_file_and_key_and_serve_starts_nothing(tmp_path: Path, mariadb: MariaDB) -> None:
    cfg = make_dbmesh_config(tmp_path / "conf", mariadb)
    path = cfg.config_dir / "database-dbmesh_test.yaml"
    path.write_text(path.read_text().replace("maxPoolSize:", "maxPoolSizee:"))
    for command in ("check-config", "serve"):
        res = dbmesh(command, "--config", str(cfg.config_dir))
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        err: Any = res.stderr
        assert "database-dbmesh_test.yaml" in err and "maxPoolSizee" in err, err
        assert "Traceback" not in err


# -- dbmesh preview: no servers needed, the config alone decides ------------------------------------

ADMIN_FIXTURE = ROOT / "tests" / "fixtures" / "admin"


def test_preview_unsharded_database_prints_tab_separated_rows() -> None:
    res = dbmesh("preview", "--config", str(ADMIN_FIXTURE), "--database", "plain_pg", "SELECT * FROM t WHERE id = 1;")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "data_source_name\tactual_sql\npg_0\tSELECT * FROM t WHERE id = 1\n"
    assert res.stderr == ""


def test_preview_escapes_tabs_and_newlines_and_accepts_the_keyword() -> None:
    res = dbmesh("preview", "--config", str(ADMIN_FIXTURE), "--database", "plain_pg",
                 "preview SELECT '\\a',\t1\nFROM t")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["data_source_name\tactual_sql", "pg_0\tSELECT '\\\\a',\\t1\\nFROM t"]


def test_preview_errors_print_the_catalogue_message_and_exit_2(tmp_path: Path) -> None:
    cases = [
        (("--database", "nosuch_db", "SELECT 1"), "error: Unknown database 'nosuch_db'"),
        (("SELECT 1",), "error: No database selected"),  # two databases in the config: which one is unclear
        (("--database", "plain_pg", " ; "), "error: You have an error in your SQL syntax: the statement to preview is empty"),
    ]
    for args, message in cases:
        res = dbmesh("preview", "--config", str(ADMIN_FIXTURE), *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stderr.strip() == message and res.stdout == "", (args, res.stderr)
    res = dbmesh("preview", "--config", str(tmp_path / "missing"), "--database", "x", "SELECT 1")
    assert res.returncode == 2 and "not a directory" in res.stderr and "Traceback" not in res.stderr


def test_preview_single_database_needs_no_name(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "database-plain_pg.yaml").write_text((ADMIN_FIXTURE / "database-plain_pg.yaml").read_text())
    res = dbmesh("preview", "--config", str(conf), "UPDATE t SET a = 2")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "data_source_name\tactual_sql\npg_0\tUPDATE t SET a = 2\n"


def test_preview_on_a_terminal_draws_a_table() -> None:
    import os
    import pty

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "dbmesh", "preview", "--config", str(ADMIN_FIXTURE), "--database",
                               "plain_pg", "SELECT 42"], stdout=secondary, stderr=subprocess.PIPE, cwd=ROOT,
                              stdin=subprocess.DEVNULL, timeout=30, check=False, env={**os.environ, "COLUMNS": "100"})
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    out = b"".join(chunks).decode()
    assert proc.returncode == 0, proc.stderr
    assert "data_source_name" in out and "pg_0" in out and "SELECT 42" in out
    assert "\t" not in out  # a drawn table, not the piped format
    header = next(line for line in out.splitlines() if "data_source_name" in line)
    assert header.strip()[0] in "│┃|", out


def test_preview_sharded_database_routes_and_rewrites() -> None:
    # user_id 3 -> ds_1 (ds_${user_id % 2}); order_id IN (4, 5) -> t_order_0 and t_order_1; ORDER BY across two
    # units makes the planner select the sort key as a derived column.
    res = dbmesh("preview", "--config", str(ADMIN_FIXTURE), "--database", "sharding_db",
                 "SELECT * FROM t_order WHERE user_id = 3 AND order_id IN (4, 5) ORDER BY order_id")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "data_source_name\tactual_sql"
    assert [line.split("\t")[0] for line in lines[1:]] == ["ds_1", "ds_1"]
    assert "FROM t_order_0 " in lines[1] and "FROM t_order_1 " in lines[2], lines
    res = dbmesh("preview", "--config", str(ADMIN_FIXTURE), "--database", "sharding_db", "--dialect", "postgres",
                 "UPDATE t_order SET status = 'x' WHERE user_id = 4 AND order_id = 9")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1:] == ["ds_0\tUPDATE t_order_1 SET status = 'x' WHERE user_id = 4 AND order_id = 9"]


def test_preview_refusal_prints_the_catalogue_message() -> None:
    res = dbmesh("preview", "--config", str(ADMIN_FIXTURE), "--database", "sharding_db",
                 "INSERT INTO t_order (user_id, order_id) VALUES (NULL, 1)")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == "error: sharding value of t_order.user_id cannot be NULL"
