"""Property-based fuzzing of the whole API from its OpenAPI schema: no input yields a server error.

Each operation is called with a token whose role the access table allows, against a populated app
(parties, users, datasets, a job), so generated requests reach the service code, not just the gate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from coordinator.api.access import ACCESS
from coordinator.app import create_app
from tests.support.coordinator import TestClient, World, app_settings

pytestmark = pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning")

USER_OF_ROLE = {"bootstrap": "bootstrap", "admin": "bank_admin", "analyst": "bank_analyst", "operator": "telco_op",
                "auditor": "auditor"}

APP = create_app(app_settings(Path(tempfile.mkdtemp(prefix="tandem-schemathesis-"))))
WORLD = World(TestClient(APP)).populate()
WORLD.approved_job()
WORLD.submit()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# Boundary cases (coverage phase) plus a few random ones per operation; methods the API does not
# serve are already covered by the error-shape tests, so skip them to keep the suite fast.
schema.config.phases.coverage.unexpected_methods = set()


def _headers(operation_id: str) -> dict[str, str]:
    roles = ACCESS.get(operation_id)
    return WORLD.h(USER_OF_ROLE[roles[0]]) if roles else {}


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call(headers=_headers(case.operation.definition.raw.get("operationId", "")))
    case.validate_response(response, checks=[not_a_server_error])
