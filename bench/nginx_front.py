"""The design not taken for issue 22, measured: nginx in front of gunicorn in the dyno.

    python bench/nginx_front.py [--load-seconds 5] [--rounds 3] [--heavy 4]

Needs Debian's nginx (apt-get install nginx-light) and wrk. Two measurements:

- The proxy hop: this working tree's service on gunicorn's plain gthread
  worker (as it would run behind nginx) posted to directly and through nginx
  (request and response buffering, as the front would be configured; upstream
  on TCP loopback, kept alive), wrk at 1 and 8 kept-alive connections, --rounds
  rounds of --load-seconds, taking turns; medians of p50, req/s, and the CPU
  time a request of gunicorn's and nginx's processes (which other work on the
  machine disturbs less).
- Shutdown as Heroku does it, SIGTERM to every process at once, with --heavy
  requests in flight: how many get no answer, through nginx (which stops at
  once on SIGTERM) and to this working tree's server (nerserve/server/buffered_worker.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
from common import bodies_file, machine, require_wrk, write_json, wrk
from stalled_connections import baseline_and_this

from tests import launcher
from tests.launcher import HOST

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  client_header_timeout 10s;
  client_body_timeout 10s;
  send_timeout 10s;
  client_max_body_size 1m;
  client_body_buffer_size 1m;  # bodies in memory, as the worker holds them
  upstream app {{ server 127.0.0.1:{upstream} fail_timeout=0; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering on;
      proxy_buffering on;
      proxy_pass http://app;
    }}
  }}
}}
"""
HEAVY_BODY = json.dumps({"texts": ["a," * 4984 + "b" * 32] * 3}).encode()


@contextmanager
def nginx_in_front_of(upstream_port: int):
    """nginx on a free loopback port, proxying to upstream_port; (its url, its process)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = launcher.free_port()
        Path(tmp).chmod(0o755)  # nginx's workers run as another user when started as root
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream_port, port=port))
        process = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
        url = f"http://{HOST}:{port}"
        try:
            launcher.wait_until_ready(url, process, timeout=30)
            yield url, process
        finally:
            process.terminate()
            process.wait()


def cpu_seconds(pids: list[int]) -> float:
    """The CPU time these processes and their children have used."""
    processes = [psutil.Process(pid) for pid in pids]
    processes += [child for p in processes for child in p.children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def hop(args) -> dict:
    results = {}
    with (baseline_and_this() as running,
          nginx_in_front_of(running["baseline"].port) as (front, nginx), bodies_file() as bodies):
        server = running["baseline"]
        ways = {"direct": (server.url, [server.process.pid]),
                "through nginx": (front, [server.process.pid, nginx.pid])}
        for connections in (1, 8):
            rounds: dict[str, list] = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, (url, pids) in ways.items():
                    cpu_before = cpu_seconds(pids)
                    summary = wrk(url, connections, args.load_seconds, bodies)
                    rounds[name].append({"p50_ms": summary["latency_us"]["p50"] / 1000,
                                         "req_s": summary["requests"] / (summary["duration_us"] / 1e6),
                                         "cpu_ms_per_request": (cpu_seconds(pids) - cpu_before) * 1000
                                         / summary["requests"]})
            median = {name: {key: statistics.median(r[key] for r in runs)
                             for key in ("p50_ms", "req_s", "cpu_ms_per_request")} for name, runs in rounds.items()}
            median["p50_ms_added"] = median["through nginx"]["p50_ms"] - median["direct"]["p50_ms"]
            median["req_s_ratio"] = median["through nginx"]["req_s"] / median["direct"]["req_s"]
            results[str(connections)] = {"rounds": rounds, "median": median}
            print(f"  {connections} connections: {median}", flush=True)
    return results


def lost_at_sigterm(url: str, pids: list[int], heavy: int) -> dict:
    """Post `heavy` heavy requests, SIGTERM every pid once the first is answered; what each got."""
    host, port = url.removeprefix("http://").split(":")

    def send(_):
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.request("POST", "/api", HEAVY_BODY, {"Content-Type": "application/json"})
            return connection.getresponse().status
        except (OSError, http.client.HTTPException) as error:
            return type(error).__name__
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=heavy) as pool:
        futures = [pool.submit(send, i) for i in range(heavy)]
        launcher.poll(lambda: any(f.done() for f in futures), 120, "a first answer")
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        outcomes = [f.result() for f in futures]
    return {"answered": outcomes.count(200), "not_answered": heavy - outcomes.count(200), "outcomes": outcomes}


def shutdown(args) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        with (launcher.gunicorn(Path(tmp) / "a.log", 2) as server, nginx_in_front_of(server.port) as (front, nginx)):
            pids = [nginx.pid, *(c.pid for c in psutil.Process(nginx.pid).children()),
                    server.process.pid, *(w.pid for w in server.workers())]
            results["through nginx"] = lost_at_sigterm(front, pids, args.heavy)
        with launcher.gunicorn(Path(tmp) / "b.log", 2) as server:
            pids = [server.process.pid, *(w.pid for w in server.workers())]
            results["buffered worker, no front"] = lost_at_sigterm(server.url, pids, args.heavy)
            server.process.wait(timeout=60)
            results["buffered worker, no front"]["logged_unanswered"] = server.log.read_text().count(
                "shutdown: no answer sent")
    for name, row in results.items():
        print(f"  {name}: {row}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heavy", type=int, default=4)
    args = parser.parse_args()
    require_wrk()
    if shutil.which("nginx") is None:
        sys.exit("nginx is missing: apt-get install nginx-light")
    results: dict = {"machine": machine(), "args": vars(args)}
    print("the proxy hop (gthread worker, direct and through nginx):", flush=True)
    results["hop"] = hop(args)
    print(f"SIGTERM to every process with {args.heavy} heavy requests in flight:", flush=True)
    results["shutdown"] = shutdown(args)
    results["load_average_at_end"] = list(os.getloadavg())
    print(f"written to {write_json('nginx_front.json', results)}")


if __name__ == "__main__":
    main()
