"""Reliability of the real service: gunicorn started as the Procfile does, on
loopback. Many clients at once, a worker killed under load, tens of thousands
of requests against memory growth, and bodies over the size limit.

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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from model.training.data import DEFAULT_DATA_DIR, read_conll
from tests.launcher import gunicorn, poll

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
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


def post(port: int, payload) -> tuple[int, dict]:
    """One POST /api on a fresh connection (gunicorn's sync workers close each one)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
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
        # A sync worker holds one request at a time: only that one may fail.
        assert len(outcomes.failed) <= FAULT_KILLS, outcomes.failed
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


def raw_request(port: int, head: bytes, body_parts: Iterator[bytes]) -> bytes:
    """Send a request head and as much of the body as the server takes; the answer's bytes.
    The socket stays open for writing: the server must answer without the rest."""
    with socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT_S) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # a hang fails here after REQUEST_TIMEOUT_S
            if not chunk:
                break
            answer += chunk
        return answer


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


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
