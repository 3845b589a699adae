"""GET /metrics (nerserve/web/metrics.py) through Flask's test client: one process, its own
values. (Summed over gunicorn's workers: tests/test_public_gunicorn.py.)"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

TEXT = "Angela Merkel visited Washington."  # 5 tokens: a PER and a LOC


# Requests are counted once their answer is sent (a many-text answer is tagged as
# it is sent): buffered=True makes the test client read each answer and close it.


def scrape(client, headers=None) -> dict[tuple, float]:
    """Every sample of GET /metrics, by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers, buffered=True)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def increase(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def test_the_requests_texts_tokens_and_entities_are_counted(make_client):
    client = make_client(NER_MAX_TEXTS=3)
    before = scrape(client)
    assert client.post("/api", json={"texts": [TEXT, TEXT]}, buffered=True).status_code == 200
    assert client.post("/api", json=TEXT, buffered=True).status_code == 200
    assert client.post("/api", json={"texts": ["a"] * 4}, buffered=True).status_code == 413
    assert client.get("/missing", buffered=True).status_code == 404
    after = scrape(client)
    assert increase(before, after, "ner_http_requests_total", route="/api", status="200") == 2
    assert increase(before, after, "ner_http_requests_total", route="/api", status="413") == 1
    assert increase(before, after, "ner_http_requests_total", route="unmatched", status="404") == 1
    assert increase(before, after, "ner_http_refused_total", status="413", code="too_many_texts") == 1
    assert increase(before, after, "ner_http_request_duration_seconds_count", route="/api") == 3
    assert increase(before, after, "ner_texts_tagged_total") == 3
    assert increase(before, after, "ner_tokens_tagged_total") == 15
    assert increase(before, after, "ner_entities_tagged_total", type="PER") == 3
    assert increase(before, after, "ner_entities_tagged_total", type="LOC") == 3
    assert increase(before, after, "ner_http_requests_in_flight") == 0  # every answer sent
    version = client.get("/api/model").get_json()["version"]
    assert after[("ner_model_info", (("backend", "onnx"), ("version", version)))] == 1


def test_a_metrics_token_is_required_when_set(make_client):
    client = make_client(NER_METRICS_TOKEN="scrape-me")
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer scrape-mé"}):
        response = client.get("/metrics", headers=headers, buffered=True)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer realm=metrics"
    before = scrape(client, {"Authorization": "Bearer scrape-me"})
    after = scrape(client, {"Authorization": "Bearer scrape-me"})
    assert increase(before, after, "ner_http_refused_total", status="401", code="unauthorized") == 0
    assert increase(before, after, "ner_http_requests_total", route="/metrics", status="200") == 1


def test_metrics_off_serves_no_metrics(make_client):
    client = make_client(NER_METRICS="off")
    assert client.get("/metrics").status_code == 404
    assert client.post("/api", json=TEXT).status_code == 200


def test_the_bearer_scheme_is_case_insensitive(make_client):
    # RFC 7235: an auth-scheme is case-insensitive; a scraper may send "bearer".
    client = make_client(NER_METRICS_TOKEN="scrape-me")
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert client.get("/metrics", headers={"Authorization": f"{scheme} scrape-me"}).status_code == 200
    for presented in ("bearer scrape-mE", "Basic scrape-me", "scrape-me", "Bearer", "Bearerscrape-me"):
        assert client.get("/metrics", headers={"Authorization": presented}).status_code == 401, presented


def test_the_content_type_names_one_charset(client):
    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type == CONTENT_TYPE_LATEST and content_type.count("charset") == 1
