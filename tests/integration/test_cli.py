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
