"""The one place where benchmarks/ imports the tests package: see the marked block below.

When the test-support modules move again, only the marked block changes. Nothing else of the tests package is
used: the PostgreSQL database helper is `bench.postgres`, the Alertmanager launcher `bench.alertmanager`.
`DatabaseHolder` (a database's locks held as another writer would) is for `resilience_locked_db.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# ---- BEGIN imports from tests/ (the only ones in benchmarks/; fix these lines when tests/support moves) --------
from tests.support import faults  # noqa: E402
from tests.support.bodies import alertmanager_batch  # noqa: E402
from tests.support.dblock import DatabaseHolder  # noqa: E402
from tests.support.e2e import POLICIES, SERVICES, USERS  # noqa: E402
from tests.support.fakes.pagerduty import API_KEY, FROM_EMAIL, FakePagerDuty, Reply  # noqa: E402
from tests.support.procstat import sample  # noqa: E402
from tests.support.seeding import seed_paged_incidents  # noqa: E402
from tests.support.server import (  # noqa: E402
    ADMIN_TOKEN,
    ROUTING_KEY,
    TOKEN,
    BridgeProcess,
    WorkerProcess,
    bridge_env,
)

# ---- END imports from tests/ -----------------------------------------------------------------------------------

__all__ = ["ADMIN_TOKEN", "API_KEY", "FROM_EMAIL", "POLICIES", "REPO", "ROUTING_KEY", "SERVICES", "TOKEN", "USERS",
           "BridgeProcess", "DatabaseHolder", "FakePagerDuty", "Reply", "WorkerProcess", "alertmanager_batch",
           "bridge_env", "faults", "sample", "seed_paged_incidents"]
