"""Hostile and careless clients against the Procfile's server (issue 22):
stalled and trickling connections, slow readers, gunicorn's own errors, and
SIGTERM with requests in flight. The worker is nerserve/server/buffered_worker.py.

Every loop is bounded in requests and seconds; nothing here asserts speed.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from nerserve.server.buffered_worker import HEAD_DEADLINE_S, MAX_REQUEST_ID_CHARS
from tests.launcher import HOST, gunicorn, poll
from tests.service_fixtures import raw_request, status_and_error

pytestmark = pytest.mark.slow

STALLED = 100
TRICKLING = 20
TRICKLE_EVERY_S = 0.5
NORMAL_REQUESTS = 10
# A hang guard: every stalled connection is closed by the server well before it.
CLIENT_TIMEOUT_S = 60
LOG_TIMEOUT_S = 30
# A ~4.5 MB answer: more than the server's socket buffer (4 MB on loopback) holds.
LARGE_ANSWER_BODY = json.dumps({"texts": ["a," * 4984 + "b" * 32] * 10}).encode()
SLOW_READ_PAUSE_S = 7  # longer than the 5 s a write could once wait
HEAVY_BODY = json.dumps({"texts": ["a," * 4984 + "b" * 32] * 3}).encode()
SMALL_BODY_LIMIT = 64 * 1024


def post_answer(port: int, body: bytes, headers: dict | None = None, timeout: float = CLIENT_TIMEOUT_S):
    """The answer to one POST /api, read whole: (the response, its body)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("POST", "/api", body, {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def post_raw(port: int, body: bytes, headers: dict | None = None, timeout: float = CLIENT_TIMEOUT_S):
    response, answer = post_answer(port, body, headers, timeout)
    return response.status, answer


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def dechunked(body: bytes) -> bytes:
    """A chunked body's content; ValueError if it does not end with its last chunk."""
    content, at = b"", 0
    while True:
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end], 16)
        if size == 0:
            return content
        content += body[line_end + 2:line_end + 2 + size]
        at = line_end + 2 + size + 2


def stall(port: int, part: bytes) -> bytes:
    """Send part of a request, then nothing: what the server answers before it closes."""
    with socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(part)
        return read_until_closed(sock)


def trickle(port: int, head: bytes) -> bytes:
    """Send a head a byte every TRICKLE_EVERY_S, reading whatever the server answers meanwhile."""
    with socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT_S) as sock:
        for byte in head:
            if select.select([sock], [], [], TRICKLE_EVERY_S)[0]:
                return read_until_closed(sock)
            sock.sendall(bytes([byte]))
        return read_until_closed(sock)


def log_count(server, text: str, at_least: int) -> int:
    return poll(lambda: (n := server.log.read_text().count(text)) >= at_least and n, LOG_TIMEOUT_S,
                f"{at_least} log lines with {text!r}")


def test_stalled_and_trickling_connections_are_closed_while_normal_requests_are_answered(tmp_path):
    parts = [b"POST /api HTTP/1.1\r\n",  # a head that stops
             b"",  # nothing at all
             b'POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"text": "Par']  # a body that stops
    # Longer than the head deadline at a byte every TRICKLE_EVERY_S.
    trickled = b"POST /api HTTP/1.1\r\nHost: localhost\r\n" + b"X-Padding: " + b"x" * int(4 * HEAD_DEADLINE_S / TRICKLE_EVERY_S)
    with gunicorn(tmp_path / "gunicorn.log", workers=2) as server:
        workers = {w.pid for w in server.workers()}
        with ThreadPoolExecutor(max_workers=STALLED + TRICKLING) as pool:
            stalled = [pool.submit(stall, server.port, parts[i % len(parts)]) for i in range(STALLED)]
            trickling = [pool.submit(trickle, server.port, trickled) for _ in range(TRICKLING)]
            normal = [post_raw(server.port, json.dumps({"text": f"Angela Merkel visited Paris on day {i}."}).encode())
                      for i in range(NORMAL_REQUESTS)]
            answers = [future.result() for future in stalled + trickling]

        assert all(status == 200 and b"Angela Merkel" in body for status, body in normal), normal
        # Each was closed by the server, with a 408 (the client's timeout would raise instead).
        assert {status_and_error(answer) for answer in answers} == {(408, "request_timeout")}
        log_count(server, "closed a connection from 127.0.0.1", STALLED + TRICKLING)
        assert "Traceback" not in server.log.read_text()
        assert {w.pid for w in server.workers()} == workers


@pytest.fixture(scope="module")
def large_answer_server(tmp_path_factory):
    with gunicorn(tmp_path_factory.mktemp("large") / "gunicorn.log", workers=2) as server:
        yield server


def send_large_answer_request(port: int, header: bytes) -> socket.socket:
    """A connected socket with a small receive buffer that has sent a request
    for a large answer, with one more header line."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(CLIENT_TIMEOUT_S)
    sock.connect((HOST, port))
    sock.sendall(b"POST /api HTTP/1.1\r\nHost: localhost\r\n%s\r\nContent-Length: %d\r\n\r\n%s"
                 % (header, len(LARGE_ANSWER_BODY), LARGE_ANSWER_BODY))
    return sock


def test_a_slow_reader_receives_a_whole_large_answer(large_answer_server):
    with send_large_answer_request(large_answer_server.port, b"Connection: close") as sock:
        answer = sock.recv(65536)
        time.sleep(SLOW_READ_PAUSE_S)  # the reader stalls, then reads at its own pace
        answer += read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head  # streamed a text at a time
    body = dechunked(body)  # raises if cut short
    assert len(body) > 4 * 2**20
    assert [len(r["tags"]) for r in json.loads(body)["results"]] == [9969] * 10
    assert "answer cut" not in large_answer_server.log.read_text()


def test_a_cut_answer_is_logged_as_cut_without_a_traceback(large_answer_server):
    with send_large_answer_request(large_answer_server.port, b"X-Request-Id: cut-1") as sock:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    log_count(large_answer_server, 'answer cut: request="POST /api HTTP/1.1" request_id="cut-1"', 1)
    assert "Traceback" not in large_answer_server.log.read_text()


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414, "request_uri_too_long"),
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
     "request_header_fields_too_large"),
    (b"POST /api HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: zip\r\n\r\n", 501, "not_implemented"),
], ids=["bad header", "long request line", "large header", "unknown transfer coding"])
def test_gunicorn_s_own_errors_are_json_with_cors(server, request_bytes, status, code):
    answer = raw_request(server.port, request_bytes, iter([]))
    assert status_and_error(answer) == (status, code)
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert "content-type: application/json" in head and "access-control-allow-origin: *" in head


def test_a_long_request_id_is_cut_in_the_access_log(server):
    request_id = "r" * 8000
    assert post_raw(server.port, b'"Paris"', {"X-Request-Id": request_id})[0] == 200
    cut = f'request_id="{"r" * MAX_REQUEST_ID_CHARS}"'
    log_count(server, cut, 1)
    assert "r" * (MAX_REQUEST_ID_CHARS + 1) not in server.log.read_text()


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "gunicorn.log"
    with gunicorn(log, workers=1, NER_MAX_BODY_BYTES=str(SMALL_BODY_LIMIT)) as server:
        yield server


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


@pytest.mark.parametrize(("size", "expected"), [(SMALL_BODY_LIMIT, (413, "text_too_long")),
                                                 (SMALL_BODY_LIMIT + 1, (413, "body_too_large"))])
def test_chunked_and_content_length_bodies_have_the_same_limit(small_limit_server, size, expected):
    # A body of the limit is read (its text is then too long); one byte more is refused unread.
    body = b'"' + b"a" * (size - 2) + b'"'
    head = b"POST /api HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    by_length = raw_request(small_limit_server.port, head + b"Content-Length: %d\r\n\r\n" % size, iter([body]))
    by_chunks = raw_request(small_limit_server.port, head + b"Transfer-Encoding: chunked\r\n\r\n",
                            iter([chunked(body)]))
    assert status_and_error(by_length) == status_and_error(by_chunks) == expected


def test_a_stalled_chunked_body_is_a_408(small_limit_server):
    answer = stall(small_limit_server.port, b"POST /api HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked"
                                            b'\r\n\r\n9\r\n{"text": ')
    assert status_and_error(answer) == (408, "request_timeout")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"] == "the request body was not complete in time"


def sigterm_as_heroku_does(server) -> None:
    """Heroku sends SIGTERM to every process of the dyno at once."""
    for pid in [server.process.pid, *(w.pid for w in server.workers())]:
        os.kill(pid, signal.SIGTERM)


def refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:  # accepted by the kernel, then reset: not refused yet
        pass
    return False


def in_flight(port: int, heavy: int, small: int):
    """Send `heavy` and `small` requests at once; (their futures, the pool) once
    every request is sent, the answers still to come."""
    pool = ThreadPoolExecutor(max_workers=heavy + small)
    sent: list[bytes] = []

    def send(body: bytes):
        connection = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT_S)
        try:
            connection.request("POST", "/api", body, {"Content-Type": "application/json"})
            sent.append(body)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as error:
            return repr(error)
        finally:
            connection.close()

    futures = [pool.submit(send, HEAVY_BODY) for _ in range(heavy)]
    futures += [pool.submit(send, json.dumps({"text": f"Tony Blair in London, {i}."}).encode()) for i in range(small)]
    poll(lambda: len(sent) == heavy + small, CLIENT_TIMEOUT_S, "every request sent")
    return futures, pool


def test_sigterm_refuses_new_connections_and_answers_every_request_in_flight(tmp_path):
    with gunicorn(tmp_path / "gunicorn.log", workers=2) as server:
        futures, pool = in_flight(server.port, heavy=4, small=12)
        sigterm_as_heroku_does(server)
        poll(lambda: refused(server.port), LOG_TIMEOUT_S, "new connections refused")
        statuses = [future.result() for future in futures]
        pool.shutdown()
        assert statuses == [200] * 16
        assert server.process.wait(timeout=CLIENT_TIMEOUT_S) == 0
        assert "shutdown:" not in server.log.read_text()


def test_a_request_left_unanswered_at_shutdown_is_logged(tmp_path):
    # A graceful timeout too short for the heavy requests queued in each worker.
    with gunicorn(tmp_path / "gunicorn.log", workers=1, GUNICORN_CMD_ARGS="--graceful-timeout 3") as server:
        futures, pool = in_flight(server.port, heavy=4, small=0)
        # The worker tags one at a time: after the first answer, the others wait in it.
        poll(lambda: 'path="/api" status=200' in server.log.read_text(), CLIENT_TIMEOUT_S, "a first answer")
        sigterm_as_heroku_does(server)
        statuses = [future.result() for future in futures]
        pool.shutdown()
        server.process.wait(timeout=CLIENT_TIMEOUT_S)
        unanswered = [s for s in statuses if s != 200]
        assert unanswered
        log = server.log.read_text()
        assert log.count('shutdown: no answer sent for request="POST /api HTTP/1.1"') == len(unanswered), log


def test_a_client_that_expects_100_continue_gets_it_once_before_sending_its_body(server):
    body = b'"I love Paris"'
    with socket.create_connection((HOST, server.port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(b"POST /api HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["tags"] == ["O", "O", "B-LOC"]


def connections_held(server) -> list[int]:
    """The established connections each worker holds on the server's port."""
    return sorted(sum(1 for c in worker.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED
                      and c.laddr.port == server.port) for worker in server.workers())


def test_a_burst_of_kept_alive_connections_is_shared_between_the_workers(tmp_path):
    # A kept-alive client stays on the worker that accepted it: gthread's
    # workers left to race for a burst often gave one worker all of them.
    with gunicorn(tmp_path / "output.log", workers=2) as server:
        for _ in range(3):
            clients = [http.client.HTTPConnection(HOST, server.port, timeout=CLIENT_TIMEOUT_S) for _ in range(8)]
            for client in clients:
                client.connect()
            for client in clients:
                client.request("POST", "/api", b'"I love Paris"', {"Content-Type": "application/json"})
                assert client.getresponse().read()
            held = connections_held(server)
            for client in clients:
                client.close()
            assert sum(held) == 8
            assert held[0] >= 3, f"connections held by each worker: {held}"
            poll(lambda: sum(connections_held(server)) == 0, LOG_TIMEOUT_S, "the server to close the connections")


# The largest request the default limits take: 50 texts of 1,999 tokens.
MAXIMAL_BODY = json.dumps({"texts": ["a " * 1999] * 50}).encode()
HEAVY_CLIENTS = 6
ADMITTED_MAXIMAL = 2  # ADMITTED_WORK_TOKENS: two of them


def timed_post(port: int, body: bytes) -> tuple[int, str | None, float]:
    """Status, Retry-After and seconds of one POST /api."""
    started = time.perf_counter()
    response, _ = post_answer(port, body)
    return response.status, response.getheader("Retry-After"), time.perf_counter() - started


def test_a_worker_refuses_heavy_work_it_cannot_take_on_at_once_and_answers_small_requests(tmp_path):
    # Red team: 64 clients looping maximal bodies made small requests wait 35 s and
    # heavy ones up to 162 s, and grew each worker past 600 MB.
    with gunicorn(tmp_path / "gunicorn.log", workers=1) as server, ThreadPoolExecutor(HEAVY_CLIENTS) as pool:
        heavy = [pool.submit(timed_post, server.port, MAXIMAL_BODY) for _ in range(HEAVY_CLIENTS)]
        poll(lambda: "refused a request" in server.log.read_text(), LOG_TIMEOUT_S, "a heavy request refused")
        small = post_raw(server.port, json.dumps({"text": "Tony Blair in London."}).encode())
        answers = [future.result() for future in heavy]
    assert small[0] == 200
    refusals = [(retry_after, seconds) for status, retry_after, seconds in answers if status == 503]
    assert sorted(status for status, _, _ in answers) == [200] * ADMITTED_MAXIMAL + [503] * len(refusals)
    assert len(refusals) == HEAVY_CLIENTS - ADMITTED_MAXIMAL
    # Refused at once, before any tagging, with when to come back.
    assert all(retry_after is not None and int(retry_after) >= 1 and seconds < 5 for retry_after, seconds in refusals)


def test_a_request_whose_client_left_is_dropped_not_tagged(tmp_path):
    with gunicorn(tmp_path / "gunicorn.log", workers=1) as server:
        with socket.create_connection((HOST, server.port), timeout=CLIENT_TIMEOUT_S) as sock:
            sock.sendall(b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(MAXIMAL_BODY), MAXIMAL_BODY))
        log_count(server, "dropped POST /api before tagging it all: its client left", 1)
        log_count(server, 'path="/api" status=503', 1)  # logged as what it was, never as a 200
        assert 'path="/api" status=200' not in server.log.read_text()


def test_a_head_with_bare_line_feeds_is_answered_400_at_once(server):
    started = time.perf_counter()
    with socket.create_connection((HOST, server.port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\nHost: localhost\n\n")
        answer = read_until_closed(sock)
    assert status_and_error(answer) == (400, "bare_lf")
    assert time.perf_counter() - started < HEAD_DEADLINE_S  # not the head deadline's 408
