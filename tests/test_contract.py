"""The OpenAPI document (nerserve/web/contract.py) and the pages' headers (nerserve/web/pages.py), through
Flask's test client: the document is valid OpenAPI 3.1, publishes the limits
of the running configuration and every error code the code raises, and its
examples conform to its own schemas."""

from __future__ import annotations

import base64
import hashlib
import re

import jsonschema
import pytest
from openapi_spec_validator import validate

from nerserve.web import contract
from tests.launcher import ROOT
from tests.service_fixtures import TEST_LIMITS


@pytest.fixture(scope="module")
def document(app) -> dict:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def conforms(document: dict, name: str, value) -> None:
    """Raises unless `value` is valid against the document's schema `name`."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_every_route_is_in_the_document(app, document):
    routes = {(rule.rule, method.lower()) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    # The pages' files are assets, not API operations.
    routes -= {(rule, "get") for rule in ("/static/<path:filename>", "/docs/assets/<path:name>")}
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert documented == routes


def test_the_limits_are_the_running_configurations(document):
    request = document["components"]["schemas"]
    text_request, texts_request = request["TextRequest"]["properties"], request["TextsRequest"]["properties"]
    assert text_request["text"]["maxLength"] == TEST_LIMITS["NER_MAX_TEXT_CHARS"]
    assert texts_request["texts"]["maxItems"] == TEST_LIMITS["NER_MAX_TEXTS"]
    assert texts_request["texts"]["items"]["maxLength"] == TEST_LIMITS["NER_MAX_TEXT_CHARS"]
    assert document["paths"]["/api"]["post"]["x-max-body-bytes"] == TEST_LIMITS["MAX_CONTENT_LENGTH"]
    assert text_request["min_score"]["minimum"] == 0 and text_request["min_score"]["maximum"] == 1


def test_the_three_body_forms_are_published(document):
    forms = document["components"]["schemas"]["Request"]["oneOf"]
    assert [form.get("type") or form["$ref"].rsplit("/", 1)[1] for form in forms] == [
        "string", "TextRequest", "TextsRequest"]


def raised_error_codes() -> set[tuple[int, str]]:
    """Every (status, code) that the service's modules raise as ApiError."""
    raised = set()
    for path in ROOT.glob("nerserve/**/*.py"):
        raised |= {(int(status), code) for status, code in
                   re.findall(r'ApiError\(\s*(\d+),\s*"(\w+)"', path.read_text())}
    return raised


def test_every_error_code_is_listed_once_and_published(document):
    listed = {(e.status, e.code) for e in contract.ERRORS}
    assert len(listed) == len({e.code for e in contract.ERRORS}) == len(contract.ERRORS)
    assert raised_error_codes() >= {(400, "invalid_json"), (503, "not_ready")}  # the scan finds them
    assert raised_error_codes() <= listed
    # Werkzeug's errors, as app.py's error handler names them, and the request validation's codes.
    assert {"not_found", "method_not_allowed", "body_too_large", *contract.PRECEDENCE} <= {c for _, c in listed}
    published = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    assert published == [e.code for e in contract.ERRORS]


def test_each_error_status_of_api_is_documented_with_its_codes(document):
    responses = document["paths"]["/api"]["post"]["responses"]
    for error in contract.ERRORS:
        if error.status in (400, 413, 500, 503):
            assert error.code in responses[str(error.status)]["content"]["application/json"]["examples"]


def test_the_examples_conform_to_the_schemas(document):
    operation = document["paths"]["/api"]["post"]
    for example in operation["requestBody"]["content"]["application/json"]["examples"].values():
        conforms(document, "Request", example["value"])
    conforms(document, "Answer", operation["responses"]["200"]["content"]["application/json"]["example"])
    for status in ("400", "413", "500", "503"):
        for example in operation["responses"][status]["content"]["application/json"]["examples"].values():
            conforms(document, "Error", example["value"])


def test_the_examples_are_what_the_service_answers(client, document):
    operation = document["paths"]["/api"]["post"]
    answer = client.post("/api", json=operation["requestBody"]["content"]["application/json"]["examples"]
                         ["string"]["value"]).get_json()
    example = operation["responses"]["200"]["content"]["application/json"]["example"]
    assert without_scores(answer) == without_scores(example) and answer["entities"]


def without_scores(result: dict) -> dict:
    return {**result, "entities": [{k: v for k, v in e.items() if k != "score"} for e in result["entities"]]}


def test_answers_conform_to_the_schemas(client, document):
    for body in ("I love Paris", {"texts": ["Angela Merkel visited Washington.", ""], "min_score": 0.5}):
        conforms(document, "Answer", client.post("/api", json=body).get_json())
    conforms(document, "Error", client.post("/api", json={"text": 3}).get_json())
    conforms(document, "ModelInfo", client.get("/api/model").get_json())
    conforms(document, "Health", client.get("/healthz").get_json())
    conforms(document, "Readiness", client.get("/readyz").get_json())
    conforms(document, "Index", client.get("/").get_json())


def test_the_auth_scheme_is_published_only_when_keys_are_on():
    config = {"MAX_CONTENT_LENGTH": 100, "NER_MAX_TEXT_CHARS": 10, "NER_MAX_TEXTS": 2, "NER_MAX_TOKENS": 50}
    body_type = contract.request_body_type(10, 2)
    plain = contract.openapi_document(config, body_type)
    assert "securitySchemes" not in plain["components"] and "security" not in plain["paths"]["/api"]["post"]
    keyed = contract.openapi_document({**config, "NER_API_KEYS": ["secret"]}, body_type)
    validate(keyed)
    assert set(keyed["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert keyed["paths"]["/api"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "secret" not in str(keyed)


def test_an_unknown_field_is_named():
    body_type = contract.request_body_type(10, 2)
    with pytest.raises(contract.ApiError) as error:
        contract.parse_request(body_type, {"text": "Paris", "min_scor": 0.5})
    assert error.value.code == "invalid_request" and error.value.message.startswith("unknown field 'min_scor'")


# The pages' headers.


def csp(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {name: value for name, _, value in (d.strip().partition(" ") for d in policy.split(";"))}


def test_the_page_allows_only_its_own_scripts_and_jquerys(client):
    response = client.get("/client")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = csp(response)
    inline = re.findall(r"<script>(.*?)</script>", response.get_data(as_text=True), flags=re.DOTALL)
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline]
    assert len(hashes) == 1 and "<script src" not in response.get_data(as_text=True)
    assert policy["script-src"].split() == ["'self'", "https://code.jquery.com", *hashes]
    assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_docs_loads_swagger_ui_from_this_app(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = csp(response)
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    html = response.get_data(as_text=True)
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not asset.startswith(("http:", "https:", "//")), asset
        answer = client.get("/" + asset)
        assert answer.status_code == 200 and answer.headers["X-Content-Type-Options"] == "nosniff", asset


def test_every_answer_says_nosniff(client):
    for response in (client.get("/"), client.post("/api", data=b"{"), client.get("/static/jquery-3.7.1.min.js")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_keys_quotas_and_the_metrics_token_are_published_where_they_apply():
    config = {"MAX_CONTENT_LENGTH": 100, "NER_MAX_TEXT_CHARS": 10, "NER_MAX_TEXTS": 2, "NER_MAX_TOKENS": 50,
              "NER_METRICS": "on"}
    body_type = contract.request_body_type(10, 2)
    plain = contract.openapi_document(config, body_type)
    assert set(plain["paths"]["/api"]["post"]["responses"]) == {"200", "400", "413", "500", "503"}
    assert "security" not in plain["paths"]["/metrics"]["get"]
    public = contract.openapi_document({**config, "NER_API_KEYS": ["0" * 64], "NER_RATE_LIMIT": "600/minute",
                                        "NER_METRICS_TOKEN": "scrape"}, body_type)
    validate(public)
    assert {"401", "429"} <= set(public["paths"]["/api"]["post"]["responses"])
    assert "security" not in public["paths"]["/api/model"]["get"]  # the model's description stays open
    assert public["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}]
    assert "/metrics" not in contract.openapi_document({**config, "NER_METRICS": "off"}, body_type)["paths"]
