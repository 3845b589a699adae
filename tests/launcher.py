"""Start the service as Heroku does: the Procfile's web command (gunicorn with the
project's gunicorn.conf.py) on a free port; and a Redis beside it. The tests and
the benchmarks (bench/common.py) both start them with this one launcher."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import redis

from nerserve.tagger import files

ROOT = files.REPOSITORY
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def poll(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.01) -> T:
    """condition()'s first truthy value, asked every `interval` seconds; a
    TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return value


def procfile_command(process_type: str = "web") -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return shlex.split(command)
    raise LookupError(f"no {process_type!r} process in the Procfile")


def is_ready(url: str, process: subprocess.Popen | None = None) -> bool:
    """Whether GET /readyz answers 200; raises if the server process has exited."""
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"the server exited with {process.returncode}")
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return False  # 503 while the model loads
    except OSError:
        return False  # not listening yet


def wait_until_ready(url: str, process: subprocess.Popen | None = None, timeout: float = READY_TIMEOUT_S) -> None:
    poll(lambda: is_ready(url, process), timeout, f"{url}/readyz answering 200")


@dataclass
class Gunicorn:
    url: str
    port: int
    process: subprocess.Popen
    log: Path  # gunicorn's stdout and stderr
    ready_s: float  # from start to the first 200 from /readyz

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()


@contextmanager
def gunicorn(log: Path, workers: int = 2, bind_loopback: bool = True, directory: Path = ROOT,
             **env: str) -> Iterator[Gunicorn]:
    """The Procfile's web process of the checkout in `directory` with PORT,
    WEB_CONCURRENCY and `env` set, ready when yielded, stopped after.
    bind_loopback=False leaves the address to gunicorn.conf.py, as on Heroku."""
    port = free_port()
    # The Procfile names `gunicorn`: the one installed beside this Python, even
    # when its environment is not activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    environment = {**os.environ, "PATH": path, "PORT": str(port), "WEB_CONCURRENCY": str(workers), **env}
    command = procfile_command() + (["--bind", f"{HOST}:{port}"] if bind_loopback else [])
    url = f"http://{HOST}:{port}"
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=directory, env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(url, process)
        yield Gunicorn(url, port, process, log, time.perf_counter() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def slug_files() -> list[str]:
    """The files Heroku would put in the slug: the repository's (untracked ones
    not ignored included) less those .slugignore names (git reads its patterns
    as Heroku does)."""
    def git_files(*options: str) -> set[str]:
        command = ["git", "ls-files", "--cached", "--others", "--exclude-standard", *options]
        return set(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())

    return sorted(git_files() - git_files("--ignored", "--exclude-from=.slugignore"))


class Redis:
    """Debian's redis-server on a loopback port, nothing saved to disk. (The
    Makefile installs it; no system service is used.) With `tls_files`
    (certificate, key), it listens with TLS only, as Heroku's does: rediss://."""

    def __init__(self, port: int, tls_files: tuple[Path, Path] | None = None):
        self.port, self.process = port, None
        self.command = ["redis-server", "--bind", HOST, "--save", "", "--appendonly", "no"]
        if tls_files is None:
            self.url = f"redis://{HOST}:{port}"
            self.command += ["--port", str(port)]
        else:
            self.url = f"rediss://{HOST}:{port}"
            certificate, key = tls_files
            self.command += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certificate),
                             "--tls-key-file", str(key), "--tls-auth-clients", "no"]

    def client(self) -> redis.Redis:
        tls = {"ssl_cert_reqs": "none"} if self.url.startswith("rediss:") else {}
        return redis.Redis.from_url(self.url, socket_timeout=1, **tls)

    def ping(self) -> bool:
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Start it, empty (as a restarted Redis without persistence is), and wait until it answers."""
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        poll(self.ping, 30, f"redis-server on port {self.port}", interval=0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@contextmanager
def redis_server(tls_files: tuple[Path, Path] | None = None) -> Iterator[Redis]:
    """A Redis on a free loopback port, started, and stopped after."""
    server = Redis(free_port(), tls_files)
    try:
        server.start()
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
