"""SQLAlchemy 2 ORM and Core over psycopg 3 (sync) and asyncpg (async) through dbmesh, compared with the
same unit of work run against PostgreSQL directly: DDL, typed columns (JSONB, ARRAY, UUID, Numeric,
LargeBinary, Interval, timezone-aware DateTime), bulk inserts (insertmanyvalues with RETURNING), updates,
a rollback, an IntegrityError and reflection."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.clients_pg.common import EMOJI_TEXT, Endpoint


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "t_sqla_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    price: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(12, 4))
    data: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB)
    tags: Mapped[list[str] | None] = mapped_column(pg.ARRAY(sa.Text))
    ref: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    blob: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    ttl: Mapped[datetime.timedelta | None] = mapped_column(sa.Interval)
    at: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    ok: Mapped[bool | None] = mapped_column(sa.Boolean)


def _rows(n: int) -> list[Item]:
    return [Item(name=f"item {i} {EMOJI_TEXT}", price=decimal.Decimal(i) / 8, data={"i": i, "l": [i, None]},
                 tags=[f"t{i}", "😀"], ref=uuid.UUID(int=i), blob=bytes([0, 255, i]),
                 ttl=datetime.timedelta(hours=i), at=datetime.datetime(2024, 1, 1, i % 24, tzinfo=datetime.UTC),
                 ok=i % 2 == 0) for i in range(1, n + 1)]


def unit_of_work(engine: sa.Engine) -> list[Any]:
    out: list[Any] = []
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all(_rows(50))
        s.commit()
        out.append(sorted(i.id for i in s.scalars(sa.select(Item))))
        item = s.get(Item, 7)
        assert item is not None
        item.data = {"changed": True}
        item.tags = [*(item.tags or []), "new"]
        s.commit()
        s.add(Item(name="doomed"))
        s.flush()
        s.rollback()
        out.append(s.scalar(sa.select(sa.func.count()).select_from(Item)))
        s.add(Item(name=_rows(1)[0].name))
        with pytest.raises(sa.exc.IntegrityError) as err:
            s.commit()
        s.rollback()
        out.append((err.value.orig.sqlstate if hasattr(err.value.orig, "sqlstate") else None,
                    str(err.value.orig).splitlines()[0]))
        rows = s.execute(sa.select(Item.id, Item.name, Item.price, Item.data, Item.tags, Item.ref, Item.blob,
                                   Item.ttl, Item.at, Item.ok).order_by(Item.id).limit(10)).all()
        out.append([tuple(r) for r in rows])
    with engine.connect() as conn:
        res = conn.execute(sa.update(Item).where(Item.price > 3).values(ok=None))
        out.append(res.rowcount)
        conn.commit()
        out.append(conn.execute(sa.text("SELECT count(*) FROM t_sqla_item WHERE ok IS NULL")).scalar())
        cols = sa.inspect(conn).get_columns("t_sqla_item")
        out.append([(c["name"], str(c["type"]), c["nullable"]) for c in cols])
    Base.metadata.drop_all(engine)
    return out


def check(result: list[Any]) -> None:
    assert result[0] == list(range(1, 51))
    assert result[1] == 50
    assert result[2][0] in ("23505", None) and "duplicate key value violates unique constraint" in result[2][1]
    first = result[3][0]
    assert first[1] == f"item 1 {EMOJI_TEXT}" and first[2] == decimal.Decimal("0.1250") and first[6] == b"\x00\xff\x01"
    assert result[3][6][3] == {"changed": True} and result[3][6][4] == ["t7", "😀", "new"]
    assert result[4] == 26 and result[5] == 26


def test_orm_psycopg_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    results = []
    for ep in (pg_direct, pg_proxy):
        engine = sa.create_engine(ep.url("postgresql+psycopg") + "?sslmode=disable", pool_size=2)
        try:
            results.append(unit_of_work(engine))
        finally:
            engine.dispose()
    check(results[1])
    assert results[1] == results[0]


def test_orm_asyncpg_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    import asyncio

    async def run_sessionless(ep: Endpoint) -> list[Any]:
        """Core statements on the async engine: what the asyncpg dialect sends (prepared, binary)."""
        engine = create_async_engine(ep.url("postgresql+asyncpg") + "?ssl=disable", pool_size=2)
        out: list[Any] = []
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
                await conn.run_sync(Base.metadata.create_all)
                res = await conn.execute(sa.insert(Item).returning(Item.id), [
                    {"name": i.name, "price": i.price, "data": i.data, "tags": i.tags, "ref": i.ref, "blob": i.blob,
                     "ttl": i.ttl, "at": i.at, "ok": i.ok} for i in _rows(30)])
                out.append(sorted(r[0] for r in res))
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.select(Item).order_by(Item.id).limit(5))).all()
                out.append([tuple(r) for r in rows])
                try:
                    await conn.execute(sa.insert(Item).values(name=_rows(1)[0].name))
                except sa.exc.IntegrityError as exc:
                    out.append(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None))
                await conn.rollback()
                out.append((await conn.execute(sa.select(sa.func.sum(Item.price)))).scalar())
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
        finally:
            await engine.dispose()
        return out

    direct = asyncio.run(run_sessionless(pg_direct))
    proxied = asyncio.run(run_sessionless(pg_proxy))
    assert proxied[0] == list(range(1, 31))
    assert proxied[1][0][1] == f"item 1 {EMOJI_TEXT}" and proxied[1][0][6] == b"\x00\xff\x01"
    assert proxied[2] == "23505"
    assert proxied[3] == sum(decimal.Decimal(i) / 8 for i in range(1, 31))
    assert proxied == direct
