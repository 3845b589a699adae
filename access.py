"""Who may call POST /api, and how much: API keys and per-client quotas.

Keys. NER_API_KEYS holds the SHA-256 digests of the keys, never the keys, so
that the configuration can be read, shared and pasted into a dashboard without
giving a key away. A request's key (`Authorization: Bearer KEY` or
`X-API-Key: KEY`) is hashed and its digest compared with each in constant
time. The digest's first 8 hex digits are the key's id: the access log's
key_id and the client the quotas count for. The key itself is never logged.

Quotas. NER_RATE_LIMIT counts a client's requests, NER_TOKEN_RATE_LIMIT the
tokens it has tagged, each in a fixed window that starts at its first hit
(the notation and the counting are those of `limits`, the library beneath
Flask-Limiter). Flask-Limiter itself checks its limits before the view, at a
cost known then; tokens are known only once the body is parsed, so both
quotas are counted here, in one place. Counted in Redis when REDIS_URL is set
(every worker of every dyno), else in each worker's memory. When Redis fails,
a worker warns once, counts in its own memory, and asks Redis again every
REDIS_RETRY_S seconds.

The client, without keys, is the address that the last trusted proxy appended
to X-Forwarded-For: on Heroku, its router (NER_TRUSTED_PROXIES=1). What a
client writes there itself comes before, and is never taken.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import TooManyRequests, Unauthorized

import metrics

log = logging.getLogger(__name__)

# The routes that cost: keys and quotas apply to them only. The page, the docs,
# /healthz, /readyz and /metrics stay open.
GUARDED_ENDPOINTS = frozenset({"api"})
KEY_ID_DIGITS = 8
# A Redis that stopped answering costs a request at most this, twice (one retry
# on a fresh connection, for a connection that Redis closed while idle).
REDIS_TIMEOUT_S = 0.5
REDIS_RETRY_S = 5.0
# Past this many clients' windows in a worker's memory, the ended ones are dropped.
LOCAL_WINDOWS_KEPT = 10_000
QUOTAS = ("Requests", "Tokens")
# What a browser page may read of an answer (CORS), beside Retry-After.
QUOTA_HEADERS = [f"X-RateLimit-{what}-{quota}" for quota in QUOTAS for what in ("Limit", "Remaining")]


class LocalWindows:
    """Fixed windows counted in this worker's memory, as limits' storages count
    them (a window begins at its first add). limits' own MemoryStorage starts a
    timer thread at an add that comes over 10 ms after the last one, which cost
    0.24 ms an add on the shared 2-core machine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # key: [when it ends (time.time()), count]

    def incr(self, key: str, window_s: int, amount: int) -> int:
        now = time.time()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] <= now:
                if len(self._windows) >= LOCAL_WINDOWS_KEPT:
                    self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
                window = self._windows[key] = [now + window_s, 0]
            window[1] += amount
            return int(window[1])

    def get_expiry(self, key: str) -> float:
        with self._lock:
            window = self._windows.get(key)
        return window[0] if window else time.time()


class QuotaStore:
    """Quota counts: in Redis when there is one, in this worker's memory while it fails."""

    def __init__(self, redis_url: str):
        self.local = LocalWindows()
        self.shared: Storage | None = None
        if redis_url:
            options: dict[str, Any] = {
                "key_prefix": "ner-quota", "wrap_exceptions": True, "socket_timeout": REDIS_TIMEOUT_S,
                "socket_connect_timeout": REDIS_TIMEOUT_S, "retry": Retry(NoBackoff(), 1),
            }
            if redis_url.startswith("rediss://"):
                # Heroku Key-Value Store's certificate is self-signed: the link is
                # encrypted, but the server is not authenticated (Heroku's advice).
                options["ssl_cert_reqs"] = "none"
            self.shared = storage_from_string(redis_url, **options)
        self._lock = threading.Lock()
        self.counting_locally = False  # while Redis fails
        self._next_try = 0.0  # when to ask Redis again (time.monotonic())

    def add(self, key: str, window_s: int, amount: int) -> int:
        """Add `amount` to `key`'s count in its window (begun at its first add); the new count."""
        storage = self._storage()
        try:
            return storage.incr(key, window_s, amount)
        except StorageError as error:
            self._count_locally(error)
            return self.local.incr(key, window_s, amount)

    def seconds_left(self, key: str) -> int:
        """Seconds until `key`'s window ends, at least 1."""
        storage = self._storage()
        try:
            ends = storage.get_expiry(key)
        except StorageError as error:
            self._count_locally(error)
            ends = self.local.get_expiry(key)
        return max(1, math.ceil(ends - time.time()))

    def _storage(self) -> Storage | LocalWindows:
        if self.shared is None:
            return self.local
        if self.counting_locally and self._time_to_try_redis() and self.shared.check():  # a PING
            self.counting_locally = False
            metrics.QUOTA_COUNTED_LOCALLY.set(0)
            log.warning("quotas: Redis answers again; counting in Redis")
        return self.local if self.counting_locally else self.shared

    def _time_to_try_redis(self) -> bool:
        """Whether this thread asks Redis now: once every REDIS_RETRY_S seconds, whatever the threads."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_try:
                return False
            self._next_try = now + REDIS_RETRY_S
            return True

    def _count_locally(self, error: StorageError) -> None:
        with self._lock:
            if self.counting_locally:
                return  # one warning a failure, not one a request
            self.counting_locally = True
            self._next_try = time.monotonic() + REDIS_RETRY_S
        metrics.QUOTA_REDIS_FAILURES.inc()
        metrics.QUOTA_COUNTED_LOCALLY.set(1)
        log.warning("quotas: Redis failed (%s); counting in this worker until it answers",
                    type(error.storage_error).__name__)


class Access:
    """The keys and quotas of one app."""

    def __init__(self, config: dict[str, Any]):
        self.digests: tuple[str, ...] = config["NER_API_KEYS"]
        configured = zip(QUOTAS, (config["NER_RATE_LIMIT"], config["NER_TOKEN_RATE_LIMIT"]), strict=True)
        self.quotas: dict[str, RateLimitItem] = {quota: item for quota, item in configured if item is not None}
        self.trusted_proxies: int = config["NER_TRUSTED_PROXIES"]
        self.store = QuotaStore(config["REDIS_URL"])

    def check_request(self) -> None:
        """Before a guarded route: the key (401), then the request quota (429)."""
        if request.endpoint not in GUARDED_ENDPOINTS or request.method == "OPTIONS":
            return  # a CORS preflight carries no key
        g.ner_client = self.client()
        g.ner_remaining = {}
        if "Requests" in self.quotas:
            self.charge("Requests", 1)

    def client(self) -> str:
        """The key's id with keys on (401 without a valid one); else the client's address."""
        if not self.digests:
            return "address:" + client_address(request.environ, self.trusted_proxies)
        key = presented_key()
        if key is None:
            raise Unauthorized("an API key is required: Authorization: Bearer KEY, or X-API-Key: KEY",
                               www_authenticate=WWWAuthenticate("Bearer", {"realm": "ner"}))
        key_id = matching_key_id(key, self.digests)
        if key_id is None:
            raise Unauthorized("the API key is not valid", www_authenticate=WWWAuthenticate(
                "Bearer", {"realm": "ner", "error": "invalid_token"}))
        request.environ["ner.key_id"] = key_id  # for the access log (gunicorn.conf.py)
        return "key:" + key_id

    def charge(self, quota: str, amount: int) -> None:
        """Count `amount` against the client's `quota`; 429 when that takes it over.

        A refused amount is given back, so that tokens refused leave the rest of
        the quota to smaller requests (a refused request still counts as one).
        """
        item = self.quotas[quota]
        key = item.key_for(quota.lower(), g.ner_client)
        count = self.store.add(key, item.get_expiry(), amount)
        if count > item.amount and amount > 0:
            if quota == "Tokens":
                count = self.store.add(key, item.get_expiry(), -amount)
            g.ner_remaining[quota] = max(0, item.amount - count)
            raise TooManyRequests(f"over the {quota.lower()} quota of {item}",
                                  retry_after=self.store.seconds_left(key))
        g.ner_remaining[quota] = max(0, item.amount - count)

    def add_headers(self, response: Response) -> Response:
        """Each quota's limit and what is left of it, on every answer of a guarded route."""
        remaining = g.get("ner_remaining")
        if remaining is None:
            return response  # not guarded, or refused before a client was known (401)
        if "Tokens" in self.quotas and "Tokens" not in remaining:
            self.charge("Tokens", 0)  # not charged (an error before): read what is left
        for quota, item in self.quotas.items():
            response.headers[f"X-RateLimit-Limit-{quota}"] = str(item.amount)
            response.headers[f"X-RateLimit-Remaining-{quota}"] = str(remaining[quota])
        return response


def presented_key() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


def matching_key_id(key: str, digests: tuple[str, ...]) -> str | None:
    """The id of the configured digest that `key` hashes to; every digest is compared, in constant time."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    matched = None
    for known in digests:
        if hmac.compare_digest(digest, known):
            matched = known
    return matched[:KEY_ID_DIGITS] if matched else None


def client_address(environ: dict[str, Any], trusted_proxies: int) -> str:
    """The address that the last of `trusted_proxies` appended to X-Forwarded-For.

    Each proxy appends the address it was connected from, so the last
    `trusted_proxies` values were written by them; anything before, by the
    client. With fewer values than proxies, every value is a proxy's.
    """
    forwarded = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if trusted_proxies == 0 or not forwarded:
        return environ.get("REMOTE_ADDR", "")
    return forwarded[-min(trusted_proxies, len(forwarded))]


def init_app(app: Flask) -> None:
    access = Access(app.config)
    app.extensions["ner_access"] = access
    app.before_request(access.check_request)
    app.after_request(access.add_headers)


def charge_tokens(count: int) -> None:
    """Charge the request's `count` tokens to its client's token quota: 429 over
    it. app.py calls it once the texts are parsed, before they are tagged."""
    access: Access = current_app.extensions["ner_access"]
    if "Tokens" in access.quotas and "ner_client" in g:
        access.charge("Tokens", count)
