"""Command line: `dbmesh serve`, `dbmesh check-config`, `dbmesh preview`, `dbmesh --version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Literal

from dbmesh import __version__, errors


def _load(path: str) -> object:
    from dbmesh.config import load_config

    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args.config)
    except errors.ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    from dbmesh.config import Config

    assert isinstance(cfg, Config)
    print(f"{args.config}: OK ({len(cfg.databases)} logical database(s), {len(cfg.users)} user(s))")
    for db in cfg.databases.values():
        sources = ", ".join(f"{ds.name}={ds.protocol}://{ds.host}:{ds.port}/{ds.database or ''}"
                            for ds in db.data_sources.values())
        print(f"  {db.name}: {sources}")
    if args.connect:
        from dbmesh.backend.probe import probe_all

        failures = 0
        for result in asyncio.run(probe_all(cfg)):
            print(f"  {result.line()}")
            failures += not result.ok
        if failures:
            print(f"error: {failures} data source(s) unreachable", file=sys.stderr)
            return 3
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dbmesh.config import load_config_files, read_config_files
    from dbmesh.server.runtime import serve

    try:
        files = read_config_files(args.config)
        cfg = load_config_files(files, Path(args.config).expanduser().resolve())
    except errors.ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        asyncio.run(serve(cfg, files=files))
    else:
        uvloop.run(serve(cfg, files=files))
    return 0


def _tsv_cell(cell: str | None) -> str:
    # As `mysql --batch` writes cells: one line per row, so tabs, newlines and backslashes are escaped.
    if cell is None:
        return "NULL"
    return cell.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _print_result(columns: tuple[str, ...], rows: tuple[tuple[str | None, ...], ...]) -> None:
    """A readable table on a terminal; tab-separated lines (header first) when piped."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*("NULL" if cell is None else cell for cell in row))
        Console().print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join(_tsv_cell(cell) for cell in row))


def cmd_preview(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args.config)
    except errors.ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    from dbmesh.admin import AdminResult, Preview, execute_admin, parse_admin
    from dbmesh.config import Config

    assert isinstance(cfg, Config)
    try:
        if args.database is not None:
            database = cfg.databases.get(args.database)
            if database is None:
                raise errors.SessionError(errors.AUTH_UNKNOWN_DATABASE, database=args.database)
        elif len(cfg.databases) == 1:  # the only database needs no naming
            database = next(iter(cfg.databases.values()))
        else:
            raise errors.SessionError(errors.NO_DATABASE_SELECTED)
        # `dbmesh preview "PREVIEW SELECT ..."` means the same as without the keyword.
        stmt = parse_admin(args.sql) if args.sql.lstrip()[:7].upper() == "PREVIEW" else None
        if not isinstance(stmt, Preview):
            stmt = Preview(args.sql.strip().rstrip(";").strip())
        if not stmt.sql:
            raise errors.DbMeshError(errors.SQL_SYNTAX, detail="the statement to preview is empty")
        dialect: Literal["mysql", "postgres"] = args.dialect or (
            "postgres" if database.default_data_source.protocol == "postgresql" else "mysql")
        result = execute_admin(stmt, config=cfg, database=database, dialect=dialect)
    except errors.DbMeshError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    assert isinstance(result, AdminResult)
    _print_result(result.columns, result.rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dbmesh", description="Database-mesh sidecar for MySQL and PostgreSQL.")
    parser.add_argument("--version", action="version", version=f"dbmesh {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the sidecar")
    p.add_argument("--config", required=True, help="configuration directory (global.yaml, database-*.yaml)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("check-config", help="validate a configuration directory and exit")
    p.add_argument("--config", required=True)
    p.add_argument("--connect", action="store_true", help="also log in to every data source and report its version")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("preview", help="show where a statement would run and the SQL each data source would get")
    p.add_argument("--config", required=True, help="configuration directory (global.yaml, database-*.yaml)")
    p.add_argument("--database", help="logical database (may be omitted when the config has only one)")
    p.add_argument("--dialect", choices=["mysql", "postgres"],
                   help="SQL dialect (default: the protocol of the database's data sources)")
    p.add_argument("sql", help="the statement, e.g. \"SELECT * FROM t_order WHERE order_id = 1\"")
    p.set_defaults(func=cmd_preview)
    from dbmesh.governance.cli import add_governance_parser

    add_governance_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
