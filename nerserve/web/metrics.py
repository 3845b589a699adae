"""Prometheus metrics at GET /metrics (NER_METRICS), summed over gunicorn's workers.

Under gunicorn, prometheus_client runs in its multiprocess mode:
nerserve/server/gunicorn_config.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
anything imports prometheus_client, each worker writes its values to files
there, and a scrape, whichever worker answers it, sums them. Elsewhere (the
Flask test client, `python app.py`) the values are the process's own.

Labels are routes and statuses, never clients or texts: the metrics say how
the service is used, not by whom, and their number stays bounded.
"""

from __future__ import annotations

import hmac
import os
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

# prometheus_client chose its mode the same way when it was imported: set by nerserve/server/gunicorn_config.py.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

REQUESTS = Counter("ner_http_requests_total", "HTTP requests answered, by route and status", ["route", "status"])
DURATION = Histogram("ner_http_request_duration_seconds", "Time to answer a request, by route", ["route"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25))
IN_FLIGHT = Gauge("ner_http_requests_in_flight", "Requests being answered", multiprocess_mode="livesum")
# Also counted by the worker (buffered_worker.refuse) for what it refuses before Flask sees it.
REFUSED = Counter("ner_http_refused_total", "Requests refused for a key (401), a size (413) or a quota (429) "
                  "by the app, or by the worker before the app (413, 431, 503...), by status and error code",
                  ["status", "code"])
TEXTS = Counter("ner_texts_tagged_total", "Texts tagged")
TOKENS = Counter("ner_tokens_tagged_total", "Tokens tagged")
ENTITIES = Counter("ner_entities_tagged_total", "Entities found, by type", ["type"])
# prometheus_client's Info does not work in multiprocess mode: a gauge of 1 with the labels does the same.
MODEL = Gauge("ner_model_info", "The model served: its version and backend", ["version", "backend"],
              multiprocess_mode="max")
QUOTA_COUNTED_LOCALLY = Gauge("ner_quota_local_workers", "Workers counting quotas in their own memory "
                              "because Redis failed", multiprocess_mode="livesum")
QUOTA_REDIS_FAILURES = Counter("ner_quota_redis_failures_total", "Times a worker lost Redis and began "
                               "counting quotas in its own memory")

# The WSGI environ's mark of an answer that failed after its 200 was sent
# (app.json_results): counted, and logged by nerserve/server/gunicorn_config.py, as a 500.
ANSWER_FAILED = "ner.answer_failed"

REFUSALS = (401, 413, 429)


def counted(results: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The results of a request, each counted (a text, its tokens, its entities
    by type) as it is tagged: a many-text answer is sent while it is tagged."""
    for result in results:
        TEXTS.inc()
        TOKENS.inc(len(result["tokens"]))
        for entity_type, count in Tally(entity["type"] for entity in result["entities"]).items():
            ENTITIES.labels(entity_type).inc(count)
        yield result


def init_app(app: Flask, model_info: Any) -> None:
    """Count every request, and serve GET /metrics. `model_info()` is the
    model's info once it is loaded, else None."""
    if app.config["NER_METRICS"] != "on":
        return
    token = app.config["NER_METRICS_TOKEN"]

    @app.before_request
    def start() -> None:
        g.ner_started = time.perf_counter()
        IN_FLIGHT.inc()

    @app.after_request
    def count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"  # not the path: 404s are unbounded
        status, started, environ = response.status_code, g.ner_started, request.environ
        if status in REFUSALS:
            REFUSED.labels(status, response.get_json()["error"]["code"]).inc()

        def answered() -> None:
            REQUESTS.labels(route, 500 if environ.get(ANSWER_FAILED) else status).inc()
            DURATION.labels(route).observe(time.perf_counter() - started)
            IN_FLIGHT.dec()  # last: a request no longer in flight has been counted

        # Once the answer is sent: a many-text answer is tagged while it is sent.
        response.call_on_close(answered)
        return response

    @app.get("/metrics")
    def scrape() -> Response:
        if token and not bearer_matches(request.headers.get("Authorization", ""), token):
            raise Unauthorized("GET /metrics needs Authorization: Bearer NER_METRICS_TOKEN",
                               www_authenticate=WWWAuthenticate("Bearer", {"realm": "metrics"}))
        info = model_info()
        if info is not None:
            MODEL.labels(info.get("version", "unknown"), info["backend"]).set(1)
        # content_type, not mimetype: CONTENT_TYPE_LATEST names its charset, which mimetype would add again.
        return Response(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an Authorization header is `Bearer <token>`. The scheme is
    case-insensitive (RFC 7235: "bearer" is Bearer); the token is compared in
    constant time."""
    scheme, _, credentials = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.lstrip(" ").encode(), token.encode())


def registry() -> CollectorRegistry:
    """Every worker's values, summed; or this process's."""
    if not MULTIPROCESS:
        return REGISTRY
    summed = CollectorRegistry()  # a fresh one a scrape, as prometheus_client's multiprocess docs say
    multiprocess.MultiProcessCollector(summed)
    return summed
