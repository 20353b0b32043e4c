"""`dbmesh governance ...`: push, pull, diff, history, rollback and status of the registry, and operator switches.

Every subcommand reads how to reach the registry from the ``mode:`` block of ``--config DIR``/global.yaml.
Exit codes: 0 done (for ``diff``: no change), 1 ``diff`` found changes, 2 an invalid configuration or argument
(nothing written), 3 a data source the push adds or changes did not answer (nothing written; ``push`` logs in to
each one first unless ``--no-check-connect``), 4 the registry
failed or refused (unreachable, a concurrent change, no such version or node).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dbmesh import errors

if TYPE_CHECKING:
    from dbmesh.config import Config, ZooKeeperProps
    from dbmesh.governance.registry import Registry

EXIT_CHANGES = 1
EXIT_INVALID = 2
EXIT_UNREACHABLE = 3
EXIT_REGISTRY = 4


class _Exit(Exception):
    """Ends a subcommand with an exit code after its message was printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _error(message: str, code: int) -> _Exit:
    print(f"error: {message}", file=sys.stderr)
    return _Exit(code)


# ------------------------------------------------------------------------------------------------ output


def _tsv_cell(cell: str) -> str:
    return cell.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    """A table on a terminal (rich); tab-separated lines with a header line when piped."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join(_tsv_cell(cell) for cell in row))


# ------------------------------------------------------------------------------------------------ inputs


def _local_global(config_dir: str) -> str | None:
    path = Path(config_dir) / "global.yaml"
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"{path}: cannot read: {exc}", EXIT_INVALID) from None


def _zookeeper(config_dir: str) -> ZooKeeperProps:
    """The registry settings of DIR/global.yaml's mode: block (the rest of the directory is not read)."""
    from dbmesh.config import load_config_files
    from dbmesh.governance.snapshot import extract_blocks

    text = _local_global(config_dir)
    if text is None:
        raise _error(f"{config_dir}/global.yaml not found: its mode: block says how to reach the registry",
                     EXIT_INVALID)
    try:
        mode = load_config_files({}, Path(config_dir).resolve(), extract_blocks(text, ("mode",))).mode
    except errors.ConfigError as exc:
        raise _error(exc.message, EXIT_INVALID) from None
    if mode.type != "Cluster" or mode.zookeeper is None:
        raise _error(f"{config_dir}/global.yaml: mode.type is {mode.type}; governance commands need Cluster mode "
                     "with a ZooKeeper repository", EXIT_INVALID)
    return mode.zookeeper


def _validated(config_dir: str) -> tuple[Config, dict[str, str], str | None]:
    """(config, registry items, local global.yaml) of a directory that push may publish; exit 2 if invalid."""
    from dbmesh.config import load_config, read_config_files
    from dbmesh.governance.snapshot import load_items, split_files

    try:
        config = load_config(config_dir)
        files = read_config_files(config_dir)
        items = split_files(files)
        local = files.get("global.yaml")
        # What sidecars will load: the items, with each one's own mode:/dbmesh: blocks (here: this directory's).
        load_items(items, Path(config_dir).resolve(), local)
    except errors.ConfigError as exc:
        raise _error(exc.message, EXIT_INVALID) from None
    return config, items, local


def _connect(config_dir: str) -> Registry:
    from dbmesh.governance.registry import Registry

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # A one-shot command needs no connection chatter; --log-level DEBUG shows it.
        for name in ("dbmesh.governance.kazoo", "dbmesh.governance.registry"):
            logging.getLogger(name).setLevel(logging.WARNING)
    registry = Registry(_zookeeper(config_dir))
    try:
        registry.start()
    except errors.DbMeshError as exc:
        raise _error(exc.message, EXIT_REGISTRY) from None
    return registry


def _registry_command(fn: Callable[[argparse.Namespace, Registry], int]) -> Callable[[argparse.Namespace], int]:
    """Run `fn(args, registry)` connected to --config's registry; registry errors exit 4."""
    def run(args: argparse.Namespace) -> int:
        try:
            registry = _connect(args.config)
            try:
                return fn(args, registry)
            except errors.ConfigError as exc:
                raise _error(exc.message, EXIT_INVALID) from None
            except errors.DbMeshError as exc:
                raise _error(exc.message, EXIT_REGISTRY) from None
            finally:
                registry.stop()
        except _Exit as done:
            return done.code
    return run


def _print_diffs(old: dict[str, str], new: dict[str, str], old_name: str, new_name: str) -> int:
    from dbmesh.governance.snapshot import diff

    diffs = diff(old, new, old_name=old_name, new_name=new_name)
    for item in diffs:
        sys.stdout.write(item.text)
    return len(diffs)


# ---------------------------------------------------------------------------------------------- commands


def _changed_data_sources(config: Config, active: dict[str, str], config_dir: str,
                          local: str | None) -> list[tuple[str, str]]:
    """(database, data source) pairs of `config` that the registry's active configuration lacks or defines
    differently: the ones `--check-connect` must reach."""
    from dbmesh.governance.snapshot import load_items

    try:
        current = load_items(active, Path(config_dir).resolve(), local) if active else None
    except errors.ConfigError:
        current = None  # the registry's copy does not load: every data source counts as new
    out = []
    for db in config.databases.values():
        old_db = current.databases.get(db.name) if current is not None else None
        for ds in db.data_sources.values():
            if old_db is None or old_db.data_sources.get(ds.name) != ds:
                out.append((db.name, ds.name))
    return out


def _check_connect(config: Config, targets: list[tuple[str, str]]) -> None:
    from dbmesh.backend.probe import ProbeResult, probe

    if not targets:
        print("--check-connect: no data source is new or changed")
        return

    async def probe_all() -> list[ProbeResult]:
        jobs = [probe(db, config.databases[db].data_sources[ds]) for db, ds in targets]
        return list(await asyncio.gather(*jobs))

    failures = 0
    for result in asyncio.run(probe_all()):
        print(f"  {result.line()}")
        failures += not result.ok
    if failures:
        raise _error(f"{failures} new or changed data source(s) unreachable; nothing was pushed", EXIT_UNREACHABLE)


def cmd_push(args: argparse.Namespace) -> int:
    from dbmesh.governance.layout import item_sort_key
    from dbmesh.governance.registry import default_author

    try:
        config, items, local = _validated(args.config)
    except _Exit as done:
        return done.code

    def push(args: argparse.Namespace, registry: Registry) -> int:
        seq, active = registry.active_items()
        if active == items:
            print(f"no change (configuration version {seq})")
            return 0
        if args.check_connect:
            _check_connect(config, _changed_data_sources(config, active, args.config, local))
        _print_diffs(active, items, "registry", "local")
        # The diff shown is exactly what is committed: the publish fails if anything changed since it was read.
        result = registry.publish(items, args.author or default_author(), args.message or "", expected_version=seq)
        if result.no_change:
            print(f"no change (configuration version {result.seq})")
            return 0
        changed = ", ".join(sorted(result.changed, key=item_sort_key)) or "-"
        removed = ", ".join(result.removed) or "-"
        print(f"published configuration version {result.seq} (changed: {changed}; removed: {removed})")
        return 0

    return _registry_command(push)(args)


def _pull(args: argparse.Namespace, registry: Registry) -> int:
    from dbmesh.config.loader import DATABASE_FILE_RE
    from dbmesh.governance.snapshot import pulled_files

    seq, items = registry.active_items()
    if seq == 0:
        raise _error(f"nothing was ever published in namespace {registry.layout.root}", EXIT_REGISTRY)
    out = Path(args.out)
    files = pulled_files(items, _local_global(args.config))
    stale = [p for p in out.iterdir() if p.is_file() and DATABASE_FILE_RE.match(p.name) and p.name not in files] \
        if out.is_dir() else []
    if out.exists() and any(out.iterdir()) and not args.force:
        raise _error(f"{out} is not empty; pass --force to overwrite its configuration files", EXIT_INVALID)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    for path in stale:  # a database the registry does not have any more
        path.unlink()
    print(f"wrote configuration version {seq} to {out} ({', '.join(files)})"
          + (f"; removed {', '.join(p.name for p in stale)}" if stale else ""))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        _, items, _ = _validated(args.config)
    except _Exit as done:
        return done.code

    def show(args: argparse.Namespace, registry: Registry) -> int:
        seq, active = registry.active_items()
        if not _print_diffs(active, items, f"registry v{seq}", "local"):
            print(f"no change (configuration version {seq})")
            return 0
        return EXIT_CHANGES

    return _registry_command(show)(args)


def _history(args: argparse.Namespace, registry: Registry) -> int:
    records = registry.history()
    rows = [(str(r.seq), r.time, r.author, r.message, r.summary()
             + (f" (rollback to {r.rollback_of})" if r.rollback_of is not None else "")) for r in records]
    _table(("version", "time", "author", "message", "changes"), rows)
    return 0


def _rollback(args: argparse.Namespace, registry: Registry) -> int:
    from dbmesh.governance.registry import default_author
    from dbmesh.governance.snapshot import load_items

    target = registry.items_of(args.to)
    # Versions were valid when published, unless someone wrote the registry by hand: check before re-activating.
    load_items(target, Path(args.config).resolve(), _local_global(args.config))
    result = registry.rollback(args.to, args.author or default_author(), args.message)
    if result.no_change:
        print(f"no change: configuration version {result.seq} already has the item versions of {args.to}")
    else:
        print(f"configuration version {result.seq} re-activates the item versions of {args.to} "
              f"(changed: {', '.join(result.changed) or '-'}; removed: {', '.join(result.removed) or '-'})")
    return 0


def _status(args: argparse.Namespace, registry: Registry) -> int:
    seq = registry.config_version()
    print(f"cluster state: {registry.cluster_state()}")
    print(f"configuration version: {seq}")
    rows = [(n.id, n.address, n.state, str(n.config_version), "" if n.worker_id is None else str(n.worker_id),
             n.version, ",".join(n.labels), n.started_at, n.error or "") for n in registry.compute_nodes()]
    _table(("id", "address", "state", "config_version", "worker_id", "version", "labels", "started_at", "error"),
           rows, title="compute nodes")
    return 0


def _set_cluster_state(args: argparse.Namespace, registry: Registry) -> int:
    registry.set_cluster_state(args.state)
    print(f"cluster state: {args.state}")
    return 0


def _node(args: argparse.Namespace, registry: Registry) -> int:
    state = "DISABLED" if args.action == "disable" else "OK"
    registry.set_node_state(args.id, state)
    print(f"compute node {args.id}: {state}")
    return 0


# ------------------------------------------------------------------------------------------------ parser


def add_governance_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `governance` and its subcommands to the `dbmesh` command line."""
    from dbmesh.governance.layout import CLUSTER_STATES

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", required=True,
                        help="configuration directory; the mode: block of its global.yaml names the registry")
    author = argparse.ArgumentParser(add_help=False)
    author.add_argument("--author", help="who makes the change (default: $USER@host)")
    author.add_argument("--message", help="why (shown by history)")

    gov = sub.add_parser(
        "governance", help="the ZooKeeper registry of Cluster mode: push, pull, diff, history ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Publish and inspect the shared configuration of Cluster mode, and switch cluster and node "
                    "states.\nThe mode: block of --config DIR/global.yaml names the registry.",
        epilog="exit codes: 0 done (diff: no change), 1 diff found changes, 2 invalid configuration or argument,\n"
               "3 a new or changed data source did not answer (push), 4 the registry failed or refused")
    cmds = gov.add_subparsers(dest="governance_command", required=True)
    p = cmds.add_parser("push", parents=[common, author], help="validate --config and publish it as a new version")
    p.add_argument("--check-connect", action=argparse.BooleanOptionalAction, default=True,
                   help="first log in to every data source the push adds or changes, and refuse the push if one "
                        "does not answer (default; --no-check-connect skips it)")
    p.set_defaults(func=cmd_push)
    p = cmds.add_parser("pull", parents=[common], help="write the active configuration into a directory")
    p.add_argument("--out", required=True, help="directory to write (new or empty, unless --force)")
    p.add_argument("--force", action="store_true", help="overwrite the configuration files of a non-empty --out")
    p.set_defaults(func=_registry_command(_pull))
    p = cmds.add_parser("diff", parents=[common], help="what push would change (exit 1 when anything)")
    p.set_defaults(func=cmd_diff)
    p = cmds.add_parser("history", parents=[common], help="every configuration version: time, author, message")
    p.set_defaults(func=_registry_command(_history))
    p = cmds.add_parser("rollback", parents=[common, author],
                        help="a new version that re-activates what an earlier version had")
    p.add_argument("--to", required=True, type=int, metavar="VERSION", help="the configuration version to restore")
    p.set_defaults(func=_registry_command(_rollback))
    p = cmds.add_parser("status", parents=[common], help="cluster state and the online compute nodes")
    p.set_defaults(func=_registry_command(_status))
    p = cmds.add_parser("set-cluster-state", parents=[common], help="OK, READ_ONLY or UNAVAILABLE for every node")
    p.add_argument("state", type=str.upper, choices=CLUSTER_STATES)
    p.set_defaults(func=_registry_command(_set_cluster_state))
    p = cmds.add_parser("node", parents=[common], help="enable or disable one compute node")
    p.add_argument("action", choices=("enable", "disable"))
    p.add_argument("id", help="the compute node id (see status)")
    p.set_defaults(func=_registry_command(_node))


__all__ = ["add_governance_parser", "cmd_diff", "cmd_push"]
