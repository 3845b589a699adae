"""API keys and per-client quotas (nerserve/web/access.py) through Flask's test client, with
the real model; Redis's failure and TLS with a real redis-server (tests/launcher.py)."""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import threading
import time

import flask
import limits
import pytest
from prometheus_client import REGISTRY

from nerserve.web import access
from tests.launcher import free_port, poll, redis_server

KEY = "k3y-for-the-tests"
OTHER_KEY = "another-key"
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()
TEXT = "Angela Merkel visited Washington."  # 5 tokens
ROUTER = "10.1.2.3"  # what Heroku's router appends to X-Forwarded-For
BIG_TEXT = " ".join([TEXT] * 120)  # 600 tokens


def error_of(response) -> dict:
    assert response.is_json, response.data
    return response.get_json()["error"]


# Keys.


def test_without_keys_the_api_stays_open(make_client):
    assert make_client().post("/api", json=TEXT).status_code == 200


def test_a_request_without_a_key_is_refused_with_401_and_www_authenticate(make_client):
    response = make_client(NER_API_KEYS=(DIGEST,)).post("/api", json=TEXT)
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer realm=ner"
    assert "X-API-Key" in error_of(response)["message"]


@pytest.mark.parametrize(("headers", "www_authenticate"), [
    ({"Authorization": f"Bearer {OTHER_KEY}"}, "Bearer realm=ner, error=invalid_token"),
    ({"X-API-Key": OTHER_KEY}, "Bearer realm=ner, error=invalid_token"),
    ({"X-API-Key": DIGEST}, "Bearer realm=ner, error=invalid_token"),  # the digest is no key
    ({"Authorization": f"Basic {KEY}"}, "Bearer realm=ner"),  # no Bearer key: none at all
])
def test_a_wrong_key_is_refused(make_client, headers, www_authenticate):
    response = make_client(NER_API_KEYS=(DIGEST,)).post("/api", json=TEXT, headers=headers)
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == www_authenticate


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer  {KEY} "},
                                     {"X-API-Key": KEY}])
def test_the_right_key_in_either_header_is_served(make_client, headers):
    other_digest = hashlib.sha256(OTHER_KEY.encode()).hexdigest()
    client = make_client(NER_API_KEYS=(other_digest, DIGEST))
    with client:  # keeps the request context for a look after
        response = client.post("/api", json=TEXT, headers=headers)
        assert flask.request.environ["ner.key_id"] == DIGEST[:8]  # the access log's key_id
    assert response.status_code == 200 and [e["text"] for e in response.get_json()["entities"]] == [
        "Angela Merkel", "Washington"]


def test_the_page_the_docs_and_the_probes_stay_open_with_keys_on(make_client):
    client = make_client(NER_API_KEYS=(DIGEST,))
    for path in ("/", "/client", "/healthz", "/readyz", "/api/model", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_a_cors_preflight_needs_no_key_and_allows_the_key_headers(make_client):
    response = make_client(NER_API_KEYS=(DIGEST,)).options("/api", headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, x-api-key, content-type"})
    assert response.status_code == 200
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "x-api-key", "content-type"}


def test_keys_are_compared_by_digest_and_named_by_its_first_8_digits():
    assert access.matching_key_id(KEY, ("0" * 64, DIGEST)) == DIGEST[:8]
    assert access.matching_key_id(OTHER_KEY, ("0" * 64, DIGEST)) is None


# Quotas.


def test_a_request_quota_answers_n_then_429_with_retry_after(make_client):
    client = make_client(NER_RATE_LIMIT=limits.parse("3/minute"))
    remaining = []
    for _ in range(3):
        response = client.post("/api", json=TEXT)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit-Requests"] == "3"
        remaining.append(response.headers["X-RateLimit-Remaining-Requests"])
    assert remaining == ["2", "1", "0"]
    response = client.post("/api", json=TEXT)
    assert response.status_code == 429 and error_of(response)["code"] == "too_many_requests"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Remaining-Requests"] == "0"
    assert client.get("/healthz").status_code == 200  # the probes are not counted


def test_a_bad_request_is_counted_and_carries_the_quota_headers(make_client):
    client = make_client(NER_RATE_LIMIT=limits.parse("3/minute"), NER_TOKEN_RATE_LIMIT=limits.parse("100/minute"))
    response = client.post("/api", data=b"{not json")
    assert response.status_code == 400
    assert response.headers["X-RateLimit-Remaining-Requests"] == "2"
    assert response.headers["X-RateLimit-Remaining-Tokens"] == "100"


def test_a_token_quota_is_charged_the_tokens_even_of_a_refused_request(make_client):
    client = make_client(NER_TOKEN_RATE_LIMIT=limits.parse("12/minute"))
    response = client.post("/api", json={"texts": [TEXT, "Paris"]})  # 5 + 1 tokens
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit-Tokens"] == "12"
    assert response.headers["X-RateLimit-Remaining-Tokens"] == "6"
    response = client.post("/api", json={"texts": [TEXT, TEXT]})  # 10 tokens: over, and charged
    assert response.status_code == 429 and "tokens quota of 12 per 1 minute" in error_of(response)["message"]
    assert response.headers["X-RateLimit-Remaining-Tokens"] == "0" and int(response.headers["Retry-After"]) >= 1
    response = client.post("/api", json="Paris")  # nothing left until the window ends
    assert response.status_code == 429 and 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_413_is_charged_the_tokens_counted_and_a_text_a_token_per_10_characters_at_least(make_client):
    client = make_client(NER_TOKEN_RATE_LIMIT=limits.parse("500/minute"), NER_MAX_TOKENS=10)
    response = client.post("/api", json=" ".join(["word"] * 11))
    assert response.status_code == 413 and error_of(response)["code"] == "too_many_tokens"
    assert response.headers["X-RateLimit-Remaining-Tokens"] == "489"  # the 11 tokens counted
    response = client.post("/api", json="a-" * 500)  # 1,000 characters, 2 tokens
    assert response.status_code == 200 and response.headers["X-RateLimit-Remaining-Tokens"] == "389"


def test_a_request_larger_than_the_whole_token_quota_is_refused_413_not_429(make_client, monkeypatch):
    client = make_client(NER_TOKEN_RATE_LIMIT=limits.parse("12/minute"))
    response = client.post("/api", json=" ".join(["word"] * 13))
    assert response.status_code == 413
    assert error_of(response)["code"] == "over_token_quota_size"
    assert (error_of(response)["tokens"], error_of(response)["limit"]) == (13, 12)
    assert "Retry-After" not in response.headers  # it can never be served
    # Texts whose characters alone cost more than the whole quota are not even tokenized.
    client = make_client(NER_TOKEN_RATE_LIMIT=limits.parse("12/minute"))
    tokenized = count_tokenizing(monkeypatch)
    response = client.post("/api", json="a-" * 100)  # 200 characters: 20 tokens
    assert response.status_code == 413 and error_of(response)["code"] == "over_token_quota_size"
    assert tokenized == [] and response.headers["X-RateLimit-Remaining-Tokens"] == "12"


def count_tokenizing(monkeypatch) -> list[int]:
    """The texts app.py tokenizes from now on, a count a call."""
    from nerserve.web import app as app_module

    calls: list[int] = []
    read_documents = app_module.read_documents

    def counted(texts, max_tokens=None):
        calls.append(len(texts))
        return read_documents(texts, max_tokens)

    monkeypatch.setattr(app_module, "read_documents", counted)
    return calls


def test_a_client_over_its_token_quota_is_refused_before_its_texts_are_tokenized(make_client, monkeypatch):
    client = make_client(NER_TOKEN_RATE_LIMIT=limits.parse("12/minute"))
    assert client.post("/api", json={"texts": [TEXT, TEXT]}).status_code == 200
    assert client.post("/api", json={"texts": [TEXT, TEXT]}).status_code == 429  # the worker learns it is over
    tokenized = count_tokenizing(monkeypatch)
    for _ in range(3):
        response = client.post("/api", json=TEXT)
        assert response.status_code == 429 and "tokens quota" in error_of(response)["message"]
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert tokenized == []


def test_a_client_over_its_request_quota_is_refused_before_its_texts_are_tokenized(make_client):
    client = make_client(NER_RATE_LIMIT=limits.parse("1/minute"), NER_MAX_TOKENS=10)
    assert client.post("/api", json=TEXT).status_code == 200
    assert client.post("/api", json=TEXT).status_code == 429  # the worker learns it is over
    # Over the token budget: a 413 once tokenized, but the client is refused first.
    response = client.post("/api", json=" ".join(["word"] * 11))
    assert response.status_code == 429 and error_of(response)["code"] == "too_many_requests"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Remaining-Requests"] == "0"


def commands_processed(client) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in client.info("commandstats").items()}


def test_a_request_is_counted_against_both_quotas_in_one_redis_round_trip(make_client):
    with redis_server() as redis:
        client = make_client(NER_RATE_LIMIT=limits.parse("10/minute"), NER_TOKEN_RATE_LIMIT=limits.parse("100/minute"),
                             REDIS_URL=redis.url)
        assert client.post("/api", json=TEXT).status_code == 200  # loads the script into Redis
        watcher = redis.client()
        before = commands_processed(watcher)
        response = client.post("/api", json=TEXT)
        after = commands_processed(watcher)
        assert {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name)} == {
            "cmdstat_evalsha": 1,  # one call from the app...
            "cmdstat_incrby": 2,  # ...whose script counts both quotas, inside Redis
            "cmdstat_info": 1}  # the watcher's own INFO
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining-Requests"] == "8"
    assert response.headers["X-RateLimit-Remaining-Tokens"] == "90"


def test_with_keys_on_each_key_has_its_own_quota(make_client):
    other_digest = hashlib.sha256(OTHER_KEY.encode()).hexdigest()
    client = make_client(NER_API_KEYS=(DIGEST, other_digest), NER_RATE_LIMIT=limits.parse("1/minute"))
    assert client.post("/api", json=TEXT, headers={"X-API-Key": KEY}).status_code == 200
    assert client.post("/api", json=TEXT, headers={"X-API-Key": KEY}).status_code == 429
    assert client.post("/api", json=TEXT, headers={"X-API-Key": OTHER_KEY}).status_code == 200


def test_a_first_x_forwarded_for_value_written_by_the_client_does_not_change_the_client(make_client):
    client = make_client(NER_RATE_LIMIT=limits.parse("2/minute"), NER_TRUSTED_PROXIES=1)
    for spoofed in ("1.1.1.1", "2.2.2.2"):
        response = client.post("/api", json=TEXT, headers={"X-Forwarded-For": f"{spoofed}, {ROUTER}"})
        assert response.status_code == 200
    response = client.post("/api", json=TEXT, headers={"X-Forwarded-For": f"3.3.3.3, {ROUTER}"})
    assert response.status_code == 429
    assert client.post("/api", json=TEXT, headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 200


@pytest.mark.parametrize(("forwarded", "trusted", "client"), [
    ("", 1, "127.0.0.1"),  # no proxy wrote it: the connection's address
    ("10.1.2.3", 1, "10.1.2.3"),
    ("6.6.6.6, 10.1.2.3", 1, "10.1.2.3"),
    ("6.6.6.6,10.1.2.3", 2, "6.6.6.6"),  # a CDN's value, then the router's
    ("10.1.2.3", 2, "10.1.2.3"),  # fewer values than proxies: all are theirs
    ("6.6.6.6, 10.1.2.3", 0, "127.0.0.1"),  # no proxy trusted
])
def test_the_client_address_is_the_one_the_last_trusted_proxy_appended(forwarded, trusted, client):
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": forwarded}
    assert access.client_address(environ, trusted) == client


SPELLINGS_OF_ONE_ADDRESS = ["2001:db8::1", "2001:DB8::1", "2001:0db8:0000:0000:0000:0000:0000:0001",
                            "2001:db8:0:0:0:0:0:1", "2001:db8::0:1"]


@pytest.mark.parametrize(("spelling", "address"), [
    *[(spelling, "2001:db8::/64") for spelling in SPELLINGS_OF_ONE_ADDRESS],
    ("2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64"),  # any address of the client's /64
    ("2001:db8:0:1::1", "2001:db8:0:1::/64"),  # the next /64: another client
    ("::ffff:192.0.2.1", "192.0.2.1"), ("::FFFF:c000:201", "192.0.2.1"),  # IPv4-mapped IPv6
    ("192.0.2.1:41234", "192.0.2.1:41234"),  # no IP address: as written
])
def test_a_client_has_one_spelling(spelling, address):
    assert access.client_address({"REMOTE_ADDR": spelling}, 0) == address
    assert access.client_address({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": spelling}, 1) == address


def test_the_addresses_of_one_ipv6_network_are_one_client(make_client):
    # A host picks any address of its /64 (privacy addresses): a new address a
    # request would otherwise be a new quota a request.
    client = make_client(NER_RATE_LIMIT=limits.parse("2/minute"), NER_TRUSTED_PROXIES=1)
    statuses = [client.post("/api", json=TEXT, headers={"X-Forwarded-For": f"2001:db8:1:2::{suffix:x}"}).status_code
                for suffix in range(1, 6)]
    assert statuses == [200, 200, 429, 429, 429]
    assert client.post("/api", json=TEXT, headers={"X-Forwarded-For": "2001:db8:1:3::1"}).status_code == 200


def test_five_spellings_of_one_ipv6_address_are_one_client(make_client):
    client = make_client(NER_RATE_LIMIT=limits.parse("1/minute"), NER_TRUSTED_PROXIES=1)
    statuses = [client.post("/api", json=TEXT, headers={"X-Forwarded-For": spelling}).status_code
                for spelling in SPELLINGS_OF_ONE_ADDRESS]
    assert statuses == [200, 429, 429, 429, 429]
    response = client.post("/api", json=TEXT, environ_overrides={"REMOTE_ADDR": "::ffff:10.0.0.7"},
                           headers={"X-Forwarded-For": "10.0.0.7"})
    assert response.status_code == 200  # another client...
    response = client.post("/api", json=TEXT, headers={"X-Forwarded-For": "::ffff:10.0.0.7"})
    assert response.status_code == 429  # ...also when IPv4-mapped


def test_a_workers_own_windows_begin_at_the_first_add_and_end_after_their_length(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(access.time, "time", lambda: now[0])
    windows = access.LocalWindows()
    assert [windows.incr("a", 60, 2), windows.incr("a", 60, 3)] == [2, 5]
    assert windows.get_expiry("a") == 1060
    now[0] = 1060.0
    assert windows.incr("a", 60, 1) == 1  # a new window
    assert windows.incr("zero", 60, 0) == 0 and len(windows) == 1  # a zero begins no window


def test_ended_windows_are_dropped_from_the_front_and_live_ones_past_the_bound(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(access.time, "time", lambda: now[0])
    monkeypatch.setattr(access, "LOCAL_WINDOWS_KEPT", 3)
    windows = access.LocalWindows()
    for key in "abc":  # ending at 1003, 1004, 1005
        windows.incr(key, 3, 1)
        now[0] += 1
    now[0] = 1004.5
    windows.incr("d", 3, 1)
    assert len(windows) == 2 and windows.get_expiry("c") == 1005  # a and b dropped at the next add
    for key in "efgh":  # all live: the oldest go past the bound
        windows.incr(key, 60, 1)
    assert len(windows) == 3 and [windows.incr(key, 60, 0) for key in "fgh"] == [1, 1, 1]


def test_a_new_client_costs_the_same_however_many_windows_a_worker_holds():
    # Before, each new client past LOCAL_WINDOWS_KEPT windows rescanned them all (29 ms a request past 10,000).
    windows = access.LocalWindows()
    started = time.perf_counter()
    for i in range(3 * access.LOCAL_WINDOWS_KEPT):
        windows.incr(f"client-{i}", 3600, 1)
    assert time.perf_counter() - started < 3  # ~0.05 s; a rescan each took over a minute
    assert len(windows) == access.LOCAL_WINDOWS_KEPT


def test_the_clients_known_over_a_quota_are_bounded_too(make_client, monkeypatch):
    monkeypatch.setattr(access, "LOCAL_WINDOWS_KEPT", 5)
    client = make_client(NER_RATE_LIMIT=limits.parse("1/minute"), NER_TRUSTED_PROXIES=1)
    for i in range(20):
        assert client.post("/api", json="Paris", headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code == 200
    assert len(client.application.extensions["ner_access"].used_up) == 5


# Redis failing, and Redis over TLS (rediss://, as Heroku's).


def test_a_redis_that_fails_is_replaced_by_memory_with_one_warning_and_a_metric(caplog):
    store = access.QuotaStore(f"redis://127.0.0.1:{free_port()}")  # nothing listens there
    failures = REGISTRY.get_sample_value("ner_quota_redis_failures_total")
    with caplog.at_level(logging.WARNING, logger="nerserve.web.access"):
        counts = [store.add([("client", 60, 1)]) for _ in range(3)]
    assert counts == [[1], [2], [3]]  # counted in memory
    assert [r.getMessage() for r in caplog.records] == [
        "quotas: Redis failed (ConnectionError); counting in this worker until it answers"]
    assert REGISTRY.get_sample_value("ner_quota_redis_failures_total") == failures + 1
    assert REGISTRY.get_sample_value("ner_quota_local_workers") == 1


def test_a_worker_counts_in_redis_again_once_it_answers(monkeypatch, caplog):
    monkeypatch.setattr(access, "REDIS_RETRY_S", 0)
    with redis_server() as redis:
        store = access.QuotaStore(redis.url)
        assert store.add([("client", 60, 1)]) == [1]
        redis.stop()
        with caplog.at_level(logging.WARNING, logger="nerserve.web.access"):
            assert store.add([("client", 60, 1)]) == [1]  # a fresh count in memory
            redis.start()  # empty
            assert store.add([("client", 60, 1)]) == [1]  # in Redis again
        assert redis.client().get(access.REDIS_KEY_PREFIX + "client") == b"1"
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "quotas: Redis failed", "quotas: Redis answers again; counting in Redis"]
    assert REGISTRY.get_sample_value("ner_quota_local_workers") == 0


def test_a_rediss_url_with_a_self_signed_certificate_is_counted_in_redis(tmp_path):
    certificate, key = tmp_path / "redis.crt", tmp_path / "redis.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
                   check=True, capture_output=True, timeout=60)
    with redis_server(tls_files=(certificate, key)) as redis:
        assert redis.url.startswith("rediss://")
        store = access.QuotaStore(redis.url)
        assert [store.add([("client", 60, 2), ("other", 60, 1)]) for _ in range(2)] == [[2, 1], [4, 2]]
        assert not store.counting_locally
        assert redis.client().get(access.REDIS_KEY_PREFIX + "client") == b"4"


# Concurrent clients, and Redis that stalls, against a real redis-server.

QUOTA_WINDOW_S = 1
THREADS = 16
HAMMER_S = 3.0
REDIS_ANSWER_DELAY_S = 0.05  # a slow network or a busy machine between two round trips


def test_concurrent_over_quota_requests_get_no_more_tokens_than_the_windows_allow(make_client, monkeypatch):
    with redis_server() as redis:
        client = make_client(NER_TOKEN_RATE_LIMIT=limits.parse(f"1000 per {QUOTA_WINDOW_S} second"),
                             REDIS_URL=redis.url)
        store = client.application.extensions["ner_access"].store
        add = store.add

        def slow_add(charges):
            counts = add(charges)
            time.sleep(REDIS_ANSWER_DELAY_S)  # the answer's way back
            return counts

        monkeypatch.setattr(store, "add", slow_add)
        answered = []
        started = time.monotonic()

        def hammer() -> None:
            thread_client = client.application.test_client()
            while time.monotonic() - started < HAMMER_S:
                if thread_client.post("/api", json=BIG_TEXT).status_code == 200:
                    answered.append(600)

        threads = [threading.Thread(target=hammer) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        windows = int(elapsed // QUOTA_WINDOW_S) + 1  # back to back at most
        assert 0 < sum(answered) <= windows * 1000 + 600
        counts = [int(redis.client().get(key) or 0) for key in redis.client().scan_iter()]
        assert all(count >= 0 for count in counts)


def test_a_request_refused_as_its_window_ends_gives_no_credit_to_the_next(make_client, monkeypatch):
    with redis_server() as redis:
        client = make_client(NER_TOKEN_RATE_LIMIT=limits.parse("12 per 1 second"), REDIS_URL=redis.url)
        store = client.application.extensions["ner_access"].store
        add = store.add

        def add_then_window_ends(charges):
            counts = add(charges)
            if max(counts) > 12:  # the window ends right after this count
                poll(lambda: not redis.client().keys(), 5, "the window's key expiring")
            return counts

        monkeypatch.setattr(store, "add", add_then_window_ends)
        assert client.post("/api", json={"texts": [TEXT, TEXT]}).status_code == 200  # 10 of 12
        assert client.post("/api", json={"texts": [TEXT, TEXT]}).status_code == 429  # 20: over
        poll(lambda: client.post("/api", json="Paris").status_code == 200, 5, "a new window")
        counts = [int(redis.client().get(key)) for key in redis.client().scan_iter()]
        assert counts == [1]  # not 1 less the 10 refused
        statuses = [client.post("/api", json=TEXT).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # 1 + 5 + 5 of 12, then over


def test_a_request_during_a_redis_stall_is_counted_once(monkeypatch):
    # The script sent to a stalled Redis runs when it wakes, though redis-py gave
    # up waiting: retried on a fresh connection after that timeout, it ran twice
    # when the stall ended during the retry.
    monkeypatch.setattr(access, "REDIS_RETRY_S", 60)
    with redis_server() as redis:
        store = access.QuotaStore(redis.url)
        assert store.add([("client", 60, 1)]) == [1]
        redis.process.send_signal(signal.SIGSTOP)
        wake = threading.Timer(1.5 * access.REDIS_TIMEOUT_S, redis.process.send_signal, [signal.SIGCONT])
        wake.start()
        try:
            assert store.add([("client", 60, 1)]) == [1]  # counted in memory meanwhile
        finally:
            wake.join()
        poll(lambda: redis.client().get(access.REDIS_KEY_PREFIX + "client") != b"1", 5, "the stalled script")
        time.sleep(0.2)  # and a second one, if there were
        assert redis.client().get(access.REDIS_KEY_PREFIX + "client") == b"2"
