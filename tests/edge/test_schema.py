"""Schemathesis against a running edge: no 5xx, and every response as its OpenAPI description says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.service import Service

MAX_EXAMPLES = 40
# A token's signature and a landing page's policy cannot be written as a schema: schema-valid
# requests are refused (400, 422) by design. Every other check runs, 5xx and conformance included.
EXCLUDED: list[CheckFunction] = [positive_data_acceptance]
SPEC = json.loads(resources.files("clickbus").joinpath("openapi.json").read_bytes())
OPERATIONS = [(path, method) for path, item in SPEC["paths"].items() for method in item if method != "parameters"]
# served on the internal listener
ADMIN_PATHS = {"/v1/insert", "/metrics", "/openapi.json", "/v1/reports", "/", "/console/{name}", "/v1/console/live"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(Path(tmp_path_factory.mktemp("schema"))).start()
    yield running
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_edge_conforms_to_its_openapi_description(service: Service, path: str, method: str) -> None:
    operation = schemathesis.openapi.from_url(service.admin_url + "/openapi.json")[path][method.upper()]
    base_url = service.admin_url if path in ADMIN_PATHS else service.url

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def conforms(case: schemathesis.Case[Any]) -> None:  # Any: the operation type schemathesis generates
        case.call_and_validate(base_url=base_url, excluded_checks=EXCLUDED)

    conforms()


def _answers(url: str, admin_url: str) -> list[tuple[str, str, int, requests.Response]]:
    """Publisher-API answers schemathesis cannot reach (it has no valid token): (path, method, status, response)."""
    insert: dict[str, str | dict[str, int]] = {"markup": "<p>ad</p>", "auction": {"member_id": 7, "auction_id_64": 1}}
    inserted = requests.post(admin_url + "/v1/insert", json=insert, timeout=5)
    beacons = inserted.json()["beacons"]
    token = beacons["click"].rsplit("/", 1)[1]
    body = {"user_id": "u", "session_id": "s"}
    click, impression = "/v1/beacon/click/{ad_id}", "/v1/beacon/impression/{ad_id}"
    return [
        ("/v1/insert", "post", 200, inserted),
        (click, "post", 202, requests.post(beacons["click"], json=body, timeout=5)),
        (impression, "post", 202, requests.post(beacons["impression"] + "?pos=2", json=body, timeout=5)),
        (click, "post", 422, requests.post(beacons["click"], json={}, timeout=5)),
        (click, "post", 422, requests.post(beacons["click"] + "?pos=-1", json=body, timeout=5)),
        (click, "post", 415, requests.post(beacons["click"], data="{}", timeout=5)),
        (
            click,
            "post",
            400,
            requests.post(beacons["click"], data="{", timeout=5, headers={"Content-Type": "application/json"}),
        ),
        (click, "options", 204, requests.options(beacons["click"], timeout=5)),
        ("/i/{token}", "get", 200, requests.get(f"{url}/i/{token}", timeout=5)),
        ("/i/{token}", "head", 200, requests.head(f"{url}/i/{token}", timeout=5)),
        ("/i/{token}", "get", 400, requests.get(f"{url}/i/x{token}", timeout=5)),
        ("/api/v1/campaigns/click", "post", 401, requests.post(url + "/api/v1/campaigns/click", json={}, timeout=5)),
    ]


@pytest.mark.slow
def test_publisher_answers_with_valid_tokens_conform(service: Service) -> None:
    schema = schemathesis.openapi.from_url(service.admin_url + "/openapi.json")
    for path, method, status, response in _answers(service.url, service.admin_url):
        assert response.status_code == status, (path, method, response.text)
        schema[path][method.upper()].validate_response(response)
