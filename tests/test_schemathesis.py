"""Schemathesis against gunicorn (the Procfile's command) on every operation of
GET /openapi.json: requests generated from the document, and some that break it
on purpose; every answer must be no 5xx, and its status code, content type,
headers and body must be those the document gives.

Bounded: a few dozen examples an operation (Hypothesis' max_examples), small
limits on the server so that the largest valid body is cheap to tag, and a
timeout on every request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.launcher import gunicorn

# Small limits: the document publishes them, so the largest body Schemathesis
# makes is 4 texts of 200 characters (at most 12 bytes each as JSON escapes).
LIMITS = {"NER_MAX_TEXT_CHARS": "200", "NER_MAX_TEXTS": "4", "NER_MAX_BODY_BYTES": "16384"}
EXAMPLES_AN_OPERATION = 40
REQUEST_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def small_server(tmp_path_factory) -> Iterator[str]:
    with gunicorn(tmp_path_factory.mktemp("schemathesis") / "output.log", workers=1, **LIMITS) as server:
        yield server.url

# A body over a limit is refused with 413, which the document gives, and which
# Schemathesis does not expect of a request that breaks the schema by default.
CONFIG = {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 413, 429]}}}

@pytest.fixture(scope="module")
def api_schema(small_server):
    config = schemathesis.config.SchemathesisConfig.from_dict(CONFIG)
    return schemathesis.openapi.from_url(small_server + "/openapi.json", config=config)

# Schemathesis leaves out the operation that served it the document unless a
# filter names it: every path is named.
schema = schemathesis.pytest.from_fixture("api_schema").include(path_regex="^/")

@schema.parametrize()
@settings(max_examples=EXAMPLES_AN_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(case):
    case.call_and_validate(timeout=REQUEST_TIMEOUT_S)


def test_every_operation_of_the_document_is_tested(api_schema):
    tested = {result.ok().label for result in api_schema.include(path_regex="^/").get_all_operations()}
    documented = {f"{method.upper()} {path}" for path, operations in api_schema.raw_schema["paths"].items()
                  for method in operations}
    assert tested == documented and "GET /openapi.json" in tested
