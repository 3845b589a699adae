"""Fixtures of the web service tests: the real model, app and gunicorn server,
each started once a session. Loaded as a plugin (pyproject.toml's addopts)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from nerserve.api import ModelApi, get_model_api
from nerserve.web.app import create_app, model_loader
from tests.launcher import HOST, Gunicorn, gunicorn

# Small limits for the route tests, so that exceeding them costs little.
TEST_LIMITS = {"MAX_CONTENT_LENGTH": 4096, "NER_MAX_TEXT_CHARS": 1000, "NER_MAX_TEXTS": 5}


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30) -> tuple[int, dict, bytes]:
    """Status, headers and body of an HTTP request; error statuses are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url: str, payload, timeout: float = 30) -> tuple[int, dict]:
    status, _, body = http("POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, timeout)
    return status, json.loads(body)


def raw_request(port: int, head: bytes, body_parts: Iterator[bytes], timeout: float = 30) -> bytes:
    """Send a request head and as much of the body as the server takes; the answer's bytes.
    The socket stays open for writing: the server must answer without the rest."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # a hang fails here after `timeout`
            if not chunk:
                break
            answer += chunk
        return answer


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


@pytest.fixture(scope="session")
def model_api() -> ModelApi:
    """The real model, from $NER_MODEL_DIR (default results/crf) with $NER_BACKEND (default onnx)."""
    return get_model_api()


@pytest.fixture(scope="session")
def app():
    app = create_app(TEST_LIMITS)
    model_loader(app).wait(timeout=120)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_client(monkeypatch, app):
    """make_client(**config): a test client of a new app with `config`, sharing
    the session app's loaded model."""
    from nerserve.web import app as app_module

    pipeline = model_loader(app).pipeline
    monkeypatch.setattr(app_module, "process_pipeline", lambda *_: pipeline)

    def make(**config):
        new_app = create_app(config)
        model_loader(new_app).wait(60)
        return new_app.test_client()

    return make


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Gunicorn]:
    """gunicorn started with the Procfile's command on $PORT, bound as
    gunicorn.conf.py binds it on Heroku."""
    with gunicorn(tmp_path_factory.mktemp("gunicorn") / "output.log", workers=2, bind_loopback=False) as server:
        yield server
