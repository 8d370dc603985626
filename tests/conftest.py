"""Fixtures shared by the whole suite (tests/README.md describes the layout).

- `pd`: a plain-HTTP `FakePagerDuty` that fails the test if the code under test sent it a request PagerDuty's
  published schema refuses. Modules that need another set-up (TLS, users and escalation policies, rate limits)
  define their own `pd`, which takes precedence over this one.
- `store`: a `Store` on a new SQLite database in the test's temporary directory (tests/integration/
  test_store_postgres.py overrides it with PostgreSQL).
- `rules_copy`: a copy of the shipped rules in the test's temporary directory, free to edit.
- `fake_pagerduty`, `fake_datadog`: the fakes' own fixtures (tests/support/fakes/), started with their defaults.

Every test under tests/integration/ is marked `integration` (real processes or servers on loopback), so
`-m "not integration"` selects the in-process tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.store import Store
from tests.support.fakes.datadog import fake_datadog
from tests.support.fakes.pagerduty import FakePagerDuty, fake_pagerduty
from tests.support.shared import copy_shipped_rules

__all__ = ["fake_datadog", "fake_pagerduty", "pd", "rules_copy", "store"]

INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'bridge.db'}")


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    return copy_shipped_rules(tmp_path / "rules")
