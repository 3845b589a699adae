"""gunicorn's threaded worker, with requests read whole and answers written whole on its event loop.

gunicorn's gthread worker hands a connection to a thread as soon as it has a
byte, and the thread then waits on the client: a client that sends its request
slowly, or reads its answer slowly, holds a thread (issue 22). This worker keeps
the threads for the app only:

- The event loop reads each request, head and body, into memory. A head must
  arrive within HEAD_DEADLINE_S of the connection (or of the request's first
  byte on a kept-alive connection), a body within a deadline sized to its
  length. A connection that misses one is answered 408 and closed, with one
  log line and a count.
- The thread sends what the socket takes at once; the rest of its answer is
  kept in memory for the event loop to write, within a deadline sized to the
  answer. An answer that cannot be written whole is logged as cut, without a
  traceback. Past MAX_KEPT_BYTES kept in a worker, a thread waits on its
  client (within the same deadline): memory stays bounded.
- Each worker holds at most MAX_BUFFERED_BYTES of unfinished requests (503
  beyond) and worker_connections connections.
- Admission: each worker takes on at most ADMITTED_WORK_TOKENS of tagging at
  once, each request's work bounded from its body's length before the app
  reads it (WorkAdmission). A heavier request that would pass it is answered
  503 with Retry-After, at once, so that what a worker accepts it answers
  well within Heroku's 30 s router timeout, and a burst of heavy bodies never
  holds more than a few tokenized at once. A small request is always taken:
  the app tags it first (nerserve/web/scheduler.py). So is every request while the worker
  keeps MAX_KEPT_BYTES of unsent answers, but a heavy one (503).
- A head with a bare LF line ending is answered 400 at once (gunicorn's
  parser would wait for a CRLF blank line that never comes).
- On SIGTERM the worker takes the connections the kernel has queued, then
  closes the listening socket, so that new connections are refused at once;
  requests in flight are answered within graceful_timeout, and any request left
  unanswered then is logged.
- gunicorn's own errors (400, 414, 431, 501...) are JSON, as the app's are.
- New connections are shared between the workers: the kernel wakes every
  worker for one, and a worker that holds more connections than another lets
  that one accept it (ConnectionCounts). Kept-alive clients stay on the
  worker that accepted them: left to race, one worker often took a whole
  burst of them while the others idled.

The request is still parsed by gunicorn, in the thread, from the bytes read
here: where a request ends is gunicorn's decision, as before.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import multiprocessing
import re
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus

from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import ThreadWorker

from nerserve.errors import error_body
from nerserve.tagger.memory import give_back_memory

# A client sends its request line and headers within this many seconds.
HEAD_DEADLINE_S = 10.0
# A body, and an answer, have GRACE_S plus their length at MIN_CLIENT_RATE:
# a 1 MiB body 20.5 s, a 12 MB answer 130 s.
GRACE_S = 10.0
MIN_CLIENT_RATE = 100_000  # bytes a second
# A head larger than this is answered 431 without waiting for its end.
MAX_HEAD_BYTES = 64 * 1024
# Every request is in memory when the thread parses it; a read the parser still
# makes (it never should) waits this long at most.
STRAY_READ_TIMEOUT_S = 1.0
RECV_BYTES = 256 * 1024
# The bytes of answers a worker keeps for clients that read slowly; past them,
# the app's thread waits on its client (ThreadSocket.send_waiting).
MAX_KEPT_BYTES = 32 * 2**20
# An answer kept this large is freed after the app's thread has handed memory
# back (app.py): its pages are handed back when it is done with.
GIVE_BACK_AFTER_ANSWER_BYTES = 2**20
# The bytes of unfinished requests a worker holds; a request that would take
# more is answered 503. 32 MiB: 32 bodies of 1 MiB, or 500 heads of 64 KiB.
MAX_BUFFERED_BYTES = 32 * 2**20
# gunicorn's error messages quote the request; an error answer quotes this much of it.
MAX_ERROR_MESSAGE_CHARS = 300
# The longest X-Request-Id the logs keep (Heroku's router accepts 20 to 200 characters).
MAX_REQUEST_ID_CHARS = 200
# How long a closed connection is read from, for the client to read the end of
# its answer (as gunicorn's util.close_graceful, but on the event loop).
LINGER_S = 2.0
# Seconds before the master's graceful_timeout that a stopping worker gives up (run).
SHUTDOWN_LOG_MARGIN_S = 2
# A worker that holds more connections than another leaves a new connection to
# it for this long, then accepts it itself: a woken worker can wait some
# milliseconds for a core, or for its interpreter lock.
ACCEPT_WAIT_S = 0.02
# The workers whose connections are counted (more are not balanced).
COUNTED_WORKERS = 64
# Admission (WorkAdmission). The tokens of tagging a worker takes on at once:
# two of the largest requests (NER_MAX_TOKENS, 100,000). One takes 6.5 s at
# the slowest rate measured on a core of its own, and up to 9 s with 64 clients
# on the same 2-core machine (bench/heavy_clients.py): under 20 s for the last
# one admitted, within Heroku's 30 s. Three let the slowest answer take 27 s.
ADMITTED_WORK_TOKENS = 200_000
# A request whose work is bounded by this many tokens is always admitted.
SMALL_WORK_TOKENS = 2048
# A token takes two bytes of body at least: a character and a separator.
BODY_BYTES_PER_TOKEN = 2
# The slowest tagging rate measured on one core, for Retry-After.
SLOWEST_TOKENS_PER_S = 15_000
# How far a chunked body is (scan_chunks).
MORE, COMPLETE, TOO_LARGE = "more", "complete", "too large"


def json_error(status: int, reason: str, code: str, message: str, allow_any_origin: bool,
               retry_after_s: int | None = None) -> bytes:
    """A complete HTTP/1.1 answer {"error": {"code", "message"}} that closes the connection."""
    body = json.dumps(error_body(code, message)).encode()
    cors = "Access-Control-Allow-Origin: *\r\n" if allow_any_origin else ""
    retry = f"Retry-After: {retry_after_s}\r\n" if retry_after_s is not None else ""
    if retry and allow_any_origin:  # a page on another origin may read it
        cors += "Access-Control-Expose-Headers: Retry-After\r\n"
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n{cors}"
            f"{retry}Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


@dataclass
class Incoming:
    """A request being received: its bytes so far and how its end is found."""

    data: bytearray
    deadline: float
    allowed_s: float  # the seconds from the start of the head, or of the body, to the deadline
    head_length: int | None = None  # once the head is in: its length, with the blank line
    body_length: int | None = None  # a Content-Length body's length
    chunked_at: int | None = None  # a chunked body: where the next chunk-size line starts
    chunked_bytes: int = 0  # a chunked body: the bytes of its chunks so far
    continue_sent: bool = False  # HTTP/1.1 100 Continue
    watched: bool = False  # registered with the poller


@dataclass
class Outgoing:
    """The rest of an answer, being written by the event loop."""

    pieces: deque[memoryview]
    length: int  # the whole answer's
    deadline: float
    started: float
    done: Callable[[], None]
    sent: int  # the app's thread sent some itself


@dataclass
class InApp:
    """A request the app is answering: for the shutdown log, and its admitted work."""

    line: str
    work: int
    started: float = field(default_factory=time.monotonic)


_FRAMING_FIELD = re.compile(rb"\r\n(content-length|transfer-encoding|expect):[ \t]*([^\r\n]*?)[ \t]*(?=\r\n)",
                            re.IGNORECASE)


@dataclass(frozen=True)
class Framing:
    content_length: int | None  # None: chunked
    expects_continue: bool  # Expect: 100-continue


def body_framing(head: bytes) -> Framing | None:
    """How the body of a request with this head ends, read as gunicorn's parser
    reads it (gunicorn.http.message.Request.set_body_reader): a Content-Length,
    or chunked. None for a head that gunicorn refuses. A regular expression,
    not gunicorn's parser: the event loop reads every request's head, and
    gunicorn's parser takes ~0.15 ms of it."""
    fields: dict[bytes, list[bytes]] = {}
    for name, value in _FRAMING_FIELD.findall(head):
        fields.setdefault(name.lower(), []).append(value)
    http_1_1 = head[: head.find(b"\r\n")].endswith(b" HTTP/1.1")
    expects_continue = http_1_1 and [value.lower() for value in fields.get(b"expect", [])] == [b"100-continue"]
    lengths, codings = fields.get(b"content-length", []), fields.get(b"transfer-encoding", [])
    if codings:
        chunked = codings[0].split(b",")[-1].strip(b" \t").lower() == b"chunked"
        return Framing(None, expects_continue) if chunked and http_1_1 and len(codings) == 1 and not lengths else None
    if not lengths:
        return Framing(0, False)
    if len(lengths) > 1 or not lengths[0].isdigit():
        return None
    return Framing(int(lengths[0]), expects_continue)


# A line feed that no carriage return precedes, in a head not yet complete.
_BARE_LF = re.compile(rb"(?<!\r)\n")
_REQUEST_ID = re.compile(rb"\r\nx-request-id:[ \t]*([^\r\n]*)", re.IGNORECASE)


def describe(request: bytes) -> str:
    """A request for the log: its first line and X-Request-Id, quoted and
    escaped by json.dumps (a client cannot forge a log line), and cut short."""
    head = bytes(request[: request.find(b"\r\n\r\n") + 2])
    request_id = _REQUEST_ID.search(head)
    line = head.split(b"\r\n", 1)[0][:MAX_REQUEST_ID_CHARS].decode("latin-1")
    request_id = request_id[1][:MAX_REQUEST_ID_CHARS].decode("latin-1") if request_id else "-"
    return f"request={json.dumps(line)} request_id={json.dumps(request_id)}"


class ThreadSocket:
    """The connection's socket as the app's thread sees it. The thread sends
    what the socket takes at once (most answers, whole); the rest is kept for
    the event loop to send, within the worker's budget. A blocking read waits
    STRAY_READ_TIMEOUT_S at most."""

    def __init__(self, sock, worker: BufferedThreadWorker, request: str):
        self.sock = sock
        self.worker = worker
        self.request = request  # for the log: the request and the client
        self.sent = 0  # bytes the thread sent itself
        self.kept: list[bytes] = []  # for the event loop, in order
        self.received_at = time.monotonic()  # the request, whole (app.abandonment_check)

    def client_left(self) -> bool:
        """Whether the client has closed or reset the connection while its
        request waits: the end of what it sent is there to read. (A client
        that half-closes after its request, which HTTP clients do not, reads as gone.)"""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.0)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(timeout)

    def sendall(self, data) -> None:
        if not self.kept:
            data = memoryview(data)[self.send_now(data):]
            if not data:
                return
        if self.worker.keep(len(data)):
            self.kept.append(bytes(data))
        else:
            self.send_waiting(data)

    def send_now(self, data) -> int:
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.0)
        try:
            sent = self.sock.send(data)
        except OSError:  # full, or the client is gone: the event loop finds out which
            sent = 0
        finally:
            self.sock.settimeout(timeout)
        self.sent += sent
        return sent

    def send_waiting(self, data) -> None:
        """The worker holds MAX_KEPT_BYTES of answers waiting on their clients
        already: this thread waits on its client, within a deadline sized to
        what it sends. A cut answer is logged, and ends the request quietly."""
        pieces, kept = [*self.kept, bytes(data)], sum(len(piece) for piece in self.kept)
        self.kept = []
        self.sock.settimeout(GRACE_S + sum(len(piece) for piece in pieces) / MIN_CLIENT_RATE)
        try:
            for piece in pieces:
                self.sock.sendall(piece)
                self.sent += len(piece)
        except OSError as error:
            self.worker.log.warning("answer cut: %s sent %d bytes or more (%s)", self.request, self.sent,
                                    describe_error(error))
            raise BrokenPipeError(errno.EPIPE, "answer cut") from None  # gthread closes it without a traceback
        finally:
            self.worker.release(kept)
            self.sock.settimeout(STRAY_READ_TIMEOUT_S)

    def send(self, data) -> int:
        self.sendall(data)
        return len(data)

    def setblocking(self, flag: bool) -> None:
        self.sock.settimeout(STRAY_READ_TIMEOUT_S if flag else 0.0)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def describe_error(error: OSError) -> str:
    return errno.errorcode.get(error.errno, type(error).__name__) if error.errno else type(error).__name__


class Recorder:
    """Stands for a socket when gunicorn writes its HTML error page, to read its status line."""

    def __init__(self):
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data


def accept_slack(fewest_elsewhere: int) -> int:
    """How many connections more than another worker a worker may hold and
    still accept: one, and a quarter more. Exact turns would make a burst of
    hundreds of connections wait for each worker to wake in turn."""
    return 1 + fewest_elsewhere // 4


class ConnectionCounts:
    """How many connections each worker holds, in memory that the master
    shares with the workers it forks. The master gives each worker a slot
    before forking it and frees it when the worker exits; the worker writes
    its count there."""

    FREE = -1

    def __init__(self, slots: int = COUNTED_WORKERS):
        self.counts = multiprocessing.RawArray(ctypes.c_long, [self.FREE] * slots)

    def claim(self) -> int | None:
        """A free slot (in the master), or None when every slot is taken."""
        for slot, count in enumerate(self.counts):
            if count == self.FREE:
                self.counts[slot] = 0
                return slot
        return None

    def release(self, slot: int | None) -> None:
        if slot is not None:
            self.counts[slot] = self.FREE

    def write(self, slot: int | None, count: int) -> None:
        if slot is not None:
            self.counts[slot] = count

    def fewest_elsewhere(self, slot: int | None) -> int | None:
        """The fewest connections another worker holds; None without others (or a slot)."""
        if slot is None:
            return None
        return min((count for other, count in enumerate(self.counts) if other != slot and count != self.FREE),
                   default=None)


def count_refusal(status: int, code: str) -> None:
    """A refusal made here, without the app, counted as the app counts its own (GET /metrics)."""
    # Imported here: nerserve/server/gunicorn_config.py imports this module before it points
    # prometheus_client's multiprocess mode at its directory.
    from nerserve.web import metrics

    metrics.REFUSED.labels(status, code).inc()


def request_work(body_bytes: int, max_tokens: int) -> int:
    """An upper bound on the tokens that a request with this body makes the app
    tag: what its bytes can hold, and never more than the app accepts."""
    return min(body_bytes // BODY_BYTES_PER_TOKEN + 1, max_tokens)


class WorkAdmission:
    """The work that a worker's app holds (requests handed to a thread and not
    finished), in tokens. A small request is always admitted; a heavier one
    while it fits in `limit` (whatever it is when the worker holds none), and
    never while the worker's answers wait on their clients (MAX_KEPT_BYTES):
    a heavy request's answer would wait too, holding a thread."""

    def __init__(self, limit: int = ADMITTED_WORK_TOKENS):
        self.limit = limit
        self.held = 0

    def fits(self, work: int, answers_backlogged: bool = False) -> bool:
        return work <= SMALL_WORK_TOKENS or not (answers_backlogged or (self.held and self.held + work > self.limit))

    def take(self, work: int) -> None:
        self.held += work

    def release(self, work: int) -> None:
        self.held -= work

    def retry_after_s(self) -> int:
        """Seconds until the work held now is done, at the slowest rate measured."""
        return max(1, math.ceil(self.held / SLOWEST_TOKENS_PER_S))


class BufferedThreadWorker(ThreadWorker):
    """gthread's worker with requests and answers buffered on the event loop (module docstring)."""

    allow_any_origin = True  # nerserve/server/gunicorn_config.py: whether NER_CORS_ORIGINS is *
    max_body_bytes = 1024 * 1024  # nerserve/server/gunicorn_config.py: NER_MAX_BODY_BYTES
    max_request_tokens = 100_000  # nerserve/server/gunicorn_config.py: NER_MAX_TOKENS
    connection_counts: ConnectionCounts | None = None  # made in the master, before the first fork

    def __init__(self, *args, **kwargs):
        """In the master, before the fork."""
        super().__init__(*args, **kwargs)
        if BufferedThreadWorker.connection_counts is None:
            BufferedThreadWorker.connection_counts = ConnectionCounts()
        self.counts_slot = self.connection_counts.claim()
        self.incoming: dict = {}  # TConn -> Incoming
        self.outgoing: dict = {}  # TConn -> Outgoing
        self.in_app: dict = {}  # TConn -> InApp
        self.admission = WorkAdmission()
        self.lingering: dict = {}  # socket -> when to close it
        self.buffered_bytes = 0  # of the requests in self.incoming
        self.kept_bytes = 0  # of answers kept for the event loop (ThreadSocket)
        self.kept_lock = threading.Lock()
        self.missed_deadlines = 0
        self.accept_resumes_at: float | None = None  # accept: the listeners are set aside until then
        if self.cfg.is_ssl:
            raise RuntimeError("buffered_worker reads requests as plain bytes: terminate TLS in front of it")

    # Reading requests

    def enqueue_req(self, conn) -> None:
        """Called by gthread with a connection that has (or will have) a request:
        read it whole here first. Bytes the last request left (pipelining) are its start."""
        if conn.parser is None:  # a new connection
            conn.close = partial(self.close_lingering, conn)
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self.incoming[conn] = Incoming(bytearray(leftover), time.monotonic() + HEAD_DEADLINE_S, HEAD_DEADLINE_S)
        self.buffered_bytes += len(leftover)
        conn.sock.setblocking(False)
        if not self.check_request(conn):
            self.read_request(conn)  # the bytes are often there already: no wait for the poller

    def read_request(self, conn, _sock=None) -> None:
        """Read what the client has sent; wait on the poller for more until the request is whole."""
        incoming = self.incoming[conn]
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data == b"":  # the client left (or closed a kept-alive connection)
            self.drop(conn)
            return
        if data is not None:
            if self.buffered_bytes + len(data) > MAX_BUFFERED_BYTES:
                self.refuse(conn, 503, "Service Unavailable", "busy",
                            "the server holds too many unfinished requests; retry shortly")
                return
            incoming.data += data
            self.buffered_bytes += len(data)
            if self.check_request(conn):
                return
        if not incoming.watched:
            incoming.watched = True
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.read_request, conn))

    def check_request(self, conn) -> bool:
        """Whether the connection is done with reading: its request whole and
        handed to a thread, or answered here (408, 413, 431); else False."""
        incoming = self.incoming[conn]
        if incoming.head_length is None:
            end = incoming.data.find(b"\r\n\r\n")
            if end < 0:
                if _BARE_LF.search(incoming.data):
                    self.refuse(conn, 400, "Bad Request", "bare_lf",
                                "the request head's lines must end with CRLF, not a bare LF")
                    return True
                if len(incoming.data) > MAX_HEAD_BYTES:
                    self.refuse(conn, 431, "Request Header Fields Too Large", "request_header_fields_too_large",
                                f"the request head is over {MAX_HEAD_BYTES} bytes")
                    return True
                return False
            if not self.read_framing(incoming, end + 4):
                return self.hand_over(conn)
        if incoming.body_length is not None:
            if incoming.body_length > self.max_body_bytes:
                self.refuse(conn, 413, "Request Entity Too Large", "body_too_large", self.too_large_message())
                return True
            # Refused from its head, a heavy body is never read, let alone tokenized.
            if not self.admits(conn, request_work(incoming.body_length, self.max_request_tokens)):
                return True
            if len(incoming.data) - incoming.head_length < incoming.body_length:
                self.send_continue(conn, incoming)
                return False
            return self.hand_over(conn)
        progress = self.scan_chunks(incoming, self.max_body_bytes)
        if progress == TOO_LARGE:
            self.refuse(conn, 413, "Request Entity Too Large", "body_too_large", self.too_large_message())
            return True
        if progress == MORE:
            self.send_continue(conn, incoming)
            return False
        return self.hand_over(conn)

    def read_framing(self, incoming: Incoming, head_length: int) -> bool:
        """Read from the head how the body ends; False for a head that gunicorn
        refuses (the thread's parser then answers it)."""
        framing = body_framing(bytes(incoming.data[:head_length]))
        if framing is None:
            return False
        incoming.head_length = head_length
        incoming.continue_sent = not framing.expects_continue
        if framing.content_length is None:
            incoming.chunked_at = head_length
        else:
            incoming.body_length = framing.content_length
        length = incoming.body_length if incoming.body_length is not None else self.max_body_bytes
        incoming.allowed_s = GRACE_S + min(length, self.max_body_bytes) / MIN_CLIENT_RATE
        incoming.deadline = time.monotonic() + incoming.allowed_s
        return True

    @staticmethod
    def scan_chunks(incoming: Incoming, max_body_bytes: int) -> str:
        """MORE, COMPLETE or TOO_LARGE: how far a chunked body is, scanned from
        the first chunk not yet seen whole. A malformed size line counts as
        complete: the thread's parser answers it."""
        data = incoming.data
        while True:
            line_end = data.find(b"\r\n", incoming.chunked_at)
            if line_end < 0:
                return COMPLETE if len(data) - incoming.chunked_at > MAX_HEAD_BYTES else MORE
            try:
                size = int(bytes(data[incoming.chunked_at:line_end]).split(b";")[0], 16)
            except ValueError:
                return COMPLETE
            if size == 0:  # the last chunk, then trailer fields and a blank line
                return COMPLETE if data.find(b"\r\n\r\n", line_end) >= 0 else MORE
            if incoming.chunked_bytes + size > max_body_bytes:
                return TOO_LARGE
            next_at = line_end + 2 + size + 2
            if len(data) < next_at:
                return MORE
            incoming.chunked_bytes += size
            incoming.chunked_at = next_at

    def send_continue(self, conn, incoming: Incoming) -> None:
        """A client that sent Expect: 100-continue waits for this before its body."""
        if not incoming.continue_sent:
            incoming.continue_sent = True
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass  # the body read fails or times out, and says so

    def hand_over(self, conn) -> bool:
        """The whole request to a thread, which parses it from memory; or 503
        if it is heavy and the worker cannot take it on now (module docstring)."""
        incoming = self.incoming[conn]
        work = request_work(len(incoming.data) - (incoming.head_length or len(incoming.data)),
                            self.max_request_tokens)
        if not self.admits(conn, work):
            return True
        self.admission.take(work)
        self.forget_incoming(conn)
        self.in_app[conn] = InApp(describe(incoming.data), work)
        conn.sock = ThreadSocket(conn.sock, self, f"{self.in_app[conn].line} to {self.client_address(conn)}")
        conn.parser = RequestParser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(incoming.data))
        conn.initialized = True  # gthread's own first read is skipped
        super().enqueue_req(conn)
        return True

    def admits(self, conn, work: int) -> bool:
        """Whether the worker can take on `work` now; else the connection is answered 503."""
        if self.admission.fits(work, answers_backlogged=self.kept_bytes >= MAX_KEPT_BYTES):
            return True
        self.refuse(conn, 503, "Service Unavailable", "busy",
                    "the server has as much work as it can answer in time; retry after the seconds "
                    "that Retry-After gives", retry_after_s=self.admission.retry_after_s())
        return False

    def too_large_message(self) -> str:
        # The app's own message for the same error (app.register_error_handlers).
        return f"the request body is over {self.max_body_bytes} bytes"

    def refuse(self, conn, status: int, reason: str, code: str, message: str,
               retry_after_s: int | None = None) -> None:
        """Answer an error here, without the app, and close."""
        self.log.warning("refused a request from %s: %s %s", self.client_address(conn), status, message)
        count_refusal(status, code)
        try:
            conn.sock.send(json_error(status, reason, code, message, self.allow_any_origin, retry_after_s))
        except OSError:
            pass
        self.drop(conn)

    # The app's thread

    def handle_request(self, req, conn):
        req._expected_100_continue = False  # the body is here already (send_continue asked for it)
        return super().handle_request(req, conn)

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's error (it logs it and picks the status), answered as JSON."""
        page = Recorder()
        super().handle_error(req, page, addr, exc)
        status = HTTPStatus(int(page.data.split(b" ", 2)[1]))  # gunicorn's 501 says "Bad Request"
        if status == HTTPStatus.INTERNAL_SERVER_ERROR:  # the app's words (app.register_error_handlers)
            code, message = "internal_error", "internal server error"
        else:
            code, message = re.sub("[^a-z]+", "_", status.phrase.lower()), str(exc)[:MAX_ERROR_MESSAGE_CHARS]
        try:
            client.sendall(json_error(status, status.phrase, code, message, self.allow_any_origin))
        except OSError:
            self.log.debug("Failed to send error message.")

    # Writing answers

    def keep(self, size: int) -> bool:
        """Whether an app's thread may leave `size` more bytes of answer to the event loop."""
        with self.kept_lock:
            if self.kept_bytes + size > MAX_KEPT_BYTES:
                return False
            self.kept_bytes += size
            return True

    def release(self, size: int) -> None:
        with self.kept_lock:
            self.kept_bytes -= size

    def finish_request(self, conn, fs) -> None:
        thread_socket = conn.sock
        if not isinstance(thread_socket, ThreadSocket):
            super().finish_request(conn, fs)
            return
        conn.sock = thread_socket.sock
        request = self.in_app.pop(conn, None)
        conn.last_request = request.line if request else "-"
        if request is not None:
            self.admission.release(request.work)
            if request.work > SMALL_WORK_TOKENS and not self.admission.held:
                # The last heavy request of a burst is done: hand back what the
                # burst left malloc holding (each request's own give-back, in
                # app.py, measures from a process already grown by the others).
                give_back_memory()
        if not thread_socket.kept:  # the thread sent it all
            super().finish_request(conn, fs)
            return
        pieces = deque(memoryview(piece) for piece in thread_socket.kept)
        length = thread_socket.sent + sum(len(piece) for piece in pieces)
        now = time.monotonic()
        self.outgoing[conn] = Outgoing(pieces, length, now + GRACE_S + length / MIN_CLIENT_RATE, now,
                                       partial(super().finish_request, conn, fs), sent=thread_socket.sent)
        conn.sock.setblocking(False)
        if not self.write_answer(conn):
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self.on_writable, conn))

    def on_writable(self, conn, _sock) -> None:
        self.write_answer(conn)

    def write_answer(self, conn) -> bool:
        """Send what the socket takes; True when the answer is done with (sent, or cut)."""
        outgoing = self.outgoing[conn]
        try:
            while outgoing.pieces:
                piece = outgoing.pieces[0]
                sent = conn.sock.send(piece)
                outgoing.sent += sent
                self.release(sent)
                if sent < len(piece):
                    outgoing.pieces[0] = piece[sent:]
                else:
                    outgoing.pieces.popleft()
        except BlockingIOError:
            return False
        except OSError as error:
            self.cut(conn, describe_error(error))
            return True
        del self.outgoing[conn]
        self.unwatch(conn)
        outgoing.done()  # gthread: keep the connection alive, or close it
        self.done_with_answer(outgoing)
        return True

    @staticmethod
    def done_with_answer(outgoing: Outgoing) -> None:
        outgoing.pieces.clear()
        if outgoing.length >= GIVE_BACK_AFTER_ANSWER_BYTES:
            give_back_memory()

    def cut(self, conn, why: str) -> None:
        outgoing = self.outgoing.pop(conn)
        self.release(outgoing.length - outgoing.sent)
        self.done_with_answer(outgoing)
        self.log.warning("answer cut: %s sent %d of %d bytes to %s in %.1f s (%s)",
                         getattr(conn, "last_request", "-"), outgoing.sent, outgoing.length,
                         self.client_address(conn), time.monotonic() - outgoing.started, why)
        self.drop(conn)

    # Deadlines, closing, shutdown

    def murder_pending(self) -> None:
        """gthread calls this about once a second: also close the connections past their deadline."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, incoming in self.incoming.items() if incoming.deadline < now]:
            self.missed_deadlines += 1
            incoming = self.incoming[conn]
            what = "request head" if incoming.head_length is None else "request body"
            self.log.warning("closed a connection from %s: %s not complete within %.1f s, %d bytes received "
                             "(%d so far in this worker)", self.client_address(conn), what,
                             incoming.allowed_s, len(incoming.data), self.missed_deadlines)
            count_refusal(408, "request_timeout")
            try:
                conn.sock.send(json_error(408, "Request Timeout", "request_timeout",
                                          f"the {what} was not complete in time", self.allow_any_origin))
            except OSError:
                pass
            self.drop(conn)
        for conn in [c for c, outgoing in self.outgoing.items() if outgoing.deadline < now]:
            self.cut(conn, "write deadline")
        for sock in [s for s, deadline in self.lingering.items() if deadline < now]:
            self.end_lingering(sock)

    def forget_incoming(self, conn) -> Incoming | None:
        incoming = self.incoming.pop(conn, None)
        if incoming is not None:
            self.buffered_bytes -= len(incoming.data)
        self.unwatch(conn)
        return incoming

    def drop(self, conn) -> None:
        """Close a connection the event loop holds, whatever it was doing."""
        self.forget_incoming(conn)
        self.outgoing.pop(conn, None)
        self.nr_conns -= 1
        conn.close()

    def close_lingering(self, conn, graceful: bool = True) -> None:
        """Every close of a connection (TConn.close): half-close it, then read
        until the client closes or LINGER_S, so that bytes it was still sending
        do not make the kernel reset the connection and lose the answer's end.
        gunicorn's own graceful close waits for that on the event loop."""
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self.on_lingering_bytes)
        except (OSError, ValueError, KeyError):  # gone already, or the worker is stopping
            sock.close()
            return
        self.lingering[sock] = time.monotonic() + LINGER_S

    def on_lingering_bytes(self, sock) -> None:
        try:
            if sock.recv(RECV_BYTES):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.end_lingering(sock)

    def end_lingering(self, sock) -> None:
        del self.lingering[sock]
        self.poller.unregister(sock)
        sock.close()

    def unwatch(self, conn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError):
            pass  # not registered

    @staticmethod
    def client_address(conn) -> str:
        return conn.client[0] if isinstance(conn.client, tuple) else str(conn.client or "unix socket")

    # Accepting connections

    def accept(self, listener) -> None:
        """Called by the poller, in every worker, when a connection is queued. A
        worker holding more connections than another (holds_too_many) sets the
        listeners aside, for that one to accept it."""
        if not self.holds_too_many():
            super().accept(listener)
            return
        for each in self.sockets:
            self.poller.unregister(each)
        self.accept_resumes_at = time.monotonic() + ACCEPT_WAIT_S

    def holds_too_many(self) -> bool:
        """More connections than another worker, beyond accept_slack."""
        fewest_elsewhere = self.connection_counts.fewest_elsewhere(self.counts_slot)
        return fewest_elsewhere is not None and self.nr_conns > fewest_elsewhere + accept_slack(fewest_elsewhere)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """With the listeners set aside, they come back after ACCEPT_WAIT_S, with
        the connection waited for, or as soon as this worker no longer holds
        too many: a worker that held the most when one client connected may
        hold the fewest a request later, and clients that connect for each
        request (curl, scripts, Heroku's legacy router) would otherwise all go
        to the other worker, which then sets its listeners aside too (p50 at 8
        such clients: 38.9 ms against 12.1 ms, bench/request_cost.py)."""
        if self.accept_resumes_at is not None:
            timeout = min(timeout, max(self.accept_resumes_at - time.monotonic(), 0.0))
        super().wait_for_and_dispatch_events(timeout)
        self.connection_counts.write(self.counts_slot, self.nr_conns)
        if self.accept_resumes_at is None:
            return
        if time.monotonic() >= self.accept_resumes_at:
            self.resume_accepting(take_one=True)
        elif not self.holds_too_many():
            self.resume_accepting(take_one=False)  # a connection still queued wakes accept() again

    def resume_accepting(self, take_one: bool) -> None:
        """The listeners back on the poller, after accepting the connection that
        was waited for if `take_one` (there is none when another worker took it)."""
        self.accept_resumes_at = None
        for listener in self.sockets:
            if take_one:
                super().accept(listener)  # one connection, or none (EAGAIN)
            self.poller.register(listener, selectors.EVENT_READ, self.accept)

    def set_accept_enabled(self, enabled: bool) -> None:
        if self.accept_resumes_at is not None:  # gthread expects the listeners on the poller
            self.resume_accepting(take_one=False)
        super().set_accept_enabled(enabled)
        if not self.alive:
            # Stopping: take the connections the kernel has queued already
            # (their requests are answered), then close the listening socket
            # (the master closes its own), so that new ones are refused at
            # once instead of waiting, then being reset.
            for listener in self.sockets:
                listener.setblocking(False)
                before = None
                while before != self.nr_conns < self.worker_connections:
                    before = self.nr_conns
                    super().accept(listener)  # gthread's: one connection, or none (EAGAIN)
                listener.close()

    def run(self) -> None:
        # The master kills a worker still running at its graceful_timeout: a
        # worker gives up a little earlier, to log what it leaves unanswered.
        self.cfg.set("graceful_timeout", max(self.cfg.graceful_timeout - SHUTDOWN_LOG_MARGIN_S, 0))
        super().run()
        # graceful_timeout is over, or every connection is done: log what was
        # not answered, its connection shut first, so that a thread still at
        # work cannot answer it after all.
        now = time.monotonic()
        for conn, request in list(self.in_app.items()):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.log.error("shutdown: no answer sent for %s, in the app for %.1f s", request.line,
                           now - request.started)
        for conn, outgoing in self.outgoing.items():
            self.log.error("shutdown: answer cut: %s sent %d of %d bytes", getattr(conn, "last_request", "-"),
                           outgoing.sent, outgoing.length)
        for conn, incoming in self.incoming.items():
            self.log.warning("shutdown: closed a connection from %s with %d bytes of an incomplete request",
                             self.client_address(conn), len(incoming.data))
