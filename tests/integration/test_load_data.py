"""LOAD DATA LOCAL INFILE through dbmesh with four clients, differential against a plain MariaDB database.

Every case loads the same file with the same statement (only the table name differs) three ways: straight into a
plain MariaDB database (the reference), through dbmesh into a one-data-source logical database (the pass-through
path), and through dbmesh into a sharded logical database (2 data sources x 2 tables, by user_id and order_id; a
broadcast and a single table beside it). Afterwards every row on every data node is read back directly from the
physical databases: the sharded rows must be exactly the reference's rows, each on the data node its rule names;
the client-visible results (affected rows, the "Records: ..." info, the warning count) must match the reference's.

Clients: PyMySQL (local_infile=True), mysqlclient (local_infile=1), mysql-connector in pure-Python mode
(allow_local_infile=True) and the mariadb/mysql command line (--local-infile=1).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.support import DbMeshProcess, MariaDB
from tests.support.sharded import (
    Tagged,
    inline_algorithm,
    query,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

SHARDED = "ld_shard"
PLAIN = "ld_plain"  # one data source: the pass-through path
REFERENCE = "ld_reference"  # straight into MariaDB, no dbmesh
PHYSICAL = {"ds_0": "ld_ds_0", "ds_1": "ld_ds_1"}
NODES = [(ds, f"t_order_{t}") for ds in PHYSICAL for t in (0, 1)]
DDL = ("CREATE TABLE {table} (order_id BIGINT PRIMARY KEY, user_id INT NOT NULL, note VARCHAR(200), "
       "amount DECIMAL(10,2), created DATE) CHARACTER SET utf8mb4")
COLUMNS = "order_id, user_id, note, amount, created"
CLI = shutil.which("mariadb") or shutil.which("mysql")


def _rules() -> list[Tagged]:
    return [
        Tagged("SHARDING", {
            "tables": {"t_order": {"actualDataNodes": "ds_${0..1}.t_order_${0..1}",
                                   "databaseStrategy": standard("user_id", "by_user"),
                                   "tableStrategy": standard("order_id", "by_order")}},
            "shardingAlgorithms": {"by_user": inline_algorithm("ds_${user_id % 2}"),
                                   "by_order": inline_algorithm("t_order_${order_id % 2}")},
        }),
        Tagged("BROADCAST", {"tables": ["t_dict"]}),
    ]


@pytest.fixture(scope="module")
def mesh(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    docs = {SHARDED: sharded_database(SHARDED, "mysql", mariadb, PHYSICAL, _rules()),
            PLAIN: sharded_database(PLAIN, "mysql", mariadb, {"ds": PLAIN}, [])}
    config = write_sharded_config(tmp_path_factory.mktemp("ld-conf"), mariadb, docs)
    mariadb.ensure_database(REFERENCE)
    proc = start_sharded_dbmesh(config, postgresql=False)
    yield proc
    proc.stop()


@pytest.fixture
def tables(mariadb: MariaDB, mesh: DbMeshProcess) -> None:
    """Empty tables everywhere before each test."""
    for db in (REFERENCE, PLAIN):
        run_statements(mariadb, db, ["DROP TABLE IF EXISTS t_order", DDL.format(table="t_order"),
                                     "DROP TABLE IF EXISTS t_dict", "CREATE TABLE t_dict (k INT PRIMARY KEY, v TEXT)",
                                     "DROP TABLE IF EXISTS t_single", "CREATE TABLE t_single (k INT, v TEXT)"])
    for ds, db in PHYSICAL.items():
        run_statements(mariadb, db, [s for t in ("t_order_0", "t_order_1")
                                     for s in (f"DROP TABLE IF EXISTS {t}", DDL.format(table=t))]
                       + ["DROP TABLE IF EXISTS t_dict", "CREATE TABLE t_dict (k INT PRIMARY KEY, v TEXT)",
                          "DROP TABLE IF EXISTS t_single"]
                       + (["CREATE TABLE t_single (k INT, v TEXT)"] if ds == "ds_0" else []))


# -- clients ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a client saw: affected rows, the OK's info text and warning count (None where the client does not
    show them), or an error (code, message)."""

    affected: int | None = None
    info: str | None = None
    warnings: int | None = None
    error: tuple[int, str] | None = None


Runner = Callable[[MariaDB, DbMeshProcess | None, str, str], Outcome]


def _where(server: MariaDB, mesh: DbMeshProcess | None) -> dict[str, Any]:
    if mesh is None:
        return {"host": server.host, "port": server.port, "user": server.user, "password": server.password}
    return {"host": mesh.host, "port": mesh.port, "user": "root", "password": "rootpw"}


def run_pymysql(server: MariaDB, mesh: DbMeshProcess | None, database: str, sql: str) -> Outcome:
    conn = pymysql.connect(database=database, local_infile=True, autocommit=True, **_where(server, mesh))
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(sql)
            except pymysql.err.MySQLError as exc:
                return Outcome(error=(exc.args[0], exc.args[1]))
            result = conn._result
            info = result.message.decode() if result is not None and result.message else None
            return Outcome(cur.rowcount, _strip(info), result.warning_count if result is not None else None)
    finally:
        conn.close()


def run_mysqlclient(server: MariaDB, mesh: DbMeshProcess | None, database: str, sql: str) -> Outcome:
    import MySQLdb

    where = _where(server, mesh)
    conn = MySQLdb.connect(host=where["host"], port=where["port"], user=where["user"], passwd=where["password"],
                           db=database, local_infile=1, autocommit=True)
    try:
        cur = conn.cursor()
        try:
            affected = cur.execute(sql)
        except MySQLdb.MySQLError as exc:
            return Outcome(error=(exc.args[0], exc.args[1]))
        info = conn.info()
        return Outcome(int(affected), _strip(info.decode() if isinstance(info, bytes) else info),
                       conn.warning_count())
    finally:
        conn.close()


def run_connector(server: MariaDB, mesh: DbMeshProcess | None, database: str, sql: str) -> Outcome:
    import mysql.connector

    conn = mysql.connector.connect(database=database, use_pure=True, allow_local_infile=True, autocommit=True,
                                   **_where(server, mesh))
    try:
        cur = conn.cursor()
        try:
            cur.execute(sql)
        except mysql.connector.Error as exc:
            return Outcome(error=(exc.errno, exc.msg))
        return Outcome(cur.rowcount, None, cur.warning_count)
    finally:
        conn.close()


_TIMING = re.compile(r" \(\d+\.\d+ sec\)")


def run_cli(server: MariaDB, mesh: DbMeshProcess | None, database: str, sql: str) -> Outcome:
    where = _where(server, mesh)
    args = [str(CLI), "--no-defaults", "--protocol=TCP", f"--host={where['host']}", f"--port={where['port']}",
            f"--user={where['user']}", f"--password={where['password']}", "--local-infile=1", "-vvv", database]
    r = subprocess.run(args, input=sql + ";\n", capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0:
        m = re.search(r"ERROR (\d+) \(\w+\)(?: at line \d+)?: (.*)", r.stderr)
        return Outcome(error=(int(m.group(1)), m.group(2)) if m else (-1, r.stderr))
    # "Query OK, 5 rows affected, 2 warnings (0.001 sec)" then "Records: 5  Deleted: 0  Skipped: 0  Warnings: 2"
    out = _TIMING.sub("", r.stdout)
    m = re.search(r"Query OK, (\d+) rows? affected(?:, (\d+) warnings?)?", out)
    info = re.search(r"^(Records: .*)$", out, re.M)
    return Outcome(int(m.group(1)) if m else None, info.group(1) if info else None,
                   int(m.group(2) or 0) if m else None)


def _strip(info: str | None) -> str | None:
    """PyMySQL/mysqlclient may show MariaDB's length-prefixed info with its length byte: keep the text."""
    if info is None:
        return None
    i = info.find("Records:")
    return info[i:] if i >= 0 else info


CLIENTS: dict[str, Runner] = {"pymysql": run_pymysql, "mysqlclient": run_mysqlclient,
                              "connector": run_connector}
if CLI is not None:
    CLIENTS["cli"] = run_cli


# -- reading back ----------------------------------------------------------------------------------------------------


def reference_rows(server: MariaDB) -> list[tuple[Any, ...]]:
    return sorted(query(server, REFERENCE, f"SELECT {COLUMNS} FROM t_order"))


def node_rows(server: MariaDB) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    return {(ds, t): sorted(query(server, PHYSICAL[ds], f"SELECT {COLUMNS} FROM {t}")) for ds, t in NODES}


def check_sharded_rows(server: MariaDB, expected: list[tuple[Any, ...]]) -> None:
    """The sharded rows are exactly `expected`, each on the data node its rule names."""
    nodes = node_rows(server)
    assert sorted(r for rows in nodes.values() for r in rows) == expected
    for (ds, table), rows in nodes.items():
        for row in rows:
            assert (f"ds_{row[1] % 2}", f"t_order_{row[0] % 2}") == (ds, table), row


def differential(server: MariaDB, mesh: DbMeshProcess, runner: Runner, sql: str) -> Outcome:
    """Load with `sql` into the reference, the pass-through and the sharded database; all must agree."""
    reference = runner(server, None, REFERENCE, sql)
    plain = runner(server, mesh, PLAIN, sql)
    sharded = runner(server, mesh, SHARDED, sql)
    assert plain == reference
    assert sharded == reference
    expected = reference_rows(server)
    assert sorted(query(server, PLAIN, f"SELECT {COLUMNS} FROM t_order")) == expected
    check_sharded_rows(server, expected)
    return reference


# -- files -----------------------------------------------------------------------------------------------------------

CSV = (
    b'order_id,user_id,note,amount,created\r\n'
    b'1,10,"hello, world",1.50,2024-01-02\r\n'
    b'2,11,\\N,2,2024-02-03\r\n'
    b'3,12,"she said ""hi""",3.25,\\N\r\n'
    b'4,13,"multi\r\nline",4,2024-04-05\r\n'
    b'5,14,"esc \\"quoted\\" \\\\ back",5,2024-05-06\r\n'
    b'6,15,NULL,6,2024-06-07\r\n'
    b'7,16,"NULL",7,2024-07-08\r\n'
    b'8,17,caf\xc3\xa9 \xe2\x82\xac,8,2024-08-09\r\n'
    b'9,18,"",9,2024-09-10\r\n'
    b'10,19,tab\there,10,2024-10-11\r\n'
)
CSV_SQL = ("LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' "
           "OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\r\\n' IGNORE 1 LINES")

TSV = b"".join(f"{u}\t{o}\tnote {o}\\twith tab\t{o}.5\t2023-03-{o % 28 + 1:02d}\n".encode()
               for o, u in ((100 + i, 7 * i + 3) for i in range(40)))
TSV_SQL = ("LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order (user_id, order_id, @n, amount, created) "
           "SET note = UPPER(@n)")

# Wrong column counts: a row without its last two fields and a row with one field too many.
BAD = b"1,10,a,1.5,2024-01-01\n2,11,b\n3,12,c,3,2024-03-03,extra\n4,13,d,4,2024-04-04\n"
BAD_SQL = "LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order FIELDS TERMINATED BY ','"


@pytest.fixture
def write(tmp_path: Path) -> Callable[[bytes], str]:
    counter = iter(range(1000))

    def make(data: bytes) -> str:
        path = tmp_path / f"load{next(counter)}.txt"
        path.write_bytes(data)
        return str(path)

    return make


# -- tests -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", list(CLIENTS))
def test_csv_with_quotes_escapes_nulls_crlf_and_a_header(client: str, mariadb: MariaDB, mesh: DbMeshProcess,
                                                         tables: None, write: Callable[[bytes], str]) -> None:
    out = differential(mariadb, mesh, CLIENTS[client], CSV_SQL.format(path=write(CSV)))
    assert out.affected == 10 and out.error is None
    rows = reference_rows(mariadb)
    assert rows[1][2] is None and rows[5][2] is None and rows[6][2] == "NULL"  # \N, NULL, "NULL"
    assert rows[3][2] == "multi\r\nline" and rows[4][2] == 'esc "quoted" \\ back' and rows[7][2] == "café €"


@pytest.mark.parametrize("client", list(CLIENTS))
def test_tsv_with_a_column_list_and_set(client: str, mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                                        write: Callable[[bytes], str]) -> None:
    out = differential(mariadb, mesh, CLIENTS[client], TSV_SQL.format(path=write(TSV)))
    assert out.affected == 40
    assert reference_rows(mariadb)[0][2] == "NOTE 100\tWITH TAB"


@pytest.mark.parametrize("client", list(CLIENTS))
def test_wrong_column_counts_warn_as_on_the_server(client: str, mariadb: MariaDB, mesh: DbMeshProcess,
                                                   tables: None, write: Callable[[bytes], str]) -> None:
    out = differential(mariadb, mesh, CLIENTS[client], BAD_SQL.format(path=write(BAD)))
    # Default sql_mode (STRICT_TRANS_TABLES): LOCAL loads warn rather than fail: 1261 once per missing column of
    # row 2, 1262 for row 3.
    assert out.affected == 4 and out.error is None
    if out.warnings is not None:
        assert out.warnings == 3
    if out.info is not None:
        assert out.info == "Records: 4  Deleted: 0  Skipped: 0  Warnings: 3"


@pytest.mark.parametrize("client", ["pymysql", "mysqlclient"])
def test_empty_file(client: str, mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                    write: Callable[[bytes], str]) -> None:
    out = differential(mariadb, mesh, CLIENTS[client], CSV_SQL.format(path=write(b"")))
    assert out == Outcome(0, "Records: 0  Deleted: 0  Skipped: 0  Warnings: 0", 0)


def test_client_refusing_to_send(mariadb: MariaDB, mesh: DbMeshProcess, tables: None, tmp_path: Path) -> None:
    """PyMySQL cannot open the file: it sends an empty one and raises; the session goes on as on the server."""
    sql = CSV_SQL.format(path=tmp_path / "no-such-file.csv")
    for database, where in ((REFERENCE, None), (PLAIN, mesh), (SHARDED, mesh)):
        conn = pymysql.connect(database=database, local_infile=True, autocommit=True, **_where(mariadb, where))
        with conn.cursor() as cur:
            with pytest.raises(pymysql.err.OperationalError) as info:
                cur.execute(sql)
            assert info.value.args[0] == 1017
            cur.execute("SELECT COUNT(*) FROM t_order")
            assert cur.fetchone() == (0,)
        conn.close()
    check_sharded_rows(mariadb, [])


def test_client_without_local_infile_gets_the_servers_refusal(mariadb: MariaDB, mesh: DbMeshProcess,
                                                              tables: None, write: Callable[[bytes], str]) -> None:
    sql = CSV_SQL.format(path=write(CSV))
    seen = []
    for database, where in ((REFERENCE, None), (PLAIN, mesh), (SHARDED, mesh)):
        conn = pymysql.connect(database=database, local_infile=False, autocommit=True, **_where(mariadb, where))
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as info:
            cur.execute(sql)
        seen.append(info.value.args)
        conn.close()
    assert seen[0][0] in (1148, 4166)
    assert seen[1] == seen[0] and seen[2] == seen[0]
    check_sharded_rows(mariadb, [])


def test_large_file_many_packets(mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                                 write: Callable[[bytes], str]) -> None:
    """Several MB in 16 KiB client packets; rows of the two tables of one data source interleave, so the open
    LOAD on a data source gives way to the other table's several times."""
    data = b"".join(b"%d,%d,%s,%d.25,2022-01-01\n" % (i, i % 97, b"x" * (i % 50), i % 1000)
                    for i in range(1, 150_001))
    assert len(data) > 5 * 1024 * 1024
    path = write(data)
    sql = BAD_SQL.format(path=path)
    ref = run_pymysql(mariadb, None, REFERENCE, sql)
    out = run_pymysql(mariadb, mesh, SHARDED, sql)
    assert out == ref == Outcome(150_000, "Records: 150000  Deleted: 0  Skipped: 0  Warnings: 0", 0)
    plain = run_pymysql(mariadb, mesh, PLAIN, sql)
    assert plain == ref
    check = "SELECT COUNT(*), SUM(order_id), SUM(user_id), SUM(amount), SUM(LENGTH(note)) FROM {}"
    total = query(mariadb, REFERENCE, check.format("t_order"))[0]
    assert query(mariadb, PLAIN, check.format("t_order"))[0] == total
    parts = [query(mariadb, PHYSICAL[ds], check.format(t))[0] for ds, t in NODES]
    assert sum(p[0] for p in parts) == total[0] and sum(p[1] for p in parts) == total[1]
    assert sum(p[3] for p in parts) == total[3] and sum(p[4] for p in parts) == total[4]
    for (ds, t) in NODES:  # every row on its node
        wrong = query(mariadb, PHYSICAL[ds], f"SELECT COUNT(*) FROM {t} WHERE user_id % 2 <> {ds[-1]} "
                                             f"OR order_id % 2 <> {t[-1]}")[0][0]
        assert wrong == 0


def _session(mesh: DbMeshProcess, database: str) -> Any:
    return pymysql.connect(host=mesh.host, port=mesh.port, user="root", password="rootpw", database=database,
                           local_infile=True, autocommit=True)


def test_rolled_back_transaction_leaves_no_row(mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                                               write: Callable[[bytes], str]) -> None:
    conn = _session(mesh, SHARDED)
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(CSV_SQL.format(path=write(CSV)))
        assert cur.rowcount == 10
        cur.execute("SELECT COUNT(*) FROM t_order")
        assert cur.fetchone() == (10,)  # visible inside the transaction, on both data sources
        cur.execute("ROLLBACK")
        cur.execute("SELECT COUNT(*) FROM t_order")
        assert cur.fetchone() == (0,)
        cur.execute("BEGIN")
        cur.execute(TSV_SQL.format(path=write(TSV)))
        cur.execute("COMMIT")
    conn.close()
    check_sharded_rows(mariadb, sorted(r for rows in node_rows(mariadb).values() for r in rows))
    assert sum(len(rows) for rows in node_rows(mariadb).values()) == 40


def test_broadcast_and_single_tables(mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                                     write: Callable[[bytes], str]) -> None:
    path = write(b"1\tone\n2\ttwo\n3\t\\N\n")
    for table in ("t_dict", "t_single"):
        sql = f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table}"
        ref = run_pymysql(mariadb, None, REFERENCE, sql)
        assert run_pymysql(mariadb, mesh, SHARDED, sql) == ref == Outcome(3, "Records: 3  Deleted: 0  Skipped: 0  "
                                                                          "Warnings: 0", 0)
    expected = sorted(query(mariadb, REFERENCE, "SELECT k, v FROM t_dict"))
    for db in PHYSICAL.values():
        assert sorted(query(mariadb, db, "SELECT k, v FROM t_dict")) == expected
    assert sorted(query(mariadb, PHYSICAL["ds_0"], "SELECT k, v FROM t_single")) == expected


@pytest.mark.parametrize(("sql", "words"), [
    ("LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order (order_id, note)", "sharding column"),
    ("LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order (order_id, @u, note) SET user_id = @u + 1", "SET"),
    ("LOAD DATA INFILE '{path}' INTO TABLE t_order", "without LOCAL"),
    ("LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order FIELDS TERMINATED BY '' ENCLOSED BY ''", "fixed-size"),
])
def test_refusals(sql: str, words: str, mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                  write: Callable[[bytes], str]) -> None:
    out = run_pymysql(mariadb, mesh, SHARDED, sql.format(path=write(CSV)))
    assert out.error is not None and out.error[0] == 1235 and "DBM-1506" in out.error[1] and words in out.error[1]
    check_sharded_rows(mariadb, [])
    # The session goes on.
    conn = _session(mesh, SHARDED)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t_order")
        assert cur.fetchone() == (0,)
    conn.close()


def test_server_errors_come_before_the_file(mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                                           write: Callable[[bytes], str]) -> None:
    """A statement the server refuses gets the server's own error, as on a plain database."""
    path = write(CSV)
    for sql in (f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order (nosuch, user_id, order_id)",
                f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_order FIELDS ENCLOSED BY 'ab'"):
        ref = run_pymysql(mariadb, None, REFERENCE, sql)
        assert ref.error is not None
        assert run_pymysql(mariadb, mesh, SHARDED, sql) == ref
        assert run_pymysql(mariadb, mesh, PLAIN, sql) == ref


def test_a_row_that_cannot_be_routed_fails_the_whole_statement(mariadb: MariaDB, mesh: DbMeshProcess, tables: None,
                                                              write: Callable[[bytes], str]) -> None:
    """A NULL sharding value far into the file (after rows went to every data node): the client gets the error
    after its whole file, nothing of the statement stays (implicit transaction, or the client's own with the rows
    it had before), and the session goes on."""
    good = b"".join(b"%d,%d,n,1,2022-01-01\n" % (i, i) for i in range(1, 20_001))
    path = write(good + b"20001,\\N,bad,1,2022-01-01\n" + good.replace(b",n,", b",m,"))
    sql = BAD_SQL.format(path=path)
    out = run_pymysql(mariadb, mesh, SHARDED, sql)
    assert out.error == (1048, "sharding value of t_order.user_id cannot be NULL")
    check_sharded_rows(mariadb, [])
    conn = _session(mesh, SHARDED)
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO t_order (order_id, user_id, note) VALUES (900001, 1, 'kept'), (900002, 2, 'kept')")
        with pytest.raises(pymysql.err.MySQLError) as info:
            cur.execute(sql)
        assert info.value.args[0] == 1048
        cur.execute("SELECT COUNT(*) FROM t_order")
        assert cur.fetchone() == (2,)  # still in the transaction, with only its own rows
        cur.execute("COMMIT")
        cur.execute("SELECT order_id, note FROM t_order ORDER BY order_id")
        assert cur.fetchall() == ((900001, "kept"), (900002, "kept"))
    conn.close()
