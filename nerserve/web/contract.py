"""The API's contract: the request and answer schemas, every error code, and
the OpenAPI 3.1 document built from them (GET /openapi.json).

One source of truth: the pydantic models below validate each POST /api body,
and their JSON Schemas are what the document publishes, limits included
(maxLength, maxItems), read from the running app's configuration. pydantic
rather than apiflask, spectree or flask-smorest: those bring their own app
class or request plumbing, and would replace the body reading (app.read_body:
size limits, chunked bodies) and the error answers the service already has;
pydantic only validates and writes schemas, which is all that is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from nerserve.tagger.description import ModelDescription, describe_if_readable


class ApiError(Exception):
    """An error answered as JSON {"error": {"code", "message", **details}} with `status`."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: int | None = None, **details: Any):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after_s = retry_after_s  # a Retry-After header, for a failure that passes
        self.details = details  # more fields of the error object, for a client to act on


@dataclass(frozen=True)
class ErrorCode:
    status: int
    code: str
    when: str


# Every error the service answers, one line each: the document lists them, and
# tests/test_contract.py checks that every ApiError raised in the code is here.
ERRORS = (
    ErrorCode(400, "invalid_encoding", "the body is not UTF-8, or starts with a byte-order mark"),
    ErrorCode(400, "invalid_json", "the body is not JSON"),
    ErrorCode(400, "invalid_request",
              "JSON, but not a string, nor an object with exactly one of `text` or `texts` and known fields"),
    ErrorCode(400, "invalid_type", "a field of the wrong type; the message names it"),
    ErrorCode(400, "invalid_value", "`min_score` is not from 0 to 1, or a text holds a lone surrogate"),
    ErrorCode(400, "invalid_body", "the body cannot be read (a malformed or stalled chunked body)"),
    ErrorCode(400, "incomplete_body", "the body ends, or stalls, before its Content-Length"),
    ErrorCode(401, "unauthorized", "no API key, or a wrong one, where one is needed (with WWW-Authenticate: Bearer)"),
    ErrorCode(404, "not_found", "unknown path"),
    ErrorCode(405, "method_not_allowed", "wrong method (the Allow header lists the right ones)"),
    ErrorCode(413, "body_too_large", "the body is over the byte limit"),
    ErrorCode(413, "text_too_long", "a text is over the character limit; the message names it"),
    ErrorCode(413, "too_many_texts", "more texts than the limit in one request"),
    ErrorCode(413, "too_many_tokens", "more tokens than the limit in one request (with `tokens` and `limit`)"),
    ErrorCode(413, "over_token_quota_size", "more tokens than the client's whole token quota, so it can never "
              "be served (with `tokens` and `limit`)"),
    ErrorCode(429, "too_many_requests", "over the client's request or token quota (with Retry-After)"),
    ErrorCode(500, "internal_error", "a bug: the body says nothing more; the trace goes to the log"),
    ErrorCode(503, "not_ready", "the model is still loading (with Retry-After)"),
    ErrorCode(503, "model_failed", "the model cannot load, for good"),
)

BODY_FORMS = 'the body must be a JSON string, {"text": "..."} or {"texts": ["...", ...]}'


# The request: three forms of body, told apart by their shape.


def body_form(data: Any) -> str | None:
    """Which form a body is in; None for none of them (invalid_request)."""
    if isinstance(data, str):
        return "string"
    if isinstance(data, dict) and ("text" in data) != ("texts" in data):
        return "text" if "text" in data else "texts"
    return None


MinScore = Annotated[float, Field(
    ge=0, le=1, allow_inf_nan=False,
    description="leave out the entities scored below this; tags and output still show the whole path",
)]


def request_body_type(max_text_chars: int, max_texts: int) -> TypeAdapter:
    """The POST /api body, validated and described under these limits."""
    Text = Annotated[str, Field(max_length=max_text_chars, description="a text to tag")]

    class TextRequest(BaseModel):
        """One text: the answer is one result."""
        model_config = ConfigDict(strict=True, extra="forbid")
        text: Text
        min_score: MinScore = 0.0

    class TextsRequest(BaseModel):
        """Several texts, tagged together: the answer is their results, in order."""
        model_config = ConfigDict(strict=True, extra="forbid")
        texts: Annotated[list[Text], Field(max_length=max_texts)]
        min_score: MinScore = 0.0

    body = Annotated[
        Annotated[Text, Tag("string")] | Annotated[TextRequest, Tag("text")] | Annotated[TextsRequest, Tag("texts")],
        Discriminator(body_form),
        Field(title="Request", description="a JSON string (the original api_ner contract), "
                                           '{"text": "..."} or {"texts": ["...", ...]}'),
    ]
    return TypeAdapter(body, config=ConfigDict(strict=True))


class TextsToTag(NamedTuple):
    texts: list[str]
    single: bool  # one text, answered with one result rather than {"results": [...]}
    min_score: float


def parse_request(body_type: TypeAdapter, data: Any) -> TextsToTag:
    """The texts and threshold of a request body (JSON already decoded); ApiError if invalid."""
    try:
        request = body_type.validate_python(data)
    except ValidationError as error:
        raise api_error(error) from None
    if isinstance(request, str):
        return TextsToTag([request], True, 0.0)
    if hasattr(request, "text"):
        return TextsToTag([request.text], True, request.min_score)
    return TextsToTag(request.texts, False, request.min_score)


# pydantic's error types, as the service's codes; the first code in this order wins.
ERROR_OF_TYPE = {
    "union_tag_not_found": "invalid_request", "union_tag_invalid": "invalid_request",
    "extra_forbidden": "invalid_request",
    "string_type": "invalid_type", "list_type": "invalid_type", "float_type": "invalid_type",
    "finite_number": "invalid_value", "greater_than_equal": "invalid_value", "less_than_equal": "invalid_value",
    "string_unicode": "invalid_value",
    "too_long": "too_many_texts", "string_too_long": "text_too_long",
}
PRECEDENCE = ["invalid_request", "invalid_type", "invalid_value", "too_many_texts", "text_too_long"]
EXPECTED = {"text": "a string", "texts": "a list of strings", "min_score": "a number from 0 to 1"}


def api_error(error: ValidationError) -> ApiError:
    """The ApiError for the first of pydantic's errors, with the message a person needs."""
    detail = min(error.errors(include_url=False),
                 key=lambda d: PRECEDENCE.index(ERROR_OF_TYPE.get(d["type"], "invalid_request")))
    code = ERROR_OF_TYPE.get(detail["type"], "invalid_request")
    status = next(e.status for e in ERRORS if e.code == code)
    path = detail["loc"][1:]  # the first item is the body's form
    field = "".join(f"[{part}]" if isinstance(part, int) else part for part in path) or "text"
    value, limit = detail.get("input"), detail.get("ctx", {}).get("max_length")
    if detail["type"] == "extra_forbidden":
        message = f"unknown field '{field}'; {BODY_FORMS}"
    elif code == "invalid_request":
        message = BODY_FORMS
    elif code == "invalid_type":
        message = f"'{field}' must be {EXPECTED.get(field, 'a string')}"
    elif detail["type"] == "string_unicode":
        message = f"'{field}' is not valid Unicode: it holds a lone surrogate"
    elif code == "invalid_value":
        message = f"'{field}' must be from 0 to 1, not {value}"
    elif code == "too_many_texts":
        message = f"{len(value)} texts; at most {limit} a request"
    else:  # text_too_long
        message = f"{field} has {len(value)} characters; at most {limit}"
    return ApiError(status, code, message)


# The answers.


class Token(BaseModel):
    text: str
    start: int = Field(ge=0, description="offset of the first character, in Unicode code points")
    end: int = Field(ge=0, description="offset after the last character (exclusive)")


class Entity(BaseModel):
    text: str = Field(description="the input between the offsets, spacing as written")
    type: str = Field(description="one of the model's entity types (GET /api/model: `entity_types`)")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    score: float = Field(ge=0, le=1, description="the model's probability that exactly this span, "
                                                 "with this type, is an entity")


class Result(BaseModel):
    """The tagged text of one request text."""
    input: str = Field(description="the tokens, padded to line up with `output` in a <pre>")
    output: str = Field(description="the tags, padded to line up with `input`")
    tokens: list[Token]
    tags: list[str] = Field(description="one IOB2 tag a token")
    entities: list[Entity]


class Results(BaseModel):
    """The results of {"texts": [...]}, in the order of the texts."""
    results: list[Result]


class ErrorDetail(BaseModel):
    """An error; some have more fields for a program to act on (too_many_tokens: tokens, limit)."""
    model_config = ConfigDict(extra="allow")
    code: Literal[tuple(e.code for e in ERRORS)]  # type: ignore[valid-type]
    message: str


class Error(BaseModel):
    """Every error: a code a program can test and a message a person can read."""
    error: ErrorDetail


class ModelInfo(BaseModel):
    """The model's meta.json, with how this service runs it."""
    model_config = ConfigDict(extra="allow")
    name: str
    version: str = Field(description="the first 16 hex digits of a SHA-256 of the model files")
    members: int = Field(description="networks in the ensemble")
    dev_f1: float | None
    test_f1: float | None
    backend: str
    tags: list[str]
    entity_types: list[str]


class Health(BaseModel):
    status: Literal["ok", "failed"]
    reason: str | None = Field(None, description="why the model failed to load")


class Readiness(BaseModel):
    status: Literal["ready", "loading", "failed"]


class ModelSummary(BaseModel):
    """The model served, from its meta.json; null where the model has not said."""
    name: str | None
    version: str | None
    entity_types: list[str]
    training_data: list[dict[str, Any]] | None
    dev_f1: float | None
    test_f1: float | None


class Index(BaseModel):
    name: str
    model: ModelSummary | None = Field(description="null when the model directory cannot be read")
    endpoints: dict[str, str]


# The document.


PARIS = {
    "input": "I love Paris", "output": "O O    B-LOC",
    "tokens": [{"text": "I", "start": 0, "end": 1}, {"text": "love", "start": 2, "end": 6},
               {"text": "Paris", "start": 7, "end": 12}],
    "tags": ["O", "O", "B-LOC"],
    "entities": [{"text": "Paris", "type": "LOC", "start": 7, "end": 12, "score": 0.9264}],
}
EMPTY = {"input": "", "output": "", "tokens": [], "tags": [], "entities": []}
REQUEST_EXAMPLES = {
    "string": {"summary": "a JSON string", "value": "I love Paris"},
    "text": {"summary": "one text", "value": {"text": "Angela Merkel visited Washington."}},
    "texts": {"summary": "several texts, with min_score",
              "value": {"texts": ["I love Paris", "   "], "min_score": 0.5}},
}


def example_answer(model: ModelDescription | None) -> dict[str, Any] | None:
    """PARIS, for a model that may find a LOC; none for one that cannot: its
    entity would break the schema's list of types, and mislead."""
    return PARIS if model is None or "LOC" in model.entity_types else None


def describe_api(model: ModelDescription | None) -> str:
    """What the service finds, in the words of the model's own meta.json where its directory can be read."""
    finds = "Finds named entities in text, each with the model's probability that it is right."
    if model is None:
        return f"{finds} GET /api/model describes the model."
    summary = model.summary()
    facts = [f"The model: {summary['name'] or 'unnamed'}", f"entity types {', '.join(model.entity_types)}"]
    if summary["training_data"]:
        facts.append("trained on " + "; ".join(f"{data['dir']} ({', '.join(data['files'])})"
                                               for data in summary["training_data"]))
    if summary["test_f1"] is not None:
        facts.append(f"test F1 {summary['test_f1']}")
    return f"{finds} {'; '.join(facts)}."


def entity_type_schema(model: ModelDescription) -> dict[str, Any]:
    """An entity's `type`, as one of the model's types: a client can check it against them."""
    return {"type": "string", "enum": model.entity_types,
            "description": f"one of the entity types of the model: {', '.join(model.entity_types)}"}


def openapi_document(config: dict[str, Any], body_type: TypeAdapter) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route, under the app's configuration,
    for the model in its NER_MODEL_DIR as that directory describes itself:
    the document is written before the model loads (nerserve.tagger.description)."""
    model = describe_if_readable(config["NER_MODEL_DIR"]) if "NER_MODEL_DIR" in config else None
    schemas: dict[str, Any] = {}

    def schema(type_: Any, name: str) -> dict[str, str]:
        """Register `type_`'s JSON Schema (and the models it uses) as component `name`; its reference."""
        adapter = type_ if isinstance(type_, TypeAdapter) else TypeAdapter(type_)
        found = adapter.json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(found.pop("$defs", {}))
        schemas[name] = found
        return {"$ref": f"#/components/schemas/{name}"}

    def answer(description: str, reference: dict, example: Any = None, **content: Any) -> dict:
        body: dict[str, Any] = {"schema": reference}
        if example is not None:
            body["example"] = example
        return {"description": description, "content": {"application/json": body, **content}}

    error = schema(Error, "Error")

    def errors(*statuses: int) -> dict[str, Any]:
        """The error answers of these statuses, each with its codes."""
        return {
            str(status): {
                "description": "; ".join(f"`{e.code}`: {e.when}" for e in ERRORS if e.status == status),
                "content": {"application/json": {
                    "schema": error,
                    "examples": {e.code: {"value": {"error": {"code": e.code, "message": e.when}}}
                                 for e in ERRORS if e.status == status},
                }},
            }
            for status in statuses
        }

    secured = bool(config.get("NER_API_KEYS"))
    security = {"security": [{"bearer": []}, {"apiKey": []}]} if secured else {}
    # nerserve/web/access.py: a key (401) and quotas (429) for POST /api only, when they are on.
    refusals = ([401] if secured else []) + ([429] if config.get("NER_RATE_LIMIT") or
                                             config.get("NER_TOKEN_RATE_LIMIT") else [])
    max_body = config["MAX_CONTENT_LENGTH"]
    html = {"content": {"text/html": {"schema": {"type": "string"}}}}
    paths = {
        "/api": {"post": {
            "operationId": "tag",
            "summary": "Find the entities in one text or several",
            "description": f"Limits: {config['NER_MAX_TEXT_CHARS']} characters a text, "
                           f"{config['NER_MAX_TEXTS']} texts and {config['NER_MAX_TOKENS']} tokens a request, "
                           f"{max_body} bytes a body (413 over any). The Content-Type is not checked, so a "
                           "plain `curl -d` works too.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": schema(body_type, "Request"), "examples": REQUEST_EXAMPLES}}},
            "responses": {
                "200": answer("one result for a string or `text`; `{\"results\": [...]}` for `texts`",
                              schema(Result | Results, "Answer"), example_answer(model)),
                **errors(400, *refusals, 413, 500, 503),
            },
            "x-max-body-bytes": max_body,
            **security,
        }},
        "/api/model": {"get": {
            "operationId": "model", "summary": "The model: version, tags, scores",
            "responses": {"200": answer("the model", schema(ModelInfo, "ModelInfo")), **errors(500, 503)},
        }},
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Whether the process is alive",
            "responses": {"200": answer("alive", schema(Health, "Health"), {"status": "ok"}),
                          "503": answer("the model cannot load", schema(Health, "Health"))},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "Whether the model is loaded and warmed up",
            "responses": {"200": answer("ready", schema(Readiness, "Readiness"), {"status": "ready"}),
                          "503": answer("loading, or failed", schema(Readiness, "Readiness"))},
        }},
        "/": {"get": {"operationId": "index", "summary": "The endpoints",
                      "responses": {"200": answer("a short index: JSON, or a page for a browser (Accept: text/html)",
                                                  schema(Index, "Index"), **html["content"])}}},
        "/client": {"get": {"operationId": "client", "summary": "A web page to try the API",
                            "responses": {"200": {"description": "the page", **html}}}},
        "/docs": {"get": {"operationId": "docs", "summary": "This reference, interactive",
                          "responses": {"200": {"description": "Swagger UI", **html}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": answer("OpenAPI 3.1", {"type": "object"})}}},
    }
    if config.get("NER_METRICS") == "on":  # nerserve/web/metrics.py
        scraper = bool(config.get("NER_METRICS_TOKEN"))
        paths["/metrics"] = {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics, summed over the workers",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **(errors(401) if scraper else {})},
            **({"security": [{"bearer": []}]} if scraper else {}),
        }}
    if model is not None:  # else the Entity model's own words: a type, whichever the model has
        schemas["Entity"]["properties"]["type"] = entity_type_schema(model)
    components: dict[str, Any] = {"schemas": schemas}
    if secured or config.get("NER_METRICS_TOKEN"):
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key as a bearer token"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Named-entity recognition API",
            "version": "1",
            "description": describe_api(model),
        },
        "paths": paths,
        "components": components,
    }
