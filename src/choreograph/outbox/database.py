"""Open the service's database from a URL as an operator writes it."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from choreograph.core.errors import ConfigurationError

_ASYNC_DRIVERS = {"postgresql": "postgresql+psycopg_async", "sqlite": "sqlite+aiosqlite"}


def async_url(url: str) -> str:
    """Return ``url`` with an async driver: ``postgresql://`` -> psycopg 3 async, ``sqlite://`` -> aiosqlite.

    A URL that names an async driver already is kept. Raises ConfigurationError
    for another database or a URL SQLAlchemy cannot read.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError for bad URLs
        raise ConfigurationError(
            f"not a database URL (postgresql://..., sqlite:///...): {type(exc).__name__}"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ConfigurationError(f"the outbox lives in PostgreSQL or SQLite, not {backend!r}")
    driver = parsed.drivername
    if driver in (backend, f"{backend}+psycopg", f"{backend}+psycopg2", f"{backend}+pysqlite"):
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[backend])
    return parsed.render_as_string(hide_password=False)


def open_engine(url: str) -> AsyncEngine:
    """Create an async engine for ``url`` (see :func:`async_url`). Connects on first use."""
    return create_async_engine(async_url(url))
