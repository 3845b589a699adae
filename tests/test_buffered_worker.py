"""The buffered worker's own parts, without a server: where a chunked body ends,
how a request is named in the log, the JSON errors it answers itself, how an
answer is sent or kept, how the workers' connections are counted. The worker
itself is tested against real gunicorn (tests/test_hardening_gunicorn.py)."""

from __future__ import annotations

import json
import selectors
import socket
import threading

import pytest
from gunicorn.config import Config
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import ParseException
from gunicorn.http.parser import RequestParser

from nerserve.server import buffered_worker
from nerserve.server.buffered_worker import (
    COMPLETE,
    MAX_REQUEST_ID_CHARS,
    MORE,
    SMALL_WORK_TOKENS,
    TOO_LARGE,
    BufferedThreadWorker,
    ConnectionCounts,
    Framing,
    Incoming,
    ThreadSocket,
    WorkAdmission,
    body_framing,
    describe,
    json_error,
    request_work,
)

HEAD = b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


def progress(*pieces: bytes, limit: int = 1000) -> list[str]:
    """scan_chunks after each piece arrives, as the event loop calls it."""
    incoming = Incoming(bytearray(HEAD), deadline=0, allowed_s=0, head_length=len(HEAD), chunked_at=len(HEAD))
    seen = []
    for piece in pieces:
        incoming.data += piece
        seen.append(BufferedThreadWorker.scan_chunks(incoming, limit))
    return seen


def test_a_chunked_body_is_complete_at_its_last_chunk_and_blank_line():
    assert progress(b"5\r\nPar", b"is\r\n", b"0\r\n", b"\r\n") == [MORE, MORE, MORE, COMPLETE]
    assert progress(b"5;ext=1\r\nParis\r\n0\r\n\r\n") == [COMPLETE]


def test_trailer_fields_come_before_the_blank_line():
    assert progress(b"5\r\nParis\r\n0\r\nX-Checksum: 1\r\n", b"\r\n") == [MORE, COMPLETE]


def test_a_chunked_body_over_the_limit_is_too_large_from_its_size_line():
    assert progress(b"3e8\r\n", limit=1000) == [MORE]  # 1000 bytes: at the limit
    assert progress(b"3e9\r\n", limit=1000) == [TOO_LARGE]
    assert progress(b"1f4\r\n" + b"a" * 500 + b"\r\n", b"1f5\r\n", limit=1000) == [MORE, TOO_LARGE]


def test_a_malformed_size_line_is_left_to_gunicorn_s_parser():
    assert progress(b"zz\r\nParis\r\n") == [COMPLETE]


def test_a_request_is_named_in_the_log_escaped_and_cut():
    request = b"GET /x\n\x1b[31m HTTP/1.1\r\nX-Request-Id: " + b"r" * 500 + b"\r\n\r\n"
    line = describe(request)
    assert "\n" not in line and "\x1b" not in line
    assert line == f'request="GET /x\\n\\u001b[31m HTTP/1.1" request_id="{"r" * MAX_REQUEST_ID_CHARS}"'
    assert describe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 'request="GET / HTTP/1.1" request_id="-"'


@pytest.mark.parametrize("allow_any_origin", [True, False])
def test_the_worker_s_own_errors_are_json(allow_any_origin):
    answer = json_error(408, "Request Timeout", "request_timeout", "the request head was not complete in time",
                        allow_any_origin)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in head
    assert json.loads(body) == {"error": {"code": "request_timeout",
                                          "message": "the request head was not complete in time"}}
    assert b"Content-Length: %d" % len(body) in head
    assert (b"Access-Control-Allow-Origin: *" in head) == allow_any_origin


class Worker:
    """What a ThreadSocket asks of its worker, with a budget of `keepable` bytes."""

    def __init__(self, keepable: int):
        self.keepable, self.kept, self.warnings = keepable, 0, []
        self.log = self

    def keep(self, size: int) -> bool:
        if self.kept + size > self.keepable:
            return False
        self.kept += size
        return True

    def release(self, size: int) -> None:
        self.kept -= size

    def warning(self, message: str, *args) -> None:
        self.warnings.append(message % args)


def read_all(sock: socket.socket, into: list) -> None:
    while chunk := sock.recv(65536):
        into.append(chunk)


ANSWER = bytes(range(256)) * 40_000  # 10 MB: more than two socket buffers hold


def test_an_answer_the_socket_cannot_take_is_kept_for_the_event_loop_within_the_budget():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        worker = Worker(keepable=len(ANSWER))
        thread_socket = ThreadSocket(ours, worker, "the request")
        thread_socket.sendall(ANSWER[:100])
        thread_socket.sendall(ANSWER[100:])  # returns at once: nobody reads
        assert thread_socket.sent + sum(map(len, thread_socket.kept)) == len(ANSWER)
        assert thread_socket.kept and worker.kept == sum(map(len, thread_socket.kept))


def test_past_the_budget_the_thread_waits_for_its_client_and_sends_in_order():
    ours, theirs = socket.socketpair()
    received: list[bytes] = []
    with ours, theirs:
        reader = threading.Thread(target=read_all, args=(theirs, received))
        reader.start()
        worker = Worker(keepable=0)
        thread_socket = ThreadSocket(ours, worker, "the request")
        for start in range(0, len(ANSWER), 1_000_000):
            thread_socket.sendall(ANSWER[start:start + 1_000_000])
        ours.shutdown(socket.SHUT_WR)
        reader.join()
    assert b"".join(received) == ANSWER and worker.kept == 0 and worker.warnings == []


def test_a_client_that_does_not_read_past_the_budget_gets_a_cut_answer_logged_as_cut(monkeypatch):
    monkeypatch.setattr(buffered_worker, "GRACE_S", 0.5)  # the write deadline: 0.5 s and a 10 MB/s rate
    monkeypatch.setattr(buffered_worker, "MIN_CLIENT_RATE", 10_000_000)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        worker = Worker(keepable=0)
        thread_socket = ThreadSocket(ours, worker, 'request="POST /api HTTP/1.1"')
        with pytest.raises(BrokenPipeError):  # gthread closes the connection quietly
            thread_socket.sendall(ANSWER)
    assert len(worker.warnings) == 1 and worker.warnings[0].startswith('answer cut: request="POST /api HTTP/1.1" sent ')


FRAMING_HEADS = [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Framing(0, False)),
    (b"POST /api HTTP/1.1\r\nContent-Length: 5\r\n\r\n", Framing(5, False)),
    (b"POST /api HTTP/1.1\r\ncontent-length:\t 5 \r\n\r\n", Framing(5, False)),
    (b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", Framing(None, False)),
    (b"POST /api HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Framing(None, False)),
    (b"POST /api HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n", Framing(5, True)),
    (b"POST /api HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", Framing(5, False)),
    (b"POST /api HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", None),
    (b"POST /api HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", None),
    (b"POST /api HTTP/1.1\r\nContent-Length: +5\r\n\r\n", None),
    (b"POST /api HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", None),
    (b"POST /api HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", None),
    (b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", None),
    (b"POST /api HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", None),
]


@pytest.mark.parametrize(("head", "expected"), FRAMING_HEADS)
def test_the_body_s_framing_is_read_from_the_head_as_gunicorn_reads_it(head, expected):
    assert body_framing(head) == expected
    try:  # gunicorn's own parser, which the thread runs on the same bytes
        request = next(RequestParser(Config(), [head], ("127.0.0.1", 1)))
    except ParseException:
        assert expected is None
        return
    reader = request.body.reader
    assert expected == Framing(reader.length if isinstance(reader, LengthReader) else None,
                               request._expected_100_continue)


def test_each_worker_sees_the_fewest_connections_another_worker_holds():
    counts = ConnectionCounts(slots=3)
    first, second, third = counts.claim(), counts.claim(), counts.claim()
    assert counts.claim() is None  # every slot taken: that worker is not balanced
    assert counts.fewest_elsewhere(None) is None
    counts.write(first, 5)
    counts.write(second, 2)
    counts.write(third, 7)
    assert counts.fewest_elsewhere(first) == 2
    assert counts.fewest_elsewhere(second) == 5
    counts.release(second)  # the worker exited
    assert counts.fewest_elsewhere(first) == 7
    counts.release(third)
    assert counts.fewest_elsewhere(first) is None  # alone
    assert counts.claim() == second


def balancing_worker(listener: socket.socket, holds: int, other_holds: int) -> BufferedThreadWorker:
    """A worker's accepting part, with `holds` connections, beside one other worker."""
    worker = BufferedThreadWorker.__new__(BufferedThreadWorker)
    worker.sockets, worker.poller, worker.accept_resumes_at = [listener], selectors.DefaultSelector(), None
    worker.connection_counts = ConnectionCounts(slots=2)
    worker.counts_slot, other = worker.connection_counts.claim(), worker.connection_counts.claim()
    worker.connection_counts.write(other, other_holds)
    worker.nr_conns = holds
    worker.poller.register(listener, selectors.EVENT_READ, worker.accept)
    return worker


def test_a_worker_that_holds_too_many_takes_connections_again_once_it_no_longer_does():
    # Clients that connect for each request (curl, scripts, Heroku's legacy
    # router) left a worker deaf for all of ACCEPT_WAIT_S after its own
    # connections had closed: the other worker took every client, then set
    # its listeners aside in turn (8 such clients: p50 38.9 ms, 12.1 since).
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()[:2], timeout=5):
        listener.setblocking(False)
        worker = balancing_worker(listener, holds=3, other_holds=0)
        worker.wait_for_and_dispatch_events(timeout=5)  # the client's connection wakes accept()
        assert worker.accept_resumes_at is not None  # 3 against 0: left to the other worker
        worker.wait_for_and_dispatch_events(timeout=0)
        assert worker.accept_resumes_at is not None  # still 3: still set aside
        worker.nr_conns = 1  # two of its requests were answered and their connections closed
        worker.wait_for_and_dispatch_events(timeout=0)
        assert worker.accept_resumes_at is None
        assert worker.poller.get_key(listener).data == worker.accept  # accepting again, before ACCEPT_WAIT_S


def test_a_request_s_work_is_bounded_by_its_body_and_by_the_token_limit():
    assert request_work(0, 100_000) == 1
    assert request_work(1000, 100_000) == 501  # "a a a ...": a token every two bytes
    assert request_work(1024 * 1024, 100_000) == 100_000


def test_heavy_work_is_admitted_while_it_fits_and_small_work_always():
    admission = WorkAdmission(limit=300)
    heavy = SMALL_WORK_TOKENS + 1
    assert admission.fits(heavy)  # an idle worker takes any one request, however heavy
    admission.take(heavy)
    assert not admission.fits(heavy) and admission.fits(SMALL_WORK_TOKENS)
    admission.take(SMALL_WORK_TOKENS)
    admission.release(heavy)
    assert admission.held == SMALL_WORK_TOKENS and not admission.fits(heavy)
    admission.release(SMALL_WORK_TOKENS)
    assert admission.fits(heavy)
    assert admission.retry_after_s() >= 1


def test_while_answers_wait_on_their_clients_only_small_work_is_admitted():
    admission = WorkAdmission()
    assert not admission.fits(SMALL_WORK_TOKENS + 1, answers_backlogged=True)
    assert admission.fits(SMALL_WORK_TOKENS, answers_backlogged=True)


def test_a_retry_after_header_goes_with_a_refusal_that_has_one():
    answer = json_error(503, "Service Unavailable", "busy", "retry", allow_any_origin=True, retry_after_s=7)
    head = answer.split(b"\r\n\r\n")[0]
    assert b"\r\nRetry-After: 7\r\n" in head and b"\r\nAccess-Control-Expose-Headers: Retry-After\r\n" in head


def test_a_thread_socket_tells_whether_its_client_left():
    ours, theirs = socket.socketpair()
    with ours:
        ours.settimeout(1.0)
        thread_socket = ThreadSocket(ours, Worker(keepable=0), "the request")
        assert not thread_socket.client_left()
        theirs.sendall(b"GET /next HTTP/1.1\r\n")  # a pipelined request: still there
        assert not thread_socket.client_left()
        theirs.close()
        assert thread_socket.client_left() is False  # its bytes come first: read, then the end
        ours.recv(100)
        assert thread_socket.client_left()
        assert ours.gettimeout() == 1.0
