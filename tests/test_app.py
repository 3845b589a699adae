"""app.py through Flask's test client: every route and every error, with the real model."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest
from prometheus_client import REGISTRY

from nerserve import settings
from nerserve.tagger import files
from nerserve.tagger.casing import CaseRouter
from nerserve.tagger.pipeline import Pipeline
from nerserve.web import app as app_module
from nerserve.web.app import ApiError, create_app, model_loader
from tests.launcher import ROOT, free_port, poll, wait_until_ready
from tests.service_fixtures import TEST_LIMITS, http

PARIS = {
    "input": "I love Paris",
    "output": "O O    B-LOC",
    "tokens": [
        {"text": "I", "start": 0, "end": 1},
        {"text": "love", "start": 2, "end": 6},
        {"text": "Paris", "start": 7, "end": 12},
    ],
    "tags": ["O", "O", "B-LOC"],
    "entities": [{"text": "Paris", "type": "LOC", "start": 7, "end": 12}],
}


def without_scores(result: dict) -> dict:
    """The result with each entity's score checked to be a probability, then removed."""
    for entity in result["entities"]:
        assert 0 <= entity.pop("score") <= 1
    return result
EMPTY = {"input": "", "output": "", "tokens": [], "tags": [], "entities": []}


def error_of(response) -> dict:
    assert response.is_json, response.data
    return response.get_json()["error"]


# The routes.


def test_index_lists_the_endpoints(client):
    response = client.get("/")
    assert response.status_code == 200
    assert {"POST /api", "GET /api/model", "GET /client", "GET /healthz", "GET /readyz"} <= set(
        response.get_json()["endpoints"]
    )


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_index_answers_a_browser_with_a_page_and_api_clients_with_json(client):
    page = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for path in ("/client", "/docs", "/openapi.json"):
        assert f'href="{path}"' in html
    model = client.get("/", headers={"Accept": "application/json"}).get_json()["model"]
    assert model["name"] in html and ", ".join(model["entity_types"]) in html
    # The headers the other pages have: no script at all, its one inline style by hash.
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'none'" in policy and "style-src 'sha256-" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for accept in ("*/*", "application/json", None):  # curl's, an API client's, none
        answer = client.get("/", headers={"Accept": accept} if accept else {})
        assert answer.is_json and "endpoints" in answer.get_json(), accept
        assert "Accept" in answer.vary
    assert "Accept" in page.vary


def test_client_page_is_served(client):
    response = client.get("/client")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert b"code.jquery.com/jquery-3.7.1.min.js" in response.data


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_once_loaded(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"status": "ready"}


def test_api_model_describes_the_model(client, app):
    info = client.get("/api/model").get_json()
    directory = ROOT / app.config["NER_MODEL_DIR"]
    # meta.json is current: written from the model files as they are now.
    metrics = files.read_json(directory, files.METRICS)
    # Scores only of splits the networks never saw: the committed networks were trained on dev.
    held_out = {key: figures["f1"] for key, figures in metrics.items() if figures["held_out"]}
    assert metrics["dev"]["held_out"] is False and info["dev_f1"] is None
    assert info["test_f1"] == held_out["test"] and info["f1_by_split_and_case"] == held_out
    assert info["version"] == files.version(directory) and info["backend"] == app.config["NER_BACKEND"]
    assert info["members"] == files.count_members(directory)
    assert info["config"] == files.read_json(directory, files.CONFIG)
    assert info["temperature"] == files.temperature(directory)
    assert {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"} == set(info["tags"])
    assert info["entity_types"] == ["LOC", "MISC", "ORG", "PER"]


def test_post_a_json_string_as_the_original_api_did(client):
    response = client.post("/api", data=json.dumps("I love Paris"), content_type="application/json")
    assert response.status_code == 200 and without_scores(response.get_json()) == PARIS


def test_post_an_object_with_text(client):
    assert without_scores(client.post("/api", json={"text": "I love Paris"}).get_json()) == PARIS


def test_post_texts_answers_results_in_order(client):
    response = client.post("/api", json={"texts": ["I love Paris", "", "Angela Merkel visited Washington."]})
    results = response.get_json()["results"]
    assert [without_scores(r) for r in results[:2]] == [PARIS, EMPTY]
    assert {(e["text"], e["type"]) for e in results[2]["entities"]} >= {("Angela Merkel", "PER"), ("Washington", "LOC")}
    assert client.post("/api", json={"texts": []}).get_json() == {"results": []}


@pytest.mark.parametrize(("text", "entities"), [
    ("I love Paris", [("Paris", "LOC")]),
    ("barack obama was born in hawaii", [("barack obama", "PER"), ("hawaii", "LOC")]),
    ("ANGELA MERKEL VISITED WASHINGTON", [("ANGELA MERKEL", "PER"), ("WASHINGTON", "LOC")]),
    # Chat: lower case, an acronym kept (nerserve.tagger.casing routes it as caseless).
    ("i think NATO should meet in brussels", [("NATO", "ORG"), ("brussels", "LOC")]),
])
def test_entities_in_text_of_any_case(client, text, entities):
    result = client.post("/api", json={"text": text}).get_json()
    assert [(e["text"], e["type"]) for e in result["entities"]] == entities


def test_the_content_type_is_not_required(client):
    # A plain `curl -d '"I love Paris"'` sends application/x-www-form-urlencoded.
    response = client.post("/api", data=b'"I love Paris"', content_type="application/x-www-form-urlencoded")
    assert without_scores(response.get_json()) == PARIS


def test_min_score_drops_the_entities_scored_below_it(client):
    text = "Angela Merkel visited Washington."
    entities = client.post("/api", json={"text": text}).get_json()["entities"]
    threshold = max(e["score"] for e in entities)
    kept = client.post("/api", json={"text": text, "min_score": threshold}).get_json()["entities"]
    assert kept == [e for e in entities if e["score"] >= threshold] and len(kept) < len(entities)
    batch = client.post("/api", json={"texts": [text], "min_score": 1}).get_json()["results"]
    assert batch[0]["entities"] == [e for e in entities if e["score"] >= 1]
    assert client.post("/api", json={"text": text, "min_score": 0}).get_json()["entities"] == entities


@pytest.mark.parametrize(
    ("min_score", "code"),
    [("0.5", "invalid_type"), (True, "invalid_type"), (None, "invalid_type"), ([0.5], "invalid_type"),
     (-0.1, "invalid_value"), (1.5, "invalid_value")],
)
def test_a_bad_min_score_is_400_naming_it(client, min_score, code):
    response = client.post("/api", json={"text": "I love Paris", "min_score": min_score})
    error = error_of(response)
    assert response.status_code == 400 and error["code"] == code and error["message"].startswith("'min_score'")


def test_a_nan_min_score_is_400(client):
    response = client.post("/api", data=b'{"text": "I love Paris", "min_score": NaN}', content_type="application/json")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_value"


def test_any_unicode_goes_through(client):
    text = "Zoë Ünal\u0000 flew to São Paulo \U0001f600 \u200b with Ørsted."
    result = client.post("/api", json=text).get_json()
    for token in result["tokens"]:
        assert text[token["start"] : token["end"]] == token["text"]


def test_answers_are_compact_utf8_json_and_a_many_text_answer_holds_the_one_text_answer(client):
    text = "Zoë Ünal flew to São Paulo \U0001f600 with Ørsted."
    one = client.post("/api", json=text).data
    assert one == json.dumps(json.loads(one), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    many = client.post("/api", json={"texts": [text, text]}).data
    assert many == b'{"results":[' + one.rstrip(b"\n") + b"," + one.rstrip(b"\n") + b"]}\n"


def test_nan_is_written_as_null_and_what_orjson_refuses_as_json_wrote_it(app):
    assert app.json.dumps({"score": float("nan"), "scores": [float("inf"), -float("inf")]}) == (
        '{"score":null,"scores":[null,null]}')
    # What orjson refuses, json writes as Flask did: a lone surrogate escaped.
    assert app.json.dumps({"text": "a \ud800", 1: 2**70}) == f'{{"text":"a \\ud800","1":{2**70}}}'


@pytest.mark.parametrize(("payload", "field"), [("a \ud800 b", "'text'"), ({"texts": ["ok", "\udfff"]}, "'texts[1]'")])
def test_a_lone_surrogate_is_400_naming_the_text(client, payload, field):
    # JSON can escape half of a UTF-16 pair, but that is no Unicode character:
    # such a text cannot be written back as UTF-8.
    response = client.post("/api", json=payload)
    error = error_of(response)
    assert response.status_code == 400 and error["code"] == "invalid_value"
    assert error["message"] == f"{field} is not valid Unicode: it holds a lone surrogate"


def test_empty_and_whitespace_text_give_empty_results(client):
    for text in ("", "  \n\t"):
        response = client.post("/api", json=text)
        assert response.status_code == 200 and response.get_json() == EMPTY


# The errors.


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"I love Paris", b'"unterminated'],
)
def test_a_body_that_is_not_json_is_400(client, body):
    response = client.post("/api", data=body, content_type="application/json")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"


def test_json_nested_past_the_recursion_limit_is_400_not_500(tmp_path):
    depth = sys.getrecursionlimit() + 1  # TensorFlow, when imported, raises the limit
    client = create_app({"NER_MODEL_DIR": str(tmp_path), "MAX_CONTENT_LENGTH": 2 * depth + 2}).test_client()
    response = client.post("/api", data=b"[" * depth + b"]" * depth, content_type="application/json")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"
    wait_for_the_failed_load(client)


@pytest.mark.parametrize(
    "payload",
    [None, 42, ["I love Paris"], {}, {"txt": "Paris"}, {"text": "a", "texts": ["b"]}, {"text": "a", "min_scor": 0.5}],
)
def test_json_of_the_wrong_shape_is_400(client, payload):
    response = client.post("/api", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": 3}, "'text'"),
        ({"text": None}, "'text'"),
        ({"texts": "I love Paris"}, "'texts'"),
        ({"texts": ["fine", ["nested"]]}, "'texts[1]'"),
    ],
)
def test_a_field_of_the_wrong_type_is_400_naming_it(client, payload, field):
    response = client.post("/api", json=payload)
    error = error_of(response)
    assert response.status_code == 400 and error["code"] == "invalid_type"
    assert error["message"].startswith(field)


def test_a_body_over_the_byte_limit_is_413(client):
    body = json.dumps("x" * TEST_LIMITS["MAX_CONTENT_LENGTH"])
    response = client.post("/api", data=body, content_type="application/json")
    assert response.status_code == 413 and error_of(response)["code"] == "body_too_large"


def test_a_text_over_the_character_limit_is_413(client):
    limit = TEST_LIMITS["NER_MAX_TEXT_CHARS"]
    assert client.post("/api", json="a " * (limit // 2)).status_code == 200  # exactly at the limit
    response = client.post("/api", json={"texts": ["ok", "a" * (limit + 1)]})
    error = error_of(response)
    assert response.status_code == 413 and error["code"] == "text_too_long"
    assert "texts[1]" in error["message"]


def test_a_batch_over_the_size_limit_is_413(client):
    limit = TEST_LIMITS["NER_MAX_TEXTS"]
    assert client.post("/api", json={"texts": ["Paris"] * limit}).status_code == 200
    response = client.post("/api", json={"texts": ["Paris"] * (limit + 1)})
    assert response.status_code == 413 and error_of(response)["code"] == "too_many_texts"


@pytest.mark.parametrize("body", [
    '"I love Paris"'.encode("utf-16"), '"I love Paris"'.encode("utf-32"), '"I love Paris"'.encode("utf-8-sig"),
    b'"I love \xed\xa0\x80Paris"',  # a surrogate written as UTF-8 bytes: not UTF-8
    b'"I love \xff Paris"',
])
def test_a_body_not_in_utf8_is_400(client, body):
    response = client.post("/api", data=body, content_type="application/json")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_encoding"


def test_a_request_over_the_token_budget_is_413_before_any_model_call(client, app, monkeypatch):
    tagger = model_loader(app).pipeline.tagger
    calls = []
    monkeypatch.setattr(tagger, "tag_scored", lambda sentences: calls.append(sentences) or [])
    monkeypatch.setitem(app.config, "NER_MAX_TOKENS", 9)
    response = client.post("/api", json={"texts": ["Paris , Paris , Paris", "London , Berlin , Rome"]})
    assert response.status_code == 413
    assert error_of(response) == {
        "code": "too_many_tokens", "tokens": 10, "limit": 9,
        "message": "the request has over 9 tokens (at least 10); "
                   "split it into requests of at most 9 tokens",
    }
    assert calls == []


def test_a_wrong_method_is_405_with_allow(client):
    response = client.get("/api")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    assert client.post("/healthz").status_code == 405


def test_an_unknown_path_is_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_an_internal_error_is_500_without_details(client, app, monkeypatch, caplog):
    def broken(documents, min_score, turn):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(model_loader(app).pipeline, "tag_documents", broken)
    with caplog.at_level(logging.ERROR):
        response = client.post("/api", json="I love Paris")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert b"secret" not in response.data and b"Traceback" not in response.data
    assert "secret internal detail" in caplog.text  # the trace is in the log


def test_a_failure_after_the_first_byte_is_logged_and_counted_as_one(client, app, monkeypatch, caplog):
    # A many-text answer sends its 200 before its results are built: a failure
    # then can only cut the answer short, and must not pass for a 200.
    def fails_after_one_result(documents, min_score, turn):
        yield EMPTY
        raise RuntimeError("the second result broke")

    monkeypatch.setattr(model_loader(app).pipeline, "tag_documents", fails_after_one_result)
    failed = {"route": "/api", "status": "500"}
    failed_before = REGISTRY.get_sample_value("ner_http_requests_total", failed) or 0
    with caplog.at_level(logging.ERROR, logger="nerserve.web.app"):
        response = client.post("/api", json={"texts": ["I love Paris", "Paris"]})
        assert response.status_code == 200
        with pytest.raises(RuntimeError, match="the second result broke"):
            response.get_data()  # the server cuts the answer short
        response.close()  # as a WSGI server does, whatever happened (PEP 3333)
    assert REGISTRY.get_sample_value("ner_http_requests_total", failed) == failed_before + 1  # never a 200
    assert "a many-text answer failed, its 200 and 1 results sent: RuntimeError: the second result broke" in [
        record.getMessage() for record in caplog.records if record.name == "nerserve.web.app"]


# Readiness.


def test_readyz_is_503_until_the_model_is_loaded_and_warmed_up(monkeypatch):
    release = threading.Event()
    warmed_up = []
    real_load_pipeline = app_module.process_pipeline

    class RecordingPipeline(Pipeline):
        def tag(self, texts, min_score=0.0):
            warmed_up.append(texts)
            return super().tag(texts, min_score)

    def slow_load_pipeline(model_dir, backend):
        release.wait(30)
        loaded = real_load_pipeline(model_dir, backend)
        return RecordingPipeline(loaded.tagger, loaded.info)

    monkeypatch.setattr(app_module, "process_pipeline", slow_load_pipeline)
    client = create_app({"NER_LOAD_WAIT_S": 0.1}).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json() == {"status": "loading"}
    response = client.post("/api", json="I love Paris")
    assert response.status_code == 503 and error_of(response)["code"] == "not_ready"
    assert response.headers["Retry-After"] == "1"
    assert client.get("/healthz").status_code == 200  # alive all the same
    release.set()
    poll(lambda: client.get("/readyz").status_code == 200, 60, "/readyz answering 200")
    assert warmed_up, "ready before a warm-up prediction"
    assert without_scores(client.post("/api", json="I love Paris").get_json()) == PARIS


def test_start_up_warms_up_the_caseless_sub_model_too(app, monkeypatch):
    # A fault that only tagging shows, in the sub-model for text without normal case.
    loaded = model_loader(app).pipeline

    class FaultyTagger:
        vocab = loaded.tagger.caseless.vocab

        def tag_scored(self, sentences):
            raise RuntimeError("the caseless network cannot run")

    faulty = Pipeline(CaseRouter(loaded.tagger.cased, FaultyTagger()), loaded.info)
    monkeypatch.setattr(app_module, "process_pipeline", lambda *_: faulty)
    client = create_app().test_client()
    wait_for_the_failed_load(client)  # at start-up, before any request
    assert client.get("/readyz").get_json() == {"status": "failed"}


def wait_for_the_failed_load(client) -> None:
    """A test that started loading a missing model lets the loader thread end
    before the next test: its traceback formatting uses `ast`, which CPython
    3.11.7 cannot run in two threads at once (a SystemError in the other)."""
    with pytest.raises(ApiError, match="failed to load"):
        model_loader(client.application).wait(30)


def test_a_model_that_fails_to_load_is_answered_at_once(tmp_path):
    client = create_app({"NER_MODEL_DIR": str(tmp_path / "missing"), "NER_LOAD_WAIT_S": 600}).test_client()
    response = client.post("/api", json="I love Paris")  # waits for the load to end, not for 600 s
    assert response.status_code == 503 and "failed to load" in error_of(response)["message"]


def test_a_model_that_fails_to_load_is_reported(tmp_path, caplog):
    flask_app = create_app({"NER_MODEL_DIR": str(tmp_path / "missing")})
    client = flask_app.test_client()
    poll(lambda: client.get("/readyz").get_json() != {"status": "loading"}, 30, "the load to end")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json() == {"status": "failed"}
    response = client.post("/api", json="I love Paris")
    assert response.status_code == 503 and "failed to load" in error_of(response)["message"]
    assert "Retry-After" not in response.headers  # for good: retrying does not help
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json() == {"status": "failed", "reason": "the model failed to load: FileNotFoundError"}
    assert "the model failed to load" in caplog.text


# CORS.


def test_cors_allows_every_origin_by_default(client):
    preflight = client.options(
        "/api",
        headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Content-Type"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "http://elsewhere.example")
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    for response in (
        client.post("/api", json="Paris", headers={"Origin": "http://elsewhere.example"}),
        client.post("/api", data=b"{", headers={"Origin": "http://elsewhere.example"}),  # errors too
    ):
        assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://elsewhere.example")


def test_a_page_on_another_origin_may_read_when_to_retry(client):
    response = client.post("/api", json="Paris", headers={"Origin": "http://elsewhere.example"})
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"].split(", ")


def test_cors_origins_can_be_restricted(tmp_path):
    # No model needed: the directory is missing, so the answers are 503s, with CORS headers all the same.
    client = create_app(
        {"NER_CORS_ORIGINS": settings.cors_origins("https://one.example, https://*.two.example"),
         "NER_MODEL_DIR": str(tmp_path),
         "NER_LOAD_WAIT_S": 0}
    ).test_client()
    for origin in ("https://one.example", "https://a.two.example"):
        allowed = client.post("/api", json="Paris", headers={"Origin": origin})
        assert allowed.headers["Access-Control-Allow-Origin"] == origin
    for origin in ("https://evil.example", "https://two.example", "https://a.two.example.evil.net",
                   "https://xtwo.example"):
        refused = client.post("/api", json="Paris", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in refused.headers, origin
    wait_for_the_failed_load(client)


# Configuration.


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setattr(settings, "current", functools.cache(settings.load))  # read anew, not the process's
    monkeypatch.setenv("NER_MAX_BODY_BYTES", "1234")
    monkeypatch.setenv("NER_MAX_TEXT_CHARS", "56")
    monkeypatch.setenv("NER_MAX_TEXTS", "7")
    monkeypatch.setenv("NER_BACKEND", "tensorflow")
    config = create_app().config
    assert (config["MAX_CONTENT_LENGTH"], config["NER_MAX_TEXT_CHARS"], config["NER_MAX_TEXTS"]) == (1234, 56, 7)
    assert config["NER_BACKEND"] == "tensorflow"


def test_no_debug_mode(app):
    assert not app.debug and not app_module.app.debug


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_importing_the_app_and_serving_with_onnx_never_imports_tensorflow():
    code = (
        "import sys, app\n"
        "from nerserve.web.app import model_loader\n"
        "assert 'tensorflow' not in sys.modules and 'onnxruntime' not in sys.modules, 'heavy import'\n"
        "model_loader(app.app).wait(120)\n"
        "assert 'onnxruntime' in sys.modules\n"
        "print('tensorflow' in sys.modules or 'nerserve.tagger.training' in sys.modules)\n"
    )
    result = run_python(code, NER_BACKEND="onnx")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_python_app_py_serves_on_loopback_only():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        listening = {c.laddr for c in psutil.Process(process.pid).net_connections() if c.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", port)}
        status, _, body = http("GET", f"http://127.0.0.1:{port}/console")  # the Werkzeug debugger's page
        assert status == 404 and b"Werkzeug" not in body
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "Debug mode: off" in output


def test_a_request_is_abandoned_when_its_client_left_or_past_the_routers_limit():
    class Socket:  # what buffered_worker's ThreadSocket tells of its request
        def __init__(self, received_at: float, left: bool):
            self.received_at, self.left = received_at, left

        def client_left(self) -> bool:
            return self.left

    now = time.monotonic()
    check = app_module.abandonment_check
    assert check({"gunicorn.socket": Socket(now, left=False)})() is None
    assert check({"gunicorn.socket": Socket(now, left=True)})() == "its client left"
    late = check({"gunicorn.socket": Socket(now - app_module.ROUTER_TIMEOUT_S - 1, left=False)})()
    assert late.startswith("it waited 3") and late.endswith(f"past the router's {app_module.ROUTER_TIMEOUT_S} s")
    assert check({})() is None  # another server: only the time is known, and it has just begun
