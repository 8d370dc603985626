"""Schemathesis against a live bridge (`incident-bridge serve` on loopback) and the document it serves at
/api/v1/openapi.json: for every operation, generated requests (valid ones, and invalid ones) with the admin token
on the API and reloads and the webhook token on webhooks. Checks: no 5xx, and every answer's status code, content
type, headers and body conform to the document.

Bounded for CI: `BRIDGE_SCHEMATHESIS_EXAMPLES` cases per operation and generation mode (default 50), derandomized
(the same cases every run), no example database. The test prints how many cases it ran.

The bridge has an egress trap as its proxy (no request leaves the machine: SNS certificates come from a local
directory, Google's from BRIDGE_GCP_CERTS), and the Azure token equal to the webhook token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis  # the test extra: missing, this module fails to import (never a silent skip)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.web.api import openapi_document
from tests.support.cost_signing import SnsSigner
from tests.support.egress import EgressTrap
from tests.support.server import ADMIN_TOKEN, TOKEN, BridgeProcess, bridge_env, credential_for

pytestmark = pytest.mark.integration

METHODS = {"get", "post", "put", "patch", "delete"}
EXAMPLES = int(os.environ.get("BRIDGE_SCHEMATHESIS_EXAMPLES", "50"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    SnsSigner(tmp / "sns-certs")
    trap = EgressTrap()
    env = bridge_env(tmp, BRIDGE_SNS_CERT_DIR=tmp / "sns-certs", BRIDGE_SNS_TOPICS="*",
                     BRIDGE_GCP_AUDIENCE="https://bridge.example.com/webhooks/gcp-pubsub",
                     BRIDGE_GCP_CERTS=json.dumps({"test-kid": "not a certificate"}), BRIDGE_AZURE_TOKEN=TOKEN,
                     **trap.env())
    process = BridgeProcess(tmp, env).start()
    try:
        yield process
    finally:
        process.kill()
        trap.close()
    assert "Traceback" not in process.output(), process.output()


def run_operation(operation: Any, base_url: str, mode: Any) -> tuple[int, str | None]:
    """Run generated cases of one operation; the number run and the first failure (shrunk), or None."""
    ran = 0
    headers = {"Authorization": f"Bearer {credential_for(operation.path)}"}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        nonlocal ran
        ran += 1
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=10)

    try:
        check()
    except Unsatisfiable:
        # Nothing to make invalid: an operation without parameters or body has no negative case.
        assert mode == GenerationMode.NEGATIVE and ran == 0, operation.label
    except Exception as exc:  # a check failed: reported with the operation, after every operation ran
        return ran, f"{operation.label} ({mode.value}): {exc}"
    return ran, None


def test_every_operation_conforms_and_never_answers_5xx(bridge: BridgeProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{bridge.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation of the shipped document, none lost in loading.
    shipped = {f"{m.upper()} {p}" for p, item in openapi_document()["paths"].items() for m in item if m in METHODS}
    # Schemathesis leaves out the document's own URL (tests/unit/web/test_openapi.py requests it).
    assert {op.label for op in operations} == shipped - {"GET /api/v1/openapi.json"}
    cases = 0
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            ran, failure = run_operation(operation, bridge.url, mode)
            cases += ran
            if failure:
                failures.append(failure)
    print(f"schemathesis: {cases} cases over {len(operations)} operations ({EXAMPLES} per operation and mode)")
    assert not failures, "\n\n".join(failures)
    assert ADMIN_TOKEN not in bridge.output() and TOKEN not in bridge.output()
