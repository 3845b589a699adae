"""End to end: gunicorn started with the Procfile's command, talked to over a socket."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

from tests.service_fixtures import http, post_json

NAMES = ["Angela Merkel", "Barack Obama", "Tony Blair", "Jacques Chirac", "Boris Yeltsin", "Helmut Kohl"]
CITIES = ["Washington", "Paris", "London", "Berlin", "Moscow", "Tokyo"]


def test_the_readme_curl_example(server):
    status, result = post_json(server.url + "/api", "I love Paris")
    assert status == 200
    assert result["tags"] == ["O", "O", "B-LOC"] and result["output"] == "O O    B-LOC"


def test_routes_over_http(server):
    assert http("GET", server.url + "/healthz")[0] == 200
    status, headers, body = http("GET", server.url + "/client")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<button" in body
    status, _, body = http("GET", server.url + "/api/model")
    assert status == 200 and "B-PER" in json.loads(body)["tags"]
    status, _, body = http("GET", server.url + "/missing")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_the_default_limits(server):
    # 10,000 characters a text, 50 texts a request, 1 MiB a body.
    assert post_json(server.url + "/api", {"texts": ["Paris"] * 50})[0] == 200
    status, result = post_json(server.url + "/api", {"texts": ["Paris"] * 51})
    assert status == 413 and result["error"]["code"] == "too_many_texts"
    status, result = post_json(server.url + "/api", "a" * 10_001)
    assert status == 413 and result["error"]["code"] == "text_too_long"
    status, _, body = http("POST", server.url + "/api", b'"' + b"a" * (1024 * 1024) + b'"')
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"


def test_concurrent_requests_each_get_their_own_answer(server):
    texts = [f"{name} visited {city} on Monday." for name, city in zip(NAMES, CITIES, strict=True)] * 4
    one_at_a_time = {text: post_json(server.url + "/api", text) for text in set(texts)}

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda text: post_json(server.url + "/api", {"text": text}), texts))
    for text, answer in zip(texts, answers, strict=True):
        assert answer == one_at_a_time[text]
        assert answer[1]["input"].split() == text.replace(".", " .").split()
    merkel = {(e["text"], e["type"]) for e in answers[0][1]["entities"]}
    assert {("Angela Merkel", "PER"), ("Washington", "LOC")} <= merkel


def test_one_access_log_line_a_request_without_the_text(server):
    secret = "Zanzibar Quixotic Plover"
    before = len(server.log.read_text().splitlines())
    assert post_json(server.url + "/api", {"texts": [secret, "I love Paris"]})[0] == 200
    time.sleep(0.5)  # gunicorn writes the line after sending the answer
    log = server.log.read_text()
    assert secret not in log
    (line,) = log.splitlines()[before:]
    assert re.fullmatch(r"POST /api 200 \d+ms text_chars=36", line), line
    assert re.search(r"^GET /readyz (200|503) \d+ms text_chars=-$", log, re.MULTILINE)
