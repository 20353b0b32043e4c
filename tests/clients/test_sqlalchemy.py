"""SQLAlchemy (Core and ORM) over PyMySQL and over mysqlclient, through dbmesh and directly."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.clients.common import BINARY, EMOJI_TEXT, Endpoint

DRIVERS = ["pymysql", "mysqldb"]


def engine(ep: Endpoint, driver: str, **kwargs: Any) -> sa.Engine:
    url = sa.URL.create(f"mysql+{driver}", username=ep.user, password=ep.password, host=ep.host, port=ep.port,
                        database=ep.database, query={"charset": "utf8mb4"})
    connect_args: dict[str, Any] = {"ssl_disabled": True} if driver == "pymysql" else {}
    return sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool, **kwargs)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "t_sqlalchemy"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    qty: Mapped[int | None] = mapped_column(mysql_types.BIGINT(unsigned=True))
    price: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(10, 2))
    ratio: Mapped[float | None] = mapped_column(sa.Double)
    payload: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    born: Mapped[datetime.date | None] = mapped_column(sa.Date)
    at: Mapped[datetime.datetime | None] = mapped_column(mysql_types.DATETIME(fsp=6))
    took: Mapped[datetime.time | None] = mapped_column(sa.Time)
    doc: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    color: Mapped[str | None] = mapped_column(sa.Enum("red", "green", "blue", native_enum=True))


ROWS = [
    {"name": EMOJI_TEXT, "qty": 18446744073709551615, "price": decimal.Decimal("99.95"), "ratio": 0.1,
     "payload": BINARY, "born": datetime.date(2024, 2, 29), "at": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
     "took": datetime.time(1, 0, 2), "doc": {"a": [1, None], "e": "😀"}, "color": "blue"},
    {"name": "nulls", "qty": None, "price": None, "ratio": None, "payload": None, "born": None, "at": None,
     "took": None, "doc": None, "color": None},
]


def _orm_and_core(eng: sa.Engine) -> list[Any]:
    out: list[Any] = []
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    with Session(eng) as session:  # ORM: unit of work in one transaction
        items = [Item(**row) for row in ROWS]
        session.add_all(items)
        session.commit()
        out.append(("ids", [i.id for i in items]))
        got = session.scalars(sa.select(Item).order_by(Item.id)).all()
        out.append(("orm rows", [(i.id, i.name, i.qty, i.price, i.ratio, i.payload, i.born, i.at, i.took, i.doc,
                                  i.color) for i in got]))
        got[1].name = "renamed"
        session.commit()
        session.delete(got[0])
        session.flush()
        session.rollback()  # the delete is undone
        out.append(("count after rollback", session.scalar(sa.select(sa.func.count()).select_from(Item))))
    table = Item.__table__
    with eng.begin() as conn:  # Core
        r = conn.execute(sa.update(table).where(table.c.color.is_(None)).values(color="red"))
        out.append(("core update rowcount", r.rowcount))
        r = conn.execute(sa.insert(table), [{"name": f"bulk {i}", "qty": i} for i in range(5)])
        out.append(("core executemany rowcount", r.rowcount))
        res = conn.execute(sa.select(table.c.id, table.c.name, table.c.color, sa.func.json_extract(table.c.doc, "$.e"))
                           .order_by(table.c.id))
        out.append(("core keys", list(res.keys())))
        out.append(("core rows", [tuple(r) for r in res]))
        r = conn.execute(sa.delete(table).where(table.c.name.like("bulk%")))
        out.append(("core delete rowcount", r.rowcount))
        out.append(("text", conn.execute(sa.text("SELECT :a AS a, :b AS b"), {"a": None, "b": "é"}).all()))
    try:
        with eng.begin() as conn:
            conn.execute(sa.insert(table).values(id=1, name="dup"))
    except sa_exc.IntegrityError as exc:
        out.append(("dup", exc.orig.args[0]))
    try:
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table_for_client_matrix"))
    except sa_exc.ProgrammingError as exc:
        out.append(("missing", exc.orig.args[0]))
    out.append(("reflected", sorted((c["name"], str(c["type"])) for c in sa.inspect(eng).get_columns("t_sqlalchemy"))))
    Base.metadata.drop_all(eng)
    return out


@pytest.mark.parametrize("driver", DRIVERS)
def test_orm_and_core_match_direct(direct: Endpoint, proxy: Endpoint, driver: str) -> None:
    results = {}
    for ep in (direct, proxy):
        eng = engine(ep, driver)
        try:
            results[ep.name] = _orm_and_core(eng)
        finally:
            eng.dispose()
    assert results["dbmesh"] == results["direct"]
    got = dict(results["dbmesh"])
    assert got["ids"] == [1, 2]
    assert got["orm rows"][0][1:] == tuple(ROWS[0].values())
    assert got["count after rollback"] == 2
    assert got["core update rowcount"] == 1 and got["core executemany rowcount"] == 5
    assert got["core delete rowcount"] == 5
    assert got["dup"] == 1062 and got["missing"] == 1146


@pytest.mark.parametrize("driver", DRIVERS)
def test_wrong_password_is_1045(proxy: Endpoint, driver: str) -> None:
    eng = engine(proxy.as_user("root", "wrong"), driver)
    try:
        with pytest.raises(sa_exc.OperationalError) as info:
            eng.connect()
        assert info.value.orig.args[0] == 1045
    finally:
        eng.dispose()


@pytest.mark.parametrize("driver", DRIVERS)
def test_pooled_engine_reuses_connections(proxy: Endpoint, driver: str) -> None:
    """QueuePool with pre-ping (COM_PING / SELECT 1) and reset-on-return (ROLLBACK) through dbmesh."""
    url = sa.URL.create(f"mysql+{driver}", username=proxy.user, password=proxy.password, host=proxy.host,
                        port=proxy.port, database=proxy.database)
    eng = sa.create_engine(url, pool_size=2, pool_pre_ping=True,
                           connect_args={"ssl_disabled": True} if driver == "pymysql" else {})
    try:
        for n in range(50):
            with eng.connect() as conn:
                assert conn.execute(sa.text("SELECT :n + 1"), {"n": n}).scalar() == n + 1
        assert eng.pool.checkedin() >= 1
    finally:
        eng.dispose()
