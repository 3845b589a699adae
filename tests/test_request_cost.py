"""What one request may cost the service: a token budget counted before any
model call, a worker shared between requests a slice at a time, answers
gzipped, and memory given back. gunicorn started as the Procfile does, on
loopback; every loop is bounded; nothing here asserts speed."""

from __future__ import annotations

import gzip
import http.client
import json
import threading

import pytest

from tests.launcher import HOST, gunicorn, poll
from tests.test_tokenizer_bound import MAX_TEXTS, heavy_texts

pytestmark = pytest.mark.slow

TIMEOUT_S = 60
PARIS_LIST = "Paris , "  # two tokens, one sentence however often repeated


def post(port: int, payload, headers: dict | None = None) -> http.client.HTTPResponse:
    """One POST /api on a fresh connection; the response, its body read into `.body`."""
    connection = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)
    connection.request("POST", "/api", json.dumps(payload), {"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    with gunicorn(tmp_path_factory.mktemp("one-worker") / "gunicorn.log", workers=1) as server:
        yield server


def test_a_body_at_the_token_budget_is_answered_and_one_over_it_is_413(tmp_path):
    with gunicorn(tmp_path / "gunicorn.log", workers=1, NER_MAX_TOKENS="100") as server:
        at_budget = post(server.port, {"texts": [PARIS_LIST * 50]})
        assert at_budget.status == 200
        assert len(json.loads(at_budget.body)["results"][0]["tags"]) == 100
        over = post(server.port, {"texts": [PARIS_LIST * 50, "Paris"]})
        assert over.status == 413
        error = json.loads(over.body)["error"]
        assert (error["code"], error["tokens"], error["limit"]) == ("too_many_tokens", 101, 100)
        assert "split" in error["message"]


@pytest.mark.parametrize("shape", ["a, list", "a; list", "city names and a URL", "one sentence of 2,000 words"])
def test_a_body_of_any_heavy_shape_over_the_budget_is_413(one_worker, shape):
    # NER_MAX_TEXTS texts of 10,000 characters: from 100,050 tokens (2,000 words) to 500,000 (a list).
    over = post(one_worker.port, {"texts": [heavy_texts()[shape]] * MAX_TEXTS})
    assert over.status == 413 and over.getheader("Content-Type") == "application/json"
    error = json.loads(over.body)["error"]
    assert (error["code"], error["limit"]) == ("too_many_tokens", 100_000) and error["tokens"] > 100_000
    assert f"at least {error['tokens']}" in error["message"]


def test_a_small_request_is_answered_while_a_heavy_one_is_tagged_on_the_same_worker(one_worker):
    # About 50,000 tokens: seconds of tagging, in slices.
    heavy = {"texts": ["Angela Merkel visited Washington , " * 250] * 40}
    (worker,) = one_worker.workers()
    cpu_before = sum(worker.cpu_times()[:2])
    heavy_answer: list[http.client.HTTPResponse] = []
    heavy_done = threading.Event()

    def send_heavy() -> None:
        heavy_answer.append(post(one_worker.port, heavy))
        heavy_done.set()

    sender = threading.Thread(target=send_heavy)
    sender.start()
    try:
        # The heavy request is being worked on once the worker has spent CPU on it.
        poll(lambda: sum(worker.cpu_times()[:2]) - cpu_before > 0.5 or heavy_done.is_set(), TIMEOUT_S,
             "the worker busy with the heavy request")
        assert not heavy_done.is_set(), "the heavy request ended before the test could send a small one"
        small = post(one_worker.port, {"text": "I love Paris"})
        small_answered_first = not heavy_done.is_set()
    finally:
        sender.join(TIMEOUT_S)
    assert small.status == 200 and json.loads(small.body)["tags"] == ["O", "O", "B-LOC"]
    assert small_answered_first, "the small request waited for the whole heavy one"
    assert heavy_answer[0].status == 200
    assert len(json.loads(heavy_answer[0].body)["results"]) == 40


def test_answers_are_gzipped_when_the_client_accepts_gzip(one_worker):
    payload = {"text": "Angela Merkel visited Washington. " * 20}
    plain = post(one_worker.port, payload)
    assert plain.status == 200 and plain.getheader("Content-Encoding") is None
    zipped = post(one_worker.port, payload, {"Accept-Encoding": "gzip"})
    assert zipped.status == 200 and zipped.getheader("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(zipped.body)) == json.loads(plain.body)
    assert len(zipped.body) < len(plain.body) / 4
    assert "Accept-Encoding" in zipped.getheader("Vary")


def test_memory_comes_back_after_a_text_of_the_costliest_shape(one_worker):
    # 10,000 characters, nearly a token each: the most work a text of the limit's length holds.
    costliest = "b;" * 4980 + "x" * 40
    (worker,) = one_worker.workers()
    for _ in range(3):
        assert post(one_worker.port, {"text": "I love Paris"}).status == 200
    idle_mb = worker.memory_info().rss / 2**20
    answer = post(one_worker.port, {"text": costliest})
    assert answer.status == 200 and len(json.loads(answer.body)["tokens"]) == 9961
    # Generous: what matters is that the worker does not keep the request's peak.
    poll(lambda: worker.memory_info().rss / 2**20 < idle_mb + 40, 10,
         f"worker memory back within 40 MB of {idle_mb:.0f} MB")
