"""dbmesh: a database-mesh sidecar that speaks MySQL and PostgreSQL to applications."""

__version__ = "0.1.0"
