"""A fresh PostgreSQL database per test, from `BRIDGE_TEST_POSTGRES_URL`.

`scripts/test` starts a throwaway server with `scripts/postgres` (as root on Debian it installs PostgreSQL first)
and exports the URL of its `bridge_test` database. `fresh_database()` uses that URL only to reach the server:
each test gets its own uniquely named database (so concurrent test runs never meet), dropped afterwards.

Without the URL, or without the `psycopg` driver, a test that needs PostgreSQL skips with how to get it, except
under `CI=true`, where it fails: CI must never pass by skipping the database it was supposed to test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ENV = "BRIDGE_TEST_POSTGRES_URL"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def postgres_url() -> str:
    """The server's URL from the environment, or skip (fail under `CI=true`) with how to get one."""
    url = os.environ.get(ENV, "")
    if not url:
        _unavailable(f"{ENV} is not set: run ./scripts/test as root (it starts PostgreSQL with scripts/postgres), "
                     f"or export {ENV}=\"$(./scripts/postgres)\"")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("the psycopg driver is not installed: pip install -e '.[postgres]'")
    return url


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new empty database on the test server; the database is dropped on exit."""
    base = make_url(postgres_url())
    name = f"bridge_t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", pool_size=1, connect_args={"connect_timeout": 10})
    try:
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as exc:
            # The URL was given, so the server is meant to be there: an error, not a reason to skip.
            pytest.fail(f"PostgreSQL at {base.render_as_string(hide_password=True)} is unreachable: {exc}",
                        pytrace=False)
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # FORCE (PostgreSQL 13+): a pool the test forgot to dispose must not keep the database alive.
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
