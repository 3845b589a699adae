"""End to end: gunicorn started with the Procfile's command, talked to over a socket."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

from tests.launcher import gunicorn, poll
from tests.service_fixtures import http, post_json, raw_request, status_and_error

NAMES = ["Angela Merkel", "Barack Obama", "Tony Blair", "Jacques Chirac", "Boris Yeltsin", "Helmut Kohl"]
CITIES = ["Washington", "Paris", "London", "Berlin", "Moscow", "Tokyo"]


def test_the_procfile_web_process_serves_the_app_on_port(server):
    # Heroku runs the Procfile's web command with $PORT set and routes to that port on every interface.
    listening = {c.laddr for w in [psutil.Process(server.process.pid)] for c in w.net_connections()
                 if c.status == psutil.CONN_LISTEN}
    assert {address.port for address in listening} == {server.port}
    # /healthz: the launcher waits for one worker's model, and the other may still be loading.
    assert http("GET", server.url + "/healthz")[0] == 200


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
    # The server may answer and close before the whole body is sent: raw_request reads the answer still.
    body = b'"' + b"a" * (1024 * 1024) + b'"'
    head = b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    answer = raw_request(server.port, head % len(body), iter([body]))
    assert status_and_error(answer) == (413, "body_too_large")


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
    secret = "Zanzibar Quixotic Plover " * 300  # 7,500 characters: a length no other test sends
    assert post_json(server.url + "/api", {"texts": [secret, "I love Paris"]})[0] == 200
    # gunicorn writes the line after sending the answer.
    poll(lambda: "text_chars=7512 tokens=903 key_id=-\n" in server.log.read_text(), 10, "the access log line")
    log = server.log.read_text()
    assert "Zanzibar" not in log
    assert log.count("text_chars=7512 tokens=903 key_id=-\n") == 1
    assert re.search(r'^method=POST path="/api" status=200 duration=\d+ms request_id="-" text_chars=7512 tokens=903 key_id=-$',
                     log, re.MULTILINE)
    # Requests leave nothing else in the log: its lines are gunicorn's own
    # ("[date] [pid] [INFO] ...") or access lines (the path quoted, with \" and \\ escaped).
    access_line = re.compile(r'method=(GET|POST|OPTIONS) path="/([^"\\]|\\.)*" status=\d{3} duration=\d+ms '
                             r'request_id="([^"\\]|\\.)*" text_chars=(\d+|-) tokens=(\d+|-) key_id=([0-9a-f]{8}|-)')
    assert [line for line in log.splitlines() if not line.startswith("[") and not access_line.fullmatch(line)] == []


def test_gunicorn_stops_promptly(tmp_path):
    # A worker forked after onnxruntime is imported hangs on exit: this fails if
    # the master ever loads the model (or imports onnxruntime) before forking.
    with gunicorn(tmp_path / "output.log", workers=2) as server:
        assert post_json(server.url + "/api", "I love Paris")[0] == 200
        started = time.monotonic()
        server.process.terminate()
        assert server.process.wait(timeout=30) == 0
        assert time.monotonic() - started < 5, server.log.read_text()
