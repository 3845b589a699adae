"""The buffered worker's own parts, without a server: where a chunked body ends,
how a request is named in the log, the JSON errors it answers itself. The
worker itself is tested against real gunicorn (tests/test_hardening_gunicorn.py)."""

from __future__ import annotations

import json

import pytest

from buffered_worker import (
    COMPLETE,
    MAX_REQUEST_ID_CHARS,
    MORE,
    TOO_LARGE,
    BufferedThreadWorker,
    Incoming,
    describe,
    json_error,
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
