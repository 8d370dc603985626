"""The pure parts of `bridge.model` that the texts of every stage share."""

from __future__ import annotations

import pytest

from bridge.model import display_title

# One priority per title: the sender's status tags go, the bridge's own severity is the only one shown.
TITLE_CASES = [
    ("datadog_priority_and_transition", "[P1] [Triggered] Checkout: users cannot pay", "Checkout: users cannot pay"),
    ("datadog_warn", "[P3] [Warn] Checkout: customers with failed orders", "Checkout: customers with failed orders"),
    ("datadog_recovered", "[P1] [Recovered] Checkout: users cannot pay", "Checkout: users cannot pay"),
    ("datadog_scope_kept_as_suffix", "[Triggered on {env:prod,service:checkout}] Checkout: users cannot pay",
     "Checkout: users cannot pay ({env:prod,service:checkout})"),
    ("security_signal_level", "[High] Credential stuffing attack", "Credential stuffing attack"),
    ("re_triggered", "[P2] [Re-Triggered] Disk full", "Disk full"),
    ("plain_title_unchanged", "Disk full on db-1", "Disk full on db-1"),
    ("bracket_that_is_not_a_status_kept", "[checkout] Disk full", "[checkout] Disk full"),
    ("bracket_later_in_the_title_kept", "Disk full [P1]", "Disk full [P1]"),
    ("only_tags_keeps_the_title", "[P1] [Triggered]", "[P1] [Triggered]"),
]


@pytest.mark.parametrize(("title", "shown"), [c[1:] for c in TITLE_CASES], ids=[c[0] for c in TITLE_CASES])
def test_display_title(title: str, shown: str) -> None:
    assert display_title(title) == shown
