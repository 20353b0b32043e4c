"""Observability: Prometheus metrics, statement digests, the slow query log and the admin HTTP endpoint."""

from __future__ import annotations

from dbmesh.observe.admin_http import start_admin_http
from dbmesh.observe.digest import digest, digest_hash
from dbmesh.observe.metrics import Metrics
from dbmesh.observe.slowlog import SlowQueryLog

__all__ = ["Metrics", "SlowQueryLog", "digest", "digest_hash", "start_admin_http"]
