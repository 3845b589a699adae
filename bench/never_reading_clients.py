"""Clients that never read their answers (issue 32, item 10), beside normal requests.

    python bench/never_reading_clients.py [--clients 150] [--seconds 30]

`gunicorn app:app` with 2 workers on loopback. --clients connections each
send a request whose answer is about 4.5 MB (10 texts of 5,000 tokens) and
never read it; meanwhile one client posts a 15-word text every NORMAL_EVERY_S
for --seconds. Prints the normal requests' p50, p99 and slowest, and how the
never-readers were answered (what their first bytes say: 200, 503...).
Writes bench/results/never_reading_clients.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

from common import machine, ordinary_bodies, percentile, write_json
from heavy_clients import post

from tests import launcher
from tests.launcher import HOST

WORKERS = 2
LARGE_ANSWER_BODY = json.dumps({"texts": ["a," * 4984 + "b" * 32] * 10}).encode()
NORMAL_EVERY_S = 0.2
RECEIVE_BUFFER_BYTES = 16 * 1024  # a small window: the server's answer stays unsent


def never_reader(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.connect((HOST, port))
    sock.sendall(b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(LARGE_ANSWER_BODY), LARGE_ANSWER_BODY))
    return sock


def status_of(sock: socket.socket) -> str:
    """The status line's code in what the server has sent so far, read now."""
    sock.setblocking(False)
    try:
        return sock.recv(32).split(b" ")[1].decode()
    except (BlockingIOError, IndexError):
        return "nothing yet"
    except OSError as error:
        return type(error).__name__


def run(clients: int, seconds: float) -> dict:
    with launcher.gunicorn(Path("/tmp") / f"never-reading-{time.time_ns()}.log", WORKERS) as server:
        readers = [never_reader(server.port) for _ in range(clients)]
        normal, body, until = [], ordinary_bodies()[0], time.perf_counter() + seconds
        while time.perf_counter() < until:
            started = time.perf_counter()
            normal.append(post(server.port, body, 30.0))
            time.sleep(max(0.0, NORMAL_EVERY_S - (time.perf_counter() - started)))
        statuses = [status_of(sock) for sock in readers]
        for sock in readers:
            sock.close()
    answered_ms = [seconds * 1000 for status, seconds, _ in normal if status == 200]
    return {"clients": clients, "seconds": seconds,
            "normal": {"sent": len(normal), "answered": len(answered_ms),
                       "p50_ms": round(percentile(answered_ms, 50), 1), "p99_ms": round(percentile(answered_ms, 99), 1),
                       "max_ms": round(max(answered_ms), 1)},
            "never_readers_by_status": {status: statuses.count(status) for status in sorted(set(statuses))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    result = {"machine": machine(), **run(args.clients, args.seconds)}
    print(json.dumps(result, indent=2))
    write_json("never_reading_clients.json", result)


if __name__ == "__main__":
    main()
