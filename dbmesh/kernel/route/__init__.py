"""Routing: table references, sharding conditions, hints and rule decisions that give a statement's route units."""

from __future__ import annotations

from dbmesh.kernel.route.analysis import Analysis, Analyzer
from dbmesh.kernel.route.engine import Router, Routing, Target
from dbmesh.kernel.route.errors import RouteError

__all__ = ["Analysis", "Analyzer", "RouteError", "Router", "Routing", "Target"]
