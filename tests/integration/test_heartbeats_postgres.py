"""Heartbeats on PostgreSQL: the loop of tests/unit/pipeline/test_heartbeats.py (page once, no page again on a
restart or from a second replica's `Store`, resolve on a silenced beat; reloads add and remove heartbeats) runs
here unchanged against a PostgreSQL database. Skips without a server, fails under `CI=true` (see
tests/support/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.store import Store
from tests.support.postgres import fresh_database
from tests.unit.pipeline.test_heartbeats import reloads_add_and_remove, silence_pages_once

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def test_silence_pages_once_across_restarts_on_postgresql(pg_url: str) -> None:
    stores: list[Store] = []

    def open_store() -> Store:
        stores.append(Store.open(pg_url))
        return stores[-1]

    try:
        silence_pages_once(open_store)
    finally:
        for store in stores:
            store.engine.dispose()


def test_reloads_add_and_remove_heartbeats_on_postgresql(pg_url: str) -> None:
    store = Store.open(pg_url)
    try:
        reloads_add_and_remove(store)
    finally:
        store.engine.dispose()
