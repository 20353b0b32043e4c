"""Savepoints of a transaction spread over several data sources: which exist, in order, so a data source that
joins the transaction late gets them too and ROLLBACK TO / RELEASE mean the same everywhere.

>>> stack = SavepointStack()
>>> for sql in ("SAVEPOINT a", "SAVEPOINT b", "ROLLBACK TO SAVEPOINT a", "SAVEPOINT c"):
...     stack.apply(parse_savepoint(sql))
>>> stack.names
['a', 'c']
>>> stack.apply(parse_savepoint("RELEASE SAVEPOINT a")); stack.names
[]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

_STATEMENT = re.compile(
    r"^\s*(?:(?P<save>SAVEPOINT)|(?P<release>RELEASE)(?:\s+SAVEPOINT)?|"
    r"(?P<rollback>ROLLBACK)(?:\s+(?:WORK|TRANSACTION))?\s+TO(?:\s+SAVEPOINT)?)"
    r"\s+(?P<name>`(?:[^`]|``)+`|\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*)\s*;?\s*$", re.I | re.S)


@dataclass(frozen=True, slots=True)
class Savepoint:
    """A SAVEPOINT, RELEASE [SAVEPOINT] or ROLLBACK [WORK] TO [SAVEPOINT] statement."""

    action: Literal["save", "release", "rollback"]
    name: str  # as written (quotes kept), for replaying
    key: str  # how the servers compare it: unquoted names case-insensitively, quoted ones exactly


def parse_savepoint(sql: str) -> Savepoint | None:
    m = _STATEMENT.match(sql)
    if m is None:
        return None
    name = m.group("name")
    key = name[1:-1] if name[0] in "`\"" else name.lower()
    action: Literal["save", "release", "rollback"] = (
        "save" if m.group("save") else "release" if m.group("release") else "rollback")
    return Savepoint(action, name, key)


@dataclass
class SavepointStack:
    """The savepoints of the open transaction, oldest first."""

    entries: list[Savepoint] = field(default_factory=list)
    # MySQL deletes an older savepoint of the same name; PostgreSQL keeps it (the newer one is used first).
    replace_same_name: bool = True

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.entries]

    def find(self, key: str) -> int | None:
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i].key == key:
                return i
        return None

    def apply(self, sp: Savepoint | None) -> None:
        """Update after the statement succeeded on every data source, as the servers update theirs."""
        if sp is None:
            return
        if sp.action == "save":
            # A savepoint with an existing name replaces it (the old one is deleted).
            i = self.find(sp.key) if self.replace_same_name else None
            if i is not None:
                del self.entries[i]
            self.entries.append(sp)
            return
        i = self.find(sp.key)
        if i is None:
            return
        # ROLLBACK TO keeps the savepoint and drops later ones; RELEASE drops it and later ones.
        del self.entries[i + 1 if sp.action == "rollback" else i:]

    def clear(self) -> None:
        self.entries.clear()
