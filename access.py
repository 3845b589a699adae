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
quotas are counted here, together, in one Redis round trip a request when
REDIS_URL is set (every worker of every dyno), else in each worker's memory.
A client that a worker has seen go over its request quota is refused before
its body is read until that window ends: the count only grows within a
window, so this is exact, and the texts of a client over its quota are not
tokenized to be counted. When Redis fails, a worker warns once, counts in
its own memory, and asks Redis again every REDIS_RETRY_S seconds.

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

import redis
from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem
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
REDIS_KEY_PREFIX = "ner-quota:"
# Fixed windows counted as limits counts them (its incr_expire.lua), several
# at once: KEYS[i] gets ARGV[2i] added, and a key new in its window expires
# after ARGV[2i-1] seconds. Returns the counts, in order.
ADD_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
    local amount = tonumber(ARGV[2 * i])
    local count = redis.call("incrby", key, amount)
    if count == amount then
        redis.call("expire", key, ARGV[2 * i - 1])
    end
    counts[i] = count
end
return counts
"""
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


# A charge to a quota: its key, its window in seconds, and the amount to add.
Charge = tuple[str, int, int]


class QuotaStore:
    """Quota counts: in Redis when there is one, in this worker's memory while it fails."""

    def __init__(self, redis_url: str):
        self.local = LocalWindows()
        self.redis: redis.Redis | None = None
        if redis_url:
            options: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S,
                                       "retry": Retry(NoBackoff(), 1)}
            if redis_url.startswith("rediss://"):
                # Heroku Key-Value Store's certificate is self-signed: the link is
                # encrypted, but the server is not authenticated (Heroku's advice).
                options["ssl_cert_reqs"] = "none"
            self.redis = redis.Redis.from_url(redis_url, **options)
            self.add_script = self.redis.register_script(ADD_SCRIPT)
        self._lock = threading.Lock()
        self.counting_locally = False  # while Redis fails
        self._next_try = 0.0  # when to ask Redis again (time.monotonic())

    def add(self, charges: list[Charge]) -> list[int]:
        """Add each charge's amount to its key's count in its window (begun at
        its first add), all in one round trip; the new counts."""
        if self._redis_answers():
            keys = [REDIS_KEY_PREFIX + key for key, _, _ in charges]
            try:
                arguments = [n for _, window_s, amount in charges for n in (window_s, amount)]
                return [int(count) for count in self.add_script(keys, arguments)]
            except redis.RedisError as error:
                self._count_locally(error)
        return [self.local.incr(*charge) for charge in charges]

    def seconds_left(self, key: str) -> int:
        """Seconds until `key`'s window ends, at least 1."""
        if self._redis_answers():
            try:
                return max(1, self.redis.ttl(REDIS_KEY_PREFIX + key))
            except redis.RedisError as error:
                self._count_locally(error)
        return max(1, math.ceil(self.local.get_expiry(key) - time.time()))

    def _redis_answers(self) -> bool:
        """Whether to count in Redis: there is one, and it has not failed (or answers again)."""
        if self.redis is None:
            return False
        if self.counting_locally and self._time_to_try_redis() and self._pings():
            self.counting_locally = False
            metrics.QUOTA_COUNTED_LOCALLY.set(0)
            log.warning("quotas: Redis answers again; counting in Redis")
        return not self.counting_locally

    def _pings(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def _time_to_try_redis(self) -> bool:
        """Whether this thread asks Redis now: once every REDIS_RETRY_S seconds, whatever the threads."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_try:
                return False
            self._next_try = now + REDIS_RETRY_S
            return True

    def _count_locally(self, error: redis.RedisError) -> None:
        with self._lock:
            if self.counting_locally:
                return  # one warning a failure, not one a request
            self.counting_locally = True
            self._next_try = time.monotonic() + REDIS_RETRY_S
        metrics.QUOTA_REDIS_FAILURES.inc()
        metrics.QUOTA_COUNTED_LOCALLY.set(1)
        log.warning("quotas: Redis failed (%s); counting in this worker until it answers", type(error).__name__)


class Access:
    """The keys and quotas of one app."""

    def __init__(self, config: dict[str, Any]):
        self.digests: tuple[str, ...] = config["NER_API_KEYS"]
        configured = zip(QUOTAS, (config["NER_RATE_LIMIT"], config["NER_TOKEN_RATE_LIMIT"]), strict=True)
        self.quotas: dict[str, RateLimitItem] = {quota: item for quota, item in configured if item is not None}
        self.trusted_proxies: int = config["NER_TRUSTED_PROXIES"]
        self.store = QuotaStore(config["REDIS_URL"])
        # Clients over their request quota, and when that window ends (time.time()).
        self.over_request_quota: dict[str, float] = {}

    def check_request(self) -> None:
        """Before a guarded route: the key (401), then whether the client is
        known to be over its request quota (429, its body unread)."""
        if request.endpoint not in GUARDED_ENDPOINTS or request.method == "OPTIONS":
            return  # a CORS preflight carries no key
        g.ner_client = self.client()
        if self.known_over_request_quota():
            self.refuse("Requests")  # counted as it is answered (add_headers)

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

    def charge(self, tokens: int) -> str | None:
        """Count the request, and its `tokens`, against the client's quotas, in
        one round trip; the quota that this takes it over, or None. Once a
        request: when app.py has counted the texts, else as it is answered.

        Tokens refused are given back, so that they leave the rest of the quota
        to smaller requests (a refused request still counts as one).
        """
        amounts = {"Requests": 1, "Tokens": tokens}
        keys = {quota: item.key_for(quota.lower(), g.ner_client) for quota, item in self.quotas.items()}
        charges = [(keys[quota], item.get_expiry(), amounts[quota]) for quota, item in self.quotas.items()]
        counts = dict(zip(self.quotas, self.store.add(charges), strict=True))
        g.ner_remaining = {quota: max(0, item.amount - counts[quota]) for quota, item in self.quotas.items()}
        over = next((quota for quota, item in self.quotas.items()
                     if counts[quota] > item.amount and amounts[quota] > 0), None)
        if over is not None and tokens and "Tokens" in self.quotas:
            self.store.add([(keys["Tokens"], self.quotas["Tokens"].get_expiry(), -tokens)])
            g.ner_remaining["Tokens"] = max(0, self.quotas["Tokens"].amount - counts["Tokens"] + tokens)
        if over == "Requests" and not self.known_over_request_quota():
            if len(self.over_request_quota) >= LOCAL_WINDOWS_KEPT:
                now = time.time()
                self.over_request_quota = {c: until for c, until in self.over_request_quota.items() if until > now}
            self.over_request_quota[g.ner_client] = time.time() + self.store.seconds_left(keys["Requests"])
        return over

    def known_over_request_quota(self) -> bool:
        return self.over_request_quota.get(g.ner_client, 0.0) > time.time()

    def refuse(self, quota: str) -> None:
        """429 for a request over `quota`, with the seconds until its window ends."""
        item = self.quotas[quota]
        if quota == "Requests":
            retry_after_s = self.over_request_quota[g.ner_client] - time.time()
        else:
            retry_after_s = self.store.seconds_left(item.key_for(quota.lower(), g.ner_client))
        raise TooManyRequests(f"over the {quota.lower()} quota of {item}", retry_after=max(1, math.ceil(retry_after_s)))

    def add_headers(self, response: Response) -> Response:
        """Each quota's limit and what is left of it, on every answer of a guarded
        route; a request that app.py did not count (an error before) is counted here."""
        if "ner_client" not in g:
            return response  # not guarded, or refused before a client was known (401)
        if "ner_remaining" not in g and self.quotas:
            self.charge(0)
        for quota, item in self.quotas.items():
            response.headers[f"X-RateLimit-Limit-{quota}"] = str(item.amount)
            response.headers[f"X-RateLimit-Remaining-{quota}"] = str(g.ner_remaining[quota])
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


def charge(tokens: int) -> None:
    """Count the request and its `tokens` against its client's quotas: 429 over
    either. app.py calls it once the texts are tokenized, before they are tagged."""
    access: Access = current_app.extensions["ner_access"]
    if access.quotas and "ner_client" in g:
        over = access.charge(tokens)
        if over is not None:
            access.refuse(over)
