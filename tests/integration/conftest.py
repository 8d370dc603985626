"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakes.pagerduty import FakePagerDuty


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    """The PagerDuty fake on loopback, plain HTTP; the test fails if the bridge sent it any request the published
    schemas refuse."""
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()
