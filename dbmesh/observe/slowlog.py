"""The slow query log: one JSON object per line for every statement at or above a time threshold.

A line looks like (wrapped here)::

    {"time": "2024-05-01T12:00:00.123456Z", "user": "app", "database": "shop",
     "digest": "SELECT * FROM t_order WHERE id = ?", "digest_hash": "3f0c...", "sql": "SELECT * FROM t_order WHERE id = 7",
     "duration_ms": 1234.568, "rows": 1, "data_sources": ["ds_0"]}

``maybe_record`` is called for every statement, so the threshold test comes first and a fast statement costs
one multiplication and one comparison. Only slow statements pay for the digest and the JSON.

The log never raises into the statement path: a failed open or write is logged once on ``dbmesh.slowlog`` at
ERROR, and the lines that could not be written go to that logger at WARNING instead of being lost. Writes are
synchronous; a line-buffered append of one short line to a local file is cheaper than handing it to a thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from dbmesh.observe.digest import Dialect, digest, hash_digest_text

logger = logging.getLogger("dbmesh.slowlog")

SQL_MAX_CHARS = 1024  # the "sql" and "digest" fields are cut to this many characters (the hash covers all)


class SlowQueryLog:
    """Writes statements that took at least ``threshold_ms`` as JSON lines to ``path``, or to the logger."""

    __slots__ = ("_file", "_io_failed", "path", "threshold_ms")

    def __init__(self, threshold_ms: float, path: str | None) -> None:
        self.threshold_ms = float(threshold_ms)
        self.path = path
        self._file: TextIO | None = None
        self._io_failed = False
        if path is not None:
            try:
                # buffering=1: line buffered, so each record reaches the file as one write() and a crash loses
                # at most the line being formatted. backslashreplace: SQL decoded with surrogateescape still
                # writes instead of failing the line.
                self._file = open(path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)
            except OSError:
                self._io_failed = True
                logger.exception("cannot open slow query log %r; slow queries go to this logger instead", path)

    def maybe_record(self, *, start_time: float, user: str, database: str | None, sql: str, duration_s: float,
                     rows: int, data_sources: Sequence[str], dialect: Dialect = "mysql") -> bool:
        """Write one line if ``duration_s`` reaches the threshold; return whether the statement was slow.

        ``start_time`` is ``time.time()`` when the statement arrived; ``dialect`` selects the digest rules.
        """
        if duration_s * 1000.0 < self.threshold_ms:
            return False
        digest_text = digest(sql, dialect=dialect)
        record = {
            "time": datetime.fromtimestamp(start_time, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "user": user,
            "database": database,
            "digest": digest_text[:SQL_MAX_CHARS],
            "digest_hash": hash_digest_text(digest_text),
            "sql": sql[:SQL_MAX_CHARS],
            "duration_ms": round(duration_s * 1000.0, 3),
            "rows": rows,
            "data_sources": list(data_sources),
        }
        # json.dumps escapes control characters, so a statement with newlines still makes exactly one line.
        line = json.dumps(record, ensure_ascii=False, separators=(", ", ": "))
        self._emit(line)
        return True

    def _emit(self, line: str) -> None:
        file = self._file
        if file is not None:
            try:
                file.write(line + "\n")
                return
            except (OSError, ValueError):  # ValueError: the file was closed under us
                if not self._io_failed:
                    self._io_failed = True
                    logger.exception("cannot write slow query log %r; slow queries go to this logger instead",
                                     self.path)
        logger.warning("%s", line)

    def close(self) -> None:
        """Flush and close the file; later records go to the logger. Safe to call more than once."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                logger.exception("error closing slow query log %r", self.path)
