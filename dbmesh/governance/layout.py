"""The registry's znode layout: where each configuration item, change record, compute node and state lives.

Everything lives under one namespace root, ``/{ns}`` (ShardingSphere's ``namespace`` prop)::

    /{ns}/metadata/{name}/versions/{N}    database-{name}.yaml text, N = 0, 1, 2 ... (never rewritten)
    /{ns}/metadata/{name}/active_version  "N"; absent while the database is removed
    /{ns}/rules/versions/{N}              global.yaml without its props:, mode: and dbmesh: blocks
    /{ns}/rules/active_version
    /{ns}/props/versions/{N}              the props as a YAML mapping
    /{ns}/props/active_version
    /{ns}/changes/{seq}                   JSON record of change set `seq` (time, author, message, versions)
    /{ns}/config_version                  "seq" of the latest change set
    /{ns}/nodes/compute_nodes/online/{id} EPHEMERAL, JSON: what a running dbmesh reports about itself
    /{ns}/nodes/compute_nodes/status/{id} OK | DISABLED, set by operators
    /{ns}/reservation/worker_id/{n}       EPHEMERAL, the id of the node holding Snowflake worker id n
    /{ns}/states/cluster_state            OK | READ_ONLY | UNAVAILABLE

A configuration *item* is one versioned text; its key is its path below the namespace: ``rules``,
``props`` or ``metadata/{name}``.

>>> layout = Layout("governance_ds")
>>> layout.version(database_item("sharding_db"), 3)
'/governance_ds/metadata/sharding_db/versions/3'
>>> layout.active_version(PROPS_ITEM), layout.config_version
('/governance_ds/props/active_version', '/governance_ds/config_version')
>>> database_name("metadata/sharding_db"), database_name("rules")
('sharding_db', None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RULES_ITEM = "rules"
PROPS_ITEM = "props"
METADATA = "metadata"
GLOBAL_ITEMS = (RULES_ITEM, PROPS_ITEM)

CLUSTER_STATES = ("OK", "READ_ONLY", "UNAVAILABLE")
NODE_STATES = ("OK", "DISABLED")
MAX_WORKER_ID = 1023  # Snowflake keys have 10 worker-id bits

# ZooKeeper refuses these in a path segment (besides "/" and the names "." and "..").
_BAD_SEGMENT_CHARS = re.compile("[\u0000-\u001f\u007f-\u009f\ud800-\uf8ff\ufff0-\uffff]")


def check_segment(name: str, what: str) -> str:
    """`name` if it can be one znode path segment, else ValueError naming `what` it is."""
    if not name or name in (".", "..") or "/" in name or _BAD_SEGMENT_CHARS.search(name):
        raise ValueError(f"{what} {name!r} cannot be a ZooKeeper node name (empty, '.', '..', '/' or a control "
                         "character)")
    return name


def database_item(name: str) -> str:
    """The item key of logical database file database-{name}.yaml."""
    return f"{METADATA}/{check_segment(name, 'database name')}"


def database_name(item: str) -> str | None:
    """The {name} of a ``metadata/{name}`` item key; None for the global items."""
    prefix = METADATA + "/"
    return item[len(prefix):] if item.startswith(prefix) else None


def is_item(key: str) -> bool:
    """True for a valid item key (``rules``, ``props``, ``metadata/{name}``)."""
    name = database_name(key)
    if name is None:
        return key in GLOBAL_ITEMS
    try:
        check_segment(name, "database name")
    except ValueError:
        return False
    return True


def item_sort_key(key: str) -> tuple[int, str]:
    """Global items first (rules, props), then databases by name."""
    return (GLOBAL_ITEMS.index(key), "") if key in GLOBAL_ITEMS else (len(GLOBAL_ITEMS), key)


@dataclass(frozen=True, slots=True)
class Layout:
    """The absolute znode paths of one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        for part in self.namespace.strip("/").split("/"):
            check_segment(part, "namespace")

    @property
    def root(self) -> str:
        return "/" + self.namespace.strip("/")

    # -- configuration items ---------------------------------------------------------------------

    @property
    def metadata(self) -> str:
        return f"{self.root}/{METADATA}"

    def item(self, key: str) -> str:
        if not is_item(key):
            raise ValueError(f"not a configuration item key: {key!r}")
        return f"{self.root}/{key}"

    def versions(self, key: str) -> str:
        return f"{self.item(key)}/versions"

    def version(self, key: str, n: int) -> str:
        return f"{self.versions(key)}/{n}"

    def active_version(self, key: str) -> str:
        return f"{self.item(key)}/active_version"

    # -- change sets -----------------------------------------------------------------------------

    @property
    def changes(self) -> str:
        return f"{self.root}/changes"

    def change(self, seq: int) -> str:
        return f"{self.changes}/{seq}"

    @property
    def config_version(self) -> str:
        return f"{self.root}/config_version"

    # -- compute nodes and states ----------------------------------------------------------------

    @property
    def nodes(self) -> str:
        return f"{self.root}/nodes/compute_nodes"

    @property
    def online(self) -> str:
        return f"{self.nodes}/online"

    def online_node(self, node_id: str) -> str:
        return f"{self.online}/{check_segment(node_id, 'compute node id')}"

    @property
    def status(self) -> str:
        return f"{self.nodes}/status"

    def node_status(self, node_id: str) -> str:
        return f"{self.status}/{check_segment(node_id, 'compute node id')}"

    @property
    def worker_ids(self) -> str:
        return f"{self.root}/reservation/worker_id"

    def worker_id(self, n: int) -> str:
        return f"{self.worker_ids}/{n}"

    @property
    def states(self) -> str:
        return f"{self.root}/states"

    @property
    def cluster_state(self) -> str:
        return f"{self.states}/cluster_state"

    def skeleton(self) -> tuple[str, ...]:
        """The persistent parent nodes every registry has (created on first connect)."""
        return (self.metadata, self.changes, self.online, self.status, self.worker_ids, self.states)
