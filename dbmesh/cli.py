"""Command line: `dbmesh serve`, `dbmesh check-config`, `dbmesh --version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

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
    try:
        cfg = _load(args.config)
    except errors.ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    from dbmesh.config import Config
    from dbmesh.server.runtime import serve

    assert isinstance(cfg, Config)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        asyncio.run(serve(cfg))
    else:
        uvloop.run(serve(cfg))
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
