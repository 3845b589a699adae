"""Reliability of the real service: gunicorn started as the Procfile does, on
loopback. Many clients at once, a worker killed under load, tens of thousands
of requests against memory growth, bodies over the size limit, heavy bodies,
slow and broken clients, a model that cannot load, forged log lines.

Every loop is bounded in requests and seconds; nothing here asserts speed.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from tests.launcher import HOST, gunicorn, poll
from tests.service_fixtures import raw_request, status_and_error

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 30
NAMES = ["Angela Merkel", "Barack Obama", "Tony Blair", "Jacques Chirac", "Boris Yeltsin", "Helmut Kohl"]
CITIES = ["Washington", "Paris", "London", "Berlin", "Moscow", "Tokyo"]

CLIENTS = 24
CLIENT_SECONDS = 3
CLIENT_MAX_REQUESTS = 150

FAULT_CLIENTS = 6
FAULT_KILLS = 2
FAULT_SECONDS_BETWEEN_KILLS = 1.0
REPLACEMENT_TIMEOUT_S = 60

MEMORY_WARM_UP_REQUESTS = 2_000
MEMORY_REQUESTS = 20_000
MEMORY_CLIENTS = 4
MEMORY_WORKERS = 2
# Each worker's RSS may grow this much over MEMORY_REQUESTS after the warm-up (allocator
# arenas, ONNX Runtime's shape caches). A leak of 1 KB a request would pass it.
MEMORY_GROWTH_BOUND_MB = 20

SMALL_BODY_LIMIT = 64 * 1024  # NER_MAX_BODY_BYTES of the body-limit server

# Heavy bodies: within every limit, but one "sentence" of ~10,000 tokens a text.
HEAVY_TEXTS = 5
# A worker's RSS during and after them (an idle worker is ~90 MB). Before
# windowing and batching by padded size, 8 such texts took a worker to 2.2 GB.
HEAVY_PEAK_BOUND_MB = 600
HEAVY_AFTER_BOUND_MB = 250
MEMORY_POLL_S = 0.02

SLOW_CONNECTIONS = 16
SLOW_BYTE_EVERY_S = 0.5
SLOW_TEST_REQUEST_TIMEOUT_S = 10
LOG_TIMEOUT_S = 10


def post(port: int, payload, timeout: float = REQUEST_TIMEOUT_S) -> tuple[int, dict]:
    """One POST /api on a fresh connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("POST", "/api", json.dumps(payload), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@dataclass
class Outcomes:
    """What a group of clients saw: right answers, wrong answers, failures."""

    right: int = 0
    wrong: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, expected: dict, text: str, port: int) -> None:
        try:
            status, answer = post(port, {"text": text})
        except (OSError, http.client.HTTPException) as error:  # reset, refused, timed out, cut short
            with self.lock:
                self.failed.append(repr(error))
            return
        with self.lock:
            if status != 200:
                self.failed.append((status, answer))
            elif answer != expected:
                self.wrong.append((text, answer))
            else:
                self.right += 1


def client_texts(count: int) -> list[str]:
    """A different text for each client; the answer shows whose it is."""
    return [f"{NAMES[i % 6]} met {NAMES[(i // 6 + i + 1) % 6]} in {CITIES[i % 6]} on day {i}." for i in range(count)]


def references(port: int, texts: list[str]) -> dict[str, dict]:
    """Each text's answer, asked one at a time."""
    answers = {}
    for text in texts:
        status, answer = post(port, {"text": text})
        assert status == 200, answer
        answers[text] = answer
    return answers


def run_clients(port: int, texts: list[str], expected: dict, seconds: float, max_requests: int) -> Outcomes:
    """One thread a text, each posting its own text until `seconds` or `max_requests`."""
    outcomes = Outcomes()
    deadline = time.monotonic() + seconds

    def client(text: str) -> None:
        for _ in range(max_requests):
            if time.monotonic() > deadline:
                return
            outcomes.record(expected[text], text, port)

    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        list(pool.map(client, texts))
    return outcomes


def test_many_clients_at_once_each_get_their_own_answer(server):
    port = server.port
    texts = client_texts(CLIENTS)
    expected = references(port, texts)
    for text, answer in expected.items():  # the answers tell the clients apart
        assert {e["text"] for e in answer["entities"]} <= set(NAMES + CITIES) and text.endswith(answer["tokens"][-2]["text"] + ".")

    outcomes = run_clients(port, texts, expected, CLIENT_SECONDS, CLIENT_MAX_REQUESTS)
    assert outcomes.failed == [] and outcomes.wrong == []
    assert outcomes.right >= CLIENTS


def test_a_worker_killed_under_load_is_replaced_and_no_answer_is_wrong(tmp_path):
    with gunicorn(tmp_path / "gunicorn.log", workers=2) as server:
        texts = client_texts(FAULT_CLIENTS)
        expected = references(server.port, texts)
        killed: list[int] = []

        def kill_workers() -> None:
            for _ in range(FAULT_KILLS):
                time.sleep(FAULT_SECONDS_BETWEEN_KILLS)
                victim = next(w for w in server.workers() if w.pid not in killed)
                killed.append(victim.pid)
                os.kill(victim.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_workers)
        killer.start()
        outcomes = run_clients(server.port, texts, expected, (FAULT_KILLS + 1) * FAULT_SECONDS_BETWEEN_KILLS,
                               max_requests=10_000)
        killer.join()

        assert outcomes.wrong == []
        # A threaded worker holds at most a connection a client: only those may fail.
        assert len(outcomes.failed) <= FAULT_KILLS * FAULT_CLIENTS, outcomes.failed
        assert outcomes.right > 0
        assert server.process.poll() is None, "the master died"

        def replaced() -> bool:
            pids = {w.pid for w in server.workers()}
            return len(pids) == 2 and not pids & set(killed)

        poll(replaced, REPLACEMENT_TIMEOUT_S, f"two workers other than {killed}")
        after = run_clients(server.port, texts, expected, seconds=1, max_requests=20)
        assert after.failed == [] and after.wrong == [] and after.right > 0


def test_memory_stays_bounded_over_tens_of_thousands_of_requests(tmp_path):
    sentences = [" ".join(s.words) for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    with gunicorn(tmp_path / "gunicorn.log", workers=MEMORY_WORKERS) as server:
        workers = server.workers()

        def send(count: int) -> list:
            failures = []
            counter = iter(range(count))
            lock = threading.Lock()

            def client() -> None:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    status, answer = post(server.port, {"text": sentences[i % len(sentences)]})
                    if status != 200:
                        failures.append((status, answer))

            threads = [threading.Thread(target=client) for _ in range(MEMORY_CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return failures

        assert send(MEMORY_WARM_UP_REQUESTS) == []
        before = [w.memory_info().rss / 2**20 for w in workers]
        assert send(MEMORY_REQUESTS) == []
        after = [w.memory_info().rss / 2**20 for w in workers]
        assert {w.pid for w in server.workers()} == {w.pid for w in workers}, "a worker was replaced"
        print(f"worker RSS {before} MB -> {after} MB over {MEMORY_REQUESTS} requests")
        for rss_before, rss_after in zip(before, after, strict=True):
            assert rss_after - rss_before < MEMORY_GROWTH_BOUND_MB


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "gunicorn.log"
    with gunicorn(log, workers=1, NER_MAX_BODY_BYTES=str(SMALL_BODY_LIMIT)) as server:
        yield server


def test_a_huge_content_length_is_refused_with_413_before_the_body_is_sent(small_limit_server):
    head = (b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000000\r\n\r\n")
    answer = raw_request(small_limit_server.port, head, iter([b'"' + b"a" * 1000]))
    assert status_and_error(answer) == (413, "body_too_large")


def test_a_chunked_body_over_the_limit_is_refused_with_413_without_reading_it_whole(small_limit_server):
    # No Content-Length: the server can only tell by reading; it must stop past the limit.
    chunk = b"a" * 4096
    parts = [b'1\r\n"\r\n', *(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4 * SMALL_BODY_LIMIT // 4096))]
    head = b"POST /api HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw_request(small_limit_server.port, head, iter(parts))  # never the closing 0-chunk
    assert status_and_error(answer) == (413, "body_too_large")


def test_the_service_still_answers_after_refusing_big_bodies(small_limit_server):
    assert post(small_limit_server.port, "I love Paris")[0] == 200


def rss_mb(process) -> float:
    return process.memory_info().rss / 2**20


def test_heavy_bodies_are_answered_and_worker_memory_comes_back(tmp_path):
    texts = ["a," * 4984 + "b" * 32] * HEAVY_TEXTS + [" ".join(["word"] * 2000) + "."] * HEAVY_TEXTS
    with gunicorn(tmp_path / "gunicorn.log", workers=1) as server:
        (worker,) = server.workers()
        peak, done = 0.0, threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.wait(MEMORY_POLL_S):
                peak = max(peak, rss_mb(worker))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            status, answer = post(server.port, {"texts": texts})
        finally:
            done.set()
            watcher.join()
        assert status == 200, answer
        assert [len(r["tags"]) for r in answer["results"]] == [9969] * HEAVY_TEXTS + [2001] * HEAVY_TEXTS
        assert [w.pid for w in server.workers()] == [worker.pid], "the worker was replaced"
        print(f"worker peak {peak:.0f} MB, after {rss_mb(worker):.0f} MB")
        assert peak < HEAVY_PEAK_BOUND_MB
        assert rss_mb(worker) < HEAVY_AFTER_BOUND_MB


def trickle(port: int, head: bytes, stop: threading.Event, sending: list) -> None:
    """A slow client: `head` a byte at a time until told to stop (or the server closes);
    joins `sending` once its first byte is sent."""
    with socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT_S) as sock:
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            if not sending or sending[-1] is not threading.current_thread():
                sending.append(threading.current_thread())
            if stop.wait(SLOW_BYTE_EVERY_S):
                return


def test_slow_connections_do_not_block_a_normal_request(server):
    port = server.port
    heads = [b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n" + b"x" * 20,  # slow headers
             b'POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{"text": "' + b"a" * 990]
    workers = {w.pid for w in server.workers()}
    stop, sending = threading.Event(), []
    slow = [threading.Thread(target=trickle, args=(port, heads[i % 2], stop, sending))
            for i in range(SLOW_CONNECTIONS)]
    for thread in slow:
        thread.start()
    try:
        poll(lambda: len(set(sending)) == SLOW_CONNECTIONS, SLOW_TEST_REQUEST_TIMEOUT_S, "every slow client sending")
        for text in client_texts(4):
            # Sync workers would each be held by a slow client until gunicorn
            # killed them at its timeout (25 s): this waits less, and no worker may go.
            status, answer = post(port, {"text": text}, timeout=SLOW_TEST_REQUEST_TIMEOUT_S)
            assert status == 200 and answer["entities"], answer
    finally:
        stop.set()
        for thread in slow:
            thread.join()
    assert {w.pid for w in server.workers()} == workers


def test_a_malformed_chunked_body_is_a_400_without_a_traceback(server):
    port = server.port
    head = b"POST /api HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw_request(port, head, iter([b"zz\r\n\"Paris\"\r\n0\r\n\r\n"]))
    assert status_and_error(answer) == (400, "invalid_body")
    assert "Traceback" not in server.log.read_text()


def test_an_incomplete_body_is_a_408_at_its_deadline_and_no_worker_is_killed(tmp_path):
    with gunicorn(tmp_path / "gunicorn.log", workers=1) as server:
        workers = [w.pid for w in server.workers()]
        head = b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n"
        answer = raw_request(server.port, head, iter([b'{"text": "Par']))  # then nothing more
        assert status_and_error(answer) == (408, "request_timeout")
        assert "request body not complete within" in server.log.read_text()
        assert [w.pid for w in server.workers()] == workers
        assert post(server.port, "I love Paris")[0] == 200


def test_a_model_that_cannot_load_stops_the_server_with_an_error(tmp_path):
    # The launcher waits for /readyz and says so when the server exits first:
    # the worker exits with gunicorn's boot-error code, the master then stops non-zero.
    log = tmp_path / "gunicorn.log"
    with (pytest.raises(RuntimeError, match="the server exited with [1-9]"),
          gunicorn(log, workers=2, NER_MODEL_DIR=str(tmp_path / "missing"))):
        pass
    assert "the model failed to load" in log.read_text()


def test_a_forged_log_line_is_escaped(server):
    http_request = (b"GET /x%0aPOST%20/api%20200%200ms%1b[31m HTTP/1.1\r\nHost: localhost\r\n"
                    b'X-Request-Id: forged-1" status=200 x="\r\nConnection: close\r\n\r\n')
    with socket.create_connection((HOST, server.port), timeout=REQUEST_TIMEOUT_S) as sock:
        sock.sendall(http_request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 404")
    logged_id = 'request_id="forged-1\\" status=200 x=\\""'

    def log_with_the_line() -> str | None:
        text = server.log.read_text()
        return text if logged_id in text else None

    log = poll(log_with_the_line, LOG_TIMEOUT_S, "the forged request in the access log")
    line = next(line for line in log.splitlines() if logged_id in line)
    assert 'path="/x\\x0aPOST /api 200 0ms\\x1b[31m"' in line
    assert not any(line.startswith("POST /api") for line in log.splitlines())
    assert "\x1b" not in log
