"""The reference model of the LOAD DATA reader (tests/fuzz/load_reference.py) against a real MariaDB.

Random files and rules (the same generator as the splitter's fuzz test) are loaded straight into MariaDB with the
explicit FIELDS/LINES clause dbmesh sends data nodes; the rows the server stored must be the rows the model read
(a missing field is stored as NULL in these nullable columns). The splitter is held to the model by
tests/fuzz/test_fuzz_load_rows.py, so this closes the loop to the server. Bounded: 150 files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from dbmesh.kernel.load_rows import MISSING, FieldRules
from tests.fuzz.load_reference import reference_rows
from tests.fuzz.test_fuzz_load_rows import cases
from tests.support import MariaDB

DB = "load_rows_ref"


@pytest.fixture(scope="module")
def conn(mariadb: MariaDB) -> Iterator[Any]:
    mariadb.ensure_database(DB)
    c = mariadb.connect(DB, local_infile=True)
    with c.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS t")
        cur.execute("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, c0 VARBINARY(400), c1 VARBINARY(400), "
                    "c2 VARBINARY(400), c3 VARBINARY(400), c4 VARBINARY(400)) CHARACTER SET utf8mb4")
    yield c
    c.close()


def test_reference_reads_what_mariadb_reads(conn: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    path: Path = tmp_path_factory.mktemp("rows") / "f.txt"

    @given(case=cases())
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
    def check(case: tuple[FieldRules, bytes, int, int, list[int]]) -> None:
        rules, data, columns, skip, _cuts = case
        path.write_bytes(data)
        names = ", ".join(f"c{i}" for i in range(columns))
        with conn.cursor() as cur:
            cur.execute("DELETE FROM t")
            cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE t CHARACTER SET {rules.charset} "
                        f"{rules.clause()} IGNORE {skip} LINES ({names})")
            cur.execute(f"SELECT {names} FROM t ORDER BY id")
            stored = [tuple(row) for row in cur.fetchall()]
        expected = [tuple(None if v is MISSING else v for v in fields)
                    for _, fields in reference_rows(data, rules, columns, skip)]
        assert stored == expected, (rules, data)

    check()
