"""Fixtures of the web service tests: the real model, app and gunicorn server,
each started once a session. Loaded as a plugin (pyproject.toml's addopts)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import create_app, model_loader
from serve import ModelApi, get_model_api

ROOT = Path(__file__).resolve().parent.parent
# Small limits for the route tests, so that exceeding them costs little.
TEST_LIMITS = {"MAX_CONTENT_LENGTH": 4096, "NER_MAX_TEXT_CHARS": 1000, "NER_MAX_TEXTS": 5}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def wait_until_ready(base_url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if http("GET", base_url + "/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} was not ready within {timeout} s")


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


@dataclass
class Server:
    url: str
    log: Path  # gunicorn's stdout and stderr
    process: subprocess.Popen


def procfile_command(process_type: str = "web") -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return shlex.split(command)
    raise LookupError(f"no {process_type!r} process in the Procfile")


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """gunicorn started with the Procfile's command, as Heroku would, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "output.log"
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": "2"}
    with log.open("wb") as output:
        process = subprocess.Popen(procfile_command(), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", log, process)
    try:
        wait_until_ready(server.url, process)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
