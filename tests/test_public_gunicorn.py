"""Running it in public, end to end: gunicorn as the Procfile starts it, with 2
workers, and a real redis-server (tests/launcher.py). A quota holds across the
workers through Redis, survives Redis stopping and is shared again once it is
back; keys are checked and never logged; /metrics sums the workers exactly.

Each test talks to both workers on purpose: it keeps one connection alive to
each (psutil tells which worker holds a connection) and alternates them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.launcher import HOST, Gunicorn, Redis, gunicorn, poll, redis_server
from tests.service_fixtures import http as http_request

pytestmark = pytest.mark.slow

WORKERS = 2
QUOTA = 4  # requests a minute
KEY = "a-key-for-the-public-tests"
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()
METRICS_TOKEN = "a-token-for-the-scraper"
TEXT = "Angela Merkel visited Washington."  # 5 tokens: a PER and a LOC
CONNECTION_TRIES = 50
LOG_TIMEOUT_S = 10
RECOVERY_TIMEOUT_S = 60  # access.REDIS_RETRY_S is 5


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def quota_server(redis, tmp_path_factory) -> Iterator[Gunicorn]:
    log = tmp_path_factory.mktemp("quota") / "gunicorn.log"
    # Its clients are told apart by X-Forwarded-For, as behind Heroku's router.
    with gunicorn(log, workers=WORKERS, REDIS_URL=redis.url, NER_RATE_LIMIT=f"{QUOTA}/minute",
                  NER_TRUSTED_PROXIES="1") as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> Iterator[Gunicorn]:
    log = tmp_path_factory.mktemp("keyed") / "gunicorn.log"
    with gunicorn(log, workers=WORKERS, NER_API_KEYS=DIGEST, NER_METRICS_TOKEN=METRICS_TOKEN) as server:
        yield server


def worker_holding(server: Gunicorn, connection: http.client.HTTPConnection) -> int:
    client_port = connection.sock.getsockname()[1]
    return next(worker.pid for worker in server.workers() for c in worker.net_connections()
                if c.raddr and c.raddr.port == client_port and c.laddr.port == server.port)


def connection_to_each_worker(server: Gunicorn) -> list[http.client.HTTPConnection]:
    """A kept-alive connection held by each worker."""
    held: dict[int, http.client.HTTPConnection] = {}
    for _ in range(CONNECTION_TRIES):
        connection = http.client.HTTPConnection(HOST, server.port, timeout=30)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        worker = worker_holding(server, connection)
        if worker in held:
            connection.close()
        else:
            held[worker] = connection
        if len(held) == WORKERS:
            return list(held.values())
    raise AssertionError(f"{CONNECTION_TRIES} connections, all held by the same worker")


def post(connection: http.client.HTTPConnection, payload=TEXT, headers: dict | None = None) -> tuple[int, dict]:
    connection.request("POST", "/api", json.dumps(payload), {"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    response.read()
    return response.status, dict(response.headers)


def alternate(connections: list, requests: int, headers: dict) -> list[tuple[int, str | None]]:
    """`requests` POSTs, the connections (so the workers) taking turns: each status and quota left."""
    answers = []
    for i in range(requests):
        status, response_headers = post(connections[i % len(connections)], headers=headers)
        answers.append((status, response_headers.get("X-RateLimit-Remaining-Requests")))
    return answers


def quota_answers() -> list[tuple[int, str]]:
    """What one client of a shared quota gets for QUOTA + 2 requests."""
    return [(200, str(QUOTA - 1 - i)) for i in range(QUOTA)] + [(429, "0"), (429, "0")]


def scrape(url: str, headers: dict | None = None) -> dict[tuple, float]:
    status, _, body = http_request("GET", url + "/metrics", headers=headers)
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def log_lines(server: Gunicorn, text: str) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if text in line]


def test_a_quota_holds_across_the_workers_through_redis(quota_server):
    connections = connection_to_each_worker(quota_server)
    client = {"X-Forwarded-For": "10.0.0.1"}  # as Heroku's router appends it
    assert alternate(connections, QUOTA + 2, client) == quota_answers()
    # Another client has its own quota.
    assert alternate(connections, 1, {"X-Forwarded-For": "10.0.0.2"}) == [(200, str(QUOTA - 1))]


def test_a_first_x_forwarded_for_value_written_by_the_client_does_not_change_the_client(quota_server):
    connections = connection_to_each_worker(quota_server)
    answers = [post(connections[i % WORKERS], headers={"X-Forwarded-For": f"192.0.2.{i}, 10.0.0.3"})
               for i in range(QUOTA + 2)]
    assert [(status, headers["X-RateLimit-Remaining-Requests"]) for status, headers in answers] == quota_answers()


def test_without_redis_the_api_answers_and_once_it_is_back_the_quota_is_shared_again(quota_server, redis):
    connections = connection_to_each_worker(quota_server)
    redis.stop()
    # Each worker counts on its own: every request is answered, each worker's count starts afresh.
    answers = alternate(connections, 2 * WORKERS, {"X-Forwarded-For": "10.0.0.4"})
    assert answers == [(200, str(QUOTA - 1))] * WORKERS + [(200, str(QUOTA - 2))] * WORKERS
    metrics = scrape(quota_server.url)
    assert metrics[("ner_quota_local_workers", ())] == WORKERS
    assert metrics[("ner_quota_redis_failures_total", ())] == WORKERS
    poll(lambda: len(log_lines(quota_server, "quotas: Redis failed")) == WORKERS, LOG_TIMEOUT_S, "a warning a worker")

    redis.start()  # empty, as a restarted Redis without persistence is
    # Each worker asks Redis again every few seconds, at a request; another client's requests prompt them.
    def back_to_redis() -> bool:
        alternate(connections, WORKERS, {"X-Forwarded-For": "10.0.0.5"})
        return scrape(quota_server.url)[("ner_quota_local_workers", ())] == 0

    poll(back_to_redis, RECOVERY_TIMEOUT_S, "every worker counting in Redis again", interval=0.5)
    assert alternate(connections, QUOTA + 2, {"X-Forwarded-For": "10.0.0.6"}) == quota_answers()
    assert len(log_lines(quota_server, "quotas: Redis failed")) == WORKERS  # one warning a worker, not a request
    poll(lambda: len(log_lines(quota_server, "quotas: Redis answers again")) == WORKERS, LOG_TIMEOUT_S,
         "a line a worker")


def test_keys_in_either_header_are_checked_and_never_logged(keyed_server):
    connections = connection_to_each_worker(keyed_server)
    for connection in connections:
        status, headers = post(connection)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer realm=ner"
        for wrong in ({"Authorization": "Bearer not-the-key"}, {"X-API-Key": "not-the-key"}):
            status, headers = post(connection, headers=wrong)
            assert status == 401 and "invalid_token" in headers["WWW-Authenticate"]
        assert post(connection, headers={"Authorization": f"Bearer {KEY}"})[0] == 200
        assert post(connection, headers={"X-API-Key": KEY})[0] == 200
    expected = 2 * WORKERS
    poll(lambda: len(log_lines(keyed_server, f"key_id={DIGEST[:8]}")) == expected, LOG_TIMEOUT_S,
         f"{expected} access-log lines with the key's id")
    assert KEY not in keyed_server.log.read_text() and DIGEST not in keyed_server.log.read_text()


def test_metrics_are_summed_over_the_workers_exactly(keyed_server):
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert http_request("GET", keyed_server.url + "/metrics")[0] == 401
    connections = connection_to_each_worker(keyed_server)
    workers = {worker_holding(keyed_server, connection) for connection in connections}
    assert len(workers) == WORKERS
    before = scrape(keyed_server.url, token)
    for connection in connections:
        for _ in range(3):
            assert post(connection, {"texts": [TEXT, TEXT]}, {"X-API-Key": KEY})[0] == 200
        assert post(connection)[0] == 401
        assert post(connection, {"texts": ["a"] * 51}, {"X-API-Key": KEY})[0] == 413
    # A worker counts a request once it has sent the answer, a moment after the client has read it:
    # the scrape waits until only itself is in flight.
    after = poll(lambda: (metrics := scrape(keyed_server.url, token))[("ner_http_requests_in_flight", ())] == 1
                 and metrics, LOG_TIMEOUT_S, "every request counted")

    def increase(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert increase("ner_http_requests_total", route="/api", status="200") == 3 * WORKERS
    assert increase("ner_http_requests_total", route="/api", status="401") == WORKERS
    assert increase("ner_http_requests_total", route="/api", status="413") == WORKERS
    assert increase("ner_http_refused_total", status="401", code="unauthorized") == WORKERS
    assert increase("ner_http_refused_total", status="413", code="too_many_texts") == WORKERS
    assert increase("ner_http_request_duration_seconds_count", route="/api") == 5 * WORKERS
    assert increase("ner_texts_tagged_total") == 6 * WORKERS
    assert increase("ner_tokens_tagged_total") == 30 * WORKERS
    assert increase("ner_entities_tagged_total", type="PER") == 6 * WORKERS
    assert increase("ner_entities_tagged_total", type="LOC") == 6 * WORKERS
    assert increase("ner_http_requests_total", route="/metrics", status="200") >= 1  # the scrapes before
    model = [labels for name, labels in after if name == "ner_model_info"]
    assert len(model) == 1 and dict(model[0])["backend"] == "onnx"
    assert all(psutil.pid_exists(pid) for pid in workers)  # the same workers throughout
