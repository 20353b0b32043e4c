#!/usr/bin/env python3
"""Container entry point: adapt a host-oriented config directory to the compose network, then exec.

Config directories in rules/ are written for one machine: dbmesh listens on 127.0.0.1 and data
sources are at 127.0.0.1. In a container, listeners must bind 0.0.0.0 to be reachable through
published ports, and backends are other services (``mariadb``, ``postgresql``). So when the command
has ``--config DIR``, DIR (mounted read-only) is copied to /tmp/dbmesh-conf with:

- every ``dbmesh.listeners.*.host`` and ``dbmesh.admin.host`` set to $DBMESH_LISTEN_HOST (0.0.0.0);
- ``127.0.0.1``/``localhost`` in MySQL data-source URLs replaced by $DBMESH_MYSQL_HOST and in
  PostgreSQL ones by $DBMESH_POSTGRESQL_HOST (when those are set).

DBMESH_REWRITE_CONFIG=0 runs the command unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import yaml

OUT = Path("/tmp/dbmesh-conf")
_LOCAL_URL = re.compile(r"^(jdbc:)?(mysql|mariadb|postgresql)://(127\.0\.0\.1|localhost)(?=[:/])")


def _rewrite_url(url: str) -> str:
    def repl(m: re.Match[str]) -> str:
        kind = "postgresql" if m.group(2) == "postgresql" else "mysql"
        host = os.environ.get(f"DBMESH_{kind.upper()}_HOST") or m.group(3)
        return f"{m.group(1) or ''}{m.group(2)}://{host}"

    return _LOCAL_URL.sub(repl, url)


def rewrite(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    listen = os.environ.get("DBMESH_LISTEN_HOST", "0.0.0.0")
    for path in dst.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text()) or {}
        if path.name == "global.yaml":
            section = doc.setdefault("dbmesh", {}) or {}
            for listener in (section.get("listeners") or {}).values():
                if isinstance(listener, dict):
                    listener["host"] = listen
            if isinstance(section.get("admin"), dict):
                section["admin"]["host"] = listen
        elif path.name.startswith("database-"):
            for ds in (doc.get("dataSources") or {}).values():
                if isinstance(ds, dict) and isinstance(ds.get("url"), str):
                    ds["url"] = _rewrite_url(ds["url"])
        path.write_text(yaml.safe_dump(doc, sort_keys=False))


def main() -> None:
    argv = sys.argv[1:] or ["dbmesh", "serve", "--config", "/conf"]
    if os.environ.get("DBMESH_REWRITE_CONFIG", "1") != "0" and "--config" in argv:
        i = argv.index("--config") + 1
        rewrite(Path(argv[i]), OUT)
        argv[i] = str(OUT)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
