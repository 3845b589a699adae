"""GET /metrics over real gunicorn (the Procfile's command): what the worker
refuses itself, without Flask, is counted; and the counts, and their one
multiprocess directory, outlive a reload (kill -HUP on the master)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.launcher import Gunicorn, gunicorn, is_ready, poll
from tests.service_fixtures import http, post_json, raw_request, status_and_error

BODY_LIMIT = 1000
HUPS = 3
RELOAD_TIMEOUT_S = 120
MARK_TIMEOUT_S = 10


def scrape(server: Gunicorn) -> dict[tuple, float]:
    status, _, body = http("GET", server.url + "/metrics")
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def refused(samples: dict, status: int, code: str) -> float:
    return samples.get(("ner_http_refused_total", (("code", code), ("status", str(status)))), 0)


def test_the_workers_own_refusals_are_counted(tmp_path):
    with gunicorn(tmp_path / "gunicorn.log", workers=1, NER_MAX_BODY_BYTES=str(BODY_LIMIT)) as server:
        # Refused by the worker's event loop, before any byte of the body is read (buffered_worker.refuse).
        head = b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (BODY_LIMIT + 1)
        assert status_and_error(raw_request(server.port, head, iter([]))) == (413, "body_too_large")
        endless_head = b"GET / HTTP/1.1\r\nX-Filler: " + b"a" * 70_000
        assert status_and_error(raw_request(server.port, endless_head, iter([]))) == (
            431, "request_header_fields_too_large")
        samples = scrape(server)
    assert refused(samples, 413, "body_too_large") == 1
    assert refused(samples, 431, "request_header_fields_too_large") == 1


def metrics_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("ner-metrics-*"))


def reload(server: Gunicorn) -> None:
    """kill -HUP the master; back once the new worker has replaced the old and is ready."""
    old = {worker.pid for worker in server.workers()}
    os.kill(server.process.pid, signal.SIGHUP)

    def replaced() -> bool:
        workers = {worker.pid for worker in server.workers()}
        return bool(workers) and not workers & old and is_ready(server.url, server.process)

    poll(replaced, RELOAD_TIMEOUT_S, "a new worker after SIGHUP", interval=0.2)


def api_answers(samples: dict) -> float:
    return samples.get(("ner_http_requests_total", (("route", "/api"), ("status", "200"))), 0)


def test_counts_and_their_one_directory_outlive_reloads(tmp_path):
    tmp = tmp_path / "tmp"  # gunicorn.conf.py's directory is made here (tempfile reads TMPDIR)
    tmp.mkdir()
    with gunicorn(tmp_path / "gunicorn.log", workers=1, TMPDIR=str(tmp)) as server:
        for _ in range(HUPS):
            assert post_json(server.url + "/api", "I love Paris")[0] == 200
            reload(server)
        assert api_answers(scrape(server)) == HUPS
        [directory] = metrics_dirs(tmp)
        # The dead workers were marked (child_exit, run just after the master reaps one): only
        # the gauge files of the live worker and of the master (its metrics' files open at import) remain.
        live = {f"gauge_livesum_{pid}.db" for pid in [server.process.pid, *(w.pid for w in server.workers())]}
        poll(lambda: {path.name for path in directory.glob("gauge_livesum_*")} == live, MARK_TIMEOUT_S,
             "only the live processes' gauge files")
    assert metrics_dirs(tmp) == []  # removed when the master exits
