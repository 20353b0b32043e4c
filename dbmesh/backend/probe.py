"""Control-plane reachability checks of data sources, through asyncmy and asyncpg (not the data path)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from dbmesh.config import Config, DataSource


@dataclass(frozen=True, slots=True)
class ProbeResult:
    database: str
    data_source: str
    ok: bool
    detail: str  # server version when ok, the error otherwise
    seconds: float

    def line(self) -> str:
        state = "reachable" if self.ok else "UNREACHABLE"
        return f"{self.database}.{self.data_source}: {state} ({self.detail}) in {self.seconds * 1000:.0f} ms"


async def probe(database: str, ds: DataSource, timeout: float = 5.0) -> ProbeResult:
    """Log in to one data source with its configured credentials and read its version."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            if ds.protocol == "mysql":
                import asyncmy

                conn = await asyncmy.connect(host=ds.host, port=ds.port, user=ds.username, password=ds.password,
                                             database=ds.database or None, connect_timeout=timeout)
                try:
                    async with conn.cursor() as cur:
                        await cur.execute("SELECT VERSION()")
                        row = await cur.fetchone()
                finally:
                    conn.close()
                version = str(row[0]) if row else "?"
            else:
                import asyncpg

                pg = await asyncpg.connect(host=ds.host, port=ds.port, user=ds.username, password=ds.password or None,
                                           database=ds.database or None, timeout=timeout)
                try:
                    version = str(await pg.fetchval("SHOW server_version"))
                finally:
                    await pg.close()
    except Exception as exc:  # any failure is the answer: report it, never raise
        return ProbeResult(database, ds.name, False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    return ProbeResult(database, ds.name, True, version, time.monotonic() - started)


async def probe_all(config: Config) -> list[ProbeResult]:
    """Probe every data source of every logical database concurrently."""
    jobs = [probe(db.name, ds) for db in config.databases.values() for ds in db.data_sources.values()]
    return list(await asyncio.gather(*jobs))
