"""Fixtures: a real PostgreSQL server (session), a fresh database per test, and SQLite files."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from choreograph.outbox import install
from tests.brokers.processes import skip_or_fail

from .model import business
from .postgres import PostgresServer, find_postgres_bin

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port for the whole session (skipped if not installed)."""
    bindir = find_postgres_bin()
    if bindir is None:
        skip_or_fail("no PostgreSQL server: apt-get install postgresql (initdb under /usr/lib/postgresql/*/bin)")
    assert bindir is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed: pip install 'choreograph[outbox]'")
    server = PostgresServer(bindir)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The async SQLAlchemy URL of a new, empty database."""
    return postgres_server.create_database(f"outbox_{next(_names)}")


@pytest.fixture
def sqlite_url(tmp_path: pytest.TempPathFactory) -> str:
    """The async SQLAlchemy URL of a new SQLite file."""
    return f"sqlite+aiosqlite:///{tmp_path}/service.db"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each dialect: a PostgreSQL one, then a SQLite file."""
    name = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """``db_url``'s database with the outbox tables installed and the test model's business tables."""
    engine = create_async_engine(db_url)
    await install(engine)
    async with engine.begin() as conn:
        await conn.run_sync(business.create_all)
    yield engine
    await engine.dispose()
