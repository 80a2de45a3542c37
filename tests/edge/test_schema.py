"""Schemathesis against a running edge: no 5xx, and every response as its OpenAPI description says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.service import Service

MAX_EXAMPLES = 40
# A token's signature and a landing page's policy cannot be written as a schema: schema-valid
# requests are refused (400, 422) by design. Every other check runs, 5xx and conformance included.
EXCLUDED = [positive_data_acceptance]
SPEC = json.loads(resources.files("clickbus").joinpath("openapi.json").read_bytes())
OPERATIONS = [(path, method) for path, item in SPEC["paths"].items() for method in item if method != "parameters"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(Path(tmp_path_factory.mktemp("schema"))).start()
    yield running
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_edge_conforms_to_its_openapi_description(service: Service, path: str, method: str) -> None:
    operation = schemathesis.openapi.from_url(service.url + "/openapi.json")[path][method.upper()]

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=service.url, excluded_checks=EXCLUDED)

    conforms()
