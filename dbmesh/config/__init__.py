"""Typed, immutable configuration: a ShardingSphere-Proxy style directory loaded into a frozen snapshot.

>>> from dbmesh.config import load_config
>>> cfg = load_config("rules/single-mysql")
>>> cfg.find_user("root", "127.0.0.1").name
'root'

See `rules/README.md` for the file shapes and `dbmesh.config.models` for every field.
"""

from __future__ import annotations

from dbmesh.config.loader import (
    GLOBAL_RULE_VALIDATORS,
    KNOWN_PROPS,
    RULE_VALIDATORS,
    RuleContext,
    RuleValidator,
    load_config,
    load_config_files,
    read_config_files,
)
from dbmesh.config.models import (
    Config,
    Database,
    DataSource,
    Limits,
    Listener,
    Mode,
    PoolSettings,
    Repository,
    Rule,
    ServerSettings,
    SlowQueryLog,
    TlsSettings,
    User,
    ZooKeeperProps,
)
from dbmesh.config.urls import ParsedUrl, UrlError, parse_url

__all__ = [
    "GLOBAL_RULE_VALIDATORS",
    "KNOWN_PROPS",
    "RULE_VALIDATORS",
    "Config",
    "DataSource",
    "Database",
    "Limits",
    "Listener",
    "Mode",
    "ParsedUrl",
    "PoolSettings",
    "Repository",
    "Rule",
    "RuleContext",
    "RuleValidator",
    "ServerSettings",
    "SlowQueryLog",
    "TlsSettings",
    "UrlError",
    "User",
    "ZooKeeperProps",
    "load_config",
    "load_config_files",
    "parse_url",
    "read_config_files",
]
